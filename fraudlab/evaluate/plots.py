"""Figures that show synthetic rows beside real ones, returned as matplotlib figures.

Every function takes the tables to compare as a mapping from a label to a
canonical table, the real one first (``{"real": real, "ours": ours, "SDV
default": sdv}``), so one figure can show a model next to the baseline. The
figures are built on :class:`matplotlib.figure.Figure` directly, never through
pyplot's global state: they work under the Agg backend, leak nothing in long
scripts, display in notebooks and save with ``fig.savefig(path)``.

Money is shown on log scales, where PaySim's heavy tails are readable; the
exact zeros a log scale cannot show (a third to a half of each balance
column) are printed as shares in each panel instead.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from fraudlab.exceptions import EvaluationInputError
from fraudlab.schema.table import MONEY_COLUMNS, TRANSACTION_TYPES

if TYPE_CHECKING:  # only for annotations: plotting a result or a model never needs their modules loaded
    from fraudlab.evaluate.metrics import EvaluationResult
    from fraudlab.generate.synth import SegmentModel, TransactionSynthesizer

__all__ = [
    "DPI",
    "PALETTE",
    "new_figure",
    "plot_copula_correlation",
    "plot_correlations",
    "plot_distributions",
    "plot_fraud_by_type",
    "plot_fraud_pattern",
    "plot_learned_marginals",
    "plot_summary",
    "plot_type_mix",
]

#: Resolution of every figure: sharp on screen, small in a repository.
DPI = 80
PALETTE = ("#3b6ea8", "#dd8452", "#55a868", "#c44e52", "#8172b3")
_SHORT = {"amount": "amount", "old_balance_orig": "old bal. orig", "new_balance_orig": "new bal. orig",
          "old_balance_dest": "old bal. dest", "new_balance_dest": "new bal. dest", "is_fraud": "is_fraud"}
_MONEY_UNIT = "currency units"
_PLOT_ROWS = 50_000


def new_figure(width: float, height: float) -> Figure:
    """A figure of fraudlab's size and resolution, outside pyplot's global state."""
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _figure_legend(fig: Figure, colors: dict[str, str]) -> None:
    """One legend for the whole figure, right of the panels, so no panel's data hides behind it."""
    handles = [Patch(color=color, label=label) for label, color in colors.items()]
    fig.legend(handles=handles, loc="outside right upper", fontsize=9, frameon=False)


def _checked(tables: Mapping[str, pd.DataFrame], columns: tuple[str, ...]) -> dict[str, pd.DataFrame]:
    """The tables in order, after checking each has the columns the figure draws."""
    if not tables:
        raise EvaluationInputError("tables", ["no table to plot: pass a mapping like {'real': real, 'synthetic': ...}"])
    problems = [
        f"table {label!r} has no column {column!r}"
        for label, table in tables.items() for column in columns if column not in table.columns
    ]
    problems += [f"table {label!r} has no rows" for label, table in tables.items() if len(table) == 0]
    if problems:
        raise EvaluationInputError("tables", problems)
    return dict(tables)


def _colors(labels: list[str]) -> dict[str, str]:
    return {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(labels)}


def _weights(table: pd.DataFrame, label: str, weights: Mapping[str, np.ndarray] | None) -> np.ndarray:
    given = (weights or {}).get(label)
    if given is None:
        return np.ones(len(table))
    if len(given) != len(table):
        raise EvaluationInputError(
            "weights", [f"weights of {label!r} have {len(given):,} values for {len(table):,} rows"]
        )
    return np.asarray(given, dtype="float64")


def _per_type(table: pd.DataFrame, values: np.ndarray, weight: np.ndarray) -> pd.Series:
    """Weighted sum of ``values`` per transaction type, in the canonical type order."""
    frame = pd.DataFrame({"type": table["type"].astype(str).to_numpy(), "value": values * weight})
    return frame.groupby("type")["value"].sum().reindex(list(TRANSACTION_TYPES), fill_value=0.0)


