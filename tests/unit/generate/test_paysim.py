"""fraudlab.generate.paysim: the simulator's mechanics on its own rows, and its fidelity to the bundled real rows."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from fraudlab.cli import cli
from fraudlab.data.readers import read_transactions
from fraudlab.data.reference import POPULATION_FRAUDS, POPULATION_ROWS
from fraudlab.evaluate.simulator import fidelity_figures
from fraudlab.exceptions import SimulationError
from fraudlab.generate.paysim import (
    FLAG_THRESHOLD,
    STEPS,
    SimulationConfig,
    derive_calibration,
    load_calibration,
    simulate,
)
from fraudlab.schema.rules import DEBIT_TYPES
from fraudlab.schema.table import CANONICAL_COLUMNS

ROWS = 200_000


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    return simulate(ROWS, seed=11, progress=False)


def _appearances(table: pd.DataFrame) -> pd.DataFrame:
    """Every time a client account is touched, in ledger order, with its balance before and after."""
    order = np.arange(len(table))
    client_dest = ~table["name_dest"].str.startswith("M").to_numpy()
    origin = pd.DataFrame({"account": table["name_orig"], "order": 2 * order, "step": table["step"],
                           "before": table["old_balance_orig"], "after": table["new_balance_orig"]})
    dest = pd.DataFrame({"account": table["name_dest"], "order": 2 * order + 1, "step": table["step"],
                         "before": table["old_balance_dest"], "after": table["new_balance_dest"]})[client_dest]
    return pd.concat([origin, dest]).sort_values(["account", "order"], kind="stable").reset_index(drop=True)


def _next_rows(table: pd.DataFrame, mask: pd.Series) -> pd.DataFrame:
    positions = np.flatnonzero(mask.to_numpy()) + 1
    return table.iloc[positions].reset_index(drop=True)


# --------------------------------------------------------------------------- the table itself


def test_same_seed_gives_the_same_rows_and_another_seed_others():
    first = simulate(20_000, seed=3, progress=False)
    pd.testing.assert_frame_equal(first, simulate(20_000, seed=3, progress=False), check_exact=True)
    assert not first.equals(simulate(20_000, seed=4, progress=False))


@pytest.mark.parametrize("n_rows", [1, 17, 5_000])
def test_exactly_n_rows_in_the_canonical_table(n_rows):
    table = simulate(n_rows, seed=0, progress=False)
    assert len(table) == n_rows
    assert list(table.columns) == list(CANONICAL_COLUMNS)
    assert str(table["type"].dtype) == "category"
    assert table["amount"].dtype == "float64" and table["is_fraud"].dtype == bool


def test_steps_are_paysims_hours_in_order(rows):
    assert rows["step"].min() == 1
    assert rows["step"].max() <= STEPS
    assert rows["step"].is_monotonic_increasing
    busiest_day = int(((rows["step"] - 1) // 24).value_counts().idxmax())
    assert busiest_day in (0, 1)  # the real log's two busiest days open the month


def test_names_follow_paysim(rows):
    payments = rows["type"] == "PAYMENT"
    assert rows["name_orig"].str.fullmatch(r"C\d{9,10}").all()
    assert rows.loc[payments, "name_dest"].str.fullmatch(r"M\d{9,10}").all()
    assert rows.loc[~payments, "name_dest"].str.startswith("C").all()
    assert (rows.loc[payments, ["old_balance_dest", "new_balance_dest"]] == 0).all().all()


# --------------------------------------------------------------------------- accounts persist


def test_every_balance_continues_from_the_accounts_previous_row(rows):
    """One ledger: an account's balance before a row is its balance after its previous row, across steps."""
    seen = _appearances(rows)
    previous_after = seen.groupby("account")["after"].shift()
    continued = previous_after.notna()
    assert continued.mean() > 0.5
    np.testing.assert_allclose(seen.loc[continued, "before"], previous_after[continued], atol=0.011)


def test_accounts_have_histories_over_several_steps(rows):
    steps_per_account = _appearances(rows).groupby("account")["step"].nunique()
    assert (steps_per_account >= 2).mean() > 0.5
    assert steps_per_account.max() >= 8


# --------------------------------------------------------------------------- fraud


