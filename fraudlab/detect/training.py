"""What the detector learns from: generated account streams (features with history) and copula rows (cold).

The streams teach what histories look like (takeovers, card testing, mules, travellers); the copula rows, fitted on
20 lakh PaySim rows, teach what a single transaction looks like to a model that sees no history, which is how real
PaySim rows are scored (they carry no accounts). Each source gets the same total weight, so neither drowns the
other whatever their sizes; the model then balances the classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from fraudlab.detect import features as feature_definition
from fraudlab.detect.evaluate import (
    DetectionReport,
    ablation,
    choose_threshold,
    compare_on_real,
    ranking,
    scenario_table,
    threshold_curve,
)
from fraudlab.detect.model import Detector, DetectorParams, train_detector
from fraudlab.exceptions import DataValidationError, InvalidParameterError

if TYPE_CHECKING:
    from fraudlab.data.splits import RealSplit
    from fraudlab.enrich.geoip import AddressSpace, GeoIP
    from fraudlab.generate.synth import TransactionSynthesizer

__all__ = ["LabelledFeatures", "TrainingResult", "TrainingSet", "TrainingSettings", "combine", "copula_features",
           "evaluate", "fit", "generate_streams", "real_features", "run_training", "save_outputs", "score_file",
           "stream_features", "training_set"]


@dataclass(frozen=True)
class TrainingSettings:
    """Everything a training run depends on; its dict is logged to MLflow as the run's parameters.

    Attributes:
        accounts, days, stream_fraud_rate, stream_seed: the training stream (fraud enriched so the model sees
            thousands of scenario rows).
        copula_rows, copula_frauds, copula_seed: cold rows sampled from the pre-trained copula (frauds on top).
        eval_accounts, eval_days, eval_seed: the held-out stream, at the natural fraud rate and another seed.
        alert_budget: the largest share of traffic the alert threshold may flag.
        ablation: also retrain once without each feature family (slow: one training per family).
        params: the LightGBM hyper-parameters.
    """

    accounts: int = 10_000
    days: float = 30
    stream_fraud_rate: float = 0.01
    stream_seed: int = 7
    copula_rows: int = 200_000
    copula_frauds: int = 20_000
    copula_seed: int = 7
    eval_accounts: int = 10_000
    eval_days: float = 30
    eval_seed: int = 8
    alert_budget: float = 0.005
    ablation: bool = False
    params: DetectorParams = field(default_factory=DetectorParams)

    def __post_init__(self) -> None:
        for name in ("accounts", "eval_accounts", "copula_rows"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidParameterError(f"Invalid TrainingSettings.{name}={value!r}: use a positive integer.")
        if not 0 <= self.copula_frauds <= self.copula_rows:
            raise InvalidParameterError(f"Invalid TrainingSettings.copula_frauds={self.copula_frauds!r}: use a "
                                        f"number of rows in [0, copula_rows={self.copula_rows}].")
        if not 0 < self.alert_budget < 1:
            raise InvalidParameterError(f"Invalid TrainingSettings.alert_budget={self.alert_budget!r}: use a share "
                                        "in (0, 1), e.g. 0.005 for at most 0.5 % of traffic flagged.")

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["params"] = asdict(self.params)
        return values


@dataclass(frozen=True)
class LabelledFeatures:
    """Features, labels and weights of one source of rows, with each row's scenario when it has one."""

    source: str
    features: pd.DataFrame
    labels: np.ndarray
    weights: np.ndarray
    scenario: np.ndarray | None = None

    def __post_init__(self) -> None:
        if not len(self.features) == len(self.labels) == len(self.weights):
            raise InvalidParameterError(f"{self.source}: features, labels and weights differ in length")

    @property
    def frauds(self) -> int:
        return int(self.labels.sum())

    def describe(self) -> dict[str, Any]:
        return {"rows": len(self.labels), "frauds": self.frauds}


def stream_features(stream: pd.DataFrame, *, geoip: GeoIP, source: str = "stream") -> LabelledFeatures:
    """Features of a generated account stream, each transaction seeing its accounts' history."""
    features = feature_definition.compute_features(stream, geoip=geoip).reset_index(drop=True)
    return LabelledFeatures(source, features, stream["is_fraud"].to_numpy(dtype=bool), np.ones(len(stream)),
                            stream["scenario"].astype(str).to_numpy())


