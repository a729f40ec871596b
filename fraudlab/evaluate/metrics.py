"""Synthetic against real, measured: fidelity, validity, utility (TSTR) and privacy in one call.

"Statistically realistic" has to be a number a reader can check. :func:`evaluate`
compares a synthetic table with real rows along four axes and returns every
figure in one :class:`EvaluationResult` (also as a dict and JSON):

* **fidelity**: SDMetrics' ``QualityReport`` (column shapes, column pair
  trends) and ``DiagnosticReport`` (boundaries, categories, structure) over the
  modelled columns, with per-column and per-pair details;
* **validity**: the share of rows obeying each PaySim accounting rule of
  :mod:`fraudlab.schema.rules`, synthetic and real side by side;
* **utility**: train-synthetic-test-real (TSTR). One fraud classifier is trained
  on synthetic rows, one on real rows, both are tested on held-out real rows;
  PR-AUC and ROC-AUC and the ratio synthetic/real;
* **privacy**: distance to the closest real training record (DCR) of synthetic
  rows, against the same distance for real rows that were held out.

Real frauds are rare (0.13%), so the real side is a :class:`RealSplit`: the
bundled uniform sample plus the bundled file of all real frauds, split in two
by a seed with population weights (:func:`split_reference`). A synthesizer fitted
on ``split.train_sample`` (or ``split.train_rows()``) never sees a row of the test
half. Costly metrics run on seeded subsamples whose sizes are recorded in the
result, which keeps a 2,000,000-row synthetic table well under a minute.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import pandas as pd

from fraudlab import __version__
from fraudlab.data.splits import RealSplit, split_reference, split_table
from fraudlab.exceptions import InvalidParameterError
from fraudlab.plain import to_plain
from fraudlab.schema.rules import rule_pass_rates
from fraudlab.schema.table import BALANCE_COLUMNS, FLAG_COLUMNS, MONEY_COLUMNS, TRANSACTION_TYPES, check_table

if TYPE_CHECKING:
    from fraudlab.generate.synth import TransactionSynthesizer

__all__ = [
    "FIDELITY_ROWS",
    "MODELLED_COLUMNS",
    "PRIVACY_REFERENCE_ROWS",
    "PRIVACY_ROWS",
    "UTILITY_FEATURES",
    "UTILITY_ROWS",
    "ColumnScore",
    "EvaluationResult",
    "Fidelity",
    "PairScore",
    "Privacy",
    "Utility",
    "Validity",
    "evaluate",
    "measure_fidelity",
    "measure_privacy",
    "measure_utility",
    "measure_validity",
    "model_metrics",
    "quality_reports",
]

#: Columns a synthesizer models and the fidelity reports compare. ``is_unauthorized_overdraft`` joins only
#: when either table has a True value: a column that is False everywhere would inflate every score for free.
MODELLED_COLUMNS: tuple[str, ...] = ("type", "amount", *BALANCE_COLUMNS, "is_fraud", "is_unauthorized_overdraft")
#: What the TSTR classifier sees: no flag (``is_flagged_fraud`` is set only on frauds), no names, no step.
UTILITY_FEATURES: tuple[str, ...] = ("type", "amount", *BALANCE_COLUMNS)

#: Rows per side in the SDMetrics reports (its own default subsample, made explicit and seeded here).
FIDELITY_ROWS = 50_000
#: At most this many non-fraud rows (and as many frauds) per TSTR training or test set.
UTILITY_ROWS = 50_000
#: Synthetic and held-out real rows whose distance to the closest record is measured.
PRIVACY_ROWS = 10_000
#: At most this many real training rows to measure those distances against.
PRIVACY_REFERENCE_ROWS = 50_000

_TABLE = "transactions"
_HOLDOUT_PERCENTILE = 5.0
_VERSIONED = ("sdmetrics", "scikit-learn", "pandas", "numpy")
_Result = TypeVar("_Result")



# --------------------------------------------------------------------------- input checks


def _positive(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidParameterError(f"Invalid {name} {value!r}: give a whole number of rows of at least 1.")


def _subsample(table: pd.DataFrame, rows: int, rng: np.random.Generator) -> pd.DataFrame:
    """At most ``rows`` rows drawn uniformly without replacement, in their original order."""
    if len(table) <= rows:
        return table
    chosen = np.sort(rng.choice(len(table), size=rows, replace=False))
    return table.iloc[chosen]


def _rng(seed: int, stream: int) -> np.random.Generator:
    """One independent generator per metric, so changing one metric's draws leaves the others alone."""
    return np.random.default_rng([seed, stream])


