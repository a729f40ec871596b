"""fraudlab.evaluate.metrics, fraudlab.generate.baseline and ``fraudlab evaluate``: real values, determinism, errors."""

from __future__ import annotations

import json
from unittest import mock

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from sdmetrics.column_pairs import CorrelationSimilarity
from sdmetrics.single_column import BoundaryAdherence, CategoryAdherence, KSComplement, TVComplement

from fraudlab.cli import cli
from fraudlab.data.reference import POPULATION_FRAUDS, POPULATION_ROWS
from fraudlab.data.splits import RealSplit, split_reference, split_table
from fraudlab.evaluate.metrics import evaluate, measure_fidelity, measure_privacy, measure_utility, measure_validity
from fraudlab.exceptions import EvaluationInputError, FraudlabError
from fraudlab.generate.baseline import fit_sdv_baseline
from fraudlab.schema.rules import RULES
from fraudlab.schema.table import CANONICAL_COLUMNS, canonical_dtypes

#: Row budgets that keep one evaluation to a few seconds.
SMALL = {"fidelity_rows": 4_000, "utility_rows": 3_000, "privacy_rows": 1_000}
KEY = ["step", "type", "amount", "name_orig", "name_dest"]


@pytest.fixture(scope="module")
def split() -> RealSplit:
    return split_reference(seed=0)


@pytest.fixture(scope="module")
def real_vs_real(split):
    """The training half judged as if it were synthetic: what a perfect (memorising) synthesizer scores."""
    return evaluate(split, split.train_sample, seed=0, **SMALL)


def _keys(*tables: pd.DataFrame) -> set[tuple]:
    return {tuple(row) for table in tables for row in table[KEY].astype({"type": str}).itertuples(index=False)}


# --------------------------------------------------------------------------- the split


def test_split_puts_every_real_row_on_exactly_one_side(split):
    """No real row is trained on and tested on; the sample's 63 frauds are the frauds file's rows."""
    train, test = _keys(split.train_sample, split.train_frauds), _keys(split.test_sample, split.test_frauds)
    assert not train & test
    assert len(split.train_sample) + len(split.test_sample) == 49_061
    assert (len(split.train_frauds), len(split.test_frauds)) == (4_107, 4_106)
    assert _keys(split.train_sample.loc[split.train_sample["is_fraud"]]) <= _keys(split.train_frauds)
    assert int(split.train_sample["is_fraud"].sum() + split.test_sample["is_fraud"].sum()) == 63


def test_weighted_test_rows_have_the_population_fraud_rate(split):
    table, weight = split.test_rows()
    prevalence = weight[table["is_fraud"].to_numpy()].sum() / weight.sum()
    assert prevalence == pytest.approx(POPULATION_FRAUDS / POPULATION_ROWS, rel=2e-3)
    assert len(table) == int((~split.test_sample["is_fraud"]).sum()) + len(split.test_frauds)


def test_the_split_follows_its_seed(split):
    again, other = split_reference(seed=0), split_reference(seed=1)
    assert again.test_sample.equals(split.test_sample)
    assert not other.test_sample.equals(split.test_sample)


def test_split_table_stratifies_a_plain_table(split):
    table = pd.concat([split.test_sample, split.test_frauds.head(40)], ignore_index=True)
    halves = split_table(table, seed=3)
    assert halves.fraud_weight == halves.nonfraud_weight == 1.0
    assert len(halves.train_frauds) + len(halves.test_frauds) == int(table["is_fraud"].sum())
    assert abs(len(halves.train_frauds) - len(halves.test_frauds)) <= 1


def test_a_table_with_one_fraud_cannot_be_split(split):
    table = pd.concat([split.test_sample.loc[~split.test_sample["is_fraud"]], split.test_frauds.head(1)])
    with pytest.raises(EvaluationInputError, match="has 1 fraud row"):
        split_table(table)


# --------------------------------------------------------------------------- figures of merit


