"""The evaluation's arithmetic on scores whose answers are known: thresholds, per-scenario tables, source weights."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fraudlab.detect.evaluate import choose_threshold, markdown_table, scenario_table, threshold_curve, without
from fraudlab.detect.features import FAMILIES, FEATURES
from fraudlab.detect.training import LabelledFeatures, TrainingSettings, combine
from fraudlab.exceptions import InvalidParameterError

SCORES = np.array([0.99, 0.95, 0.90, 0.80, 0.50, 0.40, 0.30, 0.20, 0.10, 0.05])
LABELS = np.array([True, True, False, True, False, False, False, False, False, False])


def test_threshold_curve_counts_alerts_at_or_above_each_score() -> None:
    curve = threshold_curve(SCORES, LABELS)
    at = curve.set_index("threshold")
    assert at.loc[0.90, "precision"] == pytest.approx(2 / 3) and at.loc[0.90, "recall"] == pytest.approx(2 / 3)
    assert at.loc[0.80, "recall"] == 1.0 and at.loc[0.80, "flagged_share"] == 0.4


def test_the_threshold_is_the_best_f1_within_the_alert_budget() -> None:
    assert choose_threshold(SCORES, LABELS, budget=0.45).value == 0.80  # 3 of 3 frauds, 1 false alarm: F1 0.857
    tight = choose_threshold(SCORES, LABELS, budget=0.2)  # two alerts at most
    assert (tight.value, tight.precision, tight.recall, tight.flagged_share) == (0.95, 1.0, pytest.approx(2 / 3), 0.2)


def test_a_threshold_needs_fraud_and_a_budget_in_range() -> None:
    with pytest.raises(InvalidParameterError, match="no fraud"):
        choose_threshold(SCORES, np.zeros(10, dtype=bool), budget=0.1)
    with pytest.raises(InvalidParameterError, match=r"budget 1\.5"):
        choose_threshold(SCORES, LABELS, budget=1.5)


def test_scenario_precision_is_measured_against_all_legitimate_alerts() -> None:
    scenario = np.array(["account_takeover", "card_testing", "normal", "account_takeover", "traveller",
                         "normal", "normal", "normal", "normal", "normal"])
    table = scenario_table(SCORES, LABELS, scenario, threshold=0.80)
    assert table.loc["account_takeover", "recall"] == 1.0
    assert table.loc["account_takeover", "precision"] == 2 / 3  # two takeover alerts, one false alarm
    assert table.loc["card_testing", "precision"] == 1 / 2
    assert np.isnan(table.loc["normal", "recall"]) and table.loc["normal", "flagged_share"] == 1 / 6
    assert list(table.index[:2]) == ["account_takeover", "card_testing"]


def test_without_drops_exactly_one_family() -> None:
    names = without("balance_errors")
    assert set(FEATURES) - set(names) == set(FAMILIES["balance_errors"])
    with pytest.raises(InvalidParameterError, match=r"'balance'.*balance_errors"):
        without("balance")


def test_every_source_carries_the_same_total_weight() -> None:
    def part(name: str, rows: int) -> LabelledFeatures:
        return LabelledFeatures(name, pd.DataFrame({"x": np.arange(rows)}), np.arange(rows) % 2 == 0,
                                np.linspace(1, 3, rows))

    combined = combine([part("stream", 100), part("copula", 400)])
    assert len(combined.labels) == 500 and combined.weights[:100].sum() == pytest.approx(combined.weights[100:].sum())
    assert list(np.unique(combined.scenario)) == ["copula", "stream"]


def test_training_settings_name_the_bad_value() -> None:
    with pytest.raises(InvalidParameterError, match="alert_budget=0"):
        TrainingSettings(alert_budget=0)
    with pytest.raises(InvalidParameterError, match="copula_frauds=9"):
        TrainingSettings(copula_rows=5, copula_frauds=9)


def test_markdown_tables_show_numbers_to_four_places_and_flags_as_words() -> None:
    table = pd.DataFrame({"fraud": [True], "recall": [0.123456], "gap": [np.nan]}, index=pd.Index(["x"], name="s"))
    assert markdown_table(table).splitlines() == ["| s | fraud | recall | gap |", "|---|---|---|---|",
                                                  "| x | yes | 0.1235 |  |"]
