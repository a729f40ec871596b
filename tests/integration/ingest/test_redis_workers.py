"""Shared dedup and rate limits in a real Redis, workers that share them, and crashes, against the real broker.

No mock stands in for Redis or Kafka: the scripts run in the session's
redis-server, the servers publish to the session's broker.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Awaitable

import grpc
import psutil
import pytest
import redis
from ingest_helpers import produce_in_background, read_all, stub, tx

from fraudlab.exceptions import KafkaUnavailableError
from fraudlab.infra.process import free_port
from fraudlab.infra.redis import LocalRedis, RedisSettings, start_redis, stop_redis
from fraudlab.ingest.channel import check_health
from fraudlab.ingest.client import ProducerSettings
from fraudlab.ingest.dedup import Claim, RedisDedup
from fraudlab.ingest.gateway import GatewayServer
from fraudlab.ingest.ratelimit import RedisRateLimiter
from fraudlab.ingest.redis_state import RedisState
from fraudlab.ingest.service import IngestionServer, ServiceSettings
from fraudlab.kafka.publisher import Delivery
from fraudlab.schema.proto.fraud_pb2 import TransactionBatch


def _prefix() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


# --------------------------------------------------------------------------- the Lua state machine, directly


def test_dedup_claims_follow_the_state_machine_and_a_dead_owner_is_taken_over(redis_url):
    """new -> pending (a second worker waits) -> published (acked as duplicate); a dead owner's claim is taken."""

    async def scenario() -> dict[str, object]:
        prefix = _prefix()
        first, second = (RedisState(redis_url, prefix=prefix, lease=0.3) for _ in range(2))
        await first.open()
        await second.open()
        a, b = RedisDedup(first, window=60), RedisDedup(second, window=60)
        loop = asyncio.get_running_loop()
        try:
            seen: dict[str, object] = {"first": await a.claim(["x", "y", "z"], 0)}
            seen["second_while_pending"] = await b.claim(["x", "y"], 0)
            delivery = Delivery(loop.create_future(), expected=1)
            recorded = a.track(["x"], delivery, 0)
            a.release(["y"])
            delivery.future.set_result(None)
            await recorded
            await asyncio.sleep(0.05)  # the release is recorded in the background
            seen["after_verdicts"] = await b.claim(["x", "y"], 0)
            await first.close()  # "z" stays pending on an owner that is gone
            seen["round_trips"] = first.round_trips
            seen["dead_owner"] = await b.claim(["z"], 0)
            seen["timed_out_wait"] = None
            try:
                await b.wait(["y"], time.monotonic() + 0.1)  # b holds "y" itself and never settles it
            except KafkaUnavailableError as exc:
                seen["timed_out_wait"] = str(exc)
            return seen
        finally:
            await second.close()

    seen = asyncio.run(scenario())
    assert seen["first"] == [Claim.NEW] * 3
    assert seen["second_while_pending"] == [Claim.PENDING, Claim.PENDING]
    assert seen["after_verdicts"] == [Claim.PUBLISHED, Claim.NEW]
    assert seen["dead_owner"] == [Claim.NEW]
    assert "'y' was not confirmed by Kafka in time" in str(seen["timed_out_wait"])
    assert seen["round_trips"] == 3  # claim, verdict, release: one script call each, whatever the batch size


def test_a_claim_call_run_twice_keeps_its_claim_and_a_repeated_undo_spares_the_next_one(redis_url):
    """Claims and "0" verdicts name their claim call, so a client's retry after a lost answer changes nothing."""

    async def scenario() -> list[list[int]]:
        state = RedisState(redis_url, prefix=_prefix())
        await state.open()
        key = [state.key("dedup", "x")]

        def claim(mode: str, call: object) -> Awaitable[list[int]]:
            return state.run("dedup_claim", key, [f"{state.owner}:{call}", 60_000, state.lease_prefix, mode])

        def undo(call: int) -> Awaitable[list[int]]:
            return state.run("dedup_settle", key, [f"{state.owner}:{call}", 60_000, "0"])

        try:
            seen = [await claim("claim", 1)]
            await undo(1)
            seen.append(await claim("claim", 2))
            seen.append(await claim("claim", 2))  # the same call run again: its client retried after a lost answer
            await undo(1)
            seen.append(await claim("peek", ""))
            await undo(2)
            seen.append(await claim("peek", ""))
            return seen
        finally:
            await state.close()

    assert asyncio.run(scenario()) == [[0], [0], [0], [2], [0]]


