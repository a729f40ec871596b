"""The evaluation written down: figures as PNG, every number in a Markdown report, the result as JSON.

A report directory is self-contained: ``report.md`` links only to the PNG
files beside it (GitHub renders it as is), and ``result.json`` holds the
same numbers for programs. :func:`evaluate_files` is what ``fraudlab
evaluate`` runs: load, split, optionally fit SDV's default model as a
baseline, evaluate, write, and return the headline.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from fraudlab.data.readers import read_transactions
from fraudlab.data.splits import REFERENCE, RealSplit, load_split
from fraudlab.evaluate import plots
from fraudlab.evaluate.metrics import EvaluationResult, evaluate

__all__ = [
    "BASELINE_LABEL",
    "FIGURES",
    "REFERENCE",
    "SDV_BASELINE",
    "Evaluated",
    "evaluate_files",
    "headline_lines",
    "write_report",
]

#: ``--real`` value meaning the bundled real rows.
#: ``--synthetic`` value meaning "fit SDV's default GaussianCopula on the real training rows and sample from it".
SDV_BASELINE = "sdv-baseline"
BASELINE_LABEL = "SDV default"
#: File name (without .png) and what each figure shows, in report order.
FIGURES: dict[str, str] = {
    "summary": "One page: headline figures, column shapes, accounting rules and the TSTR classifier.",
    "type_mix": "Share of rows per transaction type.",
    "distributions": "Each money column per type on a log scale, with the share of exact zeros.",
    "correlations": "Spearman correlations of the money columns and the fraud label, and their differences.",
    "fraud_by_type": "Fraud rate per transaction type (real rows weighted to the population).",
    "fraud_pattern": "Amount against origin balance of the frauds: real frauds empty the account.",
}


@dataclass(frozen=True, eq=False)
class Evaluated:
    """One evaluated synthetic table: its label, its rows and its figures of merit."""

    label: str
    table: pd.DataFrame
    result: EvaluationResult


# --------------------------------------------------------------------------- figures


def _figures(split: RealSplit, models: list[Evaluated]) -> dict[str, Figure]:
    representative = {"real": split.test_sample, **{m.label: m.table for m in models}}
    test, weight = split.test_rows()
    labelled = {"real": test, **{m.label: m.table for m in models}}
    return {
        "summary": plots.plot_summary({m.label: m.result for m in models}),
        "type_mix": plots.plot_type_mix(representative),
        "distributions": plots.plot_distributions(representative),
        "correlations": plots.plot_correlations(representative, seed=models[0].result.seed),
        "fraud_by_type": plots.plot_fraud_by_type(labelled, weights={"real": weight}),
        "fraud_pattern": plots.plot_fraud_pattern(labelled, seed=models[0].result.seed),
    }


# --------------------------------------------------------------------------- Markdown


def _number(value: float | None, style: str = "score") -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "n/a"
    if style == "percent":
        return f"{100 * value:.2f}%"
    if style == "count":
        return f"{value:,.0f}"
    if style == "distance":
        return f"{value:.3g}"
    return f"{value:.4f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows] + [""]


def _headline_section(models: list[Evaluated]) -> list[str]:
    first = models[0].result
    rows = [
        ["SDMetrics quality score", "", *(_number(m.result.fidelity.quality_score) for m in models)],
        ["column shapes", "", *(_number(m.result.fidelity.column_shapes_score) for m in models)],
        ["column pair trends (SDMetrics thresholds)", "",
         *(_number(m.result.fidelity.column_pair_trends_score) for m in models)],
        ["column pair trends (every pair)", "", *(_number(m.result.fidelity.all_pairs_score) for m in models)],
        ["SDMetrics diagnostic score", "", *(_number(m.result.fidelity.diagnostic_score) for m in models)],
        ["rows obeying every accounting rule", _number(first.validity.real["all"], "percent"),
         *(_number(m.result.validity.synthetic["all"], "percent") for m in models)],
        ["TSTR PR-AUC (fraud classifier, real held-out rows)", _number(first.utility.pr_auc_real),
         *(_number(m.result.utility.pr_auc_synthetic) for m in models)],
        ["TSTR PR-AUC ratio synthetic / real", "1", *(_number(m.result.utility.pr_auc_ratio) for m in models)],
        ["TSTR ROC-AUC", _number(first.utility.roc_auc_real),
         *(_number(m.result.utility.roc_auc_synthetic) for m in models)],
        ["TSTR ROC-AUC ratio synthetic / real", "1", *(_number(m.result.utility.roc_auc_ratio) for m in models)],
        ["rows nearer a training row than the 5% nearest real held-out rows", "about 5% (by construction)",
         *(_number(m.result.privacy.share_closer_than_holdout, "percent") for m in models)],
    ]
    return ["## Headline", "", *_table(["figure", "real", *(m.label for m in models)], rows)]


def _inputs_section(split: RealSplit, models: list[Evaluated]) -> list[str]:
    first = models[0].result
    rows = [
        ["real training rows (uniform rows)", _number(len(split.train_sample), "count")],
        ["real held-out rows (uniform rows): real side of fidelity, validity, privacy",
         _number(len(split.test_sample), "count")],
        ["real frauds, training / held-out (each real fraud once)",
         f"{len(split.train_frauds):,} / {len(split.test_frauds):,}"],
        ["population rows per non-fraud / fraud row", f"{split.nonfraud_weight:.4f} / {split.fraud_weight:.4f}"],
        ["split seed, held-out share", f"{split.seed}, {split.test_share}"],
        ["evaluation seed", str(first.seed)],
    ]
    for m in models:
        r = m.result
        rows += [
            [f"{m.label}: synthetic rows (validity uses all)", _number(r.synthetic_rows, "count")],
            [f"{m.label}: fidelity rows real / synthetic (seeded subsample)",
             f"{r.fidelity.real_rows:,} / {r.fidelity.synthetic_rows:,}"],
            [f"{m.label}: TSTR training rows (frauds) real / synthetic",
             f"{r.utility.real_train_rows:,} ({r.utility.real_train_frauds:,}) / "
             f"{r.utility.synthetic_train_rows:,} ({r.utility.synthetic_train_frauds:,})"],
            [f"{m.label}: TSTR test rows (frauds), weighted prevalence",
             f"{r.utility.test_rows:,} ({r.utility.test_frauds:,}), {_number(r.utility.test_prevalence, 'percent')}"],
            [f"{m.label}: DCR rows synthetic / held-out / reference",
             f"{r.privacy.synthetic_rows:,} / {r.privacy.holdout_rows:,} / {r.privacy.reference_rows:,}"],
        ]
    return ["## Inputs, split and subsamples", "", *_table(["what", "value"], rows)]


_Entry = TypeVar("_Entry")


def _union(models: list[Evaluated], entries: Callable[[Evaluated], tuple[_Entry, ...]],
           key: Callable[[_Entry], object]) -> list[_Entry]:
    """Every scored column (or pair) of any model, in first-seen order: models may score different columns."""
    seen: dict[object, _Entry] = {}
    for model in models:
        for entry in entries(model):
            seen.setdefault(key(entry), entry)
    return list(seen.values())


def _fidelity_section(models: list[Evaluated]) -> list[str]:
    labels = [m.label for m in models]
    shapes = [[s.column, s.metric, *(_number(m.result.fidelity.column_shape(s.column)) for m in models)]
              for s in _union(models, lambda m: m.result.fidelity.column_shapes, lambda s: s.column)]
    pair_scores = [{(p.column_1, p.column_2): p.score for p in m.result.fidelity.column_pairs} for m in models]
    pairs = [
        [f"{p.column_1} / {p.column_2}", p.metric,
         _number(p.real_correlation if p.metric == "CorrelationSimilarity" else p.real_association),
         "yes" if p.counts else "no",
         *(_number(scores.get((p.column_1, p.column_2))) for scores in pair_scores)]
        for p in _union(models, lambda m: m.result.fidelity.column_pairs, lambda p: (p.column_1, p.column_2))
    ]
    validity = [[s.column, s.metric, *(_number(m.result.fidelity.column_validity(s.column)) for m in models)]
                for s in _union(models, lambda m: m.result.fidelity.data_validity, lambda s: s.column)]
    structure = [["Data Structure", "TableStructure", *(_number(m.result.fidelity.data_structure_score)
                                                        for m in models)]]
    return [
        "## Fidelity (SDMetrics QualityReport and DiagnosticReport)", "",
        "Column shapes compare each column's distribution (KSComplement for money, TVComplement for type and "
        "flags; 1 = identical). Column pair trends compare correlations (numeric pairs) and contingency tables "
        "(other pairs); SDMetrics' quality score counts only pairs whose real correlation exceeds 0.5 or "
        "association 0.3 (`counts`), the every-pair mean ignores that threshold.", "",
        "### Column shapes", "", *_table(["column", "metric", *labels], shapes),
        "### Column pair trends", "",
        *_table(["pair", "metric", "real correlation / association", "counts", *labels], pairs),
        "### Diagnostic: data validity and structure", "",
        *_table(["column", "metric", *labels], validity + structure),
    ]


def _validity_section(models: list[Evaluated]) -> list[str]:
    real = models[0].result.validity.real
    rows = [[rule, _number(rate, "percent"), *(_number(m.result.validity.synthetic[rule], "percent") for m in models)]
            for rule, rate in real.items()]
    return [
        "## Validity (PaySim accounting rules, `fraudlab.schema.rules`)", "",
        "Share of rows obeying each rule, on every synthetic row and every real held-out row.", "",
        *_table(["rule", "real", *(m.label for m in models)], rows),
    ]


def _utility_section(models: list[Evaluated]) -> list[str]:
    first = models[0].result.utility
    rows = [
        ["PR-AUC (average precision)", _number(first.pr_auc_real), *(_number(m.result.utility.pr_auc_synthetic)
                                                                      for m in models)],
        ["ROC-AUC", _number(first.roc_auc_real), *(_number(m.result.utility.roc_auc_synthetic) for m in models)],
        ["PR-AUC ratio to real", "1", *(_number(m.result.utility.pr_auc_ratio) for m in models)],
        ["ROC-AUC ratio to real", "1", *(_number(m.result.utility.roc_auc_ratio) for m in models)],
    ]
    notes = [f"- {m.label}: {m.result.utility.note}" for m in models if m.result.utility.note]
    return [
        "## Utility (train synthetic, test real)", "",
        f"A HistGradientBoostingClassifier on {', '.join(first.features)} (classes balanced in training), "
        "trained on each table and tested on the held-out real rows weighted to the population "
        f"(fraud rate {_number(first.test_prevalence, 'percent')}).", "",
        *_table(["trained on", "real", *(m.label for m in models)], rows), *notes, *([""] if notes else []),
    ]


def _privacy_section(models: list[Evaluated]) -> list[str]:
    rows = [
        ["median DCR, synthetic rows", *(_number(m.result.privacy.dcr_median_synthetic, "distance") for m in models)],
        ["median DCR, real held-out rows", *(_number(m.result.privacy.dcr_median_holdout, "distance") for m in models)],
        ["5th percentile of real held-out DCR", *(_number(m.result.privacy.holdout_p5, "distance") for m in models)],
        ["synthetic rows below that percentile (about 5% expected)",
         *(_number(m.result.privacy.share_closer_than_holdout, "percent") for m in models)],
        ["synthetic rows identical to a training row",
         *(_number(m.result.privacy.exact_copies_synthetic, "percent") for m in models)],
        ["real held-out rows identical to a training row",
         *(_number(m.result.privacy.exact_copies_holdout, "percent") for m in models)],
    ]
    return [
        "## Privacy (distance to closest record)", "",
        "Gower-like distance in [0, 1] (type and fraud label: 0 or 1; money: log1p over the training range) "
        "from each row to its nearest real training row, found with a k-d tree over seeded subsamples.", "",
        *_table(["figure", *(m.label for m in models)], rows),
    ]


def _figures_section(names: list[str]) -> list[str]:
    lines = ["## Figures", ""]
    for name in names:
        lines += [f"**{name.replace('_', ' ')}**: {FIGURES[name]}", "", f"![{name}]({name}.png)", ""]
    return lines


def _timing_section(models: list[Evaluated]) -> list[str]:
    rows = [[m.label, *(f"{m.result.seconds.get(part, float('nan')):.1f}" for part in
                        ("fidelity", "validity", "utility", "privacy"))] for m in models]
    return ["## Time (seconds, this run)", "",
            *_table(["table", "fidelity", "validity", "utility", "privacy"], rows)]


def _markdown(title: str, command: str | None, split: RealSplit, models: list[Evaluated], figures: list[str]) -> str:
    first = models[0].result
    versions = ", ".join(f"{name} {number}" for name, number in first.versions.items())
    made = [f"Produced by `{command}`." if command else "", f"Versions: {versions}.", ""]
    sections = [
        [f"# {title}", "", *made], _headline_section(models), _inputs_section(split, models),
        _fidelity_section(models), _validity_section(models), _utility_section(models), _privacy_section(models),
        _figures_section(figures), _timing_section(models),
    ]
    return "\n".join(line for section in sections for line in section).rstrip() + "\n"


def write_report(
    out_dir: str | Path,
    split: RealSplit,
    models: list[Evaluated],
    *,
    title: str = "Synthetic against real PaySim rows",
    command: str | None = None,
) -> Path:
    """Write ``report.md``, ``result.json`` (one entry per model) and the figures as PNG into ``out_dir``.

    ``models`` are the evaluated synthetic tables, the main one first (the
    baseline, if any, after it); all must have been evaluated against ``split``.
    Returns the path of ``report.md``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figures = _figures(split, models)
    for name, figure in figures.items():
        figure.savefig(out / f"{name}.png")
    results = {m.label: m.result.to_dict() for m in models}
    (out / "result.json").write_text(json.dumps(results, indent=2, allow_nan=False) + "\n")
    report = out / "report.md"
    report.write_text(_markdown(title, command, split, models, list(figures)))
    return report


