"""The gRPC ingestion service: validate transactions, publish them to Kafka, answer once Kafka confirmed.

``fraud.FraudIngestion`` keeps the original system's unary ``SendTransaction``
and adds ``StreamTransactions``, a bidirectional stream of batches for
throughput. Both follow one rule: a transaction is acknowledged only after
Kafka confirmed it (``acks=all``, idempotent producer). When Kafka cannot be
reached the call fails with ``UNAVAILABLE``, never with a success.

Resending is always safe. Every published ``transaction_id`` is remembered for
a window (``dedup.py``: in this process's memory, or shared by every worker in
Redis); a repeat is acknowledged without being published again, and a repeat
of a transaction still in flight waits for the original's verdict. A client
that retries everything it did not see acknowledged therefore ends with every
transaction in the topic exactly once (at least once after a worker crash:
what it had in flight may be published again).

The server binds loopback by default and offers TLS, bearer tokens, a per-user
token-bucket rate limit (``ratelimit.py``, shared in Redis too), a maximum message size, standard health checking and
server reflection. SIGTERM/SIGINT stop it gracefully: health turns
NOT_SERVING, streams stop reading and answer what they already published,
in-flight calls finish, the producer flushes.

Run it with ``fraudlab serve``, or in-process (tests, notebooks) with
:class:`IngestionServer`, which runs its own event loop in a background thread.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import gc
import hmac
import ipaddress
import logging
import math
import signal
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
from confluent_kafka import KafkaException
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import FileDescriptor
from google.protobuf.message import DecodeError, Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import SERVICE_NAME as HEALTH_SERVICE_NAME
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection

from fraudlab import config
from fraudlab.exceptions import (
    KafkaTimeoutError,
    KafkaUnavailableError,
    RedisUnavailableError,
    ServiceError,
    ServiceUnavailableError,
)
from fraudlab.ingest.channel import channel_options
from fraudlab.ingest.dedup import Claim, Dedup, MemoryDedup, RedisDedup
from fraudlab.ingest.ratelimit import MemoryRateLimiter, RateLimiter, RedisRateLimiter
from fraudlab.kafka.admin import ensure_topic
from fraudlab.kafka.publisher import AsyncPublisher, Delivery
from fraudlab.schema.messages import IngestionResponse, TransactionRequest
from fraudlab.schema.proto import fraud_pb2, fraud_pb2_grpc
from fraudlab.schema.proto.fraud_pb2 import BatchResponse, RecordError, TransactionBatch
from fraudlab.schema.table import TRANSACTION_TYPES

if TYPE_CHECKING:  # redis is imported only by servers configured with a Redis
    from fraudlab.ingest.redis_state import RedisState

__all__ = [
    "SERVICE_NAME",
    "IngestionServer",
    "ServiceSettings",
    "client_target",
    "is_ip_address",
    "run_server",
    "serve",
    "transaction_problems",
]

SERVICE_NAME: str = fraud_pb2.DESCRIPTOR.services_by_name["FraudIngestion"].full_name
MIN_TIMESTAMP_MS = 946_684_800_000  # 2000-01-01T00:00:00Z: older "epoch milliseconds" are seconds or garbage
DAY_MS = 86_400_000

_BALANCE_FIELDS = ("old_balance_orig", "new_balance_orig", "old_balance_dest", "new_balance_dest")
_TYPES = frozenset(TRANSACTION_TYPES)
_INF = math.inf
_SHUTTING_DOWN = "the ingestion server is shutting down; resend unanswered transactions to a running server"
_log = logging.getLogger(__name__)



@dataclass(frozen=True)
class ServiceSettings:
    """How the ingestion server listens, publishes and protects itself.

    Args:
        bootstrap: Kafka bootstrap servers.
        topic: topic the transactions go to; created if missing.
        partitions: partitions of a topic created here.
        host: interface to bind; loopback unless you mean to expose it.
        port: TCP port; 0 picks a free one (see :attr:`IngestionServer.target`).
        tls_cert, tls_key: PEM files; both set turns TLS on.
        tokens: accepted bearer tokens; empty disables authentication.
        rate_limit: transactions per second allowed per ``user_id``; 0 disables.
        rate_burst: token-bucket depth per user.
        dedup_window: seconds a published ``transaction_id`` is remembered...
        dedup_capacity: ...and at most this many ids (the oldest are forgotten first; memory backend only).
        redis_url: ``redis://[:password@]host:port/db`` of the Redis holding dedup and rate-limit state shared
            by every worker; None keeps both in this process's memory.
        redis_lease: seconds a worker counts as alive without renewing its lease in Redis; after that another
            worker takes over (publishes again) what it had in flight.
        reuse_port: bind with SO_REUSEPORT, so several worker processes share ``port`` (``--workers``).
        max_message_bytes: largest request or response accepted.
        ack_timeout: seconds to wait for Kafka's confirmation before answering UNAVAILABLE.
        grace: seconds in-flight calls get to finish on shutdown.
        flush_timeout: seconds the producer gets to deliver queued records on shutdown.
        max_future_ms: how far past the server's clock a ``timestamp`` may lie.
        stream_window: batches one stream may have published but not yet answered.
        startup_timeout: seconds to wait for Kafka when starting.
        producer_overrides: librdkafka settings over the durable defaults.
    """

    bootstrap: str = config.KAFKA_BOOTSTRAP
    topic: str = config.TOPIC
    partitions: int = config.TOPIC_PARTITIONS
    host: str = config.SERVICE_HOST
    port: int = config.SERVICE_PORT
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tokens: tuple[str, ...] = field(default=(), repr=False)
    rate_limit: float = config.RATE_LIMIT
    rate_burst: float = config.RATE_BURST
    dedup_window: float = config.DEDUP_WINDOW_S
    dedup_capacity: int = config.DEDUP_CAPACITY
    redis_url: str | None = field(default=None, repr=False)
    redis_lease: float = config.REDIS_LEASE_S
    reuse_port: bool = False
    max_message_bytes: int = config.MAX_MESSAGE_BYTES
    ack_timeout: float = config.ACK_TIMEOUT_S
    grace: float = config.SERVICE_GRACE_S
    flush_timeout: float = 30.0
    max_future_ms: int = DAY_MS
    stream_window: int = 64
    startup_timeout: float = 15.0
    producer_overrides: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        problems = [
            *self._range_problems(),
            *self._tls_problems(),
            *(f"tokens contains an empty or blank token {t!r}" for t in self.tokens if not t.strip() or " " in t),
        ]
        if problems:
            raise ServiceError("Invalid ingestion server settings:\n  - " + "\n  - ".join(problems))

    def _range_problems(self) -> list[str]:
        checks = [
            ("partitions", self.partitions >= 1, "at least 1"),
            ("port", 0 <= self.port <= 65535, "between 0 (any free port) and 65535"),
            ("rate_limit", self.rate_limit >= 0, ">= 0 (0 disables the limit)"),
            ("rate_burst", self.rate_limit == 0 or self.rate_burst >= 1, ">= 1 when rate_limit is set"),
            ("dedup_window", self.dedup_window > 0, "> 0 seconds"),
            ("dedup_capacity", self.dedup_capacity >= 1, "at least 1"),
            ("redis_lease", self.redis_lease > 0, "> 0 seconds"),
            ("max_message_bytes", self.max_message_bytes >= 4096, "at least 4096"),
            ("ack_timeout", self.ack_timeout > 0, "> 0 seconds"),
            ("grace", self.grace >= 0, ">= 0 seconds"),
            ("flush_timeout", self.flush_timeout >= 0, ">= 0 seconds"),
            ("max_future_ms", self.max_future_ms >= 0, ">= 0"),
            ("stream_window", self.stream_window >= 1, "at least 1"),
            ("startup_timeout", self.startup_timeout > 0, "> 0 seconds"),
        ]
        return [f"{name}={getattr(self, name)!r} must be {rule}" for name, ok, rule in checks if not ok]

    def _tls_problems(self) -> list[str]:
        if (self.tls_cert is None) != (self.tls_key is None):
            return [f"tls_cert={self.tls_cert} and tls_key={self.tls_key}: give both PEM files, or neither"]
        return [
            f"{name}={path} does not exist" for name, path in (("tls_cert", self.tls_cert), ("tls_key", self.tls_key))
            if path is not None and not Path(path).is_file()
        ]


# --------------------------------------------------------------------------- validation


def transaction_problems(message: TransactionRequest, *, now_ms: int, max_future_ms: int = DAY_MS) -> list[str]:
    """Everything wrong with one transaction, each naming the field and its value; empty when it is valid.

    ``is_unauthorized_overdraft`` and ``user_id`` carry no rule: any value is
    a legal flag or account number.
    """
    return list(_problems(message, now_ms + max_future_ms))


def _problems(message: TransactionRequest, latest_ms: int) -> Sequence[str]:
    """:func:`transaction_problems` with positional arguments: it runs once per record on the hot path.

    A valid record gets the empty tuple, which Python does not allocate
    (a quarter of the check's cost when it returned a new empty list).
    """
    if (message.transaction_id and message.type in _TYPES and 0.0 <= message.amount < _INF
            and 0.0 <= message.old_balance_orig < _INF and 0.0 <= message.new_balance_orig < _INF
            and 0.0 <= message.old_balance_dest < _INF and 0.0 <= message.new_balance_dest < _INF
            and MIN_TIMESTAMP_MS <= message.timestamp <= latest_ms
            and (not message.ip_address or is_ip_address(message.ip_address))):
        return ()
    problems = []
    if not message.transaction_id:
        problems.append("transaction_id='' is empty: give every transaction a unique id (a UUID)")
    if message.type not in _TYPES:
        problems.append(f"type={message.type!r} is not one of {', '.join(TRANSACTION_TYPES)}")
    amount = message.amount
    if not 0.0 <= amount < _INF:
        problems.append(f"amount={amount!r} must be a finite number >= 0")
    for name in _BALANCE_FIELDS:
        value = getattr(message, name)
        if not 0.0 <= value < _INF:
            problems.append(f"{name}={value!r} must be a finite number >= 0")
    stamp = message.timestamp
    if not MIN_TIMESTAMP_MS <= stamp <= latest_ms:
        hint = " (it looks like seconds)" if MIN_TIMESTAMP_MS // 1000 <= stamp <= latest_ms // 1000 else ""
        problems.append(f"timestamp={stamp} is not plausible epoch milliseconds{hint}: expected {MIN_TIMESTAMP_MS} "
                        f"(2000-01-01) to {latest_ms} (the server's clock plus the allowed skew)")
    address = message.ip_address
    if address and not is_ip_address(address):
        problems.append(f"ip_address={address!r} is not an IPv4 or IPv6 address (leave it empty when unknown)")
    return problems


@functools.lru_cache(maxsize=1 << 16)
def is_ip_address(text: str) -> bool:
    """Whether ``text`` is an IPv4 or IPv6 address in text form; cached, as a stream repeats its clients' addresses."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


# --------------------------------------------------------------------------- the servicer


class _Admission:
    """A batch after validation, deduplication and rate limiting: what was published and what must be awaited."""

    __slots__ = ("batch_id", "count", "delivery", "duplicates", "errors", "recorded", "started", "unavailable",
                 "waits")

    def __init__(self, batch_id: int, count: int, started: float) -> None:
        self.batch_id = batch_id
        self.count = count
        self.started = started
        self.delivery: Delivery | None = None
        self.recorded: Awaitable[None] | None = None
        self.waits: list[str] = []
        self.errors: list[RecordError] = []
        self.duplicates = 0
        self.unavailable: ServiceUnavailableError | None = None

    def response(self) -> BatchResponse:
        rejected = len(self.errors)
        return BatchResponse(batch_id=self.batch_id, accepted=self.count - rejected, duplicates=self.duplicates,
                             rejected=rejected, errors=self.errors)


@dataclass(frozen=True, slots=True)
class _Unparseable:
    """A request body that is not a serialized ``expected`` message: the client's fault, not the server's."""

    expected: str
    reason: str

    def describe(self) -> str:
        return f"the request is not a {self.expected}: {self.reason}; send a serialized {self.expected}"


class _MalformedRequestError(Exception):
    """Raised by a stream's reader when a message does not parse; the call then ends INVALID_ARGUMENT."""


def _tolerant_parser(message_class: type[Message]) -> Callable[[bytes], Message | _Unparseable]:
    """A request deserializer that hands the handler an :class:`_Unparseable` instead of raising.

    grpc answers a deserializer's exception with UNKNOWN (unary) or
    INTERNAL; the handler can only say INVALID_ARGUMENT if it sees the failure.
    """
    expected = message_class.DESCRIPTOR.full_name

    def parse(data: bytes) -> Message | _Unparseable:
        try:
            return message_class.FromString(data)
        except DecodeError as exc:
            return _Unparseable(expected, str(exc) or "it does not parse")

    return parse


def _add_ingestion_service(servicer: _IngestionServicer, server: grpc.aio.Server) -> None:
    """Register ``fraud.FraudIngestion`` like the generated helper does, with tolerant request parsers."""
    handlers = {
        "SendTransaction": grpc.unary_unary_rpc_method_handler(
            servicer.SendTransaction, request_deserializer=_tolerant_parser(TransactionRequest),
            response_serializer=IngestionResponse.SerializeToString),
        "StreamTransactions": grpc.stream_stream_rpc_method_handler(
            servicer.StreamTransactions, request_deserializer=_tolerant_parser(TransactionBatch),
            response_serializer=BatchResponse.SerializeToString),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)


class _IngestionServicer(fraud_pb2_grpc.FraudIngestionServicer):
    """``fraud.FraudIngestion``: admit transactions, publish them, answer after Kafka's verdict."""

    def __init__(self, settings: ServiceSettings, publisher: AsyncPublisher, dedup: Dedup,
                 limiter: RateLimiter | None) -> None:
        self._settings = settings
        self._publisher = publisher
        self._dedup = dedup
        self._limiter = limiter
        self._readers: set[asyncio.Task[None]] = set()
        self._admitting: set[asyncio.Future[_Admission]] = set()
        self._draining = False

    def drain(self) -> None:
        """Stop reading new batches: streams answer what they already published, then end UNAVAILABLE."""
        self._draining = True
        for reader in list(self._readers):
            reader.cancel()

    # ---- admission
    async def _admit(self, transactions: Sequence[TransactionRequest], batch_id: int = 0) -> _Admission:
        """Validate, drop repeats, rate-limit and publish one batch, whole or not at all.

        It runs shielded from cancellation (a stream closed or drained mid-way):
        claims taken in Redis are then still published and recorded, or released.
        With the memory backends nothing in here suspends, so the batch is one
        uninterrupted step of the event loop, as before there were backends.
        """
        admission = asyncio.ensure_future(self._admission(transactions, batch_id))
        self._admitting.add(admission)
        admission.add_done_callback(self._admitting.discard)
        return await asyncio.shield(admission)

    async def _admission(self, transactions: Sequence[TransactionRequest], batch_id: int) -> _Admission:
        now = time.monotonic()
        admission = _Admission(batch_id, len(transactions), now)
        candidates = self._validated(transactions, admission)
        if not candidates:
            return admission
        try:
            claims = await self._dedup.claim(list(candidates), now)
        except RedisUnavailableError as exc:
            admission.unavailable = exc
            return admission
        fresh: list[tuple[int, TransactionRequest]] = []
        for (transaction_id, entry), claim in zip(candidates.items(), claims, strict=True):
            if claim is Claim.NEW:
                fresh.append(entry)
            else:
                admission.duplicates += 1
                if claim is Claim.PENDING:
                    admission.waits.append(transaction_id)
        try:
            fresh = await self._rate_limited(fresh, admission, now)
        except RedisUnavailableError as exc:
            self._dedup.release([message.transaction_id for _, message in fresh])
            admission.unavailable = exc
            return admission
        if fresh:
            self._publish(fresh, admission, now)
        return admission

    def _validated(self, transactions: Sequence[TransactionRequest],
                   admission: _Admission) -> dict[str, tuple[int, TransactionRequest]]:
        """The valid records by id, first copy of each (this loop is the server's hot path); the rest are errors."""
        latest_ms = time.time_ns() // 1_000_000 + self._settings.max_future_ms
        errors = admission.errors
        candidates: dict[str, tuple[int, TransactionRequest]] = {}
        for index, message in enumerate(transactions):
            transaction_id = message.transaction_id
            problems = _problems(message, latest_ms)
            if problems:
                errors.append(RecordError(index=index, transaction_id=transaction_id, code="INVALID_ARGUMENT",
                                          message=f"transaction {transaction_id!r}: " + "; ".join(problems)))
            elif transaction_id in candidates:
                admission.duplicates += 1
            else:
                candidates[transaction_id] = (index, message)
        return candidates

    async def _rate_limited(self, fresh: list[tuple[int, TransactionRequest]], admission: _Admission,
                            now: float) -> list[tuple[int, TransactionRequest]]:
        """The records the users' token buckets admit, in order; the others are RESOURCE_EXHAUSTED and released."""
        limiter = self._limiter
        if limiter is None or not fresh:
            return fresh
        wanted = collections.Counter(message.user_id for _, message in fresh)
        granted = await limiter.grant(wanted, now)
        admitted, refused = [], []
        for entry in fresh:
            user_id = entry[1].user_id
            if granted[user_id] > 0:
                granted[user_id] -= 1
                admitted.append(entry)
            else:
                refused.append(entry)
        for index, message in refused:
            admission.errors.append(RecordError(
                index=index, transaction_id=message.transaction_id, code="RESOURCE_EXHAUSTED",
                message=f"user_id={message.user_id} exceeded the rate limit of {limiter.rate:g} "
                        f"transactions/s (burst {limiter.burst:g}); resend later"))
        if refused:
            admission.errors.sort(key=lambda error: error.index)
            self._dedup.release([message.transaction_id for _, message in refused])
        return admitted

    def _publish(self, fresh: list[tuple[int, TransactionRequest]], admission: _Admission, now: float) -> None:
        records = [{"value": message.SerializeToString(), "key": str(message.user_id).encode(),
                    "timestamp": message.timestamp}
                   for _, message in fresh]
        ids = [message.transaction_id for _, message in fresh]
        try:
            admission.delivery = self._publisher.publish(records)
        except KafkaUnavailableError as exc:
            self._dedup.release(ids)
            admission.unavailable = exc
            return
        admission.recorded = self._dedup.track(ids, admission.delivery, now)

    async def _settle(self, admission: _Admission) -> None:
        """Wait for Kafka's verdict on everything ``admission`` depends on, and for its own to be recorded.

        Raises:
            ServiceUnavailableError: Kafka refused a record or did not confirm within ``ack_timeout``, an
                earlier copy of a repeat was not confirmed, or Redis did not answer.
        """
        if admission.unavailable is not None:
            raise admission.unavailable
        deadline = admission.started + self._settings.ack_timeout
        if admission.waits:
            await self._dedup.wait(admission.waits, deadline)
        own = admission.delivery
        if own is None:
            return
        if not own.future.done():
            await asyncio.wait({own.future}, timeout=max(deadline - time.monotonic(), 0.0))
        if not own.future.done():
            raise KafkaUnavailableError(
                f"Kafka at {self._publisher.bootstrap} did not confirm within {self._settings.ack_timeout:g} s; "
                "the transactions were not acknowledged, resend them later"
            )
        if own.failed_ids:
            raise KafkaUnavailableError(
                f"Kafka at {self._publisher.bootstrap} did not take {len(own.failed_ids)} transaction(s) "
                f"({own.error}); they were not acknowledged, resend them later"
            )
        recorded = asyncio.ensure_future(admission.recorded) if admission.recorded is not None else None
        if recorded is not None and not recorded.done():
            await asyncio.wait({recorded}, timeout=max(deadline - time.monotonic(), 0.0))
            if not recorded.done():
                raise RedisUnavailableError(
                    "Kafka confirmed the transactions but Redis did not record them as published in time; "
                    "resend them later (they will be acknowledged as duplicates)")

    # ---- RPCs
    async def SendTransaction(
        self, request: TransactionRequest, context: grpc.aio.ServicerContext
    ) -> IngestionResponse:
        """Validate one transaction and publish it; success only after Kafka confirmed it."""
        if isinstance(request, _Unparseable):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.describe())
        if self._draining:
            await context.abort(grpc.StatusCode.UNAVAILABLE, _SHUTTING_DOWN)
        admission = await self._admit([request])
        if admission.errors:
            error = admission.errors[0]
            await context.abort(grpc.StatusCode[error.code], error.message)
        try:
            await self._settle(admission)
        except ServiceUnavailableError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        if admission.duplicates:
            return IngestionResponse(success=True, message=(
                f"duplicate transaction_id {request.transaction_id!r}: already published, not published again"))
        last = admission.delivery.last if admission.delivery is not None else None
        where = f" partition {last.partition()} offset {last.offset()}" if last is not None else ""
        return IngestionResponse(success=True, message=f"published to {self._settings.topic}{where}")

    async def StreamTransactions(
        self, request_iterator: AsyncIterator[TransactionBatch], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[BatchResponse]:
        """Answer every batch in order once Kafka confirmed it; end UNAVAILABLE when Kafka cannot be reached."""
        if self._draining:
            await context.abort(grpc.StatusCode.UNAVAILABLE, _SHUTTING_DOWN)
        await context.send_initial_metadata(())
        admitted: asyncio.Queue[_Admission | None] = asyncio.Queue()
        window = asyncio.Semaphore(self._settings.stream_window)
        reader = asyncio.create_task(self._read_batches(request_iterator, admitted, window))
        self._readers.add(reader)
        reader.add_done_callback(self._readers.discard)
        try:
            while (admission := await admitted.get()) is not None:
                try:
                    await self._settle(admission)
                except ServiceUnavailableError as exc:
                    await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
                window.release()
                yield admission.response()
            await asyncio.wait({reader})
            if reader.cancelled():
                await context.abort(grpc.StatusCode.UNAVAILABLE, _SHUTTING_DOWN)
            failure = reader.exception()
            if isinstance(failure, _MalformedRequestError):
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(failure))
            if failure is not None:
                raise failure
        finally:
            reader.cancel()

    async def _read_batches(
        self, requests: AsyncIterator[TransactionBatch], admitted: asyncio.Queue[_Admission | None],
        window: asyncio.Semaphore,
    ) -> None:
        """Read, admit and queue batches while the window has room; cancelling it only ever drops unread batches."""
        try:
            while True:
                await window.acquire()
                batch = await anext(requests, None)
                if batch is None:
                    return
                if isinstance(batch, _Unparseable):
                    raise _MalformedRequestError(batch.describe())
                admission = await self._admit(batch.transactions, batch.batch_id)
                admitted.put_nowait(admission)
                if admission.unavailable is not None:
                    return
                await asyncio.sleep(0)  # let acks and answers through between buffered batches
        finally:
            admitted.put_nowait(None)


