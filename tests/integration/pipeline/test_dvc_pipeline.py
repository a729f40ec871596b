"""The continuous-training pipeline with the real DVC, MLflow (SQLite store) and Kafka, at small parameters.

One workspace serves the module (:func:`fraudlab.pipeline.steps.new_workspace`): ``dvc repro`` runs its five stages
once, the result is committed to the workspace's git, and the tests then take it further in file order: nothing to
redo, a push / pull round trip, the candidate registered and promoted, and last a weakened candidate refused.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from fraudlab.pipeline.steps import SMALL_PARAMS, data_version, new_workspace

pytestmark = pytest.mark.slow

STAGES = ("simulate", "fit", "streams", "train", "evaluate")


def _run(workspace: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A command in the workspace with the venv's `dvc` and `fraudlab` first on PATH; fails the test on exit != 0."""
    completed = subprocess.run(args, cwd=workspace, env=env, capture_output=True, text=True, check=False,
                               timeout=600)
    assert completed.returncode == 0, f"{' '.join(args)} exited {completed.returncode}:\n{completed.stdout}\n" \
                                      f"{completed.stderr}"
    return completed


def _ran(completed: subprocess.CompletedProcess[str]) -> list[str]:
    return [stage for stage in STAGES if f"Running stage '{stage}'" in completed.stdout]


def _commit(workspace: Path, message: str, env: dict[str, str]) -> None:
    _run(workspace, "git", "add", "-A", env=env)
    _run(workspace, "git", "-c", "user.name=fraudlab-tests", "-c", "user.email=tests@fraudlab.invalid", "commit",
         "--quiet", "-m", message, env=env)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> dict[str, str]:
    """The pipeline's environment: this venv's tools, the suite's cache (GeoIP), a SQLite MLflow store of its own."""
    store = tmp_path_factory.mktemp("mlflow")
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "FRAUDLAB_CACHE_DIR": str(cache_dir), "DVC_NO_ANALYTICS": "1", "MLFLOW_DISABLE_TELEMETRY": "true",
            "MLFLOW_TRACKING_URI": f"sqlite:///{store / 'mlflow.db'}"}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, env: dict[str, str]) -> Iterator[Path]:
    directory = new_workspace(tmp_path_factory.mktemp("pipeline"), SMALL_PARAMS)
    _run(directory, "fraudlab", "pipeline", "remote", "--url", str(directory.parent / "remote"), env=env)
    first = _run(directory, "dvc", "repro", env=env)
    assert _ran(first) == list(STAGES)
    _commit(directory, "pipeline run 1", env)
    yield directory
    shutil.rmtree(directory.parent / "remote", ignore_errors=True)


def test_repro_builds_every_stage_and_writes_the_metrics_the_gate_reads(workspace):
    metrics = json.loads((workspace / "data" / "metrics.json").read_text())
    assert 0 < metrics["real_pr_auc"] <= 1 and 0 < metrics["stream_pr_auc"] <= 1
    assert {"recall_account_takeover", "recall_card_testing"} <= set(metrics)
    evaluated = json.loads((workspace / "data" / "evaluation" / "detector.json").read_text())
    assert evaluated["threshold"] == pytest.approx(metrics["threshold"])
    lock = yaml.safe_load((workspace / "dvc.lock").read_text())
    assert list(lock["stages"]) == list(STAGES)
    assert lock["stages"]["train"]["params"]["params.yaml"]["train"] == SMALL_PARAMS["train"]


def test_a_second_repro_redoes_nothing(workspace, env):
    again = _run(workspace, "dvc", "repro", env=env)
    assert _ran(again) == []
    assert all(f"Stage '{stage}' didn't change, skipping" in again.stdout for stage in STAGES)


def test_push_then_pull_into_an_empty_cache_restores_every_output(workspace, env):
    remote = workspace.parent / "remote"
    assert _run(workspace, "fraudlab", "pipeline", "remote", env=env).stdout.strip() == f"DVC remote kept: {remote}"
    version, outputs = data_version(workspace / "dvc.lock")
    cached = [path for path in outputs if path != "data/metrics.json"]  # the metrics live in git, not DVC's cache
    _run(workspace, "dvc", "push", env=env)
    for path in cached:
        target = workspace / path
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    shutil.rmtree(workspace / ".dvc" / "cache")
    _run(workspace, "dvc", "pull", env=env)
    assert all((workspace / path).exists() for path in cached)
    assert "up to date" in _run(workspace, "dvc", "status", env=env).stdout
    assert data_version(workspace / "dvc.lock")[0] == version


def test_the_candidate_is_registered_with_its_data_version_promoted_and_announced(workspace, env, kafka_bootstrap):
    from mlflow import MlflowClient

    registered = _run(workspace, "fraudlab", "pipeline", "register", env=env)
    record = json.loads((workspace / "data" / "registered.json").read_text())
    version, outputs = data_version(workspace / "dvc.lock")
    assert record["data_version"] == version and f"data version {version}" in registered.stdout
    run = MlflowClient(env["MLFLOW_TRACKING_URI"]).get_run(record["run_id"])
    assert run.data.tags["data_version"] == version
    assert run.data.tags["dvc.data/streams"] == outputs["data/streams"]
    assert run.data.params["train.trees"] == str(SMALL_PARAMS["train"]["trees"])
    metrics = json.loads((workspace / "data" / "metrics.json").read_text())
    assert run.data.metrics["real_pr_auc"] == pytest.approx(metrics["real_pr_auc"])

    _run(workspace, "fraudlab", "pipeline", "promote", env=env)
    decision = json.loads((workspace / "data" / "promotion.json").read_text())
    assert decision["promoted"] is True and decision["candidate_version"] == record["version"]
    announced = _run(workspace, "fraudlab", "pipeline", "announce", "--bootstrap", kafka_bootstrap, env=env)
    assert f"announced detector {record['detector']}" in announced.stdout


def test_a_weakened_candidate_is_refused_and_the_champion_stays(workspace, env, kafka_bootstrap):
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    params["train"]["trees"] = 1
    (workspace / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    rerun = _run(workspace, "dvc", "repro", env=env)
    assert _ran(rerun) == ["train", "evaluate"], "only the stages that read train.* run again"
    diff = json.loads(_run(workspace, "dvc", "metrics", "diff", "--json", env=env).stdout)
    change = diff["data/metrics.json"]["real_pr_auc"]
    assert change["new"] < change["old"], "one tree ranks real frauds worse than thirty"

    champion = json.loads((workspace / "data" / "registered.json").read_text())["version"]
    _run(workspace, "fraudlab", "pipeline", "register", env=env)
    refused = _run(workspace, "fraudlab", "pipeline", "promote", env=env)
    decision = json.loads((workspace / "data" / "promotion.json").read_text())
    assert decision["promoted"] is False and decision["champion_version"] == champion
    assert f"champion stays version {champion}" in refused.stdout
    quiet = _run(workspace, "fraudlab", "pipeline", "announce", "--bootstrap", kafka_bootstrap, env=env)
    assert "nothing announced" in quiet.stdout
