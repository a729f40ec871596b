"""How long ``fraudlab.evaluate.metrics.evaluate`` takes on 20 lakh synthetic rows, and how much its TSTR figures move.

Part 1, speed: the synthetic rows come from SDV's default GaussianCopula
fitted on the real training half (sampling them is not timed). The run
prints the seconds of each part of the evaluation and the subsample sizes it
used; the target is under 60 s in all.

Part 2, spread: PR-AUC depends on which real rows are held out. For each
split seed it prints the PR-AUC and ROC-AUC of the classifier trained on the
real training rows, and of one trained on the uniform training half alone
(the natural fraud rate: what a perfect copy of those rows would reach).

    .venv/bin/python benchmarks/evaluate.py                  # 2,000,000 rows, 5 split seeds
    .venv/bin/python benchmarks/evaluate.py --rows 200000 --splits 2
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2_000_000, help="synthetic rows to evaluate")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split, the sample and the evaluation")
    parser.add_argument("--splits", type=int, default=5, help="split seeds 0..N-1 for part 2")
    args = parser.parse_args()
    speed(args.rows, args.seed)
    spread(args.splits)


def spread(splits: int) -> None:
    from fraudlab.data.splits import split_reference
    from fraudlab.evaluate.metrics import measure_utility

    print("split seed | PR-AUC real | ROC-AUC real | PR-AUC uniform half | ROC-AUC uniform half | frauds in it")
    for seed in range(splits):
        split = split_reference(seed=seed)
        u = measure_utility(split, split.train_sample, seed=0)
        print(f"{seed} | {u.pr_auc_real:.4f} | {u.roc_auc_real:.4f} | {u.pr_auc_synthetic:.4f} | "
              f"{u.roc_auc_synthetic:.4f} | {u.synthetic_train_frauds}")


def speed(rows: int, seed: int) -> None:
    from fraudlab.data.splits import split_reference
    from fraudlab.evaluate.metrics import evaluate
    from fraudlab.generate.baseline import fit_sdv_baseline

    split = split_reference(seed=seed)
    started = time.perf_counter()
    synthetic = fit_sdv_baseline(split.train_sample).sample(rows, seed=seed)
    print(f"SDV default: fitted and sampled {len(synthetic):,} rows in {time.perf_counter() - started:.1f} s (untimed)")

    started = time.perf_counter()
    result = evaluate(split, synthetic, seed=seed)
    total = time.perf_counter() - started
    print(f"evaluate(): {total:.1f} s in all for {result.synthetic_rows:,} synthetic rows")
    print("  parts: " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in result.seconds.items())
          + f", input checks {total - sum(result.seconds.values()):.1f} s")
    print(f"  subsamples: fidelity {result.fidelity.synthetic_rows:,} synthetic / {result.fidelity.real_rows:,} real; "
          f"TSTR training {result.utility.synthetic_train_rows:,} synthetic / {result.utility.real_train_rows:,} real; "
          f"DCR {result.privacy.synthetic_rows:,} synthetic / {result.privacy.holdout_rows:,} held-out "
          f"against {result.privacy.reference_rows:,}")
    print("  headline: " + ", ".join(f"{k} {v:.4f}" if v is not None else f"{k} n/a"
                                      for k, v in result.headline().items()))


if __name__ == "__main__":
    main()
