"""``make demo``: the ingestion pipeline end to end on embedded defaults.

Local Kafka broker -> gRPC ingestion service (in this process, on a free
port) -> producer streaming sampled transactions -> consumer reading the topic
back. The summary proves nothing was lost or doubled: transactions
acknowledged by the service = distinct records read from Kafka, and shows a
few decoded rows and the throughput.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import pandas as pd

from fraudlab.broker import BrokerSettings, LocalBroker
from fraudlab.consumer import format_transactions, read_transactions_frame
from fraudlab.kafka import DEFAULT_TOPIC, end_offsets, ensure_topic
from fraudlab.messages import TransactionRequest
from fraudlab.producer import ProducerSettings, TransactionSource, produce
from fraudlab.service import IngestionServer, ServiceSettings

__all__ = ["run_demo"]

_SHOWN_ROWS = 5


def run_demo(
    settings: BrokerSettings | None = None, *, bootstrap: str | None = None, count: int = 10_000,
    topic: str = DEFAULT_TOPIC, users: int = 1000, rate: float | None = None, source: TransactionSource | None = None,
    echo: Callable[[str], None] = print, progress: bool = False,
) -> pd.DataFrame:
    """Stream ``count`` transactions through the service into Kafka; return what was read back.

    With ``bootstrap`` unset the local broker is started (or the running one
    reused); a broker started here is stopped again before returning. The
    default ``source`` is the pre-trained 20-lakh synthesizer.
    """
    broker = contextlib.nullcontext(bootstrap) if bootstrap else LocalBroker(settings)
    acknowledged: list[str] = []

    def remember(messages: list[TransactionRequest]) -> None:
        acknowledged.extend(m.transaction_id for m in messages)

    with broker as servers:
        ensure_topic(servers, topic)
        start = end_offsets(servers, topic)
        with IngestionServer(ServiceSettings(bootstrap=servers, topic=topic, port=0)) as target:
            echo(f"Kafka at {servers}, topic {topic!r}; ingestion service at {target}")
            summary = produce(ProducerSettings(target=target, count=count, rate=rate, users=users), source,
                              progress=progress, on_accepted=remember)
        began = time.perf_counter()
        read_back = read_transactions_frame(servers, topic=topic, start_offsets=start,
                                            max_messages=summary.accepted, timeout=10)
        reading = time.perf_counter() - began
    distinct = read_back["transaction_id"].nunique()
    matches = distinct == len(read_back) == len(set(acknowledged)) and set(read_back["transaction_id"]) == set(
        acknowledged)
    echo(f"Producer: {summary.describe()}")
    echo(f"Consumer: read {len(read_back):,} records ({distinct:,} distinct) in {reading:.2f} s; "
         f"{'every acknowledged transaction is in Kafka exactly once' if matches else 'MISMATCH with the producer'}")
    echo(format_transactions(read_back.head(_SHOWN_ROWS)))
    return read_back
