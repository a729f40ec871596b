"""A real, local, standalone Apache Flink cluster: one JobManager and its TaskManagers, from PyFlink's own scripts.

PyFlink's wheel is a whole Flink distribution (``pyflink/bin``, ``lib``, ``conf``), so the cluster needs nothing
beyond the Flink venv (``make flink-venv``, see :func:`flink_home`). This module runs in the main venv and never
imports pyflink: it only starts the distribution's scripts. The JobManager and each TaskManager are started with
``bin/jobmanager.sh start-foreground`` / ``bin/taskmanager.sh start-foreground``, which ``exec`` into the JVM, so the
pid started here is the JVM's own (pid files name it, signals reach it); each runs in a process group of its own
(with its Python UDF workers) and, with ``die_with_caller``, gets SIGTERM from the kernel when its owner dies.

A cluster lives in a *state directory*, by default ``<cache>/flink/cluster-<rest port>/``, so ``fraudlab flink up``
/ ``status`` / ``down`` can run from different processes and :class:`LocalFlinkCluster` (the ``with`` handle of tests
and notebooks) is the same thing in-process::

    conf/config.yaml          generated each start: the distribution's defaults, fraudlab's settings on top
    log/                      Flink's log files, ``jobmanager.out`` and ``<taskmanager id>.out`` (each JVM's stdout)
    jobmanager.pid            the JobManager JVM
    taskmanagers/<id>.pid     one per TaskManager; ``<id>`` is its resource id, the one the REST API and UI show
    tmp/, checkpoints/        io.tmp.dirs, web and blob storage; the jobs' default checkpoint directory

It counts as ready once the REST API's ``/overview`` lists the TaskManager with its slots. Everything binds
127.0.0.1. Heartbeats are short (a SIGKILLed TaskManager is noticed within seconds) and jobs restart with a fixed
delay, so fault tests can kill a TaskManager (:meth:`LocalFlinkCluster.kill_taskmanager`) and add a fresh one.

The Kafka connector is not put on the cluster's classpath: :func:`resolve_connector` fetches the one shaded jar into
the cache and a job names it in ``pipeline.jars``, so the jar's version belongs to the job and the distribution in
the venv stays as pip installed it. :func:`submit_command` is the ``flink run`` argv for a PyFlink job.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from fraudlab import config
from fraudlab.config import cache_root
from fraudlab.exceptions import FlinkError, InvalidParameterError, MissingToolError
from fraudlab.infra.maven import copy_dependencies, require_java, require_maven
from fraudlab.infra.process import (
    OwnedServer,
    die_with_caller_prefix,
    exclusive_lock,
    free_port,
    group_alive,
    live_command_line,
    log_tail,
    port_in_use,
    read_pid,
    reap,
    terminate_group,
)

__all__ = [
    "DEFAULT_FLINK_VENV",
    "FlinkError",
    "FlinkSettings",
    "FlinkStatus",
    "LocalFlinkCluster",
    "cluster_config",
    "flink_home",
    "flink_python",
    "flink_status",
    "job_failures",
    "job_metric_total",
    "job_state",
    "job_tasks_running",
    "resolve_connector",
    "start_flink_cluster",
    "stop_flink_cluster",
    "stop_job",
    "submit_command",
]

#: The Flink venv ``make flink-venv`` creates: at the root of the checkout fraudlab runs from (``make`` installs
#: fraudlab editable into both venvs, so this file's grandparent is that root, whichever interpreter imports it).
#: A fraudlab installed from a wheel has no such checkout: pass ``FlinkSettings(venv=...)`` (``--venv``).
DEFAULT_FLINK_VENV = Path(__file__).resolve().parents[2] / config.FLINK_VENV

#: A job whose TaskManager died restarts this often, this long apart; each attempt waits for free slots (up to
#: Flink's ``slot.request.timeout``, 5 min), so a TaskManager added after the kill is found by the next attempt.
RESTART_ATTEMPTS = 10
RESTART_DELAY = "1 s"
#: Milliseconds between heartbeats and until a silent TaskManager counts as lost (Flink's defaults: 10 s / 50 s).
HEARTBEAT_INTERVAL_MS = 1000
HEARTBEAT_TIMEOUT_MS = 5000
#: How often the REST API fetches the tasks' metrics (Flink's default: 10 s), so a count such as the late records a
#: job dropped is current a second after the records were processed.
METRICS_FETCH_MS = 1000
#: The configuration that gives it that interval: the cluster's and the embedded MiniCluster's alike.
METRICS_OPTIONS: Mapping[str, str] = {"metrics.fetcher.update-interval": str(METRICS_FETCH_MS)}
#: The smallest process sizes Flink 2.2's memory model accepts (measured: a 900m TaskManager or a 512m JobManager
#: fails before its JVM starts, with "Could not get JVM parameters" and no reason).
MIN_JOBMANAGER_MEMORY = "640m"
MIN_TASKMANAGER_MEMORY = "1g"

_MEMORY = re.compile(r"(\d+)\s*([kmg])b?", re.IGNORECASE)
_MODULE = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
_CONNECTOR_ARTIFACT = "flink-sql-connector-kafka"
_JOBMANAGER_OUT = "jobmanager.out"

# Requests to the loopback REST API never go through an HTTP proxy the environment may name.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _memory_bytes(size: str) -> int | None:
    """``"1g"`` / ``"1536m"`` / ``"2 GB"`` in bytes; None for anything Flink would not read as a memory size."""
    match = _MEMORY.fullmatch(size.strip()) if isinstance(size, str) else None
    if match is None:
        return None
    return int(match.group(1)) * 1024 ** ("kmg".index(match.group(2).lower()) + 1)


@dataclass(frozen=True)
class FlinkSettings:
    """Where and how the local Flink cluster runs.

    The memory defaults suit a 2-core, 24 GB laptop running Kafka, MLflow and the job beside it: a 1 GB JobManager
    and 2 GB TaskManagers (about 0.6 GB of it managed memory, which the Python UDF workers use); a fault test that
    adds a second TaskManager still fits.

    Args:
        rest_port: port of the REST API and web UI (also what ``flink run -m`` names).
        rpc_port: the JobManager's RPC port; None picks a free one at each start.
        host: the address everything binds and advertises; loopback by default.
        task_slots: slots per TaskManager (the parallelism one TaskManager can run).
        jobmanager_memory: the JobManager's whole process size (``jobmanager.memory.process.size``), at least 640m.
        taskmanager_memory: each TaskManager's process size (``taskmanager.memory.process.size``), at least 1g.
        venv: the Flink venv holding PyFlink; defaults to :data:`DEFAULT_FLINK_VENV`.
        state_dir: config, logs, pid files, checkpoints; defaults to ``<cache_dir>/flink/cluster-<rest_port>``.
        cache_dir: defaults to :func:`fraudlab.config.cache_root` without an environment; holds the connector jar.
        java_home: a Java 17+ installation for the JVMs; without it ``java`` is looked up on PATH.
        connector_version: the ``flink-sql-connector-kafka`` release :func:`resolve_connector` fetches.
    """

    rest_port: int = config.FLINK_REST_PORT
    rpc_port: int | None = None
    host: str = config.FLINK_HOST
    task_slots: int = config.FLINK_TASK_SLOTS
    jobmanager_memory: str = "1g"
    taskmanager_memory: str = "2g"
    venv: Path | None = None
    state_dir: Path | None = None
    cache_dir: Path | None = None
    java_home: Path | None = None
    connector_version: str = config.FLINK_KAFKA_CONNECTOR

    def __post_init__(self) -> None:
        problems = []
        ports = [("rest_port", self.rest_port), *([("rpc_port", self.rpc_port)] if self.rpc_port is not None else [])]
        for name, port in ports:
            if not _is_int(port) or not 1 <= port <= 65535:
                problems.append(f"Invalid {name} {port!r}: choose a TCP port between 1 and 65535.")
        if self.rpc_port is not None and self.rpc_port == self.rest_port:
            problems.append(f"rest_port and rpc_port are both {self.rest_port}: the JobManager's RPC needs a port "
                            "of its own (or rpc_port=None for a free one).")
        if not _is_int(self.task_slots) or self.task_slots < 1:
            problems.append(f"Invalid task_slots {self.task_slots!r}: give each TaskManager at least 1 slot.")
        if not isinstance(self.host, str) or not self.host or any(c.isspace() for c in self.host):
            problems.append(f"Invalid host {self.host!r}: give an interface address such as 127.0.0.1.")
        for name, minimum in (("jobmanager_memory", MIN_JOBMANAGER_MEMORY),
                              ("taskmanager_memory", MIN_TASKMANAGER_MEMORY)):
            value = getattr(self, name)
            size = _memory_bytes(value)
            if size is None:
                problems.append(f"Invalid {name} {value!r}: use a memory size such as '1g' or '1536m'.")
            elif size < _memory_bytes(minimum):  # type: ignore[operator]
                problems.append(f"Invalid {name} {value!r}: Flink's memory model needs at least {minimum}.")
        if not isinstance(self.connector_version, str) or not re.fullmatch(r"[\w.\-]+", self.connector_version):
            problems.append(f"Invalid connector_version {self.connector_version!r}: give a Maven version such as "
                            f"{config.FLINK_KAFKA_CONNECTOR!r}.")
        if problems:
            raise InvalidParameterError(" ".join(problems))

    @property
    def rest_url(self) -> str:
        """The REST API's base URL; the web UI is at the same address."""
        return f"http://{self.host}:{self.rest_port}"

    @property
    def ui_url(self) -> str:
        return f"{self.rest_url}/"

    @property
    def jobmanager_address(self) -> str:
        """``host:port`` as ``flink run -m`` takes it."""
        return f"{self.host}:{self.rest_port}"

    @property
    def flink_venv(self) -> Path:
        return Path(self.venv) if self.venv else DEFAULT_FLINK_VENV

    @property
    def cache(self) -> Path:
        return (Path(self.cache_dir) if self.cache_dir else cache_root()) / "flink"

    @property
    def state(self) -> Path:
        return Path(self.state_dir) if self.state_dir else self.cache / f"cluster-{self.rest_port}"

    @property
    def connector_jar(self) -> Path:
        """Where :func:`resolve_connector` puts the Kafka connector: ``<cache>/flink/connectors/<artifact>-<v>.jar``."""
        return self.cache / "connectors" / f"{_CONNECTOR_ARTIFACT}-{self.connector_version}.jar"

    @property
    def conf_dir(self) -> Path:
        return self.state / "conf"

    @property
    def log_dir(self) -> Path:
        return self.state / "log"

    @property
    def tmp_dir(self) -> Path:
        return self.state / "tmp"

    @property
    def checkpoint_dir(self) -> Path:
        return self.state / "checkpoints"

    @property
    def jobmanager_pid_file(self) -> Path:
        return self.state / "jobmanager.pid"

    @property
    def taskmanagers_dir(self) -> Path:
        return self.state / "taskmanagers"

    @property
    def lock_file(self) -> Path:
        return self.state / "cluster.lock"


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class FlinkStatus:
    """What ``fraudlab flink status`` reports: the processes from the pid files, the rest from the REST API."""

    running: bool
    rest_url: str
    state_dir: Path
    jobmanager_pid: int | None = None
    taskmanager_pids: tuple[int, ...] = ()
    answering: bool = False
    taskmanagers: int = 0
    slots_total: int = 0
    slots_available: int = 0
    running_jobs: tuple[str, ...] = ()
    reused: bool = False

    @property
    def ui_url(self) -> str:
        return f"{self.rest_url}/"

    def describe(self) -> str:
        """One line a person can read."""
        if not self.running:
            return f"Flink cluster at {self.rest_url}: not running (state {self.state_dir})"
        processes = f"JobManager pid {self.jobmanager_pid}, TaskManager pids {list(self.taskmanager_pids)}"
        if not self.answering:
            return f"Flink cluster at {self.rest_url}: starting, REST API not answering yet ({processes})"
        how = "already running, reused" if self.reused else "running"
        jobs = ", ".join(self.running_jobs) if self.running_jobs else "none"
        return (f"Flink cluster at {self.rest_url}: {how} ({processes}; {self.taskmanagers} TaskManager(s) "
                f"registered, {self.slots_available}/{self.slots_total} slots free; running jobs: {jobs}; state "
                f"{self.state_dir}); web UI {self.ui_url}")


