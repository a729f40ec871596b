"""The fraud detector: LightGBM trained on the feature table, shipped and scored as ONNX.

Training (:func:`train_detector`) fits gradient-boosted trees with LightGBM and converts them at once to ONNX with
onnxmltools; a :class:`Detector` holds only the ONNX bytes (plus, right after training, the in-memory booster), so
the model that is evaluated, registered and served is one and the same file. Scoring needs numpy, pandas and
onnxruntime alone, which is what the Flink venv has: LightGBM and onnxmltools are imported inside training only.

Choices that matter to a caller:

* **float32 in, thresholds rounded down.** ONNX tree ensembles compare float32 inputs with float32 thresholds,
  while LightGBM keeps double thresholds. Features are therefore cast to float32 *before* training, and every
  split threshold ``t`` is replaced by the largest float32 ``<= t`` before conversion: for any float32 input
  ``x <= t`` holds exactly when ``x <= float32_down(t)``, so the ONNX trees route every row as LightGBM does
  (round-to-nearest alone sends rows equal to a rounded-up threshold the other way, and one such row in a
  hundred-thousand-dollar amount range moved a score by 0.23 in a test).
* **No missing values.** Features are finite by definition (``features.NO_PREVIOUS`` stands for "none"); NaN or
  infinity in training or in :meth:`Detector.score` is refused, naming the column, because LightGBM and the ONNX
  trees would not send a NaN down the same branch.
* **Class imbalance by weights.** With ``DetectorParams.balance_classes`` (the default) fraud rows are weighted so
  both classes carry the same total weight (the ``is_unbalance`` rule, times any caller weights). Scores are then
  not calibrated probabilities at the natural fraud rate, which is why the alert threshold is set by evaluation
  (:meth:`Detector.with_evaluation`), not assumed.
* **Verified files and bundles.** :meth:`Detector.save` writes ``detector.onnx`` and a JSON manifest holding its
  SHA-256 and the hash of the feature definition it was trained on; :meth:`Detector.load` refuses a file whose
  checksum, format or feature definition differs. :meth:`Detector.to_bytes` frames the same manifest and model as one
  message for the running Flink job (a new champion arrives on a Kafka topic, not as a path), and
  :meth:`Detector.from_bytes` checks it as ``load`` checks files, plus a SHA-256 over the whole frame. Nothing is
  ever unpickled.
* **Reasons by family occlusion.** :meth:`Detector.reasons` names the feature families (``features.FAMILIES``)
  whose replacement by a legitimate reference value lowers a row's score most. The reference of each feature is its
  median over the *legitimate* training rows, unweighted: a value real legitimate rows have (two sources of equal
  weight would put a weighted median of a flag on the fence between them), stored in the manifest.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import re
import struct
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from functools import cached_property
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import fraudlab
from fraudlab.artefacts import verified_bytes, verified_payload
from fraudlab.detect import features as feature_definition
from fraudlab.exceptions import DataValidationError, InvalidParameterError, ModelFileError

__all__ = [
    "BUNDLE_MAGIC",
    "BUNDLE_VERSION",
    "DEFAULT_DETECTOR",
    "DEFAULT_THRESHOLD",
    "FORMAT",
    "FORMAT_VERSION",
    "Detector",
    "DetectorParams",
    "train_detector",
]

FORMAT = "fraudlab-detector"
#: 2: the manifest carries ``references`` (what :meth:`Detector.reasons` replaces a family with); version 1 had none.
FORMAT_VERSION = 2
#: The committed pre-trained detector (its manifest; ``detector.onnx`` lies beside it).
DEFAULT_DETECTOR = Path(fraudlab.__file__).parent / "pretrained" / "detector.json"
#: The alert threshold of a detector no evaluation has tuned yet.
DEFAULT_THRESHOLD = 0.5
MANIFEST_FILE = "detector.json"
ONNX_FILE = "detector.onnx"
INPUT_NAME = "features"
_REMEDY = "retrain with `fraudlab train`"
#: A bundle (:meth:`Detector.to_bytes`): header (magic, layout version, manifest and ONNX lengths), the manifest as
#: compact sorted JSON, the ONNX bytes, then the SHA-256 of all that (the manifest is covered too, not only the model).
BUNDLE_MAGIC = b"FLDETECT"
BUNDLE_VERSION = 1
_BUNDLE_HEADER = struct.Struct(">8sIQQ")
_BUNDLE_DIGEST = hashlib.sha256().digest_size
#: Rows per onnxruntime call of :meth:`Detector.reasons` (each input row is stacked once per family, plus itself).
_OCCLUSION_ROWS = 65_536
_LIBRARIES = ("fraudlab", "lightgbm", "onnxmltools", "onnxruntime", "onnx", "numpy", "pandas")
_THRESHOLD_LINE = re.compile(r"^threshold=(.*)$", re.MULTILINE)
_TREE_SIZES_LINE = re.compile(r"^tree_sizes=.*\n", re.MULTILINE)


# --------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class DetectorParams:
    """LightGBM's hyper-parameters (scikit-learn names), with defaults for ~1M rows and 0.1-1 % fraud.

    Training is deterministic: LightGBM's ``deterministic`` and ``force_row_wise`` are always on and every random
    choice (bagging, feature sampling) derives from ``seed``. ``num_threads`` defaults to one because results are
    then the same on any machine, and because LightGBM's OpenMP threads spin: on a busy two-core machine two
    threads trained eight times slower than one.
    """

    n_estimators: int = 200
    num_leaves: int = 31
    learning_rate: float = 0.1
    min_child_samples: int = 20
    #: Share of rows each tree is grown on (LightGBM's bagging), redrawn every ``subsample_freq`` trees.
    subsample: float = 0.8
    subsample_freq: int = 1
    #: Share of features each tree may split on.
    colsample_bytree: float = 0.8
    reg_lambda: float = 1.0
    #: Weight fraud rows so both classes carry the same total weight (see the module docstring).
    balance_classes: bool = True
    num_threads: int = 1
    seed: int = 7

    def __post_init__(self) -> None:
        rules: dict[str, tuple[type, Any, str]] = {
            "n_estimators": (int, lambda v: v >= 1, "a positive integer"),
            "num_leaves": (int, lambda v: v >= 2, "an integer of at least 2"),
            "learning_rate": (float, lambda v: 0 < v <= 1, "a number in (0, 1]"),
            "min_child_samples": (int, lambda v: v >= 1, "a positive integer"),
            "subsample": (float, lambda v: 0 < v <= 1, "a share in (0, 1]"),
            "subsample_freq": (int, lambda v: v >= 0, "a non-negative integer (0 turns bagging off)"),
            "colsample_bytree": (float, lambda v: 0 < v <= 1, "a share in (0, 1]"),
            "reg_lambda": (float, lambda v: v >= 0, "a non-negative number"),
            "balance_classes": (bool, lambda v: True, "True or False"),
            "num_threads": (int, lambda v: v >= 1, "a positive integer"),
            "seed": (int, lambda v: 0 <= v < 2**31, "an integer in [0, 2**31)"),
        }
        for name, (kind, valid, allowed) in rules.items():
            value = getattr(self, name)
            if kind is bool:
                ok = isinstance(value, bool | np.bool_)
            elif kind is int:
                ok = isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)
            else:
                ok = isinstance(value, int | float | np.number) and not isinstance(value, bool | np.bool_)
                ok = ok and math.isfinite(value)
            if not ok or not valid(value):
                raise InvalidParameterError(f"Invalid DetectorParams.{name}={value!r}: use {allowed}.")
            object.__setattr__(self, name, kind(value))

    def lightgbm_params(self) -> dict[str, Any]:
        """The native ``lightgbm.train`` parameters these settings stand for."""
        return {
            "objective": "binary",
            "num_leaves": self.num_leaves,
            "learning_rate": self.learning_rate,
            "min_data_in_leaf": self.min_child_samples,
            "bagging_fraction": self.subsample,
            "bagging_freq": self.subsample_freq if self.subsample < 1 else 0,
            "feature_fraction": self.colsample_bytree,
            "lambda_l2": self.reg_lambda,
            "seed": self.seed,
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": self.num_threads,
            "verbose": -1,
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> DetectorParams:
        """Rebuild from :func:`dataclasses.asdict` output; unknown names are refused, naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InvalidParameterError(f"Unknown DetectorParams field(s) {unknown}; known: {sorted(known)}.")
        return cls(**values)


