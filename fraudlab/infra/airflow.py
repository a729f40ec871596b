"""A real, local Apache Airflow: ``airflow standalone`` scheduling the continuous-training DAG, with its UI.

Airflow lives in its own venv (``.venv-airflow``, ``make airflow-venv``), which has no fraudlab: this module runs in
the main venv and only starts that venv's ``airflow`` executable, never imports it. ``airflow standalone`` runs the
scheduler (LocalExecutor, :data:`~fraudlab.config.AIRFLOW_PARALLELISM` workers), the DAG processor over
``fraudlab/pipeline/dags``, the triggerer and the API server with the UI, all from one *home* (``AIRFLOW_HOME``,
default ``<cache>/airflow``) that holds the SQLite metadata DB, the task logs, the ``airflow.cfg`` Airflow generates,
the admin password it generates (:attr:`AirflowSettings.password_file`), the server's own log and its pid file; so
``fraudlab airflow up`` / ``status`` / ``down`` can run from different processes, and :class:`LocalAirflow` is the
in-process handle tests use as a context manager.

Every setting goes in as an ``AIRFLOW__...`` variable of the server's environment, which is also how a later
``status`` recognises the server: the pid file's process must be ``airflow standalone`` with this home and port in
its environment. The components reach each other through the execution API, whose URL Airflow derives from its
default port, so it is set for the chosen one. The API server binds the chosen host; the two log servers Airflow's
scheduler and triggerer start (task logs for remote workers; the UI reads the local files) bind every interface
whatever is configured, so they get free ports rather than Airflow's fixed 8793/8794, which a second instance would
find taken. Ready means the API server's health endpoint reports the metadata DB, scheduler, DAG processor and
triggerer healthy. SIGTERM to ``airflow standalone`` alone leaves its components running, so it starts in its own
process group and :func:`stop_airflow` signals the group and waits until every member has exited.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fraudlab import config
from fraudlab.exceptions import AirflowError
from fraudlab.infra.process import (
    OwnedServer,
    address_problems,
    die_with_caller_prefix,
    exclusive_lock,
    free_port,
    live_command_line,
    log_tail,
    port_in_use,
    read_pid,
    state_dir,
    stop_server_group,
    wait_until_ready,
)

__all__ = [
    "DEFAULT_AIRFLOW_VENV",
    "DEFAULT_DAGS_FOLDER",
    "AirflowSettings",
    "AirflowStatus",
    "DagTest",
    "LocalAirflow",
    "airflow_command",
    "airflow_status",
    "json_rows",
    "run_dag_test",
    "start_airflow",
    "stop_airflow",
]

#: The Airflow venv ``make airflow-venv`` creates at the root of the checkout fraudlab runs from (``make`` installs
#: fraudlab editable, so this file's grandparent is that root). A wheel install has none: pass ``venv=``.
DEFAULT_AIRFLOW_VENV = Path(__file__).resolve().parents[2] / config.AIRFLOW_VENV
#: The folder holding the DAG files (fraudlab_continuous_training.py), beside the pipeline's code.
DEFAULT_DAGS_FOLDER = Path(__file__).resolve().parents[1] / "pipeline" / "dags"

#: The components ``/api/v2/monitor/health`` reports on; each must say "healthy" before the server counts as ready.
HEALTHY_COMPONENTS = ("metadatabase", "scheduler", "dag_processor", "triggerer")
#: The user ``airflow standalone``'s simple auth manager creates, with a password it generates into the home.
ADMIN_USER = "admin"

# Requests to the loopback server never go through an HTTP proxy the environment may name.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class AirflowSettings:
    """Where and how the local Airflow runs.

    Args:
        port: TCP port of the API server and the UI.
        host: interface the API server binds; loopback by default.
        home: ``AIRFLOW_HOME`` (metadata DB, logs, config, password, pid); defaults to ``<cache_dir>/airflow``.
        cache_dir: defaults to :func:`fraudlab.config.cache_root` without an environment.
        venv: the Airflow venv; defaults to :data:`DEFAULT_AIRFLOW_VENV`.
        dags_folder: where the DAG processor looks for DAG files; defaults to :data:`DEFAULT_DAGS_FOLDER`.
        parallelism: task instances running at once (``[core] parallelism``), i.e. LocalExecutor workers.
    """

    port: int = config.AIRFLOW_PORT
    host: str = config.AIRFLOW_HOST
    home: Path | None = None
    cache_dir: Path | None = None
    venv: Path | None = None
    dags_folder: Path | None = None
    parallelism: int = config.AIRFLOW_PARALLELISM

    def __post_init__(self) -> None:
        problems = address_problems(self.host, self.port)
        if not isinstance(self.parallelism, int) or self.parallelism < 1:
            problems.append(f"Invalid parallelism {self.parallelism!r}: give at least 1 task at a time.")
        if problems:
            raise AirflowError(" ".join(problems))

    @property
    def url(self) -> str:
        """The UI's (and the REST API's) address."""
        return f"http://{self.host}:{self.port}/"

    @property
    def health_url(self) -> str:
        return f"{self.url}api/v2/monitor/health"

    @property
    def execution_api_url(self) -> str:
        """Where task runners report to; Airflow would otherwise assume port 8080."""
        return f"{self.url}execution/"

    @property
    def state(self) -> Path:
        """The Airflow home."""
        return state_dir(self.home, self.cache_dir, config.AIRFLOW_DIR)

    @property
    def db_file(self) -> Path:
        return self.state / "airflow.db"

    @property
    def password_file(self) -> Path:
        """Where ``airflow standalone`` writes the generated admin password (JSON ``{"admin": "..."}``)."""
        return self.state / "simple_auth_manager_passwords.json.generated"

    @property
    def log_file(self) -> Path:
        return self.state / "airflow-standalone.log"

    @property
    def pid_file(self) -> Path:
        return self.state / "airflow-standalone.pid"

    @property
    def lock_file(self) -> Path:
        return self.state / "airflow-standalone.lock"

    @property
    def airflow_venv(self) -> Path:
        return Path(self.venv) if self.venv else DEFAULT_AIRFLOW_VENV

    @property
    def executable(self) -> Path:
        return self.airflow_venv / "bin" / "airflow"

    @property
    def dags(self) -> Path:
        return Path(self.dags_folder) if self.dags_folder else DEFAULT_DAGS_FOLDER

    def environment(self, log_ports: tuple[int, int] | None = None) -> dict[str, str]:
        """What an ``airflow`` command's environment gets on top of the caller's: every setting, its venv first on PATH.

        ``airflow standalone`` starts its components as ``airflow`` from PATH, so the venv's bin must come first.
        ``log_ports`` are the worker's and the triggerer's log servers (only a server needs them). ``airflow dags
        test`` and ``airflow db migrate`` run with the same environment, so they see the same home and DAGs.
        """
        env = {
            "AIRFLOW_HOME": str(self.state.absolute()),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags.absolute()),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": str(self.parallelism),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.db_file.absolute()}",
            "AIRFLOW__API__HOST": self.host,
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": self.execution_api_url,
            "PATH": f"{self.airflow_venv.absolute() / 'bin'}{os.pathsep}{os.environ.get('PATH', os.defpath)}",
        }
        if log_ports is not None:
            env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] = str(log_ports[0])
            env["AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT"] = str(log_ports[1])
        return env


@dataclass(frozen=True)
class AirflowStatus:
    """What ``fraudlab airflow status`` reports."""

    running: bool
    url: str
    pid: int | None
    home: Path
    password_file: Path
    ready: bool = False
    reused: bool = False

    def login(self) -> str:
        """The UI's user and password, or where the password will be once the server has generated it."""
        with contextlib.suppress(OSError, ValueError, AttributeError):
            password = json.loads(self.password_file.read_text()).get(ADMIN_USER)
            if password:
                return f"login {ADMIN_USER} / {password} (from {self.password_file})"
        return f"login {ADMIN_USER}, password generated into {self.password_file} on the first start"

    def describe(self) -> str:
        """One line a person can read."""
        if not self.running:
            return f"Airflow at {self.url}: not running (home {self.home})"
        how = "already running, reused" if self.reused else "running"
        if not self.ready:
            how = "starting, not healthy yet"
        return f"Airflow at {self.url}: {how} (pid {self.pid}, home {self.home}); {self.login()}"


