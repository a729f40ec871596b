"""The real-time scoring job: ``raw_transactions`` → decode → dedup → features → score → ``scored_transactions``,
``fraud_alerts`` and a dead-letter topic, on Apache Flink through PyFlink.

Imported only in the Flink venv (``.venv-flink``): run as ``python -m fraudlab.detect.flink_job SETTINGS_JSON``
(a local MiniCluster) or submitted with ``flink run``. Its shape follows what was measured on this machine
(``docs/realtime.md``): per-key state lives in the JVM (the feature declarations as Flink SQL ``OVER`` windows,
:func:`fraudlab.detect.features.flink_sql`), Python only runs in Arrow-batched (pandas) functions.

* **Event time.** The publisher puts each transaction's event time in the ``event_time`` record header; the source
  derives the rowtime from it (falling back to the Kafka timestamp for records written by others), so Kafka's
  source keeps one watermark per partition and a partition read ahead of another makes nothing late.
* **Decode** with :mod:`fraudlab.schema.wire` (descriptor-built classes: this venv's protobuf cannot load the stubs)
  and enrich with GeoIP in the same batch; a record that does not decode goes to the dead-letter topic with why.
* **Dedup** by ``transaction_id``, first seen wins (Flink's processing-time deduplication: insert-only, so the
  event-time windows downstream keep their rowtime).
* **Late records** (behind the watermark: more than ``lateness_ms`` behind the newest event time of the stream) are
  dropped by the windows and counted in Flink's ``numLateRecordsDropped`` metric, which
  :meth:`fraudlab.detect.realtime.ScoringJob.late_records` reads: give a replay a lateness that matches its speed.
* **Score** with the ONNX detector; alerts also get their top reasons. The detector in use is replaced, without a
  restart, by the newest one announced on ``model_updates`` (:meth:`Detector.to_bytes`), and every scored record
  names the version that scored it.
* **Exactly once** for ``scored_transactions``: checkpoints plus Kafka transactions. ``fraud_alerts`` is
  at-least-once, so an alert is visible without waiting for a checkpoint; a repeat after a failure carries the same
  ``transaction_id``.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

import numpy as np
import pandas as pd

from fraudlab.detect import features as feature_definition
from fraudlab.detect.model import Detector
from fraudlab.detect.scoring_job import ScoringJobSettings
from fraudlab.infra.flink import METRICS_OPTIONS
from fraudlab.infra.process import stop_requested
from fraudlab.schema import wire

__all__ = ["build_job", "main"]

#: Transaction fields the feature query passes through untouched so the scored record carries the whole transaction.
CARRIED = ("is_fraud", "is_unauthorized_overdraft", "device_id")
#: The columns the decode step hands to SQL: the feature inputs, the carried fields, and why a record was refused.
_DECODED_TYPES = {
    **{name: "STRING" for name in ("transaction_id", "type", "ip_address", "ip_country", "device_id", "error")},
    **{name: "BIGINT" for name in ("timestamp", "user_id", "dest_user_id", "ip_asn", "amount_cents")},
    **{name: "DOUBLE" for name in ("amount", "old_balance_orig", "new_balance_orig", "old_balance_dest",
                                   "new_balance_dest", "ip_latitude", "ip_longitude", "is_unauthorized_overdraft")},
    **{name: "BOOLEAN" for name in ("dest_is_merchant", "ip_hosting", "is_fraud")},
}
DECODED_COLUMNS: tuple[str, ...] = (*feature_definition.INPUT_COLUMNS, *feature_definition.ENRICHMENT_COLUMNS,
                                    "amount_cents", *CARRIED, "error")
_MODEL_POLL_S = 0.5
#: Written by each instance of the job's Python functions once open (worker started, GeoIP or the model loaded);
#: PyFlink opens them with the first records they receive, not when the job starts.
WORKER_READY = "fraudlab-detect: worker ready:"
_STATUS_POLL_S = 1.0


def _report(line: str) -> None:
    """One line on the job's output from a Python worker: ``print`` there is PyFlink's, which takes no ``flush``
    (on a cluster the call fails the task), so the stream is written directly."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


