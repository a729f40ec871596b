"""The one feature definition of the detector: declared once, executed three ways that agree by construction.

A feature is either a *row* feature (a function of one transaction: amount, type, PaySim's balance errors, ...) or
built from *stateful* aggregates declared here as data:

* :class:`Window` -- an event-time window over the transactions of a key: count, sum, max or distinct count of a
  column in ``[t - span, t]`` (both ends included, so transactions at the same instant see each other, as in
  SQL's ``RANGE`` frames). ``events_key`` lets the events be keyed differently from the transaction asking: "money
  this account *received* in the last hour" is a window over transfers keyed by their destination, read by the
  account's own transactions.
* :class:`Previous` -- a value of the key's previous transaction (its time, its place), as SQL's ``LAG``.

Three executors run the declarations and then the same row-level :func:`finish`:

* :func:`compute_features` -- vectorised over a table (training; one sort per key, ``searchsorted`` windows);
* :class:`StreamingFeatures` -- one record at a time, releasing records in event-time order once the watermark
  (the latest event time seen minus :data:`LATENESS_MS`) passes them, the way Flink's event-time operators do, so a
  record arriving out of order within the lateness gets the features it would have had in order;
* :func:`flink_sql` -- the declarations as Flink SQL ``OVER`` aggregations, so the streaming job's per-key state
  lives in the JVM (the Flink job runs these; its parity test lands with it).

Money is summed in integer cents, so every executor's sums are exact and equal, whatever the order of addition.
Transactions without history (real PaySim rows, copula rows) get :func:`cold_features`: the values of an account's
first transaction. Pure numpy / pandas: the Flink venv imports this module as it is.
"""

from __future__ import annotations

import hashlib
import heapq
import json
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd

from fraudlab.exceptions import DataValidationError, InvalidParameterError

__all__ = [
    "ENRICHMENT_COLUMNS",
    "FAMILIES",
    "FEATURES",
    "INPUT_COLUMNS",
    "LATENESS_MS",
    "PREVIOUS",
    "RAW_COLUMNS",
    "WINDOWS",
    "Previous",
    "StreamingFeatures",
    "Window",
    "cold_features",
    "compute_features",
    "feature_inputs",
    "finish",
    "flink_sql",
    "schema_hash",
]

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
#: How far "new destination / IP / country / ASN" looks back: the account's memory of what it has seen.
MEMORY_MS = 30 * DAY_MS
#: Bounded out-of-orderness of the stream: a record up to this much older than the newest one seen is still in time.
LATENESS_MS = 5_000
#: Below this gap the implied travel speed is computed over one minute: clocks and GeoIP are not finer than that.
MIN_TRAVEL_SECONDS = 60.0
#: The value of a "since the previous transaction" feature when there is none (or no location to compare).
NO_PREVIOUS = -1.0
TRANSACTION_TYPES: tuple[str, ...] = ("CASH_IN", "CASH_OUT", "DEBIT", "PAYMENT", "TRANSFER")
EARTH_RADIUS_KM = 6371.0088


Aggregate = Literal["count", "sum", "max", "distinct"]


@dataclass(frozen=True)
class Window:
    """An aggregate over the events of one key in the event-time window ``[t - span_ms, t]``.

    ``key`` partitions the transactions asking; ``events_key`` (default: the same) the transactions counted, so
    an event ``e`` is in the window of transaction ``q`` when ``e[events_key] == q[key]``. ``value`` is the column
    aggregated (None for ``count``); a ``distinct`` window counts distinct ``value``s.
    """

    name: str
    key: tuple[str, ...]
    span_ms: int
    aggregate: Aggregate
    value: str | None = None
    events_key: tuple[str, ...] | None = None

    @property
    def event_key(self) -> tuple[str, ...]:
        return self.events_key or self.key


@dataclass(frozen=True)
class Previous:
    """``value`` of the previous transaction of the same ``key`` (NaN for a key's first), as SQL's ``LAG``."""

    name: str
    key: tuple[str, ...]
    value: str


_ACCOUNT = ("user_id",)
WINDOWS: tuple[Window, ...] = (
    Window("acct_count_1h", _ACCOUNT, HOUR_MS, "count"),
    Window("acct_cents_1h", _ACCOUNT, HOUR_MS, "sum", "amount_cents"),
    Window("acct_max_1h", _ACCOUNT, HOUR_MS, "max", "amount"),
    Window("acct_count_24h", _ACCOUNT, DAY_MS, "count"),
    Window("acct_cents_24h", _ACCOUNT, DAY_MS, "sum", "amount_cents"),
    Window("acct_max_24h", _ACCOUNT, DAY_MS, "max", "amount"),
    Window("acct_dest_seen", ("user_id", "dest_user_id"), MEMORY_MS, "count"),
    Window("acct_ip_seen", ("user_id", "ip_address"), MEMORY_MS, "count"),
    Window("acct_country_seen", ("user_id", "ip_country"), MEMORY_MS, "count"),
    Window("acct_asn_seen", ("user_id", "ip_asn"), MEMORY_MS, "count"),
    Window("dest_count_1h", ("dest_user_id",), HOUR_MS, "count"),
    Window("dest_cents_1h", ("dest_user_id",), HOUR_MS, "sum", "amount_cents"),
    Window("acct_received_cents_1h", _ACCOUNT, HOUR_MS, "sum", "amount_cents", events_key=("dest_user_id",)),
    Window("ip_accounts_1h", ("ip_address",), HOUR_MS, "distinct", "user_id"),
)
PREVIOUS: tuple[Previous, ...] = (
    Previous("prev_timestamp", _ACCOUNT, "timestamp"),
    Previous("prev_latitude", _ACCOUNT, "ip_latitude"),
    Previous("prev_longitude", _ACCOUNT, "ip_longitude"),
)
#: What the executors hand to :func:`finish`: one column per declaration.
RAW_COLUMNS: tuple[str, ...] = tuple(w.name for w in WINDOWS) + tuple(p.name for p in PREVIOUS)