def test_the_shared_token_bucket_grants_the_burst_then_the_rate(redis_url):
    """Two limiters on one Redis draw from one bucket per user: burst 5 overall, then rate/s (capped at the burst)."""

    async def scenario() -> tuple[list[dict[int, int]], float]:
        states = [RedisState(redis_url, prefix=_prefix()) for _ in range(2)]
        states[1].prefix = states[0].prefix
        for state in states:
            await state.open()
        limiters = [RedisRateLimiter(state, rate=20, burst=5) for state in states]
        try:
            grants = [await limiters[0].grant({7: 3, 8: 1}, 0), await limiters[1].grant({7: 3}, 0)]
            started = time.monotonic()
            await asyncio.sleep(0.15)
            grants.append(await limiters[1].grant({7: 100}, 0))
            return grants, time.monotonic() - started
        finally:
            for state in states:
                await state.close()

    grants, waited = asyncio.run(scenario())
    assert grants[0] == {7: 3, 8: 1}
    assert grants[1] == {7: 2}
    assert 2 <= grants[2][7] <= min(5, 20 * waited + 1)


# --------------------------------------------------------------------------- servers sharing Redis


def _settings(kafka_bootstrap: str, topic: str, redis_url: str, **overrides: object) -> ServiceSettings:
    return ServiceSettings(bootstrap=kafka_bootstrap, topic=topic, port=0, redis_url=redis_url,
                           **overrides)  # type: ignore[arg-type]


def test_a_retry_sent_to_another_worker_is_not_published_twice(kafka_bootstrap, topic, redis_url, serve):
    """Worker A publishes a batch; the same batch resent to worker B is acknowledged as duplicates."""
    # Setup
    batch = [tx() for _ in range(50)]
    with serve(_settings(kafka_bootstrap, topic, redis_url)) as a, \
            serve(_settings(kafka_bootstrap, topic, redis_url)) as b:
        # Run
        first = list(stub(a).StreamTransactions(iter([TransactionBatch(batch_id=1, transactions=batch)]), timeout=30))
        again = list(stub(b).StreamTransactions(iter([TransactionBatch(batch_id=1, transactions=batch)]), timeout=30))
        unary = stub(b).SendTransaction(batch[0], timeout=10)
    received = [m.transaction_id for m in read_all(kafka_bootstrap, topic)]

    # Assert
    assert (first[0].accepted, first[0].duplicates) == (50, 0)
    assert (again[0].accepted, again[0].duplicates) == (50, 50)
    assert unary.success and "duplicate" in unary.message
    assert sorted(received) == sorted(t.transaction_id for t in batch)


def test_the_rate_limit_holds_across_workers(kafka_bootstrap, topic, redis_url, serve):
    """One user alternating between two workers gets the bucket's budget once, not once per worker."""
    # Setup
    overrides = {"rate_limit": 2.0, "rate_burst": 10.0}
    user = uuid.uuid4().int % 10**9  # a bucket of its own: the other engine's run drew from user 42's a moment ago
    with serve(_settings(kafka_bootstrap, topic, redis_url, **overrides)) as a, \
            serve(_settings(kafka_bootstrap, topic, redis_url, **overrides)) as b:
        stubs = [stub(a), stub(b)]
        started = time.monotonic()
        # Run
        outcomes = []
        for i in range(40):
            try:
                outcomes.append(stubs[i % 2].SendTransaction(tx(user_id=user), timeout=10).success)
            except grpc.RpcError as exc:
                outcomes.append(exc.code())
        elapsed = time.monotonic() - started

    # Assert
    accepted = outcomes.count(True)
    assert 10 <= accepted <= 10 + 2 * elapsed + 1, (accepted, elapsed)
    assert outcomes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) == 40 - accepted