class DecodeTransactions:
    """Arrow batches of record values → feature inputs (GeoIP-enriched) and a refusal reason per record."""

    def __init__(self, geoip_dir: str) -> None:
        self.geoip_dir = geoip_dir
        self._geoip: Any = None

    def open(self) -> None:
        from pathlib import Path

        from fraudlab.enrich.geoip import GeoIP

        self._geoip = GeoIP.open(Path(self.geoip_dir))

    def close(self) -> None:
        if self._geoip is not None:
            self._geoip.close()

    def eval(self, payloads: pd.Series) -> pd.DataFrame:
        decoded = wire.decode_transactions(list(payloads))
        inputs = feature_definition.feature_inputs(decoded.transactions, geoip=self._geoip)
        frame = inputs[[*feature_definition.INPUT_COLUMNS, *feature_definition.ENRICHMENT_COLUMNS, "amount_cents"]]
        frame = frame.assign(type=inputs["type"].astype(str),
                             **{name: decoded.transactions[name].to_numpy() for name in CARRIED},
                             error=decoded.errors)
        return frame[list(DECODED_COLUMNS)]


class ModelFollower:
    """The detector in use, replaced by each valid one announced on the model-updates topic after an offset.

    A thread reads the topic; the scoring function swaps between batches, so one batch is scored by one version.
    An announcement that does not verify, or was built for other features, is reported on stderr and ignored.
    """

    def __init__(self, settings: ScoringJobSettings) -> None:
        self.settings = settings
        self.detector = Detector.load(settings.model)
        self._pending: Detector | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="fraudlab-model-updates", daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        from confluent_kafka import Consumer, TopicPartition

        consumer = Consumer({"bootstrap.servers": self.settings.bootstrap,
                             "group.id": f"{self.settings.group_id}-models", "enable.auto.commit": False,
                             "allow.auto.create.topics": False})
        try:
            consumer.assign([TopicPartition(self.settings.model_updates_topic, 0, self.settings.model_updates_offset)])
            while not self._stop.is_set():
                message = consumer.poll(_MODEL_POLL_S)
                if message is None or message.error():
                    continue
                self._offer(message.value())
        finally:
            consumer.close()

    def _offer(self, payload: bytes) -> None:
        try:
            candidate = Detector.from_bytes(payload)
        except Exception as exc:  # a bad announcement must never stop the stream: report it and keep scoring
            _report(f"fraudlab-detect: ignored a model announcement: {exc}")
            return
        if candidate.feature_schema != self.detector.feature_schema:
            _report(f"fraudlab-detect: ignored model {candidate.version}: built for other features")
            return
        with self._lock:
            self._pending = candidate

    def current(self) -> Detector:
        with self._lock:
            if self._pending is not None:
                self.detector, self._pending = self._pending, None
                _report(f"fraudlab-detect: now scoring with model {self.detector.version}")
        return self.detector

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class ScoreTransactions:
    """Arrow batches of feature-query rows → (account key, ScoredTransaction bytes, alert flag)."""

    def __init__(self, settings: ScoringJobSettings, columns: tuple[str, ...]) -> None:
        self.settings = settings
        self.columns = columns
        self._models: ModelFollower | None = None

    def open(self) -> None:
        self._models = ModelFollower(self.settings)

    def close(self) -> None:
        if self._models is not None:
            self._models.close()

    def eval(self, rows: pd.DataFrame) -> pd.DataFrame:
        assert self._models is not None, "open() was not called"
        detector = self._models.current()
        rows.columns = list(self.columns)
        inputs = rows[[*feature_definition.INPUT_COLUMNS, *feature_definition.ENRICHMENT_COLUMNS, "amount_cents"]]
        inputs = inputs.assign(type=pd.Categorical(inputs["type"], categories=feature_definition.TRANSACTION_TYPES))
        x = detector.feature_matrix(feature_definition.finish(inputs, rows[list(feature_definition.RAW_COLUMNS)]))
        scores = detector.score_matrix(x)
        alert = scores >= detector.threshold
        reasons: list[tuple[str, ...]] = [()] * len(rows)
        if alert.any():
            for index, why in zip(np.flatnonzero(alert), detector.reasons(x[alert]), strict=True):
                reasons[index] = why
        transactions = rows[[name for name in wire.TRANSACTION_FIELDS if name in rows.columns]]
        values = wire.encode_scored(transactions, scores, alert, detector.version, reasons, time.time_ns() // 1_000_000)
        return pd.DataFrame({"account": rows["user_id"].astype(str).to_numpy(), "value": values, "alert": alert})


class DeadLetters:
    """Arrow batches of refused records → DeadLetter bytes (the value byte for byte, why, and where it was)."""

    def __init__(self, topic: str) -> None:
        self.topic = topic

    def eval(self, payloads: pd.Series, reasons: pd.Series, partitions: pd.Series, offsets: pd.Series) -> pd.Series:
        return pd.Series(wire.encode_dead_letters(list(payloads), list(reasons), topic=self.topic,
                                                  partition=partitions.to_numpy(), offset=offsets.to_numpy()))


def _kafka_options(settings: ScoringJobSettings, topic: str, **extra: str) -> str:
    options = {"connector": "kafka", "topic": topic, "properties.bootstrap.servers": settings.bootstrap, **extra}
    return ", ".join(f"'{key}' = '{value}'" for key, value in options.items())


def _sink_options(settings: ScoringJobSettings, topic: str, *, exactly_once: bool) -> str:
    guarantee = {"sink.delivery-guarantee": "exactly-once",
                 "sink.transactional-id-prefix": f"{settings.transactional_id_prefix}-{topic}",
                 # Flink's default (1 h) exceeds the broker's maximum (15 min): the job would restart-loop silently.
                 "properties.transaction.timeout.ms": "600000"} if exactly_once else {
                 "sink.delivery-guarantee": "at-least-once"}
    return _kafka_options(settings, topic, **{"key.format": "raw", "key.fields": "account", "value.format": "raw",
                                              "value.fields-include": "EXCEPT_KEY", **guarantee})


def _interval(ms: int) -> str:
    """A SQL interval literal of ``ms`` milliseconds (``SECOND`` alone allows two digits: 99 s at most)."""
    days, rest = divmod(ms, 86_400_000)
    hours, rest = divmod(rest, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"INTERVAL '{days} {hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}' DAY TO SECOND(3)"


def _register_tables(t_env: Any, settings: ScoringJobSettings) -> None:
    bounded = {"scan.bounded.mode": "latest-offset"} if settings.bounded else {}
    source = _kafka_options(settings, settings.source_topic, **{
        "properties.group.id": settings.group_id, "properties.isolation.level": "read_committed",
        "scan.startup.mode": "group-offsets", "properties.auto.offset.reset": "earliest", "value.format": "raw",
        **bounded})
    t_env.execute_sql(f"""CREATE TEMPORARY TABLE raw_records (
        payload BYTES,
        kafka_partition INT METADATA FROM 'partition' VIRTUAL,
        kafka_offset BIGINT METADATA FROM 'offset' VIRTUAL,
        kafka_time TIMESTAMP_LTZ(3) METADATA FROM 'timestamp' VIRTUAL,
        headers MAP<STRING, BYTES> METADATA FROM 'headers' VIRTUAL,
        event_time AS COALESCE(TO_TIMESTAMP_LTZ(CAST(CAST(headers['event_time'] AS STRING) AS BIGINT), 3),
                               kafka_time),
        proc_time AS PROCTIME(),
        WATERMARK FOR event_time AS event_time - {_interval(settings.lateness_ms)}
    ) WITH ({source})""")
    for name, exactly_once in ((settings.scored_topic, True), (settings.alerts_topic, False)):
        t_env.execute_sql(f"CREATE TEMPORARY TABLE `{name}` (account STRING, `value` BYTES) "
                          f"WITH ({_sink_options(settings, name, exactly_once=exactly_once)})")
    t_env.execute_sql(f"CREATE TEMPORARY TABLE `{settings.dead_letter_topic}` (`value` BYTES) WITH "
                      f"({_kafka_options(settings, settings.dead_letter_topic, **{'value.format': 'raw'})})")


def build_job(t_env: Any, settings: ScoringJobSettings) -> Any:
    """Register the job's tables, functions and views in ``t_env``; return its statement set (not executed)."""
    from pyflink.table import DataTypes
    from pyflink.table.udf import udf

    _register_tables(t_env, settings)
    sql_types = {"STRING": DataTypes.STRING(), "BIGINT": DataTypes.BIGINT(), "DOUBLE": DataTypes.DOUBLE(),
                 "BOOLEAN": DataTypes.BOOLEAN()}
    decoded_type = DataTypes.ROW([DataTypes.FIELD(name, sql_types[_DECODED_TYPES[name]]) for name in DECODED_COLUMNS])
    t_env.create_temporary_function("decode_transaction", udf(
        _function(DecodeTransactions(settings.geoip_dir)), result_type=decoded_type, func_type="pandas"))
    t_env.create_temporary_function("dead_letter", udf(
        _function(DeadLetters(settings.source_topic)), result_type=DataTypes.BYTES(), func_type="pandas"))
    fields = ", ".join(f"d.`{name}` AS `{name}`" for name in DECODED_COLUMNS)
    t_env.execute_sql(f"""CREATE TEMPORARY VIEW decoded AS
        SELECT {fields}, payload, kafka_partition, kafka_offset, event_time, proc_time
        FROM (SELECT decode_transaction(payload) AS d, payload, kafka_partition, kafka_offset, event_time, proc_time
              FROM raw_records)""")
    t_env.execute_sql("""CREATE TEMPORARY VIEW transactions AS SELECT * FROM (
        SELECT *, ROW_NUMBER() OVER (PARTITION BY transaction_id ORDER BY proc_time ASC) AS first_seen
        FROM decoded WHERE error = '') WHERE first_seen = 1""")
    featured = t_env.sql_query(feature_definition.flink_sql("transactions", carry=CARRIED))
    columns = tuple(featured.get_schema().get_field_names())
    scored_type = DataTypes.ROW([DataTypes.FIELD("account", DataTypes.STRING()),
                                 DataTypes.FIELD("value", DataTypes.BYTES()),
                                 DataTypes.FIELD("alert", DataTypes.BOOLEAN())])
    scored = featured.map(udf(_function(ScoreTransactions(settings, columns)), result_type=scored_type,
                              func_type="pandas"))
    t_env.create_temporary_view("scored", scored)
    statements = t_env.create_statement_set()
    statements.add_insert_sql(f"INSERT INTO `{settings.scored_topic}` SELECT account, `value` FROM scored")
    statements.add_insert_sql(f"INSERT INTO `{settings.alerts_topic}` SELECT account, `value` FROM scored "
                              "WHERE alert")
    statements.add_insert_sql(f"INSERT INTO `{settings.dead_letter_topic}` SELECT dead_letter(payload, error, "
                              "kafka_partition, kafka_offset) FROM decoded WHERE error <> ''")
    return statements


def _function(work: Any) -> Any:
    """Wrap one of the classes above as a PyFlink scalar function, so Flink calls its open/close with the worker."""
    from pyflink.table.udf import ScalarFunction

    class Adapter(ScalarFunction):
        def open(self, function_context: Any) -> None:
            if hasattr(work, "open"):
                work.open()
            # The launcher counts these lines: the job scores without a start-up pause once every function is open.
            _report(f"{WORKER_READY} {type(work).__name__}")

        def close(self) -> None:
            if hasattr(work, "close"):
                work.close()

        def eval(self, *columns: Any) -> Any:
            return work.eval(*columns)

    return Adapter()


def _environment(settings: ScoringJobSettings) -> Any:
    from pyflink.common import Configuration
    from pyflink.datastream import CheckpointingMode, StreamExecutionEnvironment
    from pyflink.table import StreamTableEnvironment

    if settings.rest_port:  # embedded: the launcher watches the MiniCluster's tasks through its REST API
        configuration = Configuration()
        for key, value in {"rest.port": str(settings.rest_port), "rest.address": "127.0.0.1",
                           "rest.bind-address": "127.0.0.1", **METRICS_OPTIONS}.items():
            configuration.set_string(key, value)
        env = StreamExecutionEnvironment.get_execution_environment(configuration)
    else:  # bounded, or submitted by `flink run`: the environment of the context
        env = StreamExecutionEnvironment.get_execution_environment()
    env.add_jars(f"file://{settings.connector_jar}")
    env.set_parallelism(settings.parallelism)
    env.enable_checkpointing(settings.checkpoint_ms, CheckpointingMode.EXACTLY_ONCE)
    t_env = StreamTableEnvironment.create(env)
    table_config = t_env.get_config()
    for key, value in {
        "table.local-time-zone": "UTC",
        "pipeline.name": f"fraudlab-detect {settings.group_id}",
        "execution.checkpointing.storage": "filesystem",
        "execution.checkpointing.dir": settings.checkpoint_uri,
        "python.fn-execution.bundle.time": str(settings.batch_ms),
        "python.fn-execution.arrow.batch.size": "2000",
        # The dedup state must outlive the ingestion service's dedup window; the previous-transaction features
        # forget an account after the features' memory: one TTL covers both.
        "table.exec.state.ttl": f"{feature_definition.MEMORY_MS} ms",
    }.items():
        table_config.set(key, value)
    return t_env


def _run_until_stopped(client: Any, job_id: str, settings: ScoringJobSettings, stop: threading.Event) -> int:
    """Watch an unbounded job; on a stop request drain it (every buffered window emitted, the last Kafka
    transaction committed by the final savepoint), so stopping loses nothing a restart from the group offsets needs.
    """
    while not stop.wait(_STATUS_POLL_S):
        status = client.get_job_status().result()
        if status.is_globally_terminal_state():
            print(f"fraudlab-detect: job {job_id} ended {status.name}", flush=True)
            return 0 if status.name == "FINISHED" else 1
    print(f"fraudlab-detect: job {job_id} stopping (drain)", flush=True)
    savepoint = _stop_with_drain(client, settings.savepoint_uri)
    print(f"fraudlab-detect: job {job_id} stopped; savepoint {savepoint}", flush=True)
    return 0


def _stop_with_drain(client: Any, savepoint_dir: str) -> str:
    """``JobClient.stop_with_savepoint(True, dir)``, which PyFlink 2.2.1 calls with Flink 1.x's Java signature
    (no savepoint format) and so always fails: the Java method is called with the format here."""
    from pyflink.common.completable_future import CompletableFuture
    from pyflink.java_gateway import get_gateway

    canonical = get_gateway().jvm.org.apache.flink.core.execution.SavepointFormatType.CANONICAL
    return CompletableFuture(client._j_job_client.stopWithSavepoint(True, savepoint_dir, canonical), str).result()


def main(argv: list[str] | None = None) -> int:
    """Run the job described by the JSON settings in ``argv[0]``.

    Bounded, it returns when the job has read its end offsets. Unbounded, it runs until SIGTERM/SIGINT and then
    drains; ``detached`` (a cluster submission) returns once the job runs there.
    """
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m fraudlab.detect.flink_job SETTINGS_JSON", file=sys.stderr)
        return 2
    settings = ScoringJobSettings.from_json(args[0])
    stop = stop_requested()
    t_env = _environment(settings)
    result = build_job(t_env, settings).execute()
    client = result.get_job_client()
    job_id = str(client.get_job_id())
    print(f"fraudlab-detect: job {job_id} running", flush=True)
    if settings.detached:
        return 0
    if not settings.bounded:
        return _run_until_stopped(client, job_id, settings, stop)
    result.wait()
    print(f"fraudlab-detect: job {job_id} finished", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
