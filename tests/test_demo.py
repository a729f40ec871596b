"""`make demo`: real PaySim rows go through Kafka and come back unchanged."""

from __future__ import annotations

import pytest

from fraudlab.data import load_reference
from fraudlab.demo import run_demo

pytestmark = pytest.mark.kafka


def test_demo_reads_back_what_it_published(kafka_bootstrap, topic):
    lines: list[str] = []
    shown = run_demo(bootstrap=kafka_bootstrap, count=7, topic=topic, echo=lines.append)
    expected = load_reference().sample.head(7)
    assert len(shown) == 7
    assert sorted(shown["amount"]) == sorted(expected["amount"])
    assert shown["transaction_id"].nunique() == 7
    assert any("Published 7 transactions, Kafka confirmed 7, read back 7" in line for line in lines)
