"""Protobuf transactions through a real Kafka topic: every field survives, keys keep users together."""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer, TopicPartition

from fraudlab.exceptions import KafkaPublishError
from fraudlab.kafka.admin import end_offsets, ensure_topic
from fraudlab.kafka.connection import consumer_config, producer_config
from fraudlab.kafka.publisher import publish_transactions
from fraudlab.kafka.reader import consume_transactions
from fraudlab.schema.messages import TransactionRequest, decode_transaction, transaction_to_dict


def _transactions(count: int) -> list[TransactionRequest]:
    return [
        TransactionRequest(
            transaction_id=f"tx-{i:04d}", user_id=1_000_000_000 + i % 7, amount=1234.56 + i,
            timestamp=1_764_000_000_000 + i,
            is_fraud=i % 5 == 0, type=("CASH_IN", "CASH_OUT", "DEBIT", "PAYMENT", "TRANSFER")[i % 5],
            old_balance_orig=10_000.0 + i, new_balance_orig=8765.44 - i, old_balance_dest=0.5 * i,
            new_balance_dest=1235.06 + 1.5 * i, is_unauthorized_overdraft=float(i % 2),
        )
        for i in range(count)
    ]


def test_every_field_survives_a_real_topic(kafka_bootstrap, topic):
    sent = _transactions(60)
    assert publish_transactions(kafka_bootstrap, sent, topic=topic) == 60
    received = consume_transactions(kafka_bootstrap, topic=topic, max_messages=60)
    by_id = {m.transaction_id: transaction_to_dict(m) for m in received}
    assert len(received) == 60
    assert by_id == {m.transaction_id: transaction_to_dict(m) for m in sent}


def test_records_are_keyed_by_user_and_one_users_records_stay_ordered(kafka_bootstrap, topic):
    sent = _transactions(70)
    publish_transactions(kafka_bootstrap, sent, topic=topic)
    consumer = Consumer(consumer_config(kafka_bootstrap))
    consumer.assign([TopicPartition(topic, p, 0) for p in range(3)])
    partitions_of_user: dict[int, set[int]] = {}
    order_of_user: dict[int, list[str]] = {}
    try:
        records = []
        while len(records) < 70:
            batch = consumer.consume(num_messages=70, timeout=10)
            assert batch, "timed out before reading every record"
            records.extend(batch)
    finally:
        consumer.close()
    for record in records:
        message = decode_transaction(record.value())
        assert record.key() == str(message.user_id).encode()
        partitions_of_user.setdefault(message.user_id, set()).add(record.partition())
        order_of_user.setdefault(message.user_id, []).append(message.transaction_id)
    assert all(len(p) == 1 for p in partitions_of_user.values())
    for user, ids in order_of_user.items():
        assert ids == [m.transaction_id for m in sent if m.user_id == user]


def test_reading_from_end_offsets_returns_only_new_records(kafka_bootstrap, topic):
    publish_transactions(kafka_bootstrap, _transactions(10), topic=topic)
    start = end_offsets(kafka_bootstrap, topic)
    assert sum(start.values()) == 10
    newer = _transactions(3)
    for m in newer:
        m.transaction_id = "new-" + m.transaction_id
    publish_transactions(kafka_bootstrap, newer, topic=topic)
    got = consume_transactions(kafka_bootstrap, topic=topic, start_offsets=start, max_messages=10, timeout=5)
    assert sorted(m.transaction_id for m in got) == sorted(m.transaction_id for m in newer)


def test_ensure_topic_creates_once(kafka_bootstrap):
    import uuid

    name = f"created-{uuid.uuid4().hex[:8]}"
    assert ensure_topic(kafka_bootstrap, name, partitions=2) is True
    assert ensure_topic(kafka_bootstrap, name, partitions=2) is False
    assert len(end_offsets(kafka_bootstrap, name)) == 2


def test_producer_defaults_are_durable():
    config = producer_config("h:1", {"linger.ms": 50, "bootstrap.servers": "ignored:1"})
    assert config["acks"] == "all" and config["enable.idempotence"] is True
    assert config["linger.ms"] == 50 and config["bootstrap.servers"] == "h:1"


def test_unreachable_broker_is_an_error_not_a_silent_success():
    from fraudlab.infra.process import free_port

    with pytest.raises(KafkaPublishError, match=r"confirmed 0 of 2"):
        publish_transactions(f"127.0.0.1:{free_port()}", _transactions(2), topic="nowhere", timeout=3,
                             overrides={"message.timeout.ms": 2000, "log_level": 0})


def test_librdkafka_logs_go_through_python_logging_not_straight_to_stderr(caplog, capfd):
    """Its lines would otherwise tear the producer's progress bar and fill notebook cells with stderr."""
    import logging

    from fraudlab.infra.process import free_port
    from fraudlab.kafka.connection import LIBRDKAFKA_LOGGER

    assert LIBRDKAFKA_LOGGER.level == logging.ERROR  # routine start-up warnings stay quiet by default
    with caplog.at_level(logging.DEBUG, logger=LIBRDKAFKA_LOGGER.name):
        consumer = Consumer(consumer_config(f"127.0.0.1:{free_port()}", overrides={"debug": "broker"}))
        consumer.poll(1.0)
        consumer.close()
    assert any(record.name == LIBRDKAFKA_LOGGER.name for record in caplog.records)
    assert "|rdkafka#" not in capfd.readouterr().err


def test_a_paced_publisher_keeps_its_rate_and_stop_returns_exactly_what_kafka_holds(kafka_bootstrap, topic):
    import time

    from fraudlab.kafka.publisher import PacedPublisher

    sent = _transactions(1_000)
    publisher = PacedPublisher(kafka_bootstrap, sent, topic=topic, rate=100.0).start()
    time.sleep(2.0)
    published = publisher.stop()
    assert 100 <= len(published) <= 300, "about 2 s at 100 records/s, stopped long before the 1,000 ran out"
    assert published == [m.transaction_id for m in sent[:len(published)]], "in order, none skipped"
    assert sum(end_offsets(kafka_bootstrap, topic).values()) == len(published)
    received = consume_transactions(kafka_bootstrap, topic=topic, max_messages=len(published))
    assert sorted(m.transaction_id for m in received) == sorted(published)


def test_a_paced_publisher_refuses_a_rate_that_is_not_positive(kafka_bootstrap, topic):
    from fraudlab.exceptions import InvalidParameterError
    from fraudlab.kafka.publisher import PacedPublisher

    with pytest.raises(InvalidParameterError, match="Invalid rate 0"):
        PacedPublisher(kafka_bootstrap, _transactions(1), topic=topic, rate=0)
