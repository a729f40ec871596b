"""The real databases in the suite's cache (``make geoip`` fetched them): known addresses and the address space.

These tests do not skip when the databases are missing: CI fetches them through the Makefile, so their absence
is a broken set-up and fails with the command that fixes it.
"""

from __future__ import annotations

import numpy as np
import pytest

from fraudlab.enrich.geoip import AddressSpace, GeoIP, GeoIPFiles, ipv4_strings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def files(cache_dir) -> GeoIPFiles:
    files = GeoIPFiles.at(cache_dir)
    missing = files.missing()
    if missing:
        pytest.fail(f"the real GeoIP databases are not in the cache {cache_dir} ({missing[0]} is missing): "
                    "run `make geoip` (or `fraudlab geoip fetch`) first", pytrace=False)
    return files


@pytest.fixture(scope="module")
def database(files, cache_dir):
    with GeoIP.open(cache_dir) as opened:
        yield opened


@pytest.fixture(scope="module")
def space(files, address_space) -> AddressSpace:
    return address_space


def test_google_dns_is_in_the_us_and_googles_as(database):
    location = database.lookup("8.8.8.8")
    assert (location.country_code, location.asn, location.as_organization) == ("US", 15169, "Google LLC")
    assert location.is_hosting is False


def test_ripe_ncc_is_in_the_netherlands(database):
    """193.0.6.139 is www.ripe.net, in Amsterdam, announced by the RIPE NCC's own AS3333."""
    location = database.lookup("193.0.6.139")
    assert (location.country_code, location.asn) == ("NL", 3333)
    assert 52.0 < location.latitude < 53.0 and 4.0 < location.longitude < 5.5


def test_an_ipv6_address_is_found(database):
    location = database.lookup("2001:4860:4860::8888")
    assert location.asn == 15169 and location.country_code is not None


def test_an_aws_address_is_hosting(database):
    location = database.lookup("52.95.110.1")
    assert (location.asn, location.is_hosting) == (16509, True)


def test_the_index_is_the_whole_routed_ipv4_space(space):
    assert len(space.cities) > 100_000 and len(space.networks) > 1_000_000
    assert 3.0e9 < space.cities["addresses"].sum() <= 2**32
    assert space.countries.index[0] == "US"
    assert len(space.places_in("DE")) > 1_000


def test_drawn_addresses_of_random_places_geolocate_back_to_their_country(database, space):
    """200 random places, 20 addresses each: at least 99 % come back to the place's country (and mostly city)."""
    rng = np.random.default_rng(13)
    places = np.repeat(rng.choice(len(space.cities), 200, replace=False), 20)
    table = database.lookup_many(ipv4_strings(space.draw(places, rng)))
    expected = space.cities["country_code"].to_numpy()[places]
    assert (table["country_code"].to_numpy(dtype=object) == expected).mean() >= 0.99
    same_city = table["city"].fillna("").to_numpy(dtype=object) == space.cities["city"].to_numpy()[places]
    assert same_city.mean() >= 0.95


def test_a_hosting_draw_is_flagged_hosting(database, space):
    table = database.lookup_many(ipv4_strings(space.draw_hosting(1_000, np.random.default_rng(17))))
    assert table["is_hosting"].fillna(False).mean() >= 0.99
