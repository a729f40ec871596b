"""Account streams on a hand-made address space: determinism, event time, every scenario's signature, errors."""

from __future__ import annotations

import ipaddress

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from fraudlab.enrich.geoip import AddressSpace, ipv4_integers
from fraudlab.exceptions import DataValidationError, InvalidParameterError
from fraudlab.generate.accounts import (
    FRAUD_SCENARIOS,
    IP_CLASSES,
    SCENARIOS,
    STREAM_COLUMNS,
    WIRE_COLUMNS,
    StreamSettings,
    build_population,
    flight_hours,
    generate_stream,
    home_countries,
    home_geolocation_share,
    ip_mix,
    locate_places,
    mule_cashouts,
    read_stream,
    scenario_summary,
    top_countries,
)
from fraudlab.generate.synth import TransactionSynthesizer
from fraudlab.schema.rules import rule_pass_rates

SETTINGS = StreamSettings(accounts=400, days=30, merchants=60, seed=5, fraud_rate=0.05,
                          scenario_rates={"traveller": 0.03, "salary_day": 0.03, "new_payee": 0.02})
BALANCE_RULES = ("amount_positive", "balances_non_negative", "cash_in_credits_origin",
                 "debits_origin_floored_at_zero", "merchant_balances_zero")


def _ip(text: str) -> int:
    return int(ipaddress.IPv4Address(text))


def tiny_space() -> AddressSpace:
    """Two Indian cities, Berlin and New York, a few networks each, and one hosting range."""
    cities = pd.DataFrame({"country_code": ["IN", "IN", "DE", "US"], "city": ["Mumbai", "Delhi", "Berlin", "New York"],
                           "latitude": [19.07, 28.61, 52.52, 40.71], "longitude": [72.88, 77.21, 13.40, -74.01]})
    ranges = [("1.0.0.0", "1.0.255.255", 0), ("1.1.0.0", "1.1.0.255", 0), ("2.0.0.0", "2.0.15.255", 1),
              ("3.0.0.0", "3.0.3.255", 2), ("4.0.0.0", "4.0.7.255", 3)]
    networks = pd.DataFrame({"first": [_ip(a) for a, _, _ in ranges], "last": [_ip(b) for _, b, _ in ranges],
                             "place": [place for *_, place in ranges]})
    hosting = pd.DataFrame({"first": [_ip("9.0.0.0")], "last": [_ip("9.0.0.255")], "asn": [16509],
                            "as_organization": ["Amazon.com, Inc."]})
    return AddressSpace.from_frames(cities, networks, hosting)


@pytest.fixture(scope="module")
def space() -> AddressSpace:
    return tiny_space()


@pytest.fixture(scope="module")
def model(pretrained_model) -> TransactionSynthesizer:
    return pretrained_model


@pytest.fixture(scope="module")
def stream(space, model) -> pd.DataFrame:
    return generate_stream(SETTINGS, space=space, model=model)


@pytest.fixture(scope="module")
def homes(space, model) -> pd.DataFrame:
    """Each account's home place, country and IP, by user_id."""
    population = build_population(SETTINGS, space, model)
    k = population.accounts
    return pd.DataFrame({"place": population.home_place, "country": population.country_codes(space),
                         "home_ip": population.home_ip}, index=population.user_id[:k])


def _countries(space: AddressSpace, addresses: pd.Series) -> np.ndarray:
    places = locate_places(space, ipv4_integers(addresses))
    return np.where(places >= 0, space.cities["country_code"].to_numpy(str)[np.maximum(places, 0)], "")


def _hosting(space: AddressSpace, addresses: pd.Series) -> np.ndarray:
    values = ipv4_integers(addresses).astype(np.int64)
    first, last = space.hosting["first"].to_numpy(np.int64), space.hosting["last"].to_numpy(np.int64)
    return ((values[:, None] >= first) & (values[:, None] <= last)).any(axis=1)


def test_same_settings_give_the_same_frame_and_another_seed_another(space, model, stream):
    """Reproducible row for row, transaction ids included."""
    # Run
    again = generate_stream(SETTINGS, space=space, model=model)
    other = generate_stream(StreamSettings(accounts=400, days=30, merchants=60, seed=6), space=space, model=model)

    # Assert
    pd.testing.assert_frame_equal(stream, again)
    assert not set(other["transaction_id"]) & set(stream["transaction_id"])


