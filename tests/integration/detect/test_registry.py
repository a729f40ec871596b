"""The detector's MLflow registry on a real SQLite store (no server): logging, the promotion gate, verified loading.

One store serves the module (a new store's migrations take ~10-15 s); its four versions are logged once:

==========  ===========  ==================================
version     real_pr_auc  role
==========  ===========  ==================================
1           0.80         the first champion
2           0.70         worse: refused
3           (none)       no metric: cannot be compared
4           0.85         better, and the latest: promoted
==========  ===========  ==================================
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from fraudlab.cli import cli
from fraudlab.detect.features import FEATURES
from fraudlab.detect.model import Detector, DetectorParams, train_detector
from fraudlab.detect.realtime import read_committed_values
from fraudlab.detect.registry import (
    CHAMPION,
    DETECTOR_ARTIFACTS,
    REGISTERED_MODEL,
    default_tracking_uri,
    download_detector,
    load_detector,
    log_training_run,
    promote,
)
from fraudlab.exceptions import InvalidParameterError, ModelFileError, ModelRegistryError
from fraudlab.infra.process import free_port

pytestmark = pytest.mark.slow

METRICS = {1: 0.80, 2: 0.70, 3: None, 4: 0.85}


@pytest.fixture(scope="module", autouse=True)
def _no_telemetry() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        patch.delenv("MLFLOW_REGISTRY_URI", raising=False)
        yield


def _toy(seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(400, len(FEATURES))), columns=list(FEATURES))
    labels = (frame["amount"] + frame["error_balance_orig"] + 0.3 * rng.normal(size=400) > 2.0).to_numpy()
    return frame, labels


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return _toy(seed=100)[0]


@pytest.fixture(scope="module")
def detectors() -> dict[int, Detector]:
    """Four tiny detectors, each trained on other rows (so each has its own SHA-256)."""
    params = DetectorParams(n_estimators=5, num_leaves=4)
    return {version: train_detector(*_toy(seed=version), params=params) for version in METRICS}


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def store(cache, detectors, frame, tmp_path_factory) -> tuple[str, dict]:
    """The tracking URI with versions 1-4 logged, and the TrainingRun of each."""
    uri = default_tracking_uri(cache)
    figure = tmp_path_factory.mktemp("figures") / "pr.png"
    figure.write_bytes(b"\x89PNG not really")
    outputs = tmp_path_factory.mktemp("outputs")
    (outputs / "scenario_recall.csv").write_text("scenario,recall\nmule,0.9\n")
    runs = {}
    for version, value in METRICS.items():
        runs[version] = log_training_run(
            detectors[version], tracking_uri=uri,
            params={"model": {"n_estimators": 5, "num_leaves": 4}, "features": ["amount", "hour"], "rows": 400},
            metrics={"real_pr_auc": value, "real": {"roc_auc": 0.9, "recall_at_1pct": None}, "rows": 400},
            report_markdown=f"# run {version}\n", figures={"pr_curve": figure}, artifacts_dir=outputs,
            input_example=frame, run_name=f"toy-{version}", tags={"purpose": "test"},
        )
    return uri, runs


def test_the_default_store_is_the_cache_sqlite_database(cache):
    assert default_tracking_uri(cache) == f"sqlite:///{cache}/mlflow/mlflow.db"


def test_each_run_registers_the_next_version(store):
    _, runs = store
    assert [run.model_version for run in runs.values()] == [1, 2, 3, 4]
    assert runs[1].model_uri == f"models:/{REGISTERED_MODEL}/1"
    assert runs[1].ui_url is None  # no server: nothing to link to


def test_a_run_holds_params_metrics_report_figures_and_the_detector(store, cache, detectors):
    """Nested params and metrics flattened with dots, None skipped; the files under their artifact paths."""
    from mlflow import MlflowClient

    # Setup
    uri, runs = store
    client = MlflowClient(uri)

    # Run
    run = client.get_run(runs[1].run_id)
    listed = {item.path for item in client.list_artifacts(run.info.run_id)}
    inner = {item.path for folder in ("detector", "figures", "outputs")
             for item in client.list_artifacts(run.info.run_id, folder)}

    # Assert
    assert run.data.params == {"model.n_estimators": "5", "model.num_leaves": "4", "features": '["amount", "hour"]',
                               "rows": "400"}
    assert run.data.metrics == {"real_pr_auc": 0.80, "real.roc_auc": 0.9, "rows": 400.0}
    assert run.info.run_name == "toy-1" and run.data.tags["purpose"] == "test"
    assert run.data.tags["detector_version"] == detectors[1].version
    assert {"report.md", "detector", "figures", "outputs"} <= listed
    assert inner == {"detector/detector.json", "detector/detector.onnx", "figures/pr_curve.png",
                     "outputs/scenario_recall.csv"}
    assert run.info.artifact_uri.startswith(str(cache / "mlflow" / "artifacts"))
    version = client.get_model_version(REGISTERED_MODEL, "1")
    assert version.run_id == run.info.run_id
    assert version.tags["detector_version"] == detectors[1].version
    assert version.tags["detector_sha256"] == detectors[1].sha256
    assert float(version.tags["real_pr_auc"]) == 0.80
    assert "real_pr_auc" not in client.get_model_version(REGISTERED_MODEL, "3").tags


def test_the_mlflow_onnx_model_scores_as_the_detector(store, detectors, frame):
    """The registered MLflow model is the detector's ONNX, its signature the detector's named float32 columns.

    MLflow's onnx pyfunc flattens each output for a DataFrame input: the [N, 2] probabilities come back as one
    column of 2N values (genuine, fraud, genuine, fraud, ...).
    """
    import mlflow.pyfunc

    from fraudlab.detect.registry import _fluent_uri

    # Setup
    uri, runs = store
    with _fluent_uri(uri):
        model = mlflow.pyfunc.load_model(runs[1].model_uri)
    columns = pd.DataFrame(detectors[1].feature_matrix(frame), columns=list(detectors[1].feature_names))

    # Run
    flat = model.predict(columns)["probabilities"].to_numpy()

    # Assert
    np.testing.assert_allclose(flat.reshape(-1, 2)[:, 1], detectors[1].score(frame), rtol=0, atol=1e-7)
    assert model.metadata.get_input_schema().input_names() == list(FEATURES)


def test_logging_leaves_no_mlflow_uri_in_the_environment(store):
    """MLflow's set_tracking_uri writes MLFLOW_TRACKING_URI into os.environ; the registry puts it back."""
    import os

    assert "MLFLOW_TRACKING_URI" not in os.environ and "MLFLOW_REGISTRY_URI" not in os.environ