# --------------------------------------------------------------------------- input checks


def _check_feature_names(names: Sequence[str]) -> tuple[str, ...]:
    if isinstance(names, str):
        raise InvalidParameterError(f"Invalid feature_names {names!r}: pass a sequence of names, not one string.")
    names = tuple(names)
    if not names:
        raise InvalidParameterError("Invalid feature_names (): give at least one name of features.FEATURES.")
    unknown = [name for name in names if name not in feature_definition.FEATURES]
    if unknown:
        raise InvalidParameterError(f"Unknown feature name(s) {unknown}: every name must be one of "
                                    "fraudlab.detect.features.FEATURES.")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise InvalidParameterError(f"Feature name(s) {repeated} given more than once in feature_names.")
    return names


def _feature_matrix(frame: pd.DataFrame, names: tuple[str, ...], source: str) -> np.ndarray:
    """The columns ``names`` of ``frame`` as a C-ordered float32 matrix; every problem is collected, then raised."""
    if not isinstance(frame, pd.DataFrame):
        raise InvalidParameterError(f"Invalid {source}: expected a pandas DataFrame, got {type(frame).__name__}.")
    missing = [name for name in names if name not in frame.columns]
    if missing:
        raise DataValidationError(source, [f"missing column(s) {missing}"])
    repeated = [name for name in names if (frame.columns == name).sum() > 1]
    if repeated:
        raise DataValidationError(source, [f"column(s) {repeated} appear more than once"])
    matrix = np.empty((len(frame), len(names)), dtype=np.float32)
    problems = []
    for j, name in enumerate(names):
        column = frame[name]
        if not pd.api.types.is_numeric_dtype(column.dtype):
            problems.append(f"column {name!r} is not numeric (dtype {column.dtype})")
            continue
        matrix[:, j] = column.to_numpy(dtype=np.float32, na_value=np.nan)
    if not problems:
        bad = np.flatnonzero(~np.isfinite(matrix).all(axis=0))
        problems = [f"column {names[j]!r} has {int((~np.isfinite(matrix[:, j])).sum()):,} NaN or infinite value(s) "
                    "(beyond float32 range counts as infinite); features must be finite" for j in bad]
    if problems:
        raise DataValidationError(source, problems)
    return matrix


