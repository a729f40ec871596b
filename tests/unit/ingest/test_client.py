"""The producer's building blocks: ids, users, batches, sources, pacing, settings, resends (no broker needed)."""

from __future__ import annotations

import asyncio
import re
import time
import uuid

import click
import grpc
import numpy as np
import pandas as pd
import pytest

from fraudlab.cli.options import parse_rate as _rate
from fraudlab.exceptions import ProducerError
from fraudlab.ingest.client import (
    ProducerSettings,
    ReferenceSource,
    build_batch,
    model_source,
    paced_batches,
    replay_batches,
    replay_schedule,
    run_blocking,
    stream_batches,
    user_pool,
    uuid4_strings,
)
from fraudlab.schema.messages import TransactionRequest
from fraudlab.schema.proto import fraud_pb2_grpc
from fraudlab.schema.proto.fraud_pb2 import BatchResponse, TransactionBatch
from fraudlab.schema.table import CANONICAL_COLUMNS

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


@pytest.fixture(scope="module")
def source() -> ReferenceSource:
    return ReferenceSource()


def test_uuid4_strings_are_valid_version_4_and_distinct():
    ids = uuid4_strings(5000)
    assert len(set(ids)) == 5000
    assert all(UUID4.match(i) for i in ids)
    assert all(uuid.UUID(i).version == 4 for i in ids[:50])
    rng_ids = uuid4_strings(3, np.random.default_rng(1))
    assert rng_ids == uuid4_strings(3, np.random.default_rng(1))


def test_user_pool_holds_distinct_ten_digit_ids():
    pool = user_pool(500, np.random.default_rng(0))
    assert len(set(pool.tolist())) == 500
    assert pool.min() >= 1_000_000_000 and pool.max() < 10_000_000_000
    with pytest.raises(ProducerError, match="users 0"):
        user_pool(0, np.random.default_rng(0))


def test_reference_source_resamples_the_canonical_table(source):
    rows = source(300, np.random.default_rng(4))
    assert list(rows.columns) == list(CANONICAL_COLUMNS)
    assert len(rows) == 300
    pd.testing.assert_frame_equal(rows, source(300, np.random.default_rng(4)))


def test_build_batch_keeps_every_value_and_stamps_ids_users_and_time(source):
    rng = np.random.default_rng(5)
    rows = source(50, rng)
    pool = user_pool(3, rng)
    batch = build_batch(rows, pool, rng, timestamp=1_764_000_000_000)
    messages = list(batch.transactions)
    assert [m.amount for m in messages] == rows["amount"].tolist()
    assert [m.type for m in messages] == rows["type"].astype(str).tolist()
    assert [m.new_balance_dest for m in messages] == rows["new_balance_dest"].tolist()
    assert [m.is_fraud for m in messages] == rows["is_fraud"].tolist()
    assert {m.user_id for m in messages} <= set(pool.tolist())
    assert {m.timestamp for m in messages} == {1_764_000_000_000}
    assert len({m.transaction_id for m in messages}) == 50


def test_paced_batches_send_the_count_at_the_rate(source):
    async def collect() -> tuple[list[int], float]:
        started = time.monotonic()
        sizes = [len(b.transactions) async for b in paced_batches(
            source, count=450, rate=1500, users=10, batch_size=1000, rng=np.random.default_rng(0))]
        return sizes, time.monotonic() - started

    sizes, seconds = asyncio.run(collect())
    assert sum(sizes) == 450
    assert max(sizes) == 15  # 1/100 s worth at 1,500/s
    assert seconds >= 0.25


def test_a_source_that_breaks_the_contract_is_named(source):
    async def first(bad_source) -> None:
        async for _ in paced_batches(bad_source, count=5, rate=None, users=1, batch_size=5,
                                     rng=np.random.default_rng(0)):
            return

    with pytest.raises(ProducerError, match=r"missing columns \['amount'\]"):
        asyncio.run(first(lambda n, rng: source(n, rng).drop(columns="amount")))


def test_settings_list_every_problem():
    with pytest.raises(ProducerError) as raised:
        ProducerSettings(count=-1, rate=0, users=0)
    assert all(f in str(raised.value) for f in ("count=-1", "rate=0", "users=0"))


