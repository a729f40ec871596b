"""Ingestion benchmark: how fast transactions reach Kafka through fraudlab's gRPC service, and at what latency.

Each repeat measures, side by side and on the same broker:

* ``raw producer``: confluent-kafka publishing the same serialized payloads
  straight to Kafka, no gRPC: the ceiling for everything else;
* ``gRPC floor``: ``benchmarks/grpc_floor.py``, a server that answers at once
  and publishes nothing, under the same clients: what the framework alone
  costs in Python here;
* ``unary c=N``: ``SendTransaction`` with N calls in flight;
* ``stream max``: ``StreamTransactions`` through fraudlab's producer client, as fast as acknowledged;
* ``stream @50%``: the same stream paced at half of that repeat's maximum, in
  batches of 1/100 s worth (as ``fraudlab produce --rate`` sends them), for latency;
* ``raw paced``: the raw producer at that same rate, to show which part of the
  latency tail is the broker's and the machine's own;
* ``Redis, 1 worker`` / ``Redis, 2 workers``: unary c=64 and the max-rate
  stream again with dedup and rate limits shared in a real local Redis
  (``fraudlab serve --redis``, then ``--workers 2``), next to the memory
  backend rows above; the Redis round trips per transaction (EVALSHA calls
  counted by Redis itself) are printed below the tables.

Every path to Kafka uses ``acks=all``, idempotence and lz4, and a transaction
counts only once Kafka confirmed it. The servers run as their own processes
(``fraudlab serve`` as in production); the Python clients run in this one.
Payloads are built before the clock starts, and one unrecorded raw run warms
the broker up first. The table gives each row's median over the repeats, its
range, and the median of its ratio to the raw ceiling of the same repeat.

Unary calls are driven by ghz (a Go load generator) when it is installed,
since a Python client spends as much CPU per call as the server it measures
and both share the machine; otherwise by a grpc.aio client in this process.
The header line says which.

    .venv/bin/python benchmarks/ingest.py                 # local broker on free ports, 3 repeats
    .venv/bin/python benchmarks/ingest.py --bootstrap 127.0.0.1:9092 --repeats 1
    GOBIN=~/.cache/fraudlab/bin go install github.com/bojand/ghz/cmd/ghz@v0.120.0   # optional unary driver
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from confluent_kafka import Producer
from google.protobuf.json_format import MessageToDict

from fraudlab.config import cache_root
from fraudlab.exceptions import FraudlabError
from fraudlab.infra.broker import BrokerSettings, LocalBroker
from fraudlab.infra.process import free_port
from fraudlab.infra.redis import LocalRedis, RedisSettings
from fraudlab.ingest.channel import check_health, open_channel
from fraudlab.ingest.client import ReferenceSource, build_batch, stream_batches, user_pool
from fraudlab.kafka.admin import ensure_topic
from fraudlab.kafka.connection import producer_config
from fraudlab.kafka.publisher import PUBLISHER_DEFAULTS
from fraudlab.schema.proto import fraud_pb2_grpc
from fraudlab.schema.proto.fraud_pb2 import TransactionBatch, TransactionRequest
from fraudlab.schema.protogen import PROTO_SOURCE_DIR

USERS = 10_000
BATCH = 1000
HERE = Path(__file__).resolve().parent
TARGETS = "streaming >= 50,000 tx/s and >= 50 % of raw; unary >= 4,000 calls/s at 64; p99 <= 50 ms at 50 %"


@dataclass(frozen=True)
class Result:
    """One measurement: a row of one repeat."""

    path: str
    transactions: int
    seconds: float
    p50_ms: float
    p99_ms: float
    server_cpu: float | None = None

    @property
    def rate(self) -> float:
        return self.transactions / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_share(self) -> float | None:
        """The server process's CPU time over the phase, as a share of one core."""
        return self.server_cpu / self.seconds if self.server_cpu is not None and self.seconds > 0 else None


def make_batches(count: int, rng: np.random.Generator, source: ReferenceSource, users: np.ndarray, *,
                 size: int = BATCH) -> list[TransactionBatch]:
    """``count`` fresh transactions (new UUIDs) in batches of ``size``."""
    rows = source(count, rng)
    return [build_batch(rows.iloc[i:i + size], users, rng) for i in range(0, count, size)]


def flatten(batches: list[TransactionBatch]) -> list[TransactionRequest]:
    return [message for batch in batches for message in batch.transactions]


