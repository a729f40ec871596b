"""Thin, typed helpers over confluent-kafka for the ``raw_transactions`` topic.

Configuration is built in layers, safest first: durable defaults
(``acks=all``, idempotence, compression), then the caller's overrides, then
the bootstrap servers. A publish call returns only after Kafka confirmed
every record, and raises if any record was not delivered: nothing is reported
as sent that is not in the topic.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from fraudlab.exceptions import FraudlabError
from fraudlab.messages import TransactionRequest, decode_transaction, encode_transaction, transaction_key

__all__ = [
    "DEFAULT_TOPIC",
    "KafkaPublishError",
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


def producer_config(bootstrap: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Durable producer settings: defaults, then ``overrides``, then the bootstrap servers."""
    return {**PRODUCER_DEFAULTS, **(overrides or {}), "bootstrap.servers": bootstrap}


def consumer_config(
    bootstrap: str, *, group_id: str | None = None, from_beginning: bool = True,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Consumer settings; a fresh random group id unless one is given, so reads never steal offsets."""
    return {
        "group.id": group_id or f"fraudlab-reader-{uuid.uuid4().hex[:12]}",
        "auto.offset.reset": "earliest" if from_beginning else "latest",
        "enable.auto.commit": False,
        **(overrides or {}),
        "bootstrap.servers": bootstrap,
    }


def ensure_topic(bootstrap: str, topic: str = DEFAULT_TOPIC, *, partitions: int = 3, timeout: float = 30.0) -> bool:
    """Create ``topic`` if it does not exist; return True when this call created it."""
    if partitions < 1:
        raise FraudlabError(f"Invalid partitions {partitions!r} for topic {topic!r}: it must be at least 1.")
    admin = AdminClient({"bootstrap.servers": bootstrap})
    if topic in admin.list_topics(timeout=timeout).topics:
        return False
    future = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])[topic]
    try:
        future.result(timeout=timeout)
    except KafkaException as exc:
        if exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
            return False
        raise
    return True


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
    """The next offset of every partition of ``topic``: where records published from now on will start."""
    consumer = Consumer(consumer_config(bootstrap))
    try:
        metadata = consumer.list_topics(topic, timeout=timeout).topics[topic]
        if metadata.error is not None:
            raise KafkaException(metadata.error)
        return {
            partition: consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout)[1]
            for partition in sorted(metadata.partitions)
        }
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