def _grouped_bars(ax: Axes, values: pd.DataFrame, colors: dict[str, str], fmt: str) -> None:
    """Bars per index entry, one per column (table), labelled with their values."""
    long = values.rename_axis("group").reset_index().melt(id_vars="group", var_name="table", value_name="value")
    sns.barplot(data=long, x="group", y="value", hue="table", palette=colors, ax=ax, saturation=0.9)
    for container in ax.containers:
        ax.bar_label(container, fmt=fmt, fontsize=7, padding=1)
    ax.set_xlabel("")
    ax.legend(title=None, fontsize=8)


def plot_type_mix(
    tables: Mapping[str, pd.DataFrame], *, weights: Mapping[str, np.ndarray] | None = None
) -> Figure:
    """Share of rows per transaction type, one bar per table (``weights`` turn rows into population rows)."""
    tables = _checked(tables, ("type",))
    shares = pd.DataFrame({
        label: 100 * (mix := _per_type(table, np.ones(len(table)), _weights(table, label, weights))) / mix.sum()
        for label, table in tables.items()
    })
    fig = new_figure(8, 4.5)
    with sns.axes_style("whitegrid"):
        ax = fig.subplots()
    _grouped_bars(ax, shares, _colors(list(tables)), "%.1f")
    ax.set_ylabel("share of rows (%)")
    ax.set_title("Transaction type mix")
    return fig


def _log_bins(tables: dict[str, pd.DataFrame], column: str) -> np.ndarray:
    positive = np.concatenate([t[column].to_numpy(dtype="float64") for t in tables.values()])
    positive = positive[positive > 0]
    if not len(positive):
        return np.geomspace(1, 10, 2)
    low, high = np.percentile(positive, [0.01, 100])
    return np.geomspace(max(low, 1e-2), max(high, low * 10, 1.0), 41)


def _zero_note(shares: dict[str, float]) -> str:
    return "= 0: " + " · ".join(f"{label} {share:.0%}" for label, share in shares.items())


