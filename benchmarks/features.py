"""Speed of the feature executors, as Markdown tables: the table executor on 20 lakh rows, the streaming one.

The stream is generated first (outside the timing) with GeoIP enrichment; each timed phase is repeated and the
median reported. Target (issue 15): the table executor computes 20 lakh rows' features in at most 60 s.

    .venv/bin/python benchmarks/features.py [--rows 2000000] [--accounts 34000] [--repeats 3] [--stream-rows 20000]
    .venv/bin/python benchmarks/features.py --quick     # 20,000 rows, one run: only checks that it works
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

TARGET_SECONDS = 60.0


def _median_seconds(work: Callable[[], object], repeats: int) -> float:
    runs = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        runs.append(time.perf_counter() - started)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--accounts", type=int, default=34_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--stream-rows", type=int, default=20_000, help="rows pushed through the streaming executor")
    parser.add_argument("--quick", action="store_true", help="20,000 rows, one run")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.accounts, args.repeats, args.stream_rows = 20_000, 2_000, 1, 5_000

    from fraudlab import config
    from fraudlab.detect import features as F
    from fraudlab.enrich.geoip import AddressSpace, GeoIP
    from fraudlab.generate.accounts import StreamSettings, generate_stream

    cache = config.cache_root(os.environ)
    settings = StreamSettings(rows=args.rows, accounts=args.accounts, days=30, seed=7)
    stream = generate_stream(settings, space=AddressSpace.load(cache))
    with GeoIP.open(cache) as geoip:
        enrich = _median_seconds(lambda: F.feature_inputs(stream, geoip=geoip), args.repeats)
        inputs = F.feature_inputs(stream, geoip=geoip)
    raw = _median_seconds(lambda: F.raw_aggregates(inputs), args.repeats)
    aggregates = F.raw_aggregates(inputs)
    finish = _median_seconds(lambda: F.finish(inputs, aggregates), args.repeats)
    records = inputs.iloc[:args.stream_rows].to_dict("records")
    streaming = _median_seconds(lambda: F.StreamingFeatures().run(records), args.repeats)
    total = enrich + raw + finish

    print(f"compute_features on {len(stream):,} rows ({args.accounts:,} accounts, 30 days): "
          f"{args.repeats} runs, median seconds; {len(F.FEATURES)} features, {len(F.WINDOWS)} windows, "
          f"{len(F.PREVIOUS)} previous values")
    print()
    print("| phase | seconds | rows/s |")
    print("|---|---:|---:|")
    for name, seconds, rows in (("feature_inputs (GeoIP enrichment, keys)", enrich, len(stream)),
                                ("raw_aggregates (every window and previous value)", raw, len(stream)),
                                ("finish (row features)", finish, len(stream)),
                                ("table executor, all of it", total, len(stream)),
                                ("StreamingFeatures.run (one record at a time)", streaming, len(records))):
        print(f"| {name} | {seconds:.2f} | {rows / seconds:,.0f} |")
    print()
    print("| target | measured | bound | met |")
    print("|---|---:|---|---|")
    if len(stream) >= 2_000_000:
        print(f"| table executor, 20 lakh rows | {total:.1f} s | ≤ {TARGET_SECONDS:.0f} s | "
              f"{'yes' if total <= TARGET_SECONDS else 'no'} |")
    else:
        print(f"| table executor, 20 lakh rows | not run ({len(stream):,} rows) | ≤ {TARGET_SECONDS:.0f} s | n/a |")

if __name__ == "__main__":
    main()