def test_columns_order_and_event_time(stream):
    assert list(stream.columns) == list(STREAM_COLUMNS)
    assert stream["timestamp"].dtype == np.int64 and stream["user_id"].dtype == np.int64
    assert stream["timestamp"].is_monotonic_increasing
    assert stream.groupby("user_id")["timestamp"].apply(lambda t: t.is_monotonic_increasing).all()
    assert stream["transaction_id"].is_unique
    assert stream["timestamp"].min() >= pd.Timestamp("2025-01-01", tz="UTC").value // 10**6
    assert set(stream["scenario"].cat.categories) == {"normal", *SCENARIOS}
    names = stream["name_orig"].str[1:].astype(np.int64)
    assert (names == stream["user_id"]).all()
    assert (stream["name_dest"].str.startswith("M") == stream["dest_is_merchant"]).all()
    assert (stream["dest_is_merchant"] == (stream["type"] == "PAYMENT")).all()


def test_every_fraud_row_is_a_fraud_scenario_and_every_scenario_happens(stream):
    fraud_scenarios = stream["scenario"].isin(FRAUD_SCENARIOS)
    assert (stream["is_fraud"] == fraud_scenarios).all()
    assert set(stream["scenario"].unique()) == {"normal", *SCENARIOS}
    share = stream["is_fraud"].mean()
    assert share == pytest.approx(0.05, rel=0.15)


def test_takeover_drains_to_a_fresh_mule_who_cashes_out_the_same_amount_within_minutes(stream, homes, space):
    # Setup
    rows = stream[stream["scenario"] == "account_takeover"]
    ordinary_devices = set(stream.loc[stream["scenario"] == "normal", "device_id"])

    # Assert
    assert rows["incident"].nunique() >= 10
    for _, incident in rows.groupby("incident"):
        transfers = incident[incident["type"] == "TRANSFER"]
        cash_outs = incident[incident["type"] == "CASH_OUT"]
        assert len(transfers) == len(cash_outs) >= 1
        assert transfers["user_id"].nunique() == 1 and transfers["dest_user_id"].nunique() == 1
        mule = transfers["dest_user_id"].iloc[0]
        assert (cash_outs["user_id"] == mule).all()
        assert (stream["user_id"] == mule).sum() == len(cash_outs)  # the mule did nothing else
        assert transfers["new_balance_orig"].iloc[-1] == 0.0
        assert transfers["amount"].sum() == pytest.approx(transfers["old_balance_orig"].iloc[0], abs=0.02)
        assert sorted(cash_outs["amount"]) == sorted(transfers["amount"])
        assert (cash_outs["old_balance_orig"] == cash_outs["amount"]).all()
        for _, cashed in cash_outs.iterrows():
            delay = cashed["timestamp"] - transfers.loc[transfers["amount"] == cashed["amount"], "timestamp"]
            assert ((delay > 0) & (delay <= SETTINGS.mule_minutes * 60_000)).any()
        assert incident["device_id"].nunique() == 1 and incident["device_id"].iloc[0] not in ordinary_devices
    home = homes.loc[rows["user_id"][rows["type"] == "TRANSFER"], "country"].to_numpy()
    transfers = rows[rows["type"] == "TRANSFER"]
    abroad = _countries(space, transfers["ip_address"]) != home
    assert (abroad | _hosting(space, transfers["ip_address"])).all()


def test_card_testing_hits_many_distinct_merchants_with_small_amounts_in_minutes(stream, model):
    rows = stream[stream["scenario"] == "card_testing"]
    small = model.segment("PAYMENT").marginal_quantiles("amount", np.array([0.02]))[0]
    assert rows["incident"].nunique() >= 5
    for _, burst in rows.groupby("incident"):
        assert len(burst) >= 8
        assert burst["name_dest"].nunique() == len(burst) and burst["dest_is_merchant"].all()
        assert burst["timestamp"].max() - burst["timestamp"].min() < SETTINGS.card_test_minutes * 60_000
        assert (burst["amount"] <= small + 0.01).all()
        assert np.allclose(burst["old_balance_orig"].to_numpy()[1:], burst["new_balance_orig"].to_numpy()[:-1])


