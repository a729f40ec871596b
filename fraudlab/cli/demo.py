"""``fraudlab demo``: the whole system on a local broker (ingestion, Flink scoring, alerts), or ingestion alone."""

from __future__ import annotations

import click

from fraudlab import config
from fraudlab.cli.options import bootstrap_option, broker_options, broker_settings, parse_rate, topic_option

__all__ = ["demo"]


@click.command("demo")
@broker_options
@bootstrap_option(None, help="Use this Kafka instead of the local broker.")
@click.option("--accounts", type=click.IntRange(min=2), default=config.DEMO_ACCOUNTS, show_default=True,
              help="Accounts of the replayed population.")
@click.option("--days", type=click.FloatRange(min=0, min_open=True), default=config.DEMO_DAYS, show_default=True,
              help="Simulated days of its stream.")
@click.option("--speed", type=click.FloatRange(min=0, min_open=True), default=config.DEMO_SPEED, show_default=True,
              help="Simulated seconds per wall second of the replay.")
@click.option("--ingest-only", is_flag=True,
              help="Only the ingestion pipeline: stream --count sampled transactions and read every one back.")
@click.option("--count", type=click.IntRange(1, 10_000_000), default=None,
              help="Transactions to stream: the first N of the account stream, in event time (default: all of "
                   f"it); with --ingest-only, N sampled ones (default: {config.DEMO_COUNT:,}).")
@click.option("--rate", default="max", show_default=True, help="With --ingest-only: transactions per second, or 'max'.")
@click.option("--users", type=click.IntRange(min=1), default=config.PRODUCER_USERS, show_default=True,
              help="With --ingest-only: size of the user_id pool.")
@topic_option(envvar=None)
def demo(bootstrap: str | None, accounts: int, days: float, speed: float, ingest_only: bool, count: int | None,
         rate: str, users: int, topic: str, **flags: object) -> None:
    """The system: local Kafka, the Flink scoring job, the gRPC ingestion service, account scenarios, the alerts."""
    if ingest_only:
        from fraudlab.demo import run_demo

        run_demo(broker_settings(**flags), bootstrap=bootstrap, count=count or config.DEMO_COUNT,  # type: ignore[arg-type]
                 rate=parse_rate(rate), users=users, topic=topic, echo=click.echo, progress=True)
        return
    from fraudlab.demo import run_detection_demo

    run_detection_demo(broker_settings(**flags), bootstrap=bootstrap, accounts=accounts, days=days,  # type: ignore[arg-type]
                       count=count, speed=speed, topic=topic, echo=click.echo, progress=True)