# --------------------------------------------------------------------------- fidelity (SDMetrics)


@dataclass(frozen=True)
class ColumnScore:
    """One column's score in an SDMetrics property (KSComplement, TVComplement, BoundaryAdherence, ...)."""

    column: str
    metric: str
    score: float


@dataclass(frozen=True)
class PairScore:
    """One column pair's trend similarity; ``counts`` says whether SDMetrics' thresholds let it into the score."""

    column_1: str
    column_2: str
    metric: str
    score: float
    real_correlation: float
    synthetic_correlation: float
    real_association: float
    counts: bool


@dataclass(frozen=True)
class Fidelity:
    """SDMetrics' QualityReport and DiagnosticReport on the modelled columns.

    ``column_pair_trends_score`` follows SDMetrics' default: only pairs whose
    real correlation exceeds 0.5 (numeric pairs) or association 0.3 (others)
    count. ``all_pairs_score`` averages every pair, without that threshold.
    """

    quality_score: float
    column_shapes_score: float
    column_pair_trends_score: float
    all_pairs_score: float
    diagnostic_score: float
    data_validity_score: float
    data_structure_score: float
    column_shapes: tuple[ColumnScore, ...]
    column_pairs: tuple[PairScore, ...]
    data_validity: tuple[ColumnScore, ...]
    columns: tuple[str, ...]
    real_rows: int
    synthetic_rows: int

    def column_shape(self, column: str) -> float | None:
        """The column-shape score of ``column``; None when this evaluation did not score it.

        ``is_unauthorized_overdraft`` is scored only when either table has an
        overdraft row, so two evaluations may score different columns.
        """
        return _score_of(self.column_shapes, column)

    def column_validity(self, column: str) -> float | None:
        """The data-validity (boundary or category adherence) score of ``column``; None when not scored."""
        return _score_of(self.data_validity, column)


def _score_of(scores: tuple[ColumnScore, ...], column: str) -> float | None:
    return next((entry.score for entry in scores if entry.column == column), None)


def _fidelity_columns(real: pd.DataFrame, synthetic: pd.DataFrame) -> tuple[str, ...]:
    informative = bool(real["is_unauthorized_overdraft"].any() or synthetic["is_unauthorized_overdraft"].any())
    return tuple(c for c in MODELLED_COLUMNS if c != "is_unauthorized_overdraft" or informative)


def _sdmetrics_metadata(columns: tuple[str, ...]) -> dict[str, Any]:
    """SDMetrics' metadata dict for the modelled columns, written out rather than detected so it never drifts."""
    sdtypes = {"type": "categorical", **dict.fromkeys(MONEY_COLUMNS, "numerical"),
               **dict.fromkeys(FLAG_COLUMNS, "boolean")}
    return {"tables": {_TABLE: {"columns": {column: {"sdtype": sdtypes[column]} for column in columns}}}}


def _sdmetrics_frame(table: pd.DataFrame, columns: tuple[str, ...]) -> dict[str, pd.DataFrame]:
    """The table as SDMetrics takes it; ``type`` as text, since pandas categoricals make its crosstabs warn."""
    return {_TABLE: table.loc[:, list(columns)].astype({"type": str}).reset_index(drop=True)}


def _float(value: object) -> float:
    return float("nan") if value is None or pd.isna(value) else float(value)  # type: ignore[arg-type]


def _column_scores(details: pd.DataFrame) -> tuple[ColumnScore, ...]:
    return tuple(
        ColumnScore(column=str(row["Column"]), metric=str(row["Metric"]), score=_float(row["Score"]))
        for _, row in details.iterrows()
    )


