"""Shared fixtures: a real Kafka broker for the session, fresh topics, the repository root."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from fraudlab.broker import BrokerSettings, LocalBroker, free_port

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def local_broker_settings(tmp_path_factory: pytest.TempPathFactory) -> BrokerSettings:
    """Where the session's own broker runs when no external one is given: free ports, a temporary state dir."""
    return BrokerSettings(
        port=free_port(), controller_port=free_port(), state_dir=tmp_path_factory.mktemp("kafka-broker")
    )


@pytest.fixture(scope="session")
def kafka_bootstrap(local_broker_settings: BrokerSettings) -> Iterator[str]:
    """A real Apache Kafka: ``KAFKA_BOOTSTRAP_SERVERS`` when set, else a local broker on free ports.

    A broker started here lives in a temporary state directory and is
    stopped (JVM exited, data removed) when the session ends.
    """
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield external
        return
    with LocalBroker(local_broker_settings, purge_on_exit=True) as bootstrap:
        yield bootstrap


@pytest.fixture
def topic(kafka_bootstrap: str) -> str:
    """A topic name no other test uses, created with three partitions."""
    from fraudlab.kafka import ensure_topic

    name = f"test-{uuid.uuid4().hex[:12]}"
    ensure_topic(kafka_bootstrap, name, partitions=3)
    return name