def test_real_rows_score_high_against_real_rows(real_vs_real):
    fidelity = real_vs_real.fidelity
    assert fidelity.quality_score > 0.97
    assert min(score.score for score in fidelity.column_shapes) > 0.95
    assert fidelity.diagnostic_score > 0.99
    assert fidelity.columns == ("type", "amount", "old_balance_orig", "new_balance_orig", "old_balance_dest",
                                "new_balance_dest", "is_fraud")
    assert real_vs_real.validity.synthetic == dict.fromkeys([*RULES, "all"], 1.0)
    assert real_vs_real.validity.real == dict.fromkeys([*RULES, "all"], 1.0)


def test_copies_of_training_rows_are_flagged_by_privacy(real_vs_real):
    """Copied rows sit at distance 0 from the training rows, while new real rows do not."""
    privacy = real_vs_real.privacy
    assert privacy.exact_copies_synthetic == 1.0
    assert privacy.share_closer_than_holdout == 1.0
    assert privacy.exact_copies_holdout < 0.01
    assert privacy.dcr_median_holdout > 0
    assert (privacy.synthetic_rows, privacy.holdout_rows, privacy.reference_rows) == (1_000, 1_000, 28_606)


def test_a_subsampled_reference_set_misses_copies(split):
    """With fewer reference rows, only the copies of rows kept are found: why the reference is kept whole here."""
    privacy = measure_privacy(split, split.train_sample, seed=0, max_rows=1_000, max_reference_rows=5_000)
    assert privacy.reference_rows == 5_000
    assert 0.1 < privacy.exact_copies_synthetic < 0.3


def test_tstr_on_the_real_training_rows_scores_exactly_as_training_on_real(split):
    """Given the very rows the real classifier trains on, the 'synthetic' classifier is the same classifier."""
    train, _ = split.train_rows()
    utility = measure_utility(split, train, seed=0)
    assert utility.pr_auc_real == pytest.approx(0.8788, abs=1e-4)  # against a prevalence of 0.13%
    assert utility.roc_auc_real == pytest.approx(0.9988, abs=1e-4)
    assert utility.pr_auc_ratio == utility.roc_auc_ratio == 1.0
    assert utility.test_prevalence == pytest.approx(POPULATION_FRAUDS / POPULATION_ROWS, rel=2e-3)
    assert (utility.real_train_rows, utility.real_train_frauds) == (28_606, 4_107)
    assert (utility.synthetic_train_rows, utility.synthetic_train_frauds) == (28_606, 4_107)
    assert (utility.test_rows, utility.test_frauds) == (28_605, 4_106)


def test_tstr_is_skipped_when_the_synthetic_rows_have_no_fraud(split):
    honest = split.train_sample.loc[~split.train_sample["is_fraud"]]
    utility = measure_utility(split, honest, seed=0, max_rows=2_000)
    assert utility.pr_auc_synthetic is None and utility.pr_auc_ratio is None
    assert "has 0 fraud rows" in utility.note
    assert utility.pr_auc_real > 0.5


def _unpaid_cash_ins(table: pd.DataFrame) -> tuple[pd.DataFrame, str, float]:
    broken = table.copy()
    cash_in = broken["type"] == "CASH_IN"
    broken.loc[cash_in, "new_balance_orig"] = broken.loc[cash_in, "old_balance_orig"]
    return broken, "cash_in_credits_origin", float(cash_in.mean())


def _payment_frauds(table: pd.DataFrame) -> tuple[pd.DataFrame, str, float]:
    broken = table.copy()
    payments = np.flatnonzero((broken["type"] == "PAYMENT").to_numpy())[:500]
    broken.loc[payments, "is_fraud"] = True
    return broken, "fraud_only_transfer_cash_out", 500 / len(broken)


@pytest.mark.parametrize("breakage", [_unpaid_cash_ins, _payment_frauds])
def test_a_broken_table_fails_the_right_rule_by_the_right_share(split, breakage):
    broken, rule, share_broken = breakage(split.train_sample)
    rates = measure_validity(split.test_sample, broken).synthetic
    assert rates[rule] == pytest.approx(1 - share_broken)
    assert rates["all"] == pytest.approx(1 - share_broken)
    assert all(rate == 1.0 for name, rate in rates.items() if name not in (rule, "all"))


