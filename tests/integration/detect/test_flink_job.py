"""The real-time scoring job on real Flink (PyFlink 2.2 in .venv-flink) and a real Kafka broker.

One account stream (GeoIP-enriched, scenarios included) is published to a fresh topic the way the ingestion service
publishes (event time in the record header), followed by a resend of its first records and a record that is not a
transaction. A bounded job then scores it, embedded on a MiniCluster and submitted to a standalone cluster: every
transaction is scored exactly once, with the same score the batch executor gives (the parity of the Flink SQL
features with the table executor, record by record), alerts carry reasons, and the bad record lands in the dead-letter
topic with its reason.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from confluent_kafka import Producer

from fraudlab.detect.features import compute_features
from fraudlab.detect.model import DEFAULT_DETECTOR, Detector
from fraudlab.detect.realtime import read_dead_letters, read_scored, run_scoring_job
from fraudlab.detect.scoring_job import ScoringJobSettings
from fraudlab.infra.flink import FlinkSettings, LocalFlinkCluster
from fraudlab.infra.process import free_port
from fraudlab.kafka.admin import ensure_topic
from fraudlab.kafka.publisher import publish_transactions
from fraudlab.schema.messages import transactions_batch

pytestmark = pytest.mark.slow

RESENT = 40
GARBAGE = b"\xff\xfe not a transaction"


@pytest.fixture(scope="module")
def stream(address_space, pretrained_model) -> pd.DataFrame:
    from fraudlab.generate.accounts import StreamSettings, generate_stream

    return generate_stream(StreamSettings(accounts=400, days=5, seed=21), space=address_space, model=pretrained_model)


@pytest.fixture(scope="module")
def batch_scores(stream: pd.DataFrame, geoip) -> pd.Series:
    detector = Detector.load(DEFAULT_DETECTOR)
    return pd.Series(detector.score(compute_features(stream, geoip=geoip)), index=stream["transaction_id"].to_numpy())


def _published(bootstrap: str, stream: pd.DataFrame) -> str:
    topic = f"raw-{uuid.uuid4().hex[:10]}"
    ensure_topic(bootstrap, topic, partitions=3)
    messages = list(transactions_batch(stream, transaction_ids=stream["transaction_id"].tolist(),
                                       user_ids=stream["user_id"].astype(int).tolist()).transactions)
    assert publish_transactions(bootstrap, [*messages, *messages[:RESENT]], topic=topic) == len(messages) + RESENT
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(topic, GARBAGE, b"1")
    assert producer.flush(10) == 0
    return topic


def _settings(bootstrap: str, source: str, cache_dir: Path, tmp_path: Path) -> ScoringJobSettings:
    tag = source.removeprefix("raw-")
    return ScoringJobSettings(
        bootstrap=bootstrap, model=str(DEFAULT_DETECTOR), geoip_dir=str(cache_dir),
        checkpoint_dir=str(tmp_path / "checkpoints"), group_id=f"detect-{tag}", source_topic=source,
        scored_topic=f"scored-{tag}", alerts_topic=f"alerts-{tag}", dead_letter_topic=f"dead-{tag}",
        model_updates_topic=f"models-{tag}", bounded=True)


def _check_outputs(settings: ScoringJobSettings, stream: pd.DataFrame, batch_scores: pd.Series) -> None:
    scored = read_scored(settings.bootstrap, settings.scored_topic)
    assert len(scored) == len(stream), "every transaction scored once, the resent ones included"
    assert scored["transaction_id"].is_unique
    assert set(scored["transaction_id"]) == set(stream["transaction_id"])
    streamed = scored.set_index("transaction_id")["score"]
    np.testing.assert_array_equal(streamed.to_numpy(), batch_scores.reindex(streamed.index).to_numpy())
    assert set(scored["model_version"]) == {Detector.load(DEFAULT_DETECTOR).version}
    flagged = scored[scored["alert"]]
    assert flagged["reasons"].map(len).gt(0).all(), "every alert says why"
    assert scored.loc[~scored["alert"], "reasons"].map(len).eq(0).all()
    alerts = read_scored(settings.bootstrap, settings.alerts_topic)
    assert len(flagged) > 0
    assert set(alerts["transaction_id"]) == set(flagged["transaction_id"])
    dead = read_dead_letters(settings.bootstrap, settings.dead_letter_topic)
    assert dead["payload"].tolist() == [GARBAGE]
    assert "do not parse" in dead["reason"].iloc[0]


def test_embedded_job_scores_every_transaction_once_as_the_batch_executor_does(
        kafka_bootstrap: str, stream: pd.DataFrame, batch_scores: pd.Series, cache_dir: Path, tmp_path: Path) -> None:
    settings = _settings(kafka_bootstrap, _published(kafka_bootstrap, stream), cache_dir, tmp_path)
    output = run_scoring_job(settings, FlinkSettings(cache_dir=cache_dir))
    assert "finished" in output
    _check_outputs(settings, stream, batch_scores)


def test_the_same_job_runs_unchanged_on_a_standalone_cluster(
        kafka_bootstrap: str, stream: pd.DataFrame, batch_scores: pd.Series, cache_dir: Path, tmp_path: Path) -> None:
    settings = _settings(kafka_bootstrap, _published(kafka_bootstrap, stream), cache_dir, tmp_path)
    flink = FlinkSettings(rest_port=free_port(), cache_dir=cache_dir, state_dir=tmp_path / "cluster")
    with LocalFlinkCluster(flink, purge_on_exit=True):
        run_scoring_job(settings, flink, cluster=True)
    _check_outputs(settings, stream, batch_scores)
