"""The main venv's side of real-time scoring: run the Flink job (embedded or on a cluster), read what it wrote.

The job itself (:mod:`fraudlab.detect.flink_job`) runs in the Flink venv; this module starts it there as a separate
process with its settings as JSON, so nothing here imports PyFlink.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from fraudlab import config
from fraudlab.detect.scoring_job import ScoringJobSettings
from fraudlab.exceptions import FlinkError, InvalidParameterError, ServiceUnavailableError
from fraudlab.infra.flink import (
    METRICS_FETCH_MS,
    FlinkSettings,
    flink_python,
    job_metric_total,
    job_state,
    job_tasks_running,
    resolve_connector,
    stop_job,
    submit_command,
)
from fraudlab.infra.process import (
    OwnedServer,
    die_with_caller_prefix,
    free_port,
    group_alive,
    log_tail,
    terminate_group,
)
from fraudlab.kafka.admin import end_offsets, ensure_topic
from fraudlab.schema import wire

if TYPE_CHECKING:
    from fraudlab.detect.model import Detector

__all__ = ["ScoringJob", "ScoringJobError", "announce_detector", "announcements", "consumer_lag",
           "ensure_job_topics", "job_command", "model_switches", "read_committed_values", "read_dead_letters",
           "read_scored", "run_scoring_job", "start_from_now", "with_connector"]

JOB_MODULE = "fraudlab.detect.flink_job"
_LOG_LINES = 40
_RUNNING = re.compile(r"fraudlab-detect: job ([0-9a-f]{32}) running")
#: Flink's count of the records an event-time ``OVER`` window dropped because they came behind the watermark.
LATE_RECORDS_METRIC = "numLateRecordsDropped"


class ScoringJobError(FlinkError):
    """The scoring job failed or did not finish in time; the message carries the end of its output."""


def job_command(settings: ScoringJobSettings, flink: FlinkSettings, *, cluster: bool) -> list[str]:
    """The argv that runs the job: in-process on a local MiniCluster, or submitted to the standalone cluster."""
    if cluster:
        return submit_command(flink, module=JOB_MODULE, args=[settings.to_json()], detached=settings.detached)
    return [str(flink_python(flink)), "-m", JOB_MODULE, settings.to_json()]


def with_connector(settings: ScoringJobSettings, flink: FlinkSettings) -> ScoringJobSettings:
    """``settings`` with the Kafka connector jar resolved into the cache (once) when none is given."""
    if settings.connector_jar:
        return settings
    return replace(settings, connector_jar=str(resolve_connector(flink, announce=False)))


def ensure_job_topics(settings: ScoringJobSettings) -> ScoringJobSettings:
    """Create the job's topics that do not exist yet; return ``settings`` following announcements from now on.

    The model-updates topic has one partition (announcements are ordered); the others the project's default. The
    returned settings start the model follower at that topic's end, so the job scores with ``settings.model``
    until a detector is announced after it started.
    """
    for topic in (settings.source_topic, settings.scored_topic, settings.alerts_topic, settings.dead_letter_topic):
        ensure_topic(settings.bootstrap, topic)
    ensure_topic(settings.bootstrap, settings.model_updates_topic, partitions=1)
    return replace(settings, model_updates_offset=end_offsets(settings.bootstrap, settings.model_updates_topic)[0])


def start_from_now(settings: ScoringJobSettings) -> dict[int, int]:
    """Commit the job's consumer group at the source topic's end, so the job scores only what is published from now
    on (not a backlog other runs left); return those offsets."""
    ends = end_offsets(settings.bootstrap, settings.source_topic)
    consumer = Consumer({"bootstrap.servers": settings.bootstrap, "group.id": settings.group_id,
                         "enable.auto.commit": False})
    try:
        consumer.commit(offsets=[TopicPartition(settings.source_topic, partition, offset)
                                 for partition, offset in ends.items()], asynchronous=False)
    finally:
        consumer.close()
    return ends


def consumer_lag(settings: ScoringJobSettings) -> int:
    """Records of the source topic the job has not read yet, by the offsets its group committed (at checkpoints)."""
    ends = end_offsets(settings.bootstrap, settings.source_topic)
    consumer = Consumer({"bootstrap.servers": settings.bootstrap, "group.id": settings.group_id,
                         "enable.auto.commit": False})
    try:
        committed = consumer.committed([TopicPartition(settings.source_topic, p) for p in ends], timeout=10)
    finally:
        consumer.close()
    return sum(ends[c.partition] - max(c.offset, 0) for c in committed)


def announce_detector(bootstrap: str, detector: Detector, *, topic: str = config.MODEL_UPDATES_TOPIC,
                      timeout: float = 30.0) -> int:
    """Publish ``detector`` (its verified bundle) on the model-updates topic; return the announcement's offset.

    Running scoring jobs switch to it between two batches, and every record they score from then on names its
    version.

    Raises:
        ScoringJobError: Kafka did not answer, or did not confirm the announcement, within ``timeout`` seconds.
    """
    try:
        ensure_topic(bootstrap, topic, partitions=1, timeout=timeout)
    except (KafkaException, ServiceUnavailableError) as exc:
        raise ScoringJobError(f"Detector {detector.version} was not announced on {topic!r} at {bootstrap}: "
                              f"{exc}") from None
    bundle = detector.to_bytes()
    delivered: list[int] = []
    failures: list[str] = []

    def confirmed(error: KafkaError | None, message: object) -> None:
        if error is not None:
            failures.append(str(error))
        else:
            delivered.append(message.offset())  # type: ignore[attr-defined]

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                         "message.max.bytes": max(1_000_000, len(bundle) + 10_000)})
    producer.produce(topic, bundle, detector.version.encode(), partition=0, on_delivery=confirmed)
    producer.flush(timeout)
    if not delivered:
        reason = failures[0] if failures else f"no confirmation within {timeout:g} s"
        raise ScoringJobError(f"Detector {detector.version} was not announced on {topic!r} at {bootstrap}: {reason}")
    return delivered[0]


def run_scoring_job(settings: ScoringJobSettings, flink: FlinkSettings | None = None, *, cluster: bool = False,
                    timeout: float = 600.0) -> str:
    """Run a bounded job (``settings.bounded``) to its end and return its output.

    Raises:
        InvalidParameterError: the settings are not bounded (an unbounded job never returns).
        ScoringJobError: the job failed or was still running after ``timeout`` seconds.
    """
    if not settings.bounded:
        raise InvalidParameterError("run_scoring_job runs a job to its end: give bounded=True settings.")
    flink = flink or FlinkSettings()
    command = job_command(with_connector(settings, flink), flink, cluster=cluster)
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise ScoringJobError(f"The scoring job was still running after {timeout:.0f} s; output:\n"
                              f"{_tail(exc.stdout, exc.stderr)}") from None
    if completed.returncode != 0:
        raise ScoringJobError(f"The scoring job failed (exit {completed.returncode}):\n"
                              f"{_tail(completed.stdout, completed.stderr)}")
    return completed.stdout


class ScoringJob(OwnedServer):
    """A live (unbounded) scoring job owned by a ``with`` block: running on entry, drained and gone on exit.

    Embedded, the job is a process of its own running a MiniCluster (with its REST API on a free port); it counts as
    started once all its tasks run, their Python workers started, and stopping sends it SIGTERM,
    on which it drains (:func:`fraudlab.detect.flink_job.main`). With ``cluster`` the same job is submitted detached
    to the standalone cluster ``flink`` describes; it counts as started once all its tasks run there, and stopping
    drains it through the REST API. Either way every record read before the stop is scored and committed, and the
    group offsets let the next job carry on where this one ended. The job's output goes to ``log_path`` (by
    default ``<group id>.log`` beside the checkpoint directory).

    >>> with ScoringJob(settings) as job_id:
    ...     ...  # produce to settings.source_topic, read settings.scored_topic
    """

    def __init__(self, settings: ScoringJobSettings, flink: FlinkSettings | None = None, *, cluster: bool = False,
                 timeout: float = 180.0, log_path: Path | None = None) -> None:
        super().__init__()
        self.flink = flink or FlinkSettings()
        self.settings = replace(settings, bounded=False, detached=cluster,
                                rest_port=0 if cluster else free_port(config.FLINK_HOST))
        #: Where the job's tasks are seen: the cluster's REST API, or the embedded MiniCluster's.
        self.rest = self.flink if cluster else replace(self.flink, host=config.FLINK_HOST,
                                                       rest_port=self.settings.rest_port)
        self.cluster = cluster
        self.timeout = timeout
        self.log_path = log_path or Path(settings.checkpoint_dir).parent / f"{settings.group_id}.log"
        self.job_id: str | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return self.job_id or ""

    @property
    def pid(self) -> int | None:
        """The job's process (embedded: the MiniCluster with its Python workers in its process group)."""
        return self._process.pid if self._process is not None else None

    def _launch(self) -> bool:
        settings = with_connector(self.settings, self.flink)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        start = self.log_path.stat().st_size if self.log_path.exists() else 0
        prefix = [] if self.cluster else die_with_caller_prefix()
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen([*prefix, *job_command(settings, self.flink, cluster=self.cluster)],
                                             stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                             start_new_session=True)
        try:
            self.job_id = self._wait_running(start)
            if self.cluster:  # the detached submission has returned, or is about to
                self._process.wait(timeout=self.timeout)
        except BaseException:
            self._end_process()
            raise
        return False

    def _wait_running(self, start: int) -> str:
        """The job's id once all its tasks run (their Python workers started), seen through the REST API."""
        assert self._process is not None
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            with self.log_path.open("rb") as log:
                log.seek(start)
                output = log.read().decode(errors="replace")
            found = _RUNNING.search(output)
            if found is not None and job_tasks_running(self.rest, found.group(1)):
                return found.group(1)
            if self._process.poll() is not None and not (self.cluster and self._process.returncode == 0):
                raise ScoringJobError(f"The scoring job exited with code {self._process.returncode} before it ran. "
                                      f"Last lines of {self.log_path}:\n{log_tail(self.log_path, _LOG_LINES)}")
            time.sleep(0.2)
        raise ScoringJobError(f"The scoring job was not running after {self.timeout:g} s. Last lines of "
                              f"{self.log_path}:\n{log_tail(self.log_path, _LOG_LINES)}")

    def state(self) -> str | None:
        """The job's state (``RUNNING``, ``RESTARTING``...); None once it is gone."""
        if not self.cluster and (self._process is None or self._process.poll() is not None):
            return None
        return job_state(self.rest, self.job_id) if self.job_id else None

    def late_records(self) -> int | None:
        """How many times the job's windows have dropped a record as later than ``lateness_ms`` (Flink's
        ``numLateRecordsDropped`` over every operator and subtask); None once the job is gone. 0 means none was
        dropped; a late record counts once in each chain of window levels that dropped it.

        The REST API fetches the tasks' metrics when asked, at most every :data:`METRICS_FETCH_MS`, and answers with
        what it had: the count is asked for, then asked again once a fetch has had time to land (about 1.5 s), so it
        covers every record the job had processed when this was called.
        """
        if self.job_id is None or self.state() is None:
            return None
        job_metric_total(self.rest, self.job_id, LATE_RECORDS_METRIC)
        time.sleep(METRICS_FETCH_MS / 1000 + 0.5)
        return job_metric_total(self.rest, self.job_id, LATE_RECORDS_METRIC)

    def _shutdown(self, purge: bool) -> None:
        if self.cluster and self.job_id is not None:
            stop_job(self.flink, self.job_id, savepoint_dir=self.settings.savepoint_uri, timeout=self.timeout)
        elif self._process is not None and self._process.poll() is None:
            os.kill(self._process.pid, signal.SIGTERM)
            try:
                self._process.wait(timeout=self.timeout)
            except subprocess.TimeoutExpired:
                self._end_process()
                raise ScoringJobError(f"The scoring job had not drained after {self.timeout:g} s and was killed; "
                                      "the next job rescores from the last committed offsets. Last lines of "
                                      f"{self.log_path}:\n{log_tail(self.log_path, _LOG_LINES)}") from None
        self._end_process()

    def _end_process(self) -> None:
        """Make sure the job's process and its Python workers are gone (after a drain they already are)."""
        if self._process is not None:
            pid = self._process.pid
            terminate_group(pid, lambda: group_alive(pid), 10.0)
            self._process.wait()
            self._process = None


