"""Shared fixtures: a real Kafka broker for the session, fresh topics, the repository root.

Markers say what a test needs, so ``-m "not kafka"`` runs every unit test
without a broker. A test that asks for the session broker (``kafka_bootstrap``,
directly or through a fixture) is marked ``kafka`` here, from its fixtures, so
the mark cannot drift from what the test does; a test that starts a broker of
its own carries the mark itself. The committed notebooks run by nbval are
``slow``, and those that start a broker are ``kafka`` too.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from fraudlab.infra.broker import BrokerSettings, LocalBroker
from fraudlab.infra.process import free_port

REPO_ROOT = Path(__file__).resolve().parent.parent

# Committed notebooks that start a real Kafka broker when nbval runs them as they are.
NOTEBOOKS_NEEDING_KAFKA = frozenset({"03_grpc_kafka_pipeline.ipynb"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.suffix == ".ipynb":
            item.add_marker(pytest.mark.slow)
            if item.path.name in NOTEBOOKS_NEEDING_KAFKA:
                item.add_marker(pytest.mark.kafka)
        elif "kafka_bootstrap" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.kafka)


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
    from fraudlab.kafka.admin import ensure_topic

    name = f"test-{uuid.uuid4().hex[:12]}"
    ensure_topic(kafka_bootstrap, name, partitions=3)
    return name
