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
from collections import Counter
from collections.abc import Callable, Iterable

import pandas as pd

from fraudlab import config
from fraudlab.exceptions import ReadBackMismatchError
from fraudlab.infra.broker import BrokerSettings, LocalBroker
from fraudlab.ingest.client import ProducerSettings, TransactionSource, produce
from fraudlab.ingest.service import IngestionServer, ServiceSettings
from fraudlab.kafka.admin import end_offsets, ensure_topic
from fraudlab.kafka.reader import format_transactions, read_transactions_frame
from fraudlab.schema.messages import TransactionRequest

__all__ = ["check_read_back", "run_demo"]

_SHOWN_ROWS = 5
_SHOWN_IDS = 3



def check_read_back(acknowledged: Iterable[str], read_back: Iterable[str]) -> None:
    """Prove that every acknowledged transaction id was read back once and nothing else was.

    Raises:
        ReadBackMismatchError: naming how many ids are missing, doubled or unexpected, with examples.
    """
    expected = set(acknowledged)
    counts = Counter(read_back)
    problems = [
        (what, sorted(ids))
        for what, ids in (
            ("acknowledged but not in Kafka", expected - counts.keys()),
            ("in Kafka more than once", {i for i, n in counts.items() if n > 1}),
            ("in Kafka but never acknowledged", counts.keys() - expected),
        )
        if ids
    ]
    if problems:
        detail = "; ".join(f"{len(ids):,} {what} (e.g. {', '.join(ids[:_SHOWN_IDS])})" for what, ids in problems)
        raise ReadBackMismatchError(f"Kafka does not hold exactly the acknowledged transactions: {detail}.")


def run_demo(
    settings: BrokerSettings | None = None, *, bootstrap: str | None = None, count: int = 10_000,
    topic: str = config.TOPIC, users: int = config.PRODUCER_USERS, rate: float | None = None,
    source: TransactionSource | None = None,
    echo: Callable[[str], None] = print, progress: bool = False,
) -> pd.DataFrame:
    """Stream ``count`` transactions through the service into Kafka; return what was read back.

    With ``bootstrap`` unset the local broker is started (or the running one
    reused); a broker started here is stopped again before returning. The
    default ``source`` is the pre-trained 20-lakh synthesizer.

    Raises:
        ReadBackMismatchError: Kafka did not hold each acknowledged transaction exactly once.
    """
    local = None if bootstrap else LocalBroker(settings)
    acknowledged: list[str] = []

    def remember(messages: list[TransactionRequest]) -> None:
        acknowledged.extend(m.transaction_id for m in messages)

    if local is not None:
        echo(f"Starting the local Kafka broker at {local.bootstrap} (reused if it is already running)...")
    with local or contextlib.nullcontext(bootstrap) as servers:
        if local is not None:
            echo(f"Kafka broker at {servers}: {'started' if local.started_here else 'already running, reused'}")
        ensure_topic(servers, topic)
        start = end_offsets(servers, topic)
        echo("Starting the ingestion service and loading the synthesizer...")
        with IngestionServer(ServiceSettings(bootstrap=servers, topic=topic, port=0)) as target:
            echo(f"Kafka at {servers}, topic {topic!r}; ingestion service at {target}")
            summary = produce(ProducerSettings(target=target, count=count, rate=rate, users=users), source,
                              progress=progress, on_accepted=remember)
        # Everything written to the topic since ``start``, not just as many records as were acknowledged:
        # a transaction published twice must show up as a double, not crowd out another one.
        written = sum(end - start[partition] for partition, end in end_offsets(servers, topic).items())
        began = time.perf_counter()
        read_back = read_transactions_frame(servers, topic=topic, start_offsets=start, max_messages=written,
                                            timeout=10)
        reading = time.perf_counter() - began
    distinct = read_back["transaction_id"].nunique()
    echo(f"Producer: {summary.describe()}")
    check_read_back(acknowledged, read_back["transaction_id"])
    echo(f"Consumer: read {len(read_back):,} records ({distinct:,} distinct) in {reading:.2f} s; "
         "every acknowledged transaction is in Kafka exactly once")
    echo(format_transactions(read_back.head(_SHOWN_ROWS)))
    return read_back
