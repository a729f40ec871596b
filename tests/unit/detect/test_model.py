"""The fraud detector: ONNX agrees with LightGBM, files and bundles are verified, bad input is refused by name."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score

from fraudlab.detect import features
from fraudlab.detect.model import (
    BUNDLE_MAGIC,
    BUNDLE_VERSION,
    DEFAULT_DETECTOR,
    DEFAULT_THRESHOLD,
    Detector,
    DetectorParams,
    _float32_thresholds,
    _to_onnx,
    train_detector,
)
from fraudlab.exceptions import DataValidationError, InvalidParameterError, ModelFileError

ROWS = 5_000
TRAIN = 4_000
#: Small and single-threaded: the whole file trains a handful of models in about a second each.
PARAMS = DetectorParams(n_estimators=40, num_threads=1)


def _toy(rows: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Random features; fraud (about 4 %) where amount and the origin's balance error are both high."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(rows, len(features.FEATURES))), columns=list(features.FEATURES))
    signal = frame["amount"] + frame["error_balance_orig"] + 0.3 * rng.normal(size=rows)
    return frame, (signal > 2.4).to_numpy()


@pytest.fixture(scope="module")
def toy():
    return _toy(ROWS, seed=3)


@pytest.fixture(scope="module")
def detector(toy):
    frame, labels = toy
    return train_detector(frame.iloc[:TRAIN], labels[:TRAIN], params=PARAMS, training_data={"seed": 3})


@pytest.fixture
def saved(detector, tmp_path):
    """A detector saved to a fresh directory: (directory, manifest path)."""
    return tmp_path, detector.save(tmp_path)


def _rewrite_manifest(path, **changes):
    manifest = json.loads(path.read_text())
    manifest.update(changes)
    path.write_text(json.dumps(manifest))


def test_onnx_scores_match_lightgbm_and_rank_frauds_first(detector, toy):
    """The ONNX model scores what LightGBM's booster predicts, and it learned the toy rule (held-out rows)."""
    # Setup
    frame, labels = toy
    held_out = frame.iloc[TRAIN:]

    # Run
    scores = detector.score(held_out)

    # Assert
    expected = detector.booster.predict(held_out[list(features.FEATURES)].to_numpy(np.float32))
    assert scores.dtype == np.float64 and scores.shape == (ROWS - TRAIN,)
    np.testing.assert_allclose(scores, expected, rtol=0, atol=1e-5)
    assert average_precision_score(labels[TRAIN:], scores) > 0.9
    np.testing.assert_array_equal(detector.score_matrix(detector.feature_matrix(held_out)), scores)
    np.testing.assert_array_equal(detector.score_matrix(detector.feature_matrix(held_out.iloc[:1])), scores[:1])


def test_thresholds_rounded_down_to_float32_route_rows_as_lightgbm_does():
    """Amounts above 2**17 have neighbouring float32 values; the rounded trees still give LightGBM's scores.

    With round-to-nearest thresholds a row equal to a rounded-up threshold takes the other branch in ONNX.
    """
    import lightgbm
    import onnxruntime

    # Setup
    rng = np.random.default_rng(1)
    x = np.round(rng.uniform(131_072, 140_000, size=(20_000, 3)), 2).astype(np.float32)
    y = ((x[:, 0] % 7) < 1).astype(np.int8)
    native = {**PARAMS.lightgbm_params(), "max_bin": 4095, "min_data_in_leaf": 2, "num_leaves": 63}
    booster = lightgbm.train(native, lightgbm.Dataset(x, y, params=native), num_boost_round=40)
    names = features.FEATURES[:3]

    # Run
    rounded = _float32_thresholds(booster)
    session = onnxruntime.InferenceSession(_to_onnx(rounded, names, "s"), providers=["CPUExecutionProvider"])
    scores = session.run(None, {"features": x})[0][:, 1]

    # Assert
    assert rounded.model_to_string() != booster.model_to_string()
    np.testing.assert_array_equal(rounded.predict(x), booster.predict(x))
    np.testing.assert_allclose(scores, booster.predict(x), rtol=0, atol=1e-5)


