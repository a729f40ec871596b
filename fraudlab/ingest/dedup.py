"""Which ``transaction_id`` was published: the ingestion tier's deduplication, in memory or shared in Redis.

Both backends keep one rule: an id counts as published only after Kafka
confirmed it, so an id is never acknowledged that Kafka did not confirm, and a
failed publish lets a retry publish again. A batch's ids are *claimed* before
publishing; each claim is one of:

- ``NEW``: nobody has it; publish it (a claim on an id whose owner died is
  also ``NEW``: it is published again, at least once, and the stream job drops
  such repeats by id);
- ``PUBLISHED``: Kafka confirmed it within the window; acknowledge it as a
  duplicate without publishing;
- ``PENDING``: a live publisher has it in flight; :meth:`Dedup.wait` for its
  verdict (bounded by the ack timeout).

:class:`MemoryDedup` is the embedded default (one process). :class:`RedisDedup`
keeps a per-id state machine, *pending(owner, claim)* → *published* with the window as
TTL, in Lua scripts (``lua/dedup_*.lua``) that run atomically, one call per
batch, so N workers on one or more machines share it.
"""

from __future__ import annotations

import abc
import asyncio
import collections
import enum
import itertools
import logging
import time
from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING

from fraudlab.exceptions import KafkaUnavailableError, RedisUnavailableError, ServiceUnavailableError
from fraudlab.kafka.publisher import Delivery

if TYPE_CHECKING:  # redis is imported only by servers configured with a Redis
    from fraudlab.ingest.redis_state import RedisState

__all__ = ["Claim", "Dedup", "MemoryDedup", "RedisDedup"]

_log = logging.getLogger(__name__)
_FIRST_POLL_S = 0.002
_MAX_POLL_S = 0.05


class Claim(enum.IntEnum):
    """What a claim on one id found (the codes ``dedup_claim.lua`` returns, dead-owner takeover folded into NEW)."""

    NEW = 0
    PUBLISHED = 1
    PENDING = 2


class Dedup(abc.ABC):
    """The deduplication a server's admission runs, per batch: claim, publish what is new, track or release."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Finish recording verdicts still in progress, at shutdown."""

    @abc.abstractmethod
    async def claim(self, transaction_ids: Sequence[str], now: float) -> list[Claim]:
        """Claim distinct ``transaction_ids`` (monotonic time ``now``), one :class:`Claim` each, in order.

        Raises:
            RedisUnavailableError: the shared state could not be read; nothing was claimed or acknowledged.
        """

    @abc.abstractmethod
    def track(self, transaction_ids: Sequence[str], delivery: Delivery, now: float) -> Awaitable[None]:
        """Record ``delivery``'s verdict on claimed ids when Kafka gives it; the awaitable ends once it is recorded."""

    @abc.abstractmethod
    def release(self, transaction_ids: Sequence[str]) -> None:
        """Give up claims that were not published (rate-limited, Kafka unreachable), so a retry can publish them."""

    @abc.abstractmethod
    async def wait(self, transaction_ids: Sequence[str], deadline: float) -> None:
        """Wait until the ``PENDING`` ids are confirmed, by monotonic ``deadline`` at the latest.

        Raises:
            ServiceUnavailableError: an earlier copy failed or was abandoned, or no verdict came by ``deadline``.
        """


def _not_confirmed(transaction_id: str, why: str) -> ServiceUnavailableError:
    return KafkaUnavailableError(f"the earlier copy of transaction {transaction_id!r} {why}; resend it later")


