"""fraudlab.evaluate.plots: each figure has the panels, titles and values it promises, and renders under Agg."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from fraudlab.data.splits import split_reference
from fraudlab.evaluate import plots
from fraudlab.evaluate.metrics import evaluate
from fraudlab.exceptions import EvaluationInputError
from fraudlab.schema.table import TRANSACTION_TYPES


@pytest.fixture(scope="module")
def split():
    return split_reference(seed=0)


@pytest.fixture(scope="module")
def tables(split) -> dict[str, pd.DataFrame]:
    return {"real": split.test_sample.iloc[::8], "synthetic": split.train_sample.iloc[::8]}


@pytest.fixture(scope="module")
def result(split, tables):
    return evaluate(split, tables["synthetic"], seed=0, fidelity_rows=2_000, utility_rows=2_000, privacy_rows=500)


def _renders(fig: Figure) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    assert buffer.getvalue().startswith(b"\x89PNG")
    assert fig.dpi == plots.DPI


def _bar_heights(ax) -> list[list[float]]:
    return [[bar.get_height() for bar in container] for container in ax.containers]


def test_type_mix_shows_each_table_share_per_type(tables):
    fig = plots.plot_type_mix(tables)
    [ax] = fig.axes
    assert ax.get_title() == "Transaction type mix"
    assert ax.get_ylabel() == "share of rows (%)"
    real, synthetic = _bar_heights(ax)
    expected = tables["real"]["type"].value_counts(normalize=True).reindex(list(TRANSACTION_TYPES)) * 100
    assert real == pytest.approx(expected.to_list())
    assert sum(synthetic) == pytest.approx(100)
    assert [t.get_text() for t in ax.get_xticklabels()] == list(TRANSACTION_TYPES)
    _renders(fig)


def test_distributions_have_a_panel_per_column_and_type_with_zero_shares(tables):
    fig = plots.plot_distributions(tables)
    assert len(fig.axes) == 5 * 5
    assert [ax.get_title() for ax in fig.axes[:5]] == list(TRANSACTION_TYPES)
    assert all(ax.get_xscale() == "log" for ax in fig.axes)
    cash_out_old_orig = fig.axes[5 + TRANSACTION_TYPES.index("CASH_OUT")]
    real = tables["real"]
    zeros = (real.loc[real["type"] == "CASH_OUT", "old_balance_orig"] == 0).mean()
    assert f"= 0: real {zeros:.0%}" in cash_out_old_orig.texts[0].get_text()
    assert fig.axes[-1].get_xlabel() == "new_balance_dest (currency units, log)"
    assert "share of exact zeros" in fig.get_suptitle()
    _renders(fig)


def test_correlations_show_each_table_and_the_difference(tables):
    fig = plots.plot_correlations(tables)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["real: Spearman", "synthetic: Spearman", "synthetic minus real"]
    assert fig.axes[0].get_yticklabels()[0].get_text() == "amount"
    _renders(fig)


def test_fraud_rate_by_type_uses_the_weights(split):
    test, weight = split.test_rows()
    fig = plots.plot_fraud_by_type({"real": test, "synthetic": split.train_sample}, weights={"real": weight})
    [ax] = fig.axes
    real, _ = _bar_heights(ax)
    transfer = (test["type"] == "TRANSFER").to_numpy()
    expected = 100 * weight[transfer & test["is_fraud"].to_numpy()].sum() / weight[transfer].sum()
    assert real[TRANSACTION_TYPES.index("TRANSFER")] == pytest.approx(expected)
    assert real[TRANSACTION_TYPES.index("PAYMENT")] == 0
    assert 0.5 < expected < 1.0  # the population's TRANSFER fraud rate is 0.77%
    assert ax.get_title() == "Fraud rate by transaction type (weighted to the population)"
    _renders(fig)


def test_fraud_pattern_reports_frauds_emptying_the_account(split, tables):
    fig = plots.plot_fraud_pattern({"real frauds": split.test_frauds, "no frauds": tables["real"].head(100)})
    left, right = fig.axes
    assert left.get_title() == "real frauds: 4,106 frauds, 98% empty the account"
    assert right.get_title() == "no frauds: no fraud rows"
    assert left.get_xscale() == left.get_yscale() == "symlog"
    _renders(fig)


def test_summary_has_four_panels_and_states_privacy(result):
    fig = plots.plot_summary({"synthetic": result})
    assert [ax.get_title() for ax in fig.axes] == [
        "Headline figures", "Column shapes (KSComplement / TVComplement)",
        "Accounting rules: share of rows obeying", "Fraud classifier trained on each, tested on held-out real rows",
    ]
    assert "Privacy, distance to closest record (DCR)" in fig.get_supxlabel()
    headline = fig.axes[0]
    assert headline.containers[0][0].get_width() == pytest.approx(result.fidelity.quality_score)
    _renders(fig)


def test_figures_refuse_tables_without_the_columns_they_draw(tables):
    with pytest.raises(EvaluationInputError, match="table 'synthetic' has no column 'is_fraud'"):
        plots.plot_fraud_by_type({"real": tables["real"], "synthetic": tables["synthetic"].drop(columns="is_fraud")})
    with pytest.raises(EvaluationInputError, match="no table to plot"):
        plots.plot_type_mix({})
    with pytest.raises(EvaluationInputError, match="weights of 'real' have 3 values"):
        plots.plot_type_mix(tables, weights={"real": np.ones(3)})


def test_what_the_synthesizer_learned_is_drawn():
    from fraudlab.data.reference import load_reference
    from fraudlab.evaluate.plots import plot_copula_correlation, plot_learned_marginals
    from fraudlab.generate.synth import TransactionSynthesizer

    model = TransactionSynthesizer().fit(load_reference().sample, progress=False)
    marginals = plot_learned_marginals(model)
    ax = marginals.axes[0]
    assert ax.get_xscale() == "log"
    assert len(ax.get_lines()) == len(model.segments)
    assert "amount" in ax.get_title()
    segment = model.segment("TRANSFER")
    heatmap = plot_copula_correlation(segment)
    labels = [t.get_text() for t in heatmap.axes[0].get_xticklabels()]
    assert labels == segment.columns
    assert "TRANSFER" in heatmap.axes[0].get_title()


def test_ingestion_figure_shows_throughput_and_latency():
    import pandas as pd

    from fraudlab.ingest.client import ProduceSummary
    from fraudlab.ingest.plots import plot_ingestion

    summary = ProduceSummary(sent=300, accepted=300, duplicates=0, rejected=0, retried=0, elapsed=3.0, p50_ms=4.0,
                             p99_ms=9.0, latency_bins_ms=((4.0, 200), (9.0, 100)))
    throughput = pd.DataFrame({"seconds": [0.0, 0.5, 1.0], "transactions_per_second": [180.0, 220.0, 200.0]})
    fig = plot_ingestion(throughput, summary)
    rate_ax, latency_ax = fig.axes
    assert [p.get_height() for p in rate_ax.patches] == [180.0, 220.0, 200.0]
    assert latency_ax.get_xscale() == "log"
    assert sum(p.get_height() for p in latency_ax.patches) == 300
    assert "p99 9.0 ms" in [t.get_text() for t in latency_ax.texts]
