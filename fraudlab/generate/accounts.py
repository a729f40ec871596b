"""Accounts with histories: a population, its event-time transaction stream, and fraud scenarios in it.

A copula row on its own has no past: no payee it paid before, no device, no IP address, no clock, so nothing a
real-time detector looks at (velocity, new payee, new country, impossible travel, a mule's cash-out) exists in it.
This module gives the copula's rows to accounts that live somewhere and act over time:

* **The population** (:func:`build_population`): accounts with a home place drawn from real IPv4 networks of a
  GeoIP city database (:class:`~fraudlab.enrich.geoip.AddressSpace`), weighted by the addresses each place has,
  most of them in one home-market country; a home IP and a small pool of domestic IPs from those networks; a
  device; a heavy-tailed activity rate; a habitual mix of transaction types around the copula's; recurring
  payees (accounts, and merchants for PAYMENT). Merchants are destination accounts named ``M<id>``.
* **The stream** (:func:`generate_stream`): per-account event counts and times drawn with numpy (PaySim's hour of
  day profile), scenarios laid on top by masks, transaction values sampled from the copula in one group per
  (type, fraud segment), balances carried along each scenario's chain of rows, then one sort by event time.
* **Scenarios** (:data:`SCENARIOS`, a registry): each leaves a temporal signature and labels its rows in the
  ``scenario`` column (the wire carries only ``is_fraud``). Four are fraud (``account_takeover``, ``foreign_ip``,
  ``home_spoof``, ``card_testing``); three are legitimate look-alikes a detector must not flag (``traveller``,
  ``salary_day``, ``new_payee``). ``docs/accounts.md`` gives every signature and the measured figures.

Rates are target shares of the stream's rows, so the default fraud share is PaySim's (0.13 %) whatever the size.
PAYMENT frauds (``foreign_ip``, ``home_spoof``, ``card_testing``) have no copula fraud segment: they are drawn from
the ordinary PAYMENT segment, which is the point (ordinary-looking payments), and so break the PaySim rule
"fraud only in TRANSFER and CASH_OUT" by design; every balance rule still holds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import ClassVar

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from fraudlab import config
from fraudlab.enrich.geoip import AddressSpace, ipv4_strings
from fraudlab.exceptions import DataValidationError, InvalidParameterError
from fraudlab.generate.synth import DEFAULT_MODEL, MAX_TRANSFER, TransactionSynthesizer
from fraudlab.schema.rules import FRAUD_TYPES, booked_origin_balance
from fraudlab.schema.table import CANONICAL_COLUMNS, TRANSACTION_TYPES

__all__ = [
    "FRAUD_SCENARIOS",
    "IP_CLASSES",
    "SCENARIOS",
    "STREAM_COLUMNS",
    "WIRE_COLUMNS",
    "Population",
    "Scenario",
    "StreamSettings",
    "build_population",
    "flight_hours",
    "generate_stream",
    "home_countries",
    "home_geolocation_share",
    "ip_mix",
    "locate_places",
    "mule_cashouts",
    "read_stream",
    "scenario_summary",
    "top_countries",
    "write_stream",
]

#: Every column of a stream, in order: the canonical table's, then what accounts add. ``scenario``, ``incident``
#: and ``ip_class`` are labels for evaluation; a detector must not read them.
STREAM_COLUMNS: tuple[str, ...] = (
    "transaction_id", "timestamp", *CANONICAL_COLUMNS, "user_id", "dest_user_id", "dest_is_merchant",
    "ip_address", "device_id", "scenario", "incident", "ip_class",
)
#: The columns a stream's rows carry on the wire (to the ingestion service): all but the evaluation labels.
WIRE_COLUMNS: tuple[str, ...] = tuple(c for c in STREAM_COLUMNS if c not in ("scenario", "incident", "ip_class"))
#: Where a row's IP address comes from: the account's home IP, its domestic pool, another country, an address in
#: the home /16 that is not the account's, a hosting (datacenter) network.
IP_CLASSES: tuple[str, ...] = ("home", "domestic", "foreign", "spoof", "hosting")
_HOME, _DOMESTIC, _FOREIGN, _SPOOF, _HOSTING = range(len(IP_CLASSES))
_LEGIT_MIX = -1  # ip_class of a row whose IP comes from the legitimate mix, drawn last

_CODE = {name: code for code, name in enumerate(TRANSACTION_TYPES)}
_CASH_IN, _CASH_OUT, _PAYMENT, _TRANSFER = _CODE["CASH_IN"], _CODE["CASH_OUT"], _CODE["PAYMENT"], _CODE["TRANSFER"]
_FRAUD_TYPE_CODES = [_CODE[name] for name in FRAUD_TYPES]
_MINUTE_MS = 60_000
_HOUR_MS = 60 * _MINUTE_MS
_DAY_MS = 24 * _HOUR_MS
_EARTH_KM = 6371.0

#: Domestic addresses per account (mobile networks, work, relatives) besides the home one.
_DOMESTIC_IPS = 3
#: Recurring payees per account, and how strongly an account prefers its first ones (weight ratio of neighbours).
_PAYEE_ACCOUNTS = 3
_PAYEE_MERCHANTS = 5
_PAYEE_DECAY = 0.6
#: Merchant popularity is Zipf-like with this exponent, so a few merchants take most payments.
_MERCHANT_ZIPF = 0.8
#: How tightly an account's type mix clusters around the copula's (Dirichlet concentration).
_TYPE_CONCENTRATION = 20.0
#: A takeover's transfers are this many seconds apart; a share of them come from a hosting network, not abroad.
_TRANSFER_GAP_S = (20, 90)
_TAKEOVER_HOSTING_SHARE = 0.3
#: Payments in a card-testing burst, and the bottom share of the PAYMENT amounts its "small" amounts come from.
_CARD_TEST_PAYMENTS = (8, 20)
_CARD_TEST_QUANTILE = 0.02
#: Rows of a salary-day burst (the salary's CASH_IN first), its start hour window and length.
_SALARY_ROWS = (3, 9)
_SALARY_START_HOURS = (8, 12)
_SALARY_BURST_HOURS = 6
#: A trip: days abroad, and the travel time of each way: distance at airliner speed plus airport hours.
_TRIP_DAYS = (2.0, 10.0)
_FLIGHT_KMH = 800.0
_AIRPORT_HOURS = 3.0


# --------------------------------------------------------------------------- settings


def _default_rates() -> Mapping[str, float]:
    return MappingProxyType(dict(config.SCENARIO_RATES))


@dataclass(frozen=True)
class StreamSettings:
    """What a stream is made of; checked at construction, every problem named in one error.

    Attributes:
        accounts: accounts in the population (merchants come on top).
        days: simulated days from ``start``.
        rows: exact row count; ``None`` lets the accounts' activity rates set it (about
            ``accounts * days * mean rate``). With ``rows`` every rate is scaled by one factor.
        seed: the same settings and seed give the same frame, row for row.
        start: the first instant, UTC (anything ``pandas.Timestamp`` reads).
        scenario_rates: target share of rows per scenario name (unnamed ones keep the default).
        fraud_rate: if given, the fraud scenarios' rates are scaled to add up to it (to enrich a stream).
        legit_ip_weights: home / domestic / foreign shares of ordinary traffic.
    """

    accounts: int = config.ACCOUNTS
    days: float = config.ACCOUNT_DAYS
    rows: int | None = None
    seed: int = config.ACCOUNT_SEED
    start: str = config.ACCOUNT_START
    merchants: int = config.ACCOUNT_MERCHANTS
    home_country: str = config.ACCOUNT_HOME_COUNTRY
    home_share: float = config.ACCOUNT_HOME_SHARE
    traveller_share: float = config.ACCOUNT_TRAVELLER_SHARE
    rate_median: float = config.ACCOUNT_RATE_MEDIAN
    rate_sigma: float = config.ACCOUNT_RATE_SIGMA
    scenario_rates: Mapping[str, float] = field(default_factory=_default_rates)
    fraud_rate: float | None = None
    legit_ip_weights: tuple[float, float, float] = config.LEGIT_IP_WEIGHTS
    mule_minutes: float = config.MULE_MINUTES
    card_test_minutes: float = config.CARD_TEST_MINUTES
    salary_day: int = config.SALARY_DAY

    def __post_init__(self) -> None:
        object.__setattr__(self, "scenario_rates", MappingProxyType({**config.SCENARIO_RATES,
                                                                     **dict(self.scenario_rates)}))
        problems = [*self._size_problems(), *self._rate_problems()]
        if problems:
            raise InvalidParameterError("Invalid stream settings: " + "; ".join(problems) + ".")

    def _size_problems(self) -> list[str]:
        problems = []
        for name, minimum in (("accounts", 2), ("merchants", _CARD_TEST_PAYMENTS[1])):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
                problems.append(f"{name}={value!r} (use an integer of at least {minimum})")
        if self.rows is not None and (not isinstance(self.rows, int | np.integer) or self.rows < 1):
            problems.append(f"rows={self.rows!r} (use a positive integer, or None to let activity rates decide)")
        for name in ("days", "rate_median", "mule_minutes", "card_test_minutes"):
            if not _positive(getattr(self, name)):
                problems.append(f"{name}={getattr(self, name)!r} (use a positive number)")
        if not 1 <= self.salary_day <= 28:
            problems.append(f"salary_day={self.salary_day!r} (use a day of the month from 1 to 28)")
        try:
            pd.Timestamp(self.start)
        except (TypeError, ValueError):
            problems.append(f"start={self.start!r} (use a date such as '2025-01-01' or an ISO timestamp)")
        return problems

    def _rate_problems(self) -> list[str]:
        problems = [f"unknown scenario {name!r} in scenario_rates (known: {', '.join(SCENARIOS)})"
                    for name in self.scenario_rates if name not in SCENARIOS]
        problems += [f"scenario_rates[{name!r}]={rate!r} (use a share of rows between 0 and 1)"
                     for name, rate in self.scenario_rates.items() if not _share(rate)]
        for name in ("home_share", "traveller_share", "rate_sigma"):
            if not _share(getattr(self, name)) and not (name == "rate_sigma" and _positive(self.rate_sigma)):
                problems.append(f"{name}={getattr(self, name)!r} (use a number between 0 and 1)")
        if self.fraud_rate is not None and not _share(self.fraud_rate):
            problems.append(f"fraud_rate={self.fraud_rate!r} (use a share of rows between 0 and 1)")
        weights = np.asarray(self.legit_ip_weights, dtype="float64")
        if weights.shape != (3,) or (weights < 0).any() or not np.isclose(weights.sum(), 1.0):
            problems.append(f"legit_ip_weights={self.legit_ip_weights!r} (use three non-negative shares, home, "
                            "domestic and foreign, that add up to 1)")
        return problems

    @property
    def start_ms(self) -> int:
        """``start`` as epoch milliseconds (UTC)."""
        stamp = pd.Timestamp(self.start)
        stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
        return int(stamp.value // 1_000_000)

    @property
    def span_ms(self) -> int:
        return round(self.days * _DAY_MS)

    def resolved_rates(self) -> dict[str, float]:
        """The share of rows each scenario aims at, after ``fraud_rate`` scaled the fraud ones."""
        rates = dict(self.scenario_rates)
        if self.fraud_rate is None:
            return rates
        fraud_total = sum(rates[name] for name in FRAUD_SCENARIOS)
        if fraud_total == 0 and self.fraud_rate > 0:
            raise InvalidParameterError(f"fraud_rate={self.fraud_rate!r} cannot scale fraud scenarios whose rates "
                                        "are all 0: give one of them a rate in scenario_rates.")
        scale = self.fraud_rate / fraud_total if fraud_total else 0.0
        return {name: rate * scale if name in FRAUD_SCENARIOS else rate for name, rate in rates.items()}


def _positive(value: object) -> bool:
    return isinstance(value, int | float | np.number) and not isinstance(value, bool) and np.isfinite(value) \
        and value > 0


def _share(value: object) -> bool:
    return isinstance(value, int | float | np.number) and not isinstance(value, bool) and 0 <= value <= 1


def _rngs(seed: int) -> dict[str, np.random.Generator]:
    """One independent generator per phase, so building the population alone gives the stream's population."""
    names = ("population", "events", "scenarios", "ips", "values", "ids")
    children = np.random.SeedSequence(seed).spawn(len(names))
    return {name: np.random.default_rng(child) for name, child in zip(names, children, strict=True)}


