"""`make demo`: transactions stream through the gRPC service into Kafka and come back, each exactly once."""

from __future__ import annotations

import re

import pytest

from fraudlab.demo import check_read_back, run_demo
from fraudlab.exceptions import ReadBackMismatchError
from fraudlab.schema.table import TRANSACTION_TYPES


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


def test_read_back_equal_to_the_acknowledged_ids_passes():
    check_read_back(["a", "b", "c"], ["c", "a", "b"])


@pytest.mark.parametrize(
    ("read_back", "named"),
    [
        (["a", "b"], "1 acknowledged but not in Kafka (e.g. c)"),
        (["a", "b", "c", "b"], "1 in Kafka more than once (e.g. b)"),
        (["a", "b", "c", "x"], "1 in Kafka but never acknowledged (e.g. x)"),
    ],
)
def test_any_difference_from_the_acknowledged_ids_is_an_error(read_back, named):
    with pytest.raises(ReadBackMismatchError, match=re.escape(named)):
        check_read_back(["a", "b", "c"], read_back)


def test_a_record_in_the_topic_that_nobody_acknowledged_fails_the_demo(kafka_bootstrap, topic):
    """Another writer slips a record into the topic mid-run: the demo must fail, not report success."""
    from fraudlab.ingest.client import ReferenceSource
    from fraudlab.kafka.publisher import publish_transactions
    from fraudlab.schema.messages import TransactionRequest, now_millis

    rows = ReferenceSource()
    intruder = TransactionRequest(transaction_id="intruder-1", user_id=1, amount=10.0, timestamp=now_millis(),
                                  type="PAYMENT", old_balance_orig=10.0, new_balance_orig=0.0)

    def source_with_an_intruder(n, rng):
        publish_transactions(kafka_bootstrap, [intruder], topic=topic)
        return rows(n, rng)

    with pytest.raises(ReadBackMismatchError, match=r"1 in Kafka but never acknowledged \(e\.g\. intruder-1\)"):
        run_demo(bootstrap=kafka_bootstrap, count=300, users=10, topic=topic, source=source_with_an_intruder,
                 echo=lambda _line: None)


@pytest.mark.slow
def test_the_system_demo_scores_every_acknowledged_transaction_once_and_reports_its_alerts(kafka_bootstrap, topic,
                                                                                         cache_dir):
    """`make demo`: service -> Kafka -> the Flink job (embedded) -> scored_transactions and fraud_alerts."""
    from fraudlab.demo import run_detection_demo
    from fraudlab.infra.broker import BrokerSettings

    lines: list[str] = []
    result = run_detection_demo(BrokerSettings(cache_dir=cache_dir), bootstrap=kafka_bootstrap, accounts=300,
                                days=5, count=2_500, topic=topic, echo=lines.append)
    text = "\n".join(lines)
    scored = result.scored
    assert len(scored) == len(result.acknowledged_ms) == 2_500, "the first 2,500 of the ~2,900 in event time"
    assert scored["transaction_id"].is_unique
    assert f"scored {len(scored):,} transactions, each exactly once" in text
    assert result.late_records == 0 and "0 dropped as late" in text
    flagged = result.flagged
    assert len(flagged) > 0 and flagged["reasons"].map(len).gt(0).all()
    assert result.precision == flagged["is_fraud"].mean()
    assert result.recall == flagged["is_fraud"].sum() / scored["is_fraud"].sum()
    assert f"precision {result.precision:.2f}, recall {result.recall:.2f}" in text
    assert set(result.alerts["transaction_id"]) == set(flagged["transaction_id"])
    assert len(result.alert_latency_ms()) == len(flagged) and result.warm_up_s > 0
    assert flagged.sort_values("score").iloc[-1]["transaction_id"] in text, "the top alert is shown with its reasons"