# --------------------------------------------------------------------------- the Flink venv


def flink_python(settings: FlinkSettings | None = None) -> Path:
    """The Flink venv's interpreter: the one that runs PyFlink job drivers and Python UDF workers.

    Raises:
        MissingToolError: there is no Flink venv at ``settings.flink_venv``.
    """
    settings = settings or FlinkSettings()
    python = settings.flink_venv / "bin" / "python"
    if not python.is_file():
        raise MissingToolError(f"There is no Flink venv at {settings.flink_venv} (no bin/python): run `make "
                               "flink-venv` at the repository root, or point --venv / FRAUDLAB_FLINK_VENV at one.")
    return python


def flink_home(settings: FlinkSettings | None = None) -> Path:
    """The Flink distribution inside the Flink venv: the ``pyflink`` package, which ships ``bin/``, ``lib/``, ``conf/``.

    Found by path (``lib/python3.*/site-packages/pyflink``), so the main venv never runs or imports PyFlink.

    Raises:
        MissingToolError: the venv is missing, has no PyFlink, or another PyFlink than ``config.FLINK_VERSION``.
    """
    settings = settings or FlinkSettings()
    flink_python(settings)
    homes = sorted(settings.flink_venv.glob("lib/python3*/site-packages/pyflink/bin/flink"))
    if not homes:
        raise MissingToolError(f"The Flink venv {settings.flink_venv} has no PyFlink distribution "
                               "(site-packages/pyflink/bin/flink): run `make flink-venv`.")
    home = homes[-1].parent.parent
    found = re.search(r"__version__\s*=\s*['\"]([^'\"]+)", (home / "version.py").read_text())
    version = found.group(1) if found else "of unknown version"
    if version != config.FLINK_VERSION:
        raise MissingToolError(f"The Flink venv {settings.flink_venv} has PyFlink {version}, fraudlab needs "
                               f"{config.FLINK_VERSION}: run `make flink-venv` to update it.")
    return home