def _environment_of(pid: int) -> dict[str, str]:
    """The environment ``pid`` was started with (empty when it cannot be read)."""
    try:
        raw = (Path("/proc") / str(pid) / "environ").read_bytes()
    except OSError:
        return {}
    return dict(entry.split("=", 1) for entry in raw.decode(errors="replace").split("\0") if "=" in entry)


def _served_port(pid: int, settings: AirflowSettings) -> int | None:
    """The port of the ``airflow standalone`` ``pid`` runs on this home; None for any other process."""
    cmdline = live_command_line(pid)
    if cmdline is None or "standalone" not in cmdline.split("\0") or "airflow" not in cmdline:
        return None
    env = _environment_of(pid)
    if env.get("AIRFLOW_HOME") != str(settings.state.absolute()):
        return None
    with contextlib.suppress(KeyError, ValueError):
        return int(env["AIRFLOW__API__PORT"])
    return None


def _healthy(settings: AirflowSettings) -> bool:
    """True when the health endpoint answers and every component in :data:`HEALTHY_COMPONENTS` is healthy."""
    try:
        with _DIRECT.open(settings.health_url, timeout=5.0) as response:
            report = json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError):
        return False
    return isinstance(report, dict) and all(
        isinstance(report.get(name), dict) and report[name].get("status") == "healthy" for name in HEALTHY_COMPONENTS)