def test_fraud_is_a_transfer_to_a_mule_who_cashes_out_the_same_amount(rows):
    transfers = rows["is_fraud"] & (rows["type"] == "TRANSFER") & ~rows["is_flagged_fraud"]
    sent, cashed = rows[transfers].reset_index(drop=True), _next_rows(rows, transfers)
    assert len(sent) > 100
    assert (cashed["type"] == "CASH_OUT").all() and cashed["is_fraud"].all()
    assert (cashed["step"] == sent["step"]).all()
    assert (cashed["name_orig"] == sent["name_dest"]).all()
    assert (cashed["amount"] == sent["amount"]).all()
    assert (cashed["old_balance_orig"] == cashed["amount"]).all() and (cashed["new_balance_orig"] == 0).all()
    assert (sent["old_balance_dest"] == 0).all() and (sent["new_balance_dest"] == sent["amount"]).all()
    assert int(rows["is_fraud"].sum()) == 2 * len(sent) + int(rows["is_flagged_fraud"].sum())


def test_a_victim_above_the_cap_is_emptied_in_chunks(rows):
    cap = load_calibration().transfer_cap
    frauds = rows[rows["is_fraud"] & (rows["type"] == "TRANSFER")]
    partial = frauds[(frauds["new_balance_orig"] > 0) & ~frauds["is_flagged_fraud"]]
    assert len(partial) > 0
    assert (partial["amount"] == cap).all()
    for index, row in partial.iterrows():
        rest = frauds[(frauds["name_orig"] == row["name_orig"]) & (frauds.index > index)].iloc[0]
        assert rest["step"] == row["step"]
        assert rest["old_balance_orig"] == row["new_balance_orig"]


def _follow_ups(table: pd.DataFrame) -> pd.Series:
    """Fraud TRANSFERs after the first of their takeover (same account, same step)."""
    transfers = table["is_fraud"] & (table["type"] == "TRANSFER")
    later = table[transfers].groupby(["step", "name_orig"], observed=True).cumcount() > 0
    return later.reindex(table.index, fill_value=False)


def test_a_caught_takeover_pays_its_first_chunk_and_its_follow_ups_are_flagged_and_blocked():
    cap = load_calibration().transfer_cap
    always = dataclasses.replace(load_calibration(), flag_probability=1.0, fraud_row_rate=0.05)
    table = simulate(60_000, seed=5, progress=False, config=SimulationConfig(calibration=always))
    flagged = table["is_flagged_fraud"]
    assert flagged.sum() >= 10
    assert flagged.equals(_follow_ups(table) & (table["amount"] > FLAG_THRESHOLD))
    blocked = table[flagged]
    assert blocked["is_fraud"].all() and (blocked["type"] == "TRANSFER").all()
    assert (blocked["new_balance_orig"] == blocked["old_balance_orig"]).all()
    assert (blocked[["old_balance_dest", "new_balance_dest"]] == 0).all().all()
    first = table[table["is_fraud"] & (table["type"] == "TRANSFER") & ~flagged]
    paid = first.set_index(["step", "name_orig"])["new_balance_orig"]
    keys = list(zip(blocked["step"], blocked["name_orig"], strict=True))
    assert (paid.loc[keys].to_numpy() == blocked["old_balance_orig"].to_numpy()).all()
    cash_outs = table[table["is_fraud"] & (table["type"] == "CASH_OUT")]
    cashed = cash_outs.groupby(["step", "name_orig"], observed=True)["amount"].sum()
    assert (cashed.loc[list(zip(blocked["step"], blocked["name_dest"], strict=True))] == cap).all()


def test_the_real_flag_rate_is_rare_and_only_on_follow_ups(rows):
    flagged = rows["is_flagged_fraud"]
    assert flagged.sum() <= 5
    assert (flagged <= _follow_ups(rows)).all()


# --------------------------------------------------------------------------- overdrafts


def test_withdrawals_beyond_the_overdraft_limit_are_refused_and_logged():
    tight = SimulationConfig(overdraft_limit_median=1.0, overdraft_limit_sigma=0.0)
    table = simulate(20_000, seed=2, progress=False, config=tight)
    ordinary = ~table["is_fraud"]
    debit = table["type"].isin(DEBIT_TYPES) & ordinary
    beyond = debit & (table["amount"] > table["old_balance_orig"] + 1.0)
    refused = table["is_unauthorized_overdraft"]
    assert beyond.sum() > 1_000
    assert refused.equals(beyond)
    rows = table[refused]
    assert (rows["new_balance_orig"] == rows["old_balance_orig"]).all()
    assert (rows["new_balance_dest"] == rows["old_balance_dest"]).all()