def test_training_is_deterministic_and_fingerprints_the_data(detector, toy):
    """The same rows and params give the same ONNX bytes; the manifest's fingerprint names rows and frauds."""
    # Setup
    frame, labels = toy

    # Run
    again = train_detector(frame.iloc[:TRAIN], labels[:TRAIN], params=PARAMS)

    # Assert
    assert again.version == detector.version and len(detector.version) == 12
    assert detector.sha256.startswith(detector.version)
    data = detector.training_data
    assert data["rows"] == TRAIN and data["frauds"] == int(labels[:TRAIN].sum()) and data["seed"] == 3
    assert data["sha256"] == again.training_data["sha256"] and len(data["sha256"]) == 64
    assert data["positive_weight"] == pytest.approx((TRAIN - data["frauds"]) / data["frauds"])
    assert detector.feature_schema == features.schema_hash()
    assert detector.threshold == DEFAULT_THRESHOLD and detector.metrics == {}


def test_save_and_load_round_trip(detector, toy, saved):
    """A loaded detector is the same model: same version, identical scores, the manifest's fields kept."""
    # Setup
    frame, _ = toy
    directory, manifest_path = saved

    # Run
    from_directory = Detector.load(directory)
    from_manifest = Detector.load(manifest_path)

    # Assert
    assert manifest_path == directory / "detector.json" and (directory / "detector.onnx").is_file()
    assert sorted(p.name for p in directory.iterdir()) == ["detector.json", "detector.onnx"]  # no temporary left
    manifest = json.loads(manifest_path.read_text())
    assert manifest["format"] == "fraudlab-detector" and manifest["format_version"] == 2
    assert manifest["sha256"] == detector.sha256 and manifest["feature_schema"] == features.schema_hash()
    assert {"lightgbm", "onnxmltools", "onnxruntime", "onnx"} <= set(manifest["libraries"])
    assert manifest["created_at"] and manifest["params"]["seed"] == 7
    for loaded in (from_directory, from_manifest):
        assert loaded.version == detector.version and loaded.booster is None
        assert loaded.feature_names == detector.feature_names and loaded.params == detector.params
        assert loaded.training_data == detector.training_data
        np.testing.assert_array_equal(loaded.score(frame), detector.score(frame))


def test_threshold_and_metrics_survive_save_and_load(detector, toy, tmp_path):
    """with_evaluation sets the alert threshold and metrics on a copy; both come back from disk."""
    # Setup
    frame, _ = toy
    metrics = {"pr_auc": np.float64(0.93), "alerts": np.int64(12), "per_scenario": {"card_testing": 0.8}}

    # Run
    evaluated = detector.with_evaluation(threshold=0.8, metrics=metrics)
    loaded = Detector.load(evaluated.save(tmp_path))

    # Assert
    assert detector.threshold == DEFAULT_THRESHOLD and detector.metrics == {}
    assert loaded.threshold == 0.8 and loaded.version == detector.version
    assert loaded.metrics == {"pr_auc": 0.93, "alerts": 12, "per_scenario": {"card_testing": 0.8}}
    np.testing.assert_array_equal(loaded.alerts(frame), detector.score(frame) >= 0.8)
    with pytest.raises(InvalidParameterError, match=r"threshold 1\.5"):
        detector.with_evaluation(threshold=1.5, metrics={})


