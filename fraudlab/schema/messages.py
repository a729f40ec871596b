"""Protobuf ``TransactionRequest`` messages: building them, and their bytes on Kafka.

The Kafka topic carries exactly the serialized ``fraud.TransactionRequest``
of the wire contract (``proto/fraud/v1/fraud.proto``), so any consumer with
the schema can decode it. Records are keyed by ``user_id`` so that one user's
transactions land in one partition, in order.

These are the generated stubs' message objects (what gRPC sends). The table
conversion itself is :mod:`fraudlab.schema.wire`'s, which also serves the
Flink venv, where the stubs do not import; this module parses its bytes.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from fraudlab.schema.proto.fraud_pb2 import IngestionResponse, TransactionBatch, TransactionRequest
from fraudlab.schema.wire import TRANSACTION_FIELDS, encode_transaction_batch, encode_transactions

__all__ = [
    "TRANSACTION_FIELDS",
    "IngestionResponse",
    "TransactionRequest",
    "decode_transaction",
    "encode_transaction",
    "now_millis",
    "transaction_from_mapping",
    "transaction_key",
    "transaction_to_dict",
    "transactions_batch",
    "transactions_from_table",
    "user_id_from_account",
]


def now_millis() -> int:
    """The current time as epoch milliseconds, the unit of ``TransactionRequest.timestamp``."""
    return time.time_ns() // 1_000_000


def transaction_from_mapping(values: Mapping[str, Any]) -> TransactionRequest:
    """Build a message from a mapping (a dict or a DataFrame row) keyed by proto field names.

    Keys that are not fields of the contract are ignored, so a canonical
    table row with extra columns (``step``, ``name_orig``...) converts directly.
    Values are coerced to the field's type (numpy scalars included), as
    :func:`fraudlab.schema.wire.encode_transactions` coerces a table's columns.
    """
    row = pd.DataFrame({name: [values[name]] for name in TRANSACTION_FIELDS if name in values})
    return decode_transaction(encode_transactions(row)[0])


def transaction_to_dict(message: TransactionRequest) -> dict[str, Any]:
    """Every contract field of ``message`` (defaults included), keyed by field name."""
    return {name: getattr(message, name) for name in TRANSACTION_FIELDS}


def transaction_key(message: TransactionRequest) -> bytes:
    """The Kafka record key: the decimal ``user_id``, keeping a user's records in one partition."""
    return str(message.user_id).encode()


def encode_transaction(message: TransactionRequest) -> bytes:
    """The Kafka record value: the message's protobuf wire bytes."""
    return message.SerializeToString()


def decode_transaction(payload: bytes) -> TransactionRequest:
    """Parse a Kafka record value back into a message."""
    message = TransactionRequest()
    message.ParseFromString(payload)
    return message


def user_id_from_account(account: str) -> int:
    """The numeric ``user_id`` of a PaySim account name (``C1231006815`` -> 1231006815)."""
    digits = re.sub(r"\D", "", str(account))
    if not digits:
        raise ValueError(f"Account name {account!r} has no digits to derive a user_id from.")
    return int(digits)


def transactions_batch(
    table: pd.DataFrame, *, transaction_ids: Sequence[str], user_ids: Sequence[int], timestamp: int | None = None
) -> TransactionBatch:
    """The one table -> protobuf converter: a ``TransactionBatch`` with one message per canonical-table row.

    Column-wise (:func:`fraudlab.schema.wire.encode_transaction_batch` serializes
    every row at once, then the batch is parsed in one call), so it keeps up with
    a streaming producer. Contract fields the table lacks keep their proto
    default; extra columns are ignored. ``timestamp`` stamps every row alike;
    without it each row keeps its own ``timestamp`` column (event time, as
    account streams carry it).
    """
    if timestamp is None and "timestamp" not in table.columns:
        raise ValueError("transactions_batch needs timestamp= or a 'timestamp' column (epoch milliseconds)")
    stamps = {} if timestamp is None else {"timestamp": timestamp}
    rows = table.assign(transaction_id=list(transaction_ids), user_id=list(user_ids), **stamps)
    return TransactionBatch.FromString(encode_transaction_batch(rows))


def transactions_from_table(table: pd.DataFrame, *, timestamp: int | None = None) -> list[TransactionRequest]:
    """Turn canonical-table rows into messages stamped with a fresh UUID and ``timestamp`` (default: now).

    ``user_id`` comes from the table's ``user_id`` column when it has one,
    otherwise from the digits of the origin account ``name_orig``.
    """
    stamp = now_millis() if timestamp is None else timestamp
    users = (table["user_id"].astype(int).tolist() if "user_id" in table.columns
             else [user_id_from_account(name) for name in table["name_orig"]])
    ids = [str(uuid.uuid4()) for _ in range(len(table))]
    return list(transactions_batch(table, transaction_ids=ids, user_ids=users, timestamp=stamp).transactions)
