"""Helpers of the ingestion service's integration tests (a transaction, reading a topic, a stub, a producer)."""

from __future__ import annotations

import threading
import uuid

import grpc

from fraudlab.ingest.client import ProducerSettings, ProduceSummary, produce
from fraudlab.kafka.admin import end_offsets
from fraudlab.kafka.reader import consume_transactions
from fraudlab.schema.messages import TransactionRequest, now_millis
from fraudlab.schema.proto import fraud_pb2_grpc

__all__ = ["produce_in_background", "read_all", "stub", "tx"]


def tx(**overrides: object) -> TransactionRequest:
    values: dict[str, object] = dict(
        transaction_id=str(uuid.uuid4()), user_id=1_231_006_815, amount=9839.64, timestamp=now_millis(),
        is_fraud=False, type="PAYMENT", old_balance_orig=170_136.0, new_balance_orig=160_296.36,
        old_balance_dest=0.0, new_balance_dest=0.0, is_unauthorized_overdraft=0.0,
    )
    values.update(overrides)
    return TransactionRequest(**values)


def read_all(bootstrap: str, topic: str) -> list[TransactionRequest]:
    """Every record of ``topic``, read from offset 0 up to the current end of each partition."""
    ends = end_offsets(bootstrap, topic)
    total = sum(ends.values())
    if total == 0:
        return []
    return consume_transactions(bootstrap, topic=topic, start_offsets=dict.fromkeys(ends, 0), max_messages=total)


def stub(target: str, credentials: grpc.ChannelCredentials | None = None) -> fraud_pb2_grpc.FraudIngestionStub:
    channel = grpc.secure_channel(target, credentials) if credentials else grpc.insecure_channel(target)
    return fraud_pb2_grpc.FraudIngestionStub(channel)


def produce_in_background(settings: ProducerSettings, acknowledged: set[str]) -> tuple[threading.Thread, dict]:
    outcome: dict[str, ProduceSummary | BaseException] = {}

    def run() -> None:
        try:
            outcome["summary"] = produce(settings, on_accepted=lambda ms: acknowledged.update(
                m.transaction_id for m in ms))
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="test-producer")
    thread.start()
    return thread, outcome