def _percentiles(seconds: Sequence[float]) -> tuple[float, float]:
    """p50 and p99 in milliseconds."""
    p50, p99 = np.percentile(np.asarray(seconds) * 1000.0, [50, 99])
    return float(p50), float(p99)


# --------------------------------------------------------------------------- raw producer


def raw_producer(bootstrap: str, topic: str, batches: list[TransactionBatch], *, rate: float | None = None,
                 label: str = "raw confluent-kafka producer (no gRPC)") -> Result:
    """confluent-kafka with the service's own settings, no gRPC: the ceiling (or, paced, the broker's own tail)."""
    producer = Producer(producer_config(bootstrap, PUBLISHER_DEFAULTS))
    producer.produce(topic, b"warm-up")  # the idempotent producer id is fetched before the clock starts
    producer.flush(30)
    chunks = [[{"value": m.SerializeToString(), "key": str(m.user_id).encode()} for m in b.transactions]
              for b in batches]
    latencies: list[float] = []
    failures: list[str] = []

    def reporter(sent_at: float):
        def on_delivery(error: object, _message: object) -> None:
            if error is None:
                latencies.append(time.perf_counter() - sent_at)
            else:
                failures.append(str(error))
        return on_delivery

    started = time.perf_counter()
    sent = 0
    for chunk in chunks:
        while rate is not None and (wait := started + sent / rate - time.perf_counter()) > 0:
            producer.poll(min(wait, 0.001))
        while True:
            try:
                producer.produce_batch(topic, chunk, on_delivery=reporter(time.perf_counter()))
                break
            except BufferError:
                producer.poll(0.01)
        sent += len(chunk)
        producer.poll(0)
    producer.flush(60)
    seconds = time.perf_counter() - started
    if failures or len(latencies) != sent:
        raise FraudlabError(f"raw producer: {len(failures)} failures ({failures[:3]}), {len(latencies)} confirmed")
    return Result(label, len(latencies), seconds, *_percentiles(latencies))


# --------------------------------------------------------------------------- unary clients


async def unary(target: str, messages: list[TransactionRequest], concurrency: int, duration: float,
                label: str) -> Result:
    """``concurrency`` grpc.aio workers calling ``SendTransaction`` back to back for ``duration`` seconds."""
    latencies: list[float] = []
    supply: Iterator[TransactionRequest] = iter(messages)
    async with open_channel(target) as channel:
        stub = fraud_pb2_grpc.FraudIngestionStub(channel)
        await stub.SendTransaction(next(supply), timeout=10)
        deadline = time.perf_counter() + duration

        async def worker() -> None:
            for message in supply:
                if time.perf_counter() > deadline:
                    return
                sent = time.perf_counter()
                answer = await stub.SendTransaction(message, timeout=10)
                if not answer.success:
                    raise FraudlabError(f"unary call failed: {answer.message}")
                latencies.append(time.perf_counter() - sent)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    return Result(label, len(latencies), seconds, *_percentiles(latencies))


def find_ghz(explicit: Path | None) -> Path | None:
    """``--ghz``, else ``ghz`` on PATH, else the copy ``go install`` put in fraudlab's cache (see the docstring)."""
    if explicit is not None:
        if not explicit.is_file():
            raise FraudlabError(f"--ghz {explicit}: no such file")
        return explicit
    found = shutil.which("ghz") or shutil.which("ghz", path=str(cache_root() / "bin"))
    return Path(found) if found else None


def ghz_template(message: TransactionRequest) -> str:
    """``message`` as ghz call data: every call gets a fresh UUID, a random user of the pool and the current time."""
    data = MessageToDict(message, preserving_proto_field_name=True)
    data.update(transaction_id="{{.UUID}}", timestamp="{{.TimestampUnixMilli}}",
                user_id="{{randomInt 1000000000 9999999999}}")
    return json.dumps(data)