def airflow_status(settings: AirflowSettings | None = None, *, probe: bool = True) -> AirflowStatus:
    """Report whether this home's Airflow is running on this port (and, with ``probe``, whether it is healthy)."""
    settings = settings or AirflowSettings()
    pid = read_pid(settings.pid_file)
    running = pid is not None and _served_port(pid, settings) == settings.port
    return AirflowStatus(running=running, url=settings.url, pid=pid if running else None, home=settings.state,
                         password_file=settings.password_file, ready=running and probe and _healthy(settings))


def _check_can_start(settings: AirflowSettings) -> None:
    pid = read_pid(settings.pid_file)
    other_port = _served_port(pid, settings) if pid is not None else None
    if other_port is not None:
        raise AirflowError(
            f"An Airflow (pid {pid}) already runs on the home {settings.state} at port {other_port}, not "
            f"{settings.port}: use http://{settings.host}:{other_port}/, or stop it first "
            f"(`fraudlab airflow down --port {other_port}`).")
    settings.pid_file.unlink(missing_ok=True)
    if not settings.executable.is_file():
        raise AirflowError(f"There is no Airflow venv at {settings.airflow_venv} (no bin/airflow): run `make "
                           "airflow-venv` at the repository root, or point --venv / FRAUDLAB_AIRFLOW_VENV at one.")
    if not settings.dags.is_dir():
        raise AirflowError(f"dags_folder={settings.dags} is not a directory: point it at fraudlab/pipeline/dags.")
    if port_in_use(settings.host, settings.port):
        raise AirflowError(f"Cannot start Airflow: port {settings.port} on {settings.host} is already in use by "
                           "another process. Stop it or choose another port (`fraudlab airflow up --port ...`).")


def _wait_until_healthy(settings: AirflowSettings, pid: int, process: subprocess.Popen[bytes] | None,
                        timeout: float) -> None:
    """Return once healthy; otherwise stop what started and raise with the log's tail."""
    def gone() -> bool:
        return process.poll() is not None if process is not None else _served_port(pid, settings) is None

    failure = wait_until_ready(lambda: _healthy(settings), gone, timeout, poll=0.5)
    if failure is None:
        return
    stop_airflow(settings)
    code = f" with code {process.returncode}" if process is not None and process.returncode is not None else ""
    why = (f"exited during start-up{code}" if failure == "exited"
           else f"was not healthy ({settings.health_url}) within {timeout:g} s and was stopped")
    raise AirflowError(f"Airflow on {settings.host}:{settings.port} (pid {pid}) {why}. Last lines of "
                       f"{settings.log_file}:\n{log_tail(settings.log_file)}")


