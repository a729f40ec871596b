"""Figures of a detector's evaluation; matplotlib is imported only when a figure is drawn."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fraudlab.detect.evaluate import DetectionReport
from fraudlab.evaluate.plots import new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["plot_ablation", "plot_real_comparison", "plot_scenarios", "plot_threshold_curve", "report_figures"]


def plot_real_comparison(report: DetectionReport) -> Figure:
    """PR-AUC on real held-out rows: trained on synthetic (TSTR) beside trained on real (TRTR)."""
    fig = new_figure(6.5, 3.2)
    ax = fig.subplots()
    table = report.real.pivot(index="features", columns="trained on", values="pr_auc")
    table.plot.bar(ax=ax, rot=0, color=["#4c72b0", "#dd8452"])
    ax.set_ylim(max(0.0, float(table.min().min()) - 0.05), 1.0)
    ax.set_ylabel("PR-AUC (population-weighted)")
    ax.set_xlabel("")
    ax.set_title("Real held-out PaySim rows, scored cold")
    for container in ax.containers:
        ax.bar_label(container, fmt="%.4f", fontsize=8)
    return fig


def plot_threshold_curve(report: DetectionReport) -> Figure:
    """Precision and recall against the share of traffic flagged, with the chosen threshold and the budget."""
    fig = new_figure(6.5, 3.2)
    ax = fig.subplots()
    curve = report.curve
    ax.plot(curve["flagged_share"] * 100, curve["precision"], label="precision")
    ax.plot(curve["flagged_share"] * 100, curve["recall"], label="recall")
    ax.axvline(report.threshold.budget * 100, color="grey", linestyle=":", label="alert budget")
    ax.axvline(report.threshold.flagged_share * 100, color="black", linestyle="--",
               label=f"threshold {report.threshold.value:.3f}")
    ax.set_xscale("symlog", linthresh=0.01)
    ax.set_xlabel("traffic flagged (%)")
    ax.set_ylim(0, 1.02)
    ax.set_title("Held-out stream: what each threshold buys")
    ax.legend(fontsize=8, loc="lower right")
    return fig


def plot_scenarios(report: DetectionReport) -> Figure:
    """Share of each scenario's rows flagged at the alert threshold: recall for frauds, false alarms otherwise."""
    fig = new_figure(6.5, 3.2)
    ax = fig.subplots()
    table = report.scenarios
    colors = ["#c44e52" if fraud else "#55a868" for fraud in table["fraud"]]
    ax.barh(table.index, table["flagged_share"], color=colors)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.05)
    ax.set_xlabel("share of the scenario's rows alerted (red: fraud, so recall; green: legitimate)")
    for y, value in enumerate(table["flagged_share"]):
        ax.text(value + 0.01, y, f"{value:.3f}", va="center", fontsize=8)
    ax.set_title("Held-out stream, per scenario, at the alert threshold")
    return fig


def plot_ablation(report: DetectionReport) -> Figure:
    """PR-AUC on the held-out stream and on real rows when one feature family is left out."""
    fig = new_figure(6.5, 3.4)
    ax = fig.subplots()
    if report.ablation is None:
        ax.text(0.5, 0.5, "no ablation in this run (TrainingSettings(ablation=True))", ha="center")
        ax.set_axis_off()
        return fig
    report.ablation[["stream_pr_auc", "real_pr_auc"]].plot.barh(ax=ax, color=["#8172b3", "#4c72b0"])
    ax.invert_yaxis()
    ax.set_xlabel("PR-AUC")
    ax.set_ylabel("family left out")
    ax.set_title("Ablation: what each feature family adds")
    ax.legend(["held-out stream", "real rows"], fontsize=8, loc="lower left")
    return fig


def report_figures(report: DetectionReport) -> dict[str, Figure]:
    """Every figure of a report, by file stem."""
    return {"real_comparison": plot_real_comparison(report), "threshold_curve": plot_threshold_curve(report),
            "scenarios": plot_scenarios(report), "ablation": plot_ablation(report)}
