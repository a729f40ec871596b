"""MLflow tracking and the model registry: log a training run, gate promotion to ``champion``, load the champion.

* :func:`log_training_run` -- one MLflow run per trained :class:`~fraudlab.detect.model.Detector`: its params,
  metrics (nested mappings flattened to dotted names), the evaluation report and figures, the detector's own
  verified files under ``detector/``, and the same ONNX bytes as an MLflow ``onnx`` model registered as a new
  version of :data:`REGISTERED_MODEL`;
* :func:`promote` -- the promotion gate: a version becomes :data:`CHAMPION` (a registry alias) only when its
  metric (PR-AUC on real held-out rows by default) is not below the current champion's;
* :func:`load_detector` -- a version's ``detector/`` files downloaded and loaded through
  :meth:`Detector.load <fraudlab.detect.model.Detector.load>`, which verifies them (and here also against the
  SHA-256 the version was registered with).

The tracking URI is always explicit. :func:`default_tracking_uri` is the SQLite store in the cache that
``fraudlab mlflow up`` serves, so runs logged without a server show up in its UI later. MLflow is imported inside
the functions: importing this module is cheap, and the scoring half of :mod:`fraudlab.detect.model` never loads
MLflow.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fraudlab import config
from fraudlab.exceptions import InvalidParameterError, MlflowUnavailableError, ModelFileError, ModelRegistryError

if TYPE_CHECKING:
    import pandas as pd

    from fraudlab.detect.model import Detector

__all__ = [
    "CHAMPION",
    "DETECTOR_ARTIFACTS",
    "EXPERIMENT",
    "REGISTERED_MODEL",
    "PromotionDecision",
    "TrainingRun",
    "default_tracking_uri",
    "download_detector",
    "flatten",
    "load_detector",
    "log_training_run",
    "promote",
    "recall_drops",
    "versions_table",
]

EXPERIMENT = config.MLFLOW_EXPERIMENT
REGISTERED_MODEL = config.MLFLOW_MODEL
CHAMPION = config.MLFLOW_CHAMPION
#: The run's artifact folder holding ``detector.json`` and ``detector.onnx`` (what :func:`load_detector` reads).
DETECTOR_ARTIFACTS = "detector"
#: Rows of the input example stored with the MLflow model (it is JSON in the artifact store: keep it small).
EXAMPLE_ROWS = 5
#: Model-version tags set by :func:`log_training_run`.
TAG_DETECTOR_VERSION = "detector_version"
TAG_DETECTOR_SHA256 = "detector_sha256"
TAG_FEATURE_SCHEMA = "feature_schema"

# MLflow's fluent API (start_run, log_model) reads a process-wide tracking URI; calls that swap it take turns.
_FLUENT_LOCK = threading.RLock()
_URI_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


@dataclass(frozen=True)
class TrainingRun:
    """What :func:`log_training_run` created: the run, the registered model version, where to look at them."""

    run_id: str
    experiment_id: str
    model_version: int
    model_uri: str
    tracking_uri: str
    ui_url: str | None = None

    def describe(self) -> str:
        where = self.ui_url or self.tracking_uri
        return f"run {self.run_id} logged, {REGISTERED_MODEL} version {self.model_version} registered ({where})"


@dataclass(frozen=True)
class PromotionDecision:
    """The promotion gate's answer: whether :data:`CHAMPION` now points at the candidate, and why."""

    promoted: bool
    candidate_version: int
    champion_version: int | None
    candidate_metric: float
    champion_metric: float | None
    metric: str
    reason: str
    #: Per scenario, the champion's recall minus the candidate's, where both runs have it (positive: a drop).
    recall_drops: dict[str, float] = field(default_factory=dict)

    def describe(self) -> str:
        """One line a person can read."""
        return f"{'promoted' if self.promoted else 'not promoted'}: {self.reason}"


# --------------------------------------------------------------------------- URIs and clients


