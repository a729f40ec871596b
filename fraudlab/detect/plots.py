"""Figures of a detector's evaluation, and of the live scoring job (throughput, latency); matplotlib is imported only
when a figure is drawn."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from fraudlab.detect.evaluate import DetectionReport
from fraudlab.evaluate.plots import PALETTE, new_figure
from fraudlab.exceptions import InvalidParameterError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["plot_ablation", "plot_real_comparison", "plot_realtime_throughput", "plot_scenarios",
           "plot_scoring_latency", "plot_threshold_curve", "rate_over_time", "report_figures", "scoring_latency_ms"]


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


# --------------------------------------------------------------------------- the live job (notebook 06)

#: Latencies within this many ms of zero are drawn on a linear scale (scoring can finish a few ms before the
#: acknowledgement reaches the producer, so small negatives are real), larger ones on a log scale.
_LATENCY_LINEAR_MS = 10.0
#: The latency axis's ticks (ms) and their labels; those beyond the data are left out.
_LATENCY_TICKS = {0: "0", 10: "10 ms", 100: "100 ms", 1_000: "1 s", 10_000: "10 s", 60_000: "1 min",
                  600_000: "10 min", 3_600_000: "1 h"}


def rate_over_time(times_ms: Sequence[float] | np.ndarray | pd.Series, *, origin_ms: float, interval_s: float = 1.0,
                   until_s: float | None = None) -> pd.DataFrame:
    """Events per second in consecutive ``interval_s`` windows from ``origin_ms`` (epoch ms), as
    :meth:`fraudlab.ingest.client.AckTimeline.throughput` counts acknowledgements.

    Columns ``seconds`` (each window's start, seconds since ``origin_ms``) and ``per_second``; windows run to the
    last event, or to ``until_s`` when that is later, so two series can share their windows. Events before
    ``origin_ms`` are refused.

    Raises:
        InvalidParameterError: ``interval_s`` is not positive, or an event precedes ``origin_ms``.
    """
    if not interval_s > 0:
        raise InvalidParameterError(f"Invalid interval_s {interval_s!r}: use a positive number of seconds.")
    offsets = (np.asarray(times_ms, dtype="float64") - origin_ms) / 1000.0
    if len(offsets) and offsets.min() < 0:
        raise InvalidParameterError(f"{int((offsets < 0).sum()):,} events precede origin_ms={origin_ms!r}: "
                                    "use the earliest time as the origin.")
    last = max(float(offsets.max()) if len(offsets) else -1.0, -1.0 if until_s is None else until_s)
    windows = int(np.floor(last / interval_s)) + 1 if last >= 0 else 0
    counts = np.bincount(np.floor(offsets / interval_s).astype(int), minlength=windows)[:windows]
    return pd.DataFrame({"seconds": np.arange(windows) * interval_s, "per_second": counts / interval_s})


def scoring_latency_ms(scored: pd.DataFrame, acknowledged_ms: pd.Series, *,
                       after_first_score: bool = False) -> pd.Series:
    """Per scored transaction (index ``transaction_id``), from the producer's acknowledgement to the job's
    ``scored_at``, in ms; transactions without an acknowledgement are left out.

    ``acknowledged_ms`` is the epoch ms of each acknowledgement by transaction id (what
    :class:`fraudlab.demo.DetectionDemo` holds). With ``after_first_score`` only the transactions acknowledged
    once the job had scored its first record: their latency holds no wait for the job's Python workers to open.
    """
    ids = scored["transaction_id"].to_numpy()
    acknowledged = acknowledged_ms.reindex(ids).to_numpy(dtype="float64")
    latency = pd.Series(scored["scored_at"].to_numpy(dtype="float64") - acknowledged, index=ids, name="latency_ms")
    if after_first_score:
        latency = latency[acknowledged >= float(scored["scored_at"].min())]
    return latency.dropna()


def plot_realtime_throughput(scored: pd.DataFrame, acknowledged_ms: pd.Series, *, interval_s: float = 1.0) -> Figure:
    """Acknowledged and scored transactions per second, and so far, from the first acknowledgement on.

    The horizontal gap between the totals is the job's lag (``scored_at`` is when the job scored a record, before
    its checkpoint commits it): at the start, its Python workers opening with the first records; later, how fast it
    works through what it has read.
    """
    acknowledged = acknowledged_ms.to_numpy(dtype="float64")
    scored_at = scored["scored_at"].to_numpy(dtype="float64")
    if not len(acknowledged):
        raise InvalidParameterError("No acknowledged transaction to plot: was anything produced?")
    origin = float(min(acknowledged.min(), scored_at.min() if len(scored_at) else np.inf))
    until = (max(acknowledged.max(), scored_at.max() if len(scored_at) else -np.inf) - origin) / 1000.0
    fig = new_figure(11.0, 3.8)
    rate_ax, total_ax = fig.subplots(1, 2)
    for label, times, color in (("acknowledged (Kafka confirmed)", acknowledged, PALETTE[0]),
                                ("scored by the job", scored_at, PALETTE[2])):
        rates = rate_over_time(times, origin_ms=origin, interval_s=interval_s, until_s=until)
        rate_ax.step(rates["seconds"], rates["per_second"], where="post", color=color, label=label)
        seconds = np.sort((times - origin) / 1000.0)
        total_ax.step(seconds, np.arange(1, len(seconds) + 1), where="post", color=color, label=label)
    if len(scored_at):
        first = (scored_at.min() - origin) / 1000.0
        for ax in (rate_ax, total_ax):
            ax.axvline(first, color=PALETTE[3], linestyle=":")
        total_ax.annotate(f"first record scored at {first:.0f} s", (first, 0.97), xycoords=("data", "axes fraction"),
                          fontsize=8, rotation=90, ha="right", va="top")
    rate_ax.set_ylabel(f"transactions per second ({interval_s:g} s windows)")
    rate_ax.set_title("Throughput: acknowledged and scored")
    total_ax.set_ylabel("transactions")
    total_ax.set_title("So far: the job's lag behind ingestion")
    for ax in (rate_ax, total_ax):
        ax.set_xlabel("seconds since the first acknowledgement")
        ax.set_xlim(left=0)
    # One legend above both panels: inside either one it would hide the curves or the marker's label.
    fig.legend(handles=rate_ax.get_lines()[:2], loc="outside upper center", ncols=2, fontsize=8, frameon=False)
    return fig


def _ecdf(ax: Axes, values: np.ndarray, label: str, color: str) -> None:
    """One empirical CDF as a step curve, its count and percentiles in the legend."""
    ordered = np.sort(values)
    ax.step(ordered, np.arange(1, len(ordered) + 1) / len(ordered), where="post", color=color,
            label=f"{label}: {len(ordered):,}, p50 {np.percentile(ordered, 50):,.0f} ms, "
                  f"p99 {np.percentile(ordered, 99):,.0f} ms")


def plot_scoring_latency(scored: pd.DataFrame, acknowledged_ms: pd.Series) -> Figure:
    """The distribution (CDF) of acknowledgement -> scored record, for every record, for those acknowledged after
    the job scored its first record (no warm-up in them), and for the alerts.
    """
    latency = scoring_latency_ms(scored, acknowledged_ms)
    if not len(latency):
        raise InvalidParameterError("No scored transaction was acknowledged: nothing to plot.")
    alerts = scored.loc[scored["alert"].to_numpy(dtype=bool), "transaction_id"]
    fig = new_figure(7.5, 3.8)
    ax = fig.subplots()
    _ecdf(ax, latency.to_numpy(), "all scored records", PALETTE[0])
    warm = scoring_latency_ms(scored, acknowledged_ms, after_first_score=True).to_numpy()
    if len(warm):
        _ecdf(ax, warm, "acknowledged after the first score", PALETTE[2])
    flagged = latency.reindex(alerts).dropna().to_numpy()
    if len(flagged):
        _ecdf(ax, flagged, "alerts", PALETTE[3])
    ax.set_xscale("symlog", linthresh=_LATENCY_LINEAR_MS)
    ticks = [tick for tick in _LATENCY_TICKS if tick <= max(float(latency.max()), 1_000.0)]
    ax.set_xticks(ticks, [_LATENCY_TICKS[tick] for tick in ticks])
    ax.set_xlim(min(0.0, float(latency.min())), None)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(f"acknowledgement -> scored record (log scale beyond {_LATENCY_LINEAR_MS:g} ms)")
    ax.set_ylabel("share of records")
    ax.set_title("From the producer's acknowledgement to the job's score")
    ax.legend(fontsize=8, frameon=False, loc="upper left")
    return fig
