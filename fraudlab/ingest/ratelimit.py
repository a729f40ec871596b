"""The per-user token bucket of the ingestion tier, in memory or shared by all workers in Redis.

Both backends answer one question per batch: of the tokens each user wants,
how many are granted now. The caller admits that many of the user's records,
in order, and refuses the rest with RESOURCE_EXHAUSTED.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # redis is imported only by servers configured with a Redis
    from fraudlab.ingest.redis_state import RedisState

__all__ = ["MemoryRateLimiter", "RateLimiter", "RedisRateLimiter", "TokenBuckets"]

# A bucket's fill time is a sum of intervals on a monotonic clock, and each addition rounds off (about 1e-10 s at a
# day of uptime), so a full bucket could refuse the last token of a burst taken at one instant. A microsecond of
# slack, as token_bucket.lua has (its fill times are whole microseconds), absorbs that; no rate below a million
# tokens/s gains a token from it.
_SLACK_S = 1e-6


class TokenBuckets:
    """One token bucket per key: ``rate`` tokens per second, at most ``burst`` saved up.

    Each bucket is kept as a single number, the time at which it will be full
    again (the "generic cell rate algorithm", which admits exactly what a token
    bucket admits): one dict lookup and one store per call, which halves the
    rate limit's share of the server's per-transaction cost. The dict holds
    only numbers, so the garbage collector never walks it, and buckets that are
    full again are dropped now and then, so memory follows the recently active
    users, not all users ever seen.
    """

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self._interval = 1.0 / rate
        self._allowance = (burst - 1.0) / rate + _SLACK_S
        self._full_at: dict[int, float] = {}
        self._next_prune = 0.0

    def take(self, key: int, now: float) -> bool:
        """Spend one token of ``key``'s bucket at monotonic time ``now``; False when it is empty."""
        full_at = self._full_at.get(key, now)
        if full_at < now:
            full_at = now
        if full_at - now > self._allowance:
            return False
        self._full_at[key] = full_at + self._interval
        return True

    def prune(self, now: float) -> None:
        """Forget buckets that are full again (at most every few seconds)."""
        if now < self._next_prune:
            return
        self._next_prune = now + 5.0
        for key in [key for key, full_at in self._full_at.items() if full_at <= now]:
            del self._full_at[key]


class RateLimiter(abc.ABC):
    """``rate`` tokens per second per user, ``burst`` saved up at most."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst

    @abc.abstractmethod
    async def grant(self, wanted: Mapping[int, int], now: float) -> dict[int, int]:
        """Tokens granted per user of ``wanted`` (user_id → tokens) at monotonic time ``now``.

        Raises:
            RedisUnavailableError: the shared buckets could not be read.
        """


class MemoryRateLimiter(RateLimiter):
    """:class:`TokenBuckets` of this process (the embedded default); its coroutine never suspends."""

    def __init__(self, rate: float, burst: float) -> None:
        super().__init__(rate, burst)
        self._buckets = TokenBuckets(rate, burst)

    async def grant(self, wanted: Mapping[int, int], now: float) -> dict[int, int]:
        buckets = self._buckets
        buckets.prune(now)
        granted = {}
        for user_id, count in wanted.items():
            taken = 0
            while taken < count and buckets.take(user_id, now):
                taken += 1
            granted[user_id] = taken
        return granted


class RedisRateLimiter(RateLimiter):
    """Buckets shared by every worker (``lua/token_bucket.lua``, Redis server time): one call per batch."""

    def __init__(self, state: RedisState, rate: float, burst: float) -> None:
        super().__init__(rate, burst)
        self._state = state

    async def grant(self, wanted: Mapping[int, int], now: float) -> dict[int, int]:
        users = list(wanted)
        keys = [self._state.key("bucket", user_id) for user_id in users]
        counts = await self._state.run("token_bucket", keys, [self.rate, self.burst, *wanted.values()])
        return dict(zip(users, counts, strict=True))