def ghz_unary(ghz: Path, target: str, message: TransactionRequest, concurrency: int, duration: float,
              label: str) -> Result:
    """ghz calling ``SendTransaction`` with ``concurrency`` calls in flight on one connection for ``duration`` s.

    Only calls answered OK count. The calls in flight when ghz's time is up end
    as Canceled or Unavailable ("transport is closing"); any failure beyond
    those ``concurrency`` calls is the server's, and stops the benchmark.
    """
    command = [str(ghz), "--insecure", "--proto", str(PROTO_SOURCE_DIR / "fraud.proto"),
               "--call", "fraud.FraudIngestion/SendTransaction", "--data", ghz_template(message),
               "--concurrency", str(concurrency), "--connections", "1", "--duration", f"{duration:g}s",
               "--format", "json", target]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=duration + 120)
    if not completed.stdout.strip():
        raise FraudlabError(f"ghz failed (exit {completed.returncode}): {completed.stderr.strip()[:500]}")
    report = json.loads(completed.stdout)
    answered = report.get("statusCodeDistribution", {})
    failed = {code: n for code, n in answered.items() if code != "OK"}
    cut_off = sum(failed.get(code, 0) for code in ("Canceled", "Unavailable"))
    if sum(failed.values()) > cut_off or cut_off > concurrency:
        raise FraudlabError(f"{label}: calls failed: {failed}; {report.get('errorDistribution')}")
    latencies = {int(item["percentage"]): item["latency"] / 1e6 for item in report["latencyDistribution"] or ()}
    return Result(label, answered.get("OK", 0), report["total"] / 1e9, latencies.get(50, float("nan")),
                  latencies.get(99, float("nan")))


# --------------------------------------------------------------------------- the stream


async def _paced(batches: list[TransactionBatch], rate: float | None) -> AsyncIterator[TransactionBatch]:
    started = time.perf_counter()
    sent = 0
    for batch in batches:
        if rate is not None:
            delay = started + sent / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        sent += len(batch.transactions)
        yield batch


async def streaming(target: str, batches: list[TransactionBatch], *, window: int, rate: float | None,
                    label: str) -> Result:
    """fraudlab's producer client over ``StreamTransactions``, fed pre-built batches."""
    summary = await stream_batches(target, _paced(batches, rate), window=window, retry_timeout=30)
    if summary.accepted != sum(len(b.transactions) for b in batches) or summary.retried:
        raise FraudlabError(f"{label}: {summary.describe()}")
    return Result(label, summary.accepted, summary.elapsed, summary.p50_ms, summary.p99_ms)


# --------------------------------------------------------------------------- orchestration


@contextlib.contextmanager
def running_server(arguments: list[str], *, program: str = sys.executable,
                   environ: dict[str, str] | None = None) -> Iterator[tuple[str, int]]:
    """``PROGRAM ARGUMENTS --port P`` (Python by default) as a child process; yields (target, pid) once its health
    says SERVING."""
    port = free_port()
    process = subprocess.Popen([program, *arguments, "--port", str(port)], env=environ,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    target = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(FraudlabError):
                if check_health(target, timeout=1) == "SERVING":
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise FraudlabError(f"{' '.join(arguments)} did not become healthy (exit code {process.poll()})")
            time.sleep(0.2)
        yield target, process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)


def quiesce() -> None:
    """Freeze the built payloads and the libraries out of the garbage collector's sight before a phase.

    Full collections in this client would otherwise stall it for tens of
    milliseconds and be counted as service latency.
    """
    gc.collect()
    gc.freeze()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time so far of process ``pid`` and its children (the workers of ``serve --workers``)."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    kids = [int(k) for k in children.read_text().split()] if children.is_file() else []
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK") + sum(cpu_seconds(kid) for kid in kids)


def evalsha_calls(redis_url: str) -> int:
    """How many scripts Redis has run (one round trip each), from its own command statistics."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        return int(client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))
    finally:
        client.close()


def measured(pid: int, run: Callable[[], Result]) -> Result:
    """Run one client phase, with the server's CPU time over it."""
    quiesce()
    before = cpu_seconds(pid)
    result = run()
    return Result(result.path, result.transactions, result.seconds, result.p50_ms, result.p99_ms,
                  cpu_seconds(pid) - before)


@dataclass(frozen=True)
class Plan:
    """What one repeat runs."""

    bootstrap: str
    stream_count: int
    unary_seconds: float
    paced_seconds: float
    window: int
    ghz: Path | None
    redis_url: str


