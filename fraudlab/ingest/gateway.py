"""The Go ingestion gateway (``gateway/``): built, configured and run from Python like the Python server.

The gateway implements ``fraud.FraudIngestion`` with the same contract and
guarantees as :mod:`fraudlab.ingest.service`: the same validation messages,
an answer only after Kafka confirmed, deduplication and rate limits in the
same Redis keys through the very same Lua scripts (``fraudlab/ingest/lua``,
read at start). It exists for unary throughput: one Python process serves
about one core's worth of gRPC, the Go server uses every core.

:class:`ServiceSettings` stays the one definition of a server's settings:
:func:`gateway_command` turns them into the gateway's flags, and
:class:`GatewayServer` runs it as a child process with the same interface as
:class:`~fraudlab.ingest.service.IngestionServer` (tests, notebooks). Bearer
tokens and the Redis URL (which may hold a password) go through the
environment, not the command line, which every user of the machine can read.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from importlib import resources
from pathlib import Path
from typing import IO

from fraudlab.exceptions import ServiceError
from fraudlab.infra.process import die_with_caller_prefix
from fraudlab.ingest.service import ServiceSettings, client_target

__all__ = ["GATEWAY_DIR", "GatewayServer", "build_gateway", "gateway_binary", "gateway_command", "gateway_environment"]

GATEWAY_DIR = Path(__file__).resolve().parents[2] / "gateway"
_BINARY = "fraudlab-gateway"
_READY = re.compile(r"^fraudlab ingestion listening on (?P<host>\S+):(?P<port>\d+) ")
_START_TIMEOUT_S = 60.0


def gateway_binary() -> Path:
    """Where ``make gateway`` (``fraudlab gateway build``) puts the executable: ``gateway/bin``, untracked."""
    return GATEWAY_DIR / "bin" / _BINARY


def build_gateway() -> Path:
    """``go build`` the gateway (incremental: about a second when nothing changed) and return the executable.

    Raises:
        ServiceError: there is no Go toolchain, the sources are missing (an installed package, not a clone), or the
            build failed (its output is in the message).
    """
    go = shutil.which("go")
    if go is None:
        raise ServiceError("The Go gateway needs the Go toolchain (1.26 or newer) on PATH to build it: install Go "
                           "from https://go.dev/dl/ or your distribution, or serve with --engine python.")
    if not (GATEWAY_DIR / "go.mod").is_file():
        raise ServiceError(f"The Go gateway's sources are not at {GATEWAY_DIR}: it is built from a clone of the "
                           "fraudlab repository (make gateway).")
    target = gateway_binary()
    # -buildvcs=false: stamping the git state fails in a checkout owned by another user (CI's, a container's).
    command = [go, "build", "-trimpath", "-buildvcs=false", "-o", str(target), f"./cmd/{_BINARY}"]
    completed = subprocess.run(command, cwd=GATEWAY_DIR, capture_output=True, text=True,
                               env={**os.environ, "CGO_ENABLED": "0"})
    if completed.returncode != 0:
        raise ServiceError(f"go build of the gateway failed (exit {completed.returncode}):\n"
                           f"{(completed.stderr or completed.stdout).strip()}")
    return target


def lua_dir() -> Path:
    """The folder of the Lua scripts both servers run (package data of :mod:`fraudlab.ingest`)."""
    return Path(str(resources.files("fraudlab.ingest") / "lua"))


def gateway_command(settings: ServiceSettings, binary: Path | None = None) -> list[str]:
    """The gateway's command line for ``settings``, flag for flag as ``fraudlab serve`` takes them.

    ``producer_overrides`` are librdkafka settings and have no meaning to the Go producer; they are refused.
    """
    if settings.producer_overrides:
        raise ServiceError(f"producer_overrides={dict(settings.producer_overrides)!r} are librdkafka settings: the Go "
                           "gateway's producer does not take them (serve with --engine python).")
    values = {
        "bootstrap": settings.bootstrap, "topic": settings.topic, "partitions": settings.partitions,
        "host": settings.host, "port": settings.port, "rate-limit": settings.rate_limit,
        "rate-burst": settings.rate_burst, "dedup-window": settings.dedup_window,
        "dedup-capacity": settings.dedup_capacity, "redis-lease": settings.redis_lease,
        "max-message-bytes": settings.max_message_bytes, "ack-timeout": settings.ack_timeout,
        "grace": settings.grace, "flush-timeout": settings.flush_timeout, "max-future-ms": settings.max_future_ms,
        "stream-window": settings.stream_window, "startup-timeout": settings.startup_timeout,
        "lua-dir": lua_dir(),
    }
    if settings.tls_cert is not None and settings.tls_key is not None:
        values.update({"tls-cert": settings.tls_cert, "tls-key": settings.tls_key})
    command = [str(binary or gateway_binary()), *(f"--{name}={value}" for name, value in values.items())]
    return [*command, "--reuse-port"] if settings.reuse_port else command


def gateway_environment(settings: ServiceSettings, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment carrying the secrets: ``FRAUDLAB_TOKENS`` and ``REDIS_URL`` (removed when not set)."""
    environ = dict(os.environ if base is None else base)
    environ.pop("REDIS_URL", None)
    environ["FRAUDLAB_TOKENS"] = " ".join(settings.tokens)
    if settings.redis_url:
        environ["REDIS_URL"] = settings.redis_url
    return environ


