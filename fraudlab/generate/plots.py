"""Figures of account streams; matplotlib is imported only when a figure is drawn."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from fraudlab.enrich.geoip import AddressSpace, ipv4_integers
from fraudlab.exceptions import InvalidParameterError
from fraudlab.generate.accounts import SCENARIOS, locate_places

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["plot_account_timeline", "takeover_victim"]


def takeover_victim(stream: pd.DataFrame, rows: int = 60) -> int:
    """The ``user_id`` of a takeover victim with about ``rows`` transactions: enough history, still readable."""
    transfers = stream[(stream["scenario"] == "account_takeover") & (stream["type"] == "TRANSFER")]
    if transfers.empty:
        raise InvalidParameterError("The stream has no account_takeover rows: generate it with a takeover rate > 0.")
    activity = stream["user_id"].value_counts()
    victims = activity[transfers["user_id"].unique()]
    return int((victims - rows).abs().idxmin())


def _ip_places(stream: pd.DataFrame, space: AddressSpace) -> pd.Series:
    """Country of each row's address, or "hosting" for a datacenter range, "?" outside every network."""
    addresses = ipv4_integers(stream["ip_address"]).astype(np.int64)
    first, last = space.hosting["first"].to_numpy(np.int64), space.hosting["last"].to_numpy(np.int64)
    index = np.searchsorted(first, addresses, side="right") - 1
    hosting = (index >= 0) & (addresses <= last[np.maximum(index, 0)])
    places = locate_places(space, addresses)
    countries = np.where(places >= 0, space.cities["country_code"].to_numpy(str)[np.maximum(places, 0)], "?")
    return pd.Series(np.where(hosting, "hosting", countries), index=stream.index)


def plot_account_timeline(stream: pd.DataFrame, user_id: int, space: AddressSpace) -> Figure:
    """One account's transactions over event time: amount (log scale) coloured by scenario, and a dashed line with
    the new country wherever the address's country changes from one transaction to the next."""
    import matplotlib.pyplot as plt

    rows = stream[stream["user_id"] == user_id]
    if rows.empty:
        raise InvalidParameterError(f"No transaction of user_id={user_id} in the stream.")
    when = pd.to_datetime(rows["timestamp"], unit="ms", utc=True)
    where = _ip_places(rows, space)
    figure, axes = plt.subplots(figsize=(9, 3.6), layout="constrained")
    colours = plt.get_cmap("tab10")
    for index, name in enumerate(["normal", *SCENARIOS]):
        chosen = (rows["scenario"] == name).to_numpy()
        if chosen.any():
            axes.scatter(when[chosen], rows["amount"][chosen], s=14 if name == "normal" else 30,
                         color=colours(index), label=f"{name} ({int(chosen.sum())})", zorder=3 if index else 2)
    home = where.mode().iloc[0]
    countries = where.to_numpy()
    changes = np.flatnonzero(countries != np.concatenate([[home], countries[:-1]]))
    for position in changes:
        axes.axvline(when.iloc[position], color="grey", linestyle="--", linewidth=0.7)
        axes.annotate(where.iloc[position], (when.iloc[position], 1.0), xycoords=("data", "axes fraction"),
                      rotation=90, va="top", ha="right", fontsize=7, color="grey")
    axes.set_yscale("log")
    axes.set_ylabel("amount")
    axes.set_title(f"Account C{user_id}: {len(rows)} transactions, home {home}; dashed: IP country "
                   "changes", fontsize=10)
    axes.legend(fontsize=7, loc="lower left")
    return figure
