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
import json
from collections import deque
from collections.abc import Iterable, Mapping
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
