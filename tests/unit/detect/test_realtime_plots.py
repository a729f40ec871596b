"""fraudlab.detect.plots, the live job's figures: rates in shared windows, latency per record, curves drawn from them.

The scored records and acknowledgement times are made by hand, so every rate, latency and percentile is known.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from fraudlab.detect import plots
from fraudlab.evaluate.plots import DPI
from fraudlab.exceptions import InvalidParameterError

T0 = 1_760_000_000_000  # epoch ms of the first acknowledgement


def _renders(fig: Figure) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    assert buffer.getvalue().startswith(b"\x89PNG")
    assert fig.dpi == DPI


@pytest.fixture
def run() -> tuple[pd.DataFrame, pd.Series]:
    """Six transactions acknowledged over 2 s; the first four wait for a 30 s warm-up, the last two are scored
    within 200 ms; t3 and t5 are alerts."""
    ids = [f"t{i}" for i in range(6)]
    acknowledged = pd.Series([T0, T0 + 200, T0 + 900, T0 + 1_000, T0 + 31_000, T0 + 31_500], index=ids)
    scored = pd.DataFrame({
        "transaction_id": ["t2", "t0", "t1", "t3", "t4", "t5"],  # in the order the job wrote them
        "scored_at": [T0 + 30_000, T0 + 30_000, T0 + 30_050, T0 + 30_100, T0 + 31_100, T0 + 31_700],
        "alert": [False, False, False, True, False, True],
    })
    return scored, acknowledged


# --------------------------------------------------------------------------- rates and latencies


def test_rate_over_time_counts_events_per_window_from_the_origin() -> None:
    # Setup
    times = [T0, T0 + 100, T0 + 999, T0 + 1_000, T0 + 3_400]

    # Run
    rates = plots.rate_over_time(times, origin_ms=T0, interval_s=1.0)
    halves = plots.rate_over_time(times, origin_ms=T0, interval_s=0.5)

    # Assert
    assert rates["seconds"].tolist() == [0.0, 1.0, 2.0, 3.0]
    assert rates["per_second"].tolist() == [3.0, 1.0, 0.0, 1.0]
    assert halves["per_second"].tolist() == [4.0, 2.0, 2.0, 0.0, 0.0, 0.0, 2.0]  # 2 events in 0.5 s = 4/s


def test_rate_over_time_extends_to_a_shared_end_and_refuses_bad_input() -> None:
    rates = plots.rate_over_time([T0 + 500], origin_ms=T0, until_s=2.5)
    assert rates["seconds"].tolist() == [0.0, 1.0, 2.0] and rates["per_second"].tolist() == [1.0, 0.0, 0.0]
    assert len(plots.rate_over_time([], origin_ms=T0)) == 0
    with pytest.raises(InvalidParameterError, match="interval_s 0"):
        plots.rate_over_time([T0], origin_ms=T0, interval_s=0)
    with pytest.raises(InvalidParameterError, match="1 events precede origin_ms"):
        plots.rate_over_time([T0 - 1, T0], origin_ms=T0)


def test_scoring_latency_is_scored_at_minus_the_acknowledgement_per_transaction(run) -> None:
    # Setup
    scored, acknowledged = run
    unacknowledged = pd.concat([scored, pd.DataFrame({"transaction_id": ["stray"], "scored_at": [T0],
                                                      "alert": [False]})], ignore_index=True)

    # Run
    latency = plots.scoring_latency_ms(unacknowledged, acknowledged)

    # Assert
    assert latency.to_dict() == {"t2": 29_100.0, "t0": 30_000.0, "t1": 29_850.0, "t3": 29_100.0, "t4": 100.0,
                                 "t5": 200.0}
    assert latency.name == "latency_ms"
    # t4 and t5 were acknowledged after the job's first score (T0 + 30 s)
    assert plots.scoring_latency_ms(scored, acknowledged, after_first_score=True).to_dict() == {"t4": 100.0,
                                                                                               "t5": 200.0}


def test_a_score_before_the_acknowledgement_reached_the_producer_is_a_small_negative_latency() -> None:
    scored = pd.DataFrame({"transaction_id": ["a"], "scored_at": [T0 - 3], "alert": [False]})
    assert plots.scoring_latency_ms(scored, pd.Series({"a": T0})).tolist() == [-3.0]


# --------------------------------------------------------------------------- figures


def test_throughput_figure_draws_both_rates_in_shared_windows_and_the_totals(run) -> None:
    # Setup
    scored, acknowledged = run

    # Run
    fig = plots.plot_realtime_throughput(scored, acknowledged, interval_s=1.0)

    # Assert
    rate_ax, total_ax = fig.axes
    assert rate_ax.get_title() == "Throughput: acknowledged and scored"
    assert rate_ax.get_ylabel() == "transactions per second (1 s windows)"
    assert total_ax.get_xlabel() == "seconds since the first acknowledgement"
    acks, scores = rate_ax.get_lines()[:2]
    assert acks.get_label() == "acknowledged (Kafka confirmed)" and scores.get_label() == "scored by the job"
    assert len(acks.get_xdata()) == len(scores.get_xdata()) == 32  # both to the last event, at 31.7 s
    assert acks.get_ydata()[:2].tolist() == [3.0, 1.0] and acks.get_ydata()[31] == 2.0
    assert scores.get_ydata()[30:].tolist() == [4.0, 2.0] and scores.get_ydata()[:30].sum() == 0
    ack_total, scored_total = total_ax.get_lines()[:2]
    assert ack_total.get_xdata().tolist() == [0.0, 0.2, 0.9, 1.0, 31.0, 31.5]
    assert scored_total.get_ydata().tolist() == [1, 2, 3, 4, 5, 6]
    assert scored_total.get_xdata()[0] == 30.0
    assert [ax.get_lines()[-1].get_xdata()[0] for ax in fig.axes] == [30.0, 30.0]  # the first score, marked
    assert total_ax.texts[0].get_text() == "first record scored at 30 s"
    [legend] = fig.legends  # one for both panels, outside them
    assert [text.get_text() for text in legend.get_texts()] == ["acknowledged (Kafka confirmed)", "scored by the job"]
    _renders(fig)


def test_throughput_figure_without_scored_records_still_shows_the_acknowledgements(run) -> None:
    _, acknowledged = run
    fig = plots.plot_realtime_throughput(pd.DataFrame({"scored_at": pd.Series([], dtype="int64")}), acknowledged)
    rate_ax, total_ax = fig.axes
    assert rate_ax.get_lines()[0].get_ydata().sum() == 6.0
    assert len(total_ax.get_lines()[1].get_xdata()) == 0 and not total_ax.texts
    with pytest.raises(InvalidParameterError, match="No acknowledged transaction"):
        plots.plot_realtime_throughput(pd.DataFrame({"scored_at": []}), pd.Series([], dtype="int64"))


def test_latency_figure_splits_the_warm_up_from_the_records_after_it_and_shows_the_alerts(run) -> None:
    # Setup
    scored, acknowledged = run

    # Run
    fig = plots.plot_scoring_latency(scored, acknowledged)

    # Assert
    [ax] = fig.axes
    assert ax.get_title() == "From the producer's acknowledgement to the job's score"
    assert ax.get_xscale() == "symlog" and ax.get_ylabel() == "share of records"
    every, after, alerts = ax.get_lines()
    assert every.get_label() == "all scored records: 6, p50 29,100 ms, p99 29,992 ms"
    assert every.get_xdata().tolist() == [100.0, 200.0, 29_100.0, 29_100.0, 29_850.0, 30_000.0]
    assert every.get_ydata().tolist() == pytest.approx([1 / 6, 2 / 6, 3 / 6, 4 / 6, 5 / 6, 1.0])
    # t4 and t5 were acknowledged after the first score (T0 + 30 s): no warm-up in their latency
    assert after.get_xdata().tolist() == [100.0, 200.0]
    assert after.get_label().startswith("acknowledged after the first score: 2, p50 150 ms")
    assert alerts.get_xdata().tolist() == [200.0, 29_100.0] and alerts.get_label().startswith("alerts: 2,")
    assert [text.get_text() for text in ax.get_legend().get_texts()] == [line.get_label() for line in (every, after,
                                                                                                       alerts)]
    assert [label.get_text() for label in ax.get_xticklabels()] == ["0", "10 ms", "100 ms", "1 s", "10 s"]
    assert ax.get_xticks().tolist() == [0, 10, 100, 1_000, 10_000] and ax.get_xlim()[0] == 0
    _renders(fig)


def test_latency_figure_leaves_out_curves_with_nothing_in_them(run) -> None:
    scored, acknowledged = run
    warm_up_only = scored[scored["transaction_id"].isin(["t0", "t1", "t2"])]
    [ax] = plots.plot_scoring_latency(warm_up_only, acknowledged).axes
    assert [line.get_label().split(":")[0] for line in ax.get_lines()] == ["all scored records"]
    with pytest.raises(InvalidParameterError, match="No scored transaction was acknowledged"):
        plots.plot_scoring_latency(scored, pd.Series({"other": T0}))


def test_latency_figure_reads_negative_latencies_on_its_linear_part() -> None:
    scored = pd.DataFrame({"transaction_id": ["a", "b"], "scored_at": [T0 - 4, T0 + 500], "alert": [False, False]})
    [ax] = plots.plot_scoring_latency(scored, pd.Series({"a": T0, "b": T0})).axes
    assert ax.get_lines()[0].get_xdata().tolist() == [-4.0, 500.0]
    assert ax.get_xlim()[0] == -4.0 and ax.get_xticks().tolist() == [0, 10, 100, 1_000]  # at least up to 1 s
    assert np.isfinite(ax.transData.transform((-4.0, 0.5))).all()


def test_model_switches_lists_versions_in_the_order_they_scored():
    from fraudlab.detect.realtime import model_switches

    scored = pd.DataFrame({"model_version": ["b", "a", "a", "b", "c"],
                           "scored_at": [T0 + 50, T0 + 10, T0 + 20, T0 + 60, T0 + 90]})
    switches = model_switches(scored)
    assert switches["model_version"].tolist() == ["a", "b", "c"]
    assert switches["records"].tolist() == [2, 2, 1]
    assert switches["first_scored_ms"].tolist() == [T0 + 10, T0 + 50, T0 + 90]
    assert switches["last_scored_ms"].tolist() == [T0 + 20, T0 + 60, T0 + 90]
