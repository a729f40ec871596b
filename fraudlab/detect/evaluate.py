"""How good the detector is, measured where a reader can check it: real held-out rows and held-out streams.

* On **real** PaySim rows (the evaluation split of the bundled rows, weighted to the population's fraud rate) the
  synthetic-trained model is set beside the same model trained on the real training half (TSTR vs TRTR), with and
  without the balance-error features (they encode PaySim's own bookkeeping). Real rows have no accounts, so they
  are scored cold.
* On a **held-out stream** (another seed, natural fraud rate) the alert threshold is chosen for an alert budget
  (at most a share of traffic flagged, best F1 within it), and precision and recall are given per scenario.
* The **ablation** retrains without one feature family at a time.

A scenario's precision is measured against all legitimate traffic: of the alerts raised on that scenario's rows and
on every legitimate row, the share that are that scenario's frauds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from fraudlab.detect import features as feature_definition
from fraudlab.detect.model import Detector, DetectorParams, train_detector
from fraudlab.exceptions import InvalidParameterError

if TYPE_CHECKING:
    from fraudlab.detect.training import LabelledFeatures

__all__ = ["DetectionReport", "Threshold", "ablation", "choose_threshold", "compare_on_real", "markdown_table",
           "ranking", "scenario_table", "threshold_curve", "without"]

#: The stream's scenarios that are fraud, in the order tables show them; look-alikes follow.
FRAUD_SCENARIOS = ("account_takeover", "foreign_ip", "home_spoof", "card_testing")


def ranking(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None) -> dict[str, float]:
    """PR-AUC (average precision) and ROC-AUC, weighted."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    return {"pr_auc": float(average_precision_score(labels, scores, sample_weight=weights)),
            "roc_auc": float(roc_auc_score(labels, scores, sample_weight=weights))}


@dataclass(frozen=True)
class Threshold:
    """The alert threshold and what it buys on the rows it was chosen on."""

    value: float
    budget: float
    flagged_share: float
    precision: float
    recall: float


def _cumulative(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, ...]:
    """Thresholds (distinct scores, descending) and the weighted true/false positives at or above each."""
    order = np.argsort(-scores, kind="stable")
    ranked, positive, weight = scores[order], labels[order], weights[order]
    last = np.concatenate((ranked[1:] != ranked[:-1], [True]))
    tp = np.cumsum(weight * positive)[last]
    fp = np.cumsum(weight * ~positive)[last]
    return ranked[last], tp, fp


def threshold_curve(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None) -> pd.DataFrame:
    """Precision, recall and flagged share at every distinct score (the figure's curve)."""
    weights = np.ones(len(scores)) if weights is None else weights
    thresholds, tp, fp = _cumulative(np.asarray(scores), np.asarray(labels, dtype=bool), weights)
    return pd.DataFrame({"threshold": thresholds, "precision": tp / (tp + fp),
                         "recall": tp / max(float(weights[labels].sum()), 1e-300),
                         "flagged_share": (tp + fp) / weights.sum()})


def choose_threshold(scores: np.ndarray, labels: np.ndarray, *, budget: float,
                     weights: np.ndarray | None = None) -> Threshold:
    """The threshold of best F1 among those flagging at most ``budget`` of the traffic."""
    if not 0 < budget < 1:
        raise InvalidParameterError(f"Invalid alert budget {budget!r}: use a share in (0, 1).")
    labels = np.asarray(labels, dtype=bool)
    if not labels.any():
        raise InvalidParameterError("choose_threshold: the rows have no fraud, so no threshold can be chosen")
    curve = threshold_curve(np.asarray(scores), labels, weights)
    within = curve[curve["flagged_share"] <= budget]
    if within.empty:
        within = curve.iloc[:1]
    f1 = 2 * within["precision"] * within["recall"] / (within["precision"] + within["recall"]).clip(lower=1e-300)
    best = within.loc[f1.idxmax()]
    return Threshold(float(best["threshold"]), budget, float(best["flagged_share"]), float(best["precision"]),
                     float(best["recall"]))