class GatewayServer:
    """The Go gateway as a child process, used like :class:`~fraudlab.ingest.service.IngestionServer`.

    >>> with GatewayServer(ServiceSettings(bootstrap=bootstrap, port=0)) as target:
    ...     ...  # clients connect to `target`

    :meth:`start` returns once the gateway printed its listening line (it
    reports the port it bound, so port 0 works); a gateway that exits first
    raises :class:`ServiceError` with its last line, the reason. :attr:`lines`
    holds everything it printed.
    """

    def __init__(self, settings: ServiceSettings | None = None, **overrides: object) -> None:
        self.settings = dataclasses.replace(settings or ServiceSettings(), **overrides)  # type: ignore[arg-type]
        self.lines: list[str] = []
        self.process: subprocess.Popen[str] | None = None
        self._port: int | None = None
        self._ready = threading.Event()
        self._reader: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def target(self) -> str:
        if self._port is None:
            raise ServiceError("The Go gateway is not running: call start() first.")
        return client_target(self.settings.host, self._port)

    def start(self, timeout: float = _START_TIMEOUT_S) -> str:
        """Run the built gateway (see :func:`build_gateway`); return :attr:`target` once it listens."""
        if self.running:
            return self.target
        binary = gateway_binary()
        if not binary.is_file():
            raise ServiceError(f"The Go gateway is not built ({binary} is missing): run `make gateway` or "
                               "`fraudlab gateway build`.")
        self.process = subprocess.Popen(
            [*die_with_caller_prefix(), *gateway_command(self.settings, binary)],
            env=gateway_environment(self.settings), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True)
        assert self.process.stderr is not None
        self._reader = threading.Thread(target=self._read, args=(self.process.stderr,), daemon=True,
                                        name="fraudlab-gateway-output")
        self._reader.start()
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.05):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                last = self.lines[-1] if self.lines else "it printed nothing"
                raise ServiceError(last.removeprefix("error: "))
        return self.target

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            line = line.rstrip("\n")
            self.lines.append(line)
            match = _READY.match(line)
            if match:
                self._port = int(match["port"])
                self._ready.set()

    def stop(self, timeout: float | None = None) -> int | None:
        """SIGTERM (a graceful stop, as for ``fraudlab serve``) and wait; return the exit code (None if not started)."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        limit = timeout if timeout is not None else self.settings.grace + self.settings.flush_timeout + 10
        try:
            code = process.wait(limit)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait()
        if self._reader is not None:
            self._reader.join(5)
        self._port = None
        self._ready.clear()
        return code

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