def _tail(*outputs: str | bytes | None) -> str:
    lines: list[str] = []
    for output in outputs:
        if output:
            text = output.decode(errors="replace") if isinstance(output, bytes) else output
            lines.extend(text.splitlines())
    return "\n".join(lines[-_LOG_LINES:])


def read_committed_values(bootstrap: str, topic: str, *, timeout_s: float = 60.0,
                          start: Mapping[int, int] | None = None) -> list[bytes]:
    """Every committed record value of ``topic`` (from ``start`` offsets, default the beginning), partition by
    partition, each read to its end (read-committed, as consumers should: the end is the last stable offset).

    A quiet moment is not the end: a loaded broker can pause for seconds between fetches, so each partition is read
    until the broker reports its end, however long that takes within ``timeout_s`` for the whole topic.

    Raises:
        TimeoutError: a partition's end was not reached within ``timeout_s`` (the records read are not returned:
            a partial read must not pass for the whole topic).
    """
    return [message.value() for message in _read_committed(bootstrap, topic, timeout_s=timeout_s, start=start)]


def _read_committed(bootstrap: str, topic: str, *, timeout_s: float, start: Mapping[int, int] | None = None,
                    ) -> list[Message]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "fraudlab-read", "enable.auto.commit": False,
                         "isolation.level": "read_committed", "enable.partition.eof": True})
    deadline = time.monotonic() + timeout_s
    messages: list[Message] = []
    try:
        metadata = consumer.list_topics(topic, timeout=min(timeout_s, 10.0)).topics[topic]
        for partition in sorted(metadata.partitions):
            consumer.assign([TopicPartition(topic, partition, (start or {}).get(partition, 0))])
            messages.extend(_read_to_end(consumer, deadline, f"{topic!r} partition {partition}", timeout_s))
    finally:
        consumer.close()
    return messages