# --------------------------------------------------------------------------- geography


@dataclass(frozen=True)
class _Geography:
    """Places grouped by country, to draw a place of a given country, or of any other, weighted by addresses."""

    space: AddressSpace
    codes: np.ndarray  # country code of each country index
    place_country: np.ndarray  # country index of each place
    order: np.ndarray  # place ids sorted by country
    cumulative: np.ndarray  # cumulative addresses of the places in that order
    low: np.ndarray  # per country: cumulative addresses before its first place
    high: np.ndarray  # per country: cumulative addresses after its last place

    @classmethod
    def of(cls, space: AddressSpace) -> _Geography:
        codes, place_country = np.unique(space.cities["country_code"].to_numpy(str), return_inverse=True)
        order = np.argsort(place_country, kind="stable")
        cumulative = np.cumsum(space.cities["addresses"].to_numpy(np.int64)[order])
        bounds = np.searchsorted(place_country[order], np.arange(len(codes) + 1))
        edges = np.r_[0, cumulative][bounds]
        return cls(space, codes, place_country, order, cumulative, edges[:-1], edges[1:])

    def country(self, code: str) -> int:
        """The index of a country with addresses; an error naming ``home_country`` otherwise."""
        index = int(np.searchsorted(self.codes, code))
        if index == len(self.codes) or self.codes[index] != code or self.high[index] == self.low[index]:
            raise InvalidParameterError(f"Invalid home_country={code!r}: the address space has no networks there; "
                                        f"use one of {', '.join(self.codes[:12])}...")
        if self.cumulative[-1] == self.high[index] - self.low[index]:
            raise InvalidParameterError(f"The address space has networks only in {code}: accounts abroad, foreign "
                                        "IPs and travellers need at least one other country.")
        return index

    def _place_at(self, offsets: np.ndarray) -> np.ndarray:
        return self.order[np.searchsorted(self.cumulative, offsets, side="right")]

    def places_in(self, countries: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A place of each given country, weighted by the addresses it has."""
        return self._place_at(rng.integers(self.low[countries], self.high[countries]))

    def places_abroad(self, countries: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A place outside each given country, weighted by addresses: draw over the rest, skip the own range."""
        width = self.high[countries] - self.low[countries]
        offsets = rng.integers(0, self.cumulative[-1] - width)
        return self._place_at(np.where(offsets >= self.low[countries], offsets + width, offsets))


def locate_places(space: AddressSpace, addresses: np.ndarray) -> np.ndarray:
    """The place id of each IPv4 address (uint32) in ``space``'s networks, -1 for one outside them all."""
    first = space.networks["first"].to_numpy(np.int64)
    last = space.networks["last"].to_numpy(np.int64)
    values = np.asarray(addresses, dtype=np.int64)
    index = np.searchsorted(first, values, side="right") - 1
    inside = (index >= 0) & (values <= last[np.maximum(index, 0)])
    return np.where(inside, space.networks["place"].to_numpy(np.int64)[np.maximum(index, 0)], -1)


def flight_hours(space: AddressSpace, origin: np.ndarray, destination: np.ndarray) -> np.ndarray:
    """The door-to-door travel time between places: great-circle distance at airliner speed, plus airport hours."""
    lat = np.radians(space.cities["latitude"].to_numpy("float64"))
    lon = np.radians(space.cities["longitude"].to_numpy("float64"))
    a = (np.sin((lat[destination] - lat[origin]) / 2) ** 2
         + np.cos(lat[origin]) * np.cos(lat[destination]) * np.sin((lon[destination] - lon[origin]) / 2) ** 2)
    km = 2 * _EARTH_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))
    return km / _FLIGHT_KMH + _AIRPORT_HOURS