def _pair_scores(all_pairs: pd.DataFrame, thresholded: pd.DataFrame) -> tuple[PairScore, ...]:
    """Scores of every pair; whether each counts, and the real association, come from the thresholded run.

    SDMetrics computes a pair's real association only to test it against a
    threshold, so the run without thresholds leaves it empty.
    """
    judged = {(row["Column 1"], row["Column 2"]): row for _, row in thresholded.iterrows()}
    pairs = []
    for _, row in all_pairs.iterrows():
        verdict = judged[(row["Column 1"], row["Column 2"])]
        pairs.append(PairScore(
            column_1=str(row["Column 1"]), column_2=str(row["Column 2"]), metric=str(row["Metric"]),
            score=_float(row["Score"]), real_correlation=_float(row["Real Correlation"]),
            synthetic_correlation=_float(row["Synthetic Correlation"]),
            real_association=_float(verdict["Real Association"]),
            counts=bool(pd.notna(verdict["Meets Threshold?"]) and verdict["Meets Threshold?"]),
        ))
    return tuple(pairs)


def _property_scores(report: Any) -> dict[str, float]:
    properties = report.get_properties()
    return {str(name): _float(score) for name, score in zip(properties["Property"], properties["Score"], strict=True)}


def quality_reports(
    real: pd.DataFrame, synthetic: pd.DataFrame, columns: tuple[str, ...], *, every_row: bool = False
) -> tuple[Any, Any]:
    """SDMetrics' QualityReport on ``columns``, twice: with its default pair thresholds, and over every column pair.

    The default counts only column pairs whose real correlation exceeds 0.5
    (or association 0.3), as ``sdv.evaluation`` reports it; the second
    averages every pair. With ``every_row`` SDMetrics does not draw its own
    (unseeded) subsample for contingency pairs: callers subsample first.
    """
    from sdmetrics.reports import QualityReport

    metadata = _sdmetrics_metadata(columns)
    real_data, synthetic_data = _sdmetrics_frame(real, columns), _sdmetrics_frame(synthetic, columns)
    default, every_pair = QualityReport(), QualityReport()
    every_pair.real_correlation_threshold = 0.0
    every_pair.real_association_threshold = 0.0
    for report in (default, every_pair):
        if every_row:
            report.num_rows_subsample = None
        report.generate(real_data, synthetic_data, metadata, verbose=False)
    return default, every_pair


def measure_fidelity(
    real: pd.DataFrame, synthetic: pd.DataFrame, *, seed: int = 0, max_rows: int = FIDELITY_ROWS
) -> Fidelity:
    """SDMetrics' QualityReport and DiagnosticReport on at most ``max_rows`` seeded rows per side.

    SDMetrics would otherwise draw its own unseeded 50,000-row subsample for
    contingency pairs; drawing it here makes the scores reproducible. The
    quality report runs twice: with SDMetrics' default correlation thresholds
    (the headline score, comparable with ``sdv.evaluation``) and without them
    (a score for every pair).
    """
    from sdmetrics.reports import DiagnosticReport

    _positive("max_rows", max_rows)
    real = _subsample(real, max_rows, _rng(seed, 10))
    synthetic = _subsample(synthetic, max_rows, _rng(seed, 11))
    columns = _fidelity_columns(real, synthetic)
    quality, all_pairs = quality_reports(real, synthetic, columns, every_row=True)
    diagnostic = DiagnosticReport()
    diagnostic.num_rows_subsample = None
    diagnostic.generate(_sdmetrics_frame(real, columns), _sdmetrics_frame(synthetic, columns),
                        _sdmetrics_metadata(columns), verbose=False)
    shapes = _property_scores(quality)
    diagnostics = _property_scores(diagnostic)
    pairs = _pair_scores(all_pairs.get_details("Column Pair Trends"), quality.get_details("Column Pair Trends"))
    return Fidelity(
        quality_score=_float(quality.get_score()),
        column_shapes_score=shapes["Column Shapes"],
        column_pair_trends_score=shapes["Column Pair Trends"],
        all_pairs_score=_float(np.nanmean([pair.score for pair in pairs])),
        diagnostic_score=_float(diagnostic.get_score()),
        data_validity_score=diagnostics["Data Validity"],
        data_structure_score=diagnostics["Data Structure"],
        column_shapes=_column_scores(quality.get_details("Column Shapes")),
        column_pairs=pairs,
        data_validity=_column_scores(diagnostic.get_details("Data Validity")),
        columns=columns,
        real_rows=len(real),
        synthetic_rows=len(synthetic),
    )


