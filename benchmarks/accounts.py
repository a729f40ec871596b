"""Speed, memory and make-up of fraudlab's account streams, as Markdown tables.

Each timed run generates in a fresh Python process (the GeoIP address space and the pre-trained model loaded
first, outside the timing), so its peak RSS is the generator's own, interpreter and libraries included. The
make-up tables describe one more stream of the same settings. Targets: 20 lakh rows in 30 s and 3 GB.

    .venv/bin/python benchmarks/accounts.py [--rows 2000000] [--accounts 10000] [--seed 7] [--repeats 3]
    .venv/bin/python benchmarks/accounts.py --quick      # 20,000 rows, one run: only checks that it works
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from fraudlab.enrich.geoip import AddressSpace
    from fraudlab.generate.accounts import StreamSettings

TARGET_SECONDS = 30.0
TARGET_RSS_GB = 3.0


def _settings(rows: int, accounts: int, seed: int) -> StreamSettings:
    from fraudlab.generate.accounts import StreamSettings

    return StreamSettings(rows=rows, accounts=accounts, seed=seed)


def _space() -> AddressSpace:
    from fraudlab import config
    from fraudlab.enrich.geoip import AddressSpace

    return AddressSpace.load(config.cache_root(os.environ))


def one_run(rows: int, accounts: int, seed: int) -> None:
    """Generate once and print the seconds and this process's peak RSS as JSON (run in a child process)."""
    from fraudlab.generate.accounts import generate_stream
    from fraudlab.generate.synth import DEFAULT_MODEL, TransactionSynthesizer

    space, model = _space(), TransactionSynthesizer.load(DEFAULT_MODEL)
    started = time.perf_counter()
    generate_stream(_settings(rows, accounts, seed), space=space, model=model)
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6}))


def timed_runs(rows: int, accounts: int, seed: int, repeats: int) -> list[dict[str, float]]:
    runs = []
    for _ in range(repeats):
        child = subprocess.run([sys.executable, __file__, "--one-run", "--rows", str(rows), "--accounts",
                                str(accounts), "--seed", str(seed)], capture_output=True, text=True, check=True)
        runs.append(json.loads(child.stdout.strip().splitlines()[-1]))
    return runs


def _share_rows(stream: pd.DataFrame, rates: dict[str, float]) -> list[str]:
    from fraudlab.generate.accounts import scenario_summary

    table = scenario_summary(stream, rates)
    lines = ["| scenario | fraud | rows | share of rows | target | incidents |", "|---|---|---:|---:|---:|---:|"]
    for name, row in table.iterrows():
        target = "" if pd.isna(row["target"]) else f"{100 * row['target']:.3f}%"
        incidents = f"{row['incidents']:,}" if name != "normal" else ""
        lines.append(f"| {name} | {'yes' if row['fraud'] else 'no'} | {row['rows']:,} | {100 * row['share']:.3f}% "
                     f"| {target} | {incidents} |")
    fraud = table[table["fraud"]]
    lines.append(f"| all fraud | | {fraud['rows'].sum():,} | {100 * fraud['share'].sum():.3f}% "
                 f"| {100 * fraud['target'].sum():.3f}% | |")
    return lines


def _ip_rows(stream: pd.DataFrame) -> list[str]:
    from fraudlab.generate.accounts import ip_mix

    def weight(value: float) -> str:
        return "" if pd.isna(value) else f"{100 * value:.0f}%"

    lines = ["| IP class | ordinary rows | original system (legit) | IP-fraud rows | original system (fraud) "
             "| all rows |", "|---|---:|---:|---:|---:|---:|"]
    for name, row in ip_mix(stream).iterrows():
        lines.append(f"| {name} | {100 * row['ordinary']:.2f}% | {weight(row['original_legit'])} | "
                     f"{100 * row['ip_fraud']:.1f}% | {weight(row['original_fraud'])} | {100 * row['all_rows']:.3f}% |")
    return lines


def _activity_rows(stream: pd.DataFrame, accounts: int) -> list[str]:
    per_account = stream[stream["user_id"].isin(stream.loc[stream["scenario"] == "normal", "user_id"])]
    counts = per_account.groupby("user_id").size()
    levels = (0.1, 0.25, 0.5, 0.75, 0.9, 0.99)
    header = " | ".join(f"p{round(100 * level)}" for level in levels)
    values = " | ".join(f"{counts.quantile(level):,.0f}" for level in levels)
    return [f"| accounts with a transaction | mean | {header} | max |", "|---:|---:|" + "---:|" * len(levels) + "---:|",
            f"| {len(counts):,} of {accounts:,} | {counts.mean():,.1f} | {values} | {counts.max():,} |"]


def _rule_rows(stream: pd.DataFrame) -> list[str]:
    from fraudlab.schema.rules import rule_pass_rates

    lines = ["| rule | rows obeying |", "|---|---:|"]
    lines += [f"| {name} | {100 * rate:.3f}% |" for name, rate in rule_pass_rates(stream).items()]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs (the median is shown)")
    parser.add_argument("--quick", action="store_true", help="20,000 rows and one run, to check the script works")
    parser.add_argument("--one-run", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.rows, args.repeats = 20_000, 1
    if args.one_run:
        one_run(args.rows, args.accounts, args.seed)
        return

    from fraudlab.generate.accounts import generate_stream

    runs = timed_runs(args.rows, args.accounts, args.seed, args.repeats)
    seconds = statistics.median(run["seconds"] for run in runs)
    rss = max(run["rss_gb"] for run in runs)
    settings = _settings(args.rows, args.accounts, args.seed)
    stream = generate_stream(settings, space=_space())
    each = ", ".join(f"{run['seconds']:.1f}" for run in runs)
    print(f"generate_stream(rows={args.rows:,}, accounts={args.accounts:,}, seed={args.seed}): {args.repeats} runs, "
          f"{each} s\n")
    print("| figure | measured | target | met |\n|---|---:|---|---|")
    print(f"| rows/s (median run) | {args.rows / seconds:,.0f} | | |")
    print(f"| seconds (median run) | {seconds:.1f} | ≤ {TARGET_SECONDS:.0f} s | "
          f"{'yes' if seconds <= TARGET_SECONDS else 'NO'} |")
    print(f"| peak RSS (largest run) | {rss:.2f} GB | ≤ {TARGET_RSS_GB:.0f} GB | "
          f"{'yes' if rss <= TARGET_RSS_GB else 'NO'} |")
    for table in (_activity_rows(stream, args.accounts), _share_rows(stream, settings.resolved_rates()),
                  _ip_rows(stream), _rule_rows(stream)):
        print("\n" + "\n".join(table))


if __name__ == "__main__":
    main()