def test_the_promotion_gate(store, detectors, frame):
    """No champion: loading says to promote. Then first -> champion, worse refused, better promoted, --force."""
    uri, _ = store

    # No champion yet
    with pytest.raises(ModelRegistryError, match=rf"no version with alias '{CHAMPION}'.*fraudlab promote"):
        load_detector(uri)

    # The first champion
    first = promote(1, tracking_uri=uri)
    assert first.promoted and first.champion_version is None and first.candidate_metric == 0.80
    assert "first champion" in first.reason

    # A worse candidate is refused, naming both numbers; the alias does not move
    worse = promote(2, tracking_uri=uri)
    assert not worse.promoted
    assert (worse.candidate_version, worse.champion_version) == (2, 1)
    assert (worse.candidate_metric, worse.champion_metric) == (0.70, 0.80)
    assert "0.7" in worse.reason and "0.8" in worse.reason and "stays version 1" in worse.reason
    np.testing.assert_array_equal(load_detector(uri).score(frame), detectors[1].score(frame))

    # A candidate without the metric cannot be compared
    with pytest.raises(ModelRegistryError, match=r"Version 3 .* no metric 'real_pr_auc'"):
        promote(3, tracking_uri=uri)

    # The default candidate is the latest version; better than the champion, it is promoted
    better = promote(tracking_uri=uri)
    assert better.promoted and (better.candidate_version, better.champion_version) == (4, 1)
    assert (better.candidate_metric, better.champion_metric) == (0.85, 0.80)
    np.testing.assert_array_equal(load_detector(uri).score(frame), detectors[4].score(frame))

    # Promoting the champion again changes nothing
    again = promote(4, tracking_uri=uri)
    assert again.promoted and "already is the champion" in again.reason

    # --force overrides the gate and says so; put version 4 back
    forced = promote(2, tracking_uri=uri, force=True)
    assert forced.promoted and "forced" in forced.reason
    assert promote(4, tracking_uri=uri).promoted