# --------------------------------------------------------------------------- validity


@dataclass(frozen=True)
class Validity:
    """Share of rows obeying each accounting rule (and ``all`` of them), synthetic and real, on every row."""

    synthetic: dict[str, float]
    real: dict[str, float]
    synthetic_rows: int
    real_rows: int


def measure_validity(real: pd.DataFrame, synthetic: pd.DataFrame) -> Validity:
    """Rule pass rates of both tables; the rules are vectorised, so no subsample is needed."""
    return Validity(
        synthetic=rule_pass_rates(synthetic), real=rule_pass_rates(real),
        synthetic_rows=len(synthetic), real_rows=len(real),
    )


# --------------------------------------------------------------------------- utility (TSTR)


@dataclass(frozen=True)
class Utility:
    """Train on synthetic, test on real (TSTR), next to train on real, test on real.

    Both classifiers are the same HistGradientBoostingClassifier on
    ``features``, trained with classes balanced, and tested on the held-out
    real rows weighted to the population (``test_prevalence``). The synthetic
    metrics are None (and ``note`` says why) when the synthetic rows lack one class.
    """

    pr_auc_real: float
    roc_auc_real: float
    pr_auc_synthetic: float | None
    roc_auc_synthetic: float | None
    pr_auc_ratio: float | None
    roc_auc_ratio: float | None
    test_prevalence: float
    test_rows: int
    test_frauds: int
    real_train_rows: int
    real_train_frauds: int
    synthetic_train_rows: int
    synthetic_train_frauds: int
    features: tuple[str, ...]
    note: str = ""