def test_a_flipped_byte_in_the_onnx_file_is_refused(saved):
    # Setup
    directory, _ = saved
    model = directory / "detector.onnx"
    payload = bytearray(model.read_bytes())
    payload[len(payload) // 2] ^= 0x01
    model.write_bytes(bytes(payload))

    # Run / Assert
    with pytest.raises(ModelFileError, match=r"detector\.onnx has SHA-256 .* modified or corrupted"):
        Detector.load(directory)


def test_a_detector_of_another_feature_definition_is_refused(saved):
    # Setup
    _, manifest_path = saved
    _rewrite_manifest(manifest_path, feature_schema="0" * 64)

    # Run / Assert
    with pytest.raises(ModelFileError, match=r"another feature definition.*`fraudlab train`"):
        Detector.load(manifest_path)


@pytest.mark.parametrize(("changes", "match"), [
    ({"format_version": 1}, "version 1 is not one this fraudlab reads"),
    ({"format": "something-else"}, "format 'something-else'"),
    ({"feature_names": ["amount", "shoe_size"]}, "shoe_size"),
    ({"threshold": 7}, "threshold 7"),
    ({"params": {"n_estimators": 0}}, "n_estimators=0"),
    ({"references": {"amount": 1.0}}, "'references' must map each of its feature_names"),
    ({"references": dict.fromkeys(features.FEATURES, "x")}, "Invalid references"),
])
def test_a_malformed_manifest_is_refused(saved, changes, match):
    # Setup
    _, manifest_path = saved
    _rewrite_manifest(manifest_path, **changes)

    # Run / Assert
    with pytest.raises(ModelFileError, match=match):
        Detector.load(manifest_path)


def test_missing_files_are_refused(saved, tmp_path):
    # Setup
    directory, _ = saved
    (directory / "detector.onnx").unlink()

    # Run / Assert
    with pytest.raises(ModelFileError, match=r"detector\.onnx .* does not exist"):
        Detector.load(directory)
    with pytest.raises(ModelFileError, match="No detector manifest"):
        Detector.load(tmp_path / "nowhere")


def test_training_on_a_subset_and_scoring_a_wider_frame(toy):
    """The ablation's case: a model without a family reads only its own columns, whatever else the frame has."""
    # Setup
    frame, labels = toy
    subset = tuple(name for name in features.FEATURES if name not in features.FAMILIES["novelty"])
    wider = frame.assign(transaction_id=np.arange(ROWS).astype(str), extra=1.0)

    # Run
    detector = train_detector(frame[list(subset)].iloc[:TRAIN], labels[:TRAIN], feature_names=subset, params=PARAMS)
    scores = detector.score(wider)

    # Assert
    assert detector.feature_names == subset and detector.session.get_inputs()[0].shape[1] == len(subset)
    np.testing.assert_allclose(scores, detector.booster.predict(frame[list(subset)].to_numpy(np.float32)), atol=1e-5)
    assert average_precision_score(labels[TRAIN:], scores[TRAIN:]) > 0.9


def test_missing_and_non_finite_columns_are_named(detector, toy):
    # Setup
    frame, labels = toy
    holes = frame.iloc[:10].copy()
    holes.loc[holes.index[3], "acct_sum_1h"] = np.nan
    holes.loc[holes.index[4], "received_1h"] = np.inf

    # Run / Assert
    with pytest.raises(DataValidationError, match=r"missing column\(s\) \['new_ip', 'ip_hosting'\]"):
        detector.score(frame.drop(columns=["new_ip", "ip_hosting"]))
    with pytest.raises(DataValidationError, match=r"'acct_sum_1h' has 1 NaN(.|\n)*'received_1h' has 1 NaN"):
        detector.score(holes)
    with pytest.raises(DataValidationError, match="'acct_sum_1h' has 1 NaN"):
        train_detector(holes, labels[:10], params=PARAMS)
    with pytest.raises(DataValidationError, match="column 'amount' is not numeric"):
        detector.score(frame.iloc[:10].assign(amount="12.5"))
    with pytest.raises(InvalidParameterError, match=r"shape \(3, 2\)"):
        detector.score_matrix(np.zeros((3, 2), dtype=np.float32))


def test_training_input_is_refused_by_name(toy):
    # Setup
    frame, labels = toy
    few = frame.iloc[:100]
    assert labels[:100].any()

    # Run / Assert
    with pytest.raises(DataValidationError, match="no fraud rows"):
        train_detector(few, np.zeros(100, dtype=bool), params=PARAMS)
    with pytest.raises(InvalidParameterError, match="shoe_size"):
        train_detector(few, labels[:100], feature_names=("amount", "shoe_size"), params=PARAMS)
    with pytest.raises(DataValidationError, match=r"missing column\(s\) \['amount'\]"):
        train_detector(few.drop(columns="amount"), labels[:100], params=PARAMS)
    with pytest.raises(InvalidParameterError, match="expected 100 labels"):
        train_detector(few, labels[:99], params=PARAMS)
    with pytest.raises(InvalidParameterError, match="training_data"):
        train_detector(few, labels[:100], params=PARAMS, training_data={"when": object()})
    with pytest.raises(InvalidParameterError, match="each need a positive total weight"):
        train_detector(few, labels[:100], weights=np.where(labels[:100], 0.0, 1.0), params=PARAMS)


@pytest.mark.parametrize(("field", "value"), [
    ("n_estimators", 0), ("num_leaves", 1), ("learning_rate", 0.0), ("subsample", 1.5), ("colsample_bytree", -1.0),
    ("seed", -1), ("num_threads", 2.5), ("balance_classes", "yes"), ("min_child_samples", True),
])
def test_invalid_params_name_the_field_and_value(field, value):
    with pytest.raises(InvalidParameterError, match=rf"DetectorParams\.{field}={value!r}"):
        DetectorParams(**{field: value})


def test_a_detector_pickles_without_its_session(detector, toy):
    """A worker that receives a detector (Flink, multiprocessing) rebuilds the onnxruntime session itself."""
    # Setup
    frame, _ = toy
    detector.score(frame.iloc[:5])

    # Run
    copy = pickle.loads(pickle.dumps(detector))

    # Assert
    np.testing.assert_array_equal(copy.score(frame), detector.score(frame))


def test_importing_the_module_loads_no_training_or_service_library():
    """Scoring needs numpy, pandas and onnxruntime only; LightGBM and onnxmltools load when training starts."""
    # Setup
    probe = "import json, sys, fraudlab.detect.model; print(json.dumps(sorted(sys.modules)))"

    # Run
    loaded = set(json.loads(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                                           check=True).stdout))

    # Assert
    heavy = ("lightgbm", "onnxmltools", "onnx", "onnxruntime", "mlflow", "grpc", "confluent_kafka", "pyflink")
    assert not sorted(name for name in loaded if name.split(".")[0] in heavy)
    assert DEFAULT_DETECTOR.name == "detector.json" and DEFAULT_DETECTOR.parent.name == "pretrained"


