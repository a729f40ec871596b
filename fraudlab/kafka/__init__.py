"""The client side of Kafka: topics (admin), confirmed publishing (publisher), and reading back (reader).

Everything here talks to a real broker through confluent-kafka; the records
are the serialized ``fraud.TransactionRequest`` of ``fraudlab.schema``.
"""

from fraudlab.kafka.admin import end_offsets, ensure_topic
from fraudlab.kafka.connection import PRODUCER_DEFAULTS, consumer_config, producer_config
from fraudlab.kafka.publisher import PUBLISHER_DEFAULTS, AsyncPublisher, Delivery, publish_transactions
from fraudlab.kafka.reader import consume_transactions, format_transactions, read_transactions_frame

__all__ = [
    "PRODUCER_DEFAULTS",
    "PUBLISHER_DEFAULTS",
    "AsyncPublisher",
    "Delivery",
    "consume_transactions",
    "consumer_config",
    "end_offsets",
    "ensure_topic",
    "format_transactions",
    "producer_config",
    "publish_transactions",
    "read_transactions_frame",
]
