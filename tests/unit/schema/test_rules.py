"""The accounting rules hold on real rows and catch broken ones."""

from __future__ import annotations

import pandas as pd
import pytest

from fraudlab.data.reference import load_reference
from fraudlab.schema.rules import RULES, check_rules, rule_pass_rates


@pytest.fixture(scope="module")
def real():
    return load_reference().sample


def test_every_rule_holds_on_every_real_row(real):
    rates = rule_pass_rates(real)
    assert set(rates) == {*RULES, "all"}
    assert rates == dict.fromkeys(rates, 1.0)


def test_real_frauds_break_only_the_documented_exceptions():
    """Frauds of amount 0 exist in the real file (a few dozen of 8,213); everything else holds."""
    rates = rule_pass_rates(load_reference().frauds)
    assert rates["fraud_only_transfer_cash_out"] == 1.0
    assert rates["debits_origin_floored_at_zero"] == 1.0
    assert 0.99 < rates["amount_positive"] < 1.0


@pytest.mark.parametrize(
    ("column", "value", "broken_rule"),
    [
        ("amount", 0.0, "amount_positive"),
        ("new_balance_orig", 123.0, "debits_origin_floored_at_zero"),
        ("old_balance_dest", 5.0, "merchant_balances_zero"),
        ("is_fraud", True, "fraud_only_transfer_cash_out"),
    ],
)
def test_a_broken_payment_breaks_the_right_rule(real, column, value, broken_rule):
    row = real[(real["type"] == "PAYMENT") & (real["old_balance_orig"] == 0)].head(1).copy()
    row[column] = value
    checks = check_rules(row).iloc[0]
    assert not checks[broken_rule]
    assert not checks["all"]
    others = [name for name in RULES if name not in (broken_rule, "balances_non_negative")]
    assert checks[others].all()


def test_cash_in_must_credit_the_origin():
    row = pd.DataFrame([{
        "type": "CASH_IN", "amount": 10.0, "old_balance_orig": 5.0, "new_balance_orig": 5.0, "name_dest": "C1",
        "old_balance_dest": 20.0, "new_balance_dest": 10.0, "is_fraud": False, "is_flagged_fraud": False,
    }])
    assert not check_rules(row).loc[0, "cash_in_credits_origin"]
    row["new_balance_orig"] = 15.0
    assert check_rules(row).loc[0, "all"]


def test_empty_table_is_refused():
    with pytest.raises(ValueError, match="empty table"):
        rule_pass_rates(load_reference().sample.head(0))