def _labels(labels: Any, rows: int) -> np.ndarray:
    y = np.asarray(labels)
    if y.shape != (rows,):
        raise InvalidParameterError(f"Invalid labels: expected {rows:,} labels, one per feature row, got shape "
                                    f"{y.shape}.")
    if not np.isin(y, (0, 1)).all():
        raise DataValidationError("training labels", ["labels must be 0/1 or False/True (is_fraud); found "
                                                      f"{sorted(set(np.unique(y).tolist()) - {0, 1})[:5]}"])
    y = y.astype(np.int8)
    frauds = int(y.sum())
    if frauds == 0:
        raise DataValidationError("training labels", [f"no fraud rows among the {rows:,} training rows: a detector "
                                                      "needs positive examples; train on a table with frauds"])
    if frauds == rows:
        raise DataValidationError("training labels", [f"no genuine rows: all {rows:,} training rows are frauds"])
    return y


def _weights(weights: Any, rows: int) -> np.ndarray | None:
    if weights is None:
        return None
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (rows,) or not np.isfinite(w).all() or (w < 0).any():
        raise InvalidParameterError(f"Invalid weights: expected {rows:,} finite non-negative numbers, one per row.")
    return w


def _json_safe(value: Mapping[str, Any], what: str) -> dict[str, Any]:
    """A plain-JSON copy of ``value`` (numpy scalars and arrays converted), so a manifest can always be written."""

    def convert(obj: Any) -> Any:
        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
        if isinstance(obj, Path):
            return str(obj)
        raise TypeError(f"{type(obj).__name__} is not JSON serialisable")

    try:
        return json.loads(json.dumps(dict(value), default=convert))
    except (TypeError, ValueError) as exc:
        raise InvalidParameterError(f"Invalid {what}: it must be a mapping of JSON values ({exc}).") from exc


def _check_references(references: Any, names: tuple[str, ...]) -> tuple[float, ...]:
    """Finite numbers, one per feature, as float32 values: the model compares float32, so nothing else is meant."""
    values = tuple(references) if isinstance(references, Sequence) and not isinstance(references, str) else ()
    numbers = all(isinstance(v, int | float | np.number) and not isinstance(v, bool | np.bool_) for v in values)
    largest = float(np.finfo(np.float32).max)
    if len(values) != len(names) or not numbers or not all(abs(float(v)) <= largest for v in values):
        raise InvalidParameterError(f"Invalid references {str(references)[:80]}: give {len(names)} finite numbers, "
                                    "one per feature name (train_detector computes them).")
    return tuple(np.asarray(values, dtype=np.float32).tolist())


def _check_threshold(threshold: Any) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, int | float | np.number) or not 0 <= threshold <= 1:
        raise InvalidParameterError(f"Invalid threshold {threshold!r}: the alert threshold is a score in [0, 1].")
    return float(threshold)


# --------------------------------------------------------------------------- training


def _float32_thresholds(booster: Any) -> Any:
    """A copy of ``booster`` whose split thresholds are rounded *down* to float32 (see the module docstring).

    Equal to the original on every float32 input, and converted to ONNX without rounding. LightGBM's model text
    lists each tree's thresholds on one ``threshold=`` line; ``tree_sizes`` (byte offsets that the new numbers
    would invalidate) is optional and dropped. Only numerical splits exist: training declares no categorical
    feature.
    """
    import lightgbm

    def round_down(match: re.Match[str]) -> str:
        exact = np.array(match.group(1).split(), dtype=np.float64)
        rounded = exact.astype(np.float32)
        up = rounded.astype(np.float64) > exact
        rounded[up] = np.nextafter(rounded[up], np.float32(-np.inf))
        return "threshold=" + " ".join(repr(float(v)) for v in rounded)

    text = _TREE_SIZES_LINE.sub("", _THRESHOLD_LINE.sub(round_down, booster.model_to_string()))
    return lightgbm.Booster(model_str=text)


