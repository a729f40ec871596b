"""Figures of a live producer run: throughput over time and acknowledgement latency."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from fraudlab.evaluate.plots import PALETTE, new_figure

if TYPE_CHECKING:
    from fraudlab.ingest.client import ProduceSummary

__all__ = ["plot_ingestion"]


def plot_ingestion(throughput: pd.DataFrame, summary: ProduceSummary) -> Figure:
    """Throughput over time (from :meth:`~fraudlab.ingest.client.AckTimeline.throughput`) and the latency histogram."""
    fig = new_figure(11.0, 3.8)
    rate_ax, latency_ax = fig.subplots(1, 2)
    width = float(throughput["seconds"].diff().min()) if len(throughput) > 1 else 1.0
    rate_ax.bar(throughput["seconds"], throughput["transactions_per_second"], width=width * 0.9, align="edge",
                color=PALETTE[0])
    rate_ax.axhline(summary.rate, color=PALETTE[1], linestyle="--", label=f"mean {summary.rate:,.0f}/s")
    rate_ax.set_xlabel("seconds since the producer started")
    rate_ax.set_ylabel("transactions per second")
    rate_ax.set_title("Throughput: Kafka-confirmed transactions per second")
    rate_ax.legend(fontsize=8, frameon=False)
    if summary.latency_bins_ms:
        edges, counts = (np.asarray(values, dtype=float) for values in zip(*summary.latency_bins_ms, strict=True))
        bins = np.geomspace(edges.min() / 1.5, edges.max() * 1.5, 30)
        latency_ax.hist(edges, bins=bins, weights=counts, color=PALETTE[2])
    latency_ax.set_xscale("log")
    for value, name in ((summary.p50_ms, "p50"), (summary.p99_ms, "p99")):
        latency_ax.axvline(value, color=PALETTE[3], linestyle=":")
        latency_ax.annotate(f"{name} {value:.1f} ms", (value, 0.97), xycoords=("data", "axes fraction"),
                            fontsize=8, rotation=90, ha="right", va="top")
    latency_ax.set_xlabel("acknowledgement latency (ms, log scale)")
    latency_ax.set_ylabel("transactions")
    latency_ax.set_title("From send to Kafka's acknowledgement")
    return fig
