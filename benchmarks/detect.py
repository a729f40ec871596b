"""Real-time scoring benchmark: the Flink job's sustained throughput, its latency under paced load, start-up, memory.

On a local broker (or ``--bootstrap``), with the pre-trained detector and the job embedded (a local MiniCluster),
as ``fraudlab detect`` runs it:

* **throughput**: an account stream published to a fresh topic beforehand, then scored by a bounded job at
  parallelism 1 and 2 (exactly-once sink included). Sustained = records / (last - first ``scored_at``), so JVM
  start, planning and the Python workers' start are left out; the job's whole run time is shown beside it.
* **latency**: a live job fed at ``--rate`` transactions/s for ``--seconds``, each record's event time its publish
  time (as the ingestion service stamps live traffic) and the job's lateness ``--lateness-ms``. A record's clock
  starts when Kafka confirms it (what the ingestion service waits for before it acknowledges); it stops when a
  read-committed consumer of ``scored_transactions`` receives it (exactly once: at least one checkpoint), and, for
  alerts, when a consumer of ``fraud_alerts`` (at-least-once, no checkpoint wait) receives it.
* **start-up**: from launching the live job to all its tasks running, and to its first scored record. Until
  that record, a slow warm-up trickle feeds the job (its Python workers open with the first records they get);
  the timed load starts after it, so the latency rows are a warm job's, whatever the machine's load.
* **memory**: the peak resident memory of the live job's JVM and of its Python workers, sampled each second.

The table gives medians over ``--repeats`` (latency and memory rows come from the live run of each repeat).

    .venv/bin/python benchmarks/detect.py                         # local broker on free ports, 1 repeat
    .venv/bin/python benchmarks/detect.py --quick                 # a small, fast run (what the test suite does)
"""

from __future__ import annotations

import argparse
import contextlib
import math
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from fraudlab import config
from fraudlab.detect.model import DEFAULT_DETECTOR
from fraudlab.detect.realtime import ScoringJob, ensure_job_topics, read_scored, run_scoring_job
from fraudlab.detect.scoring_job import ScoringJobSettings
from fraudlab.enrich.geoip import AddressSpace
from fraudlab.generate.accounts import StreamSettings, generate_stream
from fraudlab.generate.synth import DEFAULT_MODEL, TransactionSynthesizer
from fraudlab.infra.broker import BrokerSettings, LocalBroker
from fraudlab.infra.process import free_port
from fraudlab.kafka.publisher import event_time_header, publish_transactions
from fraudlab.schema import wire
from fraudlab.schema.messages import TransactionRequest, transactions_batch

POLL_S = 0.05
#: Before the timed load: records/s, and at most this many (3 minutes), until the first comes back scored.
_WARM_UP_RATE = 10.0
_WARM_UP_MAX = 1_800


def _settings(bootstrap: str, cache: Path, work: Path, **overrides: object) -> ScoringJobSettings:
    tag = uuid.uuid4().hex[:10]
    return ensure_job_topics(ScoringJobSettings(
        bootstrap=bootstrap, model=str(DEFAULT_DETECTOR), geoip_dir=str(cache),
        checkpoint_dir=str(work / tag / "checkpoints"), group_id=f"bench-{tag}", source_topic=f"raw-{tag}",
        scored_topic=f"scored-{tag}", alerts_topic=f"alerts-{tag}", dead_letter_topic=f"dead-{tag}",
        model_updates_topic=f"models-{tag}", **overrides))  # type: ignore[arg-type]


def _messages(accounts: int, days: float, cache: Path, seed: int) -> list[TransactionRequest]:
    stream = generate_stream(StreamSettings(accounts=accounts, days=days, seed=seed), space=AddressSpace.load(cache),
                             model=TransactionSynthesizer.load(DEFAULT_MODEL))
    return list(transactions_batch(stream, transaction_ids=stream["transaction_id"].tolist(),
                                   user_ids=stream["user_id"].astype(int).tolist()).transactions)


def throughput(bootstrap: str, cache: Path, work: Path, messages: list[TransactionRequest],
               parallelism: int) -> dict[str, float]:
    """A bounded job over a pre-filled topic: sustained records/s and the job's whole run time."""
    settings = _settings(bootstrap, cache, work, bounded=True, parallelism=parallelism)
    publish_transactions(bootstrap, messages, topic=settings.source_topic)
    began = time.perf_counter()
    run_scoring_job(settings, timeout=1800)
    run_s = time.perf_counter() - began
    scored = read_scored(bootstrap, settings.scored_topic)
    if len(scored) != len(messages) or not scored["transaction_id"].is_unique:
        raise SystemExit(f"throughput run p={parallelism}: {len(scored):,} scored records for {len(messages):,}")
    span_s = max((int(scored["scored_at"].max()) - int(scored["scored_at"].min())) / 1000, 1e-3)
    return {"records": len(scored), "per_second": len(scored) / span_s, "run_s": run_s}