def test_ip_frauds_come_from_abroad_or_the_home_slash_16(stream, homes, space):
    foreign = stream[stream["scenario"] == "foreign_ip"]
    spoof = stream[stream["scenario"] == "home_spoof"]
    assert len(foreign) >= 10 and len(spoof) >= 3
    assert (foreign["type"] == "PAYMENT").all() and (spoof["type"] == "PAYMENT").all()
    assert (_countries(space, foreign["ip_address"]) != homes.loc[foreign["user_id"], "country"].to_numpy()).all()
    spoofed = ipv4_integers(spoof["ip_address"])
    home = homes.loc[spoof["user_id"], "home_ip"].to_numpy()
    assert ((spoofed >> 16) == (home >> 16)).all() and (spoofed != home).all()


def test_travellers_leave_a_flight_length_gap_each_way(stream, homes, space):
    rows = stream[stream["scenario"] == "traveller"]
    assert rows["incident"].nunique() >= 3
    for _, trip in rows.groupby("incident"):
        account = stream[stream["user_id"] == trip["user_id"].iloc[0]]
        before = account[account["timestamp"] < trip["timestamp"].min()]
        after = account[account["timestamp"] > trip["timestamp"].max()]
        places = locate_places(space, ipv4_integers(trip["ip_address"]))
        assert (space.cities["country_code"].to_numpy()[places] != homes.loc[trip["user_id"].iloc[0], "country"]).all()
        hours = flight_hours(space, np.array([homes.loc[trip["user_id"].iloc[0], "place"]]), places[:1])[0]
        assert hours > 3
        if len(before):
            assert trip["timestamp"].min() - before["timestamp"].max() >= hours * 3_600_000
        if len(after):
            assert after["timestamp"].min() - trip["timestamp"].max() >= hours * 3_600_000
        assert not trip["is_fraud"].any()


def test_salary_day_bursts_start_with_the_salary_on_that_day(stream):
    rows = stream[stream["scenario"] == "salary_day"]
    assert rows["incident"].nunique() >= 5
    for _, burst in rows.groupby("incident"):
        assert burst["type"].iloc[0] == "CASH_IN"
        days = pd.to_datetime(burst["timestamp"], unit="ms", utc=True).dt.day
        assert (days == SETTINGS.salary_day).all()
        assert np.allclose(burst["old_balance_orig"].to_numpy()[1:], burst["new_balance_orig"].to_numpy()[:-1])


def test_new_payees_are_outside_the_recurring_ones(stream, space, model):
    population = build_population(SETTINGS, space, model)
    party = pd.Series(np.arange(len(population.user_id)), index=population.user_id)
    rows = stream[stream["scenario"] == "new_payee"]
    accounts = party[rows["user_id"]].to_numpy()
    payees = party[rows["dest_user_id"]].to_numpy()
    pools = np.c_[population.payee_accounts[accounts], population.payee_merchants[accounts]]
    assert len(rows) >= 50
    assert not (pools == payees[:, None]).any()
    ordinary = stream[stream["scenario"] == "normal"]
    ordinary_payees = party[ordinary["dest_user_id"]].to_numpy()
    ordinary_pools = np.c_[population.payee_accounts, population.payee_merchants][party[ordinary["user_id"]]]
    assert (ordinary_pools == ordinary_payees[:, None]).any(axis=1).all()


def test_ordinary_traffic_follows_the_original_ip_mix_and_home_ips_are_at_home(stream, homes, space):
    ordinary = stream[stream["scenario"] == "normal"]
    mix = ordinary["ip_class"].value_counts(normalize=True)
    assert mix["home"] == pytest.approx(0.85, abs=0.02)
    assert mix["domestic"] == pytest.approx(0.10, abs=0.015)
    assert mix["foreign"] == pytest.approx(0.05, abs=0.01)
    at_home = ordinary[ordinary["ip_class"].isin(["home", "domestic"])]
    assert (_countries(space, at_home["ip_address"]) == homes.loc[at_home["user_id"], "country"].to_numpy()).all()
    assert (homes["country"] == "IN").mean() == pytest.approx(0.9, abs=0.05)


def test_balance_rules_hold_and_only_payment_frauds_break_the_paysim_fraud_rule(stream):
    rates = rule_pass_rates(stream)
    assert all(rates[name] >= 0.999 for name in BALANCE_RULES), rates
    payment_frauds = (stream["is_fraud"] & (stream["type"] == "PAYMENT")).mean()
    assert rates["fraud_only_transfer_cash_out"] == pytest.approx(1 - payment_frauds)