# --------------------------------------------------------------------------- the population


@dataclass(frozen=True)
class Population:
    """The accounts and merchants of a stream, as arrays indexed by party: accounts ``0..K-1``, merchants after.

    Per-account arrays have ``accounts`` rows; ``user_id`` covers every party (accounts, then merchants).
    """

    accounts: int
    user_id: np.ndarray
    home_place: np.ndarray
    home_country: np.ndarray
    home_ip: np.ndarray
    domestic_ips: np.ndarray
    device: np.ndarray
    rate: np.ndarray
    type_mix: np.ndarray
    payee_accounts: np.ndarray
    payee_merchants: np.ndarray
    merchant_weight: np.ndarray
    traveller: np.ndarray

    @property
    def merchants(self) -> int:
        return len(self.user_id) - self.accounts

    def country_codes(self, space: AddressSpace) -> np.ndarray:
        """Each account's home country code."""
        return space.cities["country_code"].to_numpy(str)[self.home_place]


def _fresh_ids(rng: np.random.Generator, n: int, taken: np.ndarray) -> np.ndarray:
    """``n`` distinct ten-digit ids (PaySim's account numbers look like that), none of them in ``taken``."""
    ids = np.empty(0, dtype=np.int64)
    while len(ids) < n:
        more = rng.integers(1_000_000_000, 10_000_000_000, size=n - len(ids) + 16)
        ids = np.unique(np.r_[ids, more[~np.isin(more, taken)]])
    return rng.permutation(ids)[:n]


def _copula_type_shares(model: TransactionSynthesizer) -> np.ndarray:
    """The copula's share of each transaction type among ordinary rows, in TRANSACTION_TYPES order."""
    table = model.segment_table()
    shares = table[~table["is_fraud"]].groupby("type")["share"].sum()
    values = np.array([shares.get(name, 0.0) for name in TRANSACTION_TYPES])
    return values / values.sum()


def _pool_choice(rng: np.random.Generator, rows: int, size: int) -> np.ndarray:
    """Which of a pool's members each row picks, the first ones preferred (weights fall by _PAYEE_DECAY)."""
    weights = _PAYEE_DECAY ** np.arange(size)
    return np.searchsorted(np.cumsum(weights / weights.sum()), rng.random(rows), side="right").clip(0, size - 1)


def build_population(settings: StreamSettings, space: AddressSpace, model: TransactionSynthesizer) -> Population:
    """The accounts and merchants :func:`generate_stream` uses for these settings (same seed, same population)."""
    rng = _rngs(settings.seed)["population"]
    geo = _Geography.of(space)
    home = geo.country(settings.home_country)
    k, m = settings.accounts, settings.merchants
    abroad = rng.random(k) >= settings.home_share
    countries = np.full(k, home)
    place = geo.places_in(countries, rng)
    place[abroad] = geo.places_abroad(countries[abroad], rng)
    country = geo.place_country[place]
    domestic = space.draw(geo.places_in(np.repeat(country, _DOMESTIC_IPS), rng), rng).reshape(k, _DOMESTIC_IPS)
    others = rng.integers(1, k, size=(k, _PAYEE_ACCOUNTS))
    popularity = 1.0 / np.arange(1, m + 1) ** _MERCHANT_ZIPF
    popularity = rng.permutation(popularity / popularity.sum())
    return Population(
        accounts=k,
        user_id=_fresh_ids(rng, k + m, np.empty(0, dtype=np.int64)),
        home_place=place,
        home_country=country,
        home_ip=space.draw(place, rng),
        domestic_ips=domestic,
        device=rng.integers(0, 2**63, size=k),
        rate=settings.rate_median * np.exp(settings.rate_sigma * rng.standard_normal(k)),
        type_mix=rng.dirichlet(_TYPE_CONCENTRATION * _copula_type_shares(model), size=k),
        payee_accounts=(np.arange(k)[:, None] + others) % k,  # never the account itself
        payee_merchants=k + rng.choice(m, size=(k, _PAYEE_MERCHANTS), p=popularity),
        merchant_weight=popularity,
        traveller=rng.random(k) < settings.traveller_share,
    )


# --------------------------------------------------------------------------- rows under construction

#: The columns of rows under construction and the value a builder may leave out.
_BLOCK_DEFAULTS: dict[str, tuple[str, object]] = {
    "orig": ("int64", None), "dest": ("int64", None), "time": ("int64", None), "type": ("int8", None),
    "scenario": ("int8", None), "fraud": ("bool", False), "ip": ("uint32", 0), "ip_class": ("int8", _LEGIT_MIX),
    "device": ("int64", -1), "incident": ("int64", -1), "link": ("int16", -1), "payout_of": ("int16", -1),
    "drain": ("bool", False), "balance0": ("float64", np.nan), "small": ("bool", False),
}
Block = dict[str, np.ndarray]


def _block(n: int, **columns: object) -> Block:
    """Rows under construction: every column of _BLOCK_DEFAULTS, broadcast to ``n`` rows.

    ``incident`` is local to the block (0..); :func:`_concat` makes it global. ``link`` is a row's position in
    its incident's balance chain; ``payout_of`` the link a mule's cash-out pays out; ``drain`` a transfer that
    empties the account; ``device`` -1 is the account's own device; ``ip_class`` -1 the legitimate IP mix.
    """
    block = {}
    for name, (dtype, default) in _BLOCK_DEFAULTS.items():
        value = columns.pop(name, default)
        if value is None:
            raise TypeError(f"_block needs column {name!r}")
        block[name] = np.broadcast_to(np.asarray(value, dtype=dtype), (n,)).copy()
    if columns:
        raise TypeError(f"_block got unknown column(s) {sorted(columns)}")
    return block


def _concat(blocks: list[Block]) -> Block:
    """Rows of several blocks, their incident ids made distinct."""
    offset = 0
    for block in blocks:
        block["incident"] = np.where(block["incident"] >= 0, block["incident"] + offset, -1)
        offset = max(offset, int(block["incident"].max(initial=-1)) + 1)
    return {name: np.concatenate([block[name] for block in blocks]) for name in _BLOCK_DEFAULTS}