def test_a_better_pr_auc_that_gives_up_a_scenario_is_refused(detectors, tmp_path):
    """The gate's second rule: no fraud scenario's recall may drop by more than the margin, whatever the PR-AUC.
    The decision and its numbers are written to the candidate's run."""
    import mlflow

    uri = default_tracking_uri(tmp_path / "cache")
    runs = {}
    for version, (pr_auc, takeover, mule) in {1: (0.90, 0.80, 0.70), 2: (0.95, 0.60, 0.75),
                                              3: (0.92, 0.77, 0.72)}.items():
        runs[version] = log_training_run(
            detectors[version], tracking_uri=uri, params={},
            metrics={"real_pr_auc": pr_auc, "recall_account_takeover": takeover, "recall_mule": mule})
    assert promote(1, tracking_uri=uri).promoted

    weakened = promote(2, tracking_uri=uri, max_recall_drop=0.05)
    assert not weakened.promoted and weakened.champion_version == 1
    assert weakened.recall_drops == pytest.approx({"account_takeover": 0.20, "mule": -0.05})
    assert "'account_takeover'" in weakened.reason and "0.2" in weakened.reason and "stays version 1" in weakened.reason

    within_margin = promote(3, tracking_uri=uri, max_recall_drop=0.05)
    assert within_margin.promoted and within_margin.recall_drops == pytest.approx(
        {"account_takeover": 0.03, "mule": -0.02})

    tags = mlflow.MlflowClient(uri).get_run(runs[2].run_id).data.tags
    assert tags["promotion.promoted"] == "false" and tags["promotion.reason"] == weakened.reason
    assert float(tags["promotion.recall_drop.account_takeover"]) == pytest.approx(0.20)
    assert mlflow.MlflowClient(uri).get_run(runs[3].run_id).data.tags["promotion.promoted"] == "true"
    with pytest.raises(InvalidParameterError, match=r"max_recall_drop 1\.5"):
        promote(2, tracking_uri=uri, max_recall_drop=1.5)


def test_the_cli_prints_the_decision_and_exits_1_when_refused(store):
    """`fraudlab promote` against the store: a refusal is one line naming both metrics, exit 1."""
    uri, _ = store
    promote(4, tracking_uri=uri, force=True)

    refused = CliRunner().invoke(cli, ["promote", "--version", "2", "--tracking-uri", uri])
    kept = CliRunner().invoke(cli, ["promote", "--version", "4", "--tracking-uri", uri, "--no-announce"])

    assert refused.exit_code == 1 and len(refused.output.strip().splitlines()) == 1
    assert "not promoted" in refused.output and "0.7" in refused.output and "0.85" in refused.output
    assert kept.exit_code == 0 and "already is the champion" in kept.output


def test_a_promoted_champion_is_announced_to_running_jobs(store, detectors, kafka_bootstrap):
    """The announcement is the champion's verified bundle on the updates topic (what the Flink job follows)."""
    uri, _ = store
    promote(4, tracking_uri=uri, force=True)
    topic = f"models-{uuid.uuid4().hex[:10]}"

    result = CliRunner().invoke(cli, ["promote", "--version", "4", "--tracking-uri", uri, "--bootstrap",
                                      kafka_bootstrap, "--updates-topic", topic])

    assert result.exit_code == 0, result.output
    assert f"announced detector {detectors[4].version} on '{topic}' (offset 0)" in result.output
    [bundle] = read_committed_values(kafka_bootstrap, topic)
    assert Detector.from_bytes(bundle).sha256 == detectors[4].sha256


