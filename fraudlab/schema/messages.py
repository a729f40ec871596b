"""Protobuf ``TransactionRequest`` messages: building them, and their bytes on Kafka.

The Kafka topic carries exactly the serialized ``fraud.TransactionRequest``
of the wire contract (``proto/fraud/v1/fraud.proto``), so any consumer with
the schema can decode it. Records are keyed by ``user_id`` so that one user's
transactions land in one partition, in order.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from fraudlab.schema.proto.fraud_pb2 import IngestionResponse, TransactionBatch, TransactionRequest

if TYPE_CHECKING:
    import pandas as pd

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

TRANSACTION_FIELDS: tuple[str, ...] = tuple(f.name for f in TransactionRequest.DESCRIPTOR.fields)
_MONEY_FIELDS = ("amount", "old_balance_orig", "new_balance_orig", "old_balance_dest", "new_balance_dest")


def now_millis() -> int:
    """The current time as epoch milliseconds, the unit of ``TransactionRequest.timestamp``."""
    return time.time_ns() // 1_000_000


def transaction_from_mapping(values: Mapping[str, Any]) -> TransactionRequest:
    """Build a message from a mapping (a dict or a DataFrame row) keyed by proto field names.

    Keys that are not fields of the contract are ignored, so a canonical
    table row with extra columns (``step``, ``name_orig``...) converts directly.
    Values are coerced to the field's type (numpy scalars included).
    """
    kwargs: dict[str, Any] = {}
    for field in TransactionRequest.DESCRIPTOR.fields:
        if field.name not in values:
            continue
        value = values[field.name]
        if field.type in (field.TYPE_DOUBLE, field.TYPE_FLOAT):
            kwargs[field.name] = float(value)
        elif field.type in (field.TYPE_INT64, field.TYPE_INT32):
            kwargs[field.name] = int(value)
        elif field.type == field.TYPE_BOOL:
            kwargs[field.name] = bool(value)
        else:
            kwargs[field.name] = str(value)
    return TransactionRequest(**kwargs)


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


#: Contract fields a table may carry beyond the money columns, with the proto default a missing column gets.
_OPTIONAL_FIELDS: tuple[tuple[str, type, object], ...] = (
    ("type", str, ""), ("is_fraud", bool, False), ("is_unauthorized_overdraft", float, 0.0),
    ("ip_address", str, ""), ("dest_user_id", int, 0), ("dest_is_merchant", bool, False), ("device_id", str, ""),
)


def transactions_batch(
    table: pd.DataFrame, *, transaction_ids: Sequence[str], user_ids: Sequence[int], timestamp: int | None = None
) -> TransactionBatch:
    """The one table -> protobuf converter: a ``TransactionBatch`` with one message per canonical-table row.

    Column-wise (each column converted once, then one ``add`` per row), so it
    keeps up with a streaming producer. Contract fields the table lacks keep
    their proto default; extra columns are ignored. ``timestamp`` stamps every
    row alike; without it each row keeps its own ``timestamp`` column (event
    time, as account streams carry it).
    """
    count = len(table)

    def column(name: str, kind: type, default: object) -> list[Any]:
        return table[name].astype(kind).tolist() if name in table.columns else [default] * count

    if timestamp is None and "timestamp" not in table.columns:
        raise ValueError("transactions_batch needs timestamp= or a 'timestamp' column (epoch milliseconds)")
    stamps = [timestamp] * count if timestamp is not None else column("timestamp", int, 0)
    money = [column(name, float, 0.0) for name in _MONEY_FIELDS]
    types, frauds, overdrafts, addresses, dests, merchants, devices = (column(*spec) for spec in _OPTIONAL_FIELDS)
    batch = TransactionBatch()
    add = batch.transactions.add
    for i, (amount, old_orig, new_orig, old_dest, new_dest) in enumerate(zip(*money, strict=True)):
        add(transaction_id=transaction_ids[i], user_id=user_ids[i], amount=amount, timestamp=stamps[i],
            is_fraud=frauds[i], type=types[i], old_balance_orig=old_orig, new_balance_orig=new_orig,
            old_balance_dest=old_dest, new_balance_dest=new_dest, is_unauthorized_overdraft=overdrafts[i],
            ip_address=addresses[i], dest_user_id=dests[i], dest_is_merchant=merchants[i], device_id=devices[i])
    return batch


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
