"""Shared fixtures: a real Kafka broker and a real Redis for the session, fresh topics, the repository root.

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
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fraudlab.config import cache_root
from fraudlab.infra.broker import BrokerSettings, LocalBroker
from fraudlab.infra.process import free_port
from fraudlab.infra.redis import LocalRedis, RedisSettings

REPO_ROOT = Path(__file__).resolve().parent.parent
# The jar cache of every broker the suite starts: FRAUDLAB_CACHE_DIR like the `fraudlab broker fetch` that
# `make test` runs first (the library itself reads no environment).
CACHE_DIR = cache_root(os.environ)

# Committed notebooks that start a real Kafka broker when nbval runs them as they are.
NOTEBOOKS_NEEDING_KAFKA = frozenset({"03_grpc_kafka_pipeline.ipynb", "06_realtime_detection.ipynb"})


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


def _new_broker_settings(state_dir: Path, **overrides: object) -> BrokerSettings:
    return BrokerSettings(port=free_port(), controller_port=free_port(), state_dir=state_dir, cache_dir=CACHE_DIR,
                          **overrides)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def local_broker_settings(tmp_path_factory: pytest.TempPathFactory) -> BrokerSettings:
    """Where the session's own broker runs when no external one is given: free ports, a temporary state dir."""
    return _new_broker_settings(tmp_path_factory.mktemp("kafka-broker"))


@pytest.fixture
def fresh_broker_settings(tmp_path: Path) -> Callable[..., BrokerSettings]:
    """Settings of a broker nobody has started: free ports, empty state in ``tmp_path / name``, the suite's jars."""

    def settings(name: str = "state", **overrides: object) -> BrokerSettings:
        return _new_broker_settings(tmp_path / name, **overrides)

    return settings


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


@pytest.fixture(scope="session")
def cache_dir() -> Path:
    """The suite's cache (FRAUDLAB_CACHE_DIR, else ~/.cache/fraudlab): where `make geoip` put the GeoIP databases."""
    return CACHE_DIR


@pytest.fixture(scope="session")
def address_space(cache_dir: Path):  # -> fraudlab.enrich.geoip.AddressSpace (imported lazily, like the broker)
    """The real GeoIP address space; missing, it fails with the message to run `fraudlab geoip fetch`."""
    from fraudlab.enrich.geoip import AddressSpace

    return AddressSpace.load(cache_dir)


@pytest.fixture(scope="session")
def geoip(cache_dir: Path):  # -> fraudlab.enrich.geoip.GeoIP
    """The real offline GeoIP databases (city + ASN) of the suite's cache, opened once."""
    from fraudlab.enrich.geoip import GeoIP

    return GeoIP.open(cache_dir)


@pytest.fixture(scope="session")
def pretrained_model():  # -> fraudlab.generate.synth.TransactionSynthesizer
    """The shipped pre-trained copula, loaded (and verified) once for the session."""
    from fraudlab.generate.synth import DEFAULT_MODEL, TransactionSynthesizer

    return TransactionSynthesizer.load(DEFAULT_MODEL)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Redis: ``REDIS_URL`` when set, else a local redis-server on a free port, stopped at the session's end."""
    external = os.environ.get("REDIS_URL")
    if external:
        yield external
        return
    settings = RedisSettings(port=free_port(), state_dir=tmp_path_factory.mktemp("redis"))
    with LocalRedis(settings, purge_on_exit=True) as url:
        yield url