def test_without_a_broker_the_promotion_stands_and_the_cli_says_how_to_announce_it(store):
    uri, _ = store
    promote(4, tracking_uri=uri, force=True)
    unreachable = f"127.0.0.1:{free_port()}"

    result = CliRunner().invoke(cli, ["promote", "--version", "4", "--tracking-uri", uri, "--bootstrap", unreachable])

    assert result.exit_code == 0
    assert "already is the champion" in result.output and "not announced" in result.output
    assert "The promotion stands" in result.output
    assert f"fraudlab promote --version 4 --bootstrap {unreachable}" in result.output


def test_an_unknown_version_is_a_clear_error(store):
    uri, _ = store
    with pytest.raises(ModelRegistryError, match=r"no version 99 .* it has versions 1-4"):
        promote(99, tracking_uri=uri)
    with pytest.raises(ModelRegistryError, match="no version 99"):
        load_detector(uri, version=99)
    with pytest.raises(InvalidParameterError, match="Invalid version 0"):
        promote(0, tracking_uri=uri)


def test_an_empty_store_has_nothing_to_promote(tmp_path):
    """Before any training run the registry says to log one first."""
    with pytest.raises(ModelRegistryError, match=r"no versions in .*log a training run first"):
        promote(tracking_uri=default_tracking_uri(tmp_path))


def test_a_loaded_version_scores_exactly_as_the_original(store, detectors, frame):
    uri, _ = store
    for version in (1, 2):
        loaded = load_detector(uri, version=version)
        assert loaded.sha256 == detectors[version].sha256
        assert loaded.feature_names == detectors[version].feature_names
        np.testing.assert_array_equal(loaded.score(frame), detectors[version].score(frame))


def test_a_tampered_download_is_refused_by_detector_load(store, tmp_path):
    """One flipped byte in the downloaded ONNX file: the manifest's SHA-256 no longer matches."""
    # Setup
    uri, _ = store
    folder, _ = download_detector(uri, tmp_path, version=1)
    model = folder / "detector.onnx"
    payload = bytearray(model.read_bytes())
    payload[len(payload) // 2] ^= 0xFF
    model.write_bytes(bytes(payload))

    # Run / Assert
    assert folder == tmp_path / DETECTOR_ARTIFACTS
    with pytest.raises(ModelFileError, match="modified or corrupted"):
        Detector.load(folder)


def test_swapped_files_in_the_artifact_store_are_refused_by_the_registered_checksum(store, detectors, tmp_path):
    """Another detector's consistent files put in place of version 2's pass Detector.load, not load_detector."""
    from mlflow import MlflowClient

    # Setup
    uri, runs = store
    stored = Path(MlflowClient(uri).get_run(runs[2].run_id).info.artifact_uri) / DETECTOR_ARTIFACTS
    backup = tmp_path / "backup"
    shutil.copytree(stored, backup)
    detectors[4].save(stored)
    try:
        # Run / Assert
        assert Detector.load(stored).sha256 == detectors[4].sha256
        with pytest.raises(ModelFileError, match=r"registered with detector SHA-256 .* artifact store was changed"):
            load_detector(uri, version=2)
    finally:
        shutil.rmtree(stored)
        shutil.copytree(backup, stored)
    assert load_detector(uri, version=2).sha256 == detectors[2].sha256


def test_bad_inputs_are_refused_before_a_run_is_created(store, detectors, tmp_path):
    """A text metric or a missing figure: nothing is logged, the error names the key or the file."""
    from mlflow import MlflowClient

    uri, _ = store
    client = MlflowClient(uri)
    before = len(client.search_runs([client.get_experiment_by_name("fraudlab-detect").experiment_id]))
    with pytest.raises(InvalidParameterError, match=r"Invalid metrics real.note='good'"):
        log_training_run(detectors[1], tracking_uri=uri, params={}, metrics={"real": {"note": "good"}})
    with pytest.raises(InvalidParameterError, match=r"Cannot log roc=.*missing.png: no such file"):
        log_training_run(detectors[1], tracking_uri=uri, params={}, metrics={},
                         figures={"roc": tmp_path / "missing.png"})
    assert len(client.search_runs([client.get_experiment_by_name("fraudlab-detect").experiment_id])) == before
