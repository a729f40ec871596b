"""Both ends of a gRPC channel to the ingestion service: options, credentials, call metadata, health.

The server (:mod:`fraudlab.ingest.service`) and its clients
(:mod:`fraudlab.ingest.client`, ``fraudlab health``) share these, so a client
never imports the server.
"""

from __future__ import annotations

from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fraudlab import config
from fraudlab.exceptions import ServiceError

__all__ = ["auth_metadata", "channel_options", "check_health", "open_channel"]


def channel_options(max_message_bytes: int = config.MAX_MESSAGE_BYTES) -> list[tuple[str, int]]:
    """gRPC options shared by the server and its clients: message size limits."""
    return [("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes)]


def auth_metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    """Call metadata carrying ``token`` as a bearer token (empty without one)."""
    return (("authorization", f"Bearer {token}"),) if token else ()


def open_channel(target: str, *, tls_ca: Path | None = None,
                 max_message_bytes: int = config.MAX_MESSAGE_BYTES) -> grpc.aio.Channel:
    """An asyncio channel to the ingestion server; TLS when ``tls_ca`` (the CA or self-signed cert) is given."""
    options = channel_options(max_message_bytes)
    if tls_ca is None:
        return grpc.aio.insecure_channel(target, options=options)
    credentials = grpc.ssl_channel_credentials(root_certificates=Path(tls_ca).read_bytes())
    return grpc.aio.secure_channel(target, credentials, options=options)


def check_health(target: str, *, service: str = "", tls_ca: Path | None = None, timeout: float = 5.0) -> str:
    """Ask the standard health service at ``target``; return the status name (``SERVING``, ``NOT_SERVING``...).

    Raises:
        ServiceError: the server could not be reached or did not answer within ``timeout`` seconds.
    """
    if tls_ca is None:
        channel = grpc.insecure_channel(target)
    else:
        channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(root_certificates=Path(tls_ca).read_bytes()))
    with channel:
        try:
            answer = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
        except grpc.RpcError as exc:
            raise ServiceError(
                f"Health check of {target} (service {service!r}) failed: {exc.code().name}: {exc.details()}"
            ) from exc
    return health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
