"""How fraudlab's Kafka clients connect: layered client settings, and patience with a fresh broker.

Configuration is built in layers, safest first: durable defaults
(``acks=all``, idempotence, compression), then the caller's overrides, then
the bootstrap servers. librdkafka's own log lines go to Python logging under
``fraudlab.librdkafka``.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from confluent_kafka import KafkaError, KafkaException

from fraudlab.exceptions import KafkaTimeoutError

__all__ = ["LIBRDKAFKA_LOGGER", "PRODUCER_DEFAULTS", "consumer_config", "producer_config", "retry_transient"]

PRODUCER_DEFAULTS: Mapping[str, Any] = {
    "acks": "all",
    "enable.idempotence": True,
    "compression.type": "lz4",
    "linger.ms": 5,
}

# librdkafka's own log lines go to Python logging under this name; without a logger they are printed straight to
# stderr, through any progress bar or notebook cell. On a fresh broker it reports routine start-up states
# (coordinator load in progress, leader not yet elected) as warnings and retries them itself, so only errors are
# shown unless a caller lowers the level (the CLI does with --debug).
LIBRDKAFKA_LOGGER = logging.getLogger("fraudlab.librdkafka")
LIBRDKAFKA_LOGGER.setLevel(logging.ERROR)

# Answers a broker gives while a topic is still being created or a partition's leader is being elected (a fresh
# broker does both for a second or so after CreateTopics returned); asking again shortly after succeeds.
_TRANSIENT_ERRORS = frozenset({
    KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE, KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError.REQUEST_TIMED_OUT, KafkaError.NOT_CONTROLLER, KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError._TIMED_OUT, KafkaError._TRANSPORT, KafkaError._UNKNOWN_PARTITION, KafkaError._UNKNOWN_TOPIC,
})
_RETRY_FIRST_PAUSE_S = 0.05
_RETRY_MAX_PAUSE_S = 1.0
_T = TypeVar("_T")


def _is_transient(error: KafkaError) -> bool:
    return error.code() in _TRANSIENT_ERRORS or error.retriable()


def retry_transient(query: Callable[[], _T], *, what: str, bootstrap: str, timeout: float) -> _T:
    """Run ``query`` until it succeeds, retrying transient Kafka errors with backoff for up to ``timeout`` s.

    Raises:
        KafkaTimeoutError: the query still failed transiently at the deadline; the message says what was asked.
    """
    deadline = time.monotonic() + timeout
    pause = _RETRY_FIRST_PAUSE_S
    while True:
        try:
            return query()
        except KafkaException as exc:
            error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
            if error is None or not _is_transient(error):
                raise
            if time.monotonic() + pause > deadline:
                raise KafkaTimeoutError(
                    f"Kafka at {bootstrap} did not answer {what} within {timeout:g} s (last answer: {error.str()}); "
                    "check that the broker is running (`fraudlab broker status`) and try again."
                ) from exc
        time.sleep(pause)
        pause = min(pause * 2, _RETRY_MAX_PAUSE_S)


def producer_config(bootstrap: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Durable producer settings: defaults, then ``overrides``, then the bootstrap servers."""
    return {**PRODUCER_DEFAULTS, "logger": LIBRDKAFKA_LOGGER, **(overrides or {}), "bootstrap.servers": bootstrap}


def consumer_config(
    bootstrap: str, *, group_id: str | None = None, from_beginning: bool = True,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Consumer settings; a fresh random group id unless one is given, so reads never steal offsets."""
    return {
        "group.id": group_id or f"fraudlab-reader-{uuid.uuid4().hex[:12]}",
        "auto.offset.reset": "earliest" if from_beginning else "latest",
        "enable.auto.commit": False,
        "logger": LIBRDKAFKA_LOGGER,
        **(overrides or {}),
        "bootstrap.servers": bootstrap,
    }
