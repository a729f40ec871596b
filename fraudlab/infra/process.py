"""What every launcher of a local server shares: free ports, locks, dying with the owner, reaping, log tails."""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import shutil
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from fraudlab import config

__all__ = [
    "OwnedServer",
    "address_problems",
    "die_with_caller_prefix",
    "exclusive_lock",
    "free_port",
    "group_alive",
    "live_command_line",
    "log_tail",
    "port_in_use",
    "read_pid",
    "reap",
    "state_dir",
    "stop_server_group",
    "terminate_group",
    "wait_until_ready",
]


def free_port(host: str = config.BROKER_HOST) -> int:
    """A TCP port that is free right now, for brokers and servers that tests and notebooks start."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def port_in_use(host: str, port: int) -> bool:
    """True when something already listens on ``host:port`` (or it cannot be bound)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def state_dir(explicit: Path | None, cache_dir: Path | None, name: str) -> Path:
    """A server's state directory: ``explicit`` when given, else ``<cache_dir>/<name>``, where a missing
    ``cache_dir`` is :func:`fraudlab.config.cache_root` without an environment (library code reads none)."""
    if explicit:
        return Path(explicit)
    return (Path(cache_dir) if cache_dir else config.cache_root()) / name


def address_problems(host: object, port: object) -> list[str]:
    """What is wrong with a server's ``host`` and ``port`` settings, one sentence each naming the value (or none)."""
    problems = []
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        problems.append(f"Invalid port {port!r}: choose a TCP port between 1 and 65535.")
    if not isinstance(host, str) or not host or any(c.isspace() for c in host):
        problems.append(f"Invalid host {host!r}: give an interface address such as 127.0.0.1.")
    return problems


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive file lock on ``path``: one process at a time (two test runs, a notebook and a shell)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def die_with_caller_prefix() -> list[str]:
    """A command prefix asking Linux to SIGTERM a server when its starter dies, even by SIGKILL.

    atexit handlers do not run when a process is killed by a signal (a
    benchmark stopped with ``kill``, a kernel killed by Jupyter), which would
    leave an orphaned JVM holding the ports. ``setpriv --pdeathsig`` (util-linux)
    sets the parent-death signal and then runs the JVM in its place. The kernel
    sends it when the starting *thread* ends, so the prefix is used only from
    the main thread, which lives as long as the process; elsewhere (another
    thread, macOS, no setpriv) the atexit handler is the only guard.
    """
    setpriv = shutil.which("setpriv")
    if setpriv is None or threading.current_thread() is not threading.main_thread():
        return []
    return [setpriv, "--pdeathsig", "TERM", "--"]


def stop_requested() -> threading.Event:
    """An event set by SIGTERM or SIGINT (from the main thread): a long-running command then stops what it runs in
    order (a Flink job with a drain) instead of dying mid-stream."""
    requested = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: requested.set())
    return requested


def reap(pid: int, timeout: float = 5.0) -> None:
    """Collect the exit status when ``pid`` is our own child, so it leaves no zombie.

    Called once the server stopped counting as running; its exit may still be
    in progress (the command line is gone before the process is a zombie),
    so wait up to ``timeout`` seconds for it rather than look once.
    """
    deadline = time.monotonic() + timeout
    with contextlib.suppress(ChildProcessError, OSError):  # not our child (or already collected): nothing to do
        while os.waitpid(pid, os.WNOHANG) == (0, 0) and time.monotonic() < deadline:
            time.sleep(0.01)


def log_tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` of a server's log file, for an error message."""
    if not path.is_file():
        return "(no log written)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def read_pid(pid_file: Path) -> int | None:
    """The pid a launcher wrote to ``pid_file``; None when there is none (never started, or stopped)."""
    try:
        return int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def live_command_line(pid: int) -> str | None:
    """The command line of ``pid`` while it is alive (not a zombie), else None; launchers match it to their server."""
    proc = Path("/proc") / str(pid)
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    return None if state in ("Z", "X") else cmdline


def group_alive(pgid: int) -> bool:
    """True while any live process belongs to process group ``pgid``: a server, or a worker it forked.

    A launcher waits on this rather than on the server's own pid when the server has children (uvicorn workers,
    Flink's Python workers) that must be gone too before it reports the server stopped.
    """
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
                return True
    return False


def terminate_group(pid: int, alive: Callable[[], bool], timeout: float) -> None:
    """SIGTERM the process group of ``pid``, SIGKILL it after ``timeout`` s, wait until ``alive()`` is False, reap."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    if alive():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        while alive():
            time.sleep(0.05)
    # It has exited; when it was this process's child it is a zombie until its status is collected.
    reap(pid)


def wait_until_ready(ready: Callable[[], bool], exited: Callable[[], bool], timeout: float,
                     poll: float = 0.25) -> str | None:
    """Poll a starting server until ``ready()``; return None then, or why it never will be.

    "exited" as soon as ``exited()`` says the server has gone (no point waiting out the timeout), "timed out" after
    ``timeout`` seconds. The caller then stops what is left and raises its own error with its log tail.
    """
    deadline = time.monotonic() + timeout
    while not ready():
        if exited():
            return "exited"
        if time.monotonic() > deadline:
            return "timed out"
        time.sleep(poll)
    return None


def stop_server_group(pid_file: Path, is_ours: Callable[[int], bool], timeout: float, *,
                      purge: Path | None = None) -> bool:
    """Stop the server ``pid_file`` names, and every process of its group, when ``is_ours(pid)``; True if it ran.

    For servers whose workers must go with them (uvicorn workers, Airflow's components): the group gets SIGTERM,
    SIGKILL after ``timeout``, and this returns once no member is left. The pid file goes either way (a stale one
    would name a recycled pid); ``purge`` is a state directory to delete as well.
    """
    pid = read_pid(pid_file)
    was_running = pid is not None and is_ours(pid)
    if was_running:
        terminate_group(pid, lambda: group_alive(pid), timeout)  # type: ignore[arg-type]
    pid_file.unlink(missing_ok=True)
    if purge is not None:
        shutil.rmtree(purge, ignore_errors=True)
    return was_running


class OwnedServer:
    """The ``with`` lifecycle every launcher shares: start (or reuse) on entry, stop on exit only what it started.

    A server this handle started is also stopped when the Python process exits (``atexit``); one it found running
    is left alone. Subclasses say how to start and stop theirs and what address to hand out.
    """

    def __init__(self, *, purge_on_exit: bool = False) -> None:
        self.purge_on_exit = purge_on_exit
        self._started_here = False

    @property
    def address(self) -> str:
        raise NotImplementedError

    @property
    def started_here(self) -> bool:
        """True while this handle owns a server it started (and will stop); False when it reused a running one."""
        return self._started_here

    def _launch(self) -> bool:
        """Start the server, or find it running; True when it was already running (reused)."""
        raise NotImplementedError

    def _shutdown(self, purge: bool) -> None:
        raise NotImplementedError

    def start(self) -> str:
        self._started_here = not self._launch()
        if self._started_here:
            atexit.register(self.stop)
        return self.address

    def stop(self) -> None:
        if self._started_here:
            atexit.unregister(self.stop)
            self._shutdown(self.purge_on_exit)
            self._started_here = False

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
