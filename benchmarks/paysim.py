"""Speed, memory and fidelity of fraudlab's PaySim simulator, as a Markdown table.

Each timed run simulates in a fresh Python process, so its peak RSS is the
simulator's own (interpreter and libraries included). The fidelity figures
compare one more simulated table with the bundled real rows; for similarity
scores the "real sample" column scores one half of the real sample against
the other. Targets: 20 lakh rows in under 20 s and 2 GB.

    .venv/bin/python benchmarks/paysim.py [--rows 2000000] [--seed 7] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
import warnings

TARGET_SECONDS = 20.0
TARGET_RSS_GB = 2.0
_PERCENT_FIGURES = ("share of ", "zero share of ", "fraud", "rows obeying")


def one_run(rows: int, seed: int) -> None:
    """Simulate once and print the seconds and this process's peak RSS as JSON (run in a child process)."""
    from fraudlab.generate.paysim import simulate

    started = time.perf_counter()
    simulate(rows, seed=seed, progress=False)
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6}))


def timed_runs(rows: int, seed: int, repeats: int) -> list[dict[str, float]]:
    runs = []
    for _ in range(repeats):
        child = subprocess.run([sys.executable, __file__, "--one-run", "--rows", str(rows), "--seed", str(seed)],
                               capture_output=True, text=True, check=True)
        runs.append(json.loads(child.stdout.strip().splitlines()[-1]))
    return runs


def _shown(name: str, value: float) -> str:
    if name.startswith(_PERCENT_FIGURES):
        return f"{100 * value:.3f}%" if name == "fraud rate" else f"{100 * value:.2f}%"
    return f"{value:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs (the median is shown)")
    parser.add_argument("--one-run", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one_run:
        one_run(args.rows, args.seed)
        return

    from fraudlab.evaluate.simulator import fidelity_figures
    from fraudlab.generate.paysim import simulate

    runs = timed_runs(args.rows, args.seed, args.repeats)
    seconds = statistics.median(run["seconds"] for run in runs)
    rss = max(run["rss_gb"] for run in runs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        figures = fidelity_figures(simulate(args.rows, seed=args.seed, progress=False))
    each = ", ".join(f"{run['seconds']:.1f}" for run in runs)
    print(f"fraudlab.generate.paysim.simulate({args.rows:,}, seed={args.seed}): {args.repeats} runs, {each} s\n")
    print("| figure | simulated | real sample | target | met |")
    print("|---|---:|---:|---|---|")
    print(f"| rows/s (median run) | {args.rows / seconds:,.0f} | | | |")
    print(f"| seconds (median run) | {seconds:.1f} | | < {TARGET_SECONDS:.0f} s | "
          f"{'yes' if seconds < TARGET_SECONDS else 'NO'} |")
    print(f"| peak RSS (largest run) | {rss:.2f} GB | | < {TARGET_RSS_GB:.0f} GB | "
          f"{'yes' if rss < TARGET_RSS_GB else 'NO'} |")
    for figure in figures:
        print(f"| {figure.name} | {_shown(figure.name, figure.simulated)} | {_shown(figure.name, figure.real)} "
              f"| {figure.target} | {'yes' if figure.met else 'NO'} |")


if __name__ == "__main__":
    main()
