"""``fraudlab airflow up | status | down`` with the real ``airflow standalone`` from .venv-airflow.

The real server takes 30-60 s to become healthy on two cores, so one test walks its whole lifecycle through the
command line; the refusals before a start need no server.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.request

import pytest

from fraudlab import config
from fraudlab.exceptions import AirflowError
from fraudlab.infra.airflow import HEALTHY_COMPONENTS, AirflowSettings, start_airflow, stop_airflow
from fraudlab.infra.process import free_port, group_alive, read_pid


def _fraudlab(*args: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fraudlab", *args], capture_output=True, text=True, timeout=timeout,
                          check=False, stdin=subprocess.DEVNULL)


def _health(settings: AirflowSettings) -> dict:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(settings.health_url, timeout=10) as response:
        return json.loads(response.read())


# --------------------------------------------------------------------------- no server needed


def test_a_taken_port_gives_a_clear_message(tmp_path, repo_root):
    """Nothing is started and no pid file is left when the port is taken."""
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        settings = AirflowSettings(port=taken, home=tmp_path, venv=repo_root / config.AIRFLOW_VENV)
        if not settings.executable.is_file():
            pytest.skip("the Airflow venv does not exist yet: create it with `make airflow-venv`")
        with pytest.raises(AirflowError, match=f"port {taken} on 127.0.0.1 is already in use.*--port"):
            start_airflow(settings)
    assert not settings.pid_file.exists()


def test_a_missing_airflow_venv_names_the_make_target(tmp_path):
    settings = AirflowSettings(port=free_port(), home=tmp_path / "home", venv=tmp_path / "no-venv")
    with pytest.raises(AirflowError, match=r"no-venv \(no bin/airflow\): run `make airflow-venv`"):
        start_airflow(settings)
    assert stop_airflow(settings) is False


# --------------------------------------------------------------------------- the real airflow standalone


@pytest.mark.slow
def test_up_is_healthy_then_down_leaves_no_process_of_its_group(tmp_path, repo_root):
    """up prints the URL and the login; health reports every component; down stops the whole process group."""
    # Setup
    port, home = free_port(), tmp_path / "airflow-home"
    settings = AirflowSettings(port=port, home=home, venv=repo_root / config.AIRFLOW_VENV)
    if not settings.executable.is_file():
        pytest.skip("the Airflow venv does not exist yet: create it with `make airflow-venv`")
    flags = ["--port", str(port), "--home", str(home), "--venv", str(settings.airflow_venv)]
    try:
        # Run
        up = _fraudlab("airflow", "up", *flags)

        # Assert: healthy, on loopback, its login printed, the DAG folder's DAG named
        assert up.returncode == 0, f"{up.stdout}\n{up.stderr}"
        password = json.loads(settings.password_file.read_text())["admin"]
        assert f"Airflow at http://127.0.0.1:{port}/: running" in up.stdout
        assert f"login admin / {password} (from {settings.password_file})" in up.stdout
        health = _health(settings)
        assert [health[name]["status"] for name in HEALTHY_COMPONENTS] == ["healthy"] * len(HEALTHY_COMPONENTS)
        pgid = read_pid(settings.pid_file)
        assert pgid is not None and os.getpgid(pgid) == pgid, "standalone leads a process group of its own"
        assert group_alive(pgid)
        assert _fraudlab("airflow", "status", *flags).returncode == 0
        again = _fraudlab("airflow", "up", *flags)
        assert again.returncode == 0 and "already running, reused" in again.stdout

        down = _fraudlab("airflow", "down", *flags)

        assert down.returncode == 0 and f"Airflow on port {port}: stopped" in down.stdout
        assert not group_alive(pgid), "a component of airflow standalone outlived `down` (read from /proc)"
        assert not settings.pid_file.exists()
        status = _fraudlab("airflow", "status", *flags)
        assert status.returncode == 3 and "not running" in status.stdout
    finally:
        stop_airflow(settings)