# --------------------------------------------------------------------------- authentication


class _BearerTokenInterceptor(grpc.aio.ServerInterceptor):
    """Refuse calls without ``authorization: Bearer <token>`` naming an accepted token (health checks exempt)."""

    def __init__(self, tokens: Sequence[str]) -> None:
        self._tokens = [t.encode() for t in tokens]

    def _authorized(self, metadata: Sequence[tuple[str, str | bytes]] | None) -> bool:
        for key, value in metadata or ():
            if key == "authorization":
                text = value.decode() if isinstance(value, bytes) else value
                scheme, _, token = text.partition(" ")
                if scheme.lower() == "bearer":
                    candidate = token.strip().encode()
                    return any(hmac.compare_digest(candidate, t) for t in self._tokens)
        return False

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Any], details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(details)
        if handler is None or details.method.startswith(f"/{HEALTH_SERVICE_NAME}/"):
            return handler
        if self._authorized(details.invocation_metadata):
            return handler
        return _refusing_handler(handler, details.method)


def _refusing_handler(handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
    """A handler of the same shape as ``handler`` that fails every call with UNAUTHENTICATED."""

    async def refuse(_request: object, context: grpc.aio.ServicerContext) -> None:
        await context.abort(
            grpc.StatusCode.UNAUTHENTICATED,
            f"{method} needs a valid bearer token: send metadata 'authorization: Bearer <token>'",
        )

    factory = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }[(handler.request_streaming, handler.response_streaming)]
    return factory(refuse, request_deserializer=handler.request_deserializer,
                   response_serializer=handler.response_serializer)