def _to_onnx(booster: Any, names: tuple[str, ...], schema: str) -> bytes:
    """ONNX bytes of a binary booster: input ``features`` float32 ``[N, len(names)]``, one output ``[N, 2]``.

    onnxmltools also declares a ``label`` output with a wrong static shape (``[1]``), which onnxruntime warns
    about on every batch; the graph keeps only the probabilities. The feature names and schema hash travel in
    the file's metadata too, so the ONNX file describes itself in MLflow or anywhere else.
    """
    import onnx
    from onnxmltools import convert_lightgbm
    from onnxmltools.convert.common.data_types import FloatTensorType

    model = convert_lightgbm(booster, name="fraudlab_detector", zipmap=False,
                             initial_types=[(INPUT_NAME, FloatTensorType([None, len(names)]))])
    probabilities = [output for output in model.graph.output if output.name != "label"]
    if len(probabilities) != 1:
        raise RuntimeError(f"onnxmltools produced outputs {[o.name for o in model.graph.output]}; expected "
                           "'label' and one probability output")
    del model.graph.output[:]
    model.graph.output.extend(probabilities)
    # onnxmltools lists the opsets in set order, which varies between Python processes: sort them, so the same
    # training gives the same bytes (and the same detector version) in every run.
    opsets = sorted((opset.domain, opset.version) for opset in model.opset_import)
    del model.opset_import[:]
    for domain, version in opsets:
        model.opset_import.add(domain=domain, version=version)
    for key, value in (("fraudlab.feature_names", json.dumps(list(names))), ("fraudlab.feature_schema", schema)):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            versions[name] = package_version(name)
        except PackageNotFoundError:
            continue
    return versions


def train_detector(features: pd.DataFrame, labels: Any, *, weights: Any = None,
                   feature_names: Sequence[str] = feature_definition.FEATURES, params: DetectorParams | None = None,
                   training_data: Mapping[str, Any] | None = None) -> Detector:
    """Train a detector on a feature table and export it to ONNX.

    Args:
        features: one row per transaction with (at least) the columns ``feature_names``; extra columns are ignored.
        labels: ``is_fraud`` per row (0/1 or bool), in the frame's row order.
        weights: optional non-negative row weights (e.g. from a reweighted sample); multiplied by the class balance.
        feature_names: the model's inputs, in order; a subset of ``features.FEATURES`` (the ablation drops families).
        params: hyper-parameters; ``DetectorParams()`` when omitted.
        training_data: a JSON-safe description kept in the manifest (source, seeds, ...), merged with the
            fingerprint computed here (rows, frauds, sha256 over the float32 feature matrix, labels and weights).

    The detector also keeps each feature's median over the genuine rows as its reference for
    :meth:`Detector.reasons`: computed here because only training sees which rows are legitimate.

    Raises:
        InvalidParameterError: an unknown or repeated feature name, bad weights, params or ``training_data``.
        DataValidationError: missing or non-numeric columns, NaN/inf values, labels without fraud rows.
    """
    params = DetectorParams() if params is None else params
    if not isinstance(params, DetectorParams):
        raise InvalidParameterError(f"Invalid params {params!r}: pass a DetectorParams.")
    names = _check_feature_names(feature_names)
    matrix = _feature_matrix(features, names, "training features")
    y = _labels(labels, len(matrix))
    w = _weights(weights, len(matrix))
    described = _json_safe(training_data or {}, "training_data")

    base = np.ones(len(y)) if w is None else w
    genuine_weight, fraud_weight = float(base[y == 0].sum()), float(base[y == 1].sum())
    if genuine_weight <= 0 or fraud_weight <= 0:
        raise InvalidParameterError("Invalid weights: the fraud rows and the genuine rows each need a positive total "
                                    f"weight (got {fraud_weight:g} and {genuine_weight:g}).")
    positive_weight = genuine_weight / fraud_weight if params.balance_classes else 1.0
    sample_weight = base * np.where(y == 1, positive_weight, 1.0)

    digest = hashlib.sha256(matrix.tobytes())
    digest.update(y.tobytes())
    if w is not None:
        digest.update(w.tobytes())
    fingerprint = {"rows": len(y), "frauds": int(y.sum()), "fraud_rate": float(y.mean()), "sha256": digest.hexdigest(),
                   "weighted": w is not None, "positive_weight": positive_weight}

    import lightgbm

    native = params.lightgbm_params()
    dataset = lightgbm.Dataset(matrix, label=y, weight=sample_weight, feature_name=list(names), params=native)
    booster = _float32_thresholds(lightgbm.train(native, dataset, num_boost_round=params.n_estimators))
    schema = feature_definition.schema_hash()
    return Detector(
        feature_names=names, feature_schema=schema, params=params, onnx_bytes=_to_onnx(booster, names, schema),
        references=tuple(np.median(matrix[y == 0], axis=0).tolist()),
        training_data={**described, **fingerprint}, libraries=_library_versions(),
        created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), booster=booster,
    )