# --------------------------------------------------------------------------- the Kafka connector


def _connector_pom(version: str) -> str:
    """A throw-away POM whose only runtime dependency is the shaded connector jar (its own dependencies excluded)."""
    return f"""<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>fraudlab.local</groupId>
  <artifactId>flink-kafka-connector</artifactId>
  <version>{version}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.flink</groupId>
      <artifactId>{_CONNECTOR_ARTIFACT}</artifactId>
      <version>{version}</version>
      <exclusions><exclusion><groupId>*</groupId><artifactId>*</artifactId></exclusion></exclusions>
    </dependency>
  </dependencies>
</project>
"""


def resolve_connector(settings: FlinkSettings | None = None, *, announce: bool = True) -> Path:
    """The Kafka SQL connector jar for Flink jobs (``pipeline.jars``), resolved with Maven into the cache once.

    The jar is renamed into place only after Maven succeeded, so an interrupted download never looks usable; later
    calls return the cached file without running Maven.

    Raises:
        MissingToolError: mvn (or java, which Maven runs on) is missing.
        FlinkError: Maven could not resolve the artifact (its output's tail is included).
    """
    settings = settings or FlinkSettings()
    jar = settings.connector_jar
    if jar.is_file():
        return jar
    with exclusive_lock(jar.with_suffix(".lock")):
        if jar.is_file():
            return jar
        coordinates = f"org.apache.flink:{_CONNECTOR_ARTIFACT}:{settings.connector_version}"
        require_java(settings.java_home, needed_by="Maven")
        mvn = require_maven(resolving=f"the Flink Kafka connector ({coordinates})")
        work = jar.parent / f".resolve-{settings.connector_version}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        (work / "pom.xml").write_text(_connector_pom(settings.connector_version))
        if announce:
            print(f"Resolving {coordinates} from Maven Central into {jar.parent} (once; later runs reuse it)...",
                  flush=True)
        completed = copy_dependencies(mvn, work / "pom.xml", work / "jars")
        resolved = work / "jars" / jar.name
        if completed.returncode != 0 or not resolved.is_file():
            tail = "\n".join((completed.stdout + completed.stderr).strip().splitlines()[-15:])
            raise FlinkError(f"Maven could not resolve {coordinates} (exit {completed.returncode}). Check that "
                             f"Maven Central is reachable and the version exists. Maven said:\n{tail}")
        resolved.replace(jar)
        shutil.rmtree(work, ignore_errors=True)
        return jar


