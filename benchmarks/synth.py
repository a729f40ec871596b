"""fraudlab's TransactionSynthesizer next to SDV's default GaussianCopula, in one run.

Part 1, speed at scale: both fit the same 20 lakh simulator rows, each in a
fresh child process (so peak RSS is that fit's own), then sample.
Part 2, fidelity: both fit real rows (the training half of the bundled real
rows, ``fraudlab.evaluate.metrics.split_reference``) and are judged by
``fraudlab.evaluate.metrics.evaluate`` on the held-out half.

    .venv/bin/python benchmarks/synth.py                 # the full run (SDV's fit at 20 lakh takes minutes)
    .venv/bin/python benchmarks/synth.py --rows 200000   # a quicker look

Prints Markdown tables; docs/synth.md records one run.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

SAMPLE_ROWS = {"fraudlab": 1_000_000, "sdv-default": 200_000}
EVAL_SAMPLE_ROWS = 200_000


def _child(engine: str, data: Path) -> None:
    """Fit ``engine`` on the parquet at ``data``; print seconds, peak RSS and sampling speed as JSON."""
    warnings.simplefilter("ignore")
    import sdv.single_table  # noqa: F401 - imported before the clock starts: import time is not fitting time

    from fraudlab.data.readers import read_transactions
    from fraudlab.generate.baseline import fit_sdv_baseline
    from fraudlab.generate.synth import TransactionSynthesizer

    table = read_transactions(data, progress=False)
    loaded_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    if engine == "fraudlab":
        model = TransactionSynthesizer(seed=7).fit(table, progress=False)
        fit_seconds = time.perf_counter() - started
        model.sample(10_000, seed=0)
        started = time.perf_counter()
        model.sample(SAMPLE_ROWS[engine], seed=1)
    else:
        model = fit_sdv_baseline(table)
        fit_seconds = time.perf_counter() - started
        started = time.perf_counter()
        model.sample(SAMPLE_ROWS[engine], seed=1)
    sample_seconds = time.perf_counter() - started
    print(json.dumps({
        "fit_seconds": fit_seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "data_rss_mb": loaded_rss / 1024,
        "sample_rows_per_s": SAMPLE_ROWS[engine] / sample_seconds,
    }))


def _run_child(engine: str, data: Path) -> dict[str, float]:
    completed = subprocess.run([sys.executable, __file__, "--child", engine, str(data)],
                               capture_output=True, text=True, check=True)
    return json.loads(completed.stdout.strip().splitlines()[-1])


def speed(rows: int, repeats: int, sdv_repeats: int) -> pd.DataFrame:
    from fraudlab.data.readers import write_transactions
    from fraudlab.generate.paysim import simulate

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "train.parquet"
        write_transactions(simulate(rows, seed=7, progress=False), data)
        results = []
        for engine, count in (("fraudlab", repeats), ("sdv-default", sdv_repeats)):
            runs = [_run_child(engine, data) for _ in range(count)]
            results.append({"engine": engine, "runs": count,
                            **{key: statistics.median(r[key] for r in runs) for key in runs[0]}})
    return pd.DataFrame(results).set_index("engine")


def fidelity(seed: int) -> pd.DataFrame:
    from fraudlab.data.splits import split_reference
    from fraudlab.evaluate.metrics import evaluate, measure_utility
    from fraudlab.generate.baseline import fit_sdv_baseline
    from fraudlab.generate.synth import TransactionSynthesizer

    warnings.simplefilter("ignore")
    split = split_reference(seed=seed)
    train, weights = split.train_rows()
    candidates = {
        "fraudlab (real train half, weighted frauds)":
            TransactionSynthesizer(seed=seed).fit(train, weights=weights, progress=False),
        # The uniform half holds only about 30 frauds (15 per fraud type), hence the lower segment minimum.
        "fraudlab (real train half, uniform rows only)":
            TransactionSynthesizer(seed=seed, min_segment_rows=10).fit(split.train_sample, progress=False),
        "sdv-default (real train half, uniform rows)": fit_sdv_baseline(split.train_sample),
    }
    rows = {}
    for name, model in candidates.items():
        synthetic = model.sample(EVAL_SAMPLE_ROWS, seed=seed)
        result = evaluate(split, synthetic, seed=seed)
        zeros = {f"zeros {c}": float((synthetic[c] == 0).mean()) for c in
                 ("old_balance_orig", "new_balance_orig", "old_balance_dest", "new_balance_dest")}
        enriched = float("nan")
        if isinstance(model, TransactionSynthesizer) and model.natural_fraud_rate() > 0:
            # The fraud rate is a sampling parameter: match the real TSTR training set's share of frauds.
            matched = model.sample(EVAL_SAMPLE_ROWS, seed=seed, fraud_rate=float(train["is_fraud"].mean()))
            enriched = measure_utility(split, matched, seed=seed).pr_auc_ratio
        rows[name] = {**result.headline(), "pr_auc_ratio_fraud_enriched_sample": enriched, **zeros,
                      "fraud_rate": float(synthetic["is_fraud"].mean())}
    real = split.test_sample
    rows["real held-out half (reference)"] = {
        **{f"zeros {c}": float((real[c] == 0).mean()) for c in
           ("old_balance_orig", "new_balance_orig", "old_balance_dest", "new_balance_dest")},
        "rules_all_synthetic": float(np.nan), "fraud_rate": float(real["is_fraud"].mean()),
    }
    return pd.DataFrame(rows).T


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2_000_000, help="training rows for the speed part")
    parser.add_argument("--repeats", type=int, default=3, help="fits of fraudlab's model (median reported)")
    parser.add_argument("--sdv-repeats", type=int, default=1, help="fits of SDV's default model")
    parser.add_argument("--seed", type=int, default=0, help="seed of the real split and the evaluation")
    parser.add_argument("--child", nargs=2, metavar=("ENGINE", "DATA"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child[0], Path(args.child[1]))
        return
    pd.set_option("display.width", 200)
    print(f"## Speed: fit on {args.rows:,} simulator rows, then sample\n")
    print(speed(args.rows, args.repeats, args.sdv_repeats).round(2).to_string())
    print(f"\n## Fidelity against the held-out real half ({EVAL_SAMPLE_ROWS:,} synthetic rows each)\n")
    print(fidelity(args.seed).round(4).T.to_string())


if __name__ == "__main__":
    main()