def test_rows_gives_exactly_that_many_and_days_scale_with_the_accounts(space, model):
    exact = generate_stream(StreamSettings(accounts=300, merchants=40, rows=12_345), space=space, model=model)
    small = generate_stream(StreamSettings(accounts=200, days=10, merchants=40), space=space, model=model)
    large = generate_stream(StreamSettings(accounts=400, days=10, merchants=40), space=space, model=model)
    assert len(exact) == 12_345
    assert len(large) / len(small) == pytest.approx(2.0, rel=0.25)
    assert small["timestamp"].max() - small["timestamp"].min() <= 10 * 86_400_000 + 3_600_000


@pytest.mark.parametrize(("overrides", "named"), [
    ({"accounts": 0}, "accounts=0"),
    ({"rate_median": -1.0}, "rate_median=-1.0"),
    ({"scenario_rates": {"phishing": 0.01}}, "unknown scenario 'phishing'"),
    ({"scenario_rates": {"card_testing": -0.1}}, "scenario_rates['card_testing']=-0.1"),
    ({"fraud_rate": 1.5}, "fraud_rate=1.5"),
    ({"days": 0}, "days=0"),
    ({"start": "not a date"}, "start='not a date'"),
])
def test_bad_settings_name_the_field_and_the_value(overrides, named):
    with pytest.raises(InvalidParameterError, match=named.replace("[", r"\[").replace("]", r"\]")):
        StreamSettings(**overrides)


def test_an_unknown_home_country_and_too_few_rows_are_named(space, model):
    with pytest.raises(InvalidParameterError, match="home_country='ZZ'"):
        generate_stream(StreamSettings(accounts=10, merchants=30, home_country="ZZ"), space=space, model=model)
    crowded = StreamSettings(accounts=10, merchants=30, rows=10,
                             scenario_rates={"card_testing": 1.0, "salary_day": 1.0})
    with pytest.raises(InvalidParameterError, match="rows=10: the scenarios alone add"):
        generate_stream(crowded, space=space, model=model)


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_generate_command_writes_every_stream_column(tmp_path, monkeypatch, space, suffix):
    # Setup
    from fraudlab.cli import cli

    monkeypatch.setattr(AddressSpace, "load", classmethod(lambda cls, cache_dir=None: space))
    output = tmp_path / f"stream{suffix}"

    # Run
    result = CliRunner().invoke(cli, ["generate", "--accounts", "200", "--days", "5", "--seed", "3", "--no-progress",
                                      "--fraud-rate", "0.02", "--scenario-rate", "new_payee=0.01", "-o", str(output)])

    # Assert
    assert result.exit_code == 0, result.output
    written = read_stream(output)
    generated = generate_stream(StreamSettings(accounts=200, days=5, seed=3, fraud_rate=0.02,
                                               scenario_rates={"new_payee": 0.01}), space=space)
    pd.testing.assert_frame_equal(written, generated)
    assert f"Generated: {len(written):,} rows" in result.output and "200 accounts" in result.output
    assert f"account_takeover {(written['scenario'] == 'account_takeover').sum():,}" in result.output
    assert (written["scenario"] == "new_payee").sum() == pytest.approx(0.01 * len(written), abs=2)


def test_generate_command_refuses_a_malformed_scenario_rate(tmp_path):
    from fraudlab.cli import cli

    result = CliRunner().invoke(cli, ["generate", "--scenario-rate", "card_testing", "-o", str(tmp_path / "s.csv")])
    assert result.exit_code == 2 and "NAME=RATE" in result.output


def test_read_stream_refuses_a_table_without_the_stream_columns(tmp_path):
    path = tmp_path / "plain.csv"
    pd.DataFrame({"amount": [1.0]}).to_csv(path, index=False)
    with pytest.raises(DataValidationError, match="missing stream column"):
        read_stream(path)


