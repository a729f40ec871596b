"""How decoded transactions are shown (`fraudlab consume`, the demo): no broker needed."""

from __future__ import annotations

import pandas as pd

from fraudlab.kafka.reader import format_transactions
from fraudlab.schema.messages import TransactionRequest, transaction_to_dict


def _frame(*messages: TransactionRequest) -> pd.DataFrame:
    return pd.DataFrame([transaction_to_dict(m) for m in messages])


def test_account_stream_records_show_their_destination_and_address():
    text = format_transactions(_frame(
        TransactionRequest(transaction_id="a", user_id=1, type="PAYMENT", amount=2.5, timestamp=1_767_225_600_000,
                           dest_user_id=77, ip_address="81.2.69.160"),
        TransactionRequest(transaction_id="b", user_id=2, type="CASH_IN", amount=1.0, timestamp=1_767_225_600_000),
    ))
    header, first, _ = text.splitlines()
    assert header.split()[-2:] == ["dest_user_id", "ip_address"]
    assert first.split()[-2:] == ["77", "81.2.69.160"]
    assert "2026-01-01 00:00:00.000" in first


def test_records_of_the_original_contract_are_shown_without_empty_origin_columns():
    text = format_transactions(_frame(TransactionRequest(transaction_id="a", user_id=1, type="PAYMENT",
                                                         timestamp=1_767_225_600_000)))
    assert "ip_address" not in text and "dest_user_id" not in text
    assert format_transactions(pd.DataFrame()) == "(no transactions)"
