"""``fraudlab serve --workers N``: N ingestion server processes on one port, supervised.

One Python process serves one core's worth of gRPC, so the tier scales out
in processes: each worker is a full :func:`fraudlab.ingest.service.serve`
bound with SO_REUSEPORT (the kernel spreads connections over them), and all
share deduplication and rate limits through Redis, exactly as workers on other
machines pointed at the same Redis do.

The supervisor starts the workers, forwards their output line by line with a
``[worker i]`` prefix, restarts one that dies, and on SIGTERM/SIGINT passes
the signal on so each shuts down gracefully (its in-flight calls finish, its
producer flushes). Workers get the parent-death signal, so they never outlive
a supervisor that was killed. A worker that exits before it listens is a
start-up failure (bad configuration): the supervisor stops and says why.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from fraudlab.exceptions import ServiceError
from fraudlab.infra.process import die_with_caller_prefix, free_port
from fraudlab.ingest.service import ServiceSettings, run_server

__all__ = ["supervise"]

_READY_PREFIX = "fraudlab ingestion listening"
_POLL_S = 0.1
_START_TIMEOUT_S = 90.0


def _encode(settings: ServiceSettings) -> str:
    return json.dumps({name: str(value) if isinstance(value, Path) else value
                       for name, value in dataclasses.asdict(settings).items()})


def _decode(text: str) -> ServiceSettings:
    values = json.loads(text)
    for name in ("tls_cert", "tls_key"):
        if values[name] is not None:
            values[name] = Path(values[name])
    values["tokens"] = tuple(values["tokens"])
    return ServiceSettings(**values)


@dataclasses.dataclass(frozen=True)
class _Launch:
    """How to start one worker: its command, what it reads on stdin (None: nothing), its environment (None: ours)."""

    command: list[str]
    stdin: str | None = None
    env: dict[str, str] | None = None


def _launch(settings: ServiceSettings, engine: str) -> _Launch:
    """A Python worker reads its settings as JSON on stdin; a Go one takes them as flags and environment."""
    if engine == "go":
        from fraudlab.ingest.gateway import gateway_command, gateway_environment

        return _Launch(gateway_command(settings), env=gateway_environment(settings))
    return _Launch([sys.executable, "-m", "fraudlab.ingest.workers"], stdin=_encode(settings))


class _Worker:
    """One worker process and the thread that forwards its output."""

    def __init__(self, index: int, launch: _Launch, echo: Callable[[str], None]) -> None:
        self.index = index
        self._launch = launch
        self._echo = echo
        self.process: subprocess.Popen[str] | None = None
        self.ready = threading.Event()
        self.last_line = ""
        self._forwarder: threading.Thread | None = None

    def start(self) -> None:
        self.ready.clear()
        launch = self._launch
        process = subprocess.Popen(
            [*die_with_caller_prefix(), *launch.command], env=launch.env,
            stdin=subprocess.DEVNULL if launch.stdin is None else subprocess.PIPE, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True)
        assert process.stderr is not None
        if process.stdin is not None and launch.stdin is not None:
            process.stdin.write(launch.stdin)
            process.stdin.close()
        self.process = process
        self._echo(f"[worker {self.index}] started (pid {process.pid})")
        self._forwarder = threading.Thread(target=self._forward, args=(process.stderr,), daemon=True,
                                           name=f"fraudlab-worker-{self.index}")
        self._forwarder.start()

    def _forward(self, stream: IO[str]) -> None:
        for line in stream:
            line = line.rstrip("\n")
            self.last_line = line
            if line.startswith(_READY_PREFIX):
                self.ready.set()
            self._echo(f"[worker {self.index}] {line}")

    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def signal(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signum)

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        if self._forwarder is not None:
            self._forwarder.join(5)
        return code


def supervise(settings: ServiceSettings, workers: int, *, engine: str = "python",
              echo: Callable[[str], None] = print) -> None:
    """Run ``workers`` server processes on ``settings.port`` until SIGTERM/SIGINT; restart any that dies.

    ``engine`` "go" runs Go gateways (already built) as the workers; they share the same Redis state.

    Raises:
        ServiceError: fewer than 2 workers or no Redis (the memory backend cannot be shared), or a worker
            exited before it listened (its last line says why: Redis or Kafka unreachable, port taken...).
    """
    if workers < 2 or settings.redis_url is None:
        raise ServiceError(f"workers={workers} with redis_url={'set' if settings.redis_url else None}: supervised "
                           "workers need at least 2 processes and a Redis to share dedup and rate limits (--redis).")
    port = settings.port or free_port(settings.host)
    launch = _launch(dataclasses.replace(settings, port=port, reuse_port=True), engine)
    pool = [_Worker(index, launch, echo) for index in range(1, workers + 1)]
    stopping = threading.Event()
    previous = {signum: signal.signal(signum, lambda *_: stopping.set()) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        _start_all(pool, stopping)
        echo(f"fraudlab ingestion: {workers} workers on {settings.host}:{port}, SIGTERM stops them gracefully")
        while not stopping.wait(_POLL_S):
            _restart_dead(pool, echo)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        codes = _stop_all(pool, settings.grace + settings.flush_timeout + 10)
    echo(f"stopped {workers} workers (exit codes {codes})")


def _start_all(pool: list[_Worker], stopping: threading.Event) -> None:
    for worker in pool:
        worker.start()
    deadline = time.monotonic() + _START_TIMEOUT_S
    for worker in pool:
        while not worker.ready.wait(_POLL_S):
            code = worker.exit_code()
            if code is not None or stopping.is_set() or time.monotonic() > deadline:
                worker.wait(5)
                why = (f"exited with code {code}" if code is not None
                       else "was stopped" if stopping.is_set() else f"did not listen within {_START_TIMEOUT_S:g} s")
                raise ServiceError(f"ingestion worker {worker.index} {why} before serving: {worker.last_line}")


def _restart_dead(pool: list[_Worker], echo: Callable[[str], None]) -> None:
    for worker in pool:
        code = worker.exit_code()
        if code is not None:
            worker.wait(1)
            echo(f"[worker {worker.index}] exited with code {code}; restarting it")
            worker.start()


def _stop_all(pool: list[_Worker], timeout: float) -> list[int]:
    for worker in pool:
        worker.signal(signal.SIGTERM)
    return [worker.wait(timeout) for worker in pool if worker.process is not None]


def _worker_main() -> None:
    """A worker: settings as JSON on stdin, then the server until SIGTERM (errors as one line, exit 1)."""
    from fraudlab.cli.main import _configure_logging
    from fraudlab.exceptions import FraudlabError

    _configure_logging(debug=False)
    settings = _decode(sys.stdin.read())
    try:
        run_server(settings, echo=lambda line: print(line, file=sys.stderr, flush=True))
    except FraudlabError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)


if __name__ == "__main__":
    _worker_main()