def scenario_table(scores: np.ndarray, labels: np.ndarray, scenario: np.ndarray, threshold: float) -> pd.DataFrame:
    """Per scenario: rows, frauds, alerts, recall (share of its rows flagged) and precision against legit traffic."""
    alerts = np.asarray(scores) >= threshold
    labels = np.asarray(labels, dtype=bool)
    false_alerts = int((alerts & ~labels).sum())
    names = [*FRAUD_SCENARIOS, *sorted(set(scenario) - set(FRAUD_SCENARIOS))]
    rows = []
    for name in names:
        mine = scenario == name
        if not mine.any():
            continue
        flagged = int((alerts & mine).sum())
        fraud = bool(labels[mine].any())
        rows.append({"scenario": name, "fraud": fraud, "rows": int(mine.sum()), "alerts": flagged,
                     "recall": flagged / mine.sum() if fraud else np.nan,
                     "precision": flagged / (flagged + false_alerts) if fraud and flagged + false_alerts else np.nan,
                     "flagged_share": flagged / mine.sum()})
    return pd.DataFrame(rows).set_index("scenario")


def _retrained(train: LabelledFeatures, names: tuple[str, ...], params: DetectorParams) -> Detector:
    return train_detector(train.features, train.labels, weights=train.weights, feature_names=names, params=params,
                          training_data={"source": train.source})


def without(family: str) -> tuple[str, ...]:
    """Every feature but those of ``family``."""
    if family not in feature_definition.FAMILIES:
        raise InvalidParameterError(f"Unknown feature family {family!r}: use one of "
                                    f"{', '.join(feature_definition.FAMILIES)}.")
    return tuple(name for name in feature_definition.FEATURES if name not in feature_definition.FAMILIES[family])


def compare_on_real(detector: Detector, synthetic: LabelledFeatures, real_train: LabelledFeatures,
                    real_test: LabelledFeatures, *, params: DetectorParams) -> pd.DataFrame:
    """TSTR next to TRTR on the held-out real rows, with all features and without the balance errors."""
    rows = []
    for variant, names in (("all features", feature_definition.FEATURES),
                           ("without balance errors", without("balance_errors"))):
        tstr = detector if names == detector.feature_names else _retrained(synthetic, names, params)
        trtr = _retrained(real_train, names, params)
        for training, model in (("synthetic (TSTR)", tstr), ("real (TRTR)", trtr)):
            rows.append({"features": variant, "trained on": training,
                         **ranking(model.score(real_test.features), real_test.labels, real_test.weights)})
    table = pd.DataFrame(rows)
    real = table[table["trained on"] == "real (TRTR)"].set_index("features")["pr_auc"]
    table["pr_auc / TRTR"] = table["pr_auc"] / table["features"].map(real)
    return table


def ablation(train: LabelledFeatures, held_out: LabelledFeatures, real_test: LabelledFeatures, *,
             params: DetectorParams, budget: float, full: Detector | None = None) -> pd.DataFrame:
    """What each feature family adds: retrained without it, scored on the held-out stream and the real rows."""
    rows = []
    variants = [("none", feature_definition.FEATURES)] + [(family, without(family))
                                                           for family in feature_definition.FAMILIES]
    for dropped, names in variants:
        model = full if full is not None and names == full.feature_names else _retrained(train, names, params)
        scores = model.score(held_out.features)
        threshold = choose_threshold(scores, held_out.labels, budget=budget)
        table = scenario_table(scores, held_out.labels, held_out.scenario, threshold.value)
        rows.append({"without": dropped, "stream_pr_auc": ranking(scores, held_out.labels)["pr_auc"],
                     "real_pr_auc": ranking(model.score(real_test.features), real_test.labels,
                                            real_test.weights)["pr_auc"],
                     "recall": threshold.recall, "precision": threshold.precision,
                     "takeover_recall": table["recall"].get("account_takeover", np.nan)})
    return pd.DataFrame(rows).set_index("without")