# --------------------------------------------------------------------------- config


def _flat_mappings(text: str) -> dict[str, str]:
    """The ``a.b.c -> value`` pairs of a YAML file of nested mappings and scalars, as Flink's shipped config.yaml is.

    Only what that file uses is understood (indented ``key: value`` lines, comments, plain or quoted scalars);
    fraudlab reads it to keep the distribution's defaults, chiefly the JVM's ``--add-opens`` flags Java 17 needs.
    """
    flat: dict[str, str] = {}
    path: list[tuple[int, str]] = []
    for line in text.splitlines():
        content = line.split(" #", 1)[0].rstrip()
        if not content.strip() or content.lstrip().startswith(("#", "- ")):
            continue
        indent = len(content) - len(content.lstrip())
        key, _, value = content.strip().partition(":")
        while path and path[-1][0] >= indent:
            path.pop()
        value = value.strip()
        if value:
            if len(value) > 1 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            flat[".".join([*(name for _, name in path), key])] = value
        else:
            path.append((indent, key))
    return flat


def cluster_config(settings: FlinkSettings, *, rpc_port: int, defaults: Mapping[str, str] | None = None
                   ) -> dict[str, str]:
    """The cluster's flat configuration: ``defaults`` (the distribution's config.yaml) with fraudlab's keys on top.

    Everything binds and advertises ``settings.host``; heartbeats are short and jobs restart with a fixed delay (see
    :data:`RESTART_ATTEMPTS`) so a killed TaskManager is recovered from; Python runs in the Flink venv; logs, temp
    files and checkpoints go to the state directory. A job may still set its own restart strategy or checkpoints.
    """
    python = str(settings.flink_venv / "bin" / "python")
    ours = {
        "jobmanager.rpc.address": settings.host,
        "jobmanager.rpc.port": str(rpc_port),
        "jobmanager.bind-host": settings.host,
        "jobmanager.memory.process.size": settings.jobmanager_memory,
        "taskmanager.host": settings.host,
        "taskmanager.bind-host": settings.host,
        "taskmanager.numberOfTaskSlots": str(settings.task_slots),
        "taskmanager.memory.process.size": settings.taskmanager_memory,
        "rest.address": settings.host,
        "rest.bind-address": settings.host,
        "rest.port": str(settings.rest_port),
        "parallelism.default": "1",
        "heartbeat.interval": str(HEARTBEAT_INTERVAL_MS),
        "heartbeat.timeout": str(HEARTBEAT_TIMEOUT_MS),
        **METRICS_OPTIONS,
        "restart-strategy.type": "fixed-delay",
        "restart-strategy.fixed-delay.attempts": str(RESTART_ATTEMPTS),
        "restart-strategy.fixed-delay.delay": RESTART_DELAY,
        "python.executable": python,
        "python.client.executable": python,
        "execution.checkpointing.storage": "filesystem",
        "execution.checkpointing.dir": settings.checkpoint_dir.absolute().as_uri(),
        "env.log.dir": str(settings.log_dir),
        "env.pid.dir": str(settings.state / "flink-pids"),
        "io.tmp.dirs": str(settings.tmp_dir),
        "web.tmpdir": str(settings.tmp_dir / "web"),
        "blob.storage.directory": str(settings.tmp_dir / "blob"),
    }
    return {**(defaults or {}), **ours}