# --------------------------------------------------------------------------- the command's work


def headline_lines(label: str, result: EvaluationResult) -> Iterator[str]:
    """The headline of one evaluation in a few printable lines."""
    f, v, u, p = result.fidelity, result.validity, result.utility, result.privacy
    yield (f"{label}: quality {f.quality_score:.3f} (column shapes {f.column_shapes_score:.3f}, "
           f"pair trends {f.column_pair_trends_score:.3f}), diagnostic {f.diagnostic_score:.3f}")
    yield f"{label}: rows obeying every accounting rule {v.synthetic['all']:.2%} (real {v.real['all']:.2%})"
    yield (f"{label}: TSTR PR-AUC {_number(u.pr_auc_synthetic)} vs real {u.pr_auc_real:.4f} "
           f"(ratio {_number(u.pr_auc_ratio)}), ROC-AUC ratio {_number(u.roc_auc_ratio)}")
    yield (f"{label}: {p.share_closer_than_holdout:.1%} of rows nearer a training row than the 5% nearest real "
           f"held-out rows; median DCR {p.dcr_median_synthetic:.4f} (real {p.dcr_median_holdout:.4f})")


def _command(
    real: str, synthetic: str, out_dir: Path, seed: int, split_seed: int, baseline: bool, baseline_rows: int | None
) -> str:
    parts = ["fraudlab evaluate", f"--real {real}", f"--synthetic {synthetic}", f"-o {out_dir}", f"--seed {seed}",
             f"--split-seed {split_seed}"]
    if baseline:
        parts.append("--baseline")
    if baseline_rows is not None:
        parts.append(f"--baseline-rows {baseline_rows}")
    return " ".join(parts)


