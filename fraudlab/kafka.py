"""Thin, typed helpers over confluent-kafka for the ``raw_transactions`` topic.

Configuration is built in layers, safest first: durable defaults
(``acks=all``, idempotence, compression), then the caller's overrides, then
the bootstrap servers. A publish call returns only after Kafka confirmed
every record, and raises if any record was not delivered: nothing is reported
as sent that is not in the topic.

:class:`AsyncPublisher` is the same promise for an asyncio server: it queues
records without blocking the event loop and hands back a :class:`Delivery`
that completes when Kafka confirmed (or refused) every one of them.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from fraudlab.exceptions import FraudlabError
from fraudlab.messages import TransactionRequest, decode_transaction, encode_transaction, transaction_key

__all__ = [
    "DEFAULT_TOPIC",
    "PUBLISHER_DEFAULTS",
    "AsyncPublisher",
    "Delivery",
    "KafkaPublishError",
    "KafkaTimeoutError",
    "KafkaUnavailableError",
    "consume_transactions",
    "consumer_config",
    "end_offsets",
    "ensure_topic",
    "producer_config",
    "publish_transactions",
]

DEFAULT_TOPIC = "raw_transactions"

PRODUCER_DEFAULTS: Mapping[str, Any] = {
    "acks": "all",
    "enable.idempotence": True,
    "compression.type": "lz4",
    "linger.ms": 5,
}


class KafkaPublishError(FraudlabError):
    """Raised when Kafka did not confirm every record of a publish call."""


class KafkaUnavailableError(KafkaPublishError):
    """Raised when no broker can be reached, so a record is refused before it is queued."""


class KafkaTimeoutError(FraudlabError):
    """Raised when Kafka kept answering a metadata or offset query with a transient error until the deadline."""


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


def _retry_transient(query: Callable[[], _T], *, what: str, bootstrap: str, timeout: float) -> _T:
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


def ensure_topic(bootstrap: str, topic: str = DEFAULT_TOPIC, *, partitions: int = 3, timeout: float = 30.0) -> bool:
    """Create ``topic`` if it does not exist; return True when this call created it.

    Returns only once every partition of the topic has a leader: a broker
    answers CreateTopics before it has elected them, and an offset query in
    that gap fails with NOT_LEADER_FOR_PARTITION.

    Raises:
        KafkaTimeoutError: the topic had no leader for every partition within ``timeout`` seconds.
    """
    if partitions < 1:
        raise FraudlabError(f"Invalid partitions {partitions!r} for topic {topic!r}: it must be at least 1.")
    admin = AdminClient({"bootstrap.servers": bootstrap, "logger": LIBRDKAFKA_LOGGER})
    deadline = time.monotonic() + timeout
    created = False
    if topic not in _list_topics(admin, bootstrap, timeout).topics:
        future = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])[topic]
        try:
            future.result(timeout=timeout)
            created = True
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    _wait_for_leaders(admin, bootstrap, topic, max(deadline - time.monotonic(), 1.0))
    return created


def _list_topics(client: AdminClient | Consumer, bootstrap: str, timeout: float, topic: str | None = None) -> Any:
    """Cluster metadata (of one ``topic``, or all), asking again while the broker answers transiently."""
    return _retry_transient(lambda: client.list_topics(topic, timeout=timeout), what="a metadata request",
                            bootstrap=bootstrap, timeout=timeout)


def _wait_for_leaders(admin: AdminClient, bootstrap: str, topic: str, timeout: float) -> None:
    """Block until every partition of ``topic`` reports a leader and no error."""

    def leaders_elected() -> None:
        metadata = admin.list_topics(topic, timeout=timeout).topics.get(topic)
        if metadata is None:
            raise KafkaException(KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART))
        if metadata.error is not None:
            raise KafkaException(metadata.error)
        if not metadata.partitions:
            raise KafkaException(KafkaError(KafkaError.LEADER_NOT_AVAILABLE))
        for partition in metadata.partitions.values():
            if partition.error is not None:
                raise KafkaException(partition.error)
            if partition.leader < 0:
                raise KafkaException(KafkaError(KafkaError.LEADER_NOT_AVAILABLE))

    _retry_transient(leaders_elected, what=f"whether every partition of {topic!r} has a leader",
                     bootstrap=bootstrap, timeout=timeout)


def publish_transactions(
    bootstrap: str, messages: Iterable[TransactionRequest], *, topic: str = DEFAULT_TOPIC,
    timeout: float = 30.0, overrides: Mapping[str, Any] | None = None,
) -> int:
    """Publish ``messages`` keyed by ``user_id``; return how many Kafka confirmed.

    Raises:
        KafkaPublishError: any record failed or was still unconfirmed after ``timeout`` seconds.
    """
    producer = Producer(producer_config(bootstrap, overrides))
    failures: list[str] = []
    confirmed = 0

    def on_delivery(error: KafkaError | None, _record: object) -> None:
        nonlocal confirmed
        if error is None:
            confirmed += 1
        else:
            failures.append(error.str())

    sent = 0
    for message in messages:
        while True:
            try:
                producer.produce(topic, encode_transaction(message), transaction_key(message), on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.1)
        sent += 1
        producer.poll(0)
    unconfirmed = producer.flush(timeout)
    if failures or unconfirmed:
        raise KafkaPublishError(
            f"Kafka confirmed {confirmed} of {sent} records on topic {topic!r} at {bootstrap}; "
            f"{len(failures)} failed ({'; '.join(sorted(set(failures))[:3]) or 'no error reported'}), "
            f"{unconfirmed} still unconfirmed after {timeout:.0f} s."
        )
    return confirmed


def end_offsets(bootstrap: str, topic: str = DEFAULT_TOPIC, *, timeout: float = 10.0) -> dict[int, int]:
    """The next offset of every partition of ``topic``: where records published from now on will start.

    Transient answers (a partition still electing its leader) are asked
    again until ``timeout`` seconds have passed.

    Raises:
        KafkaTimeoutError: Kafka still answered transiently at the deadline.
    """
    consumer = Consumer(consumer_config(bootstrap))

    def watermarks() -> dict[int, int]:
        metadata = consumer.list_topics(topic, timeout=timeout).topics[topic]
        if metadata.error is not None:
            raise KafkaException(metadata.error)
        return {
            partition: consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout)[1]
            for partition in sorted(metadata.partitions)
        }

    try:
        return _retry_transient(watermarks, what=f"the end offsets of {topic!r}", bootstrap=bootstrap,
                                timeout=timeout)
    finally:
        consumer.close()


def consume_transactions(
    bootstrap: str, *, topic: str = DEFAULT_TOPIC, max_messages: int | None = None, timeout: float = 10.0,
    from_beginning: bool = True, start_offsets: Mapping[int, int] | None = None, group_id: str | None = None,
) -> list[TransactionRequest]:
    """Read and decode up to ``max_messages`` records; stop early after ``timeout`` idle seconds.

    With ``start_offsets`` (partition -> offset, e.g. from :func:`end_offsets`
    taken before publishing) exactly those positions are read, with no
    consumer-group rebalance; otherwise the topic is subscribed from the
    beginning or the end.
    """
    consumer = Consumer(consumer_config(bootstrap, group_id=group_id, from_beginning=from_beginning))
    if start_offsets is None:
        consumer.subscribe([topic])
    else:
        consumer.assign([TopicPartition(topic, partition, offset) for partition, offset in start_offsets.items()])
    received: list[TransactionRequest] = []
    try:
        while max_messages is None or len(received) < max_messages:
            want = 500 if max_messages is None else min(500, max_messages - len(received))
            batch = consumer.consume(num_messages=want, timeout=timeout)
            if not batch:
                break
            for record in batch:
                if record.error():
                    raise KafkaException(record.error())
                received.append(decode_transaction(record.value()))
    finally:
        consumer.close()
    return received


# --------------------------------------------------------------------------- asyncio publishing

_BUSY_POLL_S = 0.001
_IDLE_POLL_S = 0.25
_PROBE_INTERVAL_S = 0.5
_PROBE_TIMEOUT_S = 1.0
PUBLISHER_DEFAULTS: Mapping[str, Any] = {
    # A server waits on every acknowledgement, so batching records for 5 ms costs latency it does not need:
    # under load librdkafka fills batches while earlier requests are in flight anyway.
    "linger.ms": 1,
    "queue.buffering.max.messages": 500_000,
}
_log = logging.getLogger("fraudlab.kafka")


class Delivery:
    """Kafka's verdict on one group of records published together, awaitable on the event loop.

    :attr:`future` completes once every record was confirmed or refused;
    :attr:`failed_ids` then names the ``transaction_id`` of each refused one.
    """

    __slots__ = ("_failures", "confirmed", "error", "expected", "failed_ids", "future", "last")

    def __init__(self, future: asyncio.Future[None], expected: int) -> None:
        self.future = future
        self.expected = expected
        self.confirmed = 0
        self.failed_ids: frozenset[str] = frozenset()
        self.error: str | None = None
        self.last: Message | None = None
        self._failures: list[tuple[bytes, str]] = []

    def on_delivery(self, error: KafkaError | None, message: Message) -> None:
        """librdkafka's delivery report for one record (served by ``poll`` on the event loop)."""
        if error is None:
            self.confirmed += 1
            self.last = message
        else:
            self._failures.append((message.value(), error.str()))
        if self.confirmed + len(self._failures) == self.expected:
            self._settle()

    def refuse(self, payloads: list[tuple[bytes, str]]) -> None:
        """Count records librdkafka would not even queue as refused."""
        self._failures.extend(payloads)
        if self.confirmed + len(self._failures) == self.expected:
            self._settle()

    def _settle(self) -> None:
        if self._failures:
            self.failed_ids = frozenset(decode_transaction(value).transaction_id for value, _ in self._failures)
            self.error = "; ".join(sorted({reason for _, reason in self._failures})[:3])
        if not self.future.done():
            self.future.set_result(None)


