"""Publishing transactions to Kafka, confirmed record by record.

A publish call returns only after Kafka confirmed every record, and raises if
any record was not delivered: nothing is reported as sent that is not in the
topic. :class:`AsyncPublisher` is the same promise for an asyncio server: it
queues records without blocking the event loop and hands back a
:class:`Delivery` that completes when Kafka confirmed (or refused) every one of them.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from fraudlab import config
from fraudlab.exceptions import InvalidParameterError, KafkaPublishError, KafkaUnavailableError
from fraudlab.kafka.connection import producer_config
from fraudlab.schema.messages import TransactionRequest, decode_transaction, encode_transaction, transaction_key

__all__ = ["PUBLISHER_DEFAULTS", "AsyncPublisher", "Delivery", "PacedPublisher", "event_time_header",
           "publish_transactions"]


def event_time_header(timestamp_ms: int) -> list[tuple[str, bytes]]:
    """The record header carrying a transaction's event time (decimal epoch milliseconds).

    Not the record's Kafka timestamp: the broker's time-based retention reads that one, and would delete a replayed
    stream whose event times lie days in the past as soon as it was written.
    """
    return [(config.EVENT_TIME_HEADER, str(int(timestamp_ms)).encode())]


def publish_transactions(
    bootstrap: str, messages: Iterable[TransactionRequest], *, topic: str = config.TOPIC,
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
                producer.produce(topic, encode_transaction(message), transaction_key(message),
                                 headers=event_time_header(message.timestamp), on_delivery=on_delivery)
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



class PacedPublisher:
    """A live stream: ``messages`` published in order at ``rate`` records/s from a thread of its own, until they run
    out or :meth:`stop` is called, while the caller does something else (a training pipeline, a model switch).

    Records go out as :func:`publish_transactions` sends them (keyed by account, event-time header, Kafka's
    confirmation awaited); :meth:`stop` returns the ids Kafka confirmed, in publishing order, and raises if any record
    failed, so a caller can check that exactly those were scored.
    """

    def __init__(self, bootstrap: str, messages: list[TransactionRequest], *, topic: str, rate: float,
                 overrides: Mapping[str, Any] | None = None) -> None:
        if not rate > 0:
            raise InvalidParameterError(f"Invalid rate {rate!r}: give records per second above 0.")
        self.bootstrap, self.topic, self.rate = bootstrap, topic, float(rate)
        self._messages = messages
        self._producer = Producer(producer_config(bootstrap, overrides))
        self._stop = threading.Event()
        self._confirmed: list[tuple[int, str]] = []
        self._failures: list[str] = []
        self._thread = threading.Thread(target=self._run, name="paced-publisher", daemon=True)

    @property
    def published(self) -> int:
        """Records Kafka has confirmed so far."""
        return len(self._confirmed)

    def start(self) -> PacedPublisher:
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> list[str]:
        """Stop publishing, wait for Kafka's last confirmations; the confirmed transaction ids, in order.

        Raises:
            KafkaPublishError: a record failed, or was unconfirmed ``timeout`` seconds after the stop.
        """
        self._stop.set()
        self._thread.join(timeout)
        unconfirmed = self._producer.flush(timeout)
        if self._failures or unconfirmed:
            raise KafkaPublishError(
                f"Kafka confirmed {len(self._confirmed)} records on topic {self.topic!r} at {self.bootstrap}; "
                f"{len(self._failures)} failed ({'; '.join(sorted(set(self._failures))[:3]) or 'none'}), "
                f"{unconfirmed} still unconfirmed after {timeout:.0f} s.")
        return [transaction_id for _, transaction_id in sorted(self._confirmed)]

    def __enter__(self) -> PacedPublisher:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        if self._thread.is_alive() or not self._stop.is_set():
            self.stop()

    def _run(self) -> None:
        started = time.monotonic()
        for index, message in enumerate(self._messages):
            if self._stop.wait(max(0.0, started + index / self.rate - time.monotonic())):
                break
            self._producer.produce(self.topic, encode_transaction(message), transaction_key(message),
                                   headers=event_time_header(message.timestamp),
                                   on_delivery=functools.partial(self._on_delivery, index, message.transaction_id))
            self._producer.poll(0)
        self._producer.flush(30.0)

    def _on_delivery(self, index: int, transaction_id: str, error: KafkaError | None, _record: object) -> None:
        if error is None:
            self._confirmed.append((index, transaction_id))
        else:
            self._failures.append(error.str())


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
_log = logging.getLogger(__name__)


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
        self, bootstrap: str, topic: str = config.TOPIC, *, overrides: Mapping[str, Any] | None = None,
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
    def publish(self, records: list[dict[str, Any]]) -> Delivery:
        """Queue ``records`` (dicts with ``value``, ``key`` and ``timestamp``) and return their :class:`Delivery`.

        Each record carries the transaction's event time in the :data:`~fraudlab.config.EVENT_TIME_HEADER` header, so
        consumers (the Flink job) keep per-partition watermarks from record metadata without decoding the payload.

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
        refused: list[tuple[bytes, str]] = []
        # One produce() per record rather than produce_batch(): only produce() sets headers.
        for record in records:
            try:
                self._producer.produce(self.topic, record["value"], record["key"],
                                       headers=event_time_header(record["timestamp"]), on_delivery=delivery.on_delivery)
            except (BufferError, KafkaException) as exc:
                refused.append((record["value"], str(exc)))
        if refused or not records:
            delivery.refuse(refused)
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
