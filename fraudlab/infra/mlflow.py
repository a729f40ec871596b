"""A real, local MLflow tracking server: the UI and REST API over the detector's runs and registered models.

It runs ``python -m mlflow server`` (the interpreter fraudlab runs in, which has MLflow) in a *state directory*
holding the tracking store (``mlflow.db``, SQLite), the artifacts it serves (``artifacts/``), its log and a pid
file, so ``fraudlab mlflow up`` / ``status`` / ``down`` can run from different processes; :class:`LocalMlflow` is
the in-process handle that tests and notebooks use as a context manager. The default state directory is
``<cache>/mlflow``: the very store :func:`fraudlab.detect.registry.default_tracking_uri` names, so runs logged
without a server show up in the UI later.

The server binds loopback with one uvicorn worker (one process besides ``mlflow server`` itself; its job runner,
used only by GenAI features, is switched off) and counts as ready once ``/health`` answers 200 *and* a REST search
of experiments succeeds (the second only passes once the store's migrations have run). It starts in its own process
group, which :func:`stop_mlflow` signals as a whole, so no uvicorn worker outlives it.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fraudlab import config
from fraudlab.exceptions import MlflowError
from fraudlab.infra.process import (
    OwnedServer,
    address_problems,
    die_with_caller_prefix,
    exclusive_lock,
    live_command_line,
    log_tail,
    port_in_use,
    read_pid,
    state_dir,
    stop_server_group,
    wait_until_ready,
)

__all__ = ["LocalMlflow", "MlflowSettings", "MlflowStatus", "mlflow_status", "start_mlflow", "stop_mlflow"]

#: What the server's environment gets on top of the caller's: no usage reporting, no GenAI job runner (a third
#: process and ~250 MB for features fraudlab does not use).
SERVER_ENVIRONMENT = {"MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}

# Requests to the loopback server never go through an HTTP proxy the environment may name.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class MlflowSettings:
    """Where and how the local MLflow tracking server runs.

    Args:
        port: TCP port of the UI and the REST API.
        host: interface to bind; loopback by default (MLflow's security middleware then accepts the local UI).
        state_dir: tracking store, artifacts, log and pid file; defaults to ``<cache_dir>/mlflow``.
        cache_dir: defaults to :func:`fraudlab.config.cache_root` without an environment.
        python: the interpreter that runs ``-m mlflow server``; defaults to the one running fraudlab.
        workers: uvicorn worker processes; one is plenty for a local UI and keeps memory down.
    """

    port: int = config.MLFLOW_PORT
    host: str = config.MLFLOW_HOST
    state_dir: Path | None = None
    cache_dir: Path | None = None
    python: Path | None = None
    workers: int = 1

    def __post_init__(self) -> None:
        problems = address_problems(self.host, self.port)
        if not isinstance(self.workers, int) or self.workers < 1:
            problems.append(f"Invalid workers {self.workers!r}: give at least 1 uvicorn worker.")
        if problems:
            raise MlflowError(" ".join(problems))

    @property
    def tracking_uri(self) -> str:
        """The URI clients (``mlflow.set_tracking_uri``, ``--tracking-uri``) use; the UI lives at the same address."""
        return f"http://{self.host}:{self.port}"

    @property
    def ui_url(self) -> str:
        return f"{self.tracking_uri}/"

    @property
    def state(self) -> Path:
        return state_dir(self.state_dir, self.cache_dir, config.MLFLOW_DIR)

    @property
    def db_file(self) -> Path:
        return self.state / config.MLFLOW_DB

    @property
    def backend_store_uri(self) -> str:
        """``sqlite:///<state>/mlflow.db``: the store the server reads and that runs can be logged to directly."""
        return f"sqlite:///{self.db_file.absolute()}"

    @property
    def artifacts_dir(self) -> Path:
        return self.state / config.MLFLOW_ARTIFACTS

    @property
    def log_file(self) -> Path:
        return self.state / "mlflow-server.log"

    @property
    def pid_file(self) -> Path:
        return self.state / "mlflow-server.pid"

    @property
    def lock_file(self) -> Path:
        return self.state / "mlflow-server.lock"

    @property
    def interpreter(self) -> str:
        return str(self.python) if self.python else sys.executable


@dataclass(frozen=True)
class MlflowStatus:
    """What ``fraudlab mlflow status`` reports."""

    running: bool
    tracking_uri: str
    pid: int | None
    state_dir: Path
    ready: bool = False
    reused: bool = False

    @property
    def ui_url(self) -> str:
        return f"{self.tracking_uri}/"

    def describe(self) -> str:
        """One line a person can read."""
        if not self.running:
            return f"MLflow at {self.tracking_uri}: not running (state {self.state_dir})"
        how = "already running, reused" if self.reused else "running"
        if not self.ready:
            how = "starting, not answering yet"
        return f"MLflow at {self.tracking_uri}: {how} (pid {self.pid}, state {self.state_dir}); UI {self.ui_url}"


def _command_parts(pid: int) -> list[str] | None:
    cmdline = live_command_line(pid)
    return None if cmdline is None else cmdline.split("\0")


def _server_port(parts: list[str], settings: MlflowSettings) -> int | None:
    """The port of the ``mlflow server`` a command line runs on this state dir's store; None for anything else."""
    if "mlflow" not in parts or "server" not in parts or settings.backend_store_uri not in parts:
        return None
    with contextlib.suppress(ValueError, IndexError):
        return int(parts[parts.index("--port") + 1])
    return None


def _is_our_mlflow(pid: int, settings: MlflowSettings) -> bool:
    """True when ``pid`` is a live ``mlflow server`` on this port serving this state dir's store."""
    parts = _command_parts(pid)
    return parts is not None and _server_port(parts, settings) == settings.port


def _request(settings: MlflowSettings, path: str, body: dict | None = None, timeout: float = 2.0) -> object | None:
    """The JSON (or True for a non-JSON 200) a request to the server answers; None when it does not answer 200."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{settings.tracking_uri}{path}", data=data,
                                     headers={"Content-Type": "application/json"} if data else {})
    try:
        with _DIRECT.open(request, timeout=timeout) as response:
            if response.status != 200:
                return None
            payload = response.read()
    except (urllib.error.URLError, OSError, ValueError):
        return None
    try:
        return json.loads(payload)
    except ValueError:
        return True


def _answers(settings: MlflowSettings) -> bool:
    """Ready: ``/health`` says OK and a real tracking call (search experiments) answers with experiments."""
    if _request(settings, "/health") is None:
        return False
    found = _request(settings, "/api/2.0/mlflow/experiments/search", {"max_results": 1}, timeout=10.0)
    return isinstance(found, dict) and "experiments" in found


def mlflow_status(settings: MlflowSettings | None = None, *, probe: bool = True) -> MlflowStatus:
    """Report whether this state dir's MLflow server is running (and, with ``probe``, whether it answers)."""
    settings = settings or MlflowSettings()
    pid = read_pid(settings.pid_file)
    running = pid is not None and _is_our_mlflow(pid, settings)
    return MlflowStatus(running=running, tracking_uri=settings.tracking_uri, pid=pid if running else None,
                        state_dir=settings.state, ready=running and probe and _answers(settings))


def _command(settings: MlflowSettings) -> list[str]:
    return [
        settings.interpreter, "-m", "mlflow", "server",
        "--host", settings.host, "--port", str(settings.port),
        "--backend-store-uri", settings.backend_store_uri,
        "--serve-artifacts", "--artifacts-destination", str(settings.artifacts_dir.absolute()),
        "--workers", str(settings.workers),
    ]


def _check_can_start(settings: MlflowSettings) -> None:
    pid = read_pid(settings.pid_file)
    parts = _command_parts(pid) if pid is not None else None
    other_port = _server_port(parts, settings) if parts is not None else None
    if other_port is not None:
        raise MlflowError(
            f"An MLflow server (pid {pid}) already serves the store in {settings.state} on port {other_port}, not "
            f"{settings.port}: use http://{settings.host}:{other_port}, or stop it first "
            f"(`fraudlab mlflow down --port {other_port}`).")
    settings.pid_file.unlink(missing_ok=True)
    if port_in_use(settings.host, settings.port):
        raise MlflowError(f"Cannot start MLflow: port {settings.port} on {settings.host} is already in use by another "
                          "process. Stop it or choose another port (`fraudlab mlflow up --port ...`).")
    if settings.python is not None and not Path(settings.python).is_file():
        raise MlflowError(f"python={settings.python} does not exist: point it at an interpreter that has MLflow "
                          "installed (fraudlab's own venv has it).")


def _wait_until_ready(settings: MlflowSettings, pid: int, process: subprocess.Popen[bytes] | None,
                      timeout: float) -> None:
    def exited() -> bool:
        return process.poll() is not None if process is not None else not _is_our_mlflow(pid, settings)

    failure = wait_until_ready(lambda: _answers(settings), exited, timeout)
    if failure is None:
        return
    stop_mlflow(settings)
    why = ("exited during start-up" + (f" with code {process.returncode}" if process is not None else "")
           if failure == "exited" else f"did not answer /health and a tracking call within {timeout:g} s and was "
                                       "stopped")
    raise MlflowError(f"MLflow on {settings.host}:{settings.port} (pid {pid}) {why}. Last lines of "
                      f"{settings.log_file}:\n{log_tail(settings.log_file)}")


def start_mlflow(
    settings: MlflowSettings | None = None, *, timeout: float = 180.0, die_with_caller: bool = False,
    announce: Callable[[str], None] | None = None,
) -> MlflowStatus:
    """Start the tracking server and return once it answers; reuse one already running on this state dir and port.

    A new store's first start runs MLflow's database migrations (about 10 s here), a start on an existing one still
    takes ~20 s on two cores (imports). With ``die_with_caller`` a server started here gets SIGTERM from the kernel
    when this process dies, however it dies (it forwards it to its uvicorn worker); without it (``fraudlab mlflow
    up``) it outlives the command. Two starters on one state dir take turns (a file lock), so the second reuses.
    ``announce`` is told, in one line, when a server is really being started (the wait is long).

    Raises:
        MlflowError: the port is taken, another server already serves this state dir on another port, or the server
            exited or did not answer within ``timeout`` seconds (the log tail is included).
    """
    settings = settings or MlflowSettings()
    with exclusive_lock(settings.lock_file):
        current = mlflow_status(settings, probe=False)
        if current.running:
            _wait_until_ready(settings, current.pid, None, timeout)  # type: ignore[arg-type]
            return MlflowStatus(**{**current.__dict__, "ready": True, "reused": True})
        _check_can_start(settings)
        if announce is not None:
            first = "" if settings.db_file.exists() else f", longer the first time: it creates {settings.db_file}"
            announce(f"Starting MLflow on {settings.tracking_uri} (about 30 s{first}) ...")
        settings.artifacts_dir.mkdir(parents=True, exist_ok=True)
        command = [*(die_with_caller_prefix() if die_with_caller else ()), *_command(settings)]
        with settings.log_file.open("ab") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       start_new_session=True, env={**os.environ, **SERVER_ENVIRONMENT})
        settings.pid_file.write_text(f"{process.pid}\n")
        _wait_until_ready(settings, process.pid, process, timeout)
    return MlflowStatus(running=True, tracking_uri=settings.tracking_uri, pid=process.pid, state_dir=settings.state,
                        ready=True)


