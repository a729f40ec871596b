"""A real, local, single-node Apache Kafka broker (KRaft, combined broker+controller).

There is no Docker engine on the machines this project runs on, and a fake
broker would prove nothing, so fraudlab starts the genuine broker from its own
jars. Maven resolves ``org.apache.kafka:kafka_2.13`` and its runtime
dependencies (plus the log4j2 binding the broker logs through) from Maven
Central once, into a cache outside the repository; every later start reuses
them.

A broker lives in a *state directory* holding its configuration, KRaft data,
log files and a pid file, so ``up`` / ``status`` / ``down`` can run from
different processes. :class:`LocalBroker` is the in-process handle that tests
and notebooks use as a context manager.
"""

from __future__ import annotations

import base64
import re
import shutil
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from fraudlab import config
from fraudlab.config import LOG4J_VERSION, SCALA_VERSION, cache_root
from fraudlab.exceptions import BrokerError
from fraudlab.infra.maven import copy_dependencies, require_java, require_maven
from fraudlab.infra.process import (
    OwnedServer,
    die_with_caller_prefix,
    exclusive_lock,
    live_command_line,
    log_tail,
    port_in_use,
    read_pid,
    terminate_group,
)

__all__ = [
    "BrokerSettings",
    "BrokerStatus",
    "LocalBroker",
    "broker_status",
    "resolve_jars",
    "start_broker",
    "stop_broker",
]

_JARS_COMPLETE_MARKER = ".complete"


#: The garbage-collector settings Kafka's own start scripts use (KAFKA_JVM_PERFORMANCE_OPTS): short G1 pauses
#: keep the broker from adding tens of milliseconds to acknowledgement latency tails.
_JVM_PERFORMANCE_OPTIONS = ("-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:InitiatingHeapOccupancyPercent=35",
                            "-XX:+ExplicitGCInvokesConcurrent")


@dataclass(frozen=True)
class BrokerSettings:
    """Where and how the local broker runs.

    Args:
        port: client (PLAINTEXT) listener port.
        controller_port: KRaft controller listener port; must differ from ``port``.
        host: interface both listeners bind to; loopback by default.
        heap: JVM heap (``-Xmx`` and ``-Xms``), bounded so a laptop stays usable.
        kafka_version: Apache Kafka release resolved from Maven Central.
        state_dir: config, data, logs and pid file; defaults to
            ``<cache_dir>/broker-<port>``.
        cache_dir: where the jars (and, without ``state_dir``, the broker state) are kept;
            defaults to :func:`fraudlab.config.cache_root` without an environment, ``~/.cache/fraudlab``.
        java_home: a Java installation to run the broker with; without it ``java`` is looked up on PATH.
    """

    port: int = config.BROKER_PORT
    controller_port: int = config.BROKER_CONTROLLER_PORT
    host: str = config.BROKER_HOST
    heap: str = config.BROKER_HEAP
    kafka_version: str = config.KAFKA_VERSION
    state_dir: Path | None = None
    cache_dir: Path | None = None
    java_home: Path | None = None

    def __post_init__(self) -> None:
        for name in ("port", "controller_port"):
            value = getattr(self, name)
            if not 1 <= value <= 65535:
                raise BrokerError(f"Invalid {name} {value!r}: choose a TCP port between 1 and 65535.")
        if self.port == self.controller_port:
            raise BrokerError(
                f"port and controller_port are both {self.port}: the KRaft controller needs a port of its own."
            )
        if not re.fullmatch(r"\d+[kKmMgG]", self.heap):
            raise BrokerError(f"Invalid heap {self.heap!r}: use a JVM size such as '512m' or '1g'.")

    @property
    def bootstrap(self) -> str:
        """The ``host:port`` that Kafka clients connect to."""
        return f"{self.host}:{self.port}"

    @property
    def state(self) -> Path:
        """The resolved state directory."""
        return Path(self.state_dir) if self.state_dir else self.cache / f"broker-{self.port}"

    @property
    def cache(self) -> Path:
        """The resolved cache directory."""
        return Path(self.cache_dir) if self.cache_dir else cache_root()

    @property
    def jars_dir(self) -> Path:
        """The resolved directory holding this Kafka version's jars."""
        return self.cache / f"kafka-{self.kafka_version}"

    @property
    def data_dir(self) -> Path:
        return self.state / "data"

    @property
    def log_file(self) -> Path:
        return self.state / "logs" / "server.log"

    @property
    def pid_file(self) -> Path:
        return self.state / "broker.pid"


