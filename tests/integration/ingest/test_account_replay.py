"""An account stream replayed live through the real ingestion service into the real broker.

The stream comes from the real GeoIP address space in the cache (``make geoip``); the records read back from Kafka
must be the stream's rows, field by field, with their event-time spacing kept.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from fraudlab.cli import cli
from fraudlab.generate.accounts import StreamSettings, generate_stream, write_stream
from fraudlab.ingest.client import ProducerSettings, produce
from fraudlab.ingest.service import IngestionServer, ServiceSettings
from fraudlab.kafka.admin import end_offsets
from fraudlab.kafka.reader import consume_transactions
from fraudlab.schema.messages import transaction_to_dict

pytestmark = pytest.mark.slow

_WIRE = ["user_id", "dest_user_id", "dest_is_merchant", "ip_address", "device_id", "type", "amount", "is_fraud"]


@pytest.fixture(scope="module")
def stream(address_space) -> pd.DataFrame:
    settings = StreamSettings(accounts=600, days=5, seed=11, fraud_rate=0.02)
    return generate_stream(settings, space=address_space)


@pytest.fixture
def server(kafka_bootstrap, topic):
    with IngestionServer(ServiceSettings(bootstrap=kafka_bootstrap, topic=topic, port=0)) as target:
        yield target


def _records(bootstrap: str, topic: str) -> pd.DataFrame:
    ends = end_offsets(bootstrap, topic)
    messages = consume_transactions(bootstrap, topic=topic, start_offsets=dict.fromkeys(ends, 0),
                                    max_messages=sum(ends.values()))
    return pd.DataFrame([transaction_to_dict(m) for m in messages])


def test_a_replayed_stream_arrives_whole_with_its_accounts_origins_and_event_spacing(stream, server, kafka_bootstrap,
                                                                                      topic):
    summary = produce(ProducerSettings(target=server, count=None, speed=None), stream=stream)
    received = _records(kafka_bootstrap, topic).sort_values("timestamp", kind="stable", ignore_index=True)

    assert summary.accepted == summary.sent == len(stream) > 1000
    assert received["transaction_id"].nunique() == len(stream)
    key = ["timestamp", "user_id", "amount"]
    sent = stream.assign(timestamp=stream["timestamp"] - stream["timestamp"].iloc[-1],
                         type=stream["type"].astype(str)).sort_values(key)
    got = received.assign(timestamp=received["timestamp"] - received["timestamp"].max()).sort_values(key)
    pd.testing.assert_frame_equal(got[["timestamp", *_WIRE]].reset_index(drop=True),
                                  sent[["timestamp", *_WIRE]].reset_index(drop=True), check_dtype=False)
    assert received["is_fraud"].sum() == stream["is_fraud"].sum() > 0
    assert (received["ip_address"] != "").all()


def test_fraudlab_produce_replays_a_written_stream_on_the_simulated_clock(stream, server, kafka_bootstrap, topic,
                                                                          tmp_path):
    path = write_stream(stream.iloc[:2000], tmp_path / "stream.parquet")
    span_s = (stream["timestamp"].iloc[1999] - stream["timestamp"].iloc[0]) / 1000

    result = CliRunner().invoke(cli, ["produce", "--target", server, "--stream", str(path), "--speed",
                                      str(span_s / 2), "--no-progress"])

    assert result.exit_code == 0, result.output
    assert "sent 2,000  accepted 2,000" in result.output
    elapsed = float(result.output.splitlines()[1].split(" s,")[0])
    assert elapsed >= 1.5  # the stream spans two wall seconds at this speed
    received = _records(kafka_bootstrap, topic)
    assert sorted(received["ip_address"]) == sorted(stream["ip_address"].iloc[:2000])
    assert np.diff(np.sort(received["timestamp"].to_numpy())).sum() == span_s * 1000


def test_fraudlab_produce_says_what_is_wrong_with_its_flags(tmp_path):
    path = tmp_path / "stream.parquet"
    path.write_bytes(b"")
    result = CliRunner().invoke(cli, ["produce", "--source", "model", "--stream", str(path)])
    assert result.exit_code == 2
    assert "--stream replays an account stream; it cannot be combined with --source model" in result.output
    result = CliRunner().invoke(cli, ["produce", "--speed", "0"])
    assert result.exit_code == 2
    assert "'0' is neither a positive number of simulated seconds per second nor 'max'" in result.output
