"""What the real-time scoring job is asked to do, shared by its launcher (main venv) and the job (Flink venv).

The launcher builds a :class:`ScoringJobSettings`, hands it to the job as one JSON argument, and the job reads it
back with :meth:`ScoringJobSettings.from_json`: one definition of every knob on both sides of the venv boundary.
Standard library only, so it imports under any Python environment.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from fraudlab import config
from fraudlab.exceptions import InvalidParameterError

__all__ = ["ScoringJobSettings"]

#: The watermark's delay is a SQL ``DAY TO SECOND`` interval, whose days have two digits.
_MAX_LATENESS_MS = 100 * 86_400_000



@dataclass(frozen=True)
class ScoringJobSettings:
    """One run of the scoring job.

    Args:
        bootstrap: Kafka's ``host:port``.
        model: the detector it starts with (its JSON manifest or directory); announcements on ``model_updates_topic``
            published after ``model_updates_offset`` replace it while it runs.
        geoip_dir: the cache directory holding the GeoIP databases (``fraudlab geoip fetch``).
        checkpoint_dir: where checkpoints go (a local directory by default).
        connector_jar: the Flink Kafka SQL connector jar ("": the launcher resolves it into the cache).
        group_id: the consumer group; also the prefix of the sink's Kafka transactions, so two jobs never share one.
        bounded: stop at the end offsets the source finds at start (benchmarks, tests) instead of running until
            stopped.
        lateness_ms: how far behind the newest event time of its partition a record may arrive and still be scored
            with complete windows (later ones are dropped by the windows, as in :class:`StreamingFeatures`).
        checkpoint_ms: the checkpoint interval: scored records become visible to read-committed readers once per
            checkpoint.
        batch_ms: the longest a record waits in a Python batch (Arrow bundle) before it is decoded or scored.
        parallelism: parallel instances of every operator.
        detached: return once the job runs (a cluster submission: the cluster keeps it, the launcher stops it
            through the REST API) instead of watching it until stopped.
        rest_port: embedded only: serve the MiniCluster's REST API on 127.0.0.1 at this port, so a launcher sees its
            tasks as it would a cluster's (0: no REST API).
    """

    bootstrap: str
    model: str
    geoip_dir: str
    checkpoint_dir: str
    connector_jar: str = ""
    group_id: str = "fraudlab-detect"
    source_topic: str = config.TOPIC
    scored_topic: str = config.SCORED_TOPIC
    alerts_topic: str = config.ALERTS_TOPIC
    dead_letter_topic: str = config.DEAD_LETTER_TOPIC
    model_updates_topic: str = config.MODEL_UPDATES_TOPIC
    model_updates_offset: int = 0
    bounded: bool = False
    lateness_ms: int = 5_000
    checkpoint_ms: int = config.FLINK_CHECKPOINT_MS
    batch_ms: int = 100
    parallelism: int = 1
    detached: bool = False
    rest_port: int = 0

    def __post_init__(self) -> None:
        problems = [f"{name}={getattr(self, name)!r} must be {rule}" for name, ok, rule in (
            ("bootstrap", bool(self.bootstrap), "host:port of a Kafka broker"),
            ("group_id", bool(self.group_id), "a non-empty consumer group"),
            ("model_updates_offset", self.model_updates_offset >= 0, ">= 0"),
            ("lateness_ms", 0 <= self.lateness_ms < _MAX_LATENESS_MS, "0 to 99 days in milliseconds"),
            ("checkpoint_ms", self.checkpoint_ms >= 100, ">= 100 milliseconds"),
            ("batch_ms", self.batch_ms >= 1, ">= 1 millisecond"),
            ("parallelism", self.parallelism >= 1, ">= 1"),
            ("rest_port", 0 <= self.rest_port <= 65535, "a port (0: none)"),
        ) if not ok]
        if problems:
            raise InvalidParameterError("Invalid scoring job settings:\n  - " + "\n  - ".join(problems))

    @property
    def transactional_id_prefix(self) -> str:
        return f"{self.group_id}-scored"

    @property
    def checkpoint_uri(self) -> str:
        return Path(self.checkpoint_dir).resolve().as_uri()

    @property
    def savepoint_uri(self) -> str:
        """Where the savepoint of a drained stop goes: beside the checkpoints."""
        return (Path(self.checkpoint_dir).resolve() / "savepoints").as_uri()

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ScoringJobSettings:
        """Read settings written by :meth:`to_json`; unknown keys are refused, naming them."""
        values = json.loads(text)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InvalidParameterError(f"Unknown scoring job settings {unknown}: expected some of {sorted(known)}.")
        return cls(**values)
