"""What every stage agrees on: the canonical table, PaySim's accounting rules, and the wire contract.

* :mod:`~fraudlab.schema.table`: the canonical columns, their dtypes and the one table check;
* :mod:`~fraudlab.schema.rules`: PaySim's accounting rules as vectorised checks;
* :mod:`~fraudlab.schema.messages`: the one table <-> ``TransactionRequest`` converter and the Kafka record bytes;
* :mod:`~fraudlab.schema.wire`: the Kafka records (transactions, scores, dead letters) as column batches, with any
  protobuf runtime (what the Flink job uses);
* :mod:`~fraudlab.schema.proto`: the protobuf and gRPC modules generated from ``proto/`` (never edited), and the
  descriptor set ``fraud.desc`` that :mod:`~fraudlab.schema.wire` builds its classes from.

It needs numpy, pandas and protobuf only: no gRPC, no Kafka client. The names of
:mod:`~fraudlab.schema.messages` are loaded on first use: they come from the generated
stubs, which need the protobuf runtime they were generated for, so the Flink venv
(an older protobuf) can still import ``fraudlab.schema.table`` and ``fraudlab.schema.wire``.
"""

from __future__ import annotations

import importlib
from typing import Any

from fraudlab.schema.rules import RULES, check_rules, rule_pass_rates
from fraudlab.schema.table import CANONICAL_COLUMNS, TRANSACTION_TYPES, check_table, to_canonical

#: Names loaded from :mod:`fraudlab.schema.messages` when first asked for.
_FROM_MESSAGES = ("TransactionRequest", "transactions_from_table")

__all__ = [
    "CANONICAL_COLUMNS",
    "RULES",
    "TRANSACTION_TYPES",
    "TransactionRequest",
    "check_rules",
    "check_table",
    "rule_pass_rates",
    "to_canonical",
    "transactions_from_table",
]


def __getattr__(name: str) -> Any:
    if name not in _FROM_MESSAGES:
        raise AttributeError(f"module 'fraudlab.schema' has no attribute {name!r}")
    value = getattr(importlib.import_module("fraudlab.schema.messages"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_FROM_MESSAGES})
