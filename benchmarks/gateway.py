"""Python server against Go gateway: unary calls and streams through both, beside the empty-handler floors of both.

Each repeat measures, on one broker and under the same clients (ghz for unary
calls, fraudlab's producer for streams):

* ``Python floor`` / ``Go floor``: ``benchmarks/grpc_floor.py`` and
  ``gateway/cmd/grpc-floor``, servers that answer at once and publish
  nothing: what each gRPC framework alone costs here;
* ``Python server`` (``fraudlab serve``) and ``Go gateway`` (``fraudlab serve
  --engine go``): ``SendTransaction`` with 1, 16 and 64 calls in flight, and
  ``StreamTransactions`` at the highest rate the producer gets acknowledged.

Both real servers validate, deduplicate (in memory), rate-limit and answer
only once Kafka confirmed (``acks=all``, idempotence, lz4). The table gives
each row's median over the repeats and its range, and the median of its ratio
to the Python server's row of the same repeat. Unary calls come from ghz
when it is installed (see ``benchmarks/ingest.py``), else from a grpc.aio
client in this process, which is slower than either Go server; the header
line says which. The Go binaries are built first.

    .venv/bin/python benchmarks/gateway.py                  # local broker on free ports, 3 repeats
    .venv/bin/python benchmarks/gateway.py --bootstrap 127.0.0.1:9092 --repeats 1 --unary-seconds 3
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
from ingest import (
    Result,
    broker_for,
    client_arguments,
    find_ghz,
    flatten,
    ghz_unary,
    make_batches,
    measured,
    running_server,
    streaming,
    unary,
)

from fraudlab.exceptions import FraudlabError
from fraudlab.ingest.client import ReferenceSource, user_pool
from fraudlab.ingest.gateway import GATEWAY_DIR, build_gateway, gateway_command, gateway_environment
from fraudlab.ingest.service import ServiceSettings
from fraudlab.kafka.admin import ensure_topic

HERE = Path(__file__).resolve().parent
USERS = 10_000
BATCH = 1000
CONCURRENCY = (1, 16, 64)
TARGET = "Go gateway, unary at concurrency 64: >= 6,700 calls/s (the original Go server's median here), p99 <= 20 ms"


def build_floor() -> Path:
    """The Go empty-handler server, next to the gateway in gateway/bin."""
    target = GATEWAY_DIR / "bin" / "grpc-floor"
    subprocess.run(["go", "build", "-trimpath", "-buildvcs=false", "-o", str(target), "./cmd/grpc-floor"],
                   cwd=GATEWAY_DIR, check=True)
    return target


class Bench:
    """Fresh payloads for every phase (no id is sent twice), the four servers, the rows of a repeat."""

    def __init__(self, bootstrap: str, ghz: Path | None, unary_seconds: float, stream_count: int,
                 window: int) -> None:
        self.bootstrap, self.ghz, self.unary_seconds = bootstrap, ghz, unary_seconds
        self.stream_count, self.window = stream_count, window
        self.rng = np.random.default_rng(11)
        self.source = ReferenceSource()
        self.users = user_pool(USERS, self.rng)
        self.topic = f"bench-gateway-{uuid.uuid4().hex[:8]}"
        ensure_topic(bootstrap, self.topic, partitions=3)
        self.gateway, self.floor = build_gateway(), build_floor()

    def servers(self) -> list[tuple[str, list[str], str, dict[str, str] | None]]:
        """(name, arguments, program, environment) of each server, floors first."""
        settings = ServiceSettings(bootstrap=self.bootstrap, topic=self.topic)
        command = gateway_command(settings, self.gateway)
        flags = [flag for flag in command[1:] if not flag.startswith("--port=")]
        serve = ["-m", "fraudlab", "serve", "--bootstrap", self.bootstrap, "--topic", self.topic]
        return [("Python floor", [str(HERE / "grpc_floor.py")], sys.executable, None),
                ("Go floor", [], str(self.floor), None),
                ("Python server", serve, sys.executable, None),
                ("Go gateway", flags, str(self.gateway), gateway_environment(settings))]

    def unary(self, pid: int, target: str, concurrency: int, label: str) -> Result:
        """ghz's calls (a fresh id and time each), else a grpc.aio client's over pre-built messages."""
        ghz, seconds = self.ghz, self.unary_seconds
        if ghz is not None:
            message = make_batches(1, self.rng, self.source, self.users, size=1)[0].transactions[0]
            return measured(pid, lambda: ghz_unary(ghz, target, message, concurrency, seconds, label))
        messages = flatten(make_batches(int(seconds * 12_000) + 1000, self.rng, self.source, self.users))
        return measured(pid, lambda: asyncio.run(unary(target, messages, concurrency, seconds, label)))

    def repeat(self) -> list[Result]:
        results = []
        for name, arguments, program, environ in self.servers():
            with running_server(arguments, program=program, environ=environ) as (target, pid):
                for concurrency in CONCURRENCY:
                    results.append(self.unary(pid, target, concurrency, f"{name}: unary, concurrency {concurrency}"))
                batches = make_batches(self.stream_count, self.rng, self.source, self.users, size=BATCH)
                label = f"{name}: StreamTransactions, max rate"
                results.append(measured(pid, lambda label=label, batches=batches, target=target: asyncio.run(
                    streaming(target, batches, window=self.window, rate=None, label=label))))
        return results


def table(repeats: list[list[Result]]) -> str:
    """Markdown: median and range over repeats, ratio to the Python server's same row, latency, server CPU."""
    lines = ["| path | calls or tx/s (median) | range | of Python server | p50 ms | p99 ms | server CPU |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for row in zip(*repeats, strict=True):
        kind = row[0].path.split(": ", 1)[1]
        rates = [r.rate for r in row]
        ratios = [r.rate / next(x for x in run if x.path == f"Python server: {kind}").rate
                  for r, run in zip(row, repeats, strict=True)]
        cpu = [r.cpu_share for r in row if r.cpu_share is not None]
        spread = f"{min(rates):,.0f} to {max(rates):,.0f}" if len(row) > 1 else "-"
        lines.append(
            f"| {row[0].path} | {statistics.median(rates):,.0f} | {spread} | {statistics.median(ratios):.2f}x "
            f"| {statistics.median([r.p50_ms for r in row]):.2f} | {statistics.median([r.p99_ms for r in row]):.2f} "
            f"| {f'{100 * statistics.median(cpu):.0f} %' if cpu else '-'} |")
    return "\n".join(lines)


def main() -> None:
    parser = client_arguments(__doc__, stream_count=200_000)
    args = parser.parse_args()
    ghz = None if args.python_client else find_ghz(args.ghz)
    load = os.getloadavg()
    with contextlib.ExitStack() as stack:
        bootstrap = broker_for(stack, args.bootstrap)
        bench = Bench(bootstrap, ghz, args.unary_seconds, args.stream_count, args.window)
        try:
            repeats = [bench.repeat() for _ in range(args.repeats)]
        except FraudlabError as exc:
            raise SystemExit(f"error: {exc}") from exc
    print(f"{os.cpu_count()} CPUs, load average before the run {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
          f"{args.repeats} repeats; unary calls from {f'ghz ({ghz})' if ghz else 'a grpc.aio client'}, "
          f"{args.unary_seconds:g} s each on one connection; "
          f"streams of {args.stream_count:,} transactions in batches of {BATCH}, window {args.window}")
    print(table(repeats))
    print(f"\ntarget: {TARGET}")


if __name__ == "__main__":
    main()