class AsyncPublisher:
    """Publish transactions from an asyncio event loop and await Kafka's confirmation.

    Everything happens on the event loop's thread: ``produce_batch`` only
    queues, and the loop serves librdkafka's delivery reports itself with
    ``poll(0)`` every millisecond while records are outstanding (every
    quarter second when idle). A poll thread would have to win the GIL back
    from the loop for every report, which costs more than the polling.

    The publisher also tracks whether a broker is reachable: after librdkafka
    reports all brokers down and a metadata probe confirms it,
    :meth:`publish` refuses new records at once with
    :class:`KafkaUnavailableError` instead of queueing them behind a dead link.
    Records already queued stay queued and are delivered (once: the producer
    is idempotent) when the broker returns, or fail after ``message.timeout.ms``.

    Args:
        bootstrap: Kafka bootstrap servers.
        topic: where records go.
        overrides: librdkafka settings layered over :func:`producer_config`'s defaults.
        on_availability: called on the event loop with True/False when the
            broker becomes reachable/unreachable.
    """

    def __init__(
        self, bootstrap: str, topic: str = DEFAULT_TOPIC, *, overrides: Mapping[str, Any] | None = None,
        on_availability: Callable[[bool], None] | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.available = True
        self._overrides = {**PUBLISHER_DEFAULTS, **(overrides or {})}
        self._on_availability = on_availability
        self._producer: Producer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tick: asyncio.TimerHandle | None = None
        self._busy = False
        self._suspect_down = False
        self._probe: asyncio.Task[None] | None = None
        self._last_probe = 0.0

    # ---- lifecycle
    def open(self) -> None:
        """Create the producer and start serving its reports (call on the event loop that awaits deliveries)."""
        self._loop = asyncio.get_running_loop()
        config = producer_config(self.bootstrap, self._overrides)
        config["error_cb"] = self._on_error
        self._producer = Producer(config)
        self._schedule(busy=False)

    async def close(self, timeout: float = 30.0) -> int:
        """Wait up to ``timeout`` s for outstanding records; return how many Kafka still had not confirmed."""
        producer = self._producer
        if producer is None:
            return 0
        if self._tick is not None:
            self._tick.cancel()
        if self._probe is not None:
            self._probe.cancel()
        deadline = time.monotonic() + timeout
        while len(producer) and time.monotonic() < deadline:
            producer.poll(0)
            await asyncio.sleep(_BUSY_POLL_S * 5)
        remaining = len(producer)
        if remaining:
            # Give up on them explicitly (their deliveries fail) rather than leave librdkafka to wait at exit.
            producer.purge(in_queue=True, in_flight=True, blocking=False)
            producer.poll(0)
        self._producer = None
        return remaining

    # ---- publishing
    def publish(self, records: list[dict[str, bytes]]) -> Delivery:
        """Queue ``records`` (dicts with ``value`` and ``key``) and return their :class:`Delivery`.

        Raises:
            KafkaUnavailableError: no broker is reachable right now; nothing was queued.
        """
        if self._producer is None or self._loop is None:
            raise KafkaPublishError("The publisher is not open: call open() on the event loop first.")
        if not self.available:
            raise KafkaUnavailableError(
                f"Kafka at {self.bootstrap} is unreachable (all brokers down); nothing was published, retry later."
            )
        delivery = Delivery(self._loop.create_future(), len(records))
        queued = self._producer.produce_batch(self.topic, records, on_delivery=delivery.on_delivery) if records else 0
        if queued < len(records):
            delivery.refuse([(r["value"], str(r["_error"])) for r in records if "_error" in r])
        elif not records:
            delivery.refuse([])
        if not self._busy:
            self._schedule(busy=True)
        return delivery

    # ---- serving librdkafka on the loop
    def _schedule(self, *, busy: bool) -> None:
        if self._tick is not None:
            self._tick.cancel()
        assert self._loop is not None
        self._busy = busy
        self._tick = self._loop.call_later(_BUSY_POLL_S if busy else _IDLE_POLL_S, self._serve)

    def _serve(self) -> None:
        producer = self._producer
        if producer is None:
            return
        producer.poll(0)
        if self._suspect_down or not self.available:
            self._start_probe()
        self._schedule(busy=len(producer) > 0)

    def _on_error(self, error: KafkaError) -> None:
        """librdkafka's global error callback (served by ``poll``)."""
        if error.code() == KafkaError._ALL_BROKERS_DOWN:
            self._suspect_down = True
        _log.warning("Kafka at %s: %s", self.bootstrap, error.str())

    def _start_probe(self) -> None:
        now = time.monotonic()
        if (self._probe is not None and not self._probe.done()) or now - self._last_probe < _PROBE_INTERVAL_S:
            return
        self._last_probe = now
        self._suspect_down = False
        self._probe = asyncio.ensure_future(self._run_probe())

    async def _run_probe(self) -> None:
        """Ask for metadata on a worker thread; its answer decides whether the broker counts as reachable."""
        producer = self._producer
        if producer is None:
            return
        try:
            await asyncio.to_thread(producer.list_topics, self.topic, timeout=_PROBE_TIMEOUT_S)
            reachable = True
        except KafkaException:
            reachable = False
        if reachable != self.available:
            self.available = reachable
            if self._on_availability is not None:
                self._on_availability(reachable)
