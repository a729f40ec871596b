"""``fraudlab broker up | down | status | fetch``: the local Kafka broker."""

from __future__ import annotations

import sys

import click

from fraudlab.cli.options import broker_options, broker_settings

__all__ = ["broker"]


@click.group()
def broker() -> None:
    """Run a real local Apache Kafka broker (single-node KRaft) from jars cached by Maven."""


@broker.command("up")
@broker_options
def broker_up(**flags: object) -> None:
    """Start the broker (or reuse the one running) and wait until it serves requests."""
    from fraudlab.infra.broker import start_broker

    click.echo(start_broker(broker_settings(**flags)).describe())  # type: ignore[arg-type]


@broker.command("down")
@broker_options
@click.option("--purge", is_flag=True, help="Also delete the broker's data, logs and config.")
def broker_down(purge: bool, **flags: object) -> None:
    """Stop the broker and wait until its JVM has exited."""
    from fraudlab.infra.broker import stop_broker

    settings = broker_settings(**flags)  # type: ignore[arg-type]
    stopped = stop_broker(settings, purge=purge)
    state = "stopped" if stopped else "was not running"
    click.echo(f"Kafka broker at {settings.bootstrap}: {state}{' (state purged)' if purge else ''}")


@broker.command("status")
@broker_options
def broker_status(**flags: object) -> None:
    """Say whether the broker runs; exit 0 when it does, 3 when it does not."""
    from fraudlab.infra.broker import broker_status as status_of

    status = status_of(broker_settings(**flags))  # type: ignore[arg-type]
    click.echo(status.describe())
    sys.exit(0 if status.running else 3)


@broker.command("fetch")
@broker_options
def broker_fetch(**flags: object) -> None:
    """Resolve the broker jars from Maven Central into the cache (done once; later calls reuse them)."""
    from fraudlab.infra.broker import resolve_jars

    libs = resolve_jars(broker_settings(**flags))  # type: ignore[arg-type]
    click.echo(f"Kafka jars ready: {libs} ({len(list(libs.glob('*.jar')))} jars)")
