"""How fast offline GeoIP is: single lookups, a stream's column, address draws, the index build and load, a fetch.

Uses the databases in the cache (``make geoip``; FRAUDLAB_CACHE_DIR is honoured like the command line). The
addresses looked up are drawn from the address space itself, so every one hits a real network: a column of
``--rows`` addresses with ``--distinct`` distinct ones (a stream repeats its users' addresses). Each figure is
the median of ``--repeats`` runs. With ``--fetch`` it also times ``fetch_databases`` into an empty temporary
cache (downloads ~85 MB, builds the index; deleted afterwards). Target: lookup_many >= 150,000 addresses/s.

    .venv/bin/python benchmarks/geoip.py [--rows 1000000] [--distinct 100000] [--repeats 3] [--fetch]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from fraudlab.config import cache_root
from fraudlab.enrich.geoip import AddressSpace, GeoIP, GeoIPFiles, build_address_space, fetch_databases, ipv4_strings

TARGET_RATE = 150_000
SINGLE_LOOKUPS = 100_000
DRAWS = 2_000_000


def _median(run: Callable[[], float], repeats: int) -> tuple[float, list[float]]:
    runs = [run() for _ in range(repeats)]
    return statistics.median(runs), runs


def _timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def _timed_build(files: GeoIPFiles) -> float:
    """Seconds to build the address-space index from the cached databases, into a temporary directory."""
    with tempfile.TemporaryDirectory(prefix="fraudlab-index-") as tmp:
        return _timed(lambda: build_address_space(files.city_ipv4, files.asn_table, Path(tmp) / "index",
                                                  progress=False))


def _column(space: AddressSpace, rows: int, distinct: int, rng: np.random.Generator) -> np.ndarray:
    """``rows`` dotted addresses, ``distinct`` distinct: places weighted by size, then each address repeated."""
    weights = space.cities["addresses"].to_numpy(np.float64)
    places = rng.choice(len(space.cities), size=distinct, p=weights / weights.sum())
    pool = ipv4_strings(space.draw(places, rng))
    return pool[rng.integers(0, distinct, size=rows)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="addresses in the lookup_many column")
    parser.add_argument("--distinct", type=int, default=100_000, help="distinct addresses among them")
    parser.add_argument("--singles", type=int, default=SINGLE_LOOKUPS, help="GeoIP.lookup calls timed")
    parser.add_argument("--draws", type=int, default=DRAWS, help="AddressSpace.draw entries timed")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each kind (the median is shown)")
    parser.add_argument("--fetch", action="store_true", help="also time a fetch into an empty temporary cache")
    args = parser.parse_args()
    cache = cache_root(os.environ)
    rng = np.random.default_rng(2026)

    load_s, load_runs = _median(lambda: _timed(lambda: AddressSpace.load(cache)), args.repeats)
    build_s, build_runs = _median(lambda: _timed_build(GeoIPFiles.at(cache)), args.repeats)
    space = AddressSpace.load(cache)
    column = _column(space, args.rows, args.distinct, rng)
    singles = column[: args.singles].tolist()
    places = rng.integers(0, len(space.cities), size=args.draws)
    rows: list[tuple[str, int, float, list[float], str]] = []
    with GeoIP.open(cache) as database:
        single_s, single_runs = _median(lambda: _timed(lambda: [database.lookup(a) for a in singles]), args.repeats)
        rows.append(("GeoIP.lookup, one at a time", len(singles), single_s, single_runs, "lookups/s"))
        many_s, many_runs = _median(lambda: _timed(lambda: database.lookup_many(column)), args.repeats)
        rows.append((f"lookup_many, {args.distinct:,} distinct", args.rows, many_s, many_runs, "addresses/s"))
    draw_s, draw_runs = _median(lambda: _timed(lambda: space.draw(places, rng)), args.repeats)
    rows.append(("AddressSpace.draw", args.draws, draw_s, draw_runs, "draws/s"))
    strings_s, strings_runs = _median(lambda: _timed(lambda: ipv4_strings(space.draw(places, rng))), args.repeats)
    rows.append(("draw + ipv4_strings", args.draws, strings_s, strings_runs, "addresses/s"))

    print(f"cache: {cache}; {len(space.cities):,} places, {len(space.networks):,} networks; "
          f"median of {args.repeats}")
    print(f"| {'what':<34} | {'n':>10} | {'median s':>8} | {'runs (s)':<22} | {'rate':>12} | unit |")
    print(f"|{'-' * 36}|{'-' * 12}|{'-' * 10}|{'-' * 24}|{'-' * 14}|------|")
    for label, n, seconds, runs, unit in rows:
        shown = ", ".join(f"{run:.3f}" for run in runs)
        print(f"| {label:<34} | {n:>10,} | {seconds:>8.3f} | {shown:<22} | {n / seconds:>12,.0f} | {unit} |")
    for label, seconds, runs in (("build_address_space (the index)", build_s, build_runs),
                                 ("AddressSpace.load", load_s, load_runs)):
        shown = ", ".join(f"{run:.3f}" for run in runs)
        print(f"| {label:<34} | {'':>10} | {seconds:>8.3f} | {shown:<22} | {'':>12} | s |")
    if args.fetch:
        with tempfile.TemporaryDirectory(prefix="fraudlab-geoip-") as tmp:
            fetch_s = _timed(lambda: fetch_databases(Path(tmp), progress=False))
        print(f"| {'fetch_databases, empty cache':<34} | {'':>10} | {fetch_s:>8.1f} | {'(once)':<22} | "
              f"{'':>12} | s |")
    rate = args.rows / many_s
    print(f"lookup_many: {rate:,.0f} addresses/s; target {TARGET_RATE:,}: {'met' if rate >= TARGET_RATE else 'MISSED'}")


if __name__ == "__main__":
    main()