class MemoryDedup(Dedup):
    """This process's published ids, time and count bounded (the embedded default).

    ``_ids`` maps an id to the serial number of the delivery that carried it;
    ``_open`` keeps only deliveries still in flight or with failures, so a
    confirmed id costs a str and an int. Both are plain dicts of atomic values
    that the garbage collector never visits: an ``OrderedDict`` of delivery
    objects made every full collection walk a million entries, pausing the
    server for a tenth of a second.

    An id is forgotten after ``window`` seconds or when more than ``capacity``
    ids are held, batch by batch, oldest first; but never while its delivery
    is still in flight, since forgetting it then would let a retry publish it
    a second time. Its coroutines never suspend, so claiming and publishing a
    batch is one uninterrupted step of the event loop.
    """

    def __init__(self, window: float, capacity: int) -> None:
        self.window = window
        self.capacity = capacity
        self._ids: dict[str, int] = {}
        self._open: dict[int, Delivery] = {}
        self._batches: collections.deque[tuple[float, int, tuple[str, ...]]] = collections.deque()
        self._serials = itertools.count()

    async def close(self) -> None:
        """Nothing to finish: verdicts are recorded by the deliveries' callbacks."""

    async def claim(self, transaction_ids: Sequence[str], now: float) -> list[Claim]:
        self._expire(now)
        return [self._state(transaction_id) for transaction_id in transaction_ids]

    def _state(self, transaction_id: str) -> Claim:
        serial = self._ids.get(transaction_id)
        if serial is None:
            return Claim.NEW
        delivery = self._open.get(serial)
        if delivery is None:
            return Claim.PUBLISHED
        if transaction_id in delivery.failed_ids:
            return Claim.NEW
        return Claim.PUBLISHED if delivery.future.done() else Claim.PENDING

    def track(self, transaction_ids: Sequence[str], delivery: Delivery, now: float) -> Awaitable[None]:
        serial = next(self._serials)
        self._ids.update(dict.fromkeys(transaction_ids, serial))
        self._open[serial] = delivery
        self._batches.append((now, serial, tuple(transaction_ids)))
        delivery.future.add_done_callback(lambda _: self._settled(serial))
        return delivery.future

    def release(self, transaction_ids: Sequence[str]) -> None:
        """Nothing to do: an id is remembered only from :meth:`track` on."""

    async def wait(self, transaction_ids: Sequence[str], deadline: float) -> None:
        deliveries = {self._open.get(self._ids.get(transaction_id, -1)) for transaction_id in transaction_ids}
        futures = {delivery.future for delivery in deliveries if delivery is not None and not delivery.future.done()}
        if futures:
            await asyncio.wait(futures, timeout=max(deadline - time.monotonic(), 0.0))
        for transaction_id in transaction_ids:
            delivery = self._open.get(self._ids.get(transaction_id, -1))
            if delivery is None:
                continue
            if not delivery.future.done():
                raise _not_confirmed(transaction_id, "was not confirmed by Kafka in time")
            if transaction_id in delivery.failed_ids:
                raise _not_confirmed(transaction_id, f"was not confirmed by Kafka ({delivery.error})")

    def _settled(self, serial: int) -> None:
        delivery = self._open.get(serial)
        if delivery is not None and not delivery.failed_ids:
            del self._open[serial]

    def _expire(self, now: float) -> None:
        horizon = now - self.window
        batches, ids, open_ = self._batches, self._ids, self._open
        while batches:
            created, serial, members = batches[0]
            pending = open_.get(serial)
            if (pending is not None and not pending.future.done()) or (
                    created > horizon and len(ids) <= self.capacity):
                return
            batches.popleft()
            open_.pop(serial, None)
            for transaction_id in members:
                if ids.get(transaction_id) == serial:
                    del ids[transaction_id]


