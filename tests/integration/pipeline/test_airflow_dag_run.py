"""``airflow dags test fraudlab_continuous_training`` end to end: real Airflow, DVC, MLflow (SQLite) and Kafka.

Airflow runs from .venv-airflow with a temporary home (SQLite metadata DB, LocalExecutor settings, this checkout's
DAG folder: the environment ``fraudlab airflow up`` gives its server); the DAG's six commands run in the main venv
in a pipeline workspace of its own at small parameters (:func:`fraudlab.pipeline.steps.new_workspace`). The task
states are read back from Airflow's own metadata DB with ``airflow tasks states-for-dag-run``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fraudlab import config
from fraudlab.infra.airflow import AirflowSettings
from fraudlab.pipeline.steps import SMALL_PARAMS, new_workspace

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

TASKS = ("check_data", "repro", "push", "register", "promote", "announce")


def _airflow(settings: AirflowSettings, env: dict[str, str], *args: str, timeout: float = 300,
             ) -> subprocess.CompletedProcess[str]:
    """One ``airflow`` command of the Airflow venv; the test fails with its output when it exits non-zero."""
    started = time.monotonic()
    completed = subprocess.run([str(settings.executable), *args], env=env, cwd=settings.state, capture_output=True,
                               text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL)
    print(f"airflow {' '.join(args)}: {time.monotonic() - started:.1f} s")  # the measured times, shown with -s
    assert completed.returncode == 0, (f"airflow {' '.join(args)} exited {completed.returncode}:\n"
                                       f"{completed.stdout[-6000:]}\n{completed.stderr[-6000:]}")
    return completed


def _json_rows(completed: subprocess.CompletedProcess[str]) -> list[dict]:
    """The table an ``airflow ... -o json`` command printed: its last line (Airflow logs warnings before it)."""
    return json.loads(completed.stdout.strip().splitlines()[-1])


@pytest.fixture
def pipeline_run(tmp_path: Path, repo_root: Path, cache_dir: Path, kafka_bootstrap: str) -> dict:
    """A small pipeline workspace run once by ``airflow dags test``; what the test needs to look at afterwards."""
    settings = AirflowSettings(home=tmp_path / "airflow-home", venv=repo_root / config.AIRFLOW_VENV)
    if not settings.executable.is_file():
        pytest.skip(f"the Airflow venv {config.AIRFLOW_VENV}/ does not exist yet: create it with `make airflow-venv`")
    settings.state.mkdir(parents=True)
    workspace = new_workspace(tmp_path / "pipeline", SMALL_PARAMS)
    main_venv = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run(["fraudlab", "pipeline", "remote", "--url", str(tmp_path / "remote")], cwd=workspace,
                   env=main_venv, check=True, capture_output=True)
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")}
    env.update(settings.environment(), FRAUDLAB_PIPELINE_DIR=str(workspace), FRAUDLAB_CACHE_DIR=str(cache_dir),
               MLFLOW_TRACKING_URI=store, KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap)
    _airflow(settings, env, "db", "migrate")
    test = _airflow(settings, env, "dags", "test", config.AIRFLOW_DAG_ID, timeout=1500)
    runs = _json_rows(_airflow(settings, env, "dags", "list-runs", config.AIRFLOW_DAG_ID, "-o", "json"))
    return {"settings": settings, "env": env, "workspace": workspace, "store": store, "runs": runs,
            "log": test.stdout + test.stderr}


def test_dags_test_runs_every_task_and_registers_and_promotes_a_new_version(pipeline_run):
    """One run, six successful tasks; the candidate is a new registered version, promoted (nothing to beat yet)
    and announced on the session broker."""
    from mlflow import MlflowClient

    # Assert: the run and its tasks, as Airflow recorded them
    settings, env = pipeline_run["settings"], pipeline_run["env"]
    runs = pipeline_run["runs"]
    assert [run["state"] for run in runs] == ["success"]
    states = _json_rows(_airflow(settings, env, "tasks", "states-for-dag-run", config.AIRFLOW_DAG_ID,
                                 runs[0]["run_id"], "-o", "json"))
    assert {row["task_id"]: row["state"] for row in states} == dict.fromkeys(TASKS, "success")

    # Assert: what the commands left in the workspace and the registry
    workspace = pipeline_run["workspace"]
    assert (workspace / "dvc.lock").is_file() and (workspace / "data" / "metrics.json").is_file()
    registered = json.loads((workspace / "data" / "registered.json").read_text())
    decision = json.loads((workspace / "data" / "promotion.json").read_text())
    client = MlflowClient(pipeline_run["store"])
    versions = client.search_model_versions(f"name = '{config.MLFLOW_MODEL}'")
    assert [int(version.version) for version in versions] == [int(registered["version"])]
    assert decision["promoted"] is True and int(decision["candidate_version"]) == int(registered["version"])
    champion = client.get_model_version_by_alias(config.MLFLOW_MODEL, config.MLFLOW_CHAMPION)
    assert int(champion.version) == int(registered["version"])
    assert client.get_run(registered["run_id"]).data.tags["data_version"] == registered["data_version"]
    assert f"announced detector {registered['detector']}" in pipeline_run["log"]