def stop_mlflow(settings: MlflowSettings | None = None, *, timeout: float = 15.0, purge: bool = False) -> bool:
    """Stop the server and its workers (SIGTERM to the process group, SIGKILL after ``timeout``).

    Return whether one was running. With ``purge`` the state directory is deleted too: the tracking store and its
    artifacts, i.e. every run and model version logged there.
    """
    settings = settings or MlflowSettings()
    return stop_server_group(settings.pid_file, lambda pid: _is_our_mlflow(pid, settings), timeout,
                             purge=settings.state if purge else None)


class LocalMlflow(OwnedServer):
    """An MLflow tracking server owned by a ``with`` block: started on entry, stopped on exit if this block started it.

    A server this handle started is also stopped when the Python process exits, and on Linux the kernel stops it
    when the process is killed by a signal.

    >>> with LocalMlflow(MlflowSettings(port=15077)) as tracking_uri:
    ...     ...  # log_training_run(..., tracking_uri=tracking_uri); the UI is at the same address
    """

    def __init__(self, settings: MlflowSettings | None = None, *, purge_on_exit: bool = False,
                 timeout: float = 180.0) -> None:
        super().__init__(purge_on_exit=purge_on_exit)
        self.settings = settings or MlflowSettings()
        self.timeout = timeout

    @property
    def tracking_uri(self) -> str:
        return self.settings.tracking_uri

    @property
    def address(self) -> str:
        return self.tracking_uri

    def _launch(self) -> bool:
        return start_mlflow(self.settings, timeout=self.timeout, die_with_caller=True).reused

    def _shutdown(self, purge: bool) -> None:
        stop_mlflow(self.settings, purge=purge)