def _positions(sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For groups of ``sizes`` rows laid end to end: each row's group and its position inside it."""
    group = np.repeat(np.arange(len(sizes)), sizes)
    starts = np.cumsum(sizes) - sizes
    return group, np.arange(len(group)) - starts[group]


@dataclass
class _World:
    """What every scenario builder draws from, and the counters of parties and devices created on the way."""

    settings: StreamSettings
    space: AddressSpace
    geo: _Geography
    model: TransactionSynthesizer
    population: Population
    rng: np.random.Generator
    expected_rows: float
    rate_scale: float  # activity rates times this give the expected ordinary rows (1 unless rows= is set)
    hour_weights: np.ndarray
    eligible: np.ndarray  # accounts that may carry an incident (the travelling ones may not)
    parties: int = 0
    devices: int = 0
    trips: dict[str, np.ndarray] = field(default_factory=dict)

    def incidents(self, rate: float, rows_each: float) -> int:
        """How many incidents make ``rate`` of the stream's rows when each adds ``rows_each`` rows."""
        return round(rate * self.expected_rows / rows_each)

    def victims(self, n: int) -> np.ndarray:
        return self.eligible[self.rng.integers(0, len(self.eligible), size=n)]

    def times(self, n: int) -> np.ndarray:
        return _event_times(n, self.settings.span_ms, self.hour_weights, self.rng)

    def new_parties(self, n: int) -> np.ndarray:
        """Indices of ``n`` accounts that did not exist before (mules), after the population's."""
        self.parties += n
        return np.arange(self.parties - n, self.parties)

    def new_devices(self, n: int) -> np.ndarray:
        """Indices of ``n`` devices no account used before, after the accounts' own."""
        self.devices += n
        return np.arange(self.devices - n, self.devices)

    def merchants(self, n: int) -> np.ndarray:
        """``n`` merchants by popularity (party indices)."""
        p = self.population
        return p.accounts + self.rng.choice(p.merchants, size=n, p=p.merchant_weight)

    def foreign_ips(self, accounts: np.ndarray) -> np.ndarray:
        """An address in a country other than each account's home country."""
        places = self.geo.places_abroad(self.population.home_country[accounts], self.rng)
        return self.space.draw(places, self.rng)

    def habitual_types(self, accounts: np.ndarray) -> np.ndarray:
        cumulative = np.cumsum(self.population.type_mix[accounts], axis=1)
        draws = self.rng.random(len(accounts))[:, None]
        return (draws > cumulative[:, :-1]).sum(axis=1).astype(np.int8)

    def habitual_payees(self, accounts: np.ndarray, types: np.ndarray) -> np.ndarray:
        """A recurring payee of each account: a merchant for PAYMENT, an account otherwise."""
        p = self.population
        to_account = p.payee_accounts[accounts, _pool_choice(self.rng, len(accounts), _PAYEE_ACCOUNTS)]
        to_merchant = p.payee_merchants[accounts, _pool_choice(self.rng, len(accounts), _PAYEE_MERCHANTS)]
        return np.where(types == _PAYMENT, to_merchant, to_account)


def _event_times(n: int, span_ms: int, hour_weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``n`` event times (ms after the start) over the span, following the hour-of-day profile of PaySim's rows."""
    hours = int(np.ceil(span_ms / _HOUR_MS))
    inside = np.minimum(span_ms - np.arange(hours) * _HOUR_MS, _HOUR_MS) / _HOUR_MS
    weights = hour_weights[np.arange(hours) % 24] * inside
    hour = np.searchsorted(np.cumsum(weights / weights.sum()), rng.random(n), side="right").clip(0, hours - 1)
    return hour * _HOUR_MS + (rng.random(n) * inside[hour] * _HOUR_MS).astype(np.int64)


# --------------------------------------------------------------------------- scenarios


class Scenario:
    """One pattern laid on the stream. The stream's workflow calls the hooks in order; a scenario fills some.

    ``prepare`` runs before any row exists (to reserve accounts), ``add`` returns the rows the scenario adds,
    ``relabel`` rewrites ordinary rows in place. ``rate`` is the target share of the stream's rows.
    """

    name: ClassVar[str]
    is_fraud: ClassVar[bool]

    def prepare(self, world: _World, rate: float) -> None:
        """Reserve what the scenario needs before rows are drawn (default: nothing)."""

    def add(self, world: _World, rate: float, code: int) -> Block | None:
        """The rows this scenario adds to the stream (default: none)."""
        return None

    def relabel(self, world: _World, rows: Block, rate: float, code: int) -> None:
        """Turn some ordinary rows into this scenario's (default: none)."""


class _AccountTakeover(Scenario):
    """PaySim's fraud: a new device abroad (or in a datacenter) drains the account to a fresh mule by TRANSFERs
    of at most 10 million each, and the mule cashes out each one, same amount, within ``mule_minutes``."""

    name, is_fraud = "account_takeover", True

    def add(self, world: _World, rate: float, code: int) -> Block:
        segment = world.model.segment("TRANSFER", is_fraud=True)
        grid = segment.marginal_quantiles("old_orig", np.linspace(0.0005, 0.9995, 1000))
        rng, n = world.rng, world.incidents(rate, 2.0 * np.ceil(grid / MAX_TRANSFER).mean())
        victims, start = world.victims(n), world.times(n)
        balance = segment.marginal_quantiles("old_orig", rng.random(n))
        balance = np.round(balance, 2).clip(0.01)
        incident, link = _positions(np.ceil(balance / MAX_TRANSFER).astype(np.int64))
        hosting = rng.random(n) < _TAKEOVER_HOSTING_SHARE
        ips = np.where(hosting, world.space.draw_hosting(n, rng) if n else 0, world.foreign_ips(victims))
        devices, mules = world.new_devices(n), world.new_parties(n)
        gaps = np.where(link == 0, 0, rng.integers(*_TRANSFER_GAP_S, size=len(link)) * 1000)
        sent = start[incident] + _running_total(gaps, incident, link)
        cashed = sent + rng.integers(_MINUTE_MS, int(world.settings.mule_minutes * _MINUTE_MS) + 1, size=len(link))
        both, chunks = np.r_[incident, incident], len(link)
        return _block(
            2 * chunks, orig=np.r_[victims[incident], mules[incident]],
            dest=np.r_[mules[incident], rng.integers(0, world.population.accounts, size=chunks)],
            time=np.r_[sent, cashed], type=np.r_[np.full(chunks, _TRANSFER), np.full(chunks, _CASH_OUT)],
            fraud=True, scenario=code, incident=both, ip=ips[both],
            ip_class=np.where(hosting[both], _HOSTING, _FOREIGN), device=devices[both],
            link=np.r_[link, np.full(chunks, -1)], payout_of=np.r_[np.full(chunks, -1), link],
            drain=np.r_[np.ones(chunks, bool), np.zeros(chunks, bool)],
            balance0=np.r_[np.where(link == 0, balance[incident], np.nan), np.full(chunks, np.nan)],
        )


class _IpFraud(Scenario):
    """The original system's fraud: an ordinary-looking PAYMENT from the account, from an address it never uses."""

    is_fraud = True

    def __init__(self, name: str, ip_class: int, draw: Callable[[_World, np.ndarray], np.ndarray]) -> None:
        self.name, self._ip_class, self._draw = name, ip_class, draw  # type: ignore[misc]

    def add(self, world: _World, rate: float, code: int) -> Block:
        n = world.incidents(rate, 1.0)
        accounts = world.victims(n)
        return _block(n, orig=accounts, dest=world.merchants(n), time=world.times(n), type=_PAYMENT, fraud=True,
                      scenario=code, incident=np.arange(n), ip=self._draw(world, accounts), ip_class=self._ip_class)


def _spoofed_ips(world: _World, accounts: np.ndarray) -> np.ndarray:
    """An address in each account's home /16 that is not its home address."""
    home = world.population.home_ip[accounts]
    spoofed = (home & np.uint32(0xFFFF0000)) | world.rng.integers(0, 1 << 16, size=len(home)).astype(np.uint32)
    return np.where(spoofed == home, spoofed ^ np.uint32(1), spoofed)


class _CardTesting(Scenario):
    """Stolen credentials tried from a datacenter: a burst of small PAYMENTs to distinct merchants within minutes."""

    name, is_fraud = "card_testing", True

    def add(self, world: _World, rate: float, code: int) -> Block:
        rng, (low, high) = world.rng, _CARD_TEST_PAYMENTS
        n = world.incidents(rate, (low + high) / 2)
        accounts, start = world.victims(n), world.times(n)
        incident, link = _positions(rng.integers(low, high + 1, size=n))
        window = world.settings.card_test_minutes * _MINUTE_MS
        merchants = _distinct_within(rng, incident, link, world.population.merchants, high)
        return _block(len(link), orig=accounts[incident], dest=world.population.accounts + merchants,
                      time=start[incident] + _sorted_within(rng, incident, window), type=_PAYMENT, fraud=True,
                      scenario=code, incident=incident, link=link, small=True,
                      ip=world.space.draw_hosting(n, rng)[incident] if n else 0, ip_class=_HOSTING,
                      device=world.new_devices(n)[incident])


def _sorted_within(rng: np.random.Generator, group: np.ndarray, window_ms: float) -> np.ndarray:
    """Offsets uniform in ``[0, window_ms)``, increasing within each group (groups laid end to end, in order)."""
    offsets = rng.random(len(group))
    return (offsets[np.lexsort((offsets, group))] * window_ms).astype(np.int64)


def _distinct_within(rng: np.random.Generator, group: np.ndarray, link: np.ndarray, size: int,
                     longest: int) -> np.ndarray:
    """Numbers in ``0..size-1`` distinct within each group: a random first one, then strides too short to wrap."""
    steps = rng.integers(1, size // longest + 1, size=len(link))
    first = link == 0
    steps[first] = rng.integers(0, size, size=int(first.sum()))
    return _running_total(steps, group, link) % size


def _running_total(steps: np.ndarray, group: np.ndarray, link: np.ndarray) -> np.ndarray:
    """The sum of ``steps`` from the start of each group (groups laid end to end, ``link`` 0 at each start)."""
    total = np.cumsum(steps)
    return total - (total - steps)[link == 0][group]


class _SalaryDay(Scenario):
    """Legitimate: on the salary day the salary arrives (CASH_IN) and a burst of habitual payments follows."""

    name, is_fraud = "salary_day", False

    def add(self, world: _World, rate: float, code: int) -> Block | None:
        paydays = _paydays(world.settings)
        low, high = _SALARY_ROWS
        n = world.incidents(rate, (low + high - 1) / 2) if len(paydays) else 0
        rng = world.rng
        accounts = world.victims(n)
        begin = paydays[rng.integers(0, max(len(paydays), 1), size=n)] + rng.integers(
            _SALARY_START_HOURS[0] * _HOUR_MS, _SALARY_START_HOURS[1] * _HOUR_MS, size=n)
        incident, link = _positions(rng.integers(low, high, size=n))
        orig = accounts[incident]
        types = np.where(link == 0, _CASH_IN, world.habitual_types(orig)).astype(np.int8)
        return _block(len(link), orig=orig, dest=world.habitual_payees(orig, types),
                      time=begin[incident] + _sorted_within(rng, incident, _SALARY_BURST_HOURS * _HOUR_MS),
                      type=types, scenario=code, incident=incident, link=link)


def _paydays(settings: StreamSettings) -> np.ndarray:
    """Midnights (ms after the start) of the salary days inside the span."""
    start = pd.Timestamp(settings.start_ms, unit="ms")
    days = pd.date_range(start.floor("D"), start + pd.Timedelta(milliseconds=settings.span_ms), freq="D")
    offsets = (days[days.day == settings.salary_day].asi8 // 1_000_000) - settings.start_ms
    return offsets[(offsets >= 0) & (offsets < settings.span_ms)].astype(np.int64)


class _NewPayee(Scenario):
    """Legitimate: an ordinary transaction to someone the account never paid (a fresh mule's look-alike)."""

    name, is_fraud = "new_payee", False

    def relabel(self, world: _World, rows: Block, rate: float, code: int) -> None:
        eligible = np.zeros(world.population.accounts + 1, dtype=bool)
        eligible[world.eligible] = True
        ordinary = np.flatnonzero((rows["scenario"] == 0) & eligible[np.minimum(rows["orig"], len(eligible) - 1)])
        n = min(world.incidents(rate, 1.0), len(ordinary))
        chosen = np.sort(world.rng.choice(ordinary, size=n, replace=False))
        rows["dest"][chosen] = _fresh_payees(world, rows["orig"][chosen], rows["type"][chosen])
        rows["scenario"][chosen] = code
        rows["incident"][chosen] = rows["incident"].max(initial=-1) + 1 + np.arange(n)


def _fresh_payees(world: _World, accounts: np.ndarray, types: np.ndarray) -> np.ndarray:
    """A payee outside each account's recurring ones (a merchant for PAYMENT, another account otherwise)."""
    p, rng = world.population, world.rng
    merchant = types == _PAYMENT
    payees = np.where(merchant, p.accounts + rng.integers(0, p.merchants, size=len(accounts)),
                      rng.integers(0, p.accounts, size=len(accounts)))
    pools = np.c_[p.payee_accounts[accounts], p.payee_merchants[accounts], accounts]
    known = (pools == payees[:, None]).any(axis=1)
    while known.any():
        payees[known] = np.where(merchant[known], p.accounts + rng.integers(0, p.merchants, size=int(known.sum())),
                                 rng.integers(0, p.accounts, size=int(known.sum())))
        known = (pools == payees[:, None]).any(axis=1)
    return payees


class _Traveller(Scenario):
    """Legitimate: a real trip abroad. Nothing happens during the flight out; abroad, the account's transactions
    come from the destination's addresses; nothing again during the flight home."""

    name, is_fraud = "traveller", False

    def prepare(self, world: _World, rate: float) -> None:
        p, rng, span = world.population, world.rng, world.settings.span_ms
        candidates = rng.permutation(np.flatnonzero(p.traveller))
        destination = world.geo.places_abroad(p.home_country[candidates], rng)
        second = world.geo.places_in(world.geo.place_country[destination], rng)
        flight = (flight_hours(world.space, p.home_place[candidates], destination) * _HOUR_MS).astype(np.int64)
        stay = (rng.uniform(*_TRIP_DAYS, size=len(candidates)) * _DAY_MS).astype(np.int64)
        window = 2 * flight + stay
        rows_each = p.rate[candidates] * world.rate_scale * window / _DAY_MS
        fits = window < span
        wanted = np.cumsum(np.where(fits, rows_each, 0.0)) < rate * world.expected_rows
        take = fits & np.r_[True, wanted[:-1]] if len(candidates) and rate > 0 else np.zeros(len(candidates), bool)
        ips = world.space.draw(np.c_[destination, second][take].ravel(), rng).reshape(-1, 2)
        world.trips = {"account": candidates[take], "flight": flight[take], "stay": stay[take],
                       "window": window[take], "start": rng.integers(0, span - window[take]), "ips": ips}
        world.eligible = np.setdiff1d(world.eligible, candidates[take])

    def relabel(self, world: _World, rows: Block, rate: float, code: int) -> None:
        trips, accounts = world.trips, world.population.accounts
        trip_of = np.full(accounts + 1, -1)
        trip_of[trips["account"]] = np.arange(len(trips["account"]))
        trip = trip_of[np.minimum(rows["orig"], accounts)]
        away = np.flatnonzero(trip >= 0)
        trip, time = trip[away], rows["time"][away]
        start, window = trips["start"][trip], trips["window"][trip]
        inside = (time >= start) & (time < start + window)
        away, trip, time, start, window = away[inside], trip[inside], time[inside], start[inside], window[inside]
        stay = trips["stay"][trip]
        # squeeze the window into the stay, keeping the order, so both flights are free of transactions
        rows["time"][away] = start + trips["flight"][trip] + ((time - start) * (stay / window)).astype(np.int64)
        rows["ip"][away] = trips["ips"][trip, world.rng.integers(0, 2, size=len(away))]
        rows["ip_class"][away] = _FOREIGN
        rows["scenario"][away] = code
        rows["incident"][away] = rows["incident"].max(initial=-1) + 1 + trip


#: The scenarios by name, in the order the stream applies them (the traveller reserves its accounts first).
SCENARIOS: dict[str, Scenario] = {scenario.name: scenario for scenario in (
    _Traveller(),
    _AccountTakeover(),
    _IpFraud("foreign_ip", _FOREIGN, lambda world, accounts: world.foreign_ips(accounts)),
    _IpFraud("home_spoof", _SPOOF, _spoofed_ips),
    _CardTesting(),
    _SalaryDay(),
    _NewPayee(),
)}
FRAUD_SCENARIOS: tuple[str, ...] = tuple(name for name, scenario in SCENARIOS.items() if scenario.is_fraud)


# --------------------------------------------------------------------------- the stream's rows


def _ordinary_rows(world: _World, added: int) -> Block:
    """The accounts' everyday transactions: habitual types to recurring payees, at PaySim's hours."""
    p, rng, settings = world.population, world.rng, world.settings
    if settings.rows is None:
        counts = rng.poisson(p.rate * settings.days)
    else:
        if added > settings.rows:
            raise InvalidParameterError(
                f"Invalid rows={settings.rows}: the scenarios alone add {added:,} rows at these rates; ask for more "
                "rows or lower fraud_rate / scenario_rates.")
        counts = rng.multinomial(settings.rows - added, p.rate / p.rate.sum())
    orig = np.repeat(np.arange(p.accounts), counts)
    types = world.habitual_types(orig)
    return _block(len(orig), orig=orig, dest=world.habitual_payees(orig, types), time=world.times(len(orig)),
                  type=types, scenario=0)


def _stream_rows(world: _World, rates: Mapping[str, float]) -> Block:
    """Every row: scenarios reserve accounts, add their rows, the ordinary rows fill up, scenarios relabel some."""
    codes = {name: code for code, name in enumerate(SCENARIOS, start=1)}
    for name, scenario in SCENARIOS.items():
        scenario.prepare(world, rates[name])
    added = [block for name, scenario in SCENARIOS.items()
             if (block := scenario.add(world, rates[name], codes[name])) is not None]
    rows = _concat([_ordinary_rows(world, sum(len(block["orig"]) for block in added)), *added])
    for name, scenario in SCENARIOS.items():
        scenario.relabel(world, rows, rates[name], codes[name])
    _draw_legit_ips(world, rows)
    return rows


def _draw_legit_ips(world: _World, rows: Block) -> None:
    """The original system's mix for rows no scenario gave an address: home, a domestic one, or abroad."""
    p, rng = world.population, world.rng
    legit = np.flatnonzero(rows["ip_class"] == _LEGIT_MIX)
    accounts = rows["orig"][legit]
    kind = np.searchsorted(np.cumsum(world.settings.legit_ip_weights), rng.random(len(legit)), side="right")
    kind = kind.clip(0, 2).astype(np.int8)
    ips = p.home_ip[accounts]
    domestic, foreign = kind == _DOMESTIC, kind == _FOREIGN
    ips[domestic] = p.domestic_ips[accounts[domestic], rng.integers(0, _DOMESTIC_IPS, size=int(domestic.sum()))]
    ips[foreign] = world.foreign_ips(accounts[foreign])
    rows["ip"][legit], rows["ip_class"][legit] = ips, kind


# --------------------------------------------------------------------------- transaction values

_MONEY = ("amount", "old_balance_orig", "new_balance_orig", "old_balance_dest", "new_balance_dest")
_FLAGS = ("is_flagged_fraud", "is_unauthorized_overdraft")


def _values(world: _World, rows: Block, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Money and flags from the copula, one sample per (type, fraud segment); then the chains' balances.

    PAYMENT frauds come from the ordinary PAYMENT segment (the copula has no PAYMENT fraud). Drained transfers
    are not sampled: their amounts follow from the victim's balance.
    """
    n = len(rows["orig"])
    out = {name: np.zeros(n) for name in _MONEY} | {name: np.zeros(n, dtype=bool) for name in _FLAGS}
    segment_fraud = rows["fraud"] & np.isin(rows["type"], _FRAUD_TYPE_CODES)
    seeds = rng.integers(0, 2**63, size=(len(TRANSACTION_TYPES), 2))
    for code, kind in enumerate(TRANSACTION_TYPES):
        for fraud in (False, True):
            index = np.flatnonzero(~rows["drain"] & (rows["type"] == code) & (segment_fraud == fraud))
            if not index.size:
                continue
            sample = world.model.sample(int(index.size), seed=int(seeds[code, int(fraud)]),
                                        conditions={"type": kind, "is_fraud": fraud})
            for name in (*_MONEY, *_FLAGS):
                out[name][index] = sample[name].to_numpy()
    small = np.flatnonzero(rows["small"])
    amounts = world.model.segment("PAYMENT").marginal_quantiles("amount", rng.random(len(small)) * _CARD_TEST_QUANTILE)
    out["amount"][small] = np.round(amounts, 2).clip(0.01)
    _carry_chains(rows, out)
    _pay_out(rows, out)
    return out


def _carry_chains(rows: Block, out: dict[str, np.ndarray]) -> None:
    """Within each incident's chain, every row starts from the balance the previous one left (PaySim's rules)."""
    chain = np.flatnonzero(rows["link"] >= 0)
    carried = np.zeros(int(rows["incident"].max(initial=0)) + 1)
    for position in range(int(rows["link"][chain].max(initial=-1)) + 1):
        at = chain[rows["link"][chain] == position]
        incident = rows["incident"][at]
        if position == 0:
            old = np.where(np.isnan(rows["balance0"][at]), out["old_balance_orig"][at], rows["balance0"][at])
        else:
            old = carried[incident]
        amount = np.where(rows["drain"][at], np.minimum(old, MAX_TRANSFER), out["amount"][at])
        new = np.round(booked_origin_balance(old, amount, cash_in=rows["type"][at] == _CASH_IN, blocked=False), 2)
        out["old_balance_orig"][at], out["amount"][at], out["new_balance_orig"][at] = old, amount, new
        out["is_flagged_fraud"][at] = False
        carried[incident] = new
    drained = rows["drain"]
    out["old_balance_dest"][drained], out["new_balance_dest"][drained] = 0.0, out["amount"][drained]


def _pay_out(rows: Block, out: dict[str, np.ndarray]) -> None:
    """A mule's cash-out moves exactly what its transfer brought in, leaving the mule empty."""
    payouts, transfers = np.flatnonzero(rows["payout_of"] >= 0), np.flatnonzero(rows["drain"])
    if not payouts.size:
        return
    width = int(rows["link"].max()) + 1
    keys = rows["incident"][transfers] * width + rows["link"][transfers]
    order = np.argsort(keys)
    wanted = rows["incident"][payouts] * width + rows["payout_of"][payouts]
    match = transfers[order][np.searchsorted(keys[order], wanted)]
    amount = out["amount"][match]
    out["amount"][payouts], out["old_balance_orig"][payouts], out["new_balance_orig"][payouts] = amount, amount, 0.0
    out["new_balance_dest"][payouts] = np.round(out["old_balance_dest"][payouts] + amount, 2)
    out["is_flagged_fraud"][payouts] = False


# --------------------------------------------------------------------------- the frame

_HEX_DIGITS = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def _hex_strings(raw: np.ndarray, dashes: tuple[int, ...] = ()) -> np.ndarray:
    """Lower-case hex strings of byte rows (``(n, b)`` uint8), dashes inserted at the given character positions."""
    chars = _HEX_DIGITS[np.stack([raw >> 4, raw & 15], axis=-1).reshape(len(raw), -1)]
    if dashes:
        chars = np.insert(chars, list(dashes), ord("-"), axis=1)
    return np.ascontiguousarray(chars).view(f"S{chars.shape[1]}").ravel().astype(str).astype(object)


def _transaction_ids(n: int, rng: np.random.Generator) -> np.ndarray:
    """Version-4 UUID strings drawn from the seeded generator: unique, and the same for the same settings."""
    raw = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    return _hex_strings(raw, (8, 12, 16, 20))


def _frame(world: _World, rows: Block, values: dict[str, np.ndarray], rng: np.random.Generator) -> pd.DataFrame:
    """Sort by event time once and turn party, device and address numbers into the stream's strings."""
    p, settings = world.population, world.settings
    order = np.argsort(rows["time"], kind="stable")
    rows = {name: column[order] for name, column in rows.items()}
    values = {name: column[order] for name, column in values.items()}
    ids = np.r_[p.user_id, _fresh_ids(rng, world.parties - len(p.user_id), p.user_id)]
    merchant = (np.arange(len(ids)) >= p.accounts) & (np.arange(len(ids)) < len(p.user_id))
    names = np.char.add(np.where(merchant, "M", "C"), ids.astype(str)).astype(object)
    devices = np.r_[p.device, rng.integers(0, 2**63, size=world.devices - p.accounts)].astype(">u8")
    device_names = _hex_strings(devices.view(np.uint8).reshape(-1, 8))
    addresses, where = np.unique(rows["ip"], return_inverse=True)
    device = np.where(rows["device"] >= 0, rows["device"], rows["orig"])
    return pd.DataFrame({
        "transaction_id": _transaction_ids(len(order), rng),
        "timestamp": settings.start_ms + rows["time"],
        "step": (rows["time"] // _HOUR_MS + 1).astype(np.int32),
        "type": pd.Categorical.from_codes(rows["type"], categories=list(TRANSACTION_TYPES)),
        "amount": values["amount"],
        "name_orig": names[rows["orig"]],
        "old_balance_orig": values["old_balance_orig"],
        "new_balance_orig": values["new_balance_orig"],
        "name_dest": names[rows["dest"]],
        "old_balance_dest": values["old_balance_dest"],
        "new_balance_dest": values["new_balance_dest"],
        "is_fraud": rows["fraud"],
        "is_flagged_fraud": values["is_flagged_fraud"],
        "is_unauthorized_overdraft": values["is_unauthorized_overdraft"],
        "user_id": ids[rows["orig"]],
        "dest_user_id": ids[rows["dest"]],
        "dest_is_merchant": merchant[rows["dest"]],
        "ip_address": ipv4_strings(addresses)[where],
        "device_id": device_names[device],
        "scenario": pd.Categorical.from_codes(rows["scenario"], categories=["normal", *SCENARIOS]),
        "incident": rows["incident"],
        "ip_class": pd.Categorical.from_codes(rows["ip_class"], categories=list(IP_CLASSES)),
    }, columns=list(STREAM_COLUMNS))


# --------------------------------------------------------------------------- the entry point


def generate_stream(settings: StreamSettings | None = None, *, space: AddressSpace,
                    model: TransactionSynthesizer | None = None, progress: bool = False) -> pd.DataFrame:
    """The event-time transaction stream of an account population, sorted by ``timestamp``.

    Args:
        settings: the stream (default ``StreamSettings()``: 10,000 accounts, 30 days, seed 7).
        space: where addresses come from: ``AddressSpace.load()`` after ``fraudlab geoip fetch``, or a small
            hand-made one (``AddressSpace.from_frames``).
        model: the value generator (default: the pre-trained copula).
        progress: a progress bar over the phases.

    Returns:
        One row per transaction with the columns :data:`STREAM_COLUMNS`; the same settings give the same frame.
    """
    settings = settings or StreamSettings()
    rates = settings.resolved_rates()
    model = model or TransactionSynthesizer.load(DEFAULT_MODEL)
    rngs = _rngs(settings.seed)
    phases = ("population", "rows", "values", "frame")
    with tqdm(total=len(phases), desc="Generating stream", unit=" phase", disable=not progress) as bar:
        bar.set_postfix_str(phases[0])
        population = build_population(settings, space, model)
        world = _new_world(settings, space, model, population, rngs["events"])
        bar.update()
        bar.set_postfix_str(phases[1])
        rows = _stream_rows(world, rates)
        bar.update()
        bar.set_postfix_str(phases[2])
        values = _values(world, rows, rngs["values"])
        bar.update()
        bar.set_postfix_str(phases[3])
        frame = _frame(world, rows, values, rngs["ids"])
        bar.update()
    return frame


def _new_world(settings: StreamSettings, space: AddressSpace, model: TransactionSynthesizer,
               population: Population, rng: np.random.Generator) -> _World:
    from fraudlab.generate.paysim import load_calibration

    natural = float(population.rate.sum() * settings.days)
    expected = float(settings.rows) if settings.rows is not None else natural
    return _World(settings=settings, space=space, geo=_Geography.of(space), model=model, population=population,
                  rng=rng, expected_rows=expected, rate_scale=expected / natural,
                  hour_weights=np.asarray(load_calibration().hour_weights), eligible=np.arange(population.accounts),
                  parties=len(population.user_id), devices=population.accounts)


# --------------------------------------------------------------------------- files

_BOOL_COLUMNS = ("is_fraud", "is_flagged_fraud", "is_unauthorized_overdraft", "dest_is_merchant")


def write_stream(stream: pd.DataFrame, path: str | Path) -> Path:
    """Write every stream column (``write_transactions`` keeps only the canonical ones) as parquet or CSV.

    CSV (``.csv``, ``.csv.gz``) carries flags as 0/1, as ``fraudlab sample`` writes them; :func:`read_stream`
    restores the dtypes of either.
    """
    from fraudlab.data.readers import check_output_path

    path = check_output_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.name.lower().endswith(".parquet"):
        stream.to_parquet(path, index=False)
    else:
        stream.astype(dict.fromkeys(_BOOL_COLUMNS, "int8")).to_csv(path, index=False)
    return path


def read_stream(path: str | Path) -> pd.DataFrame:
    """A stream :func:`write_stream` wrote, with its dtypes (categories, flags) as :func:`generate_stream` gives.

    Raises:
        DataValidationError: the file lacks stream columns (it is, say, a ``fraudlab sample`` table).
    """
    from fraudlab.data.readers import check_output_path

    path = check_output_path(path)
    text = dict.fromkeys(("transaction_id", "name_orig", "name_dest", "ip_address", "device_id"), str)
    table = pd.read_parquet(path) if path.name.lower().endswith(".parquet") else pd.read_csv(path, dtype=text)
    missing = [column for column in STREAM_COLUMNS if column not in table.columns]
    if missing:
        raise DataValidationError(str(path), [f"missing stream column(s) {missing}: write the file with "
                                              "`fraudlab generate` (fraudlab.generate.accounts.write_stream)"])
    categories = {"type": list(TRANSACTION_TYPES), "scenario": ["normal", *SCENARIOS], "ip_class": list(IP_CLASSES)}
    dtypes = {name: pd.CategoricalDtype(values) for name, values in categories.items()}
    return table[list(STREAM_COLUMNS)].astype({**dtypes, **dict.fromkeys(_BOOL_COLUMNS, bool),
                                               "step": "int32", **dict.fromkeys(text, object)})


# --------------------------------------------------------------------------- summaries

#: Scenarios whose rows take the legitimate IP mix, and the two IP frauds (the original system's fraud mix).
ORDINARY_SCENARIOS: tuple[str, ...] = ("normal", "salary_day", "new_payee")
IP_FRAUD_SCENARIOS: tuple[str, ...] = ("foreign_ip", "home_spoof")


def scenario_summary(stream: pd.DataFrame, rates: Mapping[str, float] | None = None) -> pd.DataFrame:
    """One row per scenario (``normal`` first): ``fraud``, ``rows``, ``share`` of the stream's rows, ``incidents``
    (0 for ``normal``), and with ``rates`` (e.g. ``settings.resolved_rates()``) the ``target`` share (NaN for
    ``normal``)."""
    names = ["normal", *SCENARIOS]
    counts = stream["scenario"].astype(str).value_counts().reindex(names, fill_value=0)
    incidents = stream[stream["scenario"] != "normal"].groupby(stream["scenario"].astype(str))["incident"]
    table = pd.DataFrame({
        "fraud": [name != "normal" and SCENARIOS[name].is_fraud for name in names],
        "rows": counts.to_numpy(np.int64),
        "share": counts.to_numpy(np.float64) / max(len(stream), 1),
        "incidents": incidents.nunique().reindex(names, fill_value=0).to_numpy(np.int64),
    }, index=pd.Index(names, name="scenario"))
    if rates is not None:
        table["target"] = [float(rates[name]) if name in rates else np.nan for name in names]
    return table


def ip_mix(stream: pd.DataFrame) -> pd.DataFrame:
    """Share of each IP class (:data:`IP_CLASSES`) among ordinary rows, IP-fraud rows and all rows, beside the
    original system's weights (``config.LEGIT_IP_WEIGHTS``, ``config.FRAUD_IP_WEIGHTS``; NaN where it had none).

    Ordinary rows are those of :data:`ORDINARY_SCENARIOS`, IP-fraud rows those of :data:`IP_FRAUD_SCENARIOS`.
    """
    def shares(rows: pd.Series) -> np.ndarray:
        counts = rows.astype(str).value_counts().reindex(list(IP_CLASSES), fill_value=0).to_numpy(np.float64)
        return counts / max(len(rows), 1)

    legit = dict(zip(("home", "domestic", "foreign"), config.LEGIT_IP_WEIGHTS, strict=True))
    fraud = dict(zip(("foreign", "spoof"), config.FRAUD_IP_WEIGHTS, strict=True))
    return pd.DataFrame({
        "ordinary": shares(stream.loc[stream["scenario"].isin(ORDINARY_SCENARIOS), "ip_class"]),
        "original_legit": [legit.get(name, np.nan) for name in IP_CLASSES],
        "ip_fraud": shares(stream.loc[stream["scenario"].isin(IP_FRAUD_SCENARIOS), "ip_class"]),
        "original_fraud": [fraud.get(name, np.nan) for name in IP_CLASSES],
        "all_rows": shares(stream["ip_class"]),
    }, index=pd.Index(IP_CLASSES, name="ip_class"))


_CASHOUT_COLUMNS = ("incident", "victim", "mule", "transfer_amount", "cash_out_amount", "transfer_ms",
                    "cash_out_ms", "minutes", "same_amount", "same_device_and_ip")


def mule_cashouts(stream: pd.DataFrame) -> pd.DataFrame:
    """Each takeover TRANSFER beside the mule's CASH_OUT of the same amount in its incident, read off the wire
    columns alone: one row per transfer and per cash-out left without a partner (an outer join).

    Equal amounts within an incident (transfers of exactly ``MAX_TRANSFER``) pair up in time order. Columns:
    ``incident``, ``victim`` and ``mule`` (user ids), ``transfer_amount`` and ``cash_out_amount`` (NaN on a side
    without a partner), ``transfer_ms``, ``cash_out_ms``, ``minutes`` from transfer to cash-out, ``same_amount``
    (a partner of that amount exists, from the transfer's recipient), ``same_device_and_ip`` (the cash-out came
    from the transfer's device and address).
    """
    rows = stream[stream["scenario"] == "account_takeover"]
    sides = []
    for kind, prefix in (("TRANSFER", "transfer"), ("CASH_OUT", "cash_out")):
        side = rows[rows["type"] == kind].sort_values("timestamp", kind="stable")
        side = pd.DataFrame({"incident": side["incident"].to_numpy(), "amount": side["amount"].to_numpy(),
                             f"{prefix}_user": side["user_id"].to_numpy(),
                             f"{prefix}_dest": side["dest_user_id"].to_numpy(),
                             f"{prefix}_ms": side["timestamp"].to_numpy(),
                             f"{prefix}_where": (side["device_id"] + "@" + side["ip_address"]).to_numpy(),
                             f"{prefix}_amount": side["amount"].to_numpy()})
        side["nth"] = side.groupby(["incident", "amount"]).cumcount()
        sides.append(side)
    pairs = sides[0].merge(sides[1], on=["incident", "amount", "nth"], how="outer", sort=True)
    both = pairs["transfer_amount"].notna() & pairs["cash_out_amount"].notna()
    victim = pairs["transfer_user"].fillna(pairs["cash_out_user"].map(dict(zip(pairs["transfer_dest"],
                                                                                pairs["transfer_user"],
                                                                                strict=True))))
    return pd.DataFrame({
        "incident": pairs["incident"].astype(np.int64),
        "victim": victim.astype("Int64"),
        "mule": pairs["transfer_dest"].fillna(pairs["cash_out_user"]).astype("Int64"),
        "transfer_amount": pairs["transfer_amount"],
        "cash_out_amount": pairs["cash_out_amount"],
        "transfer_ms": pairs["transfer_ms"].astype("Int64"),
        "cash_out_ms": pairs["cash_out_ms"].astype("Int64"),
        "minutes": (pairs["cash_out_ms"] - pairs["transfer_ms"]) / _MINUTE_MS,
        "same_amount": both & (pairs["cash_out_user"] == pairs["transfer_dest"]),
        "same_device_and_ip": both & (pairs["cash_out_where"] == pairs["transfer_where"]),
    }, columns=list(_CASHOUT_COLUMNS))


def home_countries(stream: pd.DataFrame, population: Population, space: AddressSpace) -> pd.Series:
    """The home country code of each row's account (``<NA>`` for a party outside the population: a mule)."""
    accounts = pd.Series(population.country_codes(space), index=population.user_id[:population.accounts])
    return pd.Series(stream["user_id"].map(accounts).to_numpy(), index=stream.index, dtype="string")


def home_geolocation_share(stream: pd.DataFrame, countries: pd.Series, homes: pd.Series) -> float:
    """The share of rows sent from the account's home IP (``ip_class`` home) whose address geolocates
    (``countries``, e.g. ``GeoIP.lookup_many(...)["country_code"]``) to the account's home country (``homes``,
    :func:`home_countries`); a row that does not geolocate counts as a miss. NaN without home rows."""
    home = (stream["ip_class"] == "home").to_numpy()
    if not home.any():
        return float("nan")
    located = pd.Series(countries).to_numpy(object)[home]
    expected = pd.Series(homes).to_numpy(object)[home]
    hits = np.array([isinstance(a, str) and a == b for a, b in zip(located, expected, strict=True)])
    return float(hits.mean())


def top_countries(stream: pd.DataFrame, countries: pd.Series, n: int = 10) -> pd.DataFrame:
    """Rows per geolocated country of the traffic from abroad: ordinary rows with a foreign IP, travellers,
    takeovers (foreign and hosting addresses) and ``foreign_ip`` frauds; the ``n`` countries with the most such
    rows, most first ("?" for addresses that do not geolocate)."""
    where = pd.Series(pd.Series(countries).to_numpy(object), index=stream.index).fillna("?")
    groups = {
        "ordinary_foreign": stream["scenario"].isin(ORDINARY_SCENARIOS) & (stream["ip_class"] == "foreign"),
        "traveller": stream["scenario"] == "traveller",
        "account_takeover": stream["scenario"] == "account_takeover",
        "foreign_ip": stream["scenario"] == "foreign_ip",
    }
    table = pd.DataFrame({name: where[mask].value_counts() for name, mask in groups.items()}).fillna(0)
    table = table.astype(np.int64)
    table["total"] = table.sum(axis=1)
    table = table.sort_values(["total"], ascending=False, kind="stable").head(n)
    table.index.name = "country_code"
    return table