# --------------------------------------------------------------------------- the server


class _MethodAwarePool:
    """The descriptor pool that server reflection answers from, also finding a file by a method's full name.

    grpc-go clients such as ghz ask reflection for the file containing
    ``fraud.FraudIngestion.SendTransaction``; Python's pool knows services,
    messages and fields by name but not methods, so reflection answered
    NOT_FOUND and those clients could not call the service. Every other
    lookup goes to the wrapped pool unchanged.
    """

    def __init__(self, pool: descriptor_pool.DescriptorPool) -> None:
        self._pool = pool

    def FindFileContainingSymbol(self, symbol: str) -> FileDescriptor:
        try:
            return self._pool.FindFileContainingSymbol(symbol)
        except KeyError:
            service_name, _, method_name = symbol.rpartition(".")
            with contextlib.suppress(KeyError):
                service = self._pool.FindServiceByName(service_name)
                if method_name in service.methods_by_name:
                    return service.file
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)


def _redis_state(settings: ServiceSettings, on_availability: Callable[[bool], None]) -> RedisState:
    from fraudlab.ingest.redis_state import RedisState

    assert settings.redis_url is not None
    return RedisState(settings.redis_url, lease=settings.redis_lease, on_availability=on_availability)


def _state_backends(settings: ServiceSettings, redis_state: RedisState | None) -> tuple[Dedup, RateLimiter | None]:
    """Dedup and rate limit in this process's memory, or shared through ``redis_state``."""
    limited = settings.rate_limit > 0
    if redis_state is None:
        return (MemoryDedup(settings.dedup_window, settings.dedup_capacity),
                MemoryRateLimiter(settings.rate_limit, settings.rate_burst) if limited else None)
    return (RedisDedup(redis_state, settings.dedup_window),
            RedisRateLimiter(redis_state, settings.rate_limit, settings.rate_burst) if limited else None)


