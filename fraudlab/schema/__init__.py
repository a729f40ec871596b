"""What every stage agrees on: the canonical table, PaySim's accounting rules, and the wire contract.

* :mod:`~fraudlab.schema.table`: the canonical columns, their dtypes and the one table check;
* :mod:`~fraudlab.schema.rules`: PaySim's accounting rules as vectorised checks;
* :mod:`~fraudlab.schema.messages`: the one table <-> ``TransactionRequest`` converter and the Kafka record bytes;
* :mod:`~fraudlab.schema.proto`: the protobuf and gRPC modules generated from ``proto/`` (never edited).

It needs numpy, pandas and protobuf only: no gRPC, no Kafka client.
"""

from fraudlab.schema.messages import TransactionRequest, transactions_from_table
from fraudlab.schema.rules import RULES, check_rules, rule_pass_rates
from fraudlab.schema.table import CANONICAL_COLUMNS, TRANSACTION_TYPES, check_table, to_canonical

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
