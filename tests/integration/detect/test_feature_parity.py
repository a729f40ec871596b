"""Parity of the feature executors on a real account stream enriched by the real GeoIP databases.

The Flink half of the parity (the job's SQL on the same stream) lands with the Flink job.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fraudlab.detect import features as F
from fraudlab.generate.accounts import StreamSettings, generate_stream


@pytest.fixture(scope="module")
def stream(address_space) -> pd.DataFrame:
    return generate_stream(StreamSettings(accounts=400, days=7, seed=11, fraud_rate=0.02), space=address_space)


def test_streaming_and_table_executors_agree_on_every_feature_of_a_shuffled_stream(stream, geoip) -> None:
    inputs = F.feature_inputs(stream, geoip=geoip)
    batch = F.finish(inputs, F.raw_aggregates(inputs)).set_axis(inputs["transaction_id"].to_numpy())
    jitter = np.random.default_rng(3).uniform(0, 0.95 * F.LATENESS_MS, len(inputs))
    arrival = np.argsort(inputs["timestamp"].to_numpy() + jitter, kind="stable")
    assert (np.diff(inputs["timestamp"].to_numpy()[arrival]) < 0).sum() > 30  # really out of order (bursts)
    streaming = F.StreamingFeatures()
    streamed = streaming.run(inputs.iloc[arrival].to_dict("records"))
    assert streaming.late == [] and len(streamed) == len(batch)
    pd.testing.assert_frame_equal(streamed.loc[batch.index], batch, check_names=False, check_exact=True)


def test_the_stream_exercises_every_stateful_feature(stream, geoip) -> None:
    features = F.compute_features(stream, geoip=geoip)
    fraud = stream["is_fraud"].to_numpy()
    assert features["acct_count_1h"].max() >= 5 and features["ip_accounts_1h"].max() >= 1
    assert features.loc[fraud, "new_country"].mean() > features.loc[~fraud, "new_country"].mean()
    assert (features["received_1h"] > 0).any() and (features["kmh_since_previous"] > 1000).any()
    assert set(np.unique(features["ip_hosting"])) == {0.0, 1.0}