def test_a_python_and_a_go_worker_share_one_dedup_and_one_rate_limit(kafka_bootstrap, topic, redis_url,
                                                                     built_gateway):
    """The two implementations run the same Lua scripts on the same keys: a mixed tier behaves as one."""
    # Setup
    users = uuid.uuid4().int % 10**9  # buckets of their own, whatever ran before on this Redis
    batch = [tx(user_id=users + i) for i in range(30)]
    limited = {"rate_limit": 0.01, "rate_burst": 4.0}
    with IngestionServer(_settings(kafka_bootstrap, topic, redis_url, **limited)) as python, \
            GatewayServer(_settings(kafka_bootstrap, topic, redis_url, **limited)) as go:
        # Run: a batch published by Python, resent to Go; one by Go, resent to Python
        first = list(stub(python).StreamTransactions(iter([TransactionBatch(batch_id=1, transactions=batch[:15])]),
                                                     timeout=30))
        again = list(stub(go).StreamTransactions(iter([TransactionBatch(batch_id=2, transactions=batch)]),
                                                 timeout=30))
        back = list(stub(python).StreamTransactions(iter([TransactionBatch(batch_id=3, transactions=batch[15:])]),
                                                    timeout=30))
        # one user alternating between the engines draws from one bucket of 4
        user = users + 100
        outcomes = []
        for i in range(8):
            try:
                outcomes.append(stub([python, go][i % 2]).SendTransaction(tx(user_id=user), timeout=10).success)
            except grpc.RpcError as exc:
                outcomes.append(exc.code())
    received = [m.transaction_id for m in read_all(kafka_bootstrap, topic)]

    # Assert
    assert (first[0].accepted, first[0].duplicates) == (15, 0)
    assert (again[0].accepted, again[0].duplicates) == (30, 15)
    assert (back[0].accepted, back[0].duplicates) == (15, 15)
    assert outcomes == [True] * 4 + [grpc.StatusCode.RESOURCE_EXHAUSTED] * 4
    assert {t.transaction_id for t in batch} <= set(received)
    assert len(received) == len(set(received)) == 34  # the 30 once each, and the 4 the bucket let through


@pytest.mark.parametrize("broken", ["unreachable", "wrong password"])
def test_bad_redis_configuration_fails_the_start_with_one_clear_line(kafka_bootstrap, topic, tmp_path, broken,
                                                                    serve_command):
    """`fraudlab serve --redis` with a URL nobody answers, or a wrong password: exit 1 and say what to fix."""
    # Setup
    guarded = RedisSettings(port=free_port(), password="right", state_dir=tmp_path / "redis")
    with LocalRedis(guarded) as good_url:
        url = (f"redis://127.0.0.1:{free_port()}/0" if broken == "unreachable"
               else good_url.replace(":right@", ":wrong@"))
        # Run
        completed = subprocess.run(
            [sys.executable, "-m", "fraudlab", "serve", *serve_command, "--bootstrap", kafka_bootstrap, "--topic",
             topic, "--port", "0", "--redis", url], capture_output=True, text=True, timeout=60)

    # Assert
    assert completed.returncode == 1, completed.stderr
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: Redis at redis://")
    assert "fraudlab redis up" in lines[0] and "wrong" not in lines[0]


def test_more_workers_without_redis_is_a_usage_error():
    completed = subprocess.run([sys.executable, "-m", "fraudlab", "serve", "--workers", "2"],
                               capture_output=True, text=True, timeout=60)
    assert completed.returncode == 2
    assert "--workers 2 needs --redis" in completed.stderr


