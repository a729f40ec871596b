"""docker-compose.yaml cannot run here (no Docker engine), so its structure is checked statically."""

from __future__ import annotations

import click
import pytest
import yaml

from fraudlab.cli import cli


@pytest.fixture(scope="module")
def compose(repo_root):
    return yaml.safe_load((repo_root / "docker-compose.yaml").read_text())


def test_services_and_their_start_order(compose):
    services = compose["services"]
    assert set(services) == {"kafka", "redis", "ingestion", "producer"}
    assert services["ingestion"]["depends_on"] == {"kafka": {"condition": "service_healthy"},
                                                   "redis": {"condition": "service_healthy"}}
    assert services["producer"]["depends_on"] == {"ingestion": {"condition": "service_healthy"}}
    for name in ("kafka", "redis", "ingestion"):
        assert services[name]["healthcheck"]["test"], f"{name} needs a healthcheck"


def test_two_ingestion_workers_share_state_in_a_persistent_redis(compose):
    services = compose["services"]
    redis = services["redis"]
    assert redis["image"].startswith("redis:7")
    assert redis["command"][1:3] == ["--appendonly", "yes"] and "everysec" in redis["command"]
    ingestion = services["ingestion"]
    command = ingestion["command"]
    assert command[command.index("--workers") + 1] == "2"
    assert ingestion["environment"]["REDIS_URL"] == "redis://redis:6379/0"


def test_kafka_is_single_node_kraft_from_the_official_image(compose):
    kafka = compose["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:4.")
    env = kafka["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@kafka:9093"
    assert "INTERNAL://kafka:19092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert "9092:9092" in kafka["ports"]
    assert "kafka:19092" in " ".join(kafka["healthcheck"]["test"])


def test_fraudlab_services_point_at_the_internal_listener_and_expose_50051(compose):
    services = compose["services"]
    for name in ("ingestion", "producer"):
        assert services[name]["environment"]["KAFKA_BROKER"] == "kafka:19092"
    assert "50051:50051" in services["ingestion"]["ports"]
    assert "--port" in services["ingestion"]["command"] and "50051" in services["ingestion"]["command"]
    assert "ingestion:50051" in services["producer"]["command"]


def test_every_referenced_file_exists(compose, repo_root):
    for service in compose["services"].values():
        build = service.get("build")
        if build:
            context = repo_root / build["context"]
            dockerfile = context / build.get("dockerfile", "Dockerfile")
            assert dockerfile.is_file()
            for line in dockerfile.read_text().splitlines():
                if line.startswith("COPY "):
                    for source in line.split()[1:-1]:
                        assert (context / source).exists(), f"Dockerfile copies missing {source}"


def _fraudlab_invocations(compose) -> list[list[str]]:
    """Every ``fraudlab ...`` command line in the file: service commands and healthchecks."""
    found = []
    for service in compose["services"].values():
        for argv in (service.get("command"), service.get("healthcheck", {}).get("test")):
            if isinstance(argv, list) and "fraudlab" in argv:
                found.append(argv[argv.index("fraudlab") + 1:])
    return found


def test_every_fraudlab_command_in_the_file_exists_with_those_flags(compose):
    invocations = _fraudlab_invocations(compose)
    assert {argv[0] for argv in invocations} == {"serve", "produce", "health"}
    for argv in invocations:
        command = cli.commands.get(argv[0])
        assert command is not None, f"docker-compose.yaml runs `fraudlab {argv[0]}`, which the CLI lacks"
        try:
            command.make_context(argv[0], list(argv[1:]))
        except click.UsageError as exc:
            pytest.fail(f"`fraudlab {' '.join(argv)}` in docker-compose.yaml: {exc.format_message()}")