def _classifier_inputs(table: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    features = table.loc[:, list(UTILITY_FEATURES)].reset_index(drop=True)
    features["type"] = pd.Categorical(table["type"].astype(str).to_numpy(), categories=list(TRANSACTION_TYPES))
    return features, table["is_fraud"].to_numpy(dtype=bool)


def _balanced(labels: np.ndarray) -> np.ndarray:
    """Weights giving both classes the same total: the one transformation applied to real and synthetic alike."""
    positives = labels.sum()
    return np.where(labels, len(labels) / (2 * positives), len(labels) / (2 * (len(labels) - positives)))


def _capped_by_class(
    table: pd.DataFrame, weight: np.ndarray, n_nonfrauds: int, n_frauds: int, rng: np.random.Generator
) -> tuple[pd.DataFrame, np.ndarray]:
    """At most ``n_nonfrauds`` non-frauds and ``n_frauds`` frauds, weights scaled so each class keeps its total."""
    parts, weights = [], []
    for is_fraud, rows in ((False, n_nonfrauds), (True, n_frauds)):
        positions = np.flatnonzero(table["is_fraud"].to_numpy(dtype=bool) == is_fraud)
        kept = np.sort(rng.choice(positions, size=rows, replace=False)) if len(positions) > rows else positions
        parts.append(table.iloc[kept])
        weights.append(weight[kept] * (weight[positions].sum() / weight[kept].sum() if len(kept) else 1.0))
    return pd.concat(parts, ignore_index=True), np.concatenate(weights)


def _fit_and_score(
    train: pd.DataFrame, test: pd.DataFrame, test_weight: np.ndarray, seed: int
) -> tuple[float, float]:
    """Train the TSTR classifier and score the test rows: PR-AUC and ROC-AUC, population-weighted.

    It runs on one OpenMP thread: on tens of thousands of rows, threads
    waiting on a busy shared machine cost far more than they save (the
    timings are in ``docs/evaluation.md``), and the scores are the same.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import average_precision_score, roc_auc_score
    from threadpoolctl import threadpool_limits

    features, labels = _classifier_inputs(train)
    model = HistGradientBoostingClassifier(
        max_iter=200, learning_rate=0.1, l2_regularization=1.0, early_stopping=False, random_state=seed
    )
    test_features, test_labels = _classifier_inputs(test)
    with threadpool_limits(limits=1, user_api="openmp"):
        model.fit(features, labels, sample_weight=_balanced(labels))
        scores = model.predict_proba(test_features)[:, 1]
    return (
        float(average_precision_score(test_labels, scores, sample_weight=test_weight)),
        float(roc_auc_score(test_labels, scores, sample_weight=test_weight)),
    )


def _ratio(synthetic: float | None, real: float) -> float | None:
    return None if synthetic is None or real == 0 else synthetic / real


def measure_utility(
    split: RealSplit, synthetic: pd.DataFrame, *, seed: int = 0, max_rows: int = UTILITY_ROWS
) -> Utility:
    """PR-AUC and ROC-AUC on held-out real rows of a classifier trained on synthetic rows and of one trained on real.

    Each training set has at most ``max_rows`` non-frauds and ``max_rows``
    frauds; the synthetic one is drawn with the same class counts as the
    real one (fewer when the synthetic table has fewer), so the comparison is
    data against data, not size against size. The test set keeps every held-out
    fraud and at most ``max_rows`` non-frauds, re-weighted to the population.
    """
    _positive("max_rows", max_rows)
    real_train, real_weight = split.train_rows()
    real_train, _ = _capped_by_class(real_train, real_weight, max_rows, max_rows, _rng(seed, 20))
    test, test_weight = split.test_rows()
    test, test_weight = _capped_by_class(test, test_weight, max_rows, len(test), _rng(seed, 21))
    real_frauds = int(real_train["is_fraud"].sum())
    synthetic_train, _ = _capped_by_class(
        synthetic, np.ones(len(synthetic)), len(real_train) - real_frauds, real_frauds, _rng(seed, 22)
    )
    pr_real, roc_real = _fit_and_score(real_train, test, test_weight, seed)
    synthetic_frauds = int(synthetic_train["is_fraud"].sum())
    note = ""
    pr_synthetic: float | None = None
    roc_synthetic: float | None = None
    if 0 < synthetic_frauds < len(synthetic_train):
        pr_synthetic, roc_synthetic = _fit_and_score(synthetic_train, test, test_weight, seed)
    else:
        note = f"synthetic table has {synthetic_frauds:,} fraud rows out of {len(synthetic_train):,}: " \
               "a classifier needs both classes, so TSTR was skipped"
    test_labels = test["is_fraud"].to_numpy(dtype=bool)
    return Utility(
        pr_auc_real=pr_real, roc_auc_real=roc_real, pr_auc_synthetic=pr_synthetic, roc_auc_synthetic=roc_synthetic,
        pr_auc_ratio=_ratio(pr_synthetic, pr_real), roc_auc_ratio=_ratio(roc_synthetic, roc_real),
        test_prevalence=float(test_weight[test_labels].sum() / test_weight.sum()),
        test_rows=len(test), test_frauds=int(test_labels.sum()),
        real_train_rows=len(real_train), real_train_frauds=real_frauds,
        synthetic_train_rows=len(synthetic_train), synthetic_train_frauds=synthetic_frauds,
        features=UTILITY_FEATURES, note=note,
    )


# --------------------------------------------------------------------------- privacy (DCR)


@dataclass(frozen=True)
class Privacy:
    """Distance to the closest real training record (DCR), of synthetic rows and of held-out real rows.

    Distance is Gower-like, in [0, 1]: the mean over the columns ``type``,
    ``is_fraud`` (0 if equal, 1 if not) and the five money columns
    (``log1p``, divided by the training range). ``share_closer_than_holdout``
    is the share of synthetic rows nearer to a training row than the 5th
    percentile of the held-out rows' distances: about 0.05 for data as far
    from the training rows as new real data; 1.0 for copies.
    """

    dcr_median_synthetic: float
    dcr_median_holdout: float
    holdout_p5: float
    share_closer_than_holdout: float
    exact_copies_synthetic: float
    exact_copies_holdout: float
    synthetic_rows: int
    holdout_rows: int
    reference_rows: int


def _privacy_space(table: pd.DataFrame, low: np.ndarray, span: np.ndarray) -> np.ndarray:
    """Rows as points whose L1 distance divided by 7 is the Gower distance of :class:`Privacy`."""
    money = (np.log1p(np.clip(table[list(MONEY_COLUMNS)].to_numpy(dtype="float64"), 0, None)) - low) / span
    types = table["type"].astype(str).to_numpy()
    one_hot = 0.5 * (types[:, None] == np.asarray(TRANSACTION_TYPES)[None, :])
    return np.hstack([money, one_hot, table["is_fraud"].to_numpy(dtype="float64")[:, None]])


_PRIVACY_COLUMNS = len(MONEY_COLUMNS) + 2


def measure_privacy(
    split: RealSplit,
    synthetic: pd.DataFrame,
    *,
    seed: int = 0,
    max_rows: int = PRIVACY_ROWS,
    max_reference_rows: int = PRIVACY_REFERENCE_ROWS,
) -> Privacy:
    """DCR of at most ``max_rows`` synthetic and held-out rows to at most ``max_reference_rows`` training rows.

    Every distance is to the nearest of all reference rows (a k-d tree, not
    the quadratic all-pairs matrix); the subsamples bound the work and are
    recorded in the result.
    """
    from sklearn.neighbors import NearestNeighbors

    _positive("max_rows", max_rows)
    _positive("max_reference_rows", max_reference_rows)
    reference = _subsample(split.train_rows()[0], max_reference_rows, _rng(seed, 30))
    holdout = _subsample(split.test_sample, max_rows, _rng(seed, 31))
    queries = _subsample(synthetic, max_rows, _rng(seed, 32))
    logged = np.log1p(np.clip(reference[list(MONEY_COLUMNS)].to_numpy(dtype="float64"), 0, None))
    low, span = logged.min(axis=0), np.ptp(logged, axis=0)
    span[span == 0] = 1.0
    index = NearestNeighbors(n_neighbors=1, metric="manhattan", algorithm="kd_tree")
    index.fit(_privacy_space(reference, low, span))

    def dcr(table: pd.DataFrame) -> np.ndarray:
        return index.kneighbors(_privacy_space(table, low, span))[0][:, 0] / _PRIVACY_COLUMNS

    synthetic_dcr, holdout_dcr = dcr(queries), dcr(holdout)
    p5 = float(np.percentile(holdout_dcr, _HOLDOUT_PERCENTILE))
    return Privacy(
        dcr_median_synthetic=float(np.median(synthetic_dcr)),
        dcr_median_holdout=float(np.median(holdout_dcr)),
        holdout_p5=p5,
        share_closer_than_holdout=float((synthetic_dcr < p5).mean()),
        exact_copies_synthetic=float((synthetic_dcr == 0).mean()),
        exact_copies_holdout=float((holdout_dcr == 0).mean()),
        synthetic_rows=len(queries),
        holdout_rows=len(holdout),
        reference_rows=len(reference),
    )


# --------------------------------------------------------------------------- the one call


@dataclass(frozen=True)
class EvaluationResult:
    """Every figure of one evaluation, the inputs' sizes, the seeds and the library versions.

    ``seconds`` (time per section) is the one part that varies between runs
    with the same seed; everything else is deterministic.
    """

    fidelity: Fidelity
    validity: Validity
    utility: Utility
    privacy: Privacy
    seed: int
    split: dict[str, int | float]
    synthetic_rows: int
    versions: dict[str, str]
    seconds: dict[str, float] = field(default_factory=dict)

    def headline(self) -> dict[str, float | None]:
        """The few numbers a reader looks at first (also printed by ``fraudlab evaluate``)."""
        return {
            "quality_score": self.fidelity.quality_score,
            "column_shapes_score": self.fidelity.column_shapes_score,
            "column_pair_trends_score": self.fidelity.column_pair_trends_score,
            "diagnostic_score": self.fidelity.diagnostic_score,
            "rules_all_synthetic": self.validity.synthetic["all"],
            "rules_all_real": self.validity.real["all"],
            "pr_auc_synthetic": self.utility.pr_auc_synthetic,
            "pr_auc_real": self.utility.pr_auc_real,
            "pr_auc_ratio": self.utility.pr_auc_ratio,
            "roc_auc_ratio": self.utility.roc_auc_ratio,
            "dcr_share_closer_than_holdout": self.privacy.share_closer_than_holdout,
        }

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (NaN becomes None), ready for ``json.dumps``."""
        return to_plain(asdict(self))

    def to_json(self, indent: int = 2) -> str:
        """The result as strict JSON."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)


def _timed(seconds: dict[str, float], name: str, work: Callable[[], _Result]) -> _Result:
    start = time.perf_counter()
    result = work()
    seconds[name] = round(time.perf_counter() - start, 3)
    return result


def evaluate(
    real: RealSplit | pd.DataFrame,
    synthetic: pd.DataFrame,
    *,
    seed: int = 0,
    fidelity_rows: int = FIDELITY_ROWS,
    utility_rows: int = UTILITY_ROWS,
    privacy_rows: int = PRIVACY_ROWS,
    privacy_reference_rows: int = PRIVACY_REFERENCE_ROWS,
) -> EvaluationResult:
    """Compare ``synthetic`` with real rows: fidelity, validity, utility and privacy.

    Args:
        real: a :class:`RealSplit` (from :func:`split_reference`, the usual
            case, or :func:`split_table`), or one uniform real table, which
            is split here by ``seed``. Fidelity, validity and privacy compare
            with its held-out representative rows (``test_sample``).
        synthetic: the synthetic rows, canonical columns (extra ones ignored).
        seed: seeds every subsample and the classifiers; same seed, same figures.
        fidelity_rows: rows per side in the SDMetrics reports.
        utility_rows: non-frauds (and frauds) per TSTR training and test set.
        privacy_rows: synthetic and held-out rows whose DCR is measured.
        privacy_reference_rows: real training rows the DCR is measured against.

    Raises:
        EvaluationInputError: a table misses columns, has no rows, or holds NaN or invalid values.
        FraudlabError: a row budget is not a positive whole number.
    """
    budgets = {"fidelity_rows": fidelity_rows, "utility_rows": utility_rows, "privacy_rows": privacy_rows,
               "privacy_reference_rows": privacy_reference_rows}
    for name, value in budgets.items():
        _positive(name, value)
    split = real if isinstance(real, RealSplit) else split_table(real, seed=seed)
    synthetic = check_table(synthetic, "synthetic table")
    seconds: dict[str, float] = {}
    fidelity = _timed(seconds, "fidelity", lambda: measure_fidelity(
        split.test_sample, synthetic, seed=seed, max_rows=fidelity_rows))
    validity = _timed(seconds, "validity", lambda: measure_validity(split.test_sample, synthetic))
    utility = _timed(seconds, "utility", lambda: measure_utility(split, synthetic, seed=seed, max_rows=utility_rows))
    privacy = _timed(seconds, "privacy", lambda: measure_privacy(
        split, synthetic, seed=seed, max_rows=privacy_rows, max_reference_rows=privacy_reference_rows))
    return EvaluationResult(
        fidelity=fidelity, validity=validity, utility=utility, privacy=privacy, seed=seed,
        split=split.sizes(), synthetic_rows=len(synthetic),
        versions={"fraudlab": __version__, **{name: version(name) for name in _VERSIONED}},
        seconds=seconds,
    )


def model_metrics(model: TransactionSynthesizer, *, rows: int = 200_000, seed: int = 0) -> dict[str, Any]:
    """Headline figures of ``model`` against the held-out half of the bundled real rows, for its manifest.

    ``rows`` synthetic rows are judged by :func:`evaluate`
    on the real rows of ``split_reference(seed=0)`` that a ``--source
    reference`` model never saw (a model fitted on the Kaggle file itself
    may have seen them: its figures are then optimistic).
    """
    result = evaluate(split_reference(seed=0), model.sample(rows, seed=seed), seed=seed)
    return {**result.headline(), "evaluated_rows": rows, "evaluated_against": "bundled real rows, held-out half "
            "(split_reference seed 0)", "evaluation_seed": seed}