@pytest.mark.slow
def test_redis_stopped_and_restarted_mid_stream_gives_unavailable_and_no_loss_or_double(
        kafka_bootstrap, topic, tmp_path, serve):
    """Redis goes away under a stream: UNAVAILABLE and NOT_SERVING meanwhile, then everything exactly once."""
    # Setup: a Redis of our own, restarted on the same state dir (its append-only file keeps the verdicts)
    settings = RedisSettings(port=free_port(), state_dir=tmp_path / "redis")
    start_redis(settings)
    acknowledged: set[str] = set()
    try:
        with serve(_settings(kafka_bootstrap, topic, settings.url, ack_timeout=3)) as target:
            thread, outcome = produce_in_background(
                ProducerSettings(target=target, count=12_000, rate=2000, users=100, retry_timeout=60), acknowledged)
            time.sleep(2)
            # Run
            stop_redis(settings)
            unary_error = None
            try:
                stub(target).SendTransaction(tx(), timeout=8)
            except grpc.RpcError as exc:
                unary_error = exc.code()
            time.sleep(1.5)
            health_during = check_health(target)
            during = len(acknowledged)
            time.sleep(1)
            stalled = len(acknowledged) == during
            start_redis(settings)
            thread.join(90)
            health_after = _health_within(target, "SERVING", seconds=5)  # a heartbeat or two, if a call just failed
    finally:
        stop_redis(settings)
    received = [m.transaction_id for m in read_all(kafka_bootstrap, topic)]

    # Assert
    assert unary_error == grpc.StatusCode.UNAVAILABLE
    assert stalled, "nothing may be acknowledged while Redis is down"
    assert (health_during, health_after) == ("NOT_SERVING", "SERVING")
    assert "error" not in outcome, outcome.get("error")
    assert outcome["summary"].accepted == 12_000 and outcome["summary"].retried > 0
    produced = [i for i in received if i in acknowledged]
    assert acknowledged <= set(received)
    assert len(produced) == len(set(produced)) == 12_000


# Keeps Redis busy for ARGV[1] ms: every client's call waits behind it, and the servers' calls time out.
_BUSY_LUA = """
local function now_us() local t = redis.call('TIME') return tonumber(t[1]) * 1000000 + tonumber(t[2]) end
local until_us = now_us() + tonumber(ARGV[1]) * 1000
while now_us() < until_us do end
return 1
"""


def test_a_claim_redis_ran_after_the_server_gave_up_on_it_does_not_block_the_resend(kafka_bootstrap, topic, tmp_path,
                                                                                     serve):
    """A claim times out but Redis runs it later: the server releases it, so the resend is published, once."""
    # Setup: a Redis of our own (it is made busy) and a lease longer than the stall (the server stays alive in it)
    settings = RedisSettings(port=free_port(), state_dir=tmp_path / "redis")
    start_redis(settings)
    first, message = tx(), tx()
    try:
        with serve(_settings(kafka_bootstrap, topic, settings.url, redis_lease=10, ack_timeout=3)) as target, \
                redis.Redis.from_url(settings.url) as blocker:
            warm_up = stub(target).SendTransaction(first, timeout=10)  # loads the scripts: EVALSHA then finds them
            busy = threading.Thread(target=blocker.eval, args=(_BUSY_LUA, 0, 2500))
            busy.start()
            time.sleep(0.3)
            # Run
            timed_out = None
            try:
                stub(target).SendTransaction(message, timeout=10)
            except grpc.RpcError as exc:
                timed_out = exc.code()
            busy.join()
            assert _health_within(target, "SERVING", seconds=10) == "SERVING"
            resent = stub(target).SendTransaction(message, timeout=10)
    finally:
        stop_redis(settings)
    received = [m.transaction_id for m in read_all(kafka_bootstrap, topic)]

    # Assert
    assert warm_up.success and timed_out == grpc.StatusCode.UNAVAILABLE
    assert resent.success, resent.message
    assert sorted(received) == sorted([first.transaction_id, message.transaction_id])