def plot_distributions(
    tables: Mapping[str, pd.DataFrame], *, columns: tuple[str, ...] = MONEY_COLUMNS
) -> Figure:
    """Histograms of each money column per transaction type on a log scale, with the share of exact zeros.

    One row of panels per column, one column of panels per type; each panel
    overlays the tables' densities of the values above zero and prints each
    table's share of zeros, which a log scale cannot show.
    """
    tables = _checked(tables, ("type", *columns))
    colors = _colors(list(tables))
    types = {label: table["type"].astype(str).to_numpy() for label, table in tables.items()}
    fig = new_figure(3.3 * len(TRANSACTION_TYPES), 2.5 * len(columns))
    with sns.axes_style("whitegrid"):
        axes = fig.subplots(len(columns), len(TRANSACTION_TYPES), squeeze=False)
    for row, column in enumerate(columns):
        bins = _log_bins(tables, column)
        for col, kind in enumerate(TRANSACTION_TYPES):
            ax = axes[row, col]
            zeros = {}
            for label, table in tables.items():
                values = table[column].to_numpy(dtype="float64")[types[label] == kind]
                zeros[label] = float((values == 0).mean()) if len(values) else float("nan")
                if (values > 0).any():
                    counts, _ = np.histogram(values[values > 0], bins=bins)
                    ax.stairs(counts / len(values), bins, color=colors[label], label=label, lw=1.4)
            ax.set_xscale("log")
            ax.text(0.02, 0.97, _zero_note(zeros), transform=ax.transAxes, va="top", fontsize=7,
                    bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none", "pad": 1})
            ax.set_title(kind if row == 0 else "", fontsize=10)
            ax.set_xlabel(f"{column} ({_MONEY_UNIT}, log)" if row == len(columns) - 1 else column, fontsize=8)
            ax.set_ylabel("share of the type's rows" if col == 0 else "", fontsize=8)
            ax.tick_params(labelsize=7)
    _figure_legend(fig, colors)
    fig.suptitle("Money columns per transaction type (values above zero; share of exact zeros noted)")
    return fig


def _sample(table: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    if len(table) <= rows:
        return table
    return table.iloc[np.sort(np.random.default_rng(seed).choice(len(table), size=rows, replace=False))]


def _spearman(table: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    frame = table.loc[:, columns].astype("float64").rename(columns=_SHORT)
    return frame.corr(method="spearman")


def plot_correlations(
    tables: Mapping[str, pd.DataFrame], *, max_rows: int = _PLOT_ROWS, seed: int = 0
) -> Figure:
    """Spearman correlation heatmaps of the money columns and the fraud label, and each minus the first table's.

    Rank correlation, because money is heavy-tailed; at most ``max_rows``
    rows per table (a seeded subsample) enter each matrix.
    """
    columns = [*MONEY_COLUMNS, "is_fraud"]
    tables = _checked(tables, tuple(columns))
    matrices = {label: _spearman(_sample(table, max_rows, seed), columns) for label, table in tables.items()}
    labels = list(matrices)
    first = matrices[labels[0]]
    panels = [(f"{label}: Spearman", matrix) for label, matrix in matrices.items()]
    panels += [(f"{label} minus {labels[0]}", matrices[label] - first) for label in labels[1:]]
    fig = new_figure(5.2 * len(panels), 5)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, matrix) in zip(axes, panels, strict=True):
        sns.heatmap(matrix, ax=ax, vmin=-1, vmax=1, center=0, cmap="vlag", annot=True, fmt=".2f",
                    annot_kws={"fontsize": 7}, square=True, cbar_kws={"shrink": 0.7})
        ax.set_title(title)
        ax.tick_params(labelsize=8)
    fig.suptitle(f"Correlations (Spearman, up to {max_rows:,} rows per table)")
    return fig


def plot_fraud_by_type(
    tables: Mapping[str, pd.DataFrame], *, weights: Mapping[str, np.ndarray] | None = None
) -> Figure:
    """Fraud rate per transaction type, one bar per table; give ``weights`` for fraud-enriched real rows."""
    tables = _checked(tables, ("type", "is_fraud"))
    rates = {}
    for label, table in tables.items():
        weight = _weights(table, label, weights)
        frauds = _per_type(table, table["is_fraud"].to_numpy(dtype="float64"), weight)
        rows = _per_type(table, np.ones(len(table)), weight)
        rates[label] = 100 * frauds / rows.where(rows > 0)
    fig = new_figure(8, 4.5)
    with sns.axes_style("whitegrid"):
        ax = fig.subplots()
    _grouped_bars(ax, pd.DataFrame(rates).fillna(0.0), _colors(list(tables)), "%.3f")
    ax.set_ylabel("fraud rate (% of rows of the type)")
    weighted = " (weighted to the population)" if weights else ""
    ax.set_title(f"Fraud rate by transaction type{weighted}")
    return fig


def _emptied_share(frauds: pd.DataFrame) -> float:
    """Share of frauds whose amount is the whole origin balance: PaySim's fraudsters empty the account."""
    amount, balance = frauds["amount"].to_numpy(), frauds["old_balance_orig"].to_numpy()
    return float(np.isclose(amount, balance, atol=0.011).mean())


def plot_fraud_pattern(
    tables: Mapping[str, pd.DataFrame], *, max_points: int = 3_000, seed: int = 0
) -> Figure:
    """The fraud pattern: amount against origin balance of fraud rows, one panel per table.

    Real PaySim frauds sit on the diagonal (the amount is the whole balance);
    each title gives the share that does. Axes are symmetric-log so zero
    balances stay visible; at most ``max_points`` seeded points per panel.
    """
    tables = _checked(tables, ("type", "amount", "old_balance_orig", "is_fraud"))
    fig = new_figure(5 * len(tables), 4.8)
    with sns.axes_style("whitegrid"):
        axes = fig.subplots(1, len(tables), squeeze=False, sharex=True, sharey=True)[0]
    palette = dict(zip(TRANSACTION_TYPES, sns.color_palette("deep", len(TRANSACTION_TYPES)), strict=True))
    for ax, (label, table) in zip(axes, tables.items(), strict=True):
        frauds = table.loc[table["is_fraud"].to_numpy(dtype=bool)]
        ax.set_xscale("symlog", linthresh=1)
        ax.set_yscale("symlog", linthresh=1)
        ax.set_xlabel(f"amount ({_MONEY_UNIT})")
        ax.set_ylabel(f"origin balance before ({_MONEY_UNIT})")
        if frauds.empty:
            ax.set_title(f"{label}: no fraud rows")
            continue
        shown = _sample(frauds, max_points, seed)
        for kind, rows in shown.groupby(shown["type"].astype(str), sort=True):
            ax.scatter(rows["amount"], rows["old_balance_orig"], s=6, alpha=0.5, color=palette[kind], label=kind)
        top = float(max(frauds["amount"].max(), frauds["old_balance_orig"].max(), 10.0))
        ax.plot([0, top], [0, top], ls="--", lw=1, color="0.3", label="amount = balance")
        ax.legend(fontsize=7, loc="lower right", markerscale=2)
        ax.set_title(f"{label}: {len(frauds):,} frauds, {_emptied_share(frauds):.0%} empty the account", fontsize=10)
    fig.suptitle("Fraud pattern: amount against origin balance (fraud rows only)")
    return fig


def _score_rows(results: Mapping[str, EvaluationResult]) -> Iterator[tuple[str, str, float]]:
    for label, result in results.items():
        for name, value in (
            ("quality", result.fidelity.quality_score),
            ("column shapes", result.fidelity.column_shapes_score),
            ("pair trends", result.fidelity.column_pair_trends_score),
            ("diagnostic", result.fidelity.diagnostic_score),
            ("rules obeyed (all)", result.validity.synthetic["all"]),
            ("TSTR PR-AUC ratio", result.utility.pr_auc_ratio),
            ("TSTR ROC-AUC ratio", result.utility.roc_auc_ratio),
        ):
            yield label, name, np.nan if value is None else value


def _hbars(ax: Axes, frame: pd.DataFrame, colors: dict[str, str], title: str) -> None:
    sns.barplot(data=frame, y="name", x="value", hue="table", palette=colors, ax=ax, orient="h")
    for container in ax.containers:
        ax.bar_label(container, fmt="%.3f", fontsize=7, padding=2)
    ax.set_xlim(0, max(1.15, float(np.nan_to_num(frame["value"]).max()) * 1.12))
    ax.set_xlabel("score (1 = like the real rows)")
    ax.set_ylabel("")
    ax.set_title(title)
    ax.get_legend().remove()


def plot_summary(results: Mapping[str, EvaluationResult]) -> Figure:
    """One page: headline scores, column shapes, rule pass rates and TSTR, for one or more evaluated models.

    ``results`` maps a model's label to its :class:`EvaluationResult`; the
    real rows' own rule pass rates and PR-AUC come from the first one.
    """
    if not results:
        raise EvaluationInputError("results", ["no evaluation to summarise: pass {'label': result, ...}"])
    labels = list(results)
    first = results[labels[0]]
    colors = _colors(["real", *labels])
    fig = new_figure(14, 10)
    with sns.axes_style("whitegrid"):
        (top_left, top_right), (bottom_left, bottom_right) = fig.subplots(2, 2)
    scores = pd.DataFrame(_score_rows(results), columns=["table", "name", "value"])
    _hbars(top_left, scores, colors, "Headline figures")
    shapes = pd.DataFrame(
        [(label, s.column, s.score) for label, r in results.items() for s in r.fidelity.column_shapes],
        columns=["table", "name", "value"],
    )
    _hbars(top_right, shapes, colors, "Column shapes (KSComplement / TVComplement)")
    rules = pd.DataFrame(
        [("real", name, rate) for name, rate in first.validity.real.items()]
        + [(label, name, rate) for label, r in results.items() for name, rate in r.validity.synthetic.items()],
        columns=["table", "name", "value"],
    )
    _hbars(bottom_left, rules, colors, "Accounting rules: share of rows obeying")
    tstr = pd.DataFrame(
        [("real", "PR-AUC", first.utility.pr_auc_real), ("real", "ROC-AUC", first.utility.roc_auc_real)]
        + [(label, metric, np.nan if value is None else value) for label, r in results.items()
           for metric, value in (("PR-AUC", r.utility.pr_auc_synthetic), ("ROC-AUC", r.utility.roc_auc_synthetic))],
        columns=["table", "name", "value"],
    )
    _hbars(bottom_right, tstr, colors, "Fraud classifier trained on each, tested on held-out real rows")
    bottom_right.set_xlabel("score on real held-out rows (population-weighted)")
    _figure_legend(fig, colors)
    fig.suptitle(f"fraudlab evaluation: {', '.join(labels)} against real PaySim rows (seed {first.seed})")
    fig.supxlabel(_privacy_note(results), fontsize=9)
    return fig


def _privacy_note(results: Mapping[str, EvaluationResult]) -> str:
    """Privacy in words: its ideal (about 5%) is no score on a 0-1 'higher is better' axis."""
    lines = [
        f"{label}: {r.privacy.share_closer_than_holdout:.1%} of rows nearer a real training row than the 5% nearest "
        f"real held-out rows (about 5% expected); median DCR {r.privacy.dcr_median_synthetic:.4f} "
        f"(real held-out {r.privacy.dcr_median_holdout:.4f})"
        for label, r in results.items()
    ]
    return "\n".join(["Privacy, distance to closest record (DCR):", *lines])


# --------------------------------------------------------------------------- what a synthesizer learned


def plot_learned_marginals(model: TransactionSynthesizer, column: str = "amount") -> Figure:
    """The learned distribution of ``column`` in every segment, as quantile curves on a log scale.

    These are the synthesizer's own quantile tables, read back in currency
    units: how it will draw the column, per transaction type and fraud label.
    """
    probabilities = np.linspace(0.001, 0.999, 400)
    fig = new_figure(8.5, 4.2)
    ax = fig.add_subplot()
    for i, segment in enumerate(model.segments):
        if column not in segment.knots:
            continue
        values = segment.marginal_quantiles(column, probabilities)
        label = f"{segment.type}{' (fraud)' if segment.is_fraud else ''}"
        ax.plot(np.maximum(values, 1.0), probabilities, color=PALETTE[i % len(PALETTE)],
                linestyle="--" if segment.is_fraud else "-", label=label)
    ax.set_xscale("log")
    ax.set_xlabel(f"{column} ({_MONEY_UNIT}, log scale)")
    ax.set_ylabel("cumulative share of rows")
    ax.set_title(f"Learned distribution of {column} per segment (exact zeros are modelled separately)")
    ax.legend(fontsize=8, frameon=False)
    return fig


def plot_copula_correlation(segment: SegmentModel) -> Figure:
    """The copula's correlation matrix of one segment (latent columns: values, zero and mode indicators)."""
    corr = segment.correlation_frame()
    fig = new_figure(7.5, 6.0)
    ax = fig.add_subplot()
    sns.heatmap(corr, ax=ax, vmin=-1, vmax=1, cmap="vlag", annot=True, fmt=".2f", annot_kws={"fontsize": 7},
                square=True, cbar_kws={"shrink": 0.7, "label": "correlation of normal scores"})
    kind = f"{segment.type}{' fraud' if segment.is_fraud else ''}"
    ax.set_title(f"Gaussian copula of {kind} rows ({segment.rows:,} training rows)")
    return fig