def _write_conf(settings: FlinkSettings, home: Path, rpc_port: int) -> None:
    """``conf/``: the generated config.yaml (flat keys, JSON-quoted values are valid YAML) and the log4j files."""
    settings.conf_dir.mkdir(parents=True, exist_ok=True)
    for sub in (settings.log_dir, settings.tmp_dir, settings.taskmanagers_dir):
        sub.mkdir(parents=True, exist_ok=True)
    for shipped in (*home.glob("conf/log4j*.properties"), *home.glob("conf/logback*.xml")):
        shutil.copyfile(shipped, settings.conf_dir / shipped.name)
    flat = cluster_config(settings, rpc_port=rpc_port, defaults=_flat_mappings((home / "conf/config.yaml").read_text()))
    body = "".join(f"{key}: {json.dumps(value)}\n" for key, value in sorted(flat.items()))
    (settings.conf_dir / "config.yaml").write_text(
        "# Generated by fraudlab.infra.flink at every start: edits are lost. The PyFlink distribution's defaults\n"
        "# with fraudlab's settings on top.\n" + body)


def _environment(settings: FlinkSettings) -> dict[str, str]:
    """The caller's environment without its Flink variables, pointing the scripts at the generated configuration."""
    base = {key: value for key, value in os.environ.items()
            if not key.startswith("FLINK_") and key != "_FLINK_HOME_DETERMINED"}
    ours = {"FLINK_CONF_DIR": str(settings.conf_dir), "FLINK_LOG_DIR": str(settings.log_dir),
            "FLINK_PID_DIR": str(settings.state / "flink-pids")}
    if settings.java_home is not None:
        ours["JAVA_HOME"] = str(settings.java_home)
    return {**base, **ours}


# --------------------------------------------------------------------------- processes


def _rest_json(settings: FlinkSettings, path: str, timeout: float = 2.0) -> object | None:
    """The JSON a GET of the REST API answers; None when it does not answer 200 with JSON."""
    try:
        with _DIRECT.open(f"{settings.rest_url}{path}", timeout=timeout) as response:
            return json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None


def _rest(settings: FlinkSettings, path: str, timeout: float = 2.0) -> dict | None:
    """The JSON object a GET of the REST API answers; None when it answers anything else."""
    payload = _rest_json(settings, path, timeout)
    return payload if isinstance(payload, dict) else None


def _marker(settings: FlinkSettings) -> str:
    """An argument every process of this cluster carries, from the script's first line to the JVM's (``-D`` value)."""
    return f"io.tmp.dirs={settings.tmp_dir}"


def _is_ours(pid: int, settings: FlinkSettings) -> bool:
    """True when ``pid`` is alive and one of this state dir's Flink processes (script or JVM)."""
    cmdline = live_command_line(pid)
    return cmdline is not None and _marker(settings) in cmdline.split("\0")


def _live_taskmanagers(settings: FlinkSettings) -> dict[str, int]:
    """Resource id -> pid of this cluster's live TaskManagers, oldest first (from ``taskmanagers/<id>.pid``)."""
    started: list[tuple[int, str, int]] = []
    for path in settings.taskmanagers_dir.glob("*.pid"):
        with contextlib.suppress(FileNotFoundError):  # removed meanwhile by a stop or a kill
            pid = read_pid(path)
            if pid is not None and _is_ours(pid, settings):
                started.append((path.stat().st_mtime_ns, path.stem, pid))
    return {resource_id: pid for _, resource_id, pid in sorted(started)}


def _spawn(settings: FlinkSettings, script: str, out: Path, extra: Sequence[str],
           die_with_caller: bool) -> subprocess.Popen[bytes]:
    command = [*(die_with_caller_prefix() if die_with_caller else ()), str(flink_home(settings) / "bin" / script),
               "start-foreground", "-D", _marker(settings), *extra]
    with out.open("ab") as log:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env=_environment(settings))


def _wait_until(settings: FlinkSettings, ready: Callable[[], bool],
                watched: Mapping[str, tuple[subprocess.Popen[bytes], Path]], timeout: float, what: str) -> None:
    """Poll ``ready`` until it holds; raise naming the process (and its output's tail) that exited or timed out."""
    deadline = time.monotonic() + timeout
    while not ready():
        for name, (process, out) in watched.items():
            if process.poll() is not None:
                raise FlinkError(f"The Flink {name} (pid {process.pid}) exited with code {process.returncode} "
                                 f"during start-up. Last lines of {out}:\n{log_tail(out)}")
        if time.monotonic() > deadline:
            _, out = next(reversed(watched.values()))
            raise FlinkError(f"The Flink cluster at {settings.rest_url} was not ready ({what}) after {timeout:g} s; "
                             f"what was started for it is stopped. Last lines of {out}:\n{log_tail(out)}")
        time.sleep(0.25)


def _has_registered(settings: FlinkSettings, resource_id: str) -> bool:
    """True once the JobManager lists TaskManager ``resource_id`` with all its slots registered."""
    listing = _rest(settings, "/taskmanagers") or {}
    return any(entry.get("id") == resource_id and entry.get("slotsNumber", 0) >= settings.task_slots
               for entry in listing.get("taskmanagers", ()))


