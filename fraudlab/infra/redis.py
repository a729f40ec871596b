"""A real, local Redis server: the shared state of the ingestion workers (dedup, rate limits).

Like the Kafka launcher, it runs Debian's (or conda-forge's) genuine
``redis-server`` in a *state directory* holding its append-only file, its log
and a pid file, so ``fraudlab redis up`` / ``status`` / ``down`` can run from
different processes; :class:`LocalRedis` is the in-process handle that tests
and notebooks use as a context manager. The server binds loopback, persists
with ``appendonly yes`` / ``appendfsync everysec`` (a restart keeps what the
workers marked as published) and counts as ready once a PING succeeds.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from fraudlab import config
from fraudlab.config import cache_root
from fraudlab.exceptions import RedisError
from fraudlab.infra.process import (
    OwnedServer,
    die_with_caller_prefix,
    live_command_line,
    log_tail,
    port_in_use,
    read_pid,
    terminate_group,
)

__all__ = ["LocalRedis", "RedisSettings", "RedisStatus", "redis_status", "start_redis", "stop_redis"]

_INSTALL_HINT = ("install it: `apt-get install redis-server` (Debian/Ubuntu), `conda install -c conda-forge redis`, "
                 "or `brew install redis`")


@dataclass(frozen=True)
class RedisSettings:
    """Where and how the local Redis runs.

    Args:
        port: TCP port (a real one: redis-server's ``--port 0`` turns TCP off).
        host: interface to bind; loopback by default.
        password: ``requirepass``; None runs without authentication.
        state_dir: append-only file, log and pid file; defaults to ``<cache_dir>/redis-<port>``.
        cache_dir: defaults to :func:`fraudlab.config.cache_root` without an environment.
        executable: the redis-server to run; without it ``redis-server`` is looked up on PATH.
    """

    port: int = config.REDIS_PORT
    host: str = config.REDIS_HOST
    password: str | None = field(default=None, repr=False)
    state_dir: Path | None = None
    cache_dir: Path | None = None
    executable: Path | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.port <= 65535:
            raise RedisError(f"Invalid port {self.port!r}: choose a TCP port between 1 and 65535.")

    @property
    def url(self) -> str:
        """The ``redis://`` URL clients (``fraudlab serve --redis``) connect with."""
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{self.host}:{self.port}/0"

    @property
    def state(self) -> Path:
        cache = Path(self.cache_dir) if self.cache_dir else cache_root()
        return Path(self.state_dir) if self.state_dir else cache / f"redis-{self.port}"

    @property
    def log_file(self) -> Path:
        return self.state / "redis.log"

    @property
    def pid_file(self) -> Path:
        return self.state / "redis.pid"


@dataclass(frozen=True)
class RedisStatus:
    """What ``fraudlab redis status`` reports."""

    running: bool
    address: str
    pid: int | None
    state_dir: Path
    reused: bool = False

    def describe(self) -> str:
        """One line a person can read."""
        if not self.running:
            return f"Redis at {self.address}: not running (state {self.state_dir})"
        how = "already running, reused" if self.reused else "running"
        return f"Redis at {self.address}: {how} (pid {self.pid}, state {self.state_dir})"


def _is_our_redis(pid: int, settings: RedisSettings) -> bool:
    """True when ``pid`` is a live redis-server on this port (it renames itself to ``redis-server host:port``)."""
    cmdline = live_command_line(pid)
    return cmdline is not None and "redis-server" in cmdline and f":{settings.port}" in cmdline


def redis_status(settings: RedisSettings | None = None) -> RedisStatus:
    """Report whether this state dir's Redis is running."""
    settings = settings or RedisSettings()
    pid = read_pid(settings.pid_file)
    running = pid is not None and _is_our_redis(pid, settings)
    return RedisStatus(running=running, address=f"{settings.host}:{settings.port}", pid=pid if running else None,
                       state_dir=settings.state)


def _answers_ping(settings: RedisSettings) -> bool:
    import redis

    client = redis.Redis(host=settings.host, port=settings.port, password=settings.password,
                         socket_timeout=1.0, socket_connect_timeout=1.0)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def _executable(settings: RedisSettings) -> str:
    if settings.executable is not None:
        if not Path(settings.executable).is_file():
            raise RedisError(f"executable={settings.executable} does not exist: point it at redis-server, or "
                             f"{_INSTALL_HINT}.")
        return str(settings.executable)
    found = shutil.which("redis-server")
    if found is None:
        raise RedisError(f"redis-server is not on PATH: {_INSTALL_HINT}.")
    return found


def _command(settings: RedisSettings, executable: str) -> list[str]:
    command = [
        executable, "--port", str(settings.port), "--bind", settings.host, "--dir", str(settings.state),
        "--appendonly", "yes", "--appendfsync", "everysec", "--save", "", "--daemonize", "no",
        "--logfile", str(settings.log_file),
    ]
    return command + (["--requirepass", settings.password] if settings.password else [])


def start_redis(
    settings: RedisSettings | None = None, *, timeout: float = 15.0, die_with_caller: bool = False
) -> RedisStatus:
    """Start Redis and return once it answers PING; reuse one already running in this state dir.

    With ``die_with_caller`` a server started here gets SIGTERM from the
    kernel when this process dies, however it dies; without it (``fraudlab
    redis up``) it outlives the command.

    Raises:
        RedisError: redis-server is missing, the port is taken, or it exited or
            did not answer within ``timeout`` seconds (the log tail is included).
    """
    settings = settings or RedisSettings()
    current = redis_status(settings)
    if current.running:
        return RedisStatus(**{**current.__dict__, "reused": True})
    settings.pid_file.unlink(missing_ok=True)
    executable = _executable(settings)
    if port_in_use(settings.host, settings.port):
        raise RedisError(f"Cannot start Redis: port {settings.port} on {settings.host} is already in use by another "
                         "process. Stop it or choose another port (`fraudlab redis up --port ...`).")
    settings.state.mkdir(parents=True, exist_ok=True)
    command = [*(die_with_caller_prefix() if die_with_caller else ()), *_command(settings, executable)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               stdin=subprocess.DEVNULL, start_new_session=True)
    settings.pid_file.write_text(f"{process.pid}\n")
    deadline = time.monotonic() + timeout
    while not _answers_ping(settings):
        if process.poll() is not None or time.monotonic() > deadline:
            stop_redis(settings)
            why = f"exited with code {process.returncode}" if process.returncode is not None else (
                f"did not answer PING within {timeout:g} s")
            raise RedisError(f"Redis on {settings.host}:{settings.port} {why}. Last lines of {settings.log_file}:\n"
                             f"{log_tail(settings.log_file)}")
        time.sleep(0.02)
    return RedisStatus(running=True, address=f"{settings.host}:{settings.port}", pid=process.pid,
                       state_dir=settings.state)


def stop_redis(settings: RedisSettings | None = None, *, timeout: float = 10.0, purge: bool = False) -> bool:
    """Stop Redis (SHUTDOWN, which flushes the append-only file; SIGTERM/SIGKILL if it does not go).

    Return whether one was running. With ``purge`` the state directory is deleted too.
    """
    import redis

    settings = settings or RedisSettings()
    pid = read_pid(settings.pid_file)
    was_running = pid is not None and _is_our_redis(pid, settings)
    if was_running:
        client = redis.Redis(host=settings.host, port=settings.port, password=settings.password, socket_timeout=2.0)
        with contextlib.suppress(redis.RedisError):  # it answers SHUTDOWN by closing the connection
            client.shutdown()
        client.close()
        deadline = time.monotonic() + timeout
        while _is_our_redis(pid, settings) and time.monotonic() < deadline:
            time.sleep(0.01)
        terminate_group(pid, lambda: _is_our_redis(pid, settings), timeout)
    settings.pid_file.unlink(missing_ok=True)
    if purge:
        shutil.rmtree(settings.state, ignore_errors=True)
    return was_running


class LocalRedis(OwnedServer):
    """A Redis owned by a ``with`` block: started on entry, stopped on exit if this block started it.

    A server this handle started is also stopped when the Python process exits,
    and on Linux the kernel stops it when the process is killed by a signal.

    >>> with LocalRedis(RedisSettings(port=16379)) as url:
    ...     ...  # fraudlab serve --redis url
    """

    def __init__(self, settings: RedisSettings | None = None, *, purge_on_exit: bool = False) -> None:
        super().__init__(purge_on_exit=purge_on_exit)
        self.settings = settings or RedisSettings()

    @property
    def url(self) -> str:
        return self.settings.url

    @property
    def address(self) -> str:
        return self.url

    def _launch(self) -> bool:
        return start_redis(self.settings, die_with_caller=True).reused

    def _shutdown(self, purge: bool) -> None:
        stop_redis(self.settings, purge=purge)
