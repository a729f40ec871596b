"""The continuous-training pipeline with the real DVC, MLflow (SQLite store) and Kafka, at small parameters.

One workspace serves the module (:class:`fraudlab.pipeline.workspace.PipelineWorkspace`): ``dvc repro`` runs its
five stages once, the result is committed to the workspace's git, and the tests then take it further in file order:
nothing to redo, a push / pull round trip, the candidate registered, promoted and announced, and last a weakened
candidate refused. The promotion loop with a live Flink job and Airflow is notebook 07's test.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from fraudlab.pipeline.steps import SMALL_PARAMS, data_version
from fraudlab.pipeline.workspace import STAGES, PipelineWorkspace, pipeline_environment

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Iterator[PipelineWorkspace]:
    """The module's workspace, its five stages run once and committed; with the suite's cache (GeoIP) and a SQLite
    MLflow store of its own."""
    store = tmp_path_factory.mktemp("mlflow")
    env = pipeline_environment(cache_dir=cache_dir, tracking_uri=f"sqlite:///{store / 'mlflow.db'}")
    root = tmp_path_factory.mktemp("pipeline")
    workspace = PipelineWorkspace.create(root / "workspace", SMALL_PARAMS, env, remote=root / "remote")
    assert workspace.repro() == list(STAGES)
    workspace.commit("pipeline run 1")
    yield workspace
    shutil.rmtree(root / "remote", ignore_errors=True)


@pytest.fixture(scope="module")
def workspace(pipeline: PipelineWorkspace) -> Path:
    return pipeline.directory


@pytest.fixture(scope="module")
def env(pipeline: PipelineWorkspace) -> dict[str, str]:
    return dict(pipeline.env)


def _run(workspace: Path, *args: str, env: dict[str, str]):
    return PipelineWorkspace(workspace, env).run(*args)


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
    assert all(f"Stage '{stage}' didn't change, skipping" in again.stdout for stage in STAGES)
    assert "Running stage" not in again.stdout


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

    from fraudlab.detect.realtime import announcements
    from fraudlab.detect.registry import versions_table

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
    updates = f"model-updates-{uuid.uuid4().hex[:8]}"
    announced = _run(workspace, "fraudlab", "pipeline", "announce", "--bootstrap", kafka_bootstrap, env={
        **env, "FRAUDLAB_MODEL_UPDATES_TOPIC": updates})
    assert f"announced detector {record['detector']} on {updates!r}" in announced.stdout
    assert announcements(kafka_bootstrap, updates)["detector"].tolist() == [record["detector"]]
    versions = versions_table(env["MLFLOW_TRACKING_URI"])
    assert versions.index.tolist() == [record["version"]]
    row = versions.loc[record["version"]]
    assert row["data version"] == version and row["trees"] == str(SMALL_PARAMS["train"]["trees"])
    assert row["real PR-AUC"] == pytest.approx(metrics["real_pr_auc"])
    assert row["promoted"] == "true" and row["aliases"] == "champion"


def test_a_weakened_candidate_is_refused_and_the_champion_stays(workspace, env, kafka_bootstrap):
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    params["train"]["trees"] = 1
    (workspace / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert PipelineWorkspace(workspace, env).repro() == ["train", "evaluate"], "only the stages that read train.*"
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