def _read_to_end(consumer: Consumer, deadline: float, what: str, timeout_s: float) -> list[Message]:
    """The records of the one assigned partition up to the end the broker reports (``_PARTITION_EOF``)."""
    messages: list[Message] = []
    while (remaining := deadline - time.monotonic()) > 0:
        message = consumer.poll(min(remaining, 1.0))
        if message is None:
            continue
        error = message.error()
        if error is None:
            messages.append(message)
        elif error.code() == KafkaError._PARTITION_EOF:
            return messages
    raise TimeoutError(f"Reading {what}: its end was not reached within {timeout_s:g} s ({len(messages):,} records "
                       "read); is the broker up? Pass a longer timeout_s for a large topic.")


def announcements(bootstrap: str, topic: str = config.MODEL_UPDATES_TOPIC, *, timeout_s: float = 60.0,
                  ) -> pd.DataFrame:
    """The detectors announced on a model-updates topic, in order: offset, detector version (the record key, as
    :func:`announce_detector` writes it; a record without one is shown as ``None``) and when Kafka took it
    (``announced_ms``, epoch ms), the moment the hot-reload bound counts from."""
    rows = [{"offset": message.offset(), "detector": message.key().decode() if message.key() else None,
             "announced_ms": message.timestamp()[1]} for message in _read_committed(bootstrap, topic,
                                                                                   timeout_s=timeout_s)]
    return pd.DataFrame(rows, columns=["offset", "detector", "announced_ms"])


def model_switches(scored: pd.DataFrame) -> pd.DataFrame:
    """The model versions of scored records in the order the job took them up: for each, how many records it
    scored and its first and last ``scored_at`` (epoch ms). One row per version when every switch was clean (no
    record of an older version scored after a newer one's first)."""
    by_version = scored.groupby("model_version", sort=False)["scored_at"]
    table = pd.DataFrame({"records": by_version.size(), "first_scored_ms": by_version.min(),
                          "last_scored_ms": by_version.max()})
    return table.sort_values("first_scored_ms").rename_axis("model_version").reset_index()


def read_scored(bootstrap: str, topic: str, *, timeout_s: float = 60.0,
                start: Mapping[int, int] | None = None) -> pd.DataFrame:
    """The committed records of a scored (or alerts) topic, decoded: transaction columns, score, version, reasons."""
    return wire.decode_scored(read_committed_values(bootstrap, topic, timeout_s=timeout_s, start=start))


def read_dead_letters(bootstrap: str, topic: str, *, timeout_s: float = 60.0) -> pd.DataFrame:
    """The committed records of a dead-letter topic, decoded: the refused value, why, and where it was read."""
    return wire.decode_dead_letters(read_committed_values(bootstrap, topic, timeout_s=timeout_s))