class _Receiver(threading.Thread):
    """Notes when each record of ``topic`` arrives (epoch ms, by transaction id)."""

    def __init__(self, bootstrap: str, topic: str, *, committed: bool) -> None:
        super().__init__(name=f"receive-{topic}", daemon=True)
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4().hex[:8]}",
                                  "enable.auto.commit": False, "auto.offset.reset": "earliest",
                                  "isolation.level": "read_committed" if committed else "read_uncommitted"})
        partitions = self.consumer.list_topics(topic, timeout=10).topics[topic].partitions
        self.consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        self.arrived: dict[str, int] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                messages = [m for m in self.consumer.consume(1000, POLL_S) if m.error() is None]
                if messages:
                    now = time.time_ns() // 1_000_000
                    for transaction_id in wire.decode_scored([m.value() for m in messages])["transaction_id"]:
                        self.arrived.setdefault(transaction_id, now)
        finally:
            self.consumer.close()


def _paced(bootstrap: str, topic: str, messages: list[TransactionRequest], rate: float,
           seconds: float, *, until: Callable[[], bool] = lambda: False) -> dict[str, int]:
    """Publish ``rate`` records/s for ``seconds`` (or until ``until()`` is true), each stamped with its publish time;
    return the Kafka confirmation time (epoch ms) of each."""
    confirmed: dict[str, int] = {}
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                         "linger.ms": 5, "compression.type": "lz4"})

    def on_delivery(error: KafkaError | None, message: object) -> None:
        if error is None:
            confirmed[message.key().decode()] = time.time_ns() // 1_000_000  # type: ignore[attr-defined]

    total = min(len(messages), int(rate * seconds))
    started = time.monotonic()
    for index in range(total):
        if until():
            break
        while time.monotonic() - started < index / rate:
            producer.poll(0.001)
        message = messages[index]
        now = time.time_ns() // 1_000_000
        message.timestamp = now
        # Keyed by transaction id here only to find the confirmation: partitioned by account as the service does.
        producer.produce(topic, message.SerializeToString(), message.transaction_id.encode(),
                         partition=message.user_id % 3, headers=event_time_header(now), on_delivery=on_delivery)
        producer.poll(0)
    producer.flush(30)
    return confirmed