# --------------------------------------------------------------------------- the detector


def _new_session(onnx_bytes: bytes) -> Any:
    """An onnxruntime session on one core: one intra-op and one inter-op thread, CPU provider, warnings off."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(onnx_bytes, sess_options=options, providers=["CPUExecutionProvider"])


def _atomic_write(path: Path, payload: bytes) -> None:
    """Write ``payload`` to a temporary file beside ``path``, fsync, rename: readers see old or new, never half."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(temporary, 0o644)  # mkstemp creates it private; a model file is meant to be read by others
        with os.fdopen(handle, "wb") as out:
            out.write(payload)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _manifest_path(path: str | Path) -> Path:
    path = Path(path)
    return path if path.suffix == ".json" else path / MANIFEST_FILE


@dataclass(frozen=True, eq=False)
class Detector:
    """A trained fraud detector: ONNX bytes plus what is needed to trust and use them.

    Attributes:
        feature_names: the model's inputs, in the order of the ONNX input's columns.
        feature_schema: ``features.schema_hash()`` when it was trained; :meth:`load` refuses any other.
        params: the hyper-parameters it was trained with.
        onnx_bytes: the model; ``sha256`` and ``version`` are computed from them.
        references: per feature, in ``feature_names`` order, the median over the legitimate training rows (rounded
            to float32, the model's input type): the "nothing unusual here" value :meth:`reasons` puts in a
            family's place.
        threshold: the alert threshold of :meth:`alerts` (set by evaluation, :data:`DEFAULT_THRESHOLD` before).
        metrics: evaluation results kept in the manifest.
        training_data: the fingerprint of the training rows plus the caller's description of them.
        libraries: library versions at training time.
        created_at: training time, UTC.
        booster: the LightGBM booster the ONNX was converted from, right after training only (``None`` once
            loaded: files hold ONNX alone). Its thresholds are float32; give it float32 inputs.
    """

    feature_names: tuple[str, ...]
    feature_schema: str
    params: DetectorParams
    onnx_bytes: bytes = field(repr=False)
    references: tuple[float, ...] = field(repr=False)
    threshold: float = DEFAULT_THRESHOLD
    metrics: dict[str, Any] = field(default_factory=dict)
    training_data: dict[str, Any] = field(default_factory=dict)
    libraries: dict[str, str] = field(default_factory=dict)
    created_at: str = ""
    booster: Any = field(default=None, repr=False)
    _session: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "feature_names", tuple(self.feature_names))
        object.__setattr__(self, "threshold", _check_threshold(self.threshold))
        object.__setattr__(self, "references", _check_references(self.references, self.feature_names))

    def __getstate__(self) -> dict[str, Any]:
        """Picklable for transport (a Flink or multiprocessing worker); the session is rebuilt on first use."""
        return {**self.__dict__, "_session": None}

    @cached_property
    def sha256(self) -> str:
        """SHA-256 of the ONNX bytes: what the manifest records and :meth:`load` checks."""
        return hashlib.sha256(self.onnx_bytes).hexdigest()

    @property
    def version(self) -> str:
        """A short identifier of the model: the first 12 hex digits of :attr:`sha256`."""
        return self.sha256[:12]

    # ---- scoring
    @property
    def session(self) -> Any:
        """The onnxruntime session, created on first use and reused (``run`` is thread-safe)."""
        if self._session is None:
            object.__setattr__(self, "_session", _new_session(self.onnx_bytes))
        return self._session

    def feature_matrix(self, frame: pd.DataFrame) -> np.ndarray:
        """The float32 input matrix of ``frame`` (columns ``feature_names``, extra columns ignored), checked.

        Raises:
            DataValidationError: missing or non-numeric columns, NaN or infinite values; each column named.
        """
        return _feature_matrix(frame, self.feature_names, "features to score")

    def _matrix(self, x: np.ndarray) -> np.ndarray:
        """``x`` as the C-ordered float32 matrix the session takes; only its shape is checked (the hot path)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != len(self.feature_names):
            raise InvalidParameterError(f"Invalid feature matrix of shape {x.shape}: expected (rows, "
                                        f"{len(self.feature_names)}) in the order of feature_names.")
        return x

    def _run(self, x: np.ndarray) -> np.ndarray:
        """The fraud probabilities of a non-empty checked matrix (float64)."""
        return self.session.run(None, {INPUT_NAME: x})[0][:, 1].astype(np.float64)

    def score_matrix(self, x: np.ndarray) -> np.ndarray:
        """Fraud scores (float64, in [0, 1]) of a matrix already in feature order, e.g. from a Flink pandas UDF.

        The hot path: only the shape is checked; values should be finite float32 (other dtypes are cast).
        """
        x = self._matrix(x)
        return self._run(x) if len(x) else np.empty(0, dtype=np.float64)

    @cached_property
    def _family_masks(self) -> dict[str, np.ndarray]:
        """Each feature family the model has columns of (``features.FAMILIES`` order): a mask over its columns.

        A detector trained without a family (the ablation's) has no columns of it, so it is never a reason.
        """
        masks = {family: np.isin(self.feature_names, names) for family, names in feature_definition.FAMILIES.items()}
        return {family: mask for family, mask in masks.items() if mask.any()}

    @cached_property
    def _occlusion_masks(self) -> np.ndarray:
        """``(1 + families, features)``: no column replaced (the row as given), then each family's columns."""
        return np.array([np.zeros(len(self.feature_names), dtype=bool), *self._family_masks.values()])

    @property
    def families(self) -> tuple[str, ...]:
        """The feature families :meth:`reasons` can name, in ``features.FAMILIES`` order."""
        return tuple(self._family_masks)

    def _occlusion_drops(self, x: np.ndarray) -> np.ndarray:
        """``(rows, families)``: how much each row's score falls when a family's columns take their references.

        Each row is scored as given and once per family with that family replaced, all in one onnxruntime call
        per chunk of rows, so an untouched family (already at its references) falls by exactly zero; chunks
        bound the memory of the stacked copies on a large batch.
        """
        masks = self._occlusion_masks[:, np.newaxis, :]
        reference = np.asarray(self.references, dtype=np.float32)
        drops = np.empty((len(x), len(masks) - 1), dtype=np.float64)
        step = max(1, _OCCLUSION_ROWS // len(masks))
        for start in range(0, len(x), step):
            part = x[start:start + step]
            stacked = np.where(masks, reference, part[np.newaxis])
            scores = self._run(stacked.reshape(-1, x.shape[1])).reshape(len(masks), len(part))
            drops[start:start + step] = (scores[0] - scores[1:]).T
        return drops

    def reasons(self, x: np.ndarray, top: int = 3) -> list[tuple[str, ...]]:
        """The top reasons for each row's score: the feature families whose occlusion lowers it the most.

        Family occlusion: a family's columns are replaced by their :attr:`references` (the legitimate median)
        and the row is rescored; the families whose replacement lowers the score, largest fall first, at most
        ``top`` of them, are the reasons (``features.FAMILIES`` keys). A family whose replacement raises or keeps
        the score is no reason, so a row that looks legitimate may have fewer than ``top``, or none. The cost is
        ``len(families) + 1`` scored rows per row: meant for alerted rows, affordable on a whole batch.

        Args:
            x: the matrix :meth:`score_matrix` takes (rows in ``feature_names`` order, float32 or castable).
            top: how many reasons at most, from 1 to ``len(families)``.

        Raises:
            InvalidParameterError: ``top`` out of range, or a matrix of the wrong shape.
        """
        families = self.families
        if isinstance(top, bool | np.bool_) or not isinstance(top, int | np.integer) or not 1 <= top <= len(families):
            raise InvalidParameterError(f"Invalid top={top!r}: ask for 1 to {len(families)} reasons (this detector's "
                                        f"feature families: {list(families)}).")
        x = self._matrix(x)
        if not len(x):
            return []
        drops = self._occlusion_drops(x)
        order = np.argsort(-drops, axis=1, kind="stable")[:, :top]
        named = np.take_along_axis(drops, order, axis=1) > 0
        labels = np.array(families, dtype=object)
        return [tuple(labels[ranked[keep]]) for ranked, keep in zip(order, named, strict=True)]

    def score(self, frame: pd.DataFrame) -> np.ndarray:
        """Fraud scores (float64, in [0, 1]) of a feature table, one per row."""
        return self.score_matrix(self.feature_matrix(frame))

    def alerts(self, frame: pd.DataFrame) -> np.ndarray:
        """True where a row's score reaches the alert :attr:`threshold`."""
        return self.score(frame) >= self.threshold

    def with_evaluation(self, *, threshold: float, metrics: Mapping[str, Any]) -> Detector:
        """A copy with the alert threshold and the metrics an evaluation chose (same model, same version)."""
        copy = replace(self, threshold=_check_threshold(threshold), metrics=_json_safe(metrics, "metrics"))
        object.__setattr__(copy, "_session", self._session)
        return copy

    # ---- persistence
    def manifest(self) -> dict[str, Any]:
        """What :meth:`save` writes as ``detector.json``."""
        return {
            "format": FORMAT, "format_version": FORMAT_VERSION, "model_file": ONNX_FILE, "sha256": self.sha256,
            "bytes": len(self.onnx_bytes), "version": self.version,
            "feature_names": list(self.feature_names), "feature_schema": self.feature_schema,
            "references": dict(zip(self.feature_names, self.references, strict=True)),
            "threshold": self.threshold, "metrics": self.metrics, "training_data": self.training_data,
            "params": asdict(self.params), "libraries": self.libraries, "created_at": self.created_at,
        }

    def save(self, directory: str | Path) -> Path:
        """Write ``detector.onnx`` and its manifest ``detector.json`` into ``directory``; return the manifest path.

        Each file is replaced atomically, the model first: a reader racing the save sees the old manifest with
        the new model at worst, which its SHA-256 check refuses, never a half-written file.
        """
        manifest_path = _manifest_path(directory)
        if manifest_path.name != MANIFEST_FILE:
            raise InvalidParameterError(f"Invalid detector path {str(directory)!r}: give a directory (or its "
                                        f"{MANIFEST_FILE}).")
        manifest_path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(manifest_path.parent / ONNX_FILE, self.onnx_bytes)
        _atomic_write(manifest_path, (json.dumps(self.manifest(), indent=2, sort_keys=True) + "\n").encode())
        return manifest_path

    @staticmethod
    def read_manifest(path: str | Path) -> dict[str, Any]:
        """The manifest of a saved detector (its directory or its ``.json``), not yet verified."""
        manifest_path = _manifest_path(path)
        if not manifest_path.is_file():
            raise ModelFileError(f"No detector manifest at {manifest_path}: a saved detector is a directory with "
                                 f"{MANIFEST_FILE} and detector.onnx (train one with `fraudlab train`).")
        try:
            manifest = json.loads(manifest_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ModelFileError(f"The detector manifest {manifest_path} is not valid JSON: {exc}") from exc
        if not isinstance(manifest, dict):
            raise ModelFileError(f"The detector manifest {manifest_path} is not a JSON object.")
        return manifest

    def to_bytes(self) -> bytes:
        """The detector as one self-describing, verifiable bundle: what goes on the model-updates Kafka topic.

        The manifest and the ONNX bytes of :meth:`save`, framed so :meth:`from_bytes` can tell a truncated or
        altered message from a model: lengths in a header, a SHA-256 over everything at the end. The same detector
        gives the same bytes (sorted JSON, nothing time-dependent added), so a re-sent model is recognisable.
        """
        manifest = json.dumps(self.manifest(), sort_keys=True, separators=(",", ":")).encode()
        body = (_BUNDLE_HEADER.pack(BUNDLE_MAGIC, BUNDLE_VERSION, len(manifest), len(self.onnx_bytes))
                + manifest + self.onnx_bytes)
        return body + hashlib.sha256(body).digest()

    @classmethod
    def from_bytes(cls, data: bytes) -> Detector:
        """The detector of a :meth:`to_bytes` bundle, verified as :meth:`load` verifies files; nothing is unpickled.

        Raises:
            InvalidParameterError: ``data`` is not bytes.
            ModelFileError: not a bundle, a layout version this fraudlab does not read, truncated or longer than
                its header says, a SHA-256 that does not match (corrupted or tampered with), or what :meth:`load`
                refuses in the manifest and model.
        """
        if not isinstance(data, bytes | bytearray | memoryview):
            raise InvalidParameterError(f"Invalid detector bundle of type {type(data).__name__}: pass the bytes "
                                        "Detector.to_bytes made.")
        data = bytes(data)
        frame = _BUNDLE_HEADER.size + _BUNDLE_DIGEST
        if len(data) < frame or not data.startswith(BUNDLE_MAGIC):
            raise ModelFileError(f"Not a fraudlab detector bundle: {len(data):,} bytes starting {data[:8]!r}; a bundle "
                                 f"starts with {BUNDLE_MAGIC!r} and has at least {frame} bytes (Detector.to_bytes).")
        _, layout, manifest_size, model_size = _BUNDLE_HEADER.unpack_from(data)
        if layout != BUNDLE_VERSION:
            raise ModelFileError(f"Detector bundle layout version {layout} is not one this fraudlab reads (version "
                                 f"{BUNDLE_VERSION}); re-send the detector with this fraudlab's Detector.to_bytes.")
        expected = frame + manifest_size + model_size
        if len(data) != expected:
            state = "truncated" if len(data) < expected else "longer than its header says"
            raise ModelFileError(f"The detector bundle is {state}: {len(data):,} bytes, its header declares "
                                 f"{expected:,} ({manifest_size:,} of manifest, {model_size:,} of ONNX); not loaded.")
        body = data[:-_BUNDLE_DIGEST]
        if hashlib.sha256(body).digest() != data[-_BUNDLE_DIGEST:]:
            raise ModelFileError("The detector bundle's SHA-256 does not match the one it ends with: it was corrupted "
                                 "or tampered with after Detector.to_bytes; not loaded.")
        start = _BUNDLE_HEADER.size
        try:
            manifest = json.loads(body[start:start + manifest_size])
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ModelFileError(f"The detector bundle's manifest is not valid JSON: {exc}") from exc
        if not isinstance(manifest, dict):
            raise ModelFileError("The detector bundle's manifest is not a JSON object.")
        source = f"detector bundle of version {str(manifest.get('version'))[:12]}"
        payload = verified_bytes(body[start + manifest_size:], manifest, source=source, manifest_name="its manifest",
                                 format_key="format", format_name=FORMAT, format_version=FORMAT_VERSION,
                                 remedy=_REMEDY)
        return cls._from_verified(manifest, payload, source)

    @classmethod
    def load(cls, path: str | Path) -> Detector:
        """Load a saved detector (its directory or its ``.json``) after verifying it; only JSON and ONNX are read.

        Raises:
            ModelFileError: a missing file, an unknown format or format version (version 1 manifests carry no
                references: retrain), an ONNX file whose SHA-256 is not the manifest's, a detector trained on
                another feature definition, or a malformed manifest.
        """
        manifest_path = _manifest_path(path)
        manifest = cls.read_manifest(manifest_path)
        model_path = manifest_path.parent / Path(str(manifest.get("model_file", ONNX_FILE))).name
        payload = verified_payload(model_path, manifest, manifest_name=manifest_path.name, format_key="format",
                                   format_name=FORMAT, format_version=FORMAT_VERSION, remedy=_REMEDY)
        return cls._from_verified(manifest, payload, str(manifest_path))

    @classmethod
    def _from_verified(cls, manifest: Mapping[str, Any], payload: bytes, source: str) -> Detector:
        """The detector of a manifest whose payload :mod:`fraudlab.artefacts` accepted: the checks after that.

        A file and a bundle differ only in where the manifest and the ONNX bytes come from; from here on they
        are checked alike (feature definition, every field, an onnxruntime session of the right width).
        """
        schema = feature_definition.schema_hash()
        if manifest.get("feature_schema") != schema:
            raise ModelFileError(
                f"{source}: the detector was trained on another feature definition (feature_schema "
                f"{str(manifest.get('feature_schema'))[:12]}, this fraudlab's is {schema[:12]}); retrain it on the "
                "current features with `fraudlab train`."
            )
        try:
            names = _check_feature_names(manifest["feature_names"])
            references = manifest["references"]
            if not isinstance(references, Mapping) or set(references) != set(names):
                raise InvalidParameterError("'references' must map each of its feature_names to a number")
            detector = cls(
                feature_names=names, feature_schema=schema, params=DetectorParams.from_dict(manifest["params"]),
                onnx_bytes=payload, references=tuple(references[name] for name in names),
                threshold=manifest["threshold"], metrics=dict(manifest.get("metrics", {})),
                training_data=dict(manifest.get("training_data", {})), libraries=dict(manifest.get("libraries", {})),
                created_at=str(manifest.get("created_at", "")),
            )
        except (KeyError, TypeError, InvalidParameterError) as exc:
            raise ModelFileError(f"{source} is not a valid detector manifest: {exc}") from exc
        detector._check_session(source)
        return detector

    def _check_session(self, source: str) -> None:
        """Open the session now, so a model onnxruntime cannot run, or of another width, fails at load."""
        try:
            inputs = self.session.get_inputs()
        except Exception as exc:  # onnxruntime raises its own exception types for unreadable models
            raise ModelFileError(f"The model of {source} is not one onnxruntime can run: {exc}") from exc
        width = inputs[0].shape[-1] if len(inputs) == 1 and inputs[0].shape else None
        if width != len(self.feature_names) or inputs[0].name != INPUT_NAME:
            raise ModelFileError(f"The model of {source} takes inputs {[(i.name, i.shape) for i in inputs]}, not "
                                 f"{INPUT_NAME!r} of width {len(self.feature_names)} as its manifest says.")