def _start_taskmanager(settings: FlinkSettings, *, die_with_caller: bool, timeout: float,
                       jobmanager: subprocess.Popen[bytes] | None = None) -> int:
    """Start one TaskManager and return its pid once registered; stop it again if it does not register."""
    resource_id = f"taskmanager-{secrets.token_hex(3)}"
    out = settings.log_dir / f"{resource_id}.out"
    process = _spawn(settings, "taskmanager.sh", out, ["-D", f"taskmanager.resource-id={resource_id}"],
                     die_with_caller)
    pid_file = settings.taskmanagers_dir / f"{resource_id}.pid"
    pid_file.write_text(f"{process.pid}\n")
    watched = {"TaskManager": (process, out)}
    if jobmanager is not None:
        watched = {"JobManager": (jobmanager, settings.log_dir / _JOBMANAGER_OUT), **watched}
    try:
        _wait_until(settings, lambda: _has_registered(settings, resource_id), watched, timeout,
                    f"TaskManager {resource_id} registered with {settings.task_slots} slot(s)")
    except BaseException:  # not ready, or interrupted (Ctrl-C): leave no TaskManager behind
        terminate_group(process.pid, lambda: group_alive(process.pid), 10.0)
        pid_file.unlink(missing_ok=True)
        raise
    return process.pid


def flink_status(settings: FlinkSettings | None = None, *, probe: bool = True) -> FlinkStatus:
    """Report whether this state dir's cluster runs (its JobManager), and, with ``probe``, what its REST API says."""
    settings = settings or FlinkSettings()
    pid = read_pid(settings.jobmanager_pid_file)
    running = pid is not None and _is_ours(pid, settings)
    status = FlinkStatus(running=running, rest_url=settings.rest_url, state_dir=settings.state,
                         jobmanager_pid=pid if running else None,
                         taskmanager_pids=tuple(_live_taskmanagers(settings).values()))
    overview = _rest(settings, "/overview") if running and probe else None
    if overview is None:
        return status
    jobs = (_rest(settings, "/jobs/overview") or {}).get("jobs", ())
    return replace(status, answering=True, taskmanagers=overview.get("taskmanagers", 0),
                   slots_total=overview.get("slots-total", 0), slots_available=overview.get("slots-available", 0),
                   running_jobs=tuple(job["name"] for job in jobs if job.get("state") == "RUNNING"))


def _check_can_start(settings: FlinkSettings) -> None:
    """Ports free, java present: said before anything is written or started."""
    for name, port in (("rest_port", settings.rest_port), ("rpc_port", settings.rpc_port)):
        if port is not None and port_in_use(settings.host, port):
            flag = "--port" if name == "rest_port" else "rpc_port="
            raise FlinkError(f"Cannot start the Flink cluster: {name} {port} on {settings.host} is already in use "
                             f"by another process. Stop that process or choose another port ({flag} ...).")
    require_java(settings.java_home, needed_by=f"Flink {config.FLINK_VERSION}")


def start_flink_cluster(
    settings: FlinkSettings | None = None, *, timeout: float = 120.0, die_with_caller: bool = False,
    announce: Callable[[str], None] | None = None,
) -> FlinkStatus:
    """Start a JobManager and one TaskManager and return once the TaskManager's slots are registered.

    A cluster already running on this state dir is reused (and given a TaskManager if it has none left). The two
    JVMs start together (the TaskManager retries until the JobManager answers): 15-40 s on two cores, by load. With
    ``die_with_caller`` the processes started here get SIGTERM from the kernel when this process dies, however it
    dies; without it (``fraudlab flink up``) they outlive the command. ``announce`` hears one line when a cluster is
    really being started.

    Raises:
        MissingToolError: the Flink venv or java 17+ is missing.
        FlinkError: a port is taken, or a JVM exited or the TaskManager did not register within ``timeout``
            seconds (the tail of its output is included; the cluster is then stopped).
    """
    settings = settings or FlinkSettings()
    with exclusive_lock(settings.lock_file):
        current = flink_status(settings, probe=False)
        if current.running:
            if not current.taskmanager_pids:
                _start_taskmanager(settings, die_with_caller=False, timeout=timeout)
            return replace(flink_status(settings), reused=True)
        settings.jobmanager_pid_file.unlink(missing_ok=True)
        _check_can_start(settings)
        home = flink_home(settings)
        _write_conf(settings, home, settings.rpc_port or free_port(settings.host))
        if announce is not None:
            announce(f"Starting a Flink cluster on {settings.rest_url} (15-40 s on two cores, by load) ...")
        jobmanager = _spawn(settings, "jobmanager.sh", settings.log_dir / _JOBMANAGER_OUT, (), die_with_caller)
        settings.jobmanager_pid_file.write_text(f"{jobmanager.pid}\n")
        try:
            _start_taskmanager(settings, die_with_caller=die_with_caller, timeout=timeout, jobmanager=jobmanager)
        except BaseException:  # not ready, or interrupted (Ctrl-C): leave no JobManager behind
            stop_flink_cluster(settings)
            raise
    return flink_status(settings)


