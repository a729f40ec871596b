"""Read ``raw_transactions`` back: decoded protobuf records as a DataFrame, or as a printed table.

Reading uses a fresh consumer group each time and commits nothing, so it
never moves anybody else's offsets: it is an inspection tool, not a
processing stage.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
from confluent_kafka import Consumer, KafkaException, TopicPartition

from fraudlab import config
from fraudlab.kafka.connection import consumer_config
from fraudlab.schema.messages import TRANSACTION_FIELDS, TransactionRequest, decode_transaction, transaction_to_dict

__all__ = ["SHOWN_COLUMNS", "consume_transactions", "format_transactions", "read_transactions_frame"]

SHOWN_COLUMNS: tuple[str, ...] = (
    "transaction_id", "user_id", "type", "amount", "old_balance_orig", "new_balance_orig", "is_fraud", "timestamp",
)
#: Origin and destination fields of account streams, shown when some record carries them (older clients leave them
#: at their defaults, and a column of zeros and blanks would only take room).
_ACCOUNT_COLUMNS: tuple[str, ...] = ("dest_user_id", "ip_address")


def consume_transactions(
    bootstrap: str, *, topic: str = config.TOPIC, max_messages: int | None = None, timeout: float = 10.0,
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


def read_transactions_frame(
    bootstrap: str, *, topic: str = config.TOPIC, max_messages: int | None = 20, from_beginning: bool = False,
    timeout: float = 10.0, start_offsets: Mapping[int, int] | None = None,
) -> pd.DataFrame:
    """Up to ``max_messages`` decoded transactions, one row each, columns named after the proto fields.

    Without ``from_beginning`` only records published after the call started
    are read (like ``kafka-console-consumer``); reading stops after ``timeout``
    idle seconds. ``start_offsets`` reads exactly from those positions instead.
    """
    messages = consume_transactions(bootstrap, topic=topic, max_messages=max_messages, timeout=timeout,
                                    from_beginning=from_beginning, start_offsets=start_offsets)
    return pd.DataFrame([transaction_to_dict(m) for m in messages], columns=list(TRANSACTION_FIELDS))


def format_transactions(frame: pd.DataFrame, *, columns: tuple[str, ...] = SHOWN_COLUMNS) -> str:
    """A plain-text table of ``frame`` (the columns people look at first), or a note when it is empty."""
    if frame.empty:
        return "(no transactions)"
    carried = [c for c in _ACCOUNT_COLUMNS if c in frame.columns and c not in columns and frame[c].astype(bool).any()]
    shown = frame[[c for c in (*columns, *carried) if c in frame.columns]].copy()
    stamps = pd.to_datetime(shown["timestamp"], unit="ms", utc=True)
    shown["timestamp"] = stamps.dt.strftime("%Y-%m-%d %H:%M:%S.%f").str[:-3]
    return shown.to_string(index=False, float_format=lambda v: f"{v:,.2f}")