class RedisDedup(Dedup):
    """Published ids shared by every worker through Redis (``dedup_claim.lua``, ``dedup_settle.lua``).

    A claim marks an id *pending* on this worker's owner id and on that claim
    call; once Kafka gave its verdict, one settle call per batch turns the
    confirmed ids into *published* for ``window`` seconds and drops the claims
    of the others. A verdict is recorded even if Redis is briefly away: the
    settle is retried in the background until Redis answers (the caller stops
    waiting at its deadline and answers UNAVAILABLE; the client's resend then
    finds the id published). A waiter polls with ``peek`` until the verdict is in.

    A claim call whose answer never came may still have been run by Redis (a
    timeout, a Redis shutting down after running it), leaving ids pending on a
    live owner that will never settle them: every resend would then wait in
    vain until the window ends. So a failed claim is undone like a release, in
    the background once Redis answers; naming the claim call in the pending
    value means the undo drops only what that call took, never a later claim
    of the same id nor one still in flight.

    Round trips per batch: one claim, one settle (plus a rate-limit call, and a
    peek per poll when a copy is in flight elsewhere).
    """

    def __init__(self, state: RedisState, window: float) -> None:
        self._state = state
        self._window_ms = int(window * 1000)
        self._recording: set[asyncio.Task[None]] = set()
        self._claim_serials = itertools.count()
        self._claimants: dict[str, str] = {}  # id -> the claim call holding it, until its verdict is settled

    async def close(self) -> None:
        """Wait briefly for verdicts still being recorded, then stop trying (their owner's lease runs out)."""
        if self._recording:
            await asyncio.wait(set(self._recording), timeout=self._state.lease)
        for task in list(self._recording):
            task.cancel()

    def _keys(self, transaction_ids: Sequence[str]) -> list[str]:
        return [self._state.key("dedup", transaction_id) for transaction_id in transaction_ids]

    async def _codes(self, transaction_ids: Sequence[str], mode: str, claimant: str) -> list[int]:
        state = self._state
        return await state.run("dedup_claim", self._keys(transaction_ids),
                               [claimant, self._window_ms, state.lease_prefix, mode])

    async def claim(self, transaction_ids: Sequence[str], now: float) -> list[Claim]:
        if not transaction_ids:
            return []
        claimant = f"{self._state.owner}:{next(self._claim_serials)}"
        try:
            codes = await self._codes(transaction_ids, "claim", claimant)
        except RedisUnavailableError:
            self._record(self._settle(transaction_ids, claimant, ["0"] * len(transaction_ids)))
            raise
        claims = [Claim.NEW if code in (0, 3) else Claim(code) for code in codes]
        self._claimants.update((t, claimant) for t, claim in zip(transaction_ids, claims, strict=True)
                               if claim is Claim.NEW)
        return claims

    def track(self, transaction_ids: Sequence[str], delivery: Delivery, now: float) -> Awaitable[None]:
        return self._record(self._verdict(transaction_ids, delivery))

    async def _verdict(self, transaction_ids: Sequence[str], delivery: Delivery) -> None:
        await delivery.future
        failed = delivery.failed_ids
        await self._settle_claimed(transaction_ids, ["0" if t in failed else "1" for t in transaction_ids])

    def release(self, transaction_ids: Sequence[str]) -> None:
        if transaction_ids:
            self._record(self._settle_claimed(transaction_ids, ["0"] * len(transaction_ids)))

    def _record(self, work: Awaitable[None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(work)
        self._recording.add(task)
        task.add_done_callback(self._recording.discard)
        return task

    async def _settle_claimed(self, transaction_ids: Sequence[str], flags: list[str]) -> None:
        """Settle ids claimed NEW, one call per claim call they came from (one, for a batch the server admits)."""
        groups: dict[str, tuple[list[str], list[str]]] = {}
        for transaction_id, flag in zip(transaction_ids, flags, strict=True):
            claimant = self._claimants.pop(transaction_id, self._state.owner)  # no entry: a "0" matches no claim
            ids, group_flags = groups.setdefault(claimant, ([], []))
            ids.append(transaction_id)
            group_flags.append(flag)
        for claimant, (ids, group_flags) in groups.items():
            await self._settle(ids, claimant, group_flags)

    async def _settle(self, transaction_ids: Sequence[str], claimant: str, flags: list[str]) -> None:
        """One settle call, retried until Redis answers: a verdict lost would leave ids pending on a live owner."""
        state = self._state
        keys = self._keys(transaction_ids)
        delay = _MAX_POLL_S
        while True:
            try:
                await state.run("dedup_settle", keys, [claimant, self._window_ms, *flags])
                return
            except RedisUnavailableError as exc:
                _log.debug("recording a verdict waits for Redis: %s", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, state.lease / 3)

    async def wait(self, transaction_ids: Sequence[str], deadline: float) -> None:
        remaining = list(transaction_ids)
        delay = _FIRST_POLL_S
        while True:
            codes = await self._codes(remaining, "peek", f"{self._state.owner}:")
            for transaction_id, code in zip(remaining, codes, strict=True):
                if code == 0:
                    raise _not_confirmed(transaction_id, "was not published (its publisher released it)")
                if code == 3:
                    raise _not_confirmed(transaction_id, "was abandoned by a worker that stopped")
            remaining = [t for t, code in zip(remaining, codes, strict=True) if code == 2]
            if not remaining:
                return
            if time.monotonic() + delay > deadline:
                raise _not_confirmed(remaining[0], "was not confirmed by Kafka in time")
            await asyncio.sleep(delay)
            delay = min(delay * 2, _MAX_POLL_S)