def _framed(manifest: dict, onnx: bytes) -> bytes:
    """A bundle as a tamperer would write it: the documented layout with a freshly computed trailing SHA-256."""
    import hashlib
    import struct

    text = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    body = struct.pack(">8sIQQ", BUNDLE_MAGIC, BUNDLE_VERSION, len(text), len(onnx)) + text + onnx
    return body + hashlib.sha256(body).digest()


def test_bundle_round_trip_is_the_same_detector_and_deterministic(detector, toy):
    """from_bytes(to_bytes()) scores identically with the same version and fields; the bytes are reproducible."""
    # Setup
    frame, _ = toy
    evaluated = detector.with_evaluation(threshold=0.8, metrics={"pr_auc": 0.93})

    # Run
    bundle = evaluated.to_bytes()
    loaded = Detector.from_bytes(bundle)

    # Assert
    assert bundle.startswith(BUNDLE_MAGIC) and bundle == evaluated.to_bytes() == loaded.to_bytes()
    assert Detector.from_bytes(bytearray(bundle)).version == Detector.from_bytes(memoryview(bundle)).version
    assert loaded.version == detector.version and loaded.booster is None
    assert loaded.references == detector.references and loaded.threshold == 0.8
    assert loaded.metrics == {"pr_auc": 0.93} and loaded.training_data == detector.training_data
    assert loaded.feature_names == detector.feature_names and loaded.params == detector.params
    np.testing.assert_array_equal(loaded.score(frame), detector.score(frame))