class _Runtime:
    """One running server on the current event loop: the grpc.aio server, its servicers, the publisher, Redis."""

    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self.port: int | None = None
        self._health = health_aio.HealthServicer()
        self._publisher = AsyncPublisher(settings.bootstrap, settings.topic, overrides=settings.producer_overrides,
                                         on_availability=functools.partial(self._availability, "Kafka"))
        self._redis = None if settings.redis_url is None else _redis_state(
            settings, functools.partial(self._availability, "Redis"))
        self._dedup, limiter = _state_backends(settings, self._redis)
        self._servicer = _IngestionServicer(settings, self._publisher, self._dedup, limiter)
        self._server: grpc.aio.Server | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._unreachable: set[str] = set()

    @property
    def redis_state(self) -> RedisState | None:
        """The connection to the shared Redis (None with the memory backends); its ``round_trips`` are counted."""
        return self._redis

    async def start(self) -> int:
        """Connect to Redis, make sure the topic exists, open the producer, bind and serve; return the bound port."""
        settings = self.settings
        if self._redis is not None:
            await self._redis.open()
        await asyncio.to_thread(self._ensure_topic)
        self._publisher.open()
        interceptors = [_BearerTokenInterceptor(settings.tokens)] if settings.tokens else []
        server = grpc.aio.server(interceptors=interceptors, options=[
            *channel_options(settings.max_message_bytes), ("grpc.so_reuseport", int(settings.reuse_port))])
        _add_ingestion_service(self._servicer, server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection((SERVICE_NAME, HEALTH_SERVICE_NAME, reflection.SERVICE_NAME), server,
                                            pool=_MethodAwarePool(descriptor_pool.Default()))
        self.port = self._bind(server)
        await server.start()
        self._server = server
        for service in ("", SERVICE_NAME):
            await self._health.set(service, health_pb2.HealthCheckResponse.SERVING)
        return self.port

    def _ensure_topic(self) -> None:
        settings = self.settings
        try:
            ensure_topic(settings.bootstrap, settings.topic, partitions=settings.partitions,
                         timeout=settings.startup_timeout)
        except (KafkaTimeoutError, TimeoutError, KafkaException) as exc:
            timed_out = isinstance(exc, KafkaTimeoutError | TimeoutError)
            what = (f"did not answer within {settings.startup_timeout:g} s" if timed_out
                    else "refused to create or describe the topic")
            raise ServiceError(
                f"Kafka at {settings.bootstrap} {what} ({exc}): start "
                "the broker (`fraudlab broker up`) or point --bootstrap / KAFKA_BROKER at a running one."
            ) from exc

    def _bind(self, server: grpc.aio.Server) -> int:
        settings = self.settings
        address = f"{settings.host}:{settings.port}"
        try:
            if settings.tls_cert is not None and settings.tls_key is not None:
                credentials = grpc.ssl_server_credentials(
                    [(Path(settings.tls_key).read_bytes(), Path(settings.tls_cert).read_bytes())]
                )
                port = server.add_secure_port(address, credentials)
            else:
                port = server.add_insecure_port(address)
        except RuntimeError as exc:
            port = 0
            reason = str(exc)
        else:
            reason = "no port was bound"
        if not port:
            raise ServiceError(f"Cannot listen on {address} ({reason}): the port is taken or the host is not local; "
                               "choose another with --port / --host.")
        return port

    def _availability(self, dependency: str, reachable: bool) -> None:
        """Health follows Kafka and Redis: SERVING only while both are reachable."""
        if reachable:
            self._unreachable.discard(dependency)
        else:
            self._unreachable.add(dependency)
        if dependency == "Kafka":
            _log.warning("Kafka at %s became %s", self.settings.bootstrap, "reachable" if reachable else "unreachable")
        serving = not self._unreachable
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for service in ("", SERVICE_NAME):
            task = asyncio.ensure_future(self._health.set(service, status))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def stop(self, grace: float | None = None) -> int:
        """Graceful shutdown; return how many queued records Kafka had still not confirmed after the flush."""
        await self._health.enter_graceful_shutdown()
        self._servicer.drain()
        if self._server is not None:
            await self._server.stop(self.settings.grace if grace is None else grace)
            self._server = None
        unconfirmed = await self._publisher.close(self.settings.flush_timeout)
        await self._dedup.close()
        if self._redis is not None:
            await self._redis.close()
        if unconfirmed:
            _log.error("%d records were still unconfirmed by Kafka at shutdown (none of them was acknowledged)",
                       unconfirmed)
        return unconfirmed


def _describe(settings: ServiceSettings, port: int) -> str:
    from fraudlab.ingest.redis_state import redacted

    security = "TLS" if settings.tls_cert else "plaintext"
    auth = "bearer tokens" if settings.tokens else "no authentication"
    state = f"shared state in Redis {redacted(settings.redis_url)}" if settings.redis_url else "state in memory"
    return (f"fraudlab ingestion listening on {settings.host}:{port} ({security}, {auth}, {state}); "
            f"publishing to Kafka {settings.bootstrap} topic {settings.topic!r}")


async def serve(settings: ServiceSettings, *, echo: Callable[[str], None] = print) -> None:
    """Serve until SIGTERM or SIGINT, then shut down gracefully (the coroutine behind ``fraudlab serve``).

    The process is the server's own, so once it is up everything alive is
    moved out of the garbage collector's sight (``gc.freeze``): full
    collections then walk only what serving allocates, not the imported
    libraries, which keeps them from stalling acknowledgements.
    """
    runtime = _Runtime(settings)
    try:
        port = await runtime.start()
    except BaseException:
        await runtime.stop(0)
        raise
    gc.collect()
    gc.freeze()
    echo(_describe(settings, port))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
        echo(f"shutting down: finishing in-flight calls (grace {settings.grace:g} s) and flushing Kafka")
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        unconfirmed = await runtime.stop()
    echo("stopped" + (f"; {unconfirmed} unacknowledged records were not confirmed by Kafka" if unconfirmed else ""))


def client_target(host: str, port: int) -> str:
    """Where a client on this machine reaches a server bound to ``host:port``: loopback when bound to every
    interface."""
    return f"{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}"


def run_server(settings: ServiceSettings, *, echo: Callable[[str], None] = print) -> None:
    """Run :func:`serve` on a new event loop in this thread; return after a graceful shutdown."""
    asyncio.run(serve(settings, echo=echo))


class IngestionServer:
    """The ingestion service running in a background thread of this process, for notebooks and tests.

    The server gets an event loop of its own, so it works next to a running
    Jupyter loop. Use it as a context manager, or call :meth:`start` and
    :meth:`stop` yourself:

    >>> with IngestionServer(ServiceSettings(bootstrap=bootstrap, port=0)) as target:
    ...     ...  # clients connect to `target`, e.g. "127.0.0.1:43117"
    """

    def __init__(self, settings: ServiceSettings | None = None, **overrides: Any) -> None:
        self.settings = replace(settings or ServiceSettings(), **overrides)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runtime: _Runtime | None = None

    @property
    def running(self) -> bool:
        return self._runtime is not None

    @property
    def target(self) -> str:
        """``host:port`` to connect to (loopback when bound to all interfaces)."""
        if self._runtime is None or self._runtime.port is None:
            raise ServiceError("The ingestion server is not running: call start() first.")
        return client_target(self.settings.host, self._runtime.port)

    def start(self, timeout: float = 60.0) -> str:
        """Start serving in a background thread; return :attr:`target` once the server accepts calls."""
        if self._runtime is not None:
            return self.target
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="fraudlab-ingestion", daemon=True)
        thread.start()
        runtime = _Runtime(self.settings)
        try:
            asyncio.run_coroutine_threadsafe(runtime.start(), loop).result(timeout)
        except BaseException:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(runtime.stop(0), loop).result(timeout)
            _stop_loop(loop, thread)
            raise
        self._loop, self._thread, self._runtime = loop, thread, runtime
        return self.target

    def stop(self, grace: float | None = None) -> None:
        """Shut down gracefully (see :func:`serve`) and end the background thread."""
        if self._runtime is None or self._loop is None or self._thread is None:
            return
        runtime, loop, thread = self._runtime, self._loop, self._thread
        self._runtime = self._loop = self._thread = None
        try:
            asyncio.run_coroutine_threadsafe(runtime.stop(grace), loop).result()
        finally:
            _stop_loop(loop, thread)

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _stop_loop(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
    loop.call_soon_threadsafe(loop.stop)
    thread.join()
    loop.close()
