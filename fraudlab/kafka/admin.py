"""Kafka administration: topics that exist and have leaders, and where each partition ends."""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from fraudlab import config
from fraudlab.exceptions import InvalidParameterError
from fraudlab.kafka.connection import LIBRDKAFKA_LOGGER, consumer_config, retry_transient

__all__ = ["end_offsets", "ensure_topic"]


def ensure_topic(
    bootstrap: str, topic: str = config.TOPIC, *, partitions: int = config.TOPIC_PARTITIONS, timeout: float = 30.0
) -> bool:
    """Create ``topic`` if it does not exist; return True when this call created it.

    Returns only once every partition of the topic has a leader: a broker
    answers CreateTopics before it has elected them, and an offset query in
    that gap fails with NOT_LEADER_FOR_PARTITION.

    Raises:
        KafkaTimeoutError: the topic had no leader for every partition within ``timeout`` seconds.
    """
    if partitions < 1:
        raise InvalidParameterError(f"Invalid partitions {partitions!r} for topic {topic!r}: it must be at least 1.")
    admin = AdminClient({"bootstrap.servers": bootstrap, "logger": LIBRDKAFKA_LOGGER})
    deadline = time.monotonic() + timeout
    created = False
    listed = retry_transient(lambda: admin.list_topics(timeout=timeout), what="a metadata request",
                             bootstrap=bootstrap, timeout=timeout)
    if topic not in listed.topics:
        future = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])[topic]
        try:
            future.result(timeout=timeout)
            created = True
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    _wait_for_leaders(admin, bootstrap, topic, max(deadline - time.monotonic(), 1.0))
    return created


def _topic_metadata(client: AdminClient | Consumer, topic: str, timeout: float) -> Any:
    """The metadata of ``topic``, raising its error (a topic not yet known counts as one) for retry_transient."""
    metadata = client.list_topics(topic, timeout=timeout).topics.get(topic)
    if metadata is None:
        raise KafkaException(KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART))
    if metadata.error is not None:
        raise KafkaException(metadata.error)
    return metadata


def _wait_for_leaders(admin: AdminClient, bootstrap: str, topic: str, timeout: float) -> None:
    """Block until every partition of ``topic`` reports a leader and no error."""

    def leaders_elected() -> None:
        partitions = _topic_metadata(admin, topic, timeout).partitions
        if not partitions:
            raise KafkaException(KafkaError(KafkaError.LEADER_NOT_AVAILABLE))
        for partition in partitions.values():
            if partition.error is not None:
                raise KafkaException(partition.error)
            if partition.leader < 0:
                raise KafkaException(KafkaError(KafkaError.LEADER_NOT_AVAILABLE))

    retry_transient(leaders_elected, what=f"whether every partition of {topic!r} has a leader",
                    bootstrap=bootstrap, timeout=timeout)


def end_offsets(bootstrap: str, topic: str = config.TOPIC, *, timeout: float = 10.0) -> dict[int, int]:
    """The next offset of every partition of ``topic``: where records published from now on will start.

    Transient answers (a partition still electing its leader) are asked
    again until ``timeout`` seconds have passed.

    Raises:
        KafkaTimeoutError: Kafka still answered transiently at the deadline.
    """
    consumer = Consumer(consumer_config(bootstrap))

    def watermarks() -> dict[int, int]:
        partitions = _topic_metadata(consumer, topic, timeout).partitions
        return {
            partition: consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout)[1]
            for partition in sorted(partitions)
        }

    try:
        return retry_transient(watermarks, what=f"the end offsets of {topic!r}", bootstrap=bootstrap,
                                timeout=timeout)
    finally:
        consumer.close()