def test_a_broken_table_scores_worse_on_quality(split, real_vs_real):
    broken, _, _ = _unpaid_cash_ins(split.train_sample)
    fidelity = measure_fidelity(split.test_sample, broken, seed=0, max_rows=SMALL["fidelity_rows"])
    assert fidelity.column_shape("new_balance_orig") < real_vs_real.fidelity.column_shape("new_balance_orig") - 0.03
    assert fidelity.quality_score < real_vs_real.fidelity.quality_score
    assert fidelity.column_shape("amount") == real_vs_real.fidelity.column_shape("amount")


def test_unauthorized_overdraft_is_scored_only_when_it_occurs(split):
    synthetic = split.train_sample.copy()
    synthetic.loc[:99, "is_unauthorized_overdraft"] = True
    fidelity = measure_fidelity(split.test_sample, synthetic, seed=0, max_rows=3_000)
    assert "is_unauthorized_overdraft" in fidelity.columns
    assert fidelity.column_shape("is_unauthorized_overdraft") < 1.0


# --------------------------------------------------------------------------- SDMetrics agreement


def test_scores_agree_with_sdmetrics_own_functions(split):
    """Column, pair and overall scores equal SDMetrics' own metrics and SDV's evaluate_quality on the same rows."""
    from sdv.evaluation import evaluate_quality
    from sdv.metadata import Metadata

    real = split.test_sample.iloc[:6_000]
    synthetic = split.train_sample.iloc[:5_000].copy()
    synthetic["amount"] *= np.random.default_rng(0).lognormal(0, 0.3, len(synthetic))
    fidelity = measure_fidelity(real, synthetic, seed=0, max_rows=10_000)
    for column in ("amount", "old_balance_orig", "new_balance_orig", "old_balance_dest", "new_balance_dest"):
        assert fidelity.column_shape(column) == pytest.approx(KSComplement.compute(real[column], synthetic[column]))
        assert fidelity.column_validity(column) == pytest.approx(
            BoundaryAdherence.compute(real[column], synthetic[column]))
    assert fidelity.column_shape("type") == pytest.approx(
        TVComplement.compute(real["type"].astype(str), synthetic["type"].astype(str)))
    assert fidelity.column_shape("is_fraud") == pytest.approx(TVComplement.compute(real["is_fraud"],
                                                                                     synthetic["is_fraud"]))
    assert fidelity.column_validity("type") == pytest.approx(
        CategoryAdherence.compute(real["type"].astype(str), synthetic["type"].astype(str)))
    pair = ["old_balance_orig", "new_balance_orig"]
    [balances] = [p for p in fidelity.column_pairs if [p.column_1, p.column_2] == pair]
    assert balances.score == pytest.approx(CorrelationSimilarity.compute(real[pair], synthetic[pair]))
    assert balances.counts
    assert fidelity.column_shapes_score == pytest.approx(np.mean([s.score for s in fidelity.column_shapes]))
    assert fidelity.quality_score == pytest.approx((fidelity.column_shapes_score
                                                    + fidelity.column_pair_trends_score) / 2)
    columns = list(fidelity.columns)
    metadata = Metadata.load_from_dict({"tables": {"table": {"columns": {
        c: {"sdtype": {"type": "categorical", "is_fraud": "boolean"}.get(c, "numerical")} for c in columns}}}})
    sdv_report = evaluate_quality(real[columns].astype({"type": str}), synthetic[columns].astype({"type": str}),
                                  metadata, verbose=False)
    assert fidelity.quality_score == pytest.approx(sdv_report.get_score())


# --------------------------------------------------------------------------- the one call


def _without_time(result) -> dict:
    """The result as plain data (NaN as None, so equal NaNs compare equal) without the timings."""
    return {key: value for key, value in result.to_dict().items() if key != "seconds"}


def test_same_seed_same_figures_other_seed_other_subsamples(split, real_vs_real):
    again = evaluate(split, split.train_sample, seed=0, **SMALL)
    other = evaluate(split, split.train_sample, seed=1, **SMALL)
    assert _without_time(again) == _without_time(real_vs_real)
    assert other.fidelity.column_shapes != real_vs_real.fidelity.column_shapes
    assert set(real_vs_real.seconds) == {"fidelity", "validity", "utility", "privacy"}


