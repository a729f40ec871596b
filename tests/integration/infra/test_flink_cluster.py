"""The local Flink launcher against a real standalone cluster: ready, a job submitted and finished, a TaskManager
killed and replaced, a stop that leaves no process, a killed owner, a taken port, the connector jar.

One cluster (JobManager + one TaskManager from the Flink venv's PyFlink, ~20-35 s to start on two cores) serves the
module; the tests that use it run in file order, the last one stops it. No mocks: every check asks the cluster's
REST API or /proc.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fraudlab.infra.flink import (
    FlinkError,
    FlinkSettings,
    LocalFlinkCluster,
    flink_status,
    resolve_connector,
    start_flink_cluster,
    stop_flink_cluster,
    submit_command,
)
from fraudlab.infra.process import free_port, port_in_use

pytestmark = pytest.mark.slow

TINY_JOB = Path(__file__).with_name("flink_tiny_job.py")


def _get(settings: FlinkSettings, path: str) -> dict:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"{settings.rest_url}{path}", timeout=10) as response:
        return json.loads(response.read())


def _eventually(condition: Callable[[], bool], timeout: float) -> float:
    """Seconds until ``condition()`` held; fails the test after ``timeout`` seconds."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, f"not within {timeout} s"
        time.sleep(0.1)
    return time.monotonic() - started


def _processes_of(settings: FlinkSettings) -> list[int]:
    """Every live process whose command line belongs to this cluster's state dir (scripts and JVMs)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if f"io.tmp.dirs={settings.tmp_dir}" in cmdline.read_bytes().decode(errors="replace").split("\0"):
                found.append(int(cmdline.parent.name))
        except OSError:
            continue
    return found


def _command_name(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:  # it exited meanwhile
        return None


# --------------------------------------------------------------------------- no cluster needed


def test_a_taken_port_gives_a_clear_message(tmp_path):
    """Nothing is started and no pid file is left when the REST port is taken."""
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        settings = FlinkSettings(rest_port=taken, cache_dir=tmp_path)
        with pytest.raises(FlinkError, match=f"rest_port {taken} on 127.0.0.1 is already in use.*--port"):
            start_flink_cluster(settings)
    assert not settings.jobmanager_pid_file.exists() and not _processes_of(settings)


def test_the_kafka_connector_resolves_once_as_one_shaded_jar(cache_dir):
    """The suite's cache keeps the jar (like the broker's); the second call needs no Maven."""
    # Run
    jar = resolve_connector(FlinkSettings(cache_dir=cache_dir))
    started = time.monotonic()
    again = resolve_connector(FlinkSettings(cache_dir=cache_dir))

    # Assert
    assert again == jar and time.monotonic() - started < 0.5
    assert [path.name for path in jar.parent.glob("*.jar")] == [jar.name]
    with zipfile.ZipFile(jar) as archive:
        names = set(archive.namelist())
    assert "org/apache/flink/connector/kafka/source/KafkaSource.class" in names
    assert any(name.startswith("org/apache/flink/kafka/shaded/org/apache/kafka/clients/") for name in names)


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs util-linux setpriv (Linux)")
def test_the_cluster_dies_with_a_killed_owner(tmp_path):
    """atexit cannot run under SIGKILL: the parent-death signal, kept across the scripts' exec, stops both JVMs."""
    settings = FlinkSettings(rest_port=free_port(), cache_dir=tmp_path)
    owner = subprocess.Popen([sys.executable, "-c", (
        "from pathlib import Path; from fraudlab.infra.flink import FlinkSettings, LocalFlinkCluster; "
        f"LocalFlinkCluster(FlinkSettings(rest_port={settings.rest_port}, cache_dir=Path({str(tmp_path)!r}))).start()"
    )])
    try:
        # Once both scripts have exec'd into their JVMs (well before the cluster is ready), kill the owner.
        def both_jvms() -> bool:
            return [_command_name(pid) for pid in _processes_of(settings)].count("java") == 2
        _eventually(both_jvms, 60)
        owner.kill()
        owner.wait(10)
        _eventually(lambda: not _processes_of(settings), 60)
    finally:
        owner.kill()
        owner.wait(10)
        stop_flink_cluster(settings, purge=True)


