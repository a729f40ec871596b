"""How close fraudlab's PaySim simulator comes to the real rows: the fidelity figures its calibration must meet.

Each figure puts the simulated value next to the real sample's own (for
similarity scores: one random half of the real sample against the other) and
the target it must reach. ``docs/paysim.md`` lists the figures of the
committed calibration; ``benchmarks/paysim.py`` measures them at scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from fraudlab.data.reference import Reference, load_reference
from fraudlab.evaluate.metrics import quality_reports
from fraudlab.schema.rules import rule_pass_rates
from fraudlab.schema.table import BALANCE_COLUMNS, TRANSACTION_TYPES

__all__ = ["FidelityFigure", "fidelity_figures", "quality_scores"]


@dataclass(frozen=True)
class FidelityFigure:
    """One fidelity figure: the simulated value, the real sample's own value, and the target it must meet.

    For similarity scores the real value compares one random half of the
    real sample with the other: the score real data itself reaches.
    """

    name: str
    simulated: float
    real: float
    target: str
    met: bool


_QUALITY_COLUMNS = ("type", "amount", *BALANCE_COLUMNS, "is_fraud")


def quality_scores(real: pd.DataFrame, synthetic: pd.DataFrame) -> tuple[float, float]:
    """SDMetrics' QualityReport score with its default pair thresholds, and the score over every column pair.

    The second score averages all 21 pairs of type, amount, the four balances and is_fraud.
    """
    default, every_pair = quality_reports(real, synthetic, _QUALITY_COLUMNS)
    return float(default.get_score()), float(every_pair.get_score())


def _ks_complement(real: pd.Series, synthetic: pd.Series) -> float:
    from sdmetrics.single_column import KSComplement

    return float(KSComplement.compute(real, synthetic))


def _empties_origin(frauds: pd.DataFrame) -> float:
    return float(((frauds["amount"] == frauds["old_balance_orig"]) & (frauds["new_balance_orig"] == 0)).mean())


def _type_mix_figures(table: pd.DataFrame, real: pd.DataFrame) -> list[FidelityFigure]:
    figures = []
    for name in TRANSACTION_TYPES:
        simulated, actual = float((table["type"] == name).mean()), float((real["type"] == name).mean())
        figures.append(FidelityFigure(f"share of {name}", simulated, actual, "real ±1 pt",
                                      abs(simulated - actual) <= 0.01))
    return figures


def _fraud_figures(table: pd.DataFrame, reference: Reference) -> list[FidelityFigure]:
    frauds = table[table["is_fraud"]]
    rate = float(table["is_fraud"].mean())
    in_types = float(frauds["type"].isin(["TRANSFER", "CASH_OUT"]).mean()) if len(frauds) else 0.0
    empties = _empties_origin(frauds) if len(frauds) else 0.0
    real_in_types = float(reference.frauds["type"].isin(["TRANSFER", "CASH_OUT"]).mean())
    return [
        FidelityFigure("fraud rate", rate, float(reference.sample["is_fraud"].mean()), "0.10%-0.16%",
                       0.0010 <= rate <= 0.0016),
        FidelityFigure("frauds in TRANSFER or CASH_OUT", in_types, real_in_types, "100%", in_types == 1.0),
        FidelityFigure("frauds emptying the origin", empties, _empties_origin(reference.frauds), ">= 95%",
                       empties >= 0.95),
    ]


def _zero_share_figures(table: pd.DataFrame, real: pd.DataFrame) -> list[FidelityFigure]:
    figures = []
    for column in BALANCE_COLUMNS:
        simulated, actual = float((table[column] == 0).mean()), float((real[column] == 0).mean())
        figures.append(FidelityFigure(f"zero share of {column}", simulated, actual, "real ±3 pts",
                                      abs(simulated - actual) <= 0.03))
    return figures


def _amount_figures(table: pd.DataFrame, real: pd.DataFrame, halves: tuple[pd.DataFrame, ...]) -> list[FidelityFigure]:
    figures = []
    for name in TRANSACTION_TYPES:
        simulated = _ks_complement(real.loc[real["type"] == name, "amount"], table.loc[table["type"] == name, "amount"])
        baseline = _ks_complement(*(half.loc[half["type"] == name, "amount"] for half in halves))
        figures.append(FidelityFigure(f"KS-complement of {name} amounts", simulated, baseline, ">= 0.90",
                                      simulated >= 0.90))
    return figures


def fidelity_figures(
    table: pd.DataFrame, reference: Reference | None = None, *, seed: int = 0, quality_rows: int = 200_000
) -> list[FidelityFigure]:
    """Every fidelity figure of issue 3 for simulated rows, next to the real sample's value.

    Args:
        table: simulated rows (the canonical table).
        reference: the real rows (default :func:`fraudlab.data.readers.load_reference`).
        seed: seeds the split of the real sample into halves and the subsample below.
        quality_rows: SDMetrics' reports run on at most this many simulated rows (a seeded draw).
    """
    reference = reference or load_reference()
    real = reference.sample
    rng = np.random.default_rng(seed)
    first = rng.permutation(len(real))[: len(real) // 2]
    halves = (real.iloc[np.sort(first)], real.drop(real.index[first]))
    scored = table.iloc[np.sort(rng.choice(len(table), quality_rows, replace=False))] if len(table) > quality_rows \
        else table
    default, every_pair = quality_scores(real, scored)
    real_default, real_every_pair = quality_scores(*halves)
    identities = rule_pass_rates(table)["all"]
    return [
        *_type_mix_figures(table, real),
        *_fraud_figures(table, reference),
        *_zero_share_figures(table, real),
        *_amount_figures(table, real, halves),
        FidelityFigure("SDMetrics QualityReport score", default, real_default, ">= 0.90", default >= 0.90),
        FidelityFigure("QualityReport over all 21 column pairs", every_pair, real_every_pair, ">= 0.90",
                       every_pair >= 0.90),
        FidelityFigure("rows obeying every accounting rule", identities, rule_pass_rates(real)["all"], ">= 99.9%",
                       identities >= 0.999),
    ]
