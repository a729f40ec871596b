"""``make demo``: the main job on embedded defaults.

Today it proves the Kafka spine end to end: bring up the local broker,
publish real PaySim transactions (from the bundled rows) as protobuf
``TransactionRequest`` records to ``raw_transactions``, read exactly those
records back and print them.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import pandas as pd

from fraudlab.broker import BrokerSettings, LocalBroker
from fraudlab.data import load_reference
from fraudlab.kafka import consume_transactions, end_offsets, ensure_topic, publish_transactions
from fraudlab.messages import transaction_to_dict, transactions_from_table

__all__ = ["run_demo"]

_SHOWN_COLUMNS = ["transaction_id", "user_id", "type", "amount", "old_balance_orig", "new_balance_orig", "is_fraud"]


def run_demo(
    settings: BrokerSettings | None = None, *, bootstrap: str | None = None, count: int = 5,
    topic: str = "raw_transactions", echo: Callable[[str], None] = print,
) -> pd.DataFrame:
    """Publish ``count`` real transactions and return what was read back (also printed through ``echo``).

    With ``bootstrap`` unset the local broker is started (or the running one
    reused); a broker started here is stopped again before returning.
    """
    broker = contextlib.nullcontext(bootstrap) if bootstrap else LocalBroker(settings)
    with broker as servers:
        echo(f"Kafka at {servers}; topic {topic!r}")
        ensure_topic(servers, topic)
        rows = load_reference().sample.head(count)
        messages = transactions_from_table(rows)
        start = end_offsets(servers, topic)
        began = time.perf_counter()
        confirmed = publish_transactions(servers, messages, topic=topic)
        received = consume_transactions(servers, topic=topic, start_offsets=start, max_messages=len(messages))
        elapsed = time.perf_counter() - began
    order = {m.transaction_id: i for i, m in enumerate(messages)}
    ours = sorted((m for m in received if m.transaction_id in order), key=lambda m: order[m.transaction_id])
    read_back = pd.DataFrame([transaction_to_dict(m) for m in ours])
    echo(f"Published {len(messages)} transactions, Kafka confirmed {confirmed}, read back {len(read_back)} "
         f"in {elapsed:.2f} s:")
    if not read_back.empty:
        echo(read_back[_SHOWN_COLUMNS].to_string(index=False))
    return read_back