def test_model_source_samples_a_loaded_model_with_seeds_from_the_rng(monkeypatch, tmp_path, source):
    from fraudlab.generate import synth

    calls = []

    class FakeModel:
        def sample(self, n, *, seed):
            calls.append(seed)
            return source(n, np.random.default_rng(seed))

    monkeypatch.setattr(synth.TransactionSynthesizer, "load", classmethod(lambda cls, path: FakeModel()))
    sample = model_source(tmp_path / "model.npz")
    first = sample(10, np.random.default_rng(3))
    pd.testing.assert_frame_equal(first, sample(10, np.random.default_rng(3)))
    assert len(calls) == 2 and calls[0] == calls[1]


def test_model_source_reports_a_missing_model(tmp_path):
    from fraudlab.exceptions import FraudlabError

    with pytest.raises(FraudlabError, match="manifest"):
        model_source(tmp_path / "absent.npz")


def test_rate_flag_accepts_numbers_and_max():
    assert _rate("max") is None and _rate("MAX") is None
    assert _rate("250") == 250.0
    for bad in ("0", "-3", "fast"):
        with pytest.raises(click.BadParameter):
            _rate(bad)


def test_run_blocking_works_inside_a_running_event_loop():
    async def inner() -> int:
        await asyncio.sleep(0)
        return 42

    async def outer() -> int:
        return run_blocking(inner)

    assert asyncio.run(outer()) == 42


def test_latency_percentiles_come_from_a_fixed_size_histogram():
    from fraudlab.ingest.client import _Tally

    tally = _Tally()
    for millis in range(1, 101):
        tally.record_latency(millis / 1000, transactions=10)
    assert tally.percentile_ms(50) == pytest.approx(50, rel=0.02)
    assert tally.percentile_ms(99) == pytest.approx(99, rel=0.02)
    assert _Tally().summary(1.0).p99_ms == 0.0


def test_ack_timeline_counts_per_second(monkeypatch):
    from fraudlab.ingest import client as producer
    from fraudlab.schema.messages import TransactionRequest

    clock = iter([100.0, 100.2, 100.9, 101.5, 103.1])
    monkeypatch.setattr(producer.time, "monotonic", lambda: next(clock))
    timeline = producer.AckTimeline()
    for size in (3, 2, 4, 1):
        timeline([TransactionRequest()] * size)
    assert timeline.acknowledged == 10
    assert timeline.throughput(1.0).to_dict("list") == {
        "seconds": [0.0, 1.0, 2.0, 3.0], "transactions_per_second": [5.0, 4.0, 0.0, 1.0]}
    assert timeline.throughput(0.5)["transactions_per_second"].tolist() == [6.0, 4.0, 0.0, 8.0, 0.0, 0.0, 2.0]


def test_ack_times_note_each_transactions_acknowledgement_in_epoch_ms(monkeypatch):
    from fraudlab.ingest import client as producer
    from fraudlab.schema.messages import TransactionRequest

    clock = iter([1_700_000_000_123_456_789, 1_700_000_000_500_000_000])
    monkeypatch.setattr(producer.time, "time_ns", lambda: next(clock))
    times = producer.AckTimes()
    times([TransactionRequest(transaction_id="a"), TransactionRequest(transaction_id="b")])
    times([TransactionRequest(transaction_id="c")])
    assert len(times) == 3 and times.ids == ["a", "b", "c"]
    assert times.as_series().to_dict() == {"a": 1_700_000_000_123, "b": 1_700_000_000_123, "c": 1_700_000_000_500}
    assert producer.AckTimes().as_series().empty


# --------------------------------------------------------------------------- replaying an account stream


def _account_stream(source: ReferenceSource, n: int, spacing_ms: int) -> pd.DataFrame:
    rows = source(n, np.random.default_rng(8))
    return rows.assign(timestamp=1_767_225_600_000 + spacing_ms * np.arange(n), user_id=np.arange(n) % 3 + 10,
                       ip_address=[f"81.2.69.{i % 250}" for i in range(n)], dest_user_id=np.arange(n) + 100)


def _replay(stream: pd.DataFrame, **kwargs: object) -> tuple[list[TransactionRequest], float]:
    async def collect() -> tuple[list, float]:
        started = time.monotonic()
        out = [m async for b in replay_batches(stream, **kwargs) for m in b.transactions]
        return out, time.monotonic() - started

    return asyncio.run(collect())