def markdown_table(frame: pd.DataFrame, *, index: bool = True) -> str:
    """A frame as a Markdown table, numbers to four decimals (pandas' own needs the optional ``tabulate``)."""
    shown = frame.reset_index() if index else frame

    def cell(value: Any) -> str:
        if isinstance(value, bool | np.bool_):
            return "yes" if value else "no"
        if isinstance(value, float | np.floating):
            return "" if np.isnan(value) else f"{value:.4f}"
        return str(value)

    lines = ["| " + " | ".join(map(str, shown.columns)) + " |", "|" + "---|" * len(shown.columns)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in shown.itertuples(index=False)]
    return "\n".join(lines)


@dataclass(frozen=True)
class DetectionReport:
    """Every figure of one training run: real-row comparison, threshold, per-scenario table, ablation."""

    real: pd.DataFrame
    stream: dict[str, float]
    threshold: Threshold
    scenarios: pd.DataFrame
    curve: pd.DataFrame
    ablation: pd.DataFrame | None
    training: dict[str, Any]

    def metrics(self) -> dict[str, float]:
        """Flat metrics for MLflow and the manifest; ``real_pr_auc`` is what the promotion gate compares."""
        real = self.real.set_index(["features", "trained on"])
        out = {
            "real_pr_auc": real.loc[("all features", "synthetic (TSTR)"), "pr_auc"],
            "real_roc_auc": real.loc[("all features", "synthetic (TSTR)"), "roc_auc"],
            "real_pr_auc_trtr": real.loc[("all features", "real (TRTR)"), "pr_auc"],
            "real_pr_auc_ratio": real.loc[("all features", "synthetic (TSTR)"), "pr_auc / TRTR"],
            "real_pr_auc_no_balance_errors": real.loc[("without balance errors", "synthetic (TSTR)"), "pr_auc"],
            "real_pr_auc_no_balance_errors_trtr": real.loc[("without balance errors", "real (TRTR)"), "pr_auc"],
            "stream_pr_auc": self.stream["pr_auc"], "stream_roc_auc": self.stream["roc_auc"],
            "threshold": self.threshold.value, "alert_precision": self.threshold.precision,
            "alert_recall": self.threshold.recall, "alert_flagged_share": self.threshold.flagged_share,
        }
        for name, row in self.scenarios.iterrows():
            if row["fraud"]:
                out[f"recall_{name}"] = row["recall"]
                out[f"precision_{name}"] = row["precision"]
            else:
                out[f"flagged_share_{name}"] = row["flagged_share"]
        return {name: float(value) for name, value in out.items() if pd.notna(value)}

    def to_dict(self) -> dict[str, Any]:
        return {"metrics": self.metrics(), "threshold": asdict(self.threshold), "training": self.training,
                "real": self.real.to_dict("records"), "scenarios": self.scenarios.reset_index().to_dict("records"),
                "ablation": None if self.ablation is None else self.ablation.reset_index().to_dict("records")}

    def to_markdown(self) -> str:
        t = self.threshold
        parts = [
            "# Detector evaluation", "",
            "## Real held-out PaySim rows (population-weighted, scored cold)", "",
            markdown_table(self.real, index=False), "",
            f"## Held-out stream: PR-AUC {self.stream['pr_auc']:.4f}, ROC-AUC {self.stream['roc_auc']:.4f}", "",
            f"Alert threshold {t.value:.4f} for a budget of {t.budget:.2%} of traffic: flags {t.flagged_share:.3%}, "
            f"precision {t.precision:.4f}, recall {t.recall:.4f}.", "",
            markdown_table(self.scenarios), "",
        ]
        if self.ablation is not None:
            parts += ["## Ablation (retrained without one family)", "", markdown_table(self.ablation), ""]
        return "\n".join(parts)
