"""The synthetic-transaction producer: sample rows, stream them through the ingestion service, lose none.

Rows come from a *source*: any callable ``source(n, rng) -> DataFrame`` that
returns ``n`` rows of the canonical transaction table (``fraudlab.data.readers``).
:func:`model_source` wraps a saved ``fraudlab.generate.synth`` model; the default,
:func:`default_source`, is the pre-trained 20-lakh model
(``fraudlab/pretrained/gaussian_copula_20L.npz``). :class:`ReferenceSource` resamples the
bundled real PaySim rows instead. Each row
becomes a ``TransactionRequest`` with a fresh UUID ``transaction_id``, a
``user_id`` drawn from a pool of ``users`` ids, and the current time.

An *account stream* (``fraudlab.generate.accounts``: accounts with histories,
in event time) is replayed instead by :func:`replay_batches`: its rows keep
their accounts, destinations, IP addresses and the spacing of their event
times, played on a simulated clock ``speed`` times faster than the wall clock.

Batches go over ``StreamTransactions`` with a window of unanswered batches in
flight. Anything not acknowledged is sent again: every batch in flight when the
stream fails (the server answers UNAVAILABLE when Kafka is down, or goes away),
after an exponential backoff, and every record the server's rate limit
refused. The server drops repeats of a published ``transaction_id``, so
resending never duplicates a record in Kafka.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import random
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import grpc
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from fraudlab import config
from fraudlab.exceptions import ProducerError
from fraudlab.ingest.channel import auth_metadata, open_channel
from fraudlab.schema.messages import now_millis, transactions_batch
from fraudlab.schema.proto import fraud_pb2_grpc
from fraudlab.schema.proto.fraud_pb2 import BatchResponse, TransactionBatch, TransactionRequest

__all__ = [
    "AckTimeline",
    "AckTimes",
    "ProduceSummary",
    "ProducerSettings",
    "ReferenceSource",
    "TransactionSource",
    "build_batch",
    "default_source",
    "model_source",
    "paced_batches",
    "produce",
    "produce_async",
    "replay_batches",
    "replay_schedule",
    "run_blocking",
    "stream_batches",
    "user_pool",
    "uuid4_strings",
]

RETRIABLE_CODES = frozenset({
    grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.ABORTED,
    grpc.StatusCode.CANCELLED,
})
# What grpc.aio reports, in place of the server's status, when a write races the end of the stream.
_WRITE_RACE = (grpc.StatusCode.INTERNAL, "Internal error from Core")
_SOURCE_CHUNK = 10_000
_BACKOFF_START_S = 0.1
_BACKOFF_MAX_S = 5.0
_KEPT_REJECTIONS = 5
_T = TypeVar("_T")



class TransactionSource(Protocol):
    """Where the producer's rows come from: ``n`` rows of the canonical transaction table, drawn with ``rng``."""

    def __call__(self, n: int, rng: np.random.Generator) -> pd.DataFrame: ...


class ReferenceSource:
    """Resample the bundled real PaySim rows (with replacement): real rows, for comparisons and tests."""

    def __init__(self, table: pd.DataFrame | None = None) -> None:
        if table is None:
            from fraudlab.data.reference import load_reference

            table = load_reference().sample
        self.table = table.reset_index(drop=True)

    def __call__(self, n: int, rng: np.random.Generator) -> pd.DataFrame:
        return self.table.take(rng.integers(0, len(self.table), size=n)).reset_index(drop=True)


def model_source(path: str | Path) -> TransactionSource:
    """A source sampling a saved ``fraudlab.generate.synth.TransactionSynthesizer`` (checked and loaded once, here).

    Each call draws a seed from the producer's ``rng``, so a seeded producer run is reproducible.
    """
    from fraudlab.generate.synth import TransactionSynthesizer

    model = TransactionSynthesizer.load(path)

    def sample(n: int, rng: np.random.Generator) -> pd.DataFrame:
        return model.sample(n, seed=int(rng.integers(2**31 - 1)))

    return sample