class Bench:
    """Builds fresh payloads for every phase (no id is ever sent twice) and runs the phases of a repeat."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.rng = np.random.default_rng(7)
        self.source = ReferenceSource()
        self.users = user_pool(USERS, self.rng)
        self.round_trips: dict[str, list[float]] = {}
        self.raw_topic, self.topic = f"bench-raw-{uuid.uuid4().hex[:8]}", f"bench-grpc-{uuid.uuid4().hex[:8]}"
        for name in (self.raw_topic, self.topic):
            ensure_topic(plan.bootstrap, name, partitions=3)

    def batches(self, count: int, size: int = BATCH) -> list[TransactionBatch]:
        return make_batches(count, self.rng, self.source, self.users, size=size)

    def unary(self, pid: int, target: str, concurrency: int, label: str) -> Result:
        plan = self.plan
        if plan.ghz is not None:
            message = self.batches(1).pop().transactions[0]
            return measured(pid, lambda: ghz_unary(plan.ghz, target, message, concurrency, plan.unary_seconds, label))
        messages = flatten(self.batches(int(plan.unary_seconds * 8000) + 1000))
        return measured(pid, lambda: asyncio.run(unary(target, messages, concurrency, plan.unary_seconds, label)))

    def phase_batches(self, rate: float | None) -> list[TransactionBatch]:
        """A stream phase's payload: the max-rate count in full batches, or ``paced_seconds`` worth at ``rate`` in
        batches of 1/100 s worth."""
        if rate is None:
            return self.batches(self.plan.stream_count)
        return self.batches(max(1, int(rate * self.plan.paced_seconds)), max(1, int(rate / 100)))

    def stream(self, pid: int, target: str, label: str, *, rate: float | None = None) -> Result:
        batches = self.phase_batches(rate)
        return measured(pid, lambda: asyncio.run(streaming(target, batches, window=self.plan.window, rate=rate,
                                                           label=label)))

    def raw(self, label: str, *, rate: float | None = None) -> Result:
        batches = self.phase_batches(rate)
        quiesce()
        return raw_producer(self.plan.bootstrap, self.raw_topic, batches, rate=rate, label=label)

    def warm_up(self) -> None:
        """One unrecorded raw run: the broker's JIT compiler would otherwise slow the first repeat only."""
        self.raw("warm-up")

    def repeat(self) -> list[Result]:
        """One repeat: every row of the table, in order."""
        plan = self.plan
        results = [self.raw("raw confluent-kafka producer (no gRPC)")]
        with running_server([str(HERE / "grpc_floor.py")]) as (target, pid):
            results.append(self.unary(pid, target, 64, "gRPC floor: empty handler, unary, concurrency 64"))
            results.append(self.stream(pid, target, "gRPC floor: empty handler, StreamTransactions"))
        serve = ["-m", "fraudlab", "serve", "--bootstrap", plan.bootstrap, "--topic", self.topic]
        with running_server(serve) as (target, pid):
            for concurrency in (1, 16, 64):
                results.append(self.unary(pid, target, concurrency,
                                          f"unary SendTransaction, concurrency {concurrency}"))
            best = self.stream(pid, target, "StreamTransactions, max rate")
            results.append(best)
            half = best.rate / 2
            results.append(self.stream(pid, target, "StreamTransactions paced at 50 % of max", rate=half))
        results.append(self.raw("raw producer paced at the same rate (broker's own tail)", rate=half))
        for workers in (1, 2):
            results.extend(self._redis_rows(serve, workers))
        return results

    def _redis_rows(self, serve: list[str], workers: int) -> list[Result]:
        """Unary c=64 and the max-rate stream with dedup and rate limits in Redis, counting its round trips."""
        url = self.plan.redis_url
        name = f"Redis, {workers} worker{'s' if workers > 1 else ''}"
        rows = []
        with running_server([*serve, "--redis", url, "--workers", str(workers)]) as (target, pid):
            phases = ((f"{name}: unary SendTransaction, concurrency 64",
                       lambda label: self.unary(pid, target, 64, label)),
                      (f"{name}: StreamTransactions, max rate", lambda label: self.stream(pid, target, label)))
            for label, run in phases:
                before = evalsha_calls(url)
                result = run(label)
                self.round_trips.setdefault(label, []).append((evalsha_calls(url) - before) / result.transactions)
                rows.append(result)
        return rows


# --------------------------------------------------------------------------- report