@dataclass(frozen=True)
class BrokerStatus:
    """What ``fraudlab broker status`` reports."""

    running: bool
    bootstrap: str
    pid: int | None
    state_dir: Path
    log_file: Path
    reused: bool = field(default=False)

    def describe(self) -> str:
        """One line a person can read."""
        if not self.running:
            return f"Kafka broker at {self.bootstrap}: not running (state {self.state_dir})"
        how = "already running, reused" if self.reused else "running"
        return f"Kafka broker at {self.bootstrap}: {how} (pid {self.pid}, log {self.log_file})"


# --------------------------------------------------------------------------- jars


def _resolution_pom(kafka_version: str) -> str:
    """A throw-away POM whose runtime dependencies are exactly the broker's classpath."""
    return f"""<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>fraudlab.local</groupId>
  <artifactId>kafka-broker-classpath</artifactId>
  <version>{kafka_version}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_{SCALA_VERSION}</artifactId>
      <version>{kafka_version}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>{LOG4J_VERSION}</version>
    </dependency>
  </dependencies>
</project>
"""


def resolve_jars(settings: BrokerSettings | None = None, *, announce: bool = True) -> Path:
    """Return the directory of broker jars, resolving them with Maven the first time.

    The directory is only published (renamed into place and marked complete)
    after Maven succeeded, so an interrupted download never looks usable.
    """
    settings = settings or BrokerSettings()
    libs = settings.jars_dir / "libs"
    if (libs / _JARS_COMPLETE_MARKER).is_file():
        return libs
    with exclusive_lock(settings.jars_dir.with_name(settings.jars_dir.name + ".lock")):
        if (libs / _JARS_COMPLETE_MARKER).is_file():
            return libs
        require_java(settings.java_home)
        mvn = require_maven()
        settings.jars_dir.mkdir(parents=True, exist_ok=True)
        pom = settings.jars_dir / "pom.xml"
        pom.write_text(_resolution_pom(settings.kafka_version))
        staging = settings.jars_dir / "libs.partial"
        shutil.rmtree(staging, ignore_errors=True)
        if announce:
            print(
                f"Resolving Apache Kafka {settings.kafka_version} jars from Maven Central into "
                f"{settings.jars_dir} (once; later runs reuse them)...",
                flush=True,
            )
        completed = copy_dependencies(mvn, pom, staging)
        jars = sorted(p.name for p in staging.glob("*.jar")) if staging.is_dir() else []
        if completed.returncode != 0 or not any(j.startswith(f"kafka_{SCALA_VERSION}-") for j in jars):
            tail = "\n".join((completed.stdout + completed.stderr).strip().splitlines()[-15:])
            raise BrokerError(
                f"Maven could not resolve org.apache.kafka:kafka_{SCALA_VERSION}:{settings.kafka_version} "
                f"(exit {completed.returncode}). Check that Maven Central is reachable. Maven said:\n{tail}"
            )
        (staging / _JARS_COMPLETE_MARKER).write_text("\n".join(jars) + "\n")
        shutil.rmtree(libs, ignore_errors=True)
        staging.rename(libs)
        return libs


# --------------------------------------------------------------------------- config


def _server_properties(settings: BrokerSettings) -> str:
    """Broker configuration for one node that is both broker and KRaft controller.

    Replication factors are 1 because there is one node; the internal
    offsets topic gets a single partition so the first consumer group is
    ready at once instead of after creating fifty partitions.
    """
    lines = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{settings.host}:{settings.controller_port}",
        "listeners": f"PLAINTEXT://{settings.host}:{settings.port},CONTROLLER://{settings.host}:{settings.controller_port}",
        "advertised.listeners": f"PLAINTEXT://{settings.host}:{settings.port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(settings.data_dir),
        "num.partitions": "1",
        "offsets.topic.num.partitions": "1",
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
    }
    return "".join(f"{key}={value}\n" for key, value in lines.items())


