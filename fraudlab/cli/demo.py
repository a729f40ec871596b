"""``fraudlab demo``: the whole pipeline on a local broker, proven by reading every record back."""

from __future__ import annotations

import click

from fraudlab import config
from fraudlab.cli.options import bootstrap_option, broker_options, broker_settings, parse_rate, topic_option

__all__ = ["demo"]


@click.command("demo")
@broker_options
@bootstrap_option(None, help="Use this Kafka instead of the local broker.")
@click.option("--count", type=click.IntRange(1, 10_000_000), default=config.DEMO_COUNT, show_default=True,
              help="How many transactions to stream through the service and read back.")
@click.option("--rate", default="max", show_default=True, help="Transactions per second, or 'max'.")
@click.option("--users", type=click.IntRange(min=1), default=config.PRODUCER_USERS, show_default=True,
              help="Size of the user_id pool.")
@topic_option(envvar=None)
def demo(bootstrap: str | None, count: int, rate: str, users: int, topic: str, **flags: object) -> None:
    """The pipeline: local Kafka, the gRPC ingestion service, the producer streaming, the consumer's summary."""
    from fraudlab.demo import run_demo

    run_demo(broker_settings(**flags), bootstrap=bootstrap, count=count, rate=parse_rate(rate),  # type: ignore[arg-type]
             users=users, topic=topic, echo=click.echo, progress=True)
