"""The local MLflow launcher: a taken port, a foreign server, group stops, and a real server's whole lifecycle.

The real server (``python -m mlflow server``, ~30 s to start here, ~45 s the first time on a new store) is started
once for the module; the tests that need it call :func:`running`, which restarts it only if a test stopped it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fraudlab.exceptions import MlflowError, MlflowUnavailableError, ModelRegistryError
from fraudlab.infra.mlflow import (
    LocalMlflow,
    MlflowSettings,
    _command,
    mlflow_status,
    start_mlflow,
    stop_mlflow,
)
from fraudlab.infra.process import free_port, group_alive, port_in_use


@pytest.fixture(scope="module", autouse=True)
def _no_telemetry() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        yield


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def _fake_server(settings: MlflowSettings, *, with_child: bool = False) -> subprocess.Popen[bytes]:
    """A sleeping Python whose command line is the real server's (and, optionally, a child in its group)."""
    body = "import subprocess, time; " + ("subprocess.Popen(['sleep', '120']); " if with_child else "")
    process = subprocess.Popen([sys.executable, "-c", body + "time.sleep(120)", *_command(settings)[1:]],
                               start_new_session=True)
    settings.state.mkdir(parents=True, exist_ok=True)
    settings.pid_file.write_text(f"{process.pid}\n")
    deadline = time.monotonic() + 10
    while not mlflow_status(settings, probe=False).running and time.monotonic() < deadline:
        time.sleep(0.02)
    return process


# --------------------------------------------------------------------------- no real server needed


def test_a_taken_port_gives_a_clear_message(tmp_path):
    """Nothing is started and no pid file is left when the port is taken."""
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        settings = MlflowSettings(port=taken, state_dir=tmp_path / "state")
        with pytest.raises(MlflowError, match=f"port {taken} on 127.0.0.1 is already in use.*--port"):
            start_mlflow(settings)
    assert not settings.pid_file.exists()


def test_a_missing_interpreter_is_named(tmp_path):
    settings = MlflowSettings(port=free_port(), state_dir=tmp_path, python=tmp_path / "no-python")
    with pytest.raises(MlflowError, match=r"python=.*no-python does not exist"):
        start_mlflow(settings)


def test_a_server_on_this_store_at_another_port_is_not_started_twice(tmp_path):
    """Two servers on one SQLite store would fight over it: the second start names the first one's port."""
    # Setup
    first = MlflowSettings(port=free_port(), state_dir=tmp_path)
    process = _fake_server(first)
    try:
        # Run / Assert
        second = MlflowSettings(port=free_port(), state_dir=tmp_path)
        with pytest.raises(MlflowError, match=f"already serves the store in {tmp_path} on port {first.port}"):
            start_mlflow(second)
        assert mlflow_status(first, probe=False).running and not mlflow_status(second).running
    finally:
        process.kill()
        process.wait()


def test_stop_ends_the_whole_process_group(tmp_path):
    """The server and its worker (here a child in the same group) are both gone when stop returns."""
    # Setup
    settings = MlflowSettings(port=free_port(), state_dir=tmp_path)
    process = _fake_server(settings, with_child=True)
    deadline = time.monotonic() + 10
    while len(_group_members(process.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    members = _group_members(process.pid)
    assert len(members) == 2

    # Run
    stopped = stop_mlflow(settings, timeout=5)

    # Assert
    assert stopped
    assert not group_alive(process.pid) and not any(_alive(pid) for pid in members)
    assert not settings.pid_file.exists()
    assert stop_mlflow(settings) is False


def _group_members(pgid: int) -> list[int]:
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.append(int(stat.parent.name))
    return members


def test_an_http_tracking_uri_nobody_serves_fails_fast_naming_the_fix():
    """MLflow's own client retries for minutes; the registry asks /health first and says to start the server."""
    from fraudlab.detect.registry import promote

    started = time.monotonic()
    with pytest.raises(MlflowUnavailableError, match=r"No MLflow tracking server answers.*fraudlab mlflow up"):
        promote(tracking_uri=f"http://127.0.0.1:{free_port()}")
    assert time.monotonic() - started < 10


# --------------------------------------------------------------------------- a real server


def _tiny_detector(seed: int):
    from fraudlab.detect.features import FEATURES
    from fraudlab.detect.model import DetectorParams, train_detector

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(300, len(FEATURES))), columns=list(FEATURES))
    labels = (frame["amount"] + 0.5 * rng.normal(size=300) > 1.0).to_numpy()
    return train_detector(frame, labels, params=DetectorParams(n_estimators=3, num_leaves=4)), frame


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """A cache dir whose ``mlflow/`` is the server's state: its store is also ``default_tracking_uri(cache)``."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def server(cache) -> Iterator[LocalMlflow]:
    handle = LocalMlflow(MlflowSettings(port=free_port(), cache_dir=cache), purge_on_exit=True)
    started = time.monotonic()
    handle.start()
    print(f"\nMLflow server ready after {time.monotonic() - started:.1f} s (new store)")
    yield handle
    handle.stop()


@pytest.fixture
def running(server) -> LocalMlflow:
    """The module's server, started again if a test stopped it."""
    if not mlflow_status(server.settings, probe=False).running:
        server.start()
    return server


def _get(url: str) -> tuple[int, str, str]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.headers.get("Content-Type", ""), response.read().decode(errors="replace")