def generate_streams(settings: TrainingSettings, *, space: AddressSpace, synthesizer: TransactionSynthesizer,
                     progress: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The training stream (fraud enriched) and the held-out one (natural rate, another seed)."""
    from fraudlab.generate.accounts import StreamSettings, generate_stream

    train = StreamSettings(accounts=settings.accounts, days=settings.days, seed=settings.stream_seed,
                           fraud_rate=settings.stream_fraud_rate)
    held_out = StreamSettings(accounts=settings.eval_accounts, days=settings.eval_days, seed=settings.eval_seed)
    return (generate_stream(train, space=space, model=synthesizer, progress=progress),
            generate_stream(held_out, space=space, model=synthesizer, progress=progress))


def copula_features(synthesizer: TransactionSynthesizer, rows: int, frauds: int, *, seed: int) -> LabelledFeatures:
    """Cold features of ``rows`` copula rows at the natural fraud rate plus ``frauds`` fraud rows."""
    parts = [synthesizer.sample(rows - frauds, seed=seed)]
    if frauds:
        parts.append(synthesizer.sample(frauds, seed=seed + 1, conditions={"is_fraud": True}))
    table = pd.concat(parts, ignore_index=True)
    features = feature_definition.cold_features(table).reset_index(drop=True)
    return LabelledFeatures("copula", features, table["is_fraud"].to_numpy(dtype=bool), np.ones(len(table)))


def real_features(split: RealSplit) -> tuple[LabelledFeatures, LabelledFeatures]:
    """Cold features of the real training half and of the held-out half, weighted to the population."""
    parts = []
    for name, (table, weights) in (("real_train", split.train_rows()), ("real_test", split.test_rows())):
        features = feature_definition.cold_features(table).reset_index(drop=True)
        parts.append(LabelledFeatures(name, features, table["is_fraud"].to_numpy(dtype=bool), np.asarray(weights)))
    return parts[0], parts[1]


def combine(parts: Sequence[LabelledFeatures]) -> LabelledFeatures:
    """One training set in which every source carries the same total weight."""
    if not parts:
        raise InvalidParameterError("combine: no training sources given")
    weights = [part.weights / part.weights.sum() * len(part.weights) for part in parts]
    mean_size = np.mean([len(part.weights) for part in parts])
    weights = [w / len(w) * mean_size for w in weights]
    scenario = [part.scenario if part.scenario is not None else np.full(len(part.labels), part.source)
                for part in parts]
    return LabelledFeatures(
        "+".join(part.source for part in parts),
        pd.concat([part.features for part in parts], ignore_index=True),
        np.concatenate([part.labels for part in parts]),
        np.concatenate(weights),
        np.concatenate(scenario),
    )


@dataclass(frozen=True)
class TrainingResult:
    """The trained detector (threshold and metrics set), its evaluation and a few held-out rows' features."""

    detector: Detector
    report: DetectionReport
    example: pd.DataFrame


@dataclass(frozen=True)
class TrainingSet:
    """What a detector is fitted on: the stream and copula rows combined (equal weight per source), and what they
    were, for the report. Kept for the evaluation, which refits on it without a feature family."""

    rows: LabelledFeatures
    described: dict[str, Any]

    def save(self, path: Path) -> Path:
        """One parquet file: the feature columns, then label, weight and scenario; ``described`` in its metadata."""
        import json

        import pyarrow as pa
        import pyarrow.parquet as pq

        frame = self.rows.features.assign(**{_LABEL: self.rows.labels, _WEIGHT: self.rows.weights,
                                             _SCENARIO: self.rows.scenario})
        table = pa.Table.from_pandas(frame, preserve_index=False)
        saved = {"source": self.rows.source, "described": self.described}
        metadata = {**(table.schema.metadata or {}), _DESCRIBED_KEY: json.dumps(saved).encode()}
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table.replace_schema_metadata(metadata), path)
        return path

    @classmethod
    def load(cls, path: Path) -> TrainingSet:
        """Read what :meth:`save` wrote.

        Raises:
            DataValidationError: the file is not a training set (no label, weight or scenario column).
        """
        import json

        import pyarrow.parquet as pq

        table = pq.read_table(path)
        missing = sorted({_LABEL, _WEIGHT, _SCENARIO} - set(table.column_names))
        if missing or _DESCRIBED_KEY not in (table.schema.metadata or {}):
            raise DataValidationError(str(path), [f"not a training set written by TrainingSet.save: no column "
                                                  f"{name!r}" for name in missing] or
                                      ["not a training set written by TrainingSet.save: no description"])
        saved = json.loads(table.schema.metadata[_DESCRIBED_KEY])
        frame = table.to_pandas()
        rows = LabelledFeatures(saved["source"], frame.drop(columns=[_LABEL, _WEIGHT, _SCENARIO]),
                                frame[_LABEL].to_numpy(dtype=bool), frame[_WEIGHT].to_numpy(dtype=float),
                                frame[_SCENARIO].astype(str).to_numpy())
        return cls(rows, saved["described"])


_LABEL, _WEIGHT, _SCENARIO = "__label", "__weight", "__scenario"
_DESCRIBED_KEY = b"fraudlab.training_set"


def training_set(settings: TrainingSettings, train_stream: pd.DataFrame, *, geoip: GeoIP,
                 synthesizer: TransactionSynthesizer) -> TrainingSet:
    """The training stream's features with history next to cold copula rows, each source of equal weight."""
    stream = stream_features(train_stream, geoip=geoip)
    copula = copula_features(synthesizer, settings.copula_rows, settings.copula_frauds, seed=settings.copula_seed)
    return TrainingSet(combine([stream, copula]), {"stream": stream.describe(), "copula": copula.describe(),
                                                   "stream_seed": settings.stream_seed,
                                                   "copula_seed": settings.copula_seed})


