"""The Airflow launcher's settings: defaults from config, one home in the cache, every setting in the environment."""

from __future__ import annotations

import json
import os

import pytest

from fraudlab import config
from fraudlab.exceptions import AirflowError, FraudlabError
from fraudlab.infra.airflow import DEFAULT_AIRFLOW_VENV, DEFAULT_DAGS_FOLDER, AirflowSettings, AirflowStatus


def test_defaults_come_from_config_and_the_home_lives_in_the_cache(tmp_path):
    """Port, host and parallelism are config's; the home <cache>/airflow holds the DB, password, log and pid."""
    # Run
    settings = AirflowSettings(cache_dir=tmp_path)

    # Assert
    assert (settings.port, settings.host, settings.parallelism) == (config.AIRFLOW_PORT, config.AIRFLOW_HOST,
                                                                    config.AIRFLOW_PARALLELISM)
    assert settings.state == tmp_path / "airflow"
    assert {path.parent for path in (settings.db_file, settings.password_file, settings.log_file, settings.pid_file,
                                     settings.lock_file)} == {settings.state}
    assert settings.url == f"http://127.0.0.1:{config.AIRFLOW_PORT}/"
    assert settings.health_url == f"{settings.url}api/v2/monitor/health"


def test_the_venv_and_the_dags_folder_default_to_the_checkout(repo_root):
    assert repo_root / config.AIRFLOW_VENV == DEFAULT_AIRFLOW_VENV
    assert repo_root / "fraudlab" / "pipeline" / "dags" == DEFAULT_DAGS_FOLDER
    assert (DEFAULT_DAGS_FOLDER / f"{config.AIRFLOW_DAG_ID}.py").is_file()
    settings = AirflowSettings()
    assert settings.executable == DEFAULT_AIRFLOW_VENV / "bin" / "airflow"
    assert settings.dags == DEFAULT_DAGS_FOLDER


def test_the_environment_holds_every_setting_for_the_chosen_port(tmp_path):
    """LocalExecutor, parallelism, SQLite in the home, loopback, and the execution API on the same port."""
    # Setup
    settings = AirflowSettings(port=18123, home=tmp_path / "home", venv=tmp_path / "venv", parallelism=3)

    # Run
    env = settings.environment((18124, 18125))

    # Assert
    assert env["AIRFLOW_HOME"] == str(tmp_path / "home")
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == f"sqlite:///{tmp_path}/home/airflow.db"
    assert (env["AIRFLOW__CORE__EXECUTOR"], env["AIRFLOW__CORE__PARALLELISM"]) == ("LocalExecutor", "3")
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == str(DEFAULT_DAGS_FOLDER)
    assert (env["AIRFLOW__API__HOST"], env["AIRFLOW__API__PORT"]) == ("127.0.0.1", "18123")
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:18123/execution/"
    assert (env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"], env["AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT"]) == (
        "18124", "18125")
    assert env["PATH"].split(os.pathsep)[0] == str(tmp_path / "venv" / "bin"), "standalone runs `airflow` from PATH"


def test_a_command_that_serves_nothing_gets_no_log_server_ports(tmp_path):
    env = AirflowSettings(home=tmp_path).environment()
    assert not any(key.startswith("AIRFLOW__LOGGING__") for key in env)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"port": 0}, "Invalid port 0"),
        ({"port": 70000}, "Invalid port 70000"),
        ({"parallelism": 0}, "Invalid parallelism 0"),
        ({"host": "1 2"}, "Invalid host '1 2'"),
        ({"port": 0, "parallelism": 0}, r"Invalid port 0.*Invalid parallelism 0"),
    ],
)
def test_invalid_settings_are_named(kwargs, message):
    """Every bad field is named, all at once, as an AirflowError (a FraudlabError)."""
    with pytest.raises(AirflowError, match=message) as raised:
        AirflowSettings(**kwargs)
    assert isinstance(raised.value, FraudlabError)


def test_the_status_line_gives_the_login_from_the_generated_password_file(tmp_path):
    # Setup
    settings = AirflowSettings(home=tmp_path)
    status = AirflowStatus(running=True, url=settings.url, pid=42, home=tmp_path, password_file=settings.password_file,
                           ready=True)

    # Run / Assert
    assert f"password generated into {settings.password_file}" in status.describe()
    settings.password_file.write_text(json.dumps({"admin": "s3cret"}))
    assert status.describe().endswith(f"login admin / s3cret (from {settings.password_file})")
    assert "not running" in AirflowStatus(running=False, url=settings.url, pid=None, home=tmp_path,
                                          password_file=settings.password_file).describe()


def test_the_requirements_and_their_lock_pin_the_release_config_names(repo_root):
    pin = f"apache-airflow=={config.AIRFLOW_VERSION}"
    assert pin in (repo_root / "requirements-airflow.txt").read_text().splitlines()
    lock = (repo_root / "constraints-airflow.txt").read_text().splitlines()
    assert pin in lock
    assert all("==" in line for line in lock if line and not line.startswith("#")), "every package pinned"
    assert not any(line.lower().startswith("fraudlab") for line in lock)