def test_a_truncated_or_extended_bundle_is_refused(detector):
    # Setup
    bundle = detector.to_bytes()

    # Run / Assert
    for cut in (bundle[:-1], bundle[: len(bundle) // 2], bundle[:100]):
        with pytest.raises(ModelFileError, match=rf"bundle is truncated: {len(cut):,} bytes, its header declares "
                                                 rf"{len(bundle):,}"):
            Detector.from_bytes(cut)
    with pytest.raises(ModelFileError, match="longer than its header says"):
        Detector.from_bytes(bundle + b"\0")
    for junk in (bundle[:20], b"", pickle.dumps(detector), b"X" + bundle[1:]):
        with pytest.raises(ModelFileError, match="Not a fraudlab detector bundle"):
            Detector.from_bytes(junk)
    with pytest.raises(InvalidParameterError, match="type str"):
        Detector.from_bytes(bundle.hex())


@pytest.mark.parametrize("where", ["manifest", "model"])
def test_a_flipped_byte_anywhere_in_a_bundle_is_refused(detector, where):
    """The trailing SHA-256 covers the manifest too: a changed threshold digit is caught like a changed tree."""
    # Setup
    bundle = bytearray(detector.to_bytes())
    position = 40 if where == "manifest" else len(bundle) - 1000
    bundle[position] ^= 0x01

    # Run / Assert
    with pytest.raises(ModelFileError, match=r"SHA-256 does not match .* corrupted or tampered with"):
        Detector.from_bytes(bytes(bundle))


def test_a_reframed_bundle_is_still_verified_like_a_file(detector):
    """With the trailer recomputed, the manifest's own checks (artefacts.verified_bytes, feature schema) still hold."""
    # Setup
    manifest, onnx = detector.manifest(), detector.onnx_bytes
    changed_model = onnx[:-1] + bytes([onnx[-1] ^ 0x01])

    # Run / Assert
    assert Detector.from_bytes(_framed(manifest, onnx)).version == detector.version
    with pytest.raises(ModelFileError, match=rf"bundle of version {detector.version} has SHA-256 .*tampered with"):
        Detector.from_bytes(_framed(manifest, changed_model))
    with pytest.raises(ModelFileError, match="version 1 is not one this fraudlab reads"):
        Detector.from_bytes(_framed({**manifest, "format_version": 1}, onnx))
    with pytest.raises(ModelFileError, match="another feature definition"):
        Detector.from_bytes(_framed({**manifest, "feature_schema": "0" * 64}, onnx))
    with pytest.raises(ModelFileError, match="'references' must map each"):
        Detector.from_bytes(_framed({**manifest, "references": {"amount": 1.0}}, onnx))
    layout = bytearray(_framed(manifest, onnx))
    layout[11] = 2
    with pytest.raises(ModelFileError, match="layout version 2 is not one this fraudlab reads"):
        Detector.from_bytes(bytes(layout))


def test_the_pretrained_detector_carries_references_and_fits_one_kafka_message(toy):
    """The shipped detector loads, from its files and as a bundle under Kafka's default 1 MB message limit."""
    # Setup
    frame, _ = toy
    manifest = Detector.read_manifest(DEFAULT_DETECTOR)

    # Run
    detector = Detector.load(DEFAULT_DETECTOR)
    bundle = detector.to_bytes()

    # Assert
    assert manifest["format_version"] == 2 and set(manifest["references"]) == set(features.FEATURES)
    assert detector.references == tuple(manifest["references"][name] for name in detector.feature_names)
    assert len(bundle) < 1_000_000
    np.testing.assert_array_equal(Detector.from_bytes(bundle).score(frame), detector.score(frame))
    at_references = np.tile(np.asarray(detector.references, dtype=np.float32), (1, 1))
    assert detector.reasons(at_references, top=len(detector.families)) == [()]
