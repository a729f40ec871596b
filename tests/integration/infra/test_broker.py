"""The local Kafka launcher: bad environments, a taken port, stale data, and a real lifecycle."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from fraudlab.cli import cli
from fraudlab.exceptions import BrokerError, MissingToolError
from fraudlab.infra.broker import BrokerSettings, LocalBroker, broker_status, resolve_jars, start_broker, stop_broker
from fraudlab.infra.maven import parse_java_major, require_java, require_maven
from fraudlab.infra.process import free_port


def _fake_tool(bin_dir: Path, name: str, script: str) -> None:
    bin_dir.mkdir(parents=True, exist_ok=True)
    tool = bin_dir / name
    tool.write_text(f"#!/bin/sh\n{script}\n")
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def bare_path(tmp_path, monkeypatch) -> Path:
    """A PATH with nothing on it but what a test puts there, and no JAVA_HOME."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    return bin_dir


@pytest.mark.parametrize(
    ("output", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15', 17),
        ('openjdk version "21" 2023-09-19', 21),
        ('java version "1.8.0_402"', 8),
        ("no version here", None),
    ],
)
def test_parse_java_major(output, major):
    assert parse_java_major(output) == major


def test_missing_java_says_what_to_install(bare_path):
    with pytest.raises(MissingToolError, match=r"`java` was not found.*openjdk-17"):
        require_java()


def test_old_java_is_refused_with_its_version(bare_path):
    _fake_tool(bare_path, "java", "echo 'openjdk version \"11.0.22\" 2024-01-16' >&2")
    with pytest.raises(MissingToolError, match=r"Java 11; Kafka .* needs Java 17\+"):
        require_java()
    with pytest.raises(MissingToolError, match=r"Java 11; Flink 2\.2\.1 needs Java 17\+"):
        require_java(needed_by="Flink 2.2.1")


def test_missing_maven_says_what_to_install(bare_path):
    with pytest.raises(MissingToolError, match=r"`mvn` was not found.*apt-get install maven"):
        require_maven()


def test_resolving_jars_without_maven_fails_before_downloading(bare_path, tmp_path):
    _fake_tool(bare_path, "java", "echo 'openjdk version \"17.0.1\"' >&2")
    settings = BrokerSettings(cache_dir=tmp_path / "cache")
    with pytest.raises(MissingToolError, match="mvn"):
        resolve_jars(settings, announce=False)
    assert not (tmp_path / "cache" / f"kafka-{settings.kafka_version}" / "libs").exists()


def test_cli_reports_missing_java_and_exits_non_zero(bare_path, tmp_path):
    result = CliRunner().invoke(
        cli, ["broker", "up", "--state-dir", str(tmp_path / "s"), "--port", str(free_port()),
              "--controller-port", str(free_port())],
    )
    assert result.exit_code != 0
    assert isinstance(result.exception, MissingToolError)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"port": 70000}, "Invalid port 70000"),
        ({"port": 9100, "controller_port": 9100}, "both 9100"),
        ({"heap": "lots"}, "Invalid heap 'lots'"),
    ],
)
def test_invalid_settings_are_named(kwargs, message):
    with pytest.raises(BrokerError, match=message):
        BrokerSettings(**kwargs)


def test_taken_port_gives_a_clear_message(tmp_path):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        settings = BrokerSettings(port=taken, controller_port=free_port(), state_dir=tmp_path / "state")
        with pytest.raises(BrokerError, match=f"port {taken} on 127.0.0.1 is already in use"):
            start_broker(settings)
    assert not settings.pid_file.exists()


@pytest.mark.kafka
def test_stale_data_dir_is_refused(fresh_broker_settings):
    settings = fresh_broker_settings()
    settings.data_dir.mkdir(parents=True)
    (settings.data_dir / "meta.properties").write_text("version=1\ncluster.id=SomeoneElsesCluster\nnode.id=1\n")
    with pytest.raises(BrokerError, match=r"Stale Kafka data .*'SomeoneElsesCluster'.*--purge"):
        start_broker(settings)
    assert not broker_status(settings).running


@pytest.mark.kafka
@pytest.mark.slow
def test_lifecycle_up_reuse_status_down_leaves_no_process(fresh_broker_settings):
    settings = fresh_broker_settings()
    first = start_broker(settings)
    try:
        assert first.running and not first.reused
        second = start_broker(settings)
        assert second.reused and second.pid == first.pid
        assert broker_status(settings).running
        assert "Kafka Server started" in settings.log_file.read_text()
    finally:
        assert stop_broker(settings) is True
    assert not broker_status(settings).running
    assert not Path(f"/proc/{first.pid}").exists()  # exited and reaped: not even a zombie is left
    assert stop_broker(settings) is False