def fit(settings: TrainingSettings, training: TrainingSet) -> Detector:
    """The detector fitted on the training set (no alert threshold yet: :func:`evaluate` sets it)."""
    rows = training.rows
    return train_detector(rows.features, rows.labels, weights=rows.weights, params=settings.params,
                          training_data=training.described)


def evaluate(settings: TrainingSettings, detector: Detector, training: TrainingSet, held_stream: pd.DataFrame, *,
             geoip: GeoIP, split: RealSplit) -> TrainingResult:
    """Judge the detector on real held-out rows (next to a model trained on real rows) and on the held-out stream,
    where the alert threshold is chosen within the alert budget; ablation too when the settings ask for it."""
    held_out = stream_features(held_stream, geoip=geoip, source="held-out stream")
    real_train, real_test = real_features(split)
    real = compare_on_real(detector, training.rows, real_train, real_test, params=settings.params)
    scores = detector.score(held_out.features)
    threshold = choose_threshold(scores, held_out.labels, budget=settings.alert_budget)
    table = (ablation(training.rows, held_out, real_test, params=settings.params, budget=settings.alert_budget,
                      full=detector) if settings.ablation else None)
    report = DetectionReport(
        real=real, stream=ranking(scores, held_out.labels), threshold=threshold,
        scenarios=scenario_table(scores, held_out.labels, held_out.scenario, threshold.value),
        curve=threshold_curve(scores, held_out.labels), ablation=table,
        training={**training.described, "held_out": held_out.describe(), "real_test": real_test.describe(),
                  "settings": settings.to_dict()},
    )
    evaluated = detector.with_evaluation(threshold=threshold.value, metrics=report.metrics())
    return TrainingResult(evaluated, report, held_out.features.head(5).reset_index(drop=True))


def run_training(settings: TrainingSettings, *, space: AddressSpace, geoip: GeoIP,
                 synthesizer: TransactionSynthesizer, split: RealSplit, progress: bool = True) -> TrainingResult:
    """Generate the streams, build the training set, fit, and evaluate (:func:`evaluate`), in one call."""
    from tqdm.auto import tqdm

    with tqdm(total=4, desc="Training", unit="step", disable=not progress) as bar:
        bar.set_postfix_str("streams")
        train_stream, held_stream = generate_streams(settings, space=space, synthesizer=synthesizer)
        bar.update()
        bar.set_postfix_str("features")
        training = training_set(settings, train_stream, geoip=geoip, synthesizer=synthesizer)
        bar.update()
        bar.set_postfix_str("training")
        detector = fit(settings, training)
        bar.update()
        bar.set_postfix_str("evaluation" + (" and ablation" if settings.ablation else ""))
        result = evaluate(settings, detector, training, held_stream, geoip=geoip, split=split)
        bar.update()
    return result


def save_outputs(result: TrainingResult, directory: Path) -> dict[str, Path]:
    """The detector (``detector.json`` + ``.onnx``), ``report.md``, ``report.json`` and the figures in ``directory``."""
    import json

    from fraudlab.detect.plots import report_figures

    directory.mkdir(parents=True, exist_ok=True)
    paths = {"manifest": result.detector.save(directory)}
    paths["report"] = directory / "report.md"
    paths["report"].write_text(result.report.to_markdown(), encoding="utf-8")
    paths["report_json"] = directory / "report.json"
    paths["report_json"].write_text(json.dumps(result.report.to_dict(), indent=2, default=str), encoding="utf-8")
    for name, figure in report_figures(result.report).items():
        paths[name] = directory / f"{name}.png"
        figure.savefig(paths[name])
    return paths


def score_file(detector: Detector, path: Path, *, geoip: GeoIP | None = None) -> pd.DataFrame:
    """Scores of every row of a transaction file: an account stream (with history) or any PaySim file (cold).

    An account stream (parquet or CSV with ``timestamp`` and ``user_id``) is featurised with its history and
    needs ``geoip`` for its addresses; a Kaggle, raw-log or canonical PaySim file is read by
    :func:`fraudlab.data.read_transactions` and scored cold. The result has the input's ``transaction_id`` (or
    its row number as ``row``), ``score`` and ``alert``.
    """
    from fraudlab.data.readers import read_transactions

    columns: set[str] = set()
    if path.is_file():
        if path.suffix == ".parquet":
            import pyarrow.parquet

            columns = set(pyarrow.parquet.read_schema(path).names)  # the footer only, not the rows
        else:
            columns = set(pd.read_csv(path, nrows=0).columns)
    if {"timestamp", "user_id"} <= columns:
        table = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, dtype={"ip_address": str})
        features = feature_definition.compute_features(table, geoip=geoip)
    else:
        table = read_transactions(path, progress=False)
        features = feature_definition.cold_features(table)
    scores = detector.score(features)
    ids = ({"transaction_id": table["transaction_id"].astype(str).to_numpy()} if "transaction_id" in table.columns
           else {"row": np.arange(len(table))})
    return pd.DataFrame({**ids, "score": scores, "alert": scores >= detector.threshold})