def test_replay_schedule_follows_event_time_at_the_speed_and_never_outruns_the_rate():
    stamps = np.array([0, 0, 60_000, 3_600_000])
    assert replay_schedule(stamps, speed=3600.0, rate=None).tolist() == [0.0, 0.0, 60 / 3600, 1.0]
    assert replay_schedule(stamps, speed=None, rate=2.0).tolist() == [0.0, 0.5, 1.0, 1.5]
    assert replay_schedule(stamps, speed=3600.0, rate=2.0).tolist() == [0.0, 0.5, 1.0, 1.5]


def test_a_replay_keeps_accounts_origins_and_event_spacing_and_ends_at_the_anchor(source):
    stream = _account_stream(source, 40, spacing_ms=10_000)  # 390 simulated seconds
    messages, seconds = _replay(stream, speed=1000.0, rate=None, batch_size=7, anchor_ms=1_800_000_000_000)
    assert [m.user_id for m in messages] == stream["user_id"].tolist()
    assert [m.ip_address for m in messages] == stream["ip_address"].tolist()
    assert [m.dest_user_id for m in messages] == stream["dest_user_id"].tolist()
    assert [m.amount for m in messages] == stream["amount"].tolist()
    stamps = [m.timestamp for m in messages]
    assert stamps[-1] == 1_800_000_000_000
    assert np.diff(stamps).tolist() == [10_000] * 39
    assert len({m.transaction_id for m in messages}) == 40
    assert seconds >= 0.38  # 390 simulated seconds at 1000x


def test_a_replay_sends_count_rows_and_refuses_an_unsorted_or_foreign_table(source):
    stream = _account_stream(source, 30, spacing_ms=1)
    messages, _ = _replay(stream, speed=None, rate=None, batch_size=100, count=12)
    assert len(messages) == 12
    with pytest.raises(ProducerError, match="not sorted by timestamp"):
        _replay(stream.iloc[::-1], speed=None, rate=None, batch_size=10)
    with pytest.raises(ProducerError, match=r"lacks columns \['timestamp', 'user_id'\]"):
        _replay(source(5, np.random.default_rng(0)), speed=None, rate=None, batch_size=10)


class _AnswersSomeThenEndsTheStream(fraud_pb2_grpc.FraudIngestionServicer):
    """Answers the first few batches of every stream, then ends it UNAVAILABLE, as a server losing Redis does."""

    def __init__(self, answers: int) -> None:
        self.answers = answers
        self.streams = 0

    async def StreamTransactions(self, request_iterator, context):
        self.streams += 1
        await context.send_initial_metadata(())
        answered = 0
        async for batch in request_iterator:
            yield BatchResponse(batch_id=batch.batch_id, accepted=len(batch.transactions))
            answered += 1
            if answered == self.answers:
                await context.abort(grpc.StatusCode.UNAVAILABLE, "Redis is unreachable")


def test_a_stream_that_ends_while_the_writer_waits_is_resent_not_raised():
    """The status may arrive with the last answers, before the writer wakes: the producer resends, never crashes.

    Each stream ends right after answers that free window room: the race CI
    hit in a Redis outage, when grpc.aio's ``InvalidStateError`` ("RPC already
    finished") escaped the producer. Sixty such streams give it many chances.
    """
    # Setup
    ids = [f"tx-{i}" for i in range(240)]
    acknowledged: list[str] = []

    async def batches():
        for transaction_id in ids:
            yield TransactionBatch(transactions=[TransactionRequest(transaction_id=transaction_id)])

    async def run(servicer: _AnswersSomeThenEndsTheStream):
        server = grpc.aio.server()
        fraud_pb2_grpc.add_FraudIngestionServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            return await stream_batches(f"127.0.0.1:{port}", batches(), window=8, retry_timeout=10,
                                        on_accepted=lambda sent: acknowledged.extend(m.transaction_id for m in sent))
        finally:
            await server.stop(None)

    # Run
    servicer = _AnswersSomeThenEndsTheStream(answers=4)
    summary = asyncio.run(run(servicer))

    # Assert
    assert (summary.accepted, servicer.streams) == (240, 60)
    assert summary.retried > 0
    assert sorted(acknowledged) == sorted(ids)