def test_result_is_strict_json_with_sizes_and_seeds(real_vs_real):
    data = json.loads(real_vs_real.to_json())
    assert data["seed"] == 0
    assert data["split"]["test_frauds"] == 4_106
    assert data["synthetic_rows"] == 24_532
    assert data["fidelity"]["real_rows"] == data["fidelity"]["synthetic_rows"] == 4_000
    assert data["fidelity"]["column_shapes"][1] == {
        "column": "amount", "metric": "KSComplement", "score": real_vs_real.fidelity.column_shape("amount")}
    assert data["utility"]["features"] == ["type", "amount", "old_balance_orig", "new_balance_orig",
                                           "old_balance_dest", "new_balance_dest"]
    assert set(data["versions"]) == {"fraudlab", "sdmetrics", "scikit-learn", "pandas", "numpy"}
    assert real_vs_real.headline()["rules_all_synthetic"] == 1.0


def test_a_plain_real_table_is_split_by_the_seed(split):
    real = pd.concat([split.test_sample.iloc[:3_000], split.test_frauds.head(30)], ignore_index=True)
    result = evaluate(real, split.train_sample.iloc[:2_000], seed=0, **SMALL)
    assert result.split["train_frauds"] + result.split["test_frauds"] == int(real["is_fraud"].sum())
    assert result.split["fraud_weight"] == 1.0


def _kaggle_names(table):
    return table.rename(columns={"is_fraud": "isFraud", "amount": "amount_", "name_dest": "nameDest"})


def _set(column, value, rows=slice(3, 5)):
    def apply(table):
        broken = table.copy()
        broken[column] = broken[column].astype(object)
        broken.loc[broken.index[rows], column] = value
        return broken
    return apply


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda t: t.drop(columns="is_fraud"), r"missing column\(s\) 'is_fraud'"),
        (_kaggle_names, r"missing column\(s\) 'amount', 'name_dest', 'is_fraud'; it has other columns"),
        (lambda t: t.iloc[:0], "the table has no rows"),
        (_set("amount", np.nan), r"column 'amount': 2 missing value\(s\) \(NaN\), first at row 3"),
        (_set("is_fraud", np.nan), r"column 'is_fraud': 2 missing value\(s\)"),
        (_set("new_balance_dest", np.inf), r"column 'new_balance_dest': infinite value\(s\), first at row 3: inf"),
        (_set("type", "WIRE"), r"column 'type': 2 value\(s\) not one of CASH_IN, .*, first at row 3: 'WIRE'"),
        (_set("is_fraud", 2), r"column 'is_fraud': value\(s\) other than True/False \(or 1/0\), first at row 3: 2"),
        (_set("amount", "12,5"), r"column 'amount': 2 value\(s\) not numbers, first at row 3: '12,5'"),
        (lambda t: t.to_dict(), "expected a pandas DataFrame, got dict"),
    ],
    ids=["missing", "kaggle-names", "empty", "nan-amount", "nan-flag", "infinite", "unknown-type", "bad-flag",
         "text-amount", "not-a-frame"],
)
def test_bad_synthetic_input_is_refused_naming_the_problem(split, damage, message):
    with pytest.raises(EvaluationInputError, match=f"synthetic table: 1 problem\\(s\\):\n  {message}"):
        evaluate(split, damage(split.train_sample.head(50)), **SMALL)


def test_a_row_budget_must_be_positive(split):
    with pytest.raises(FraudlabError, match="Invalid privacy_rows 0: give a whole number of rows of at least 1"):
        evaluate(split, split.train_sample.head(50), privacy_rows=0)


# --------------------------------------------------------------------------- SDV baseline


@pytest.fixture(scope="module")
def baseline(split):
    return fit_sdv_baseline(split.train_sample.iloc[::12])


def test_sdv_baseline_samples_canonical_rows_reproducibly(baseline):
    rows = baseline.sample(400, seed=0)
    assert list(rows.columns) == list(CANONICAL_COLUMNS)
    assert rows.dtypes.to_dict() == canonical_dtypes()
    assert rows.equals(baseline.sample(400, seed=0))
    assert not rows.equals(baseline.sample(400, seed=1))
    assert rows["name_orig"].str.match(r"^C\d{9,10}$").all()
    assert rows["name_dest"].str.match(r"^[CM]\d{9,10}$").all()
    assert baseline.training_rows == 2_045