def evaluate_files(
    real: str,
    synthetic: str,
    out_dir: str | Path,
    *,
    seed: int = 0,
    split_seed: int = 0,
    baseline: bool = False,
    baseline_rows: int | None = None,
    echo: Callable[[str], None] = print,
) -> Path:
    """Evaluate a synthetic file against real rows, write the report into ``out_dir`` and echo the headline.

    Args:
        real: ``"reference"`` (the bundled real rows) or a PaySim file, split here by ``seed``.
        synthetic: a transaction file, or ``"sdv-baseline"`` to fit SDV's
            default GaussianCopula on the real training rows and evaluate its sample.
        out_dir: where ``report.md``, ``result.json`` and the PNG figures go.
        seed: seeds the subsamples, the classifiers and the baseline's sample.
        split_seed: seeds the real train/test split; keep the one the synthesizer's
            training rows came from (``split_reference(seed=0)`` by default), or it is tested on rows it saw.
        baseline: also evaluate SDV's default model, shown beside the synthetic file.
        baseline_rows: rows to sample from SDV's model (default: as many as the synthetic file,
            or 200,000 with ``--synthetic sdv-baseline``).
        echo: where the headline lines go.

    Returns:
        The path of ``report.md``.
    """
    from fraudlab.generate.baseline import fit_sdv_baseline

    out = Path(out_dir)
    split = load_split(real, seed=split_seed)
    tables: dict[str, pd.DataFrame] = {}
    if synthetic != SDV_BASELINE:
        tables["synthetic"] = read_transactions(synthetic)
    if baseline or synthetic == SDV_BASELINE:
        rows = baseline_rows or (len(tables["synthetic"]) if tables else 200_000)
        echo(f"Fitting SDV's default GaussianCopula on {len(split.train_sample):,} real training rows, "
             f"sampling {rows:,} rows ...")
        tables[BASELINE_LABEL] = fit_sdv_baseline(split.train_sample).sample(rows, seed=seed)
    models = []
    for label, table in tables.items():
        echo(f"Evaluating {label} ({len(table):,} rows) against {len(split.test_sample):,} held-out real rows ...")
        models.append(Evaluated(label, table, evaluate(split, table, seed=seed)))
    for model in models:
        for line in headline_lines(model.label, model.result):
            echo(line)
    report = write_report(out, split, models, command=_command(
        real, synthetic, out, seed, split_seed, baseline, baseline_rows))
    echo(f"Report: {report}")
    return report
