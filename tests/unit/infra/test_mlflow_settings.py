"""The MLflow launcher's settings: defaults from config, one state dir shared with the registry, validation by name."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from fraudlab import config
from fraudlab.detect.registry import default_tracking_uri
from fraudlab.exceptions import FraudlabError, MlflowError
from fraudlab.infra.mlflow import SERVER_ENVIRONMENT, MlflowSettings, MlflowStatus, _command, _server_port


def test_defaults_come_from_config_and_live_in_the_cache(tmp_path):
    """Port and host are config's; the state dir is <cache>/mlflow, holding the store, artifacts, log and pid."""
    # Run
    settings = MlflowSettings(cache_dir=tmp_path)

    # Assert
    assert (settings.port, settings.host, settings.workers) == (config.MLFLOW_PORT, config.MLFLOW_HOST, 1)
    assert settings.state == tmp_path / "mlflow"
    assert settings.backend_store_uri == f"sqlite:///{tmp_path}/mlflow/mlflow.db"
    assert settings.artifacts_dir == tmp_path / "mlflow" / "artifacts"
    assert {settings.log_file.parent, settings.pid_file.parent, settings.lock_file.parent} == {settings.state}
    assert settings.tracking_uri == f"http://127.0.0.1:{config.MLFLOW_PORT}"
    assert settings.ui_url == settings.tracking_uri + "/"
    assert settings.interpreter == sys.executable


def test_the_server_and_the_registry_default_to_one_store(tmp_path):
    """Runs logged without a server (default_tracking_uri) are in the database `fraudlab mlflow up` serves."""
    assert MlflowSettings(cache_dir=tmp_path).backend_store_uri == default_tracking_uri(tmp_path)


def test_an_explicit_state_dir_wins_over_the_cache(tmp_path):
    settings = MlflowSettings(port=15077, state_dir=tmp_path / "elsewhere", cache_dir=tmp_path / "cache")
    assert settings.state == tmp_path / "elsewhere"
    assert settings.tracking_uri == "http://127.0.0.1:15077"


def test_a_relative_state_dir_gives_an_absolute_store_uri(tmp_path, monkeypatch):
    """The server's working directory must not matter: the SQLite URI and the artifact folder are absolute."""
    # Setup
    monkeypatch.chdir(tmp_path)

    # Run
    command = _command(MlflowSettings(state_dir=Path("relative")))

    # Assert
    assert f"sqlite:///{tmp_path}/relative/mlflow.db" in command
    assert str(tmp_path / "relative" / "artifacts") in command


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"port": 0}, "Invalid port 0"),
        ({"port": 70000}, "Invalid port 70000"),
        ({"workers": 0}, "Invalid workers 0"),
        ({"host": ""}, "Invalid host ''"),
        ({"port": 0, "workers": 0}, r"Invalid port 0.*Invalid workers 0"),
    ],
)
def test_invalid_settings_are_named(kwargs, message):
    """Every bad field is named, all at once, as an MlflowError (a FraudlabError)."""
    with pytest.raises(MlflowError, match=message) as raised:
        MlflowSettings(**kwargs)
    assert isinstance(raised.value, FraudlabError)


def test_the_command_runs_mlflow_server_on_loopback_with_one_worker(tmp_path):
    """`python -m mlflow server` with the store, served artifacts and one uvicorn worker; no job runner."""
    # Setup
    settings = MlflowSettings(port=15077, state_dir=tmp_path)

    # Run
    command = _command(settings)

    # Assert
    assert command[:4] == [sys.executable, "-m", "mlflow", "server"]
    def value(flag: str) -> str:
        return command[command.index(flag) + 1]

    assert (value("--host"), value("--port"), value("--workers")) == ("127.0.0.1", "15077", "1")
    assert value("--backend-store-uri") == settings.backend_store_uri
    assert "--serve-artifacts" in command and value("--artifacts-destination") == str(settings.artifacts_dir)
    assert SERVER_ENVIRONMENT == {"MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def test_a_command_line_is_recognised_by_its_store_and_port(tmp_path):
    """Only an `mlflow server` on this state dir's store counts, and its port is read from --port."""
    # Setup
    settings = MlflowSettings(port=15077, state_dir=tmp_path)
    ours = _command(settings)

    # Run / Assert
    assert _server_port(ours, settings) == 15077
    assert _server_port(_command(MlflowSettings(port=15078, state_dir=tmp_path)), settings) == 15078
    assert _server_port(_command(MlflowSettings(port=15077, state_dir=tmp_path / "other")), settings) is None
    assert _server_port(["redis-server", "--port", "15077"], settings) is None


def test_status_lines_say_what_runs_and_where_the_ui_is(tmp_path):
    stopped = MlflowStatus(running=False, tracking_uri="http://127.0.0.1:15077", pid=None, state_dir=tmp_path)
    starting = MlflowStatus(running=True, tracking_uri="http://127.0.0.1:15077", pid=42, state_dir=tmp_path)
    reused = MlflowStatus(running=True, tracking_uri="http://127.0.0.1:15077", pid=42, state_dir=tmp_path,
                          ready=True, reused=True)
    assert "not running" in stopped.describe()
    assert "starting, not answering yet (pid 42" in starting.describe()
    assert "already running, reused" in reused.describe() and "UI http://127.0.0.1:15077/" in reused.describe()