def default_tracking_uri(cache_dir: Path | None = None) -> str:
    """``sqlite:///<cache>/mlflow/mlflow.db``: the store ``fraudlab mlflow up`` serves (no server needed to log)."""
    cache = Path(cache_dir) if cache_dir else config.cache_root()
    return f"sqlite:///{(cache / config.MLFLOW_DIR / config.MLFLOW_DB).absolute()}"


def _sqlite_path(tracking_uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI; None for any other kind of store."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    # Not urlsplit: it reads ``sqlite:////tmp/x`` as the path ``//tmp/x``, which pathlib keeps as is.
    return Path(urllib.parse.unquote(tracking_uri.removeprefix("sqlite:///").split("?", 1)[0])).absolute()


def _is_http(tracking_uri: str) -> bool:
    return tracking_uri.startswith(("http://", "https://"))


def _check_reachable(tracking_uri: str) -> None:
    """Fail fast, naming the fix, when an HTTP tracking server does not answer (MLflow itself retries for minutes)."""
    if not _is_http(tracking_uri):
        return
    try:
        with urllib.request.urlopen(f"{tracking_uri.rstrip('/')}/health", timeout=5.0) as response:
            if response.status == 200:
                return
    except (urllib.error.URLError, OSError, ValueError):
        pass
    raise MlflowUnavailableError(
        f"No MLflow tracking server answers at {tracking_uri}: start it (`fraudlab mlflow up`), or pass another "
        "--tracking-uri (the default, a sqlite:/// store in the cache, needs no server).")


def _quiet_mlflow() -> None:
    """MLflow logs routine steps (store migrations, "Successfully registered model") at INFO on stderr, which
    reads as trouble in a notebook, and draws a progress bar per artifact download that a notebook keeps at 0 %;
    fraudlab reports the outcome itself, so only MLflow's warnings are kept, and the bar is off unless asked for."""
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def _client(tracking_uri: str) -> Any:
    """An MlflowClient on ``tracking_uri`` for tracking and registry alike; a SQLite store's folder is created."""
    from mlflow import MlflowClient

    _quiet_mlflow()

    if not isinstance(tracking_uri, str) or not tracking_uri:
        raise InvalidParameterError(f"Invalid tracking_uri {tracking_uri!r}: give an MLflow tracking URI such as "
                                    f"{default_tracking_uri()!r} or http://127.0.0.1:{config.MLFLOW_PORT}.")
    database = _sqlite_path(tracking_uri)
    if database is not None:
        database.parent.mkdir(parents=True, exist_ok=True)
    _check_reachable(tracking_uri)
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


@contextlib.contextmanager
def _fluent_uri(tracking_uri: str) -> Iterator[None]:
    """Point MLflow's process-wide tracking and registry URIs at ``tracking_uri`` for a block, then restore them.

    ``mlflow.set_tracking_uri`` / ``set_registry_uri`` also write ``MLFLOW_TRACKING_URI`` / ``MLFLOW_REGISTRY_URI``
    into ``os.environ`` (for subprocesses); those are put back too, so no later command sees this store as its
    default.
    """
    import mlflow
    from mlflow.tracking._model_registry import utils as registry_utils

    _quiet_mlflow()
    from mlflow.tracking._tracking_service import utils as tracking_utils

    with _FLUENT_LOCK:
        saved_environment = {name: os.environ.get(name) for name in _URI_VARIABLES}
        saved_tracking, saved_registry = tracking_utils._tracking_uri, registry_utils._registry_uri
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(tracking_uri)
        try:
            yield
        finally:
            mlflow.set_tracking_uri(saved_tracking)
            registry_utils._registry_uri = saved_registry
            for name, value in saved_environment.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def _experiment_id(client: Any, tracking_uri: str, name: str) -> str:
    """The id of experiment ``name``, created when absent; in a SQLite store its artifacts go beside the database.

    ``<store dir>/artifacts`` is where ``fraudlab mlflow up`` serves artifacts from too, so one folder holds them
    whichever way a run was logged.
    """
    experiment = client.get_experiment_by_name(name)
    database = _sqlite_path(tracking_uri)
    if experiment is None:
        location = str((database.parent / config.MLFLOW_ARTIFACTS).absolute()) if database else None
        return client.create_experiment(name, artifact_location=location)
    if database is not None and experiment.artifact_location.startswith("mlflow-artifacts:"):
        raise ModelRegistryError(
            f"Experiment {name!r} in {tracking_uri} was created through a tracking server and keeps its artifacts "
            f"behind it ({experiment.artifact_location}): log through that server instead (`fraudlab mlflow up`, "
            f"--tracking-uri http://127.0.0.1:{config.MLFLOW_PORT}), or use another experiment name.")
    return experiment.experiment_id


def _ui_url(tracking_uri: str, experiment_id: str, run_id: str) -> str | None:
    return f"{tracking_uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}" if _is_http(tracking_uri) else None


# --------------------------------------------------------------------------- logging a training run


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as one level with dotted keys (``{"real": {"pr_auc": 0.8}}`` -> ``{"real.pr_auc": 0.8}``).

    ``None`` values are dropped (a metric an evaluation could not compute is absent, not zero).
    """
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        elif value is not None:
            flat[name] = value
    return flat


def _metric_values(metrics: Mapping[str, Any]) -> dict[str, float]:
    values: dict[str, float] = {}
    problems = []
    for name, value in flatten(metrics).items():
        try:
            values[name] = float(value)
        except (TypeError, ValueError):
            problems.append(f"{name}={value!r}")
    if problems:
        raise InvalidParameterError(f"Invalid metrics {', '.join(problems)}: a metric is a number (nest mappings for "
                                    "groups; put text into params or the report).")
    return values


def _param_values(params: Mapping[str, Any]) -> dict[str, str]:
    import json

    def text(value: Any) -> str:
        if isinstance(value, list | tuple | set | frozenset):
            return json.dumps(sorted(value) if isinstance(value, set | frozenset) else list(value), default=str)
        return str(value)

    return {name: text(value) for name, value in flatten(params).items()}


def _figure_name(name: str, path: Path) -> str:
    return name if Path(name).suffix else f"{name}{path.suffix}"


def _model_example(detector: Detector, input_example: pd.DataFrame | None) -> tuple[pd.DataFrame, Any]:
    """A float32 frame of the detector's columns (the example's first rows, else one row of zeros) and its scores."""
    import numpy as np
    import pandas as pd

    names = list(detector.feature_names)
    if input_example is None:
        example = pd.DataFrame(np.zeros((1, len(names)), dtype=np.float32), columns=names)
    else:
        example = pd.DataFrame(detector.feature_matrix(input_example.head(EXAMPLE_ROWS)), columns=names)
    return example, detector.score(example)


def log_training_run(
    detector: Detector,
    *,
    tracking_uri: str,
    params: Mapping[str, Any],
    metrics: Mapping[str, Any],
    report_markdown: str | None = None,
    figures: Mapping[str, Path] | None = None,
    artifacts_dir: Path | None = None,
    input_example: pd.DataFrame | None = None,
    run_name: str | None = None,
    tags: Mapping[str, str] | None = None,
    experiment: str = EXPERIMENT,
) -> TrainingRun:
    """Log one training run and register its model as a new version of :data:`REGISTERED_MODEL`.

    The run holds ``params`` and ``metrics`` (nested mappings flattened to dotted names, ``None`` skipped), the
    report as ``report.md``, each figure as ``figures/<name>``, ``artifacts_dir``'s files under ``outputs/``, the
    detector's files (``detector.json`` + ``detector.onnx``, as :meth:`Detector.save` writes them) under
    ``detector/``, and the same ONNX bytes as an MLflow ``onnx`` model ``model`` (signature: the detector's
    float32 feature columns in, its scores out; ``input_example``'s first rows stored as the example). The new
    model version is tagged with the detector's version, SHA-256 and feature schema, and with the promotion metric
    when ``metrics`` has it.

    Raises:
        InvalidParameterError: a metric that is not a number, a figure or artifacts folder that does not exist.
        MlflowUnavailableError: an HTTP tracking URI whose server does not answer.
        ModelRegistryError: a SQLite store whose experiment keeps its artifacts behind a tracking server.
    """
    import mlflow
    import mlflow.onnx
    import onnx
    import onnxruntime
    from mlflow.models import infer_signature

    metric_values = _metric_values(metrics)
    param_values = _param_values(params)
    figures = dict(figures or {})
    missing = [f"{name}={path}" for name, path in figures.items() if not Path(path).is_file()]
    if artifacts_dir is not None and not Path(artifacts_dir).is_dir():
        missing.append(f"artifacts_dir={artifacts_dir}")
    if missing:
        raise InvalidParameterError(f"Cannot log {', '.join(missing)}: no such file or folder.")
    example, scores = _model_example(detector, input_example)
    signature = infer_signature(example, scores)

    client = _client(tracking_uri)
    experiment_id = _experiment_id(client, tracking_uri, experiment)
    with _fluent_uri(tracking_uri), mlflow.start_run(experiment_id=experiment_id, run_name=run_name,
                                                     tags=dict(tags or {})) as run:
        run_id = run.info.run_id
        if param_values:
            mlflow.log_params(param_values)
        if metric_values:
            mlflow.log_metrics(metric_values)
        mlflow.set_tags({TAG_DETECTOR_VERSION: detector.version, TAG_DETECTOR_SHA256: detector.sha256,
                         TAG_FEATURE_SCHEMA: detector.feature_schema})
        if report_markdown is not None:
            mlflow.log_text(report_markdown, "report.md")
        with tempfile.TemporaryDirectory(prefix="fraudlab-run-") as scratch:
            for name, path in figures.items():
                target = Path(scratch) / "figures" / _figure_name(name, Path(path))
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(Path(path).read_bytes())
            if figures:
                mlflow.log_artifacts(str(Path(scratch) / "figures"), "figures")
            detector.save(Path(scratch) / DETECTOR_ARTIFACTS)
            mlflow.log_artifacts(str(Path(scratch) / DETECTOR_ARTIFACTS), DETECTOR_ARTIFACTS)
        if artifacts_dir is not None:
            mlflow.log_artifacts(str(artifacts_dir), "outputs")
        # Registering prints "Successfully registered model ..." to stderr (not through logging); the version is
        # returned and reported by the caller, so that line is dropped. Errors still raise.
        with contextlib.redirect_stderr(io.StringIO()):
            info = mlflow.onnx.log_model(
                onnx.load_from_string(detector.onnx_bytes), name="model", signature=signature,
                input_example=example if input_example is not None else None,
                registered_model_name=REGISTERED_MODEL, onnx_execution_providers=["CPUExecutionProvider"],
                # Given, not inferred: inference loads the model in a subprocess (seconds) to guess these two.
                pip_requirements=[f"onnx=={onnx.__version__}", f"onnxruntime=={onnxruntime.__version__}"],
            )
    version = int(info.registered_model_version)
    version_tags = {TAG_DETECTOR_VERSION: detector.version, TAG_DETECTOR_SHA256: detector.sha256,
                    TAG_FEATURE_SCHEMA: detector.feature_schema}
    if config.MLFLOW_PROMOTION_METRIC in metric_values:
        version_tags[config.MLFLOW_PROMOTION_METRIC] = repr(metric_values[config.MLFLOW_PROMOTION_METRIC])
    for key, value in version_tags.items():
        client.set_model_version_tag(REGISTERED_MODEL, str(version), key, value)
    return TrainingRun(run_id=run_id, experiment_id=experiment_id, model_version=version,
                       model_uri=f"models:/{REGISTERED_MODEL}/{version}", tracking_uri=tracking_uri,
                       ui_url=_ui_url(tracking_uri, experiment_id, run_id))


# --------------------------------------------------------------------------- the registry


def _is_missing(exc: Exception) -> bool:
    return getattr(exc, "error_code", None) == "RESOURCE_DOES_NOT_EXIST"


def _is_missing_alias(exc: Exception) -> bool:
    """An unknown alias is INVALID_PARAMETER_VALUE "Registered model alias X not found."; a missing model too."""
    return _is_missing(exc) or ("alias" in str(exc) and "not found" in str(exc))


def _versions(client: Any, tracking_uri: str) -> list[int]:
    found = sorted(int(v.version) for v in client.search_model_versions(f"name='{REGISTERED_MODEL}'"))
    if not found:
        raise ModelRegistryError(f"{REGISTERED_MODEL!r} has no versions in {tracking_uri}: log a training run first "
                                 "(`fraudlab train`), or pass the --tracking-uri it was logged to.")
    return found


def _model_version(client: Any, tracking_uri: str, version: int) -> Any:
    from mlflow.exceptions import MlflowException

    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise InvalidParameterError(f"Invalid version {version!r}: model versions are integers from 1.")
    try:
        return client.get_model_version(REGISTERED_MODEL, str(version))
    except MlflowException as exc:
        if not _is_missing(exc):
            raise
        known = _versions(client, tracking_uri)
        raise ModelRegistryError(f"{REGISTERED_MODEL!r} has no version {version} in {tracking_uri}; it has versions "
                                 f"{_ranges(known)}.") from exc


def _champion(client: Any) -> Any | None:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(REGISTERED_MODEL, CHAMPION)
    except MlflowException as exc:
        if _is_missing_alias(exc):
            return None
        raise


def _ranges(numbers: list[int]) -> str:
    return f"{numbers[0]}-{numbers[-1]}" if numbers == list(range(numbers[0], numbers[-1] + 1)) else str(numbers)


def _run_metric(client: Any, model_version: Any, metric: str) -> float | None:
    value = client.get_run(model_version.run_id).data.metrics.get(metric)
    return None if value is None or math.isnan(value) else float(value)


def _scenario_recalls(client: Any, model_version: Any) -> dict[str, float]:
    """The run's ``recall_<scenario>`` metrics by scenario (NaN, a scenario without frauds, left out)."""
    prefix = config.MLFLOW_RECALL_METRIC_PREFIX
    metrics = client.get_run(model_version.run_id).data.metrics
    return {name[len(prefix):]: float(value) for name, value in metrics.items()
            if name.startswith(prefix) and not math.isnan(value)}


def recall_drops(champion: Mapping[str, float], candidate: Mapping[str, float]) -> dict[str, float]:
    """Per scenario the champion's recall minus the candidate's; a scenario the candidate lost counts as recall 0."""
    return {scenario: value - candidate.get(scenario, 0.0) for scenario, value in sorted(champion.items())}


def _log_decision(client: Any, run_id: str, decision: PromotionDecision) -> None:
    """The gate's decision and its numbers, on the candidate's run, in one request (tags, not params: a run can be
    judged more than once)."""
    from mlflow.entities import RunTag

    tags = {"promotion.promoted": str(decision.promoted).lower(), "promotion.reason": decision.reason,
            "promotion.champion_version": str(decision.champion_version or ""),
            **{f"promotion.recall_drop.{s}": f"{d:.6g}" for s, d in decision.recall_drops.items()}}
    client.log_batch(run_id, tags=[RunTag(key, value) for key, value in tags.items()])


def promote(
    version: int | None = None, *, tracking_uri: str, metric: str = config.MLFLOW_PROMOTION_METRIC,
    max_recall_drop: float = config.MLFLOW_MAX_RECALL_DROP, force: bool = False,
) -> PromotionDecision:
    """Point :data:`CHAMPION` at ``version`` (default: the latest) unless it is worse than the champion.

    With no champion yet the candidate is promoted. With one, the candidate's run ``metric`` must be at least the
    champion's (ties promote: the newer model was trained on newer data), and no fraud scenario's recall (run
    metrics ``recall_<scenario>``) may fall more than ``max_recall_drop`` below the champion's: a better PR-AUC
    bought by giving up one scenario is refused. ``force`` promotes regardless, and says so in the reason. A refusal
    changes nothing and names the numbers; either way the decision is written to the candidate's run as tags.

    Raises:
        ModelRegistryError: no such version (or none at all), or the candidate's run has no ``metric``.
        MlflowUnavailableError: an HTTP tracking URI whose server does not answer.
        InvalidParameterError: ``max_recall_drop`` outside 0-1.
    """
    if not 0.0 <= max_recall_drop <= 1.0:
        raise InvalidParameterError(f"Invalid max_recall_drop {max_recall_drop!r}: give a recall margin from 0 to 1.")
    client = _client(tracking_uri)
    candidate_version = _versions(client, tracking_uri)[-1] if version is None else version
    candidate = _model_version(client, tracking_uri, candidate_version)
    candidate_metric = _run_metric(client, candidate, metric)
    if candidate_metric is None:
        raise ModelRegistryError(f"Version {candidate_version} of {REGISTERED_MODEL!r} (run {candidate.run_id}) has "
                                 f"no metric {metric!r} to compare: log it with the run, or choose --metric.")
    champion = _champion(client)
    champion_version = int(champion.version) if champion is not None else None
    champion_metric = _run_metric(client, champion, metric) if champion is not None else None
    drops = (recall_drops(_scenario_recalls(client, champion), _scenario_recalls(client, candidate))
             if champion is not None and champion_version != candidate_version else {})

    def decided(promoted: bool, reason: str) -> PromotionDecision:
        if promoted and champion_version != candidate_version:
            client.set_registered_model_alias(REGISTERED_MODEL, CHAMPION, str(candidate_version))
        decision = PromotionDecision(promoted=promoted, candidate_version=candidate_version,
                                     champion_version=champion_version, candidate_metric=candidate_metric,
                                     champion_metric=champion_metric, metric=metric, reason=reason,
                                     recall_drops=drops)
        _log_decision(client, candidate.run_id, decision)
        return decision

    mine = f"version {candidate_version} ({metric} {candidate_metric:.6g})"
    if champion is None:
        return decided(True, f"{mine} is the first {CHAMPION} of {REGISTERED_MODEL!r}")
    if champion_version == candidate_version:
        return decided(True, f"{mine} already is the {CHAMPION}")
    theirs = (f"{CHAMPION} version {champion_version} ({metric} "
              f"{'missing' if champion_metric is None else f'{champion_metric:.6g}'})")
    if force:
        return decided(True, f"{mine} forced over {theirs}")
    if champion_metric is not None and candidate_metric < champion_metric:
        return decided(False, f"{mine} < {theirs}: {CHAMPION} stays version {champion_version} (--force overrides)")
    worst = max(drops.items(), key=lambda item: item[1], default=None)
    if worst is not None and worst[1] > max_recall_drop:
        return decided(False, f"{mine} loses {worst[1]:.3g} of {theirs}'s recall on scenario {worst[0]!r}, more "
                              f"than the {max_recall_drop:.3g} allowed: {CHAMPION} stays version {champion_version} "
                              "(--force overrides)")
    if champion_metric is None:
        return decided(True, f"{mine} replaces {theirs}, which has no {metric}")
    return decided(True, f"{mine} >= {theirs}: {CHAMPION} is now version {candidate_version}")


#: The run values :func:`versions_table` shows beside each version: what it was trained on, how it scored, the gate.
VERSION_COLUMNS = {"data version": ("tag", "data_version"), "trees": ("param", "train.trees"),
                   "real PR-AUC": ("metric", "real_pr_auc"), "stream PR-AUC": ("metric", "stream_pr_auc"),
                   "alert recall": ("metric", "alert_recall"), "promoted": ("tag", "promotion.promoted"),
                   "gate": ("tag", "promotion.reason")}


def versions_table(tracking_uri: str) -> pd.DataFrame:
    """Every registered version of the detector beside its run, side by side: the run's data version, trees, the
    metrics the gate reads, its decision and the aliases the version holds now (``champion``). Empty cells where a
    run did not log a value (a version from ``fraudlab train`` has no data version).

    Raises:
        ModelRegistryError: the detector has no registered version in ``tracking_uri``.
    """
    import pandas as pd

    client = _client(tracking_uri)
    rows = []
    for number in _versions(client, tracking_uri):
        version = client.get_model_version(REGISTERED_MODEL, str(number))  # searches leave the aliases out
        data = client.get_run(version.run_id).data
        sources = {"tag": data.tags, "param": data.params, "metric": data.metrics}
        rows.append({"version": int(version.version),
                     **{name: sources[kind].get(key) for name, (kind, key) in VERSION_COLUMNS.items()},
                     "aliases": ", ".join(sorted(version.aliases))})
    return pd.DataFrame(rows, columns=["version", *VERSION_COLUMNS, "aliases"]).set_index("version")


def _resolve(client: Any, tracking_uri: str, alias: str, version: int | None) -> Any:
    from mlflow.exceptions import MlflowException

    if version is not None:
        return _model_version(client, tracking_uri, version)
    try:
        return client.get_model_version_by_alias(REGISTERED_MODEL, alias)
    except MlflowException as exc:
        if not _is_missing_alias(exc):
            raise
        hint = "promote a version first (`fraudlab promote`)" if alias == CHAMPION else "set it, or pass a version"
        raise ModelRegistryError(f"{REGISTERED_MODEL!r} has no version with alias {alias!r} in {tracking_uri}: "
                                 f"{hint}.") from exc


def download_detector(
    tracking_uri: str, directory: Path, *, alias: str = CHAMPION, version: int | None = None
) -> tuple[Path, Any]:
    """Download the ``detector/`` files of a version's run into ``directory``; return their folder and the version.

    ``version`` wins over ``alias``. The files are not verified here: :meth:`Detector.load` does that.

    Raises:
        ModelRegistryError: no such version or alias (no champion: run ``fraudlab promote``).
    """
    client = _client(tracking_uri)
    model_version = _resolve(client, tracking_uri, alias, version)
    Path(directory).mkdir(parents=True, exist_ok=True)
    local = client.download_artifacts(model_version.run_id, DETECTOR_ARTIFACTS, str(directory))
    return Path(local), model_version


def load_detector(tracking_uri: str, *, alias: str = CHAMPION, version: int | None = None) -> Detector:
    """The detector of a registered version (the champion by default), verified.

    :meth:`Detector.load` checks the files (SHA-256, format, feature definition); the result must also be the
    model the version was registered with (its ``detector_sha256`` tag).

    Raises:
        ModelRegistryError: no such version or alias (no champion: run ``fraudlab promote``).
        ModelFileError: the downloaded files are tampered with, or not the ones registered.
    """
    from fraudlab.detect.model import Detector

    with tempfile.TemporaryDirectory(prefix="fraudlab-detector-") as scratch:
        folder, model_version = download_detector(tracking_uri, Path(scratch), alias=alias, version=version)
        detector = Detector.load(folder)
    registered = (model_version.tags or {}).get(TAG_DETECTOR_SHA256)
    if registered is not None and registered != detector.sha256:
        raise ModelFileError(f"Version {model_version.version} of {REGISTERED_MODEL!r} was registered with detector "
                             f"SHA-256 {registered}, but its run's files hold {detector.sha256}: the artifact store "
                             "was changed after registration; the detector was not loaded.")
    return detector
