"""The pipeline steps' pure parts: the data version, the saved training set, a missing step output named."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from fraudlab.detect.training import LabelledFeatures, TrainingSet
from fraudlab.exceptions import DataValidationError, MissingDataError
from fraudlab.pipeline.steps import data_version, read_json


def _lock(path, outs):
    stages = {name: {"cmd": "true", "outs": [{"path": p, "md5": m} for p, m in items]} for name, items in outs.items()}
    path.write_text(yaml.safe_dump({"schema": "2.0", "stages": stages}))
    return path


def test_the_data_version_is_a_hash_of_every_output_and_changes_with_any(tmp_path):
    outs = {"a": [("data/a", "11"), ("data/b", "22")], "b": [("data/c", "33")]}
    version, by_path = data_version(_lock(tmp_path / "one.lock", outs))
    assert by_path == {"data/a": "11", "data/b": "22", "data/c": "33"} and len(version) == 12
    reordered = {"b": [("data/c", "33")], "a": [("data/b", "22"), ("data/a", "11")]}
    assert data_version(_lock(tmp_path / "two.lock", reordered))[0] == version
    changed = {**outs, "b": [("data/c", "34")]}
    assert data_version(_lock(tmp_path / "three.lock", changed))[0] != version


def test_no_lock_or_an_empty_one_says_to_run_dvc_repro(tmp_path):
    with pytest.raises(MissingDataError, match="dvc repro"):
        data_version(tmp_path / "dvc.lock")
    with pytest.raises(MissingDataError, match="records no stage outputs"):
        data_version(_lock(tmp_path / "empty.lock", {}))


def test_a_training_set_reads_back_as_it_was_saved(tmp_path):
    rows = LabelledFeatures("stream+copula", pd.DataFrame({"x": [0.5, 1.5, 2.5], "y": [1.0, 0.0, 3.0]}),
                            np.array([True, False, False]), np.array([0.5, 1.0, 2.0]),
                            np.array(["card_testing", "normal", "copula"]))
    saved = TrainingSet(rows, {"stream": {"rows": 2, "frauds": 1}, "copula_seed": 7}).save(tmp_path / "set.parquet")
    loaded = TrainingSet.load(saved)
    pd.testing.assert_frame_equal(loaded.rows.features, rows.features)
    assert loaded.rows.labels.tolist() == [True, False, False] and loaded.rows.weights.tolist() == [0.5, 1.0, 2.0]
    assert loaded.rows.scenario.tolist() == ["card_testing", "normal", "copula"]
    assert loaded.rows.source == "stream+copula" and loaded.described == {"stream": {"rows": 2, "frauds": 1},
                                                                          "copula_seed": 7}


def test_a_parquet_file_that_is_not_a_training_set_is_refused_by_name(tmp_path):
    path = tmp_path / "other.parquet"
    pd.DataFrame({"x": [1.0]}).to_parquet(path)
    with pytest.raises(DataValidationError, match="__label"):
        TrainingSet.load(path)


def test_a_missing_step_output_names_the_step_to_run(tmp_path):
    with pytest.raises(MissingDataError, match=r"registered candidate .* does not exist"):
        read_json(tmp_path / "registered.json", "registered candidate")