def table(repeats: list[list[Result]]) -> str:
    """Markdown: per row, the median over repeats, the range, and the median ratio to the same repeat's raw ceiling."""
    lines = ["| path | tx/s (median) | range | of raw | p50 ms | p99 ms | server CPU |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for row in zip(*repeats, strict=True):
        rates = [r.rate for r in row]
        ratios = [r.rate / run[0].rate for r, run in zip(row, repeats, strict=True)]
        cpu = [r.cpu_share for r in row if r.cpu_share is not None]
        spread = f"{min(rates):,.0f} to {max(rates):,.0f}" if len(row) > 1 else "-"
        lines.append(
            f"| {row[0].path} | {statistics.median(rates):,.0f} | {spread} | {100 * statistics.median(ratios):.0f} % "
            f"| {statistics.median([r.p50_ms for r in row]):.1f} | {statistics.median([r.p99_ms for r in row]):.1f} "
            f"| {f'{100 * statistics.median(cpu):.0f} %' if cpu else '-'} |"
        )
    return "\n".join(lines)


def _find(run: list[Result], prefix: str) -> Result:
    return next(r for r in run if r.path.startswith(prefix))


def per_repeat(repeats: list[list[Result]]) -> str:
    """The numbers the targets are about, repeat by repeat."""
    lines = ["| repeat | raw tx/s | stream tx/s (of raw) | p99 at 50 % ms | unary c=64 calls/s | floor c=64 calls/s |",
             "|---:|---:|---:|---:|---:|---:|"]
    for number, run in enumerate(repeats, start=1):
        raw, stream = run[0], _find(run, "StreamTransactions, max")
        lines.append(
            f"| {number} | {raw.rate:,.0f} | {stream.rate:,.0f} ({100 * stream.rate / raw.rate:.0f} %) "
            f"| {_find(run, 'StreamTransactions paced').p99_ms:.1f} "
            f"| {_find(run, 'unary SendTransaction, concurrency 64').rate:,.0f} "
            f"| {_find(run, 'gRPC floor: empty handler, unary').rate:,.0f} |"
        )
    return "\n".join(lines)


def round_trip_lines(round_trips: dict[str, list[float]]) -> str:
    """Redis round trips per transaction of each Redis row (median over repeats)."""
    return "\n".join(f"Redis round trips per transaction, {label}: {statistics.median(values):.3f}"
                     for label, values in round_trips.items())


def client_arguments(doc: str | None, *, stream_count: int) -> argparse.ArgumentParser:
    """The options every gRPC benchmark here takes: the broker, repeats, unary and stream sizes, the unary driver."""
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument("--bootstrap", help="Kafka to use [default: start a local broker on free ports].")
    parser.add_argument("--repeats", type=int, default=3, help="Times the whole set of rows is measured.")
    parser.add_argument("--stream-count", type=int, default=stream_count, help="Transactions in the max-rate runs.")
    parser.add_argument("--unary-seconds", type=float, default=5.0, help="Duration of each unary run.")
    parser.add_argument("--window", type=int, default=8, help="Stream batches in flight.")
    parser.add_argument("--ghz", type=Path, help="ghz binary for the unary rows [default: PATH, then the cache].")
    parser.add_argument("--python-client", action="store_true", help="Drive unary calls from Python even with ghz.")
    return parser


def broker_for(stack: contextlib.ExitStack, bootstrap: str | None) -> str:
    """``bootstrap``, or a local broker on free ports in a temporary directory, stopped and purged with ``stack``."""
    if bootstrap is not None:
        return bootstrap
    state = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fraudlab-bench-")))
    return stack.enter_context(LocalBroker(
        BrokerSettings(port=free_port(), controller_port=free_port(), state_dir=state), purge_on_exit=True))


def main() -> None:
    parser = client_arguments(__doc__, stream_count=400_000)
    parser.add_argument("--paced-seconds", type=float, default=8.0, help="Duration of each paced run.")
    parser.add_argument("--redis", help="Redis URL for the Redis rows [default: start a local redis-server].")
    args = parser.parse_args()
    ghz = None if args.python_client else find_ghz(args.ghz)
    load = os.getloadavg()
    with contextlib.ExitStack() as stack:
        bootstrap = broker_for(stack, args.bootstrap)
        redis_url = args.redis or stack.enter_context(LocalRedis(RedisSettings(
            port=free_port(), state_dir=Path(stack.enter_context(tempfile.TemporaryDirectory()))), purge_on_exit=True))
        bench = Bench(Plan(bootstrap, args.stream_count, args.unary_seconds, args.paced_seconds, args.window, ghz,
                           redis_url))
        bench.warm_up()
        repeats = [bench.repeat() for _ in range(args.repeats)]
    driver = f"ghz ({ghz})" if ghz else "a grpc.aio client in the benchmark process"
    print(f"{os.cpu_count()} CPUs, load average before the run {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
          f"{args.repeats} repeats; batches of {BATCH}, {USERS:,} users, window {args.window}; "
          f"unary calls from {driver}")
    print(table(repeats))
    print()
    print(per_repeat(repeats))
    print()
    print(round_trip_lines(bench.round_trips))
    print(f"\ntargets: {TARGETS}")


if __name__ == "__main__":
    main()