def start_airflow(
    settings: AirflowSettings | None = None, *, timeout: float = 300.0, die_with_caller: bool = False,
    announce: Callable[[str], None] | None = None,
) -> AirflowStatus:
    """Start ``airflow standalone`` and return once it is healthy; reuse one already running on this home and port.

    The first start on a new home creates the metadata DB (migrations, ~15 s here); every start then waits for five
    Python processes to import Airflow, 30-60 s on two busy cores. With ``die_with_caller`` the standalone process
    gets SIGTERM from the kernel when this process dies by a signal (its components may then outlive it: stop
    the group with :func:`stop_airflow`); without it (``fraudlab airflow up``) it outlives the command. Two starters
    on one home take turns (a file lock), so the second reuses. ``announce`` is told, in one line, when a server is
    really being started.

    Raises:
        AirflowError: the Airflow venv or the DAGs folder is missing, the port is taken, another Airflow already
            runs on this home at another port, or it exited or was not healthy within ``timeout`` seconds (the log
            tail is included).
    """
    settings = settings or AirflowSettings()
    with exclusive_lock(settings.lock_file):
        current = airflow_status(settings, probe=False)
        if current.running:
            _wait_until_healthy(settings, current.pid, None, timeout)  # type: ignore[arg-type]
            return AirflowStatus(**{**current.__dict__, "ready": True, "reused": True})
        _check_can_start(settings)
        if announce is not None:
            first = "" if settings.db_file.exists() else f", longer the first time: it creates {settings.db_file}"
            announce(f"Starting Airflow standalone on {settings.url} (about a minute{first}) ...")
        env = {**os.environ, **settings.environment((free_port(settings.host), free_port(settings.host)))}
        command = [*(die_with_caller_prefix() if die_with_caller else ()), str(settings.executable), "standalone"]
        with settings.log_file.open("ab") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       start_new_session=True, env=env, cwd=settings.state)
        settings.pid_file.write_text(f"{process.pid}\n")
        _wait_until_healthy(settings, process.pid, process, timeout)
    return AirflowStatus(running=True, url=settings.url, pid=process.pid, home=settings.state,
                         password_file=settings.password_file, ready=True)


def stop_airflow(settings: AirflowSettings | None = None, *, timeout: float = 30.0, purge: bool = False) -> bool:
    """Stop Airflow and every component it started (SIGTERM to the process group, SIGKILL after ``timeout``).

    Return whether one was running. Its components take ~15 s to finish on SIGTERM. With ``purge`` the home is
    deleted too: the metadata DB (every DAG run's history), the logs and the generated password.
    """
    settings = settings or AirflowSettings()
    return stop_server_group(settings.pid_file, lambda pid: _served_port(pid, settings) == settings.port, timeout,
                             purge=settings.state if purge else None)


class LocalAirflow(OwnedServer):
    """An Airflow owned by a ``with`` block: started on entry, stopped (the whole group) on exit if it started it.

    >>> with LocalAirflow(AirflowSettings(port=18080, home=tmp / "airflow")) as url:
    ...     ...  # the UI and REST API at url
    """

    def __init__(self, settings: AirflowSettings | None = None, *, purge_on_exit: bool = False,
                 timeout: float = 300.0) -> None:
        super().__init__(purge_on_exit=purge_on_exit)
        self.settings = settings or AirflowSettings()
        self.timeout = timeout

    @property
    def address(self) -> str:
        return self.settings.url

    def _launch(self) -> bool:
        return start_airflow(self.settings, timeout=self.timeout, die_with_caller=True).reused

    def _shutdown(self, purge: bool) -> None:
        stop_airflow(self.settings, purge=purge)