#: The feature inputs of a transaction; :func:`feature_inputs` builds them from any canonical table.
INPUT_COLUMNS: tuple[str, ...] = (
    "transaction_id", "timestamp", "type", "amount", "old_balance_orig", "new_balance_orig", "old_balance_dest",
    "new_balance_dest", "user_id", "dest_user_id", "dest_is_merchant", "ip_address",
)
#: GeoIP enrichment the stateful features read (missing address: "", NaN, -1, False).
ENRICHMENT_COLUMNS: dict[str, str] = {
    "ip_country": "object", "ip_latitude": "float64", "ip_longitude": "float64", "ip_asn": "int64",
    "ip_hosting": "bool",
}

#: The model's inputs by family (the ablation drops one family at a time), in the order the model reads them.
FAMILIES: dict[str, tuple[str, ...]] = {
    "amount_type": ("amount", *(f"type_{t}" for t in TRANSACTION_TYPES), "dest_is_merchant"),
    "balance_errors": ("error_balance_orig", "error_balance_dest"),
    "balances": ("old_balance_orig", "new_balance_orig", "old_balance_dest", "new_balance_dest",
                 "orig_zero_before", "orig_zero_after", "dest_zero_before", "dest_zero_after",
                 "amount_to_orig_balance", "amount_to_dest_balance"),
    "account_velocity": ("acct_count_1h", "acct_sum_1h", "acct_max_1h", "acct_count_24h", "acct_sum_24h",
                         "acct_max_24h", "acct_amount_to_max_24h", "seconds_since_previous"),
    "novelty": ("new_destination", "new_ip", "new_country", "new_asn"),
    "travel": ("km_since_previous", "kmh_since_previous", "ip_hosting"),
    "destination": ("dest_count_1h", "dest_sum_1h", "received_1h", "cashout_of_received"),
    "ip": ("ip_accounts_1h",),
}
FEATURES: tuple[str, ...] = tuple(name for names in FAMILIES.values() for name in names)
#: Bump when :func:`finish` changes what a feature means without changing a name or a declaration.
_FINISH_VERSION = 1


