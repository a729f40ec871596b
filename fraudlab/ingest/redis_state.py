"""One ingestion worker's connection to the Redis that all workers share: scripts, lease, availability.

The dedup and rate-limit backends (``dedup.py``, ``ratelimit.py``) run their
Lua scripts through :class:`RedisState`. The scripts are files in
``fraudlab/ingest/lua`` so that another implementation of the tier (the Go
gateway) runs the very same code against the same keys.

Each worker has an owner id and a *lease* key that a heartbeat renews; a
worker whose lease expired counts as dead, and the transactions it was
publishing may be taken over by another worker. The heartbeat is also how a
worker notices Redis coming back after an outage: a Redis error marks the
state unavailable (health NOT_SERVING, calls answered UNAVAILABLE), and the
first heartbeat that renews the lease marks it available again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Sequence
from importlib import resources
from typing import Any

import redis
import redis.asyncio
from redis.backoff import NoBackoff
from redis.retry import Retry

from fraudlab import config
from fraudlab.exceptions import RedisUnavailableError, ServiceError

__all__ = ["RedisState", "lua_script", "redacted"]

_log = logging.getLogger(__name__)


def lua_script(name: str) -> str:
    """The text of ``fraudlab/ingest/lua/<name>.lua`` (package data, shared with other implementations)."""
    return (resources.files("fraudlab.ingest") / "lua" / f"{name}.lua").read_text()


def redacted(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    scheme, sep, rest = url.partition("://")
    credentials, at, location = rest.rpartition("@")
    if not at:
        return url
    user = credentials.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{location}" if ":" in credentials else url


class RedisState:
    """The shared Redis as one worker sees it.

    Args:
        url: ``redis://[:password@]host:port/db``.
        prefix: the first part of every key.
        lease: seconds this worker counts as alive without a heartbeat.
        timeout: seconds one Redis call may take.
        on_availability: called with True/False on the event loop when Redis becomes reachable/unreachable.
    """

    def __init__(self, url: str, *, prefix: str = config.REDIS_KEY_PREFIX, lease: float = config.REDIS_LEASE_S,
                 timeout: float = config.REDIS_TIMEOUT_S,
                 on_availability: Callable[[bool], None] | None = None) -> None:
        self.url = url
        self.prefix = prefix
        self.lease = lease
        self.owner = uuid.uuid4().hex
        self.available = True
        self.round_trips = 0
        self._timeout = timeout
        self._on_availability = on_availability
        self._client: redis.asyncio.Redis | None = None
        self._scripts: dict[str, Any] = {}
        self._heartbeat: asyncio.Task[None] | None = None

    @property
    def lease_prefix(self) -> str:
        return f"{self.prefix}:owner:"

    def key(self, kind: str, name: object) -> str:
        """``<prefix>:<kind>:<name>``, the layout the Lua scripts and other implementations expect."""
        return f"{self.prefix}:{kind}:{name}"

    async def open(self) -> None:
        """Connect, take the lease and start the heartbeat.

        Raises:
            ServiceError: Redis is unreachable, refuses the password, or the URL is malformed (a
                configuration error: the server does not start).
        """
        try:
            self._client = redis.asyncio.Redis.from_url(
                self.url, socket_timeout=self._timeout, socket_connect_timeout=self._timeout,
                retry=Retry(NoBackoff(), 1), health_check_interval=0)
            for name in ("dedup_claim", "dedup_settle", "token_bucket"):
                self._scripts[name] = self._client.register_script(lua_script(name))
            await self._renew()
        except (redis.RedisError, ValueError) as exc:
            await self.close()
            raise ServiceError(f"Redis at {redacted(self.url)} cannot be used ({type(exc).__name__}: {exc}): start it "
                               "(`fraudlab redis up`), or fix --redis / REDIS_URL (host, port, password).") from exc
        self._heartbeat = asyncio.create_task(self._beat())

    async def close(self) -> None:
        """Stop the heartbeat and drop the lease, so waiting workers take over at once (best effort)."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
            self._heartbeat = None
        if self._client is not None:
            with contextlib.suppress(redis.RedisError, OSError):
                await self._client.delete(self.key("owner", self.owner))
            await self._client.aclose()
            self._client = None

    async def run(self, script: str, keys: Sequence[str], args: Sequence[object]) -> list[int]:
        """Run one Lua script (EVALSHA, loading it again after a Redis restart): one round trip.

        Raises:
            RedisUnavailableError: Redis did not answer (the state turns unavailable until a heartbeat succeeds).
        """
        if self._client is None:
            raise RedisUnavailableError(f"Redis at {redacted(self.url)} is not connected (the server is stopping)")
        self.round_trips += 1
        try:
            return await self._scripts[script](keys=list(keys), args=list(args))
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            self._set_available(False, f"{script}: {type(exc).__name__}: {exc}")
            raise RedisUnavailableError(
                f"Redis at {redacted(self.url)} did not answer ({exc}); nothing was acknowledged, resend later"
            ) from exc

    async def _renew(self) -> None:
        assert self._client is not None
        await self._client.set(self.key("owner", self.owner), "1", px=int(self.lease * 1000))

    async def _beat(self) -> None:
        """Renew the lease three times per lease period; report Redis's availability as it changes."""
        while True:
            await asyncio.sleep(self.lease / 3)
            try:
                await self._renew()
            except (redis.RedisError, OSError) as exc:
                self._set_available(False, f"heartbeat: {type(exc).__name__}: {exc}")
            else:
                self._set_available(True)

    def _set_available(self, available: bool, reason: str = "") -> None:
        if available == self.available:
            return
        self.available = available
        _log.warning("Redis at %s became %s%s", redacted(self.url), "reachable" if available else "unreachable",
                     f" ({reason})" if reason else "")
        if self._on_availability is not None:
            self._on_availability(available)
