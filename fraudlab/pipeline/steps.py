"""The steps of one continuous-training run, each reading and writing files in the pipeline directory.

``dvc repro`` runs the data stages (``dvc.yaml``: simulate, fit, streams) and then :func:`train_candidate` and
:func:`evaluate_candidate`, which split :func:`fraudlab.detect.training.run_training` at the training set so DVC
can skip an evaluation whose inputs did not change. After it, :func:`register_candidate` logs the evaluated
candidate to MLflow with the data version (a hash of what ``dvc.lock`` records), :func:`gate` decides the
promotion, and the announcement tells the running Flink job. Each writes a small JSON file the next one reads, so
every step can run in its own process (an Airflow task, a shell).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from fraudlab.detect.model import DetectorParams
from fraudlab.detect.training import TrainingSettings
from fraudlab.exceptions import MissingDataError

__all__ = [
    "CANDIDATE_SETTINGS",
    "PROMOTION_FILE",
    "REGISTERED_FILE",
    "REMOTE_NAME",
    "SMALL_PARAMS",
    "TRAINING_SET_FILE",
    "Registered",
    "configure_remote",
    "data_version",
    "default_remote",
    "evaluate_candidate",
    "gate",
    "new_workspace",
    "read_json",
    "register_candidate",
    "train_candidate",
]

#: In the candidate directory, beside the detector: the training set and the settings it was trained with.
TRAINING_SET_FILE = "training_set.parquet"
CANDIDATE_SETTINGS = "settings.json"
#: In the pipeline's data directory, written after ``dvc repro`` (not DVC outputs: they name registry state).
REGISTERED_FILE = "registered.json"
PROMOTION_FILE = "promotion.json"
#: The DVC remote :func:`configure_remote` sets up (``dvc push`` / ``dvc pull`` use it by default).
REMOTE_NAME = "local"


def train_candidate(settings: TrainingSettings, stream_path: Path, copula_path: Path, output: Path, *,
                    cache_dir: Path) -> Path:
    """Fit a detector on the training stream ``stream_path`` and rows of the copula ``copula_path``; write it, its
    training set and its settings into ``output`` (what :func:`evaluate_candidate` reads); return the manifest."""
    import pandas as pd

    from fraudlab.detect.training import fit, training_set
    from fraudlab.enrich.geoip import GeoIP
    from fraudlab.generate.synth import TransactionSynthesizer

    with GeoIP.open(cache_dir) as geoip:
        training = training_set(settings, pd.read_parquet(_existing(stream_path, "training stream")), geoip=geoip,
                                synthesizer=TransactionSynthesizer.load(_existing(copula_path, "copula model")))
    detector = fit(settings, training)
    output.mkdir(parents=True, exist_ok=True)
    training.save(output / TRAINING_SET_FILE)
    (output / CANDIDATE_SETTINGS).write_text(json.dumps(settings.to_dict(), indent=2) + "\n", encoding="utf-8")
    return detector.save(output)


def evaluate_candidate(candidate: Path, held_out_path: Path, output: Path, *, metrics_path: Path, cache_dir: Path,
                       alert_budget: float | None = None) -> dict[str, Any]:
    """Judge the candidate in ``candidate`` on real held-out rows and the held-out stream ``held_out_path``; write
    the evaluated detector (alert threshold set), its report and figures into ``output``, its flat metrics to
    ``metrics_path`` (outside ``output``: DVC tracks metrics in git, the detector in its cache)."""
    import pandas as pd

    from fraudlab.data.splits import split_reference
    from fraudlab.detect.model import Detector
    from fraudlab.detect.training import TrainingSet, evaluate, save_outputs
    from fraudlab.enrich.geoip import GeoIP

    settings = _settings(read_json(candidate / CANDIDATE_SETTINGS, "candidate settings"))
    if alert_budget is not None:
        settings = replace(settings, alert_budget=alert_budget)
    detector = Detector.load(candidate)
    training = TrainingSet.load(_existing(candidate / TRAINING_SET_FILE, "training set"))
    with GeoIP.open(cache_dir) as geoip:
        result = evaluate(settings, detector, training, pd.read_parquet(_existing(held_out_path, "held-out stream")),
                          geoip=geoip, split=split_reference())
    save_outputs(result, output)
    metrics = result.report.metrics()
    _write_json(metrics_path, metrics)
    return metrics


def data_version(lock_path: Path) -> tuple[str, dict[str, str]]:
    """A short hash of every output ``dvc.lock`` records (path and MD5, sorted), and those MD5s by path: the same
    inputs give the same version on any machine, any changed stage output a new one.

    Raises:
        MissingDataError: no ``dvc.lock`` (run ``dvc repro`` first) or one without outputs.
    """
    import yaml

    lock = yaml.safe_load(_existing(lock_path, "dvc.lock (run `dvc repro` first)").read_text(encoding="utf-8"))
    outputs = {out["path"]: out["md5"] for stage in (lock or {}).get("stages", {}).values()
               for out in stage.get("outs", [])}
    if not outputs:
        raise MissingDataError(f"{lock_path} records no stage outputs: run `dvc repro` first.")
    digest = hashlib.sha256("".join(f"{path}:{md5}\n" for path, md5 in sorted(outputs.items())).encode())
    return digest.hexdigest()[:12], outputs


@dataclass(frozen=True)
class Registered:
    """The candidate a pipeline run registered: what the gate and the announcement read."""

    version: int
    run_id: str
    detector: str
    data_version: str
    tracking_uri: str


def register_candidate(evaluation: Path, *, metrics_path: Path, lock_path: Path, params: dict[str, Any],
                       tracking_uri: str, output: Path) -> Registered:
    """Log the evaluated candidate as one MLflow run (its params, metrics, report, figures, model and data
    version) and register it as a new version of the detector; write ``output`` (``registered.json``)."""
    from fraudlab.detect.model import Detector
    from fraudlab.detect.registry import log_training_run

    version, outputs = data_version(lock_path)
    detector = Detector.load(evaluation)
    figures = {path.stem: path for path in sorted(evaluation.glob("*.png"))}
    report = evaluation / "report.md"
    run = log_training_run(
        detector, tracking_uri=tracking_uri, params=params,
        metrics=read_json(metrics_path, "evaluation metrics"),
        report_markdown=report.read_text(encoding="utf-8") if report.is_file() else None, figures=figures,
        run_name=f"pipeline-{version}", tags={"data_version": version, **{f"dvc.{p}": m for p, m in outputs.items()}})
    registered = Registered(version=run.model_version, run_id=run.run_id, detector=detector.version,
                            data_version=version, tracking_uri=tracking_uri)
    _write_json(output, asdict(registered))
    return registered


def gate(registered: Path, *, output: Path, **promote_options: Any) -> Any:
    """The promotion gate (:func:`fraudlab.detect.registry.promote`) on the registered candidate; its decision
    goes to ``output`` (``promotion.json``) whichever way it went, and is returned."""
    from fraudlab.detect.registry import promote

    candidate = Registered(**read_json(registered, "registered candidate (run `fraudlab pipeline register`)"))
    decision = promote(candidate.version, tracking_uri=candidate.tracking_uri, **promote_options)
    _write_json(output, {**asdict(decision), "tracking_uri": candidate.tracking_uri,
                         "detector": candidate.detector, "data_version": candidate.data_version})
    return decision


def read_json(path: Path, what: str) -> dict[str, Any]:
    """A JSON object an earlier step wrote; MissingDataError naming the step's output when it is not there."""
    return json.loads(_existing(path, what).read_text(encoding="utf-8"))