def test_sdv_baseline_refuses_bad_rows_and_sizes(split, baseline):
    with pytest.raises(EvaluationInputError, match=r"training table: 1 problem\(s\):\n  missing column\(s\) 'type'"):
        fit_sdv_baseline(split.train_sample.drop(columns="type"))
    with pytest.raises(FraudlabError, match="Invalid n_rows 0"):
        baseline.sample(0)


# --------------------------------------------------------------------------- the command


def test_evaluate_command_passes_its_flags_to_evaluate_files(tmp_path):
    with mock.patch("fraudlab.evaluate.report.evaluate_files") as evaluate_files:
        result = CliRunner().invoke(cli, ["evaluate", "--synthetic", "s.parquet", "-o", str(tmp_path),
                                          "--seed", "4", "--baseline", "--baseline-rows", "1000"])
    assert result.exit_code == 0, result.output
    evaluate_files.assert_called_once_with("reference", "s.parquet", tmp_path, seed=4, split_seed=0, baseline=True,
                                           baseline_rows=1000, echo=mock.ANY)


@pytest.mark.slow
def test_evaluate_command_writes_the_report(split, tmp_path):
    synthetic = tmp_path / "synthetic.parquet"
    split.train_sample.iloc[:3_000].to_parquet(synthetic)
    out = tmp_path / "report"
    result = CliRunner().invoke(cli, ["evaluate", "--real", "reference", "--synthetic", str(synthetic), "-o", str(out)])
    assert result.exit_code == 0, result.output
    figures = {"summary", "type_mix", "distributions", "correlations", "fraud_by_type", "fraud_pattern"}
    assert {p.name for p in out.iterdir()} == {"report.md", "result.json", *(f"{name}.png" for name in figures)}
    numbers = json.loads((out / "result.json").read_text())["synthetic"]
    report = (out / "report.md").read_text()
    assert f"| SDMetrics quality score |  | {numbers['fidelity']['quality_score']:.4f} |" in report
    assert "| all | 100.00% | 100.00% |" in report
    assert f"fraudlab evaluate --real reference --synthetic {synthetic}" in report
    assert all(f"![{name}]({name}.png)" in report for name in figures)
    assert "synthetic: rows obeying every accounting rule 100.00% (real 100.00%)" in result.output
    assert sum(p.stat().st_size for p in out.iterdir()) < 2_000_000


def test_evaluate_command_reports_a_missing_file(tmp_path):
    result = CliRunner().invoke(cli, ["evaluate", "--synthetic", str(tmp_path / "nope.parquet"), "-o", str(tmp_path)])
    assert isinstance(result.exception, FraudlabError)
    assert "No such transaction file" in str(result.exception)


def test_load_split_resolves_reference_and_files(tmp_path):
    from fraudlab.data.readers import write_transactions
    from fraudlab.data.reference import load_reference
    from fraudlab.data.splits import load_split

    assert load_split("reference", seed=0).sizes() == split_reference(seed=0).sizes()
    write_transactions(load_reference().sample, tmp_path / "real.parquet")
    from_file = load_split(tmp_path / "real.parquet", seed=1)
    assert len(from_file.train_sample) + len(from_file.test_sample) == 49_061


def test_report_compares_models_that_scored_different_columns(split, real_vs_real, tmp_path):
    """A model with overdraft rows is scored on that column, one without is not; the report shows both."""
    from fraudlab.evaluate.report import Evaluated, write_report

    with_overdrafts = split.train_sample.copy()
    with_overdrafts.loc[with_overdrafts.index[:50], "is_unauthorized_overdraft"] = True
    overdraft_result = evaluate(split, with_overdrafts, seed=0, **SMALL)
    assert overdraft_result.fidelity.column_shape("is_unauthorized_overdraft") is not None
    assert real_vs_real.fidelity.column_shape("is_unauthorized_overdraft") is None
    report = write_report(tmp_path, split, [Evaluated("overdrafts", with_overdrafts, overdraft_result),
                                            Evaluated("plain", split.train_sample, real_vs_real)])
    row = next(line for line in report.read_text().splitlines() if line.startswith("| is_unauthorized_overdraft |"))
    assert row.rstrip().endswith("| n/a |")