class AckTimeline:
    """An ``on_accepted`` callback that notes when each acknowledgement arrived, for throughput over time."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self._times: list[float] = []
        self._counts: list[int] = []

    def __call__(self, messages: list[TransactionRequest]) -> None:
        self._times.append(time.monotonic() - self.started)
        self._counts.append(len(messages))

    @property
    def acknowledged(self) -> int:
        return sum(self._counts)

    def throughput(self, interval: float = 0.25) -> pd.DataFrame:
        """Acknowledged transactions per second in consecutive ``interval``-second windows since the start."""
        if interval <= 0:
            raise ProducerError(f"Invalid interval {interval!r}: use a positive number of seconds.")
        if not self._times:
            return pd.DataFrame({"seconds": [], "transactions_per_second": []})
        windows = np.floor(np.asarray(self._times) / interval).astype(int)
        totals = np.bincount(windows, weights=np.asarray(self._counts, dtype=float))
        return pd.DataFrame({"seconds": np.arange(len(totals)) * interval,
                             "transactions_per_second": totals / interval})


class AckTimes:
    """An ``on_accepted`` callback that notes when each transaction's acknowledgement arrived (epoch ms, by id): the
    start of the acknowledgement -> scored latency the real-time demo and notebook report."""

    def __init__(self) -> None:
        self._at: dict[str, int] = {}

    def __call__(self, messages: list[TransactionRequest]) -> None:
        now = time.time_ns() // 1_000_000
        self._at.update((message.transaction_id, now) for message in messages)

    def __len__(self) -> int:
        return len(self._at)

    @property
    def ids(self) -> list[str]:
        """The acknowledged transaction ids, in acknowledgement order."""
        return list(self._at)

    def as_series(self) -> pd.Series:
        """Acknowledgement time (epoch ms) indexed by transaction id."""
        return pd.Series(self._at, dtype="int64")


def default_source() -> TransactionSource:
    """The pre-trained 20-lakh synthesizer (``fraudlab.generate.synth.DEFAULT_MODEL``), loaded and verified once."""
    from fraudlab.generate.synth import DEFAULT_MODEL

    return model_source(DEFAULT_MODEL)


# --------------------------------------------------------------------------- building messages


def uuid4_strings(n: int, rng: np.random.Generator | None = None) -> list[str]:
    """``n`` random RFC 4122 version-4 UUIDs as strings, built in bulk (several times faster than ``uuid.uuid4``).

    With ``rng`` the ids are reproducible; without it they come from the
    operating system's randomness.
    """
    raw = rng.bytes(16 * n) if rng is not None else np.random.default_rng().bytes(16 * n)
    octets = np.frombuffer(raw, dtype=np.uint8).reshape(n, 16).copy()
    octets[:, 6] = (octets[:, 6] & 0x0F) | 0x40
    octets[:, 8] = (octets[:, 8] & 0x3F) | 0x80
    text = octets.tobytes().hex()
    return [f"{text[o:o + 8]}-{text[o + 8:o + 12]}-{text[o + 12:o + 16]}-{text[o + 16:o + 20]}-{text[o + 20:o + 32]}"
            for o in range(0, 32 * n, 32)]


def user_pool(users: int, rng: np.random.Generator) -> np.ndarray:
    """``users`` distinct ten-digit user ids, PaySim-style (``C1231006815`` -> 1231006815)."""
    if users < 1:
        raise ProducerError(f"Invalid users {users!r}: the pool needs at least one user.")
    return 1_000_000_000 + rng.choice(9_000_000_000, size=users, replace=False)


def build_batch(
    rows: pd.DataFrame, users: np.ndarray, rng: np.random.Generator, *, timestamp: int | None = None,
) -> TransactionBatch:
    """Turn canonical-table ``rows`` into one batch: fresh UUIDs, random users from the pool, ``timestamp`` (now)."""
    count = len(rows)
    stamp = now_millis() if timestamp is None else timestamp
    ids = uuid4_strings(count)
    user_ids = users[rng.integers(0, len(users), size=count)].tolist()
    return transactions_batch(rows, transaction_ids=ids, user_ids=user_ids, timestamp=stamp)


async def paced_batches(
    source: TransactionSource, *, count: int | None, rate: float | None, users: int, batch_size: int,
    rng: np.random.Generator,
) -> AsyncIterator[TransactionBatch]:
    """Batches of freshly sampled transactions, ``count`` in all (None: forever), at ``rate`` per second (None: max).

    At a set rate batches shrink to about 1/100 s worth of transactions, so the
    stream stays smooth instead of arriving in bursts.
    """
    per_batch = batch_size if rate is None else max(1, min(batch_size, int(rate / 100)))
    pool = user_pool(users, rng)
    buffered = pd.DataFrame()
    produced = 0
    started = time.monotonic()
    while count is None or produced < count:
        size = per_batch if count is None else min(per_batch, count - produced)
        if len(buffered) < size:
            drawn = _draw(source, max(_SOURCE_CHUNK, size), rng)
            buffered = pd.concat([buffered, drawn], ignore_index=True) if len(buffered) else drawn
        rows, buffered = buffered.iloc[:size], buffered.iloc[size:]
        if rate is not None:
            delay = started + produced / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        produced += size
        yield build_batch(rows, pool, rng)
        await asyncio.sleep(0)


#: Columns an account stream must have to be replayed (beyond the money columns `transactions_batch` reads).
_STREAM_COLUMNS = ("timestamp", "user_id", "type", "amount", "is_fraud")


def replay_schedule(timestamps: np.ndarray, *, speed: float | None, rate: float | None) -> np.ndarray:
    """When each row of a time-sorted stream is due (seconds from the start): at ``speed``, capped by ``rate``.

    A row is due when the simulated clock reaches its event time, and not
    before the rate allows it; both are non-decreasing, so their maximum is too.
    """
    due = np.zeros(len(timestamps))
    if speed is not None and len(timestamps):
        due = (timestamps - timestamps[0]) / 1000.0 / speed
    if rate is not None:
        due = np.maximum(due, np.arange(len(timestamps)) / rate)
    return due


async def replay_batches(
    stream: pd.DataFrame, *, speed: float | None, rate: float | None, batch_size: int, count: int | None = None,
    anchor_ms: int | None = None,
) -> AsyncIterator[TransactionBatch]:
    """Batches of an account stream's rows in event-time order, each sent when the simulated clock reaches it.

    Event times are shifted so that the stream's last event lands at
    ``anchor_ms`` (default: now), which keeps every timestamp in the past for
    the server's clock check while keeping their spacing; ``speed`` (simulated
    seconds per wall second, None: no waiting) sets the pace. Each replay
    gives its rows fresh UUIDs, so replaying a stream twice publishes it twice.
    """
    missing = sorted(set(_STREAM_COLUMNS) - set(stream.columns))
    if missing:
        raise ProducerError(f"The account stream lacks columns {missing}: replay a table written by "
                            "`fraudlab generate` (fraudlab.generate.accounts).")
    rows = stream.iloc[:count] if count is not None else stream
    stamps = rows["timestamp"].to_numpy(dtype=np.int64)
    if len(stamps) > 1 and (np.diff(stamps) < 0).any():
        raise ProducerError("The account stream is not sorted by timestamp: sort it (event time) before replaying.")
    shift = ((now_millis() if anchor_ms is None else anchor_ms) - int(stamps[-1])) if len(stamps) else 0
    due = replay_schedule(stamps, speed=speed, rate=rate)
    per_batch = batch_size if rate is None else max(1, min(batch_size, int(rate / 100)))
    started = time.monotonic()
    start = 0
    while start < len(rows):
        elapsed = time.monotonic() - started
        ready = int(np.searchsorted(due, elapsed, side="right"))
        if ready <= start:
            await asyncio.sleep(due[start] - elapsed)
            continue
        end = min(ready, start + per_batch)
        chunk = rows.iloc[start:end]
        yield transactions_batch(chunk.assign(timestamp=stamps[start:end] + shift),
                                 transaction_ids=uuid4_strings(end - start),
                                 user_ids=chunk["user_id"].astype(np.int64).tolist())
        start = end
        await asyncio.sleep(0)


def _draw(source: TransactionSource, n: int, rng: np.random.Generator) -> pd.DataFrame:
    rows = source(n, rng)
    missing = {"type", "amount", "old_balance_orig", "new_balance_orig", "old_balance_dest", "new_balance_dest",
               "is_fraud"} - set(rows.columns)
    if missing or len(rows) != n:
        raise ProducerError(
            f"The transaction source returned {len(rows)} rows (asked for {n}) missing columns {sorted(missing)}: "
            "a source must return the canonical transaction table (see fraudlab.data.readers)."
        )
    return rows


# --------------------------------------------------------------------------- streaming


@dataclass(frozen=True)
class ProduceSummary:
    """What a producer run did. ``sent`` counts transactions once; resends are in ``retried``."""

    sent: int
    accepted: int
    duplicates: int
    rejected: int
    retried: int
    elapsed: float
    p50_ms: float
    p99_ms: float
    rejections: tuple[str, ...] = ()
    #: Acknowledgement latency histogram: (upper bin edge in ms, transactions) for every non-empty bin.
    latency_bins_ms: tuple[tuple[float, int], ...] = ()

    @property
    def rate(self) -> float:
        """Acknowledged transactions per second."""
        return self.accepted / self.elapsed if self.elapsed > 0 else 0.0

    def describe(self) -> str:
        lines = [
            f"sent {self.sent:,}  accepted {self.accepted:,} ({self.duplicates:,} duplicates)  "
            f"rejected {self.rejected:,}  retried {self.retried:,}",
            f"{self.elapsed:.2f} s, {self.rate:,.0f} transactions/s; ack latency p50 {self.p50_ms:.1f} ms, "
            f"p99 {self.p99_ms:.1f} ms",
        ]
        lines += [f"rejected: {reason}" for reason in self.rejections]
        return "\n".join(lines)


@dataclass
class _Outgoing:
    batch: TransactionBatch
    attempts: int = 0
    sent_at: float = 0.0


_LATENCY_EDGES_MS = np.geomspace(0.01, 600_000.0, 2001)  # bins about 1 % wide, 10 µs to 10 minutes


@dataclass
class _Tally:
    """Running counts, and acknowledgement latencies as a histogram so a producer left running keeps flat memory."""

    sent: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    retried: int = 0
    latency_counts: np.ndarray = field(default_factory=lambda: np.zeros(len(_LATENCY_EDGES_MS) + 1, dtype=np.int64))
    rejections: list[str] = field(default_factory=list)

    def record_latency(self, seconds: float, transactions: int) -> None:
        self.latency_counts[np.searchsorted(_LATENCY_EDGES_MS, seconds * 1000.0)] += transactions

    def percentile_ms(self, q: float) -> float:
        """The upper edge of the bin holding the ``q``-th percentile transaction (0 when none was acknowledged)."""
        total = int(self.latency_counts.sum())
        if total == 0:
            return 0.0
        index = int(np.searchsorted(np.cumsum(self.latency_counts), q / 100.0 * total))
        return float(_LATENCY_EDGES_MS[min(index, len(_LATENCY_EDGES_MS) - 1)])

    def latency_bins(self) -> tuple[tuple[float, int], ...]:
        edges = np.append(_LATENCY_EDGES_MS, _LATENCY_EDGES_MS[-1])
        return tuple((float(edges[i]), int(self.latency_counts[i])) for i in np.flatnonzero(self.latency_counts))

    def summary(self, elapsed: float) -> ProduceSummary:
        return ProduceSummary(self.sent, self.accepted, self.duplicates, self.rejected, self.retried, elapsed,
                              self.percentile_ms(50), self.percentile_ms(99), tuple(self.rejections),
                              self.latency_bins())


class _Streamer:
    """The resilient side of ``StreamTransactions``: window, resends, backoff, progress.

    Batches live in exactly one place: not yet sent (``_fresh``), waiting to be
    resent (``_retry``, or on a backoff timer), or in flight (``_in_flight``,
    oldest first). A failed stream moves everything in flight back to the
    front of ``_retry``, so nothing unacknowledged is ever dropped.
    """

    def __init__(
        self, channel: grpc.aio.Channel, *, metadata: Sequence[tuple[str, str]], window: int, retry_timeout: float,
        progress: tqdm | None, on_accepted: Callable[[list[TransactionRequest]], None] | None,
    ) -> None:
        self._stub = fraud_pb2_grpc.FraudIngestionStub(channel)
        self._metadata = tuple(metadata)
        self._window = window
        self._retry_timeout = retry_timeout
        self._progress = progress
        self._on_accepted = on_accepted
        self._fresh: collections.deque[_Outgoing] = collections.deque()
        self._retry: collections.deque[_Outgoing] = collections.deque()
        self._in_flight: collections.OrderedDict[int, _Outgoing] = collections.OrderedDict()
        self._scheduled = 0
        self._fed_all = False
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._ids = itertools.count(1)
        self._last_progress = time.monotonic()
        self._last_error = "none"
        self.tally = _Tally()

    async def run(self, batches: AsyncIterator[TransactionBatch]) -> None:
        feeder = asyncio.create_task(self._feed(batches))
        failures = 0
        try:
            while not self._finished():
                progress_mark = self._last_progress
                try:
                    await self._session(feeder)
                except grpc.aio.AioRpcError as exc:
                    if exc.code() not in RETRIABLE_CODES and (exc.code(), exc.details()) != _WRITE_RACE:
                        raise ProducerError(f"The ingestion server refused the stream: {exc.code().name}: "
                                            f"{exc.details()}") from exc
                    self._last_error = f"{exc.code().name}: {exc.details()}"
                    failures = failures + 1 if self._last_progress == progress_mark else 1
                    self._check_progress()
                    await asyncio.sleep(_backoff(failures))
                finally:
                    self._requeue_in_flight()
            await feeder
        finally:
            feeder.cancel()

    def _finished(self) -> bool:
        return (self._fed_all and not self._fresh and not self._retry and not self._in_flight
                and self._scheduled == 0)

    def _check_progress(self) -> None:
        idle = time.monotonic() - self._last_progress
        if idle > self._retry_timeout:
            raise ProducerError(
                f"No transaction was acknowledged for {idle:.0f} s (retry timeout {self._retry_timeout:g} s); "
                f"last error {self._last_error}. {len(self._in_flight) + len(self._retry)} batches unacknowledged."
            )

    async def _feed(self, batches: AsyncIterator[TransactionBatch]) -> None:
        """Pull new batches ahead of the writer, at most a window's worth (a task of its own, never cancelled
        by a failing stream, so a paced source keeps its pace)."""
        try:
            async for batch in batches:
                while len(self._fresh) >= self._window:
                    self._room.clear()
                    await self._room.wait()
                self._fresh.append(_Outgoing(batch))
                self._wake.set()
        finally:
            self._fed_all = True
            self._wake.set()

    async def _session(self, feeder: asyncio.Task[None]) -> None:
        """One ``StreamTransactions`` call: write while the window has room, read answers until all is done.

        A failed write is not the verdict: the call's status, which the reader
        raises, says why the stream ended (a write racing the server's abort
        only reports "Internal error from Core").
        """
        call = self._stub.StreamTransactions(metadata=self._metadata)
        writer = asyncio.create_task(self._write(call))
        reader = asyncio.create_task(self._read(call))
        watched = {writer, reader, feeder}
        try:
            while reader not in (done := (await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED))[0]):
                for task in done & {writer, feeder}:
                    watched.discard(task)
                    error = task.exception()
                    if error is not None and not isinstance(error, grpc.aio.AioRpcError):
                        call.cancel()
                        raise error
            await reader
        finally:
            writer.cancel()
            reader.cancel()
            await asyncio.gather(writer, reader, return_exceptions=True)

    def _ready(self) -> bool:
        return len(self._in_flight) < self._window and bool(self._retry or self._fresh)

    async def _write(self, call: grpc.aio.StreamStreamCall) -> None:
        await call.initial_metadata()
        while True:
            while not (self._ready() or self._finished()):
                self._wake.clear()
                await self._wake.wait()
            # The stream may have ended during the wait, its status not yet read: grpc.aio would raise
            # InvalidStateError rather than the status. Leave the verdict to the reader (no await until the write).
            if call.done():
                return
            if self._finished():
                await call.done_writing()
                return
            if self._retry:
                outgoing = self._retry.popleft()
            else:
                outgoing = self._fresh.popleft()
                self._room.set()
                self.tally.sent += len(outgoing.batch.transactions)
            batch_id = next(self._ids)
            outgoing.batch.batch_id = batch_id
            outgoing.sent_at = time.monotonic()
            self._in_flight[batch_id] = outgoing
            await call.write(outgoing.batch)

    async def _read(self, call: grpc.aio.StreamStreamCall) -> None:
        async for response in call:
            self._on_response(response)
            self._wake.set()

    def _on_response(self, response: BatchResponse) -> None:
        outgoing = self._in_flight.pop(response.batch_id, None)
        if outgoing is None:
            raise ProducerError(f"The server answered batch_id={response.batch_id}, which is not in flight.")
        now = time.monotonic()
        tally = self.tally
        tally.accepted += response.accepted
        tally.duplicates += response.duplicates
        tally.record_latency(now - outgoing.sent_at, response.accepted)
        resend = [error.index for error in response.errors if error.code == "RESOURCE_EXHAUSTED"]
        final = [error for error in response.errors if error.code != "RESOURCE_EXHAUSTED"]
        tally.rejected += len(final)
        room = _KEPT_REJECTIONS - len(tally.rejections)
        tally.rejections.extend(f"{e.code}: {e.message}" for e in final[:max(room, 0)])
        if resend:
            self._schedule_resend(outgoing, resend)
        if self._on_accepted is not None and response.accepted:
            refused = {error.index for error in response.errors}
            self._on_accepted([m for i, m in enumerate(outgoing.batch.transactions) if i not in refused])
        if response.accepted or final:
            self._last_progress = now
        if self._progress is not None:
            self._progress.update(response.accepted + len(final))
            self._progress.set_postfix(rejected=tally.rejected, retried=tally.retried, refresh=False)

    def _schedule_resend(self, outgoing: _Outgoing, indexes: list[int]) -> None:
        """Send the rate-limited records again after a backoff that grows with each refusal."""
        again = TransactionBatch()
        again.transactions.extend(outgoing.batch.transactions[i] for i in indexes)
        retry = _Outgoing(again, attempts=outgoing.attempts + 1)
        self.tally.retried += len(indexes)
        self._scheduled += 1

        def requeue() -> None:
            self._scheduled -= 1
            self._retry.append(retry)
            self._wake.set()

        asyncio.get_running_loop().call_later(_backoff(retry.attempts), requeue)

    def _requeue_in_flight(self) -> None:
        for outgoing in reversed(self._in_flight.values()):
            outgoing.attempts += 1
            self.tally.retried += len(outgoing.batch.transactions)
            self._retry.appendleft(outgoing)
        self._in_flight.clear()


def _backoff(attempt: int) -> float:
    """Exponential backoff with full jitter: 0.1 s, 0.2 s, 0.4 s... capped at 5 s."""
    ceiling = min(_BACKOFF_MAX_S, _BACKOFF_START_S * 2 ** max(attempt - 1, 0))
    return random.uniform(ceiling / 2, ceiling)


async def stream_batches(
    target: str, batches: AsyncIterator[TransactionBatch], *, total: int | None = None, token: str | None = None,
    tls_ca: Path | None = None, window: int = 8, retry_timeout: float = 120.0, progress: bool = False,
    on_accepted: Callable[[list[TransactionRequest]], None] | None = None,
) -> ProduceSummary:
    """Send ``batches`` over ``StreamTransactions`` until every transaction was acknowledged or rejected.

    Args:
        target: ``host:port`` of the ingestion server.
        batches: the transactions to send; their ``batch_id`` is overwritten.
        total: expected number of transactions, for the progress bar.
        token: bearer token, when the server requires one.
        tls_ca: PEM certificate to trust, when the server uses TLS.
        window: batches in flight without an answer.
        retry_timeout: give up after this many seconds without any acknowledgement.
        progress: show a tqdm bar with the live rate.
        on_accepted: called with the transactions of every acknowledged batch (for checks).

    Raises:
        ProducerError: a non-retriable status (e.g. UNAUTHENTICATED) or no progress for ``retry_timeout`` seconds.
    """
    bar = tqdm(total=total, unit="tx", unit_scale=True, desc="produce", disable=not progress, dynamic_ncols=True)
    started = time.monotonic()
    async with open_channel(target, tls_ca=tls_ca) as channel:
        streamer = _Streamer(channel, metadata=auth_metadata(token), window=window, retry_timeout=retry_timeout,
                             progress=bar if progress else None, on_accepted=on_accepted)
        try:
            await streamer.run(batches)
        finally:
            bar.close()
    return streamer.tally.summary(time.monotonic() - started)


# --------------------------------------------------------------------------- the producer


@dataclass(frozen=True)
class ProducerSettings:
    """A producer run (``fraudlab produce``).

    Args:
        target: ``host:port`` of the ingestion server.
        count: transactions to send; None sends until stopped.
        rate: transactions per second; None sends as fast as acknowledged.
        users: size of the ``user_id`` pool.
        batch_size: transactions per batch at full speed.
        window: batches in flight.
        seed: seeds the rows and users (ids and timestamps are always fresh).
        speed: simulated seconds per wall second when replaying an account stream; None: no waiting.
        token, tls_ca: see :func:`stream_batches`.
        retry_timeout: give up after this many seconds without an acknowledgement.
    """

    target: str = config.SERVICE_TARGET
    count: int | None = 1000
    rate: float | None = None
    users: int = config.PRODUCER_USERS
    batch_size: int = config.PRODUCER_BATCH_SIZE
    window: int = config.PRODUCER_WINDOW
    seed: int | None = None
    speed: float | None = config.REPLAY_SPEED
    token: str | None = field(default=None, repr=False)
    tls_ca: Path | None = None
    retry_timeout: float = config.PRODUCER_RETRY_TIMEOUT_S

    def __post_init__(self) -> None:
        checks = [
            ("count", self.count is None or self.count >= 0, "None (unbounded) or >= 0"),
            ("rate", self.rate is None or self.rate > 0, "None (max) or > 0"),
            ("speed", self.speed is None or self.speed > 0, "None (no waiting) or > 0"),
            ("users", self.users >= 1, "at least 1"),
            ("batch_size", self.batch_size >= 1, "at least 1"),
            ("window", self.window >= 1, "at least 1"),
            ("retry_timeout", self.retry_timeout > 0, "> 0 seconds"),
        ]
        problems = [f"{name}={getattr(self, name)!r} must be {rule}" for name, ok, rule in checks if not ok]
        if problems:
            raise ProducerError("Invalid producer settings:\n  - " + "\n  - ".join(problems))


async def produce_async(
    settings: ProducerSettings, source: TransactionSource | None = None, *, stream: pd.DataFrame | None = None,
    progress: bool = False, on_accepted: Callable[[list[TransactionRequest]], None] | None = None,
    stop: asyncio.Event | None = None,
) -> ProduceSummary:
    """Stream transactions through the service: an account ``stream`` replayed, or rows sampled from ``source``.

    Without a stream, rows come from ``source`` (default: :func:`default_source`,
    the pre-trained model). Setting ``stop`` ends sampling; what was already
    sent is still seen through to an acknowledgement.
    """
    if stream is not None:
        total = len(stream) if settings.count is None else min(settings.count, len(stream))
        batches = replay_batches(stream, speed=settings.speed, rate=settings.rate, batch_size=settings.batch_size,
                                 count=settings.count)
    else:
        total = settings.count
        batches = paced_batches(source or default_source(), count=settings.count, rate=settings.rate,
                                users=settings.users, batch_size=settings.batch_size,
                                rng=np.random.default_rng(settings.seed))
    if stop is not None:
        batches = _until(batches, stop)
    return await stream_batches(
        settings.target, batches, total=total, token=settings.token, tls_ca=settings.tls_ca,
        window=settings.window, retry_timeout=settings.retry_timeout, progress=progress, on_accepted=on_accepted,
    )


async def _until(batches: AsyncIterator[_T], stop: asyncio.Event) -> AsyncIterator[_T]:
    async for batch in batches:
        if stop.is_set():
            return
        yield batch


def produce(
    settings: ProducerSettings, source: TransactionSource | None = None, *, stream: pd.DataFrame | None = None,
    progress: bool = False, on_accepted: Callable[[list[TransactionRequest]], None] | None = None,
    handle_signals: bool = False,
) -> ProduceSummary:
    """Blocking :func:`produce_async`; works in a Jupyter kernel too (then it runs on a helper thread).

    With ``handle_signals`` (the CLI) the first SIGINT/SIGTERM stops sampling
    and waits for the acknowledgements of what was sent; a second one aborts.
    """

    async def main() -> ProduceSummary:
        stop = asyncio.Event()
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()

        def on_signal() -> None:
            if stop.is_set() and task is not None:
                task.cancel()
            stop.set()

        if handle_signals:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, on_signal)
        try:
            return await produce_async(settings, source, stream=stream, progress=progress, on_accepted=on_accepted,
                                       stop=stop)
        except asyncio.CancelledError:
            raise ProducerError("Stopped by a second signal before every transaction sent was acknowledged; "
                                "the server drops repeats, so resending them later is safe.") from None

    return run_blocking(main)


def run_blocking(main: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    """Run ``main()`` to completion: on this thread, or on a helper thread when an event loop already runs here."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(main())
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = asyncio.run(main())
        except BaseException as exc:
            outcome["error"] = exc

    helper = threading.Thread(target=target, name="fraudlab-produce")
    helper.start()
    helper.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]

