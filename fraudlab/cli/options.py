"""What several command groups share: the local broker's flags, ``--rate``, the one-line timing summary.

The command line is the only part of fraudlab that reads environment
variables: through click's ``envvar`` on each flag, and :func:`broker_settings`
for the cache directory and ``JAVA_HOME``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import click

from fraudlab import config
from fraudlab.infra.broker import BrokerSettings

__all__ = [
    "BOOTSTRAP_ENV",
    "bootstrap_option",
    "broker_options",
    "broker_settings",
    "parse_rate",
    "parse_speed",
    "target_option",
    "timing_summary",
    "tls_ca_option",
    "topic_option",
]

#: Where the Kafka bootstrap servers may come from: the original system's name first, then the usual one
#: (which the test suite also reads), so one exported variable serves the CLI, the suite and the containers.
BOOTSTRAP_ENV = ("KAFKA_BROKER", "KAFKA_BOOTSTRAP_SERVERS")


def bootstrap_option(default: str | None = config.KAFKA_BOOTSTRAP, *, help: str = "Kafka bootstrap servers.") -> Any:
    """``--bootstrap``, read from ``KAFKA_BROKER`` or ``KAFKA_BOOTSTRAP_SERVERS`` when not given."""
    return click.option("--bootstrap", envvar=list(BOOTSTRAP_ENV), default=default, show_default=default is not None,
                        help=f"{help} [env {' or '.join(BOOTSTRAP_ENV)}]")


def topic_option(*, envvar: str | None = "FRAUDLAB_TOPIC") -> Any:
    """``--topic``, the Kafka topic of the transactions."""
    suffix = f" [env {envvar}]" if envvar else ""
    return click.option("--topic", default=config.TOPIC, show_default=True, envvar=envvar, help=f"Kafka topic{suffix}.")


def target_option() -> Any:
    """``--target``, the ingestion server's ``host:port``."""
    return click.option("--target", default=config.SERVICE_TARGET, show_default=True, envvar="FRAUDLAB_TARGET",
                        help="host:port of the ingestion server [env FRAUDLAB_TARGET].")


def tls_ca_option() -> Any:
    """``--tls-ca``, the certificate a client trusts when the server uses TLS."""
    return click.option("--tls-ca", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
                        envvar="FRAUDLAB_TLS_CA",
                        help="PEM certificate to trust when the server uses TLS [env FRAUDLAB_TLS_CA].")



def broker_options(command: click.Command) -> click.Command:
    """The flags that locate a local broker, shared by every ``broker`` subcommand and ``demo``."""
    options = [
        click.option("--port", type=int, default=config.BROKER_PORT, show_default=True, envvar="FRAUDLAB_BROKER_PORT",
                     help="Client listener port of the local broker [env FRAUDLAB_BROKER_PORT]."),
        click.option("--controller-port", type=int, default=config.BROKER_CONTROLLER_PORT, show_default=True,
                     envvar="FRAUDLAB_CONTROLLER_PORT", help="KRaft controller port [env FRAUDLAB_CONTROLLER_PORT]."),
        click.option("--heap", default=config.BROKER_HEAP, show_default=True, envvar="FRAUDLAB_BROKER_HEAP",
                     help="JVM heap of the broker [env FRAUDLAB_BROKER_HEAP]."),
        click.option("--kafka-version", default=config.KAFKA_VERSION, show_default=True,
                     envvar="FRAUDLAB_KAFKA_VERSION",
                     help="Apache Kafka release resolved from Maven Central [env FRAUDLAB_KAFKA_VERSION]."),
        click.option("--state-dir", type=click.Path(path_type=Path), default=None, envvar="FRAUDLAB_BROKER_DIR",
                     help="Config, data and logs [default: ~/.cache/fraudlab/broker-PORT; env FRAUDLAB_BROKER_DIR]."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def broker_settings(
    port: int, controller_port: int, heap: str, kafka_version: str, state_dir: Path | None
) -> BrokerSettings:
    """The local broker the flags name, in the cache the environment names (FRAUDLAB_CACHE_DIR, XDG_CACHE_HOME)."""
    java_home = os.environ.get("JAVA_HOME")
    return BrokerSettings(
        port=port, controller_port=controller_port, heap=heap, kafka_version=kafka_version, state_dir=state_dir,
        cache_dir=config.cache_root(os.environ), java_home=Path(java_home) if java_home else None,
    )


def parse_rate(value: str) -> float | None:
    """``--rate``: a positive number of transactions per second, or ``max``."""
    return _positive_or_max(value, "transactions/s")


def parse_speed(value: str) -> float | None:
    """``--speed``: simulated seconds per wall second, or ``max`` (no waiting for the simulated clock)."""
    return _positive_or_max(value, "simulated seconds per second")


def _positive_or_max(value: str, unit: str) -> float | None:
    if value.strip().lower() == "max":
        return None
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not 0 < number < math.inf:
        raise click.BadParameter(f"{value!r} is neither a positive number of {unit} nor 'max'.")
    return number


def timing_summary(what: str, rows: int, seconds: float) -> str:
    return f"{what}: {rows:,} rows in {seconds:.1f} s ({rows / max(seconds, 1e-9):,.0f} rows/s)"
