"""The conformance suite's engines: every contract test runs against the Python server and the Go gateway alike."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from fraudlab.ingest.gateway import GatewayServer, build_gateway
from fraudlab.ingest.service import IngestionServer, ServiceSettings

Serve = Callable[..., AbstractContextManager[str]]


@pytest.fixture(scope="session")
def built_gateway() -> Path:
    """The Go gateway, built once per session (incremental: about a second when nothing changed)."""
    return build_gateway()


@pytest.fixture(params=["python", "go"])
def engine(request: pytest.FixtureRequest) -> str:
    if request.param == "go":
        request.getfixturevalue("built_gateway")
    return request.param


@pytest.fixture
def serve(engine: str) -> Serve:
    """``serve(settings)``: a context manager running the engine's server, yielding its ``host:port``."""
    server_class = GatewayServer if engine == "go" else IngestionServer

    def running(settings: ServiceSettings | None = None, **overrides: object) -> AbstractContextManager[str]:
        return server_class(settings, **overrides)  # type: ignore[arg-type]

    return running


@pytest.fixture
def serve_command(engine: str) -> list[str]:
    """The ``fraudlab serve`` arguments choosing the engine (the CLI path of each)."""
    return ["--engine", engine]