def schema_hash() -> str:
    """SHA-256 of everything that defines the features: a model trained on other features is refused at load."""
    spec = {
        "windows": [asdict(w) for w in WINDOWS],
        "previous": [asdict(p) for p in PREVIOUS],
        "features": list(FEATURES),
        "inputs": list(INPUT_COLUMNS),
        "constants": [MEMORY_MS, LATENESS_MS, MIN_TRAVEL_SECONDS, NO_PREVIOUS, _FINISH_VERSION],
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


# --------------------------------------------------------------------------- inputs


class AddressLookup(Protocol):
    """What the enrichment needs of :class:`fraudlab.enrich.geoip.GeoIP` (kept abstract: no import of it here)."""

    def lookup_many(self, addresses: pd.Series) -> pd.DataFrame: ...


def _account_numbers(names: pd.Series) -> np.ndarray:
    """PaySim names are a letter and digits ("C1231006815"): the digits are the account; others get negative codes."""
    digits = pd.to_numeric(names.astype(str).str[1:], errors="coerce")
    numbers = digits.to_numpy(dtype="float64")
    unparsed = np.isnan(numbers)
    if unparsed.any():
        codes, _ = pd.factorize(names[unparsed])
        numbers[unparsed] = -1.0 - codes
    return numbers.astype("int64")


def _identity(table: pd.DataFrame, column: str, name_column: str) -> np.ndarray:
    if column in table.columns:
        return table[column].to_numpy(dtype="int64")
    if name_column in table.columns:
        return _account_numbers(table[name_column])
    raise DataValidationError("feature inputs", [f"missing column {column!r} (or {name_column!r} to derive it from)"])


def _enrichment(table: pd.DataFrame, addresses: pd.Series, geoip: AddressLookup | None) -> dict[str, np.ndarray]:
    """GeoIP columns: from ``geoip``, else from the table (already enriched), else unknown when no address is set."""
    present = [column for column in ENRICHMENT_COLUMNS if column in table.columns]
    if geoip is None and len(present) == len(ENRICHMENT_COLUMNS):
        return {column: table[column].to_numpy(dtype=dtype) for column, dtype in ENRICHMENT_COLUMNS.items()}
    n = len(addresses)
    if geoip is None:
        known = addresses != ""
        if known.any():
            raise InvalidParameterError(
                f"feature inputs: {int(known.sum()):,} row(s) carry an ip_address (first {addresses[known].iloc[0]!r}) "
                "but no GeoIP database was given: pass geoip=GeoIP.open() (after `fraudlab geoip fetch`)")
        return {"ip_country": np.full(n, "", dtype=object), "ip_latitude": np.full(n, np.nan),
                "ip_longitude": np.full(n, np.nan), "ip_asn": np.full(n, -1, dtype="int64"),
                "ip_hosting": np.zeros(n, dtype=bool)}
    found = geoip.lookup_many(addresses.reset_index(drop=True))
    return {
        "ip_country": found["country_code"].fillna("").to_numpy(dtype=object),
        "ip_latitude": found["latitude"].to_numpy(dtype="float64", na_value=np.nan),
        "ip_longitude": found["longitude"].to_numpy(dtype="float64", na_value=np.nan),
        "ip_asn": found["asn"].fillna(-1).to_numpy(dtype="int64"),
        "ip_hosting": found["is_hosting"].fillna(False).to_numpy(dtype=bool),
    }


def feature_inputs(table: pd.DataFrame, *, geoip: AddressLookup | None = None) -> pd.DataFrame:
    """The feature inputs of every row of a canonical table, an account stream or a decoded wire batch.

    Columns a table may lack are derived: ``transaction_id`` from the row label, ``timestamp`` from PaySim's hourly
    ``step``, ``user_id`` / ``dest_user_id`` from the digits of ``name_orig`` / ``name_dest``, ``dest_is_merchant``
    from a name starting with "M", an absent ``ip_address`` as "" (no address). Addresses are enriched with
    ``geoip`` (or taken from the table's own :data:`ENRICHMENT_COLUMNS`). The row labels are kept.

    Raises:
        DataValidationError: a money or type column is missing (every missing one is named).
        InvalidParameterError: the rows carry addresses but no GeoIP database (nor enrichment columns) is given.
    """
    needed = ("type", "amount", "old_balance_orig", "new_balance_orig", "old_balance_dest", "new_balance_dest")
    missing = [column for column in needed if column not in table.columns]
    if missing:
        raise DataValidationError("feature inputs", [f"missing column {column!r}" for column in missing])
    if "timestamp" in table.columns:
        timestamps = table["timestamp"].to_numpy(dtype="int64")
    elif "step" in table.columns:
        timestamps = table["step"].to_numpy(dtype="int64") * HOUR_MS
    else:
        raise DataValidationError("feature inputs", ["missing column 'timestamp' (or 'step' to derive it from)"])
    if "dest_is_merchant" in table.columns:
        merchant = table["dest_is_merchant"].to_numpy(dtype=bool)
    elif "name_dest" in table.columns:
        merchant = table["name_dest"].astype(str).str.startswith("M").to_numpy()
    else:
        raise DataValidationError("feature inputs", ["missing column 'dest_is_merchant' (or 'name_dest')"])
    addresses = (table["ip_address"].fillna("").astype(str) if "ip_address" in table.columns
                 else pd.Series("", index=table.index))
    ids = (table["transaction_id"].astype(str).to_numpy(dtype=object) if "transaction_id" in table.columns
           else table.index.astype(str).to_numpy(dtype=object))
    amount = table["amount"].to_numpy(dtype="float64")
    inputs = pd.DataFrame({
        "transaction_id": ids,
        "timestamp": timestamps,
        "type": pd.Categorical(table["type"].astype(str).to_numpy(), categories=list(TRANSACTION_TYPES)),
        **{column: table[column].to_numpy(dtype="float64") for column in needed[1:]},
        "user_id": _identity(table, "user_id", "name_orig"),
        "dest_user_id": _identity(table, "dest_user_id", "name_dest"),
        "dest_is_merchant": merchant,
        "ip_address": addresses.to_numpy(dtype=object),
        **_enrichment(table, addresses, geoip),
        "amount_cents": np.rint(amount * 100.0).astype("int64"),
    }, index=table.index)
    return inputs


# --------------------------------------------------------------------------- the row-level finish (all executors)


def _haversine_km(lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray) -> np.ndarray:
    lat1, lon1, lat2, lon2 = (np.radians(v) for v in (lat1, lon1, lat2, lon2))
    a = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def finish(inputs: pd.DataFrame, raw: pd.DataFrame) -> pd.DataFrame:
    """The model's features (:data:`FEATURES`, float64) from the inputs and the executors' raw aggregates.

    Every executor ends here, so a feature means the same thing in training, in a notebook and in the Flink job.
    """
    col = {name: inputs[name].to_numpy() for name in inputs.columns}
    agg = {name: raw[name].to_numpy(dtype="float64") for name in RAW_COLUMNS}
    amount = col["amount"].astype("float64")
    kind = inputs["type"].astype(str).to_numpy()
    out: dict[str, np.ndarray] = {"amount": amount}
    for name in TRANSACTION_TYPES:
        out[f"type_{name}"] = (kind == name).astype("float64")
    out["dest_is_merchant"] = col["dest_is_merchant"].astype("float64")
    old_orig, new_orig = col["old_balance_orig"], col["new_balance_orig"]
    old_dest, new_dest = col["old_balance_dest"], col["new_balance_dest"]
    out["error_balance_orig"] = new_orig + amount - old_orig
    out["error_balance_dest"] = old_dest + amount - new_dest
    out |= {"old_balance_orig": old_orig, "new_balance_orig": new_orig, "old_balance_dest": old_dest,
            "new_balance_dest": new_dest}
    out["orig_zero_before"] = (old_orig == 0).astype("float64")
    out["orig_zero_after"] = (new_orig == 0).astype("float64")
    out["dest_zero_before"] = (old_dest == 0).astype("float64")
    out["dest_zero_after"] = (new_dest == 0).astype("float64")
    out["amount_to_orig_balance"] = amount / (old_orig + 1.0)
    out["amount_to_dest_balance"] = amount / (old_dest + 1.0)
    for span in ("1h", "24h"):
        out[f"acct_count_{span}"] = agg[f"acct_count_{span}"]
        out[f"acct_sum_{span}"] = agg[f"acct_cents_{span}"] / 100.0
        out[f"acct_max_{span}"] = agg[f"acct_max_{span}"]
    out["acct_amount_to_max_24h"] = amount / np.maximum(agg["acct_max_24h"], 0.01)
    has_previous = ~np.isnan(agg["prev_timestamp"])
    seconds = np.where(has_previous, (col["timestamp"] - np.nan_to_num(agg["prev_timestamp"])) / 1000.0, NO_PREVIOUS)
    out["seconds_since_previous"] = seconds
    country, asn, address = col["ip_country"], col["ip_asn"], col["ip_address"]
    out["new_destination"] = (agg["acct_dest_seen"] == 1).astype("float64")
    out["new_ip"] = ((agg["acct_ip_seen"] == 1) & (address != "")).astype("float64")
    out["new_country"] = ((agg["acct_country_seen"] == 1) & (country != "")).astype("float64")
    out["new_asn"] = ((agg["acct_asn_seen"] == 1) & (asn >= 0)).astype("float64")
    lat, lon = col["ip_latitude"].astype("float64"), col["ip_longitude"].astype("float64")
    located = has_previous & ~np.isnan(lat) & ~np.isnan(agg["prev_latitude"])
    with np.errstate(invalid="ignore"):
        km = np.where(located, _haversine_km(agg["prev_latitude"], agg["prev_longitude"], lat, lon), NO_PREVIOUS)
    out["km_since_previous"] = km
    out["kmh_since_previous"] = np.where(located, km / np.maximum(seconds, MIN_TRAVEL_SECONDS) * 3600.0, NO_PREVIOUS)
    out["ip_hosting"] = col["ip_hosting"].astype("float64")
    out["dest_count_1h"] = agg["dest_count_1h"]
    out["dest_sum_1h"] = agg["dest_cents_1h"] / 100.0
    received = agg["acct_received_cents_1h"] / 100.0
    out["received_1h"] = received
    cashing = np.isin(kind, ("CASH_OUT", "TRANSFER")) & (received > 0)
    out["cashout_of_received"] = np.where(cashing, amount / np.where(received > 0, received, 1.0), 0.0)
    out["ip_accounts_1h"] = np.where(address != "", agg["ip_accounts_1h"], 0.0)
    return pd.DataFrame({name: out[name] for name in FEATURES}, index=inputs.index)


# --------------------------------------------------------------------------- executor 1: a table (vectorised)


def _window_shapes() -> dict[tuple[Any, ...], list[Window]]:
    """The windows by (key, events key, span): what one sort (table) or one ``OVER`` level (Flink SQL) serves."""
    shapes: dict[tuple[Any, ...], list[Window]] = {}
    for window in WINDOWS:
        shapes.setdefault((window.key, window.events_key, window.span_ms), []).append(window)
    return shapes


def _previous_by_key() -> dict[tuple[str, ...], list[Previous]]:
    """The previous values by key: one sort (table) or one ``ROWS`` level (Flink SQL) each."""
    by_key: dict[tuple[str, ...], list[Previous]] = {}
    for previous in PREVIOUS:
        by_key.setdefault(previous.key, []).append(previous)
    return by_key


class _KeyCodes:
    """Integer codes of the keys of one table, each column factorised once however many windows use it.

    Multi-column keys combine the columns' codes arithmetically (a MultiIndex would build millions of tuples); a
    window whose events are keyed by another column (``dest_user_id`` for ``user_id``) gets both in one space.
    """

    def __init__(self, inputs: pd.DataFrame) -> None:
        self.inputs = inputs
        self._columns: dict[str, tuple[np.ndarray, int]] = {}

    def _column(self, column: str) -> tuple[np.ndarray, int]:
        if column not in self._columns:
            codes, uniques = pd.factorize(self.inputs[column].to_numpy())
            self._columns[column] = (codes.astype("int64"), len(uniques))
        return self._columns[column]

    def of(self, columns: tuple[str, ...]) -> np.ndarray:
        codes = np.zeros(len(self.inputs), dtype="int64")
        for column in columns:
            column_codes, size = self._column(column)
            codes = pd.factorize(codes * size + column_codes)[0].astype("int64") if len(columns) > 1 else column_codes
        return codes

    def pair(self, asking: str, counted: str) -> tuple[np.ndarray, np.ndarray]:
        values = np.concatenate([self.inputs[asking].to_numpy(), self.inputs[counted].to_numpy()])
        codes = pd.factorize(values)[0].astype("int64")
        return codes[:len(self.inputs)], codes[len(self.inputs):]


def _expand(start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every position of every window ``[start, end)``, concatenated, and where each window's run begins."""
    lengths = end - start
    offsets = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    flat = np.arange(int(lengths.sum())) - np.repeat(offsets - start, lengths)
    return flat, offsets


@dataclass(frozen=True)
class _Bounds:
    """Where each row's window lies in the events sorted by (key, time, input position): ``[start, end)``."""

    order: np.ndarray
    start: np.ndarray
    end: np.ndarray


def _bounds(inputs: pd.DataFrame, keys: _KeyCodes, windows: list[Window]) -> dict[int, _Bounds]:
    """Window bounds of every row for each span of windows sharing their keys: one sort, two searches per span.

    Events and questions are encoded as one integer, ``key code * stride + time``, so a window is a range of that
    sorted array; queries are searched in sorted order, which lets numpy walk the events once.
    """
    query_codes, event_codes = _window_codes(keys, windows[0])
    ts = inputs["timestamp"].to_numpy(dtype="int64")
    widest = max(window.span_ms for window in windows)
    base = int(ts.min()) if len(ts) else 0
    stride = (int(ts.max()) - base if len(ts) else 0) + widest + 2
    if (max(int(query_codes.max(initial=0)), int(event_codes.max(initial=0))) + 1) * stride >= 2**62:
        raise InvalidParameterError(f"window {windows[0].name!r}: too many keys over too long a span for one table")
    shifted = ts - base + widest
    order = np.argsort(event_codes * stride + shifted, kind="stable")
    events = (event_codes * stride + shifted)[order]
    latest = query_codes * stride + shifted
    asking = order if windows[0].events_key is None else np.argsort(latest, kind="stable")
    latest_sorted = latest[asking]
    end = np.empty(len(ts), dtype="int64")
    end[asking] = np.searchsorted(events, latest_sorted, side="right")
    bounds = {}
    for span in sorted({window.span_ms for window in windows}):
        start = np.empty(len(ts), dtype="int64")
        start[asking] = np.searchsorted(events, latest_sorted - span, side="left")
        bounds[span] = _Bounds(order, start, end)
    return bounds


def _aggregate(inputs: pd.DataFrame, window: Window, bounds: _Bounds) -> np.ndarray:
    """One window's aggregate for every row, from its bounds: counts and exact integer sums by differences."""
    start, end = bounds.start, bounds.end
    if window.aggregate == "count":
        return (end - start).astype("float64")
    values = inputs[window.value].to_numpy()[bounds.order]
    if window.aggregate == "sum":
        cumulative = np.concatenate(([0], np.cumsum(values.astype("int64"))))
        return (cumulative[end] - cumulative[start]).astype("float64")
    flat, offsets = _expand(start, end)
    if window.aggregate == "max":
        result = np.full(len(start), np.nan)
        filled = end > start
        if filled.any():
            result[filled] = np.maximum.reduceat(values.astype("float64")[flat], offsets[filled])
        return result
    value_codes = pd.factorize(values)[0].astype("int64")
    width = int(value_codes.max(initial=0)) + 1
    rows = np.repeat(np.arange(len(start)), end - start)
    pairs = np.sort(rows * width + value_codes[flat])  # rows ascend already: sorting orders each row's values
    first_of_value = np.concatenate(([True], pairs[1:] != pairs[:-1])) if len(pairs) else np.zeros(0, dtype=bool)
    return np.bincount(pairs[first_of_value] // width, minlength=len(start)).astype("float64")


def _window_codes(keys: _KeyCodes, window: Window) -> tuple[np.ndarray, np.ndarray]:
    """Codes of the asking key and of the events' key, in one space (``user_id`` asks what ``dest_user_id`` got)."""
    if window.events_key is None:
        codes = keys.of(window.key)
        return codes, codes
    if len(window.key) != 1 or len(window.event_key) != 1:
        raise InvalidParameterError(f"window {window.name!r}: events_key windows take one key column each")
    return keys.pair(window.key[0], window.event_key[0])


def _previous(inputs: pd.DataFrame, keys: _KeyCodes, previous: list[Previous]) -> dict[str, np.ndarray]:
    """The values of each row's previous row of the same key, in (event time, input position) order."""
    codes = keys.of(previous[0].key)
    ts = inputs["timestamp"].to_numpy(dtype="int64")
    base = int(ts.min()) if len(ts) else 0
    order = np.argsort(codes * ((int(ts.max()) - base if len(ts) else 0) + 1) + (ts - base), kind="stable")
    first = np.concatenate(([True], codes[order][1:] != codes[order][:-1]))
    columns = {}
    for declaration in previous:
        values = inputs[declaration.value].to_numpy(dtype="float64")[order]
        result = np.empty(len(ts))
        result[order] = np.where(first, np.nan, np.concatenate(([np.nan], values[:-1])))
        columns[declaration.name] = result
    return columns


def raw_aggregates(inputs: pd.DataFrame) -> pd.DataFrame:
    """Every declaration's value for every row of ``inputs`` (any order; ties keep the input order)."""
    groups: dict[tuple[Any, ...], list[Window]] = {}
    for (key, events_key, _), windows in _window_shapes().items():
        groups.setdefault((key, events_key), []).extend(windows)  # one sort serves every span of a key
    keys = _KeyCodes(inputs)
    columns = {}
    for windows in groups.values():
        bounds = _bounds(inputs, keys, windows)
        columns |= {window.name: _aggregate(inputs, window, bounds[window.span_ms]) for window in windows}
    columns = {window.name: columns[window.name] for window in WINDOWS}
    for previous_group in _previous_by_key().values():
        columns |= _previous(inputs, keys, previous_group)
    return pd.DataFrame(columns, index=inputs.index)


def compute_features(table: pd.DataFrame, *, geoip: AddressLookup | None = None) -> pd.DataFrame:
    """:data:`FEATURES` of every row of an account stream, each row seeing the stream's history up to its time.

    Rows need not be sorted; transactions of one key at the same millisecond are ordered by their input position
    (the stream's order). Returns a frame with the input's row labels.
    """
    inputs = feature_inputs(table, geoip=geoip)
    return finish(inputs, raw_aggregates(inputs))


def cold_raw(inputs: pd.DataFrame) -> pd.DataFrame:
    """The declarations' values for a transaction with no history: its account's first (real and copula rows)."""
    n = len(inputs)
    columns: dict[str, np.ndarray] = {}
    for window in WINDOWS:
        own = window.events_key is None
        if window.aggregate in ("count", "distinct"):
            columns[window.name] = np.full(n, 1.0 if own else 0.0)
        elif window.aggregate == "sum":
            columns[window.name] = inputs[window.value].to_numpy(dtype="float64") if own else np.zeros(n)
        else:
            columns[window.name] = inputs[window.value].to_numpy(dtype="float64") if own else np.full(n, np.nan)
    columns |= {previous.name: np.full(n, np.nan) for previous in PREVIOUS}
    return pd.DataFrame(columns, index=inputs.index)


def cold_features(table: pd.DataFrame, *, geoip: AddressLookup | None = None) -> pd.DataFrame:
    """:data:`FEATURES` of rows scored without history (PaySim files, copula samples): every one is cold."""
    inputs = feature_inputs(table, geoip=geoip)
    return finish(inputs, cold_raw(inputs))


# --------------------------------------------------------------------------- executor 2: one record at a time


@dataclass
class _WindowState:
    """The events of one window declaration still inside it, per key, with their running sum and value counts."""

    window: Window
    events: dict[tuple[Any, ...], deque[tuple[int, Any]]] = field(default_factory=dict)
    sums: dict[tuple[Any, ...], int] = field(default_factory=dict)
    counts: dict[tuple[Any, ...], dict[Any, int]] = field(default_factory=dict)

    def add(self, record: Mapping[str, Any]) -> None:
        key = tuple(record[column] for column in self.window.event_key)
        value = record[self.window.value] if self.window.value else None
        self.events.setdefault(key, deque()).append((int(record["timestamp"]), value))
        if self.window.aggregate == "sum":
            self.sums[key] = self.sums.get(key, 0) + int(value)
        elif self.window.aggregate == "distinct":
            seen = self.counts.setdefault(key, {})
            seen[value] = seen.get(value, 0) + 1

    def _evict(self, key: tuple[Any, ...], oldest: int) -> deque[tuple[int, Any]]:
        events = self.events.get(key, deque())
        while events and events[0][0] < oldest:
            _, value = events.popleft()
            if self.window.aggregate == "sum":
                self.sums[key] -= int(value)
            elif self.window.aggregate == "distinct":
                seen = self.counts[key]
                seen[value] -= 1
                if not seen[value]:
                    del seen[value]
        return events

    def value_at(self, record: Mapping[str, Any]) -> float:
        key = tuple(record[column] for column in self.window.key)
        events = self._evict(key, int(record["timestamp"]) - self.window.span_ms)
        if self.window.aggregate == "count":
            return float(len(events))
        if self.window.aggregate == "sum":
            return float(self.sums.get(key, 0))
        if self.window.aggregate == "max":
            return max((float(value) for _, value in events), default=float("nan"))
        return float(len(self.counts.get(key, {})))


class StreamingFeatures:
    """The declarations executed one record at a time, in event time, as a streaming engine does.

    A record is held until the watermark (the newest event time pushed minus ``lateness_ms``) reaches its time,
    then released with every held record of the same instant, in event-time order, so a record that arrived out of
    order (by less than the lateness) gets exactly the features of the time-sorted stream. A record at or behind
    the watermark when it arrives is late: dropped and its ``transaction_id`` kept in :attr:`late`, as Flink drops
    late rows of an event-time ``OVER`` aggregation. Records are mappings of the :func:`feature_inputs` columns.
    """

    def __init__(self, lateness_ms: int = LATENESS_MS) -> None:
        if lateness_ms < 0:
            raise InvalidParameterError(f"lateness_ms must be >= 0, got {lateness_ms!r}")
        self.lateness_ms = lateness_ms
        self.watermark: int | None = None
        self.late: list[str] = []
        self._held: list[tuple[int, int, Mapping[str, Any]]] = []
        self._arrivals = 0
        self._windows = [_WindowState(window) for window in WINDOWS]
        self._last: dict[tuple[tuple[str, ...], tuple[Any, ...]], dict[str, float]] = {}

    def push(self, record: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Take one record; return the records the watermark releases, each with its :data:`RAW_COLUMNS`."""
        timestamp = int(record["timestamp"])
        if self.watermark is not None and timestamp <= self.watermark:
            self.late.append(str(record["transaction_id"]))
            return []
        heapq.heappush(self._held, (timestamp, self._arrivals, record))
        self._arrivals += 1
        watermark = timestamp - self.lateness_ms
        self.watermark = watermark if self.watermark is None else max(self.watermark, watermark)
        return self._release(self.watermark)

    def flush(self) -> list[dict[str, Any]]:
        """End of input: release every held record (the final watermark of a bounded stream)."""
        return self._release(None)

    def run(self, records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
        """Push every record, flush, and return the released records' :data:`FEATURES` in release order."""
        released = [row for record in records for row in self.push(record)]
        released += self.flush()
        frame = pd.DataFrame(released, columns=[*INPUT_COLUMNS, *ENRICHMENT_COLUMNS, "amount_cents", *RAW_COLUMNS])
        frame["type"] = pd.Categorical(frame["type"], categories=list(TRANSACTION_TYPES))
        features = finish(frame, frame)
        features.index = pd.Index(frame["transaction_id"], name="transaction_id")
        return features

    def _release(self, watermark: int | None) -> list[dict[str, Any]]:
        released: list[dict[str, Any]] = []
        while self._held and (watermark is None or self._held[0][0] <= watermark):
            instant = self._held[0][0]
            group = []
            while self._held and self._held[0][0] == instant:
                group.append(heapq.heappop(self._held)[2])
            released.extend(self._emit(group))
        return released

    def _emit(self, group: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """One instant's records: all enter the windows first (ties see each other), then each is read in turn."""
        for state in self._windows:
            for record in group:
                state.add(record)
        out = []
        for record in group:
            row = dict(record)
            for state in self._windows:
                row[state.window.name] = state.value_at(record)
            for previous in PREVIOUS:
                key = (previous.key, tuple(record[column] for column in previous.key))
                row[previous.name] = self._last.get(key, {}).get(previous.value, float("nan"))
            for previous in PREVIOUS:
                key = (previous.key, tuple(record[column] for column in previous.key))
                self._last.setdefault(key, {})[previous.value] = float(record[previous.value])
            out.append(row)
        return out


# --------------------------------------------------------------------------- executor 3: Flink SQL


def _interval(span_ms: int) -> str:
    for unit, size in (("DAY", DAY_MS), ("HOUR", HOUR_MS), ("MINUTE", 60_000), ("SECOND", 1000)):
        if span_ms % size == 0:
            return f"INTERVAL '{span_ms // size}' {unit}"
    raise InvalidParameterError(f"a window span must be whole seconds, got {span_ms} ms")


def _sql_aggregate(window: Window) -> str:
    if window.aggregate == "count":
        # Not COUNT(*): Flink 2.2's planner names bare COUNT(*) levels w0$o0 and fails on a deep nest with
        # "Field names must be unique"; a SUM of ones is the same BIGINT (never NULL: the row itself is in).
        return "SUM(CAST(1 AS BIGINT))"
    if window.aggregate == "distinct":
        return f"COUNT(DISTINCT `{window.value}`)"
    return f"{window.aggregate.upper()}(`{window.value}`)"


def _quoted(columns: Iterable[str]) -> str:
    return ", ".join(f"`{column}`" for column in columns)


def _range(partition: Iterable[str], span_ms: int) -> str:
    return (f"(PARTITION BY {_quoted(partition)} ORDER BY `event_time` "
            f"RANGE BETWEEN {_interval(span_ms)} PRECEDING AND CURRENT ROW)")


def _own_level(inner: str, windows: list[Window]) -> str:
    selects = ", ".join(f"{_sql_aggregate(w)} OVER w AS `{w.name}`" for w in windows)
    return f"SELECT *, {selects} FROM (\n{inner}\n) WINDOW w AS {_range(windows[0].key, windows[0].span_ms)}"


def _received_level(source: str, carried: list[str], windows: list[Window], level: int) -> str:
    """Events keyed by another column: the transactions asking and the events counted, as one union, then only
    the asking rows kept (the rowtime attribute survives ``UNION ALL``)."""
    if any(w.aggregate not in ("count", "sum") for w in windows) or len(windows[0].key) != 1:
        raise InvalidParameterError("a window with events_key supports one key column and count or sum aggregates")
    party, asking = f"party_{level}", f"asking_{level}"
    values = [f"v_{w.name}" for w in windows]
    zero = ", ".join(f"CAST(0 AS BIGINT) AS `{v}`" for v in values)
    counted = ", ".join(("CAST(1 AS BIGINT)" if w.aggregate == "count" else f"CAST(`{w.value}` AS BIGINT)")
                        + f" AS `{v}`" for w, v in zip(windows, values, strict=True))
    sums = ", ".join(f"SUM(`{v}`) OVER w AS `{w.name}`" for w, v in zip(windows, values, strict=True))
    keep = _quoted(carried)
    return (f"SELECT {keep}, {_quoted(w.name for w in windows)} FROM (\n"
            f"SELECT {keep}, `{asking}`, {sums} FROM (\n"
            f"SELECT {keep}, `{windows[0].key[0]}` AS `{party}`, {zero}, TRUE AS `{asking}` FROM `{source}`\n"
            f"UNION ALL\n"
            f"SELECT {keep}, `{windows[0].event_key[0]}` AS `{party}`, {counted}, FALSE AS `{asking}` FROM `{source}`"
            f"\n) WINDOW w AS {_range([party], windows[0].span_ms)}\n) WHERE `{asking}`")


def _nan_for_null(column: str) -> str:
    """FIRST_VALUE skips NULLs (it would return the current row's value): missing becomes NaN, as in pandas."""
    return f"COALESCE(CAST(`{column}` AS DOUBLE), CAST('NaN' AS DOUBLE))"


def _previous_level(inner: str, previous: list[Previous]) -> str:
    """The previous row of the key through a two-row ``ROWS`` frame: ``LAG`` in Flink 2.2 streams sees tied rows
    after all of them are added, a ``ROWS`` frame takes ties in arrival order, as the other executors do."""
    selects = ", ".join(f"CASE WHEN COUNT(*) OVER w = 2 THEN FIRST_VALUE({_nan_for_null(p.value)}) OVER w "
                        f"ELSE CAST('NaN' AS DOUBLE) END "
                        f"AS `{p.name}`" for p in previous)
    return (f"SELECT *, {selects} FROM (\n{inner}\n) WINDOW w AS (PARTITION BY {_quoted(previous[0].key)} "
            f"ORDER BY `event_time` ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)")


def flink_sql(source: str = "transactions", *, carry: Sequence[str] = ()) -> str:
    """The declarations as one Flink SQL query: nested ``OVER`` levels, one per window shape, then ``LAG``-like
    previous values; it yields the :func:`feature_inputs` columns and every one of :data:`RAW_COLUMNS`.

    ``source`` is a table of the :func:`feature_inputs` columns (``amount_cents`` included) with an event-time
    attribute ``event_time`` whose watermark allows :data:`LATENESS_MS`. Flink computes the aggregates of one
    ``OVER`` over a single window, so each (key, events key, span) gets its own level; nesting them (rather than
    joining one query per shape on ``transaction_id``) keeps the output append-only with no join state. The job
    then calls :func:`finish` on the rows in Arrow batches. ``carry`` names further source columns passed through
    unchanged (the job re-emits the whole transaction with its score).
    """
    carried = [*INPUT_COLUMNS, *ENRICHMENT_COLUMNS, "amount_cents", *carry, "event_time"]
    shapes = _window_shapes()
    received = [windows for (_, events_key, _), windows in shapes.items() if events_key is not None]
    own = [windows for (_, events_key, _), windows in shapes.items() if events_key is None]
    if len(received) > 1:
        raise InvalidParameterError("flink_sql: at most one window shape with events_key is supported")
    query = (_received_level(source, carried, received[0], 0) if received
             else f"SELECT {_quoted(carried)} FROM `{source}`")
    for previous_group in _previous_by_key().values():
        query = _previous_level(query, previous_group)
    for windows in own:
        query = _own_level(query, windows)
    return f"SELECT {_quoted([*carried, *RAW_COLUMNS])} FROM (\n{query}\n)"
