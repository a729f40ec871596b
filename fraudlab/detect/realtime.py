"""The main venv's side of real-time scoring: run the Flink job (embedded or on a cluster), read what it wrote.

The job itself (:mod:`fraudlab.detect.flink_job`) runs in the Flink venv; this module starts it there as a separate
process with its settings as JSON, so nothing here imports PyFlink.
"""

from __future__ import annotations

import subprocess
from dataclasses import replace

import pandas as pd
from confluent_kafka import Consumer, KafkaError, TopicPartition

from fraudlab.detect.scoring_job import ScoringJobSettings
from fraudlab.exceptions import FlinkError, InvalidParameterError
from fraudlab.infra.flink import FlinkSettings, flink_python, resolve_connector, submit_command
from fraudlab.schema import wire

__all__ = ["ScoringJobError", "job_command", "read_committed_values", "read_dead_letters", "read_scored",
           "run_scoring_job", "with_connector"]

JOB_MODULE = "fraudlab.detect.flink_job"
_LOG_LINES = 40


class ScoringJobError(FlinkError):
    """The scoring job failed or did not finish in time; the message carries the end of its output."""


def job_command(settings: ScoringJobSettings, flink: FlinkSettings, *, cluster: bool) -> list[str]:
    """The argv that runs the job: in-process on a local MiniCluster, or submitted to the standalone cluster."""
    if cluster:
        return submit_command(flink, module=JOB_MODULE, args=[settings.to_json()])
    return [str(flink_python(flink)), "-m", JOB_MODULE, settings.to_json()]


def with_connector(settings: ScoringJobSettings, flink: FlinkSettings) -> ScoringJobSettings:
    """``settings`` with the Kafka connector jar resolved into the cache (once) when none is given."""
    if settings.connector_jar:
        return settings
    return replace(settings, connector_jar=str(resolve_connector(flink, announce=False)))


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


def _tail(*outputs: str | bytes | None) -> str:
    lines: list[str] = []
    for output in outputs:
        if output:
            text = output.decode(errors="replace") if isinstance(output, bytes) else output
            lines.extend(text.splitlines())
    return "\n".join(lines[-_LOG_LINES:])


def read_committed_values(bootstrap: str, topic: str, *, idle_s: float = 2.0) -> list[bytes]:
    """Every committed record value of ``topic``, partition by partition (read-committed, as consumers should)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "fraudlab-read", "enable.auto.commit": False,
                         "isolation.level": "read_committed", "enable.partition.eof": True})
    values: list[bytes] = []
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics[topic]
        for partition in sorted(metadata.partitions):
            consumer.assign([TopicPartition(topic, partition, 0)])
            while (message := consumer.poll(idle_s)) is not None:
                error = message.error()
                if error is not None and error.code() == KafkaError._PARTITION_EOF:
                    break
                if error is None:
                    values.append(message.value())
    finally:
        consumer.close()
    return values


def read_scored(bootstrap: str, topic: str, *, idle_s: float = 2.0) -> pd.DataFrame:
    """The committed records of a scored (or alerts) topic, decoded: transaction columns, score, version, reasons."""
    return wire.decode_scored(read_committed_values(bootstrap, topic, idle_s=idle_s))


def read_dead_letters(bootstrap: str, topic: str, *, idle_s: float = 2.0) -> pd.DataFrame:
    """The committed records of a dead-letter topic, decoded: the refused value, why, and where it was read."""
    return wire.decode_dead_letters(read_committed_values(bootstrap, topic, idle_s=idle_s))
