"""Read ``raw_transactions`` back: decoded protobuf records as a DataFrame, or as a printed table.

Reading uses a fresh consumer group each time and commits nothing, so it
never moves anybody else's offsets: it is an inspection tool, not a
processing stage.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from fraudlab.kafka import DEFAULT_TOPIC, consume_transactions
from fraudlab.messages import TRANSACTION_FIELDS, transaction_to_dict

__all__ = ["SHOWN_COLUMNS", "format_transactions", "read_transactions_frame"]

SHOWN_COLUMNS: tuple[str, ...] = (
    "transaction_id", "user_id", "type", "amount", "old_balance_orig", "new_balance_orig", "is_fraud", "timestamp",
)


def read_transactions_frame(
    bootstrap: str, *, topic: str = DEFAULT_TOPIC, max_messages: int | None = 20, from_beginning: bool = False,
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
    shown = frame[[c for c in columns if c in frame.columns]].copy()
    stamps = pd.to_datetime(shown["timestamp"], unit="ms", utc=True)
    shown["timestamp"] = stamps.dt.strftime("%Y-%m-%d %H:%M:%S.%f").str[:-3]
    return shown.to_string(index=False, float_format=lambda v: f"{v:,.2f}")