@pytest.mark.kafka
@pytest.mark.slow
def test_cli_up_status_down(tmp_path):
    runner = CliRunner()
    flags = ["--state-dir", str(tmp_path / "state"), "--port", str(free_port()),
             "--controller-port", str(free_port())]
    try:
        up = runner.invoke(cli, ["broker", "up", *flags])
        assert up.exit_code == 0, up.output
        assert "running (pid" in up.output
        status = runner.invoke(cli, ["broker", "status", *flags])
        assert status.exit_code == 0
    finally:
        down = runner.invoke(cli, ["broker", "down", "--purge", *flags])
    assert down.exit_code == 0 and "stopped" in down.output
    assert runner.invoke(cli, ["broker", "status", *flags]).exit_code == 3
    assert not (tmp_path / "state").exists()


@pytest.mark.kafka
def test_local_broker_reuses_a_running_one_and_leaves_it_running(kafka_bootstrap, local_broker_settings):
    """A second handle on the session broker must not stop it on exit."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        pytest.skip("the session broker is external, not started by the launcher")
    handle = LocalBroker(local_broker_settings)
    with handle as bootstrap:
        assert bootstrap == kafka_bootstrap
        assert handle.started_here is False
    assert broker_status(local_broker_settings).running


def test_cluster_ids_never_look_like_an_option(monkeypatch):
    """The storage tool would parse an id starting with '-' as a flag; such draws are redrawn."""
    import uuid

    from fraudlab.infra import broker

    dash_first = uuid.UUID(bytes=b"\xf8" + bytes(15))
    normal = uuid.UUID(bytes=bytes(16))
    draws = iter([dash_first, normal])
    monkeypatch.setattr(broker.uuid, "uuid4", lambda: next(draws))
    cluster_id = broker._new_cluster_id()
    assert cluster_id == "AAAAAAAAAAAAAAAAAAAAAA"
    assert len(cluster_id) == 22


@pytest.mark.kafka
@pytest.mark.slow
def test_a_broker_started_by_a_process_dies_with_it(fresh_broker_settings):
    """A notebook kernel that exits without stopping its LocalBroker leaves no JVM behind."""
    import subprocess
    import sys

    settings = fresh_broker_settings()
    script = (
        "from pathlib import Path\n"
        "from fraudlab.infra.broker import BrokerSettings, LocalBroker\n"
        f"LocalBroker(BrokerSettings(port={settings.port}, controller_port={settings.controller_port}, "
        f"state_dir=Path({str(settings.state)!r}), cache_dir=Path({str(settings.cache)!r}))).start()\n"
    )
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180)
    assert completed.returncode == 0, completed.stderr
    assert "Kafka Server started" in settings.log_file.read_text()
    assert not broker_status(settings).running


def _is_running_broker(pid: int) -> bool:
    try:
        return "kafka.Kafka" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except FileNotFoundError:
        return False


@pytest.mark.kafka
@pytest.mark.slow
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs util-linux setpriv (Linux)")
def test_local_broker_dies_with_a_killed_owner(fresh_broker_settings):
    """atexit cannot run under SIGKILL: the kernel's parent-death signal must stop the JVM instead."""
    settings = fresh_broker_settings()
    owner = subprocess.Popen(
        [sys.executable, "-c", (
            "import sys, time; from pathlib import Path; "
            "from fraudlab.infra.broker import BrokerSettings, LocalBroker; "
            f"s = BrokerSettings(port={settings.port}, controller_port={settings.controller_port}, "
            f"state_dir=Path({str(settings.state)!r}), cache_dir=Path({str(settings.cache)!r})); "
            "LocalBroker(s).start(); print('up', flush=True); "
            "time.sleep(600)"
        )],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert owner.stdout.readline().strip() == "up"
        pid = broker_status(settings).pid
        assert pid is not None and _is_running_broker(pid)
        owner.kill()
        owner.wait(10)
        deadline = time.monotonic() + 60
        while _is_running_broker(pid) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not _is_running_broker(pid), f"the broker (pid {pid}) outlived its killed owner"
    finally:
        owner.kill()
        stop_broker(settings)
