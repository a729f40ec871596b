"""``fraudlab consume``: read transactions back from Kafka and print them."""

from __future__ import annotations

import click

from fraudlab.cli.options import bootstrap_option, topic_option

__all__ = ["consume"]


@click.command("consume")
@bootstrap_option()
@topic_option()
@click.option("--max", "max_messages", type=click.IntRange(min=1), default=20, show_default=True,
              help="Stop after this many transactions.")
@click.option("--from-beginning", is_flag=True, help="Read from the oldest record instead of only new ones.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True,
              help="Stop after this many seconds without a new record.")
def consume(bootstrap: str, topic: str, max_messages: int, from_beginning: bool, timeout: float) -> None:
    """Read transactions from Kafka, decode the protobuf records and print them as a table."""
    from fraudlab.kafka.reader import format_transactions, read_transactions_frame

    frame = read_transactions_frame(bootstrap, topic=topic, max_messages=max_messages,
                                    from_beginning=from_beginning, timeout=timeout)
    click.echo(format_transactions(frame))
    click.echo(f"{len(frame)} transaction(s) from {topic!r} at {bootstrap}")