def _memory_mb(pgid: int) -> tuple[float, float]:
    """Resident memory (MB) of the JVMs and of the Python processes of process group ``pgid``."""
    jvm = python = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) != pgid:
                continue
            rss = int(fields[21]) * 4096 / 1e6
            command = (stat.parent / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            if command.endswith("java"):
                jvm += rss
            elif "python" in command:
                python += rss
    return jvm, python


@contextlib.contextmanager
def _sampling(pgid: int) -> Iterator[list[tuple[float, float]]]:
    samples: list[tuple[float, float]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(1.0):
            samples.append(_memory_mb(pgid))

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        stop.set()
        thread.join()


def latency(bootstrap: str, cache: Path, work: Path, messages: list[TransactionRequest],
            warm_up: list[TransactionRequest], *, rate: float, seconds: float, lateness_ms: int) -> dict[str, float]:
    """A live job at ``rate`` records/s: start-up, latency percentiles, peak memory.

    The job's Python workers open with its first records, which then wait seconds for them. So ``warm_up`` records
    go first, slowly, until one comes back scored (the start-up figure); the load timed is the one after it.
    """
    settings = _settings(bootstrap, cache, work, lateness_ms=lateness_ms)
    launched = time.perf_counter()
    job = ScoringJob(settings, log_path=work / f"{settings.group_id}.log")
    with job:
        tasks_running_s = time.perf_counter() - launched
        scored = _Receiver(bootstrap, settings.scored_topic, committed=True)
        alerts = _Receiver(bootstrap, settings.alerts_topic, committed=False)
        scored.start()
        alerts.start()
        with _sampling(job.pid) as memory:
            warmed = _paced(bootstrap, settings.source_topic, warm_up, _WARM_UP_RATE, len(warm_up) / _WARM_UP_RATE,
                            until=lambda: bool(scored.arrived))
            confirmed = _paced(bootstrap, settings.source_topic, messages, rate, seconds)
            deadline = time.monotonic() + 120
            while len(scored.arrived) < (len(warmed) + len(confirmed)) * 0.99 and time.monotonic() < deadline:
                time.sleep(0.5)
    # The drain released the records still waiting for a later event time; give the receivers time to see them.
    time.sleep(5.0)
    for receiver in (scored, alerts):
        receiver.stop.set()
        receiver.join()
    first_scored = min(scored.arrived.values(), default=0)
    last_confirmed = max(confirmed.values(), default=0)

    def steady(times: dict[str, int]) -> list[int]:
        """Latencies of the timed load's records confirmed at least a second before it ended (later ones waited
        for the drain, not for the job)."""
        return [at - confirmed[tid] for tid, at in times.items()
                if tid in confirmed and confirmed[tid] <= last_confirmed - 1000]

    committed, alerted = steady(scored.arrived), steady(alerts.arrived)
    first_ack = min(warmed.values(), default=0)
    return {
        "tasks_running_s": tasks_running_s, "first_scored_s": (first_scored - first_ack) / 1000,
        "published": len(warmed) + len(confirmed), "scored": len(scored.arrived), "alerts": len(alerted),
        "committed_p50": _pct(committed, 50), "committed_p99": _pct(committed, 99),
        "alert_p50": _pct(alerted, 50), "alert_p99": _pct(alerted, 99),
        "jvm_mb": max((m[0] for m in memory), default=0.0), "python_mb": max((m[1] for m in memory), default=0.0),
    }


def _pct(values: list[int], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def _median(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", help="Kafka to use [default: a local broker on free ports]")
    parser.add_argument("--accounts", type=int, default=10_000, help="accounts of the pre-filled stream")
    parser.add_argument("--days", type=float, default=30.0, help="days of the pre-filled stream")
    parser.add_argument("--rate", type=float, default=2_000.0, help="paced load, transactions/s")
    parser.add_argument("--seconds", type=float, default=60.0, help="duration of the paced load")
    parser.add_argument("--lateness-ms", type=int, default=200, help="the live job's lateness")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="small sizes, parallelism 1 only (the suite's run)")
    args = parser.parse_args()
    if args.quick:
        args.accounts, args.days, args.rate, args.seconds = 200, 3.0, 200.0, 10.0
    cache = config.cache_root()
    with tempfile.TemporaryDirectory(prefix="fraudlab-bench-detect-") as scratch, contextlib.ExitStack() as stack:
        work = Path(scratch)
        bootstrap = args.bootstrap or stack.enter_context(LocalBroker(BrokerSettings(
            port=free_port(), controller_port=free_port(), state_dir=work / "broker"), purge_on_exit=True))
        messages = _messages(args.accounts, args.days, cache, seed=11)
        # The live stream needs rate x seconds records: as many accounts as that takes at the pre-filled stream's
        # transactions per account, with a margin.
        per_account = len(messages) / args.accounts
        live = _messages(math.ceil(args.rate * args.seconds / per_account * 1.2), args.days, cache, seed=12)
        parallelisms = (1,) if args.quick else (1, 2)
        runs: dict[int, list[dict[str, float]]] = {p: [] for p in parallelisms}
        paced: list[dict[str, float]] = []
        for repeat in range(args.repeats):
            for p in parallelisms:
                runs[p].append(throughput(bootstrap, cache, work, messages, p))
                print(f"repeat {repeat + 1}: parallelism {p}: {runs[p][-1]}", flush=True)
            fresh = [replace_id(m) for m in live]
            warm_up = [replace_id(m) for m in live[:_WARM_UP_MAX]]
            paced.append(latency(bootstrap, cache, work, fresh, warm_up, rate=args.rate, seconds=args.seconds,
                                 lateness_ms=args.lateness_ms))
            print(f"repeat {repeat + 1}: paced: {paced[-1]}", flush=True)
    print(f"\nReal-time scoring, {args.repeats} repeat(s), medians; pre-filled: {len(messages):,} transactions "
          f"({args.accounts:,} accounts x {args.days:g} days); paced: {args.rate:,.0f} tx/s for {args.seconds:g} s, "
          f"lateness {args.lateness_ms} ms\n")
    print("| measure | value |\n|---|---|")
    for p in parallelisms:
        print(f"| sustained throughput, parallelism {p} (exactly-once sink) | "
              f"{_median(runs[p], 'per_second'):,.0f} tx/s (bounded job {_median(runs[p], 'run_s'):.0f} s in all) |")
    rows = [("start-up: launch -> all tasks running", "tasks_running_s", "{:.1f} s"),
            ("start-up: first publish -> first committed scored record", "first_scored_s", "{:.1f} s"),
            ("ack -> committed scored record p50", "committed_p50", "{:,.0f} ms"),
            ("ack -> committed scored record p99", "committed_p99", "{:,.0f} ms"),
            ("ack -> alert p50", "alert_p50", "{:,.0f} ms"), ("ack -> alert p99", "alert_p99", "{:,.0f} ms"),
            ("alerts timed", "alerts", "{:,.0f}"), ("scored / published (live)", "scored", "{:,.0f}"),
            ("peak JVM resident memory", "jvm_mb", "{:,.0f} MB"),
            ("peak Python workers' resident memory", "python_mb", "{:,.0f} MB")]
    for label, key, form in rows:
        value = form.format(_median(paced, key))
        if key == "scored":
            value += f" / {_median(paced, 'published'):,.0f}"
        print(f"| {label} | {value} |")


def replace_id(message: TransactionRequest) -> TransactionRequest:
    """A copy with a fresh transaction id: each repeat's live records are new ones."""
    copy = TransactionRequest()
    copy.CopyFrom(message)
    copy.transaction_id = str(uuid.uuid4())
    return copy


if __name__ == "__main__":
    main()