@pytest.mark.slow
def test_the_server_answers_health_the_rest_api_and_the_ui(running):
    """/health is OK, the UI's page is HTML, and status sees a ready server."""
    # Run
    health = _get(f"{running.tracking_uri}/health")
    ui = _get(f"{running.tracking_uri}/")
    status = mlflow_status(running.settings)

    # Assert
    assert health[0] == 200
    assert ui[0] == 200 and ui[1].startswith("text/html") and "<!doctype html>" in ui[2].lower()
    assert status.running and status.ready and status.tracking_uri == running.tracking_uri
    assert running.settings.db_file.is_file() and running.settings.log_file.is_file()


@pytest.mark.slow
def test_a_second_start_reuses_the_running_server(running):
    """Starting again returns at once with the same pid; a handle that reused it does not stop it."""
    before = mlflow_status(running.settings).pid
    started = time.monotonic()
    with LocalMlflow(running.settings) as uri:
        assert uri == running.tracking_uri
        assert time.monotonic() - started < 5
    assert mlflow_status(running.settings).pid == before


@pytest.mark.slow
def test_a_run_logged_through_http_is_served_from_the_state_dir(running):
    """A training run logged to the server: artifacts proxied into <state>/artifacts, the detector loads back."""
    from mlflow import MlflowClient

    from fraudlab.detect.registry import load_detector, log_training_run

    # Setup
    detector, frame = _tiny_detector(seed=1)

    # Run
    run = log_training_run(detector, tracking_uri=running.tracking_uri, params={"rows": 300},
                           metrics={"real_pr_auc": 0.5}, report_markdown="# via http", input_example=frame,
                           experiment="via-http")
    loaded = load_detector(running.tracking_uri, version=run.model_version)

    # Assert
    assert run.ui_url == f"{running.tracking_uri}/#/experiments/{run.experiment_id}/runs/{run.run_id}"
    experiment = MlflowClient(running.tracking_uri).get_experiment(run.experiment_id)
    assert experiment.artifact_location.startswith("mlflow-artifacts:")
    stored = list(running.settings.artifacts_dir.rglob("detector.onnx"))
    assert any(run.run_id in str(path) for path in stored)
    np.testing.assert_array_equal(loaded.score(frame), detector.score(frame))


@pytest.mark.slow
def test_a_run_logged_to_the_store_directly_shows_up_in_the_server(running, cache):
    """No server needed to log: default_tracking_uri(cache) is the server's store, so the UI lists the run."""
    from mlflow import MlflowClient

    from fraudlab.detect.registry import default_tracking_uri, log_training_run

    # Setup
    detector, _ = _tiny_detector(seed=2)

    # Run
    run = log_training_run(detector, tracking_uri=default_tracking_uri(cache), params={"rows": 300},
                           metrics={"real_pr_auc": 0.6}, report_markdown="# direct", experiment="direct")

    # Assert
    client = MlflowClient(running.tracking_uri)
    assert client.get_run(run.run_id).data.metrics["real_pr_auc"] == 0.6
    listed = {item.path for item in client.list_artifacts(run.run_id)}
    assert {"report.md", "detector"} <= listed
    assert client.get_experiment(run.experiment_id).artifact_location == str(running.settings.artifacts_dir)
    status, _, text = _get(f"{running.tracking_uri}/get-artifact?path=report.md&run_uuid={run.run_id}")
    assert status == 200 and text == "# direct"


@pytest.mark.slow
def test_logging_directly_into_an_experiment_the_server_made_is_refused_by_name(running, cache):
    """Its artifacts live behind the server (mlflow-artifacts:/), which a SQLite URI cannot reach."""
    from mlflow import MlflowClient

    from fraudlab.detect.registry import default_tracking_uri, log_training_run

    MlflowClient(running.tracking_uri).create_experiment("server-made")
    detector, _ = _tiny_detector(seed=3)
    with pytest.raises(ModelRegistryError, match=r"'server-made' .* created through a tracking server"):
        log_training_run(detector, tracking_uri=default_tracking_uri(cache), params={}, metrics={},
                         experiment="server-made")


@pytest.mark.slow
def test_stopping_leaves_no_process(running):
    """After stop the server's pid and every process of its group are gone, and the port is free again."""
    # Setup
    pid = mlflow_status(running.settings).pid
    assert pid is not None and _group_members(pid)

    # Run
    started = time.monotonic()
    running.stop()
    print(f"\nMLflow server stopped in {time.monotonic() - started:.1f} s")

    # Assert
    assert not _alive(pid) and not _group_members(pid)
    assert not mlflow_status(running.settings).running
    assert not running.settings.pid_file.exists()
    assert not port_in_use(running.settings.host, running.settings.port)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs util-linux setpriv (Linux)")
def test_the_server_dies_with_a_killed_owner(tmp_path):
    """atexit cannot run under SIGKILL: the parent-death signal reaches `mlflow server`, which stops its worker."""
    settings = MlflowSettings(port=free_port(), state_dir=tmp_path)
    owner = subprocess.Popen(
        [sys.executable, "-c", (
            "import time; from pathlib import Path; from fraudlab.infra.mlflow import LocalMlflow, MlflowSettings; "
            f"LocalMlflow(MlflowSettings(port={settings.port}, state_dir=Path({str(tmp_path)!r}))).start(); "
            "print('up', flush=True); time.sleep(600)"
        )],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"},
    )
    pid = None
    try:
        assert owner.stdout.readline().strip() == "up"
        pid = mlflow_status(settings).pid
        assert pid is not None and len(_group_members(pid)) == 2
        owner.kill()
        owner.wait(10)
        deadline = time.monotonic() + 60
        while _group_members(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _group_members(pid), f"the MLflow server (group {pid}) outlived its killed owner"
    finally:
        owner.kill()
        stop_mlflow(settings)
