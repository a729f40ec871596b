"""PaySim's accounting rules, as vectorised checks over the canonical table.

Real PaySim rows obey these on the origin side (measured on the bundled
49,061-row sample: every rule holds on 100% of rows at a one-cent
tolerance), so a synthetic row that breaks one is visibly fake. The
simulator, the synthesizer and the evaluation all judge rows with this one
registry, so "valid" means the same everywhere.

A rule that does not concern a row (the CASH_IN rule on a PAYMENT, say)
counts as obeyed by it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

__all__ = [
    "MONEY_TOLERANCE",
    "RULES",
    "booked_origin_balance",
    "check_rules",
    "expected_new_balance_orig",
    "rule_pass_rates",
]

#: Balances are published rounded to cents, so an identity may be off by one cent (plus float slack).
MONEY_TOLERANCE = 0.011

DEBIT_TYPES = ("CASH_OUT", "DEBIT", "PAYMENT", "TRANSFER")
FRAUD_TYPES = ("TRANSFER", "CASH_OUT")

Rule = Callable[[pd.DataFrame], np.ndarray]


def booked_origin_balance(
    old: np.ndarray, amount: np.ndarray, *, cash_in: np.ndarray | bool, blocked: np.ndarray | bool
) -> np.ndarray:
    """The origin balance PaySim books after a transaction: the one rule the checks and the synthesizer share.

    CASH_IN adds the amount; the debit types subtract it, floored at zero; a
    transfer blocked by the flagged-fraud rule leaves the balance unchanged.
    """
    debited = np.maximum(old - amount, 0.0)
    return np.where(cash_in, old + amount, np.where(blocked, old, debited))


def expected_new_balance_orig(table: pd.DataFrame) -> np.ndarray:
    """The origin balance PaySim's rules give after each row of ``table``."""
    return booked_origin_balance(
        table["old_balance_orig"].to_numpy(dtype="float64"), table["amount"].to_numpy(dtype="float64"),
        cash_in=(table["type"] == "CASH_IN").to_numpy(), blocked=table["is_flagged_fraud"].to_numpy(dtype=bool),
    )


def _close(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a - b) <= MONEY_TOLERANCE


def _amount_positive(table: pd.DataFrame) -> np.ndarray:
    return table["amount"].to_numpy(dtype="float64") > 0


def _balances_non_negative(table: pd.DataFrame) -> np.ndarray:
    columns = ["old_balance_orig", "new_balance_orig", "old_balance_dest", "new_balance_dest"]
    return (table[columns].to_numpy(dtype="float64") >= 0).all(axis=1)


def _cash_in_credits_origin(table: pd.DataFrame) -> np.ndarray:
    applies = (table["type"] == "CASH_IN").to_numpy()
    holds = _close(table["new_balance_orig"].to_numpy(dtype="float64"), expected_new_balance_orig(table))
    return ~applies | holds


def _debits_floor_at_zero(table: pd.DataFrame) -> np.ndarray:
    applies = table["type"].isin(DEBIT_TYPES).to_numpy()
    holds = _close(table["new_balance_orig"].to_numpy(dtype="float64"), expected_new_balance_orig(table))
    return ~applies | holds


def _merchant_balances_zero(table: pd.DataFrame) -> np.ndarray:
    applies = table["name_dest"].astype(str).str.startswith("M").to_numpy()
    dest = table[["old_balance_dest", "new_balance_dest"]].to_numpy(dtype="float64")
    return ~applies | (dest == 0).all(axis=1)


def _fraud_only_in_transfer_and_cash_out(table: pd.DataFrame) -> np.ndarray:
    fraud = table["is_fraud"].to_numpy(dtype=bool)
    return ~fraud | table["type"].isin(FRAUD_TYPES).to_numpy()


RULES: dict[str, Rule] = {
    "amount_positive": _amount_positive,
    "balances_non_negative": _balances_non_negative,
    "cash_in_credits_origin": _cash_in_credits_origin,
    "debits_origin_floored_at_zero": _debits_floor_at_zero,
    "merchant_balances_zero": _merchant_balances_zero,
    "fraud_only_transfer_cash_out": _fraud_only_in_transfer_and_cash_out,
}


def check_rules(table: pd.DataFrame) -> pd.DataFrame:
    """One boolean column per rule (True = obeyed), plus ``all`` for rows obeying every rule."""
    checks = pd.DataFrame({name: rule(table) for name, rule in RULES.items()}, index=table.index)
    checks["all"] = checks.all(axis=1)
    return checks


def rule_pass_rates(table: pd.DataFrame) -> dict[str, float]:
    """The share of rows obeying each rule and all of them together."""
    if table.empty:
        raise ValueError("Cannot check accounting rules on an empty table.")
    return {name: float(values.mean()) for name, values in check_rules(table).items()}