def test_scenario_summary_counts_every_scenario_beside_its_target(stream):
    table = scenario_summary(stream, SETTINGS.resolved_rates())

    assert list(table.index) == ["normal", *SCENARIOS]
    assert table["rows"].sum() == len(stream)
    assert table["share"].sum() == pytest.approx(1.0)
    assert set(table.index[table["fraud"]]) == set(FRAUD_SCENARIOS)
    assert table.loc[list(FRAUD_SCENARIOS), "rows"].sum() == stream["is_fraud"].sum()
    takeover = stream[stream["scenario"] == "account_takeover"]
    assert table.loc["account_takeover", "incidents"] == takeover["incident"].nunique()
    assert table.loc["normal", "incidents"] == 0 and np.isnan(table.loc["normal", "target"])
    assert table.loc[list(FRAUD_SCENARIOS), "target"].sum() == pytest.approx(0.05)
    assert "target" not in scenario_summary(stream).columns


def test_ip_mix_puts_each_class_beside_the_original_systems_weights(stream):
    mix = ip_mix(stream)

    assert list(mix.index) == list(IP_CLASSES)
    assert mix[["ordinary", "ip_fraud", "all_rows"]].sum().to_numpy() == pytest.approx([1.0, 1.0, 1.0])
    assert mix["original_legit"].dropna().to_dict() == {"home": 0.85, "domestic": 0.10, "foreign": 0.05}
    assert mix["original_fraud"].dropna().to_dict() == {"foreign": 0.80, "spoof": 0.20}
    assert mix.loc["home", "ordinary"] == pytest.approx(0.85, abs=0.02)
    assert mix.loc["foreign", "ip_fraud"] + mix.loc["spoof", "ip_fraud"] == pytest.approx(1.0)
    assert mix.loc["hosting", "all_rows"] == pytest.approx((stream["ip_class"] == "hosting").mean())


def test_mule_cashouts_pair_every_transfer_with_its_cash_out(stream):
    pairs = mule_cashouts(stream)
    takeover = stream[stream["scenario"] == "account_takeover"]

    assert len(pairs) == (takeover["type"] == "TRANSFER").sum() == (takeover["type"] == "CASH_OUT").sum()
    assert pairs["same_amount"].all() and pairs["same_device_and_ip"].all()
    assert (pairs["transfer_amount"] == pairs["cash_out_amount"]).all()
    assert ((pairs["minutes"] > 0) & (pairs["minutes"] <= SETTINGS.mule_minutes)).all()
    assert set(pairs["victim"]) == set(takeover.loc[takeover["type"] == "TRANSFER", "user_id"])


def test_mule_cashouts_show_a_cash_out_of_another_amount_as_unmatched(stream):
    changed = stream.copy()
    cash_out = changed.index[(changed["scenario"] == "account_takeover") & (changed["type"] == "CASH_OUT")][0]
    changed.loc[cash_out, "amount"] += 1.0

    pairs = mule_cashouts(changed)

    assert (~pairs["same_amount"]).sum() == 2  # the transfer without its cash-out, and the odd cash-out
    assert pairs["transfer_amount"].isna().sum() == pairs["cash_out_amount"].isna().sum() == 1
    assert pairs["mule"].notna().all() and pairs["victim"].notna().all()


def test_home_rows_geolocate_at_home_and_foreign_traffic_abroad(stream, space, model):
    homes = home_countries(stream, build_population(SETTINGS, space, model), space)
    countries = pd.Series(_countries(space, stream["ip_address"]), index=stream.index).replace("", None)

    assert home_geolocation_share(stream, countries, homes) == 1.0
    mules = stream[(stream["scenario"] == "account_takeover") & (stream["type"] == "CASH_OUT")]
    assert homes[mules.index].isna().all() and homes[stream["scenario"] == "normal"].notna().all()
    assert home_geolocation_share(stream, countries.where(stream["ip_class"] != "home", "ZZ"), homes) == 0.0
    top = top_countries(stream, countries, n=2)
    assert len(top) == 2 and top["total"].is_monotonic_decreasing
    assert (top["total"] == top.drop(columns="total").sum(axis=1)).all()
    everywhere = top_countries(stream, countries, n=100)
    assert everywhere["foreign_ip"].sum() == (stream["scenario"] == "foreign_ip").sum()
    assert everywhere["account_takeover"].sum() == (stream["scenario"] == "account_takeover").sum()


def test_wire_columns_are_the_stream_columns_without_the_labels(stream):
    assert tuple(c for c in STREAM_COLUMNS if c not in ("scenario", "incident", "ip_class")) == WIRE_COLUMNS
    assert {"ip_address", "device_id", "is_fraud", "timestamp"} <= set(stream[list(WIRE_COLUMNS)].columns)