def test_default_limits_refuse_a_few_withdrawals(rows):
    refused = rows[rows["is_unauthorized_overdraft"]]
    assert 0 < len(refused) < 0.001 * len(rows)
    assert refused["type"].isin(DEBIT_TYPES).all()
    assert (refused["amount"] > refused["old_balance_orig"]).all()


# --------------------------------------------------------------------------- fidelity to the real rows


@pytest.mark.slow
def test_fidelity_to_the_real_rows_within_loose_bounds(rows):
    """Every figure of the benchmark, at looser bounds than its targets (200,000 rows, not 2,000,000)."""
    figures = {figure.name: figure for figure in fidelity_figures(rows)}
    for name, figure in figures.items():
        if name.startswith("share of "):
            assert abs(figure.simulated - figure.real) <= 0.015, figure
        elif name.startswith("zero share of "):
            assert abs(figure.simulated - figure.real) <= 0.04, figure
        elif name.startswith("KS-complement"):
            assert figure.simulated >= 0.85, figure
    assert 0.0009 <= figures["fraud rate"].simulated <= 0.0017
    assert figures["frauds in TRANSFER or CASH_OUT"].simulated == 1.0
    assert figures["frauds emptying the origin"].simulated >= 0.93
    assert figures["SDMetrics QualityReport score"].simulated >= 0.85
    assert figures["QualityReport over all 21 column pairs"].simulated >= 0.85
    assert figures["rows obeying every accounting rule"].simulated >= 0.998
    assert len(figures) == 20


# --------------------------------------------------------------------------- calibration


def test_bundled_calibration_is_what_the_real_rows_give():
    assert load_calibration().to_json() == derive_calibration().to_json()


def test_calibration_weights_the_fraud_file_as_the_population():
    calibration = load_calibration()
    assert calibration.fraud_row_rate == POPULATION_FRAUDS / POPULATION_ROWS
    assert calibration.victim_classes[0] == 0.0  # a takeover needs money to steal
    assert calibration.transfer_cap == 10_000_000.0
    assert calibration.flag_probability == pytest.approx(13 / 94, abs=1e-6)  # real takeovers caught at a follow-up
    assert sum(calibration.type_mix.values()) == pytest.approx(1.0)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: simulate(0), r"Invalid n_rows 0"),
        (lambda: simulate(1.5), r"Invalid n_rows 1\.5"),
        (lambda: simulate(10, seed=-1), r"Invalid seed -1"),
        (lambda: SimulationConfig(clients_per_row=0), r"clients_per_row=0 must be > 0"),
        (lambda: SimulationConfig(overdraft_limit_sigma=-1.0), r"overdraft_limit_sigma=-1\.0 must be >= 0"),
    ],
)
def test_bad_arguments_are_named(call, message):
    with pytest.raises(SimulationError, match=message):
        call()


def test_an_unreadable_calibration_says_how_to_rebuild_it(tmp_path):
    broken = tmp_path / "calibration.json"
    broken.write_text("{")
    with pytest.raises(SimulationError, match=r"Cannot read the PaySim calibration .*write_calibration"):
        load_calibration(broken)


# --------------------------------------------------------------------------- command line


def test_cli_simulates_into_a_parquet_file(tmp_path):
    output = tmp_path / "paysim.parquet"
    result = CliRunner().invoke(cli, ["simulate", "--rows", "5000", "--seed", "3", "-o", str(output), "--no-progress"])
    assert result.exit_code == 0, result.output
    summary = r"Simulated: 5,000 rows in [\d.]+ s \([\d,]+ rows/s\); \d+ frauds; written to .*paysim\.parquet\n"
    assert re.fullmatch(summary, result.output)
    written = read_transactions(output)
    pd.testing.assert_frame_equal(written, simulate(5_000, seed=3, progress=False), check_exact=True)


def test_cli_refuses_a_bad_output_name_before_simulating(tmp_path):
    from click.testing import CliRunner

    from fraudlab.cli import cli

    result = CliRunner().invoke(cli, ["simulate", "--rows", "50000000", "-o", str(tmp_path / "out.xlsx")])
    assert result.exit_code != 0
    assert "Invalid output" in str(result.exception)
    assert not (tmp_path / "out.xlsx").exists()
