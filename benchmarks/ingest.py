"""Ingestion benchmark: how fast transactions reach Kafka through fraudlab's gRPC service, and at what latency.

One run measures, side by side and on the same broker:

* ``raw producer``: confluent-kafka publishing the same serialized payloads
  straight to Kafka, no gRPC: the ceiling for everything else;
* ``unary c=N``: ``SendTransaction`` with N calls in flight;
* ``stream max``: ``StreamTransactions`` through fraudlab's producer client, as fast as acknowledged;
* ``stream @50%``: the same stream paced at half of the measured maximum, in
  batches of 1/100 s worth (as ``fraudlab produce --rate`` sends them), for latency;
* ``raw paced``: the raw producer at that same rate, to show which part of the
  latency tail is the broker's and the machine's own.

Every path uses ``acks=all``, idempotence and lz4, and a transaction counts
only once Kafka confirmed it. The service runs as its own process
(``fraudlab serve``), as it would in production; the clients run in this one.
Payloads are built before the clock starts, so client-side sampling is not
measured.

    .venv/bin/python benchmarks/ingest.py                 # starts a local broker on free ports
    .venv/bin/python benchmarks/ingest.py --bootstrap 127.0.0.1:9092
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from confluent_kafka import Producer

from fraudlab.broker import BrokerSettings, LocalBroker, free_port
from fraudlab.exceptions import FraudlabError
from fraudlab.kafka import PUBLISHER_DEFAULTS, ensure_topic, producer_config
from fraudlab.producer import ReferenceSource, build_batch, stream_batches, user_pool
from fraudlab.proto import fraud_pb2_grpc
from fraudlab.proto.fraud_pb2 import TransactionBatch, TransactionRequest
from fraudlab.service import check_health, open_channel

USERS = 10_000
BATCH = 1000


@dataclass(frozen=True)
class Result:
    """One row of the table."""

    path: str
    transactions: int
    seconds: float
    p50_ms: float
    p99_ms: float
    server_cpu: float | None = None

    @property
    def rate(self) -> float:
        return self.transactions / self.seconds if self.seconds > 0 else 0.0

    def row(self, ceiling: float) -> str:
        cpu = f"{100 * self.server_cpu / self.seconds:.0f} %" if self.server_cpu is not None else "-"
        return (f"| {self.path} | {self.transactions:,} | {self.rate:,.0f} | {100 * self.rate / ceiling:.0f} % "
                f"| {self.p50_ms:.1f} | {self.p99_ms:.1f} | {cpu} |")


def make_batches(count: int, rng: np.random.Generator, source: ReferenceSource, users: np.ndarray, *,
                 size: int = BATCH) -> list[TransactionBatch]:
    """``count`` fresh transactions (new UUIDs) in batches of ``size``."""
    rows = source(count, rng)
    return [build_batch(rows.iloc[i:i + size], users, rng) for i in range(0, count, size)]


def flatten(batches: list[TransactionBatch]) -> list[TransactionRequest]:
    return [message for batch in batches for message in batch.transactions]


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


# --------------------------------------------------------------------------- through the service


async def unary(target: str, messages: list[TransactionRequest], concurrency: int, duration: float) -> Result:
    """``concurrency`` workers calling ``SendTransaction`` back to back for ``duration`` seconds."""
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
    return Result(f"unary SendTransaction, concurrency {concurrency}", len(latencies), seconds,
                  *_percentiles(latencies))


def _percentiles(seconds: list[float]) -> tuple[float, float]:
    """p50 and p99 in milliseconds."""
    p50, p99 = np.percentile(np.asarray(seconds) * 1000.0, [50, 99])
    return float(p50), float(p99)


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
def running_server(bootstrap: str, topic: str) -> Iterator[tuple[str, int]]:
    """``fraudlab serve`` as a child process; yields (target, pid) once it reports SERVING."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "fraudlab", "serve", "--bootstrap", bootstrap, "--topic", topic, "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    target = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(FraudlabError):
                if check_health(target, timeout=1) == "SERVING":
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise FraudlabError(f"fraudlab serve did not become healthy (exit code {process.poll()})")
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
    """User + system CPU time of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured(pid: int, run: Callable[[], Result]) -> Result:
    """Run one client phase, with the server's CPU time over it."""
    quiesce()
    before = cpu_seconds(pid)
    result = run()
    return Result(result.path, result.transactions, result.seconds, result.p50_ms, result.p99_ms,
                  cpu_seconds(pid) - before)


def benchmark(bootstrap: str, *, stream_count: int, unary_seconds: float, window: int) -> list[Result]:
    rng = np.random.default_rng(7)
    source = ReferenceSource()
    users = user_pool(USERS, rng)
    raw_topic, topic = f"bench-raw-{uuid.uuid4().hex[:8]}", f"bench-grpc-{uuid.uuid4().hex[:8]}"
    for name in (raw_topic, topic):
        ensure_topic(bootstrap, name, partitions=3)
    raw_batches = make_batches(stream_count, rng, source, users)
    quiesce()
    results = [raw_producer(bootstrap, raw_topic, raw_batches)]
    with running_server(bootstrap, topic) as (target, pid):
        for concurrency in (1, 16, 64):
            messages = flatten(make_batches(int(unary_seconds * 8000) + 1000, rng, source, users))
            results.append(measured(pid, lambda c=concurrency, m=messages: asyncio.run(
                unary(target, m, c, unary_seconds))))
        batches = make_batches(stream_count, rng, source, users)
        best = measured(pid, lambda: asyncio.run(streaming(target, batches, window=window, rate=None,
                                                          label="StreamTransactions, max rate")))
        results.append(best)
        half = best.rate / 2
        paced = make_batches(int(half * 8), rng, source, users, size=max(1, int(half / 100)))
        results.append(measured(pid, lambda: asyncio.run(streaming(
            target, paced, window=window, rate=half, label=f"StreamTransactions paced at {half:,.0f}/s (50 %)"))))
    raw_paced = make_batches(int(half * 8), rng, source, users, size=max(1, int(half / 100)))
    quiesce()
    results.append(raw_producer(bootstrap, raw_topic, raw_paced, rate=half,
                                label=f"raw producer paced at {half:,.0f}/s (same rate, for comparison)"))
    return results


def table(results: list[Result]) -> str:
    ceiling = results[0].rate
    lines = ["| path | transactions | tx/s | of raw | p50 ms | p99 ms | server CPU |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    return "\n".join(lines + [r.row(ceiling) for r in results])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", help="Kafka to use [default: start a local broker on free ports].")
    parser.add_argument("--stream-count", type=int, default=400_000, help="Transactions in the max-rate runs.")
    parser.add_argument("--unary-seconds", type=float, default=5.0, help="Duration of each unary run.")
    parser.add_argument("--window", type=int, default=8, help="Stream batches in flight.")
    args = parser.parse_args()
    load = os.getloadavg()
    with contextlib.ExitStack() as stack:
        bootstrap = args.bootstrap
        if bootstrap is None:
            state = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fraudlab-bench-")))
            bootstrap = stack.enter_context(LocalBroker(
                BrokerSettings(port=free_port(), controller_port=free_port(), state_dir=state), purge_on_exit=True))
        results = benchmark(bootstrap, stream_count=args.stream_count, unary_seconds=args.unary_seconds,
                            window=args.window)
    print(f"{os.cpu_count()} CPUs, load average before the run {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
          f"batches of {BATCH}, {USERS:,} users, window {args.window}")
    print(table(results))


if __name__ == "__main__":
    main()
