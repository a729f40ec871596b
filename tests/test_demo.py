"""`make demo`: transactions stream through the gRPC service into Kafka and come back, each exactly once."""

from __future__ import annotations

import pytest

from fraudlab.demo import run_demo
from fraudlab.messages import TRANSACTION_TYPES

pytestmark = pytest.mark.kafka


def test_demo_streams_through_the_service_and_reads_back_every_transaction_once(kafka_bootstrap, topic):
    lines: list[str] = []
    shown = run_demo(bootstrap=kafka_bootstrap, count=2500, users=40, topic=topic, echo=lines.append)
    assert len(shown) == 2500
    assert shown["transaction_id"].nunique() == 2500
    assert set(shown["type"]) <= set(TRANSACTION_TYPES)
    assert shown["user_id"].nunique() <= 40
    text = "\n".join(lines)
    assert "sent 2,500  accepted 2,500 (0 duplicates)  rejected 0  retried 0" in text
    assert "read 2,500 records (2,500 distinct)" in text
    assert "every acknowledged transaction is in Kafka exactly once" in text
    assert "transactions/s" in text