#: What a Jupyter kernel sets for its subprocesses so they colour their output even into a pipe.
_COLOUR_FORCING = ("FORCE_COLOR", "CLICOLOR_FORCE", "CLICOLOR")


@dataclass(frozen=True)
class DagTest:
    """One ``airflow dags test`` run, as Airflow's metadata DB recorded it."""

    run_id: str
    state: str
    tasks: dict[str, str]
    seconds: float
    log: str


def airflow_command(settings: AirflowSettings, *args: str, environ: Mapping[str, str] | None = None,
                    timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
    """One command of the Airflow venv's ``airflow`` with the settings' environment on top of ``environ`` (default:
    this process's, without its ``AIRFLOW_*`` variables, so no other Airflow's home or DB leaks in). Colours are off:
    a Jupyter kernel forces them on for its subprocesses, and Airflow would then colour its JSON output too.

    Raises:
        AirflowError: the venv is missing (`make airflow-venv`), or the command exited non-zero (its output's end).
    """
    if not settings.executable.is_file():
        raise AirflowError(f"No Airflow at {settings.executable}: create the venv with `make airflow-venv`.")
    base = os.environ if environ is None else environ
    env = {key: value for key, value in base.items()
           if not key.startswith("AIRFLOW") and key not in _COLOUR_FORCING} | settings.environment()
    env["NO_COLOR"] = "1"
    settings.state.mkdir(parents=True, exist_ok=True)
    completed = subprocess.run([str(settings.executable), *args], env=env, cwd=settings.state, capture_output=True,
                               text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL)
    if completed.returncode != 0:
        raise AirflowError(f"`airflow {' '.join(args)}` exited {completed.returncode}:\n"
                           f"{(completed.stdout + completed.stderr)[-6000:]}")
    return completed


def json_rows(completed: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    """The table an ``airflow ... -o json`` command printed: its last line (Airflow may log warnings before it)."""
    return json.loads(completed.stdout.strip().splitlines()[-1])


def run_dag_test(settings: AirflowSettings, dag_id: str = config.AIRFLOW_DAG_ID, *,
             environ: Mapping[str, str] | None = None, timeout: float = 1800.0) -> DagTest:
    """Run DAG ``dag_id`` once, now, in this process's sight (``airflow dags test``: no scheduler, the tasks one
    after another), after migrating the metadata DB; the run and its task states as Airflow recorded them.

    ``environ`` is what the DAG file is parsed with (for the continuous-training DAG: where the pipeline is, the
    cache, the MLflow store and the broker). A failed task does not raise: the run's state says ``failed``.
    """
    airflow_command(settings, "db", "migrate", environ=environ)
    before = {row["run_id"] for row in _runs(settings, dag_id, environ, missing_ok=True)}
    started = time.monotonic()
    try:
        completed = airflow_command(settings, "dags", "test", dag_id, environ=environ, timeout=timeout)
        log = completed.stdout + completed.stderr
    except AirflowError as exc:
        log = str(exc)
    seconds = time.monotonic() - started
    new = [row for row in _runs(settings, dag_id, environ) if row["run_id"] not in before]
    if not new:
        raise AirflowError(f"`airflow dags test {dag_id}` recorded no run:\n{log[-4000:]}")
    run_id = new[0]["run_id"]
    states = json_rows(airflow_command(settings, "tasks", "states-for-dag-run", dag_id, run_id, "-o", "json",
                                       environ=environ))
    return DagTest(run_id=run_id, state=new[0]["state"], tasks={row["task_id"]: row["state"] for row in states},
                   seconds=seconds, log=log)


def _runs(settings: AirflowSettings, dag_id: str, environ: Mapping[str, str] | None, *, missing_ok: bool = False,
          ) -> list[dict[str, Any]]:
    """The DAG's runs; none when ``missing_ok`` and the metadata DB has not seen the DAG yet (its first test)."""
    try:
        return json_rows(airflow_command(settings, "dags", "list-runs", dag_id, "-o", "json", environ=environ))
    except AirflowError as exc:
        if missing_ok and "does not exist in 'dag' table" in str(exc):
            return []
        raise
