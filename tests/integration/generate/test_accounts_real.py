"""Account streams on the real GeoIP address space (after `fraudlab geoip fetch`): addresses are where they claim."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fraudlab.enrich.geoip import AddressSpace, ipv4_integers
from fraudlab.generate.accounts import StreamSettings, build_population, generate_stream, locate_places
from fraudlab.generate.synth import TransactionSynthesizer
from fraudlab.schema.rules import rule_pass_rates

pytestmark = pytest.mark.slow

SETTINGS = StreamSettings(accounts=3_000, days=14, seed=11, fraud_rate=0.01)


@pytest.fixture(scope="module")
def space(address_space) -> AddressSpace:
    return address_space


@pytest.fixture(scope="module")
def model(pretrained_model) -> TransactionSynthesizer:
    return pretrained_model


@pytest.fixture(scope="module")
def stream(space, model) -> pd.DataFrame:
    return generate_stream(SETTINGS, space=space, model=model)


@pytest.fixture(scope="module")
def home_country(space, model) -> pd.Series:
    population = build_population(SETTINGS, space, model)
    return pd.Series(population.country_codes(space), index=population.user_id[:population.accounts])


def _countries(space: AddressSpace, addresses: pd.Series) -> np.ndarray:
    places = locate_places(space, ipv4_integers(addresses))
    assert (places >= 0).all(), "an address outside every network of the database"
    return space.cities["country_code"].to_numpy(str)[places]


def test_home_traffic_geolocates_to_the_accounts_home_country(stream, space, home_country):
    at_home = stream[(stream["scenario"] == "normal") & stream["ip_class"].isin(["home", "domestic"])]
    assert len(at_home) > 10_000
    assert (_countries(space, at_home["ip_address"]) == home_country[at_home["user_id"]].to_numpy()).all()


def test_most_accounts_live_in_the_home_market_and_the_rest_in_many_countries(home_country):
    assert (home_country == "IN").mean() == pytest.approx(0.9, abs=0.02)
    assert home_country[home_country != "IN"].nunique() >= 20


def test_foreign_and_takeover_addresses_are_abroad(stream, space, home_country):
    foreign = stream[(stream["ip_class"] == "foreign") & stream["user_id"].isin(home_country.index)]  # not mules
    assert len(foreign) > 1_000
    assert (_countries(space, foreign["ip_address"]) != home_country[foreign["user_id"]].to_numpy()).all()
    takeover = stream[(stream["scenario"] == "account_takeover") & (stream["type"] == "TRANSFER")]
    abroad = takeover[takeover["ip_class"] == "foreign"]
    assert len(abroad) >= 5
    assert (_countries(space, abroad["ip_address"]) != home_country[abroad["user_id"]].to_numpy()).all()


def test_the_stream_keeps_the_accounting_rules(stream):
    rates = rule_pass_rates(stream)
    for rule in ("amount_positive", "balances_non_negative", "cash_in_credits_origin",
                 "debits_origin_floored_at_zero", "merchant_balances_zero"):
        assert rates[rule] >= 0.999, (rule, rates[rule])
