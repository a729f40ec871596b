"""``fraudlab evaluate``: synthetic against real rows, written as a report."""

from __future__ import annotations

from pathlib import Path

import click

__all__ = ["evaluate_command"]


@click.command("evaluate")
@click.option("--real", default="reference", show_default=True,
              help="Real rows: 'reference' (the bundled PaySim rows) or a PaySim file (.csv, .csv.gz, .parquet).")
@click.option("--synthetic", required=True,
              help="Synthetic transactions file, or 'sdv-baseline' to fit and evaluate SDV's default GaussianCopula.")
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Directory for report.md, result.json and the PNG figures.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the subsamples, the classifiers and the baseline's sample.")
@click.option("--split-seed", type=int, default=0, show_default=True,
              help="Seed of the real train/test split: the one the synthesizer's real training rows came from.")
@click.option("--baseline", is_flag=True, help="Also evaluate SDV's default GaussianCopula, shown beside.")
@click.option("--baseline-rows", type=click.IntRange(min=1), default=None,
              help="Rows sampled from SDV's model [default: as many as --synthetic, 200,000 for sdv-baseline].")
def evaluate_command(real: str, synthetic: str, output: Path, seed: int, split_seed: int, baseline: bool,
                     baseline_rows: int | None) -> None:
    """Compare synthetic with real rows (fidelity, accounting rules, TSTR utility, privacy) and write a report."""
    from fraudlab.evaluate.report import evaluate_files

    evaluate_files(real, synthetic, output, seed=seed, split_seed=split_seed, baseline=baseline,
                   baseline_rows=baseline_rows, echo=click.echo)