def stop_flink_cluster(settings: FlinkSettings | None = None, *, timeout: float = 30.0, purge: bool = False) -> bool:
    """Stop the TaskManagers, then the JobManager (SIGTERM to each process group, SIGKILL after ``timeout``).

    Returns once every process of the groups (JVMs and Python workers) has exited; True when any was running. With
    ``purge`` the state directory (config, logs, checkpoints) is deleted too; the connector jar stays in the cache.
    """
    settings = settings or FlinkSettings()
    pids = list(_live_taskmanagers(settings).values())
    jobmanager = read_pid(settings.jobmanager_pid_file)
    if jobmanager is not None and _is_ours(jobmanager, settings):
        pids.append(jobmanager)
    for pid in pids:
        terminate_group(pid, lambda pid=pid: group_alive(pid), timeout)
    settings.jobmanager_pid_file.unlink(missing_ok=True)
    for pid_file in settings.taskmanagers_dir.glob("*.pid"):
        pid_file.unlink()
    if purge:
        shutil.rmtree(settings.state, ignore_errors=True)
    return bool(pids)


def _kill_taskmanager(settings: FlinkSettings) -> int:
    """SIGKILL the oldest live TaskManager's process group (a crash: no shutdown, no deregistration); its pid."""
    live = _live_taskmanagers(settings)
    if not live:
        raise FlinkError(f"The Flink cluster at {settings.rest_url} has no running TaskManager to kill.")
    resource_id, pid = next(iter(live.items()))
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    while group_alive(pid):
        time.sleep(0.01)
    reap(pid)
    (settings.taskmanagers_dir / f"{resource_id}.pid").unlink(missing_ok=True)
    return pid


# --------------------------------------------------------------------------- jobs


def job_state(settings: FlinkSettings, job_id: str) -> str | None:
    """The cluster's state of job ``job_id`` (``RUNNING``, ``RESTARTING``, ``FINISHED``...); None if it is unknown."""
    state = (_rest(settings, f"/jobs/{job_id}") or {}).get("state")
    return str(state) if state is not None else None


def job_tasks_running(settings: FlinkSettings, job_id: str) -> bool:
    """True once every task of job ``job_id`` runs (deployed, state restored, functions open)."""
    vertices = (_rest(settings, f"/jobs/{job_id}") or {}).get("vertices", [])
    return bool(vertices) and all(vertex.get("status") == "RUNNING" for vertex in vertices)


def job_failures(settings: FlinkSettings, job_id: str) -> list[str]:
    """The failures job ``job_id`` restarted after (oldest first), from its exception history: one line each."""
    history = (_rest(settings, f"/jobs/{job_id}/exceptions") or {}).get("exceptionHistory", {})
    entries = history.get("entries", []) if isinstance(history, dict) else []
    return [str(entry.get("exceptionName", "")) + ": " + str(entry.get("taskName") or entry.get("location") or "")
            for entry in reversed(entries)]


def job_metric_total(settings: FlinkSettings, job_id: str, metric: str) -> int | None:
    """The sum, over every operator and subtask of job ``job_id``, of the operator metric ``metric`` (the name after
    the operator's, such as ``numLateRecordsDropped``); 0 when no operator has it, None when the job is unknown.

    The REST API serves what it last fetched from the TaskManagers, at most :data:`METRICS_FETCH_MS` old.
    """
    vertices = (_rest(settings, f"/jobs/{job_id}") or {}).get("vertices")
    if vertices is None:
        return None
    return sum(_vertex_metric_total(settings, f"/jobs/{job_id}/vertices/{vertex['id']}/subtasks/metrics", metric)
               for vertex in vertices)


def _vertex_metric_total(settings: FlinkSettings, path: str, metric: str) -> int:
    """One vertex's share of :func:`job_metric_total`: each of its operators' ``metric``, summed over subtasks."""
    listed = _rest_json(settings, path)
    names = [str(item.get("id", "")) for item in listed] if isinstance(listed, list) else []
    total = 0
    for name in (name for name in names if name.endswith(f".{metric}")):
        values = _rest_json(settings, f"{path}?get={urllib.parse.quote(name)}&agg=sum")
        if isinstance(values, list):
            total += sum(int(float(item.get("sum", 0))) for item in values)
    return total