def _existing(path: Path, what: str) -> Path:
    if not path.exists():
        raise MissingDataError(f"The {what} {path} does not exist: run the step that writes it first.")
    return path


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")


def _settings(values: dict[str, Any]) -> TrainingSettings:
    return TrainingSettings(**{**values, "params": DetectorParams(**values["params"])})


def configure_remote(directory: Path, url: Path) -> None:
    """Make ``url`` (a local directory, created if missing) the default DVC remote of the pipeline in
    ``directory``, in its git-ignored ``.dvc/config.local``: each machine keeps its own, in its own cache."""
    url.mkdir(parents=True, exist_ok=True)
    _dvc(directory, "remote", "add", "--local", "--default", "--force", REMOTE_NAME, str(url))


def default_remote(directory: Path) -> str | None:
    """The URL of the pipeline's default DVC remote, None when it has none (``dvc push`` would then fail)."""
    name = _dvc(directory, "config", "core.remote", check=False).stdout.strip()
    if not name:
        return None
    return _dvc(directory, "config", f"remote.{name}.url", check=False).stdout.strip() or None


def _dvc(directory: Path, *args: str, check: bool = True) -> Any:
    import subprocess
    import sys

    completed = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=directory, capture_output=True, text=True,
                               check=False)
    if check and completed.returncode != 0:
        raise MissingDataError(f"`dvc {' '.join(args)}` failed in {directory}: {completed.stderr.strip()}")
    return completed


#: Parameters small enough for a test, CI or a notebook (about a minute of stages on two cores): enough PaySim rows
#: for the copula to learn fraud, a held-out stream enriched in frauds so every scenario is scored.
SMALL_PARAMS: dict[str, Any] = {
    "seed": 7,
    "simulate": {"rows": 100_000},
    "fit": {"rows": 100_000},
    "streams": {"accounts": 200, "days": 5, "fraud_rate": 0.02, "held_out_fraud_rate": 0.02, "held_out_seed": 8},
    "train": {"copula_rows": 5_000, "copula_frauds": 500, "trees": 30},
    "evaluate": {"alert_budget": 0.01},
}
_WORKSPACE_FILES = ("dvc.yaml", ".dvcignore", ".dvc/config", ".dvc/.gitignore")


def new_workspace(directory: Path, params: dict[str, Any], *, source: Path | None = None) -> Path:
    """A pipeline directory of its own: the repository's ``dvc.yaml`` and DVC configuration, ``params`` as its
    ``params.yaml``, in a new git repository (DVC versions through git), so a run there touches nothing here.

    Raises:
        MissingDataError: ``source`` (default: this checkout) has no ``dvc.yaml``, as an installed wheel has not.
    """
    import shutil
    import subprocess

    import yaml

    source = source or Path(__file__).resolve().parents[2]
    for name in _WORKSPACE_FILES:
        target = directory / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_existing(source / name, "pipeline file (a fraudlab checkout has it)"), target)
    (directory / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    subprocess.run(["git", "init", "--quiet", str(directory)], check=True)
    return directory