# --------------------------------------------------------------------------- supervised workers, SIGKILL


class _Supervisor:
    """`fraudlab serve --workers 2` as a real process, with the worker pids it reports."""

    def __init__(self, command: list[str]) -> None:
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line.rstrip("\n"))

    def pids(self) -> dict[int, int]:
        """The latest pid of each worker."""
        found: dict[int, int] = {}
        for line in list(self.lines):
            match = re.match(r"\[worker (\d+)\] started \(pid (\d+)\)", line)
            if match:
                found[int(match[1])] = int(match[2])
        return found

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
        code = self.process.wait(60)
        self._reader.join(5)
        return code


def _health_within(target: str, wanted: str, seconds: float) -> str:
    """The server's health once it is ``wanted``, or as it is after ``seconds``."""
    deadline = time.monotonic() + seconds
    health = check_health(target)
    while health != wanted and time.monotonic() < deadline:
        time.sleep(0.1)
        health = check_health(target)
    return health


def _wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


def _serving_worker(pids: dict[int, int], port: int) -> int:
    """The worker pid holding the producer's connection (the kernel gave it one of the SO_REUSEPORT sockets)."""
    for pid in pids.values():
        connections = psutil.Process(pid).net_connections(kind="tcp")
        if any(c.laddr and c.laddr.port == port and c.status == psutil.CONN_ESTABLISHED for c in connections):
            return pid
    pytest.fail(f"no worker of {pids} holds a connection on port {port}")


@pytest.mark.slow
def test_sigkill_of_one_of_two_workers_mid_stream_loses_nothing(kafka_bootstrap, topic, redis_url, record_property,
                                                                serve_command):
    """120,000 transactions stream through two supervised workers; the one serving them is SIGKILLed.

    The producer resends what was not acknowledged to whichever worker its
    new connection reaches: every transaction is in the topic, and the number
    in it twice (bounded by what the killed worker had in flight) is reported.
    """
    # Setup
    port, count = free_port(), 120_000
    supervisor = _Supervisor([
        sys.executable, "-m", "fraudlab", "serve", *serve_command, "--workers", "2", "--redis", redis_url,
        "--bootstrap", kafka_bootstrap, "--topic", topic, "--port", str(port), "--rate-limit", "0"])
    acknowledged: set[str] = set()
    target = f"127.0.0.1:{port}"
    try:
        _wait_until(lambda: any("2 workers on" in line for line in supervisor.lines) or
                    supervisor.process.poll() is not None, 90, "two workers")
        assert supervisor.process.poll() is None, supervisor.lines
        thread, outcome = produce_in_background(
            ProducerSettings(target=target, count=count, users=1000, retry_timeout=90), acknowledged)
        _wait_until(lambda: len(acknowledged) >= count // 4, 120, "a quarter acknowledged")
        # Run
        victim = _serving_worker(supervisor.pids(), port)
        psutil.Process(victim).kill()
        killed_at = len(acknowledged)
        _wait_until(lambda: victim not in supervisor.pids().values() and len(supervisor.pids()) == 2, 60,
                    "the killed worker restarted")
        thread.join(180)
        restarted = [line for line in supervisor.lines if "exited with code -9; restarting" in line]
    finally:
        exit_code = supervisor.stop()
    received = [m.transaction_id for m in read_all(kafka_bootstrap, topic)]

    # Assert
    assert "error" not in outcome, outcome.get("error")
    summary = outcome["summary"]
    assert summary.accepted == count and killed_at < count
    assert restarted, supervisor.lines[-10:]
    assert exit_code == 0, supervisor.lines[-10:]
    assert acknowledged <= set(received) and len(set(received)) == count
    twice = len(received) - count
    print(f"\nSIGKILL of 1 of 2 workers after {killed_at} of {count} acknowledged: {twice} published twice, "
          f"{summary.retried} resent")
    record_property("published_twice", twice)
    assert twice <= 8 * 1000, "at most what the killed worker had in flight (the producer's window of batches)"