def _log4j2_config(settings: BrokerSettings) -> str:
    return f"""<Configuration status="WARN">
  <Appenders>
    <File name="server" fileName="{settings.log_file}">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </File>
  </Appenders>
  <Loggers>
    <Logger name="kafka.request.logger" level="WARN"/>
    <Root level="INFO"><AppenderRef ref="server"/></Root>
  </Loggers>
</Configuration>
"""


def _new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding.

    An id starting with ``-`` would be read as an option by the storage
    tool's argument parser (1 in 64 draws), so such draws are redrawn.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _read_meta_cluster_id(data_dir: Path) -> str | None:
    meta = data_dir / "meta.properties"
    if not meta.is_file():
        return None
    for line in meta.read_text().splitlines():
        if line.startswith("cluster.id="):
            return line.split("=", 1)[1].strip()
    return None


def _prepare_storage(settings: BrokerSettings, java: str, classpath: str) -> None:
    """Format the KRaft data directory once; refuse data that belongs to another cluster."""
    id_file = settings.state / "cluster.id"
    existing = _read_meta_cluster_id(settings.data_dir)
    expected = id_file.read_text().strip() if id_file.is_file() else None
    if existing is not None:
        if existing == expected:
            return
        raise BrokerError(
            f"Stale Kafka data in {settings.data_dir}: it belongs to cluster {existing!r}, "
            f"not to this broker's cluster {expected!r}. Remove it with "
            f"`fraudlab broker down --purge --port {settings.port}` (or delete the directory) and run `up` again."
        )
    if settings.data_dir.exists() and any(settings.data_dir.iterdir()):
        raise BrokerError(
            f"Stale Kafka data in {settings.data_dir}: the directory is not empty but was never formatted "
            f"for this broker. Remove it with `fraudlab broker down --purge --port {settings.port}` and run `up` again."
        )
    cluster_id = _new_cluster_id()
    completed = subprocess.run(
        [java, "-cp", classpath, f"-Dlog4j2.configurationFile={settings.state / 'log4j2.xml'}",
         "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(settings.state / "server.properties")],
        capture_output=True, text=True, check=False,
    )
    if completed.returncode != 0:
        raise BrokerError(f"Formatting KRaft storage in {settings.data_dir} failed:\n{completed.stderr.strip()}")
    id_file.write_text(cluster_id + "\n")


# --------------------------------------------------------------------------- processes


def _read_pid(settings: BrokerSettings) -> int | None:
    return read_pid(settings.pid_file)


def _is_our_broker(pid: int, settings: BrokerSettings) -> bool:
    """True when ``pid`` is a live (not zombie) JVM running this state dir's broker."""
    cmdline = live_command_line(pid)
    return cmdline is not None and "kafka.Kafka" in cmdline and str(settings.state) in cmdline


def _answers_admin_requests(bootstrap: str, timeout: float) -> bool:
    """True once an AdminClient can list topics: the broker's definition of ready."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    host, port = bootstrap.rsplit(":", 1)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(timeout)
        if probe.connect_ex((host, int(port))) != 0:
            return False
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    try:
        admin.list_topics(timeout=timeout)
    except KafkaException:
        return False
    return True


def broker_status(settings: BrokerSettings | None = None) -> BrokerStatus:
    """Report whether this state dir's broker is running."""
    settings = settings or BrokerSettings()
    pid = _read_pid(settings)
    running = pid is not None and _is_our_broker(pid, settings)
    return BrokerStatus(
        running=running, bootstrap=settings.bootstrap, pid=pid if running else None,
        state_dir=settings.state, log_file=settings.log_file,
    )


def start_broker(
    settings: BrokerSettings | None = None, *, timeout: float = 90.0, die_with_caller: bool = False
) -> BrokerStatus:
    """Start the broker and return once it serves admin requests; reuse one already running.

    With ``die_with_caller`` a broker started here gets SIGTERM from the
    kernel when this process dies, however it dies (see :func:`_tied_to_caller`);
    without it (``fraudlab broker up``) the broker outlives the command.

    Raises:
        MissingToolError: java 17+ or mvn is missing.
        BrokerError: a port is taken, the data dir is stale, or the JVM died or
            did not become ready within ``timeout`` seconds (the log tail is included).
    """
    settings = settings or BrokerSettings()
    current = broker_status(settings)
    if current.running:
        if not _answers_admin_requests(settings.bootstrap, timeout=5.0):
            _wait_until_ready(settings, current.pid, None, timeout)
        return BrokerStatus(**{**current.__dict__, "reused": True})
    settings.pid_file.unlink(missing_ok=True)
    for name, port in (("port", settings.port), ("controller_port", settings.controller_port)):
        if port_in_use(settings.host, port):
            raise BrokerError(
                f"Cannot start the Kafka broker: {name} {port} on {settings.host} is already in use by another "
                f"process. Stop that process or choose another port (`fraudlab broker up --port ... "
                f"--controller-port ...`)."
            )
    java = require_java(settings.java_home)
    libs = resolve_jars(settings)
    classpath = str(libs / "*")
    for sub in ("logs", "data"):
        (settings.state / sub).mkdir(parents=True, exist_ok=True)
    (settings.state / "server.properties").write_text(_server_properties(settings))
    (settings.state / "log4j2.xml").write_text(_log4j2_config(settings))
    _prepare_storage(settings, java, classpath)
    command = [
        *(die_with_caller_prefix() if die_with_caller else ()),
        java, f"-Xmx{settings.heap}", f"-Xms{settings.heap}", *_JVM_PERFORMANCE_OPTIONS, "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={settings.state / 'log4j2.xml'}",
        f"-Dkafka.logs.dir={settings.state / 'logs'}",
        "-cp", classpath, "kafka.Kafka", str(settings.state / "server.properties"),
    ]
    with (settings.state / "logs" / "stdout.log").open("ab") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    settings.pid_file.write_text(f"{process.pid}\n")
    _wait_until_ready(settings, process.pid, process, timeout)
    return BrokerStatus(
        running=True, bootstrap=settings.bootstrap, pid=process.pid,
        state_dir=settings.state, log_file=settings.log_file,
    )


def _wait_until_ready(
    settings: BrokerSettings, pid: int | None, process: subprocess.Popen[bytes] | None, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            settings.pid_file.unlink(missing_ok=True)
            raise BrokerError(
                f"The Kafka broker exited with code {process.returncode} during start-up. "
                f"Last lines of {settings.log_file}:\n{log_tail(settings.log_file)}"
            )
        if _answers_admin_requests(settings.bootstrap, timeout=2.0):
            return
        time.sleep(0.25)
    stop_broker(settings)
    raise BrokerError(
        f"The Kafka broker (pid {pid}) was not ready at {settings.bootstrap} after {timeout:.0f} s and was stopped. "
        f"Last lines of {settings.log_file}:\n{log_tail(settings.log_file)}"
    )


def stop_broker(settings: BrokerSettings | None = None, *, timeout: float = 30.0, purge: bool = False) -> bool:
    """Stop the broker (SIGTERM, then SIGKILL after ``timeout``); return whether one was running.

    With ``purge`` the state directory (data, logs, config) is deleted too.
    """
    settings = settings or BrokerSettings()
    pid = _read_pid(settings)
    was_running = pid is not None and _is_our_broker(pid, settings)
    if was_running:
        _terminate(pid, settings, timeout)
    settings.pid_file.unlink(missing_ok=True)
    if purge:
        shutil.rmtree(settings.state, ignore_errors=True)
    return was_running


def _terminate(pid: int, settings: BrokerSettings, timeout: float) -> None:
    terminate_group(pid, lambda: _is_our_broker(pid, settings), timeout)


class LocalBroker(OwnedServer):
    """A broker owned by a ``with`` block: started on entry, stopped on exit if this block started it.

    A broker this handle started is also stopped when the Python process
    exits (a notebook kernel shut down or restarted mid-run), and on Linux
    the kernel stops it when the process is killed by a signal, so it never
    outlives its owner.

    >>> with LocalBroker(BrokerSettings(port=19092, controller_port=19093)) as bootstrap:
    ...     ...  # produce and consume against `bootstrap`
    """

    def __init__(self, settings: BrokerSettings | None = None, *, purge_on_exit: bool = False) -> None:
        super().__init__(purge_on_exit=purge_on_exit)
        self.settings = settings or BrokerSettings()

    @property
    def bootstrap(self) -> str:
        return self.settings.bootstrap

    @property
    def address(self) -> str:
        return self.bootstrap

    def _launch(self) -> bool:
        return start_broker(self.settings, die_with_caller=True).reused

    def _shutdown(self, purge: bool) -> None:
        stop_broker(self.settings, purge=purge)