def stop_job(settings: FlinkSettings, job_id: str, *, savepoint_dir: str, timeout: float = 120.0) -> str:
    """Stop job ``job_id`` with a drain (``flink stop --drain``): sources end, every window fires, the final
    savepoint commits the sinks' transactions; return the savepoint's location once the job is ``FINISHED``.

    Raises:
        FlinkError: the cluster refused, the savepoint failed, or the job had not finished after ``timeout`` s.
    """
    body = json.dumps({"drain": True, "targetDirectory": savepoint_dir, "formatType": "CANONICAL"}).encode()
    request = urllib.request.Request(f"{settings.rest_url}/jobs/{job_id}/stop", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with _DIRECT.open(request, timeout=10) as response:
            trigger = json.loads(response.read())["request-id"]
    except (urllib.error.URLError, OSError, ValueError, KeyError) as exc:
        raise FlinkError(f"The Flink cluster at {settings.rest_url} refused to stop job {job_id}: {exc}") from None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = _rest(settings, f"/jobs/{job_id}/savepoints/{trigger}") or {}
        if answer.get("status", {}).get("id") == "COMPLETED":
            operation = answer.get("operation", {})
            if "failure-cause" in operation:
                cause = operation["failure-cause"].get("stack-trace", "").splitlines()[:3]
                raise FlinkError(f"Stopping job {job_id} failed: {' '.join(cause)}")
            if job_state(settings, job_id) == "FINISHED":
                return str(operation.get("location", ""))
        time.sleep(0.25)
    raise FlinkError(f"Job {job_id} on {settings.rest_url} had not stopped after {timeout:g} s "
                     f"(state {job_state(settings, job_id)}).")



def submit_command(
    settings: FlinkSettings | None = None, *, script: Path | None = None, module: str | None = None,
    args: Sequence[str] = (), detached: bool = False,
) -> list[str]:
    """The argv that submits a PyFlink job to the cluster with ``flink run``: ``script`` (``-py``) or ``module``.

    ``module`` is a dotted name importable in the Flink venv (``-pym``; fraudlab is installed there, so
    ``fraudlab.detect.flink_job`` works as is). The argv starts with ``env FLINK_CONF_DIR=<state>/conf``: the client
    then reads the cluster's generated configuration (the Flink venv's python for the driver and the UDF workers, the
    JVM flags) and logs into the cluster's ``log/``. ``args`` go to the job after ``--``. Attached (the default),
    the command returns when the job ends; ``detached`` returns once it is submitted (it prints the JobID). Either
    way the client needs 15 s or more on two cores (a JVM and the Python driver compiling the job).

    Raises:
        InvalidParameterError: not exactly one of ``script`` and ``module``, a missing script, or a bad module name.
        FlinkError: the cluster was never started here (no generated configuration).
    """
    settings = settings or FlinkSettings()
    if (script is None) == (module is None):
        raise InvalidParameterError("Give submit_command exactly one of script= (a .py file) and module= "
                                    f"(a dotted name); got script={script!r}, module={module!r}.")
    if script is not None and not Path(script).is_file():
        raise InvalidParameterError(f"script={script} does not exist: give the path of the job's .py file.")
    if module is not None and not _MODULE.fullmatch(module):
        raise InvalidParameterError(f"Invalid module {module!r}: give a dotted Python module name.")
    if not (settings.conf_dir / "config.yaml").is_file():
        raise FlinkError(f"No Flink cluster configuration in {settings.conf_dir}: start the cluster first "
                         f"(`fraudlab flink up --port {settings.rest_port}`).")
    environment = [f"FLINK_CONF_DIR={settings.conf_dir}",
                   *([f"JAVA_HOME={settings.java_home}"] if settings.java_home is not None else [])]
    job = ["-py", str(Path(script).absolute())] if script is not None else ["-pym", str(module)]
    return ["env", *environment, str(flink_home(settings) / "bin" / "flink"), "run",
            "-m", settings.jobmanager_address, *(["-d"] if detached else []), *job, *(["--", *args] if args else [])]


class LocalFlinkCluster(OwnedServer):
    """A Flink cluster owned by a ``with`` block: started on entry, stopped on exit if this block started it.

    A cluster this handle started is also stopped when the Python process exits, and on Linux the kernel stops it
    when the process is killed by a signal. :meth:`kill_taskmanager` and :meth:`add_taskmanager` are for fault tests.

    >>> with LocalFlinkCluster(FlinkSettings(rest_port=18081)) as rest_url:
    ...     ...  # subprocess.run(submit_command(settings, script=job, args=[...]), check=True)
    """

    def __init__(self, settings: FlinkSettings | None = None, *, purge_on_exit: bool = False,
                 timeout: float = 120.0) -> None:
        super().__init__(purge_on_exit=purge_on_exit)
        self.settings = settings or FlinkSettings()
        self.timeout = timeout

    @property
    def rest_url(self) -> str:
        return self.settings.rest_url

    @property
    def address(self) -> str:
        return self.rest_url

    def kill_taskmanager(self) -> int:
        """SIGKILL the oldest TaskManager (JVM and Python workers) and return its pid; the JobManager notices the
        loss within the heartbeat timeout (5 s), in practice ~2 s, when the TaskManager's connection drops."""
        return _kill_taskmanager(self.settings)

    def add_taskmanager(self) -> int:
        """Start a fresh TaskManager and return its pid once its slots are registered (a job can then recover)."""
        return _start_taskmanager(self.settings, die_with_caller=True, timeout=self.timeout)

    def _launch(self) -> bool:
        return start_flink_cluster(self.settings, timeout=self.timeout, die_with_caller=True).reused

    def _shutdown(self, purge: bool) -> None:
        stop_flink_cluster(self.settings, purge=purge)