# --------------------------------------------------------------------------- one real cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[LocalFlinkCluster]:
    settings = FlinkSettings(rest_port=free_port(), cache_dir=tmp_path_factory.mktemp("cache"))
    handle = LocalFlinkCluster(settings, purge_on_exit=True)
    started = time.monotonic()
    handle.start()
    print(f"\nFlink cluster ready after {time.monotonic() - started:.1f} s")
    yield handle
    handle.stop()


def test_the_cluster_is_ready_with_one_taskmanager_and_its_slots(cluster):
    # Run
    overview = _get(cluster.settings, "/overview")
    status = flink_status(cluster.settings)

    # Assert
    assert overview["taskmanagers"] == 1 and overview["flink-version"] == "2.2.1"
    assert overview["slots-total"] == overview["slots-available"] == cluster.settings.task_slots
    assert status.running and status.answering and len(status.taskmanager_pids) == 1
    assert (status.taskmanagers, status.slots_total) == (1, cluster.settings.task_slots)
    assert (cluster.settings.conf_dir / "config.yaml").is_file() and cluster.settings.jobmanager_pid_file.is_file()


def test_a_second_start_reuses_the_running_cluster(cluster):
    before = flink_status(cluster.settings)
    started = time.monotonic()
    with LocalFlinkCluster(cluster.settings) as rest_url:
        assert rest_url == cluster.rest_url and time.monotonic() - started < 5
    after = flink_status(cluster.settings)
    assert after.running and after.jobmanager_pid == before.jobmanager_pid


def test_a_submitted_pyflink_job_runs_its_python_udf_and_finishes(cluster):
    """`flink run -py` with arguments after `--`: the job (named by them) reaches FINISHED in the REST API."""
    # Setup
    name = f"tiny-{free_port()}"
    argv = submit_command(cluster.settings, script=TINY_JOB, args=["--name", name, "--rows", "500"], detached=True)

    # Run
    submitted = subprocess.run(argv, capture_output=True, text=True, timeout=180, check=False)

    # Assert
    assert submitted.returncode == 0, submitted.stdout[-3000:] + submitted.stderr[-3000:]
    assert "Job has been submitted with JobID" in submitted.stdout

    def state() -> str | None:
        return next((job["state"] for job in _get(cluster.settings, "/jobs/overview")["jobs"] if job["name"] == name),
                    None)
    _eventually(lambda: state() in ("FINISHED", "FAILED", "CANCELED"), 90)
    assert state() == "FINISHED"


def test_a_killed_taskmanager_is_noticed_and_a_fresh_one_takes_its_place(cluster):
    # Run
    pid = cluster.kill_taskmanager()
    noticed = _eventually(lambda: _get(cluster.settings, "/overview")["taskmanagers"] == 0, 10)
    added = cluster.add_taskmanager()

    # Assert
    print(f"\nkilled TaskManager noticed after {noticed:.1f} s")
    assert not Path(f"/proc/{pid}").exists() and pid not in flink_status(cluster.settings).taskmanager_pids
    overview = _get(cluster.settings, "/overview")
    assert overview["taskmanagers"] == 1 and overview["slots-total"] == cluster.settings.task_slots
    assert flink_status(cluster.settings).taskmanager_pids == (added,)


def test_stop_leaves_no_process_and_purge_no_state(cluster):
    # Setup
    status = flink_status(cluster.settings)
    pids = [status.jobmanager_pid, *status.taskmanager_pids]

    # Run
    stopped = stop_flink_cluster(cluster.settings, purge=True)

    # Assert
    assert stopped
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids) and not _processes_of(cluster.settings)
    assert not cluster.settings.state.exists()
    assert not port_in_use(cluster.settings.host, cluster.settings.rest_port)
    assert not flink_status(cluster.settings).running and stop_flink_cluster(cluster.settings) is False
