"""Top reasons by family occlusion: the family made anomalous is named, in order of the score it carries."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fraudlab.detect import features
from fraudlab.detect.model import Detector, DetectorParams, train_detector
from fraudlab.exceptions import InvalidParameterError

ROWS = 6_000
PARAMS = DetectorParams(n_estimators=40, num_threads=1)
#: Fraud when either of two families is far out: an amount (amount_type) or a new IP (novelty), nothing else.
SIGNAL = {"amount_type": "amount", "novelty": "new_ip"}


def _two_signals(rows: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Random features; about 3 % fraud, each fraud explained by exactly one of the two signal columns."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(rows, len(features.FEATURES))), columns=list(features.FEATURES))
    return frame, ((frame["amount"] > 2.2) | (frame["new_ip"] > 2.2)).to_numpy()


@pytest.fixture(scope="module")
def toy():
    return _two_signals(ROWS, seed=5)


@pytest.fixture(scope="module")
def detector(toy) -> Detector:
    frame, labels = toy
    return train_detector(frame, labels, params=PARAMS)


def _reference_rows(detector: Detector, rows: int) -> np.ndarray:
    return np.tile(np.asarray(detector.references, dtype=np.float32), (rows, 1))


def test_references_are_the_medians_of_the_legitimate_rows(detector, toy):
    # Setup
    frame, labels = toy

    # Run
    expected = np.median(frame[list(features.FEATURES)].to_numpy(np.float32)[~labels], axis=0)

    # Assert
    np.testing.assert_array_equal(np.asarray(detector.references, dtype=np.float32), expected)
    assert detector.families == tuple(features.FAMILIES)


def test_the_family_made_anomalous_is_the_first_reason(detector):
    """A legitimate-looking row with one signal column pushed out gets that column's family as its reason."""
    # Setup
    rows = _reference_rows(detector, 2)
    for row, column in zip(rows, SIGNAL.values(), strict=True):
        row[detector.feature_names.index(column)] = 4.0

    # Run
    scores = detector.score_matrix(rows)
    reasons = detector.reasons(rows, top=1)

    # Assert
    assert (scores > 0.9).all()
    assert reasons == [(family,) for family in SIGNAL]


def test_reasons_are_the_positive_drops_largest_first(detector, toy):
    """Against one score_matrix call per family: order by fall, only falls count, at most ``top``."""
    # Setup
    frame, _ = toy
    x = detector.feature_matrix(frame.iloc[:300])
    reference = np.asarray(detector.references, dtype=np.float32)
    drops = []
    for family in detector.families:
        occluded = x.copy()
        index = [detector.feature_names.index(name) for name in features.FAMILIES[family]]
        occluded[:, index] = reference[index]
        drops.append(detector.score_matrix(x) - detector.score_matrix(occluded))
    drops = np.array(drops).T

    # Run
    reasons = detector.reasons(x, top=3)

    # Assert
    assert len(reasons) == len(x)
    for row, named in zip(drops, reasons, strict=True):
        expected = [detector.families[j] for j in np.argsort(-row, kind="stable")[:3] if row[j] > 0]
        assert list(named) == expected
    assert any(len(named) < 3 for named in reasons)  # rows where fewer than three families raise the score


def test_a_row_at_its_references_has_no_reason(detector):
    assert detector.reasons(_reference_rows(detector, 3), top=len(detector.families)) == [(), (), ()]


def test_a_detector_without_a_family_never_names_it(toy):
    # Setup
    frame, labels = toy
    subset = tuple(name for name in features.FEATURES if name not in features.FAMILIES["novelty"])
    detector = train_detector(frame, labels, feature_names=subset, params=PARAMS)
    x = detector.feature_matrix(frame.iloc[:500])

    # Run
    reasons = detector.reasons(x, top=len(detector.families))

    # Assert
    assert "novelty" not in detector.families and len(detector.families) == len(features.FAMILIES) - 1
    assert not any("novelty" in named for named in reasons)
    with pytest.raises(InvalidParameterError, match=r"ask for 1 to 7 reasons"):
        detector.reasons(x, top=8)


def test_batches_larger_than_one_call_give_the_same_reasons(detector, toy, monkeypatch):
    """Chunked calls (a large batch) and one call give the same reasons, row for row."""
    # Setup
    frame, _ = toy
    x = detector.feature_matrix(frame.iloc[:200])
    whole = detector.reasons(x)

    # Run
    monkeypatch.setattr("fraudlab.detect.model._OCCLUSION_ROWS", 9 * 7)  # 7 rows per call, 29 calls
    chunked = detector.reasons(x)

    # Assert
    assert chunked == whole


def test_empty_input_and_bad_arguments(detector):
    # Setup
    width = len(detector.feature_names)

    # Run / Assert
    assert detector.reasons(np.empty((0, width), dtype=np.float32)) == []
    assert detector.reasons(np.zeros((2, width), dtype=np.float64), top=8) == detector.reasons(
        np.zeros((2, width), dtype=np.float32), top=8)
    for top in (0, -1, 9, True, 2.5, "3"):
        with pytest.raises(InvalidParameterError, match=rf"Invalid top={top!r}: ask for 1 to 8 reasons"):
            detector.reasons(np.zeros((1, width)), top=top)
    with pytest.raises(InvalidParameterError, match=r"shape \(3, 2\)"):
        detector.reasons(np.zeros((3, 2)))
