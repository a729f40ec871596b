"""A vectorised PaySim: an agent-based mobile-money simulator calibrated to the bundled real rows.

PaySim (Lopez-Rojas, Elmir & Axelsson, EMSS 2016) simulates one month of a
mobile-money service in hourly steps: clients with accounts and balances,
merchants who take payments, and fraudsters. This module re-implements its
published mechanics with numpy, one step at a time, every client's balance
persisting from step to step:

* **Clients** (``C...``) hold a balance that only logged rows change. The
  origin of CASH_IN is credited; the origin of CASH_OUT, DEBIT, PAYMENT and
  TRANSFER is debited, floored at zero: PaySim publishes the e-money balance
  and the part of a withdrawal above it is drawn on the client's overdraft
  facility, which is outside the ledger. A withdrawal above the balance plus
  the client's overdraft limit is refused and logged with
  ``is_unauthorized_overdraft`` and every balance unchanged.
* **Destinations.** PAYMENT goes to a merchant (``M...``) whose balance is
  not published (both destination balances 0). The other types go to a
  client: CASH_IN to the agent handing out e-money (debited, floored at zero),
  CASH_OUT to the agent taking it (credited), DEBIT and TRANSFER to the
  receiving account (credited).
* **Who acts.** PaySim drives its agents with the aggregate statistics of the
  real log. Here each step draws its row count from the real hour-of-day and
  day-of-month profile, each row's type from the real mix, its amount from
  the real per-type distribution, and the balance class of its origin and
  destination from the real rows of that type; the simulator then matches
  the row to a client currently in that class (the destination's class also
  depends on the amount: large transfers go to well-funded accounts). The
  classes are quantile bins of the real nonzero balances plus "empty". This
  is what makes a CASH_IN come from a well-funded account and a CASH_OUT
  often from an empty one, as in PaySim's log, while every balance stays in
  one ledger. When no client of the class asked for is free in the step, a
  new client joins with a balance in that class: the population is open.
* **Fraud.** A fraudster takes over a client's account and empties it by
  TRANSFER to a mule account, in chunks of at most ``transfer_cap`` (10
  million, the largest real fraud), and the mule at once cashes out the same
  amount at an agent. Both rows are frauds.
* **Flagged fraud.** PaySim's control flags an illegal attempt to transfer
  more than 200,000 in one transaction and blocks it (balances unchanged, no
  cash-out follows). In the real log the flag falls only on the follow-up
  transfers of a takeover above the cap: the first 10 million went out, and
  the next transfer over 200,000 from the same account in that hour was
  caught in 13 of 94 such takeovers. The simulator does the same with that
  measured probability; once caught, the rest of the takeover is blocked.

Calibration constants live in ``paysim_calibration.json`` beside this module;
:func:`derive_calibration` re-derives them from :func:`fraudlab.data.readers.load_reference`
(the real non-fraud sample rows for normal behaviour, the complete real fraud
set for fraud behaviour) and :func:`write_calibration` rewrites the file.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from fraudlab.data.reference import POPULATION_FRAUDS, POPULATION_ROWS, Reference, load_reference
from fraudlab.exceptions import SimulationError
from fraudlab.schema.table import TRANSACTION_TYPES, to_canonical

__all__ = [
    "CALIBRATION_PATH",
    "FLAG_THRESHOLD",
    "STEPS",
    "Calibration",
    "SimulationConfig",
    "derive_calibration",
    "load_calibration",
    "simulate",
    "write_calibration",
]

#: Hourly steps of PaySim's month (the Kaggle log runs from step 1 to step 743).
STEPS = 743
#: PaySim's flagged-fraud rule: an attempt to transfer more than this in one transaction.
FLAG_THRESHOLD = 200_000.0
CALIBRATION_PATH = Path(__file__).with_name("paysim_calibration.json")

#: Quantile levels (of the real nonzero balances) that separate the balance classes: every 1/32, and
#: finer in the top 3% so that origin balances stay within the (much lower) range real origins have.
_CLASS_LEVELS = np.r_[np.arange(1, 32) / 32, 0.98, 0.99, 0.995, 0.999, 0.9995, 0.9999]
_CLASS_BOUNDS = np.r_[0.0, _CLASS_LEVELS, 1.0]
_CLASSES = len(_CLASS_LEVELS) + 1
#: Quantile levels of a type's amounts that separate the amount bands a destination's class depends on.
_AMOUNT_BANDS = np.array([0.25, 0.5, 0.75, 0.9, 0.99])
_BAND_PRIOR_ROWS = 5.0
#: Quantile levels of the stored distributions: every half percent, denser in the top percent so that
#: interpolating towards a lone maximum does not smear mass over the far tail.
_LEVELS = np.r_[np.linspace(0.0, 0.99, 199), 0.9925, 0.995, 0.9975, 0.999, 0.9995, 0.9999, 1.0]
_DEST_TYPES = ("CASH_IN", "CASH_OUT", "DEBIT", "TRANSFER")
_CODE = {name: code for code, name in enumerate(TRANSACTION_TYPES)}
_CASH_IN, _CASH_OUT, _TRANSFER, _PAYMENT = _CODE["CASH_IN"], _CODE["CASH_OUT"], _CODE["TRANSFER"], _CODE["PAYMENT"]
_MATCH_ROUNDS = 4



# --------------------------------------------------------------------------- calibration


@dataclass(frozen=True)
class Calibration:
    """Everything the simulator takes from the real rows; see :func:`derive_calibration` for each field.

    Distributions over balance classes have ``_CLASSES + 1`` entries: class 0
    is an empty balance, class ``k`` the ``k``-th quantile bin of
    ``balance_quantiles`` (bounds ``_CLASS_BOUNDS``).
    """

    type_mix: dict[str, float]
    day_weights: list[float]
    hour_weights: list[float]
    fraud_day_weights: list[float]
    fraud_hour_weights: list[float]
    quantile_levels: list[float]
    amount_quantiles: dict[str, list[float]]
    balance_quantiles: list[float]
    origin_classes: dict[str, list[float]]
    dest_classes: dict[str, list[list[float]]]
    victim_classes: list[float]
    mule_agent_classes: list[float]
    fraud_row_rate: float
    transfer_cap: float
    flag_probability: float
    source: str = field(default="")

    def to_json(self) -> str:
        """The calibration as indented JSON (the format of ``paysim_calibration.json``)."""
        return json.dumps(asdict(self), indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Calibration:
        """Rebuild a calibration from :meth:`to_json` output."""
        return cls(**json.loads(text))


def _shares(values: pd.Series | np.ndarray, size: int) -> list[float]:
    counts = np.bincount(np.asarray(values, dtype=np.int64), minlength=size).astype(float)
    return _rounded(counts / counts.sum())


def _rounded(values: np.ndarray, digits: int = 8) -> list[float]:
    return [round(float(v), digits) for v in values]


def _balance_class(balances: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Class 0 for an empty balance, else 1 + the quantile bin of the balance."""
    return np.where(balances > 0, 1 + np.searchsorted(edges, balances, side="right"), 0).astype(np.int16)


def _class_edges(balance_quantiles: np.ndarray) -> np.ndarray:
    """The inner edges of the nonzero balance classes."""
    return np.exp(np.interp(_CLASS_LEVELS, _LEVELS, np.log(balance_quantiles)))


def _log_quantiles(values: np.ndarray) -> list[float]:
    return _rounded(np.quantile(values, _LEVELS), 2)


def _dest_classes_by_band(rows: pd.DataFrame, edges: np.ndarray) -> list[list[float]]:
    """Destination class shares within each amount band of one type, shrunk towards the type's overall shares.

    Large transfers go to well-funded accounts in the real log (every real
    TRANSFER above 10 million lands on an account holding over 11 million),
    a dependence concentrated in the tail, so it is kept as a table rather
    than a correlation. ``_BAND_PRIOR_ROWS`` pseudo-rows of the overall mix
    steady the sparse top bands.
    """
    classes = _balance_class(rows["old_balance_dest"].to_numpy(), edges)
    band = _amount_band(rows["amount"].rank(method="first").to_numpy() / (len(rows) + 1))
    overall = np.bincount(classes, minlength=_CLASSES + 1) / len(classes)
    table = []
    for index in range(len(_AMOUNT_BANDS) + 1):
        counts = np.bincount(classes[band == index], minlength=_CLASSES + 1) + _BAND_PRIOR_ROWS * overall
        table.append(_rounded(counts / counts.sum()))
    return table


def _amount_band(levels: np.ndarray) -> np.ndarray:
    """The band of each amount's quantile level within its type (0 = lowest quarter)."""
    return np.searchsorted(_AMOUNT_BANDS, levels, side="right")


def _takeover_starts(transfers: pd.DataFrame, cap: float) -> pd.DataFrame:
    """The first fraudulent TRANSFER of each real takeover.

    A takeover above the cap shows in the log as several TRANSFERs in one
    step, each starting ``cap`` lower than the one before, and a blocked one
    repeats its attempt with the balance unchanged. Counting only the first
    row of each keeps large victims from weighing once per chunk.
    """
    balance = transfers["old_balance_orig"].round(2)
    seen = pd.MultiIndex.from_arrays([transfers["step"], balance])
    continues = pd.MultiIndex.from_arrays([transfers["step"], (balance + cap).round(2)]).isin(seen)
    return transfers[~continues].drop_duplicates(["step", "old_balance_orig"])


def _follow_up_amount(balances: np.ndarray, cap: float) -> np.ndarray:
    """The second transfer of a takeover that empties ``balances`` in chunks of ``cap`` (0 if one suffices)."""
    return np.clip(balances - cap, 0.0, cap)


def derive_calibration(reference: Reference | None = None) -> Calibration:
    """Derive the simulator's constants from the bundled real rows.

    Normal behaviour comes from the non-fraud rows of the uniform sample, so
    each counts once; fraud behaviour comes from the complete real fraud set,
    which is the whole population of frauds (weight 1), never mixed into the
    sample unweighted. The fraud row rate is the population's
    (8,213 / 6,362,620).
    """
    reference = reference or load_reference()
    normal = reference.sample[~reference.sample["is_fraud"]]
    frauds = reference.frauds
    types = normal["type"].astype(str)
    demand = np.concatenate([
        normal["old_balance_orig"].to_numpy(),
        normal.loc[types.isin(_DEST_TYPES), "old_balance_dest"].to_numpy(),
    ])
    balance_quantiles = np.array(_log_quantiles(demand[demand > 0]))
    edges = _class_edges(balance_quantiles)

    def classes_of(rows: pd.DataFrame, column: str) -> list[float]:
        return _shares(_balance_class(rows[column].to_numpy(), edges), _CLASSES + 1)

    transfers = frauds[frauds["type"] == "TRANSFER"]
    cap = float(transfers["amount"].max())
    takeovers = _takeover_starts(transfers[transfers["old_balance_orig"] > 0], cap)
    follow_ups = int((_follow_up_amount(takeovers["old_balance_orig"].to_numpy(), cap) > FLAG_THRESHOLD).sum())
    caught = len(transfers[transfers["is_flagged_fraud"]].drop_duplicates(["step", "old_balance_orig"]))
    return Calibration(
        type_mix={name: round(float((types == name).mean()), 8) for name in TRANSACTION_TYPES},
        day_weights=_shares((normal["step"] - 1) // 24, 31),
        hour_weights=_shares((normal["step"] - 1) % 24, 24),
        fraud_day_weights=_shares((frauds["step"] - 1) // 24, 31),
        fraud_hour_weights=_shares((frauds["step"] - 1) % 24, 24),
        quantile_levels=_rounded(_LEVELS),
        amount_quantiles={name: _log_quantiles(normal.loc[types == name, "amount"].to_numpy())
                          for name in TRANSACTION_TYPES},
        balance_quantiles=balance_quantiles.tolist(),
        origin_classes={name: classes_of(normal[types == name], "old_balance_orig") for name in TRANSACTION_TYPES},
        dest_classes={name: _dest_classes_by_band(normal[types == name], edges) for name in _DEST_TYPES},
        victim_classes=classes_of(takeovers, "old_balance_orig"),
        mule_agent_classes=classes_of(frauds[frauds["type"] == "CASH_OUT"], "old_balance_dest"),
        fraud_row_rate=POPULATION_FRAUDS / POPULATION_ROWS,
        transfer_cap=cap,
        flag_probability=round(caught / follow_ups, 8),
        source=(f"fraudlab.generate.paysim.derive_calibration() on {len(reference.sample):,} uniform real rows "
                f"and all {len(frauds):,} real frauds"),
    )


def write_calibration(path: str | Path = CALIBRATION_PATH, reference: Reference | None = None) -> Path:
    """Re-derive the calibration from the real rows and write it as JSON (by default the bundled file)."""
    path = Path(path)
    path.write_text(derive_calibration(reference).to_json())
    load_calibration.cache_clear()
    return path


@cache
def load_calibration(path: Path = CALIBRATION_PATH) -> Calibration:
    """The calibration in ``path`` (by default the one bundled with fraudlab)."""
    try:
        return Calibration.from_json(Path(path).read_text())
    except (OSError, ValueError, TypeError) as exc:
        raise SimulationError(
            f"Cannot read the PaySim calibration {path}: {exc}. "
            "Rewrite it with fraudlab.generate.paysim.write_calibration()."
        ) from exc


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class SimulationConfig:
    """Population and behaviour settings that the real rows do not determine.

    Attributes:
        clients_per_row: client accounts per simulated row; at 0.5 a client
            appears in about three rows (origin or destination) over the month.
        merchants_per_row: merchant accounts per simulated row.
        fraud_events_per_mule: takeovers each mule account serves over the month.
        overdraft_limit_median: median overdraft limit of a client. PaySim's
            log lets most withdrawals exceed the balance (88% of real CASH_OUTs
            do), so limits are generous; a withdrawal beyond balance plus limit
            is refused. At this median about 0.065% of rows are refusals; the
            half of them refused from a nonzero balance (0.03% of rows) are
            the only rows breaking :mod:`fraudlab.schema.rules`, whose debit rule
            assumes a withdrawal went through.
        overdraft_limit_sigma: spread (log-normal sigma) of the limits.
        pool_refresh_steps: steps between rebuilds of the per-class client pools.
        calibration: the real-data constants; ``None`` loads the bundled file.
    """

    clients_per_row: float = 0.5
    merchants_per_row: float = 0.05
    fraud_events_per_mule: float = 4.0
    overdraft_limit_median: float = 2.0e7
    overdraft_limit_sigma: float = 1.0
    pool_refresh_steps: int = 12
    calibration: Calibration | None = None

    def __post_init__(self) -> None:
        positive = {
            "clients_per_row": self.clients_per_row,
            "merchants_per_row": self.merchants_per_row,
            "fraud_events_per_mule": self.fraud_events_per_mule,
            "overdraft_limit_median": self.overdraft_limit_median,
            "pool_refresh_steps": self.pool_refresh_steps,
        }
        problems = [f"{name}={value!r} must be > 0" for name, value in positive.items() if not value > 0]
        if not self.overdraft_limit_sigma >= 0:
            problems.append(f"overdraft_limit_sigma={self.overdraft_limit_sigma!r} must be >= 0")
        if problems:
            raise SimulationError(f"Invalid SimulationConfig: {'; '.join(problems)}.")

    def resolved_calibration(self) -> Calibration:
        """The calibration to simulate with."""
        return self.calibration or load_calibration()


# --------------------------------------------------------------------------- the model's tables


@dataclass(frozen=True)
class _Tables:
    """The calibration as numpy arrays, in the shapes the step loop uses."""

    type_mix: np.ndarray
    amount_levels: np.ndarray
    log_amounts: np.ndarray
    log_balances: np.ndarray
    edges: np.ndarray
    origin_cdf: np.ndarray
    dest_cdf: np.ndarray
    victim_cdf: np.ndarray
    agent_cdf: np.ndarray
    step_cdf: np.ndarray
    fraud_step_cdf: np.ndarray
    fraud_row_rate: float
    transfer_cap: float
    flag_probability: float

    @classmethod
    def of(cls, calibration: Calibration) -> _Tables:
        balance_quantiles = np.asarray(calibration.balance_quantiles)
        no_dest = [np.eye(_CLASSES + 1)[0]] * (len(_AMOUNT_BANDS) + 1)
        dest = [row for name in TRANSACTION_TYPES for row in calibration.dest_classes.get(name, no_dest)]
        return cls(
            type_mix=_normalised([calibration.type_mix[name] for name in TRANSACTION_TYPES]),
            amount_levels=np.asarray(calibration.quantile_levels),
            log_amounts=np.log([calibration.amount_quantiles[name] for name in TRANSACTION_TYPES]),
            log_balances=np.log(balance_quantiles),
            edges=_class_edges(balance_quantiles),
            origin_cdf=_cdf([calibration.origin_classes[name] for name in TRANSACTION_TYPES]),
            dest_cdf=_cdf(dest),
            victim_cdf=_cdf([calibration.victim_classes]),
            agent_cdf=_cdf([calibration.mule_agent_classes]),
            step_cdf=_step_cdf(calibration.day_weights, calibration.hour_weights),
            fraud_step_cdf=_step_cdf(calibration.fraud_day_weights, calibration.fraud_hour_weights),
            fraud_row_rate=calibration.fraud_row_rate,
            transfer_cap=calibration.transfer_cap,
            flag_probability=calibration.flag_probability,
        )

    def amounts(self, codes: np.ndarray, u: np.ndarray) -> np.ndarray:
        """The amounts at quantile levels ``u`` of the real amount distribution of each row's type."""
        out = np.empty(len(codes))
        for code in range(len(TRANSACTION_TYPES)):
            rows = codes == code
            out[rows] = np.interp(u[rows], self.amount_levels, self.log_amounts[code])
        return np.round(np.exp(out), 2)

    def dest_rows(self, codes: np.ndarray, amount_levels: np.ndarray) -> np.ndarray:
        """The row of ``dest_cdf`` for each transaction: its type and the band of its amount."""
        return codes.astype(np.int64) * (len(_AMOUNT_BANDS) + 1) + _amount_band(amount_levels)

    def balances_in(self, classes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Balances spread like the real ones within each class (0 for class 0 and the mules' class)."""
        funded = (classes > 0) & (classes <= _CLASSES)
        bin_ = np.clip(classes, 1, _CLASSES)
        low, high = _CLASS_BOUNDS[bin_ - 1], _CLASS_BOUNDS[bin_]
        level = low + rng.random(len(classes)) * (high - low)
        values = np.round(np.exp(np.interp(level, self.amount_levels, self.log_balances)), 2)
        return np.where(funded, values, 0.0)

    def demand(self) -> np.ndarray:
        """How often a row asks for an account of each class: the mix of the population to start from."""
        band_shares = np.diff(np.r_[0.0, _AMOUNT_BANDS, 1.0])
        dest = np.diff(self.dest_cdf, prepend=0.0, axis=1).reshape(len(TRANSACTION_TYPES), len(band_shares), -1)
        dest = np.einsum("b,tbc->tc", band_shares, dest)
        dest[_PAYMENT] = 0.0
        return _normalised(self.type_mix @ (np.diff(self.origin_cdf, prepend=0.0, axis=1) + dest))


def _normalised(values: object) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    return array / array.sum()


def _cdf(rows: list[list[float]] | list[np.ndarray]) -> np.ndarray:
    cdf = np.cumsum([_normalised(row) for row in rows], axis=1)
    cdf[:, -1] = 1.0
    return cdf


def _step_cdf(day_weights: list[float], hour_weights: list[float]) -> np.ndarray:
    """Cumulative share of each step 1..743: day-of-month volume times hour-of-day profile."""
    weights = np.outer(day_weights, hour_weights).ravel()[:STEPS]
    cdf = np.cumsum(weights / weights.sum())
    cdf[-1] = 1.0
    return cdf


def _draw(cdf: np.ndarray, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One class per entry of ``rows``, each drawn from its own row of ``cdf`` (inverse-CDF sampling)."""
    u = rng.random(len(rows))
    return (u[:, None] >= cdf[rows]).sum(axis=1).astype(np.int16)


# --------------------------------------------------------------------------- accounts


class _Accounts:
    """Mule and client accounts (balances, overdraft limits, pools by balance class) and the merchants.

    Mules are ``0 .. mules-1`` and clients follow. The population is open:
    when no existing client of the class a row asks for is free in the step,
    a new client joins with a balance in that class, as customers keep
    joining a mobile-money service. Pools are rebuilt every few steps; a
    client that moved class since is skipped when drawn, so a draw always
    honours the class asked for. Merchants hold no balance and are referred
    to by negative indices ``-1 .. -merchants``.
    """

    def __init__(self, n_rows: int, events: int, config: SimulationConfig, tables: _Tables,
                 rng: np.random.Generator) -> None:
        self.rng = rng
        self.tables = tables
        self.limit_median = config.overdraft_limit_median
        self.limit_sigma = config.overdraft_limit_sigma
        self.mules = max(math.ceil(events / config.fraud_events_per_mule), 16)
        self.merchants = max(math.ceil(n_rows * config.merchants_per_row), 100)
        self.count = 0
        self.balance = np.zeros(0)
        self.limit = np.zeros(0)
        self.klass = np.zeros(0, dtype=np.int16)
        self.last_used = np.zeros(0, dtype=np.int32)
        self._append(np.full(self.mules, _CLASSES + 1, dtype=np.int16), step=0)
        clients = max(math.ceil(n_rows * config.clients_per_row), 1_000)
        self._append(rng.choice(_CLASSES + 1, size=clients, p=tables.demand()).astype(np.int16), step=0)
        self.refresh_pools()

    def _append(self, classes: np.ndarray, step: int) -> np.ndarray:
        """New accounts with balances drawn within ``classes``; returns their indices."""
        new = np.arange(self.count, self.count + len(classes))
        if self.count + len(classes) > len(self.balance):
            capacity = max(2 * len(self.balance), self.count + len(classes))
            for name in ("balance", "limit", "klass", "last_used"):
                grown = np.zeros(capacity, dtype=getattr(self, name).dtype)
                grown[: self.count] = getattr(self, name)[: self.count]
                setattr(self, name, grown)
        self.balance[new] = self.tables.balances_in(classes, self.rng)
        self.limit[new] = self.limit_median * np.exp(self.limit_sigma * self.rng.standard_normal(len(new)))
        self.klass[new] = classes
        self.last_used[new] = step
        self.count += len(new)
        return new

    def refresh_pools(self) -> None:
        """Group the clients by their current class (mules carry a class no row asks for)."""
        self.members = np.argsort(self.klass[: self.count], kind="stable")
        self.starts = np.searchsorted(self.klass[self.members], np.arange(_CLASSES + 2))
        self.sizes = np.diff(self.starts)

    def update(self, accounts: np.ndarray, balances: np.ndarray) -> None:
        """Write new balances (each account at most once) and move clients between classes."""
        self.balance[accounts] = balances
        clients = accounts >= self.mules
        self.klass[accounts[clients]] = _balance_class(balances[clients], self.tables.edges)

    def match(self, wanted: np.ndarray, step: int) -> np.ndarray:
        """Distinct clients not yet used in ``step``, each in the class wanted; new clients where none is free."""
        chosen = np.full(len(wanted), -1, dtype=np.int64)
        pending = np.flatnonzero(self.sizes[wanted] > 0)
        for _ in range(_MATCH_ROUNDS):
            if not len(pending):
                break
            pending = self._draw_from_pools(wanted, pending, chosen, step)
        unmatched = np.flatnonzero(chosen < 0)
        chosen[unmatched] = self._append(wanted[unmatched].astype(np.int16), step)
        return chosen

    def _draw_from_pools(self, wanted: np.ndarray, pending: np.ndarray, chosen: np.ndarray, step: int) -> np.ndarray:
        classes = wanted[pending]
        offsets = (self.rng.random(len(pending)) * self.sizes[classes]).astype(np.int64)
        candidates = self.members[self.starts[classes] + offsets]
        fits = (self.klass[candidates] == classes) & (self.last_used[candidates] != step)
        unique, first = np.unique(candidates[fits], return_index=True)
        chosen[pending[fits][first]] = unique
        self.last_used[unique] = step
        return pending[chosen[pending] < 0]

    def free_mules(self, count: int, step: int) -> np.ndarray:
        """Up to ``count`` mule accounts not yet used in ``step``."""
        free = np.flatnonzero(self.last_used[: self.mules] != step)
        picked = self.rng.choice(free, size=min(count, len(free)), replace=False)
        self.last_used[picked] = step
        return picked

    def release(self, accounts: np.ndarray, step: int) -> None:
        """Let accounts drawn for rows that were not emitted act again in ``step``."""
        self.last_used[accounts[self.last_used[accounts] == step]] = step - 1


# --------------------------------------------------------------------------- rows of one step


@dataclass
class _Rows:
    """Rows of one step in emission order (account indices, not names)."""

    code: np.ndarray
    amount: np.ndarray
    orig: np.ndarray
    old_orig: np.ndarray
    new_orig: np.ndarray
    dest: np.ndarray
    old_dest: np.ndarray
    new_dest: np.ndarray
    fraud: np.ndarray
    flagged: np.ndarray
    overdraft: np.ndarray

    def __len__(self) -> int:
        return len(self.code)

    @classmethod
    def concat(cls, parts: list[_Rows]) -> _Rows:
        return cls(**{name: np.concatenate([getattr(part, name) for part in parts]) for name in _ROW_FIELDS})

    def take(self, order: np.ndarray) -> _Rows:
        return _Rows(**{name: getattr(self, name)[order] for name in _ROW_FIELDS})


_ROW_FIELDS = tuple(_Rows.__dataclass_fields__)


def _normal_rows(count: int, step: int, accounts: _Accounts, tables: _Tables) -> _Rows:
    """``count`` ordinary transactions: type, amount, matched origin and destination, balances after the rules."""
    rng = accounts.rng
    code = rng.choice(len(TRANSACTION_TYPES), size=count, p=tables.type_mix).astype(np.int8)
    level = rng.random(count)
    amount = tables.amounts(code, level)
    to_client = code != _PAYMENT
    dest_rows = tables.dest_rows(code[to_client], level[to_client])
    wanted = np.concatenate([_draw(tables.origin_cdf, code, rng), _draw(tables.dest_cdf, dest_rows, rng)])
    matched = accounts.match(wanted, step)
    orig = matched[:count]
    dest = -1 - rng.integers(0, accounts.merchants, size=count)
    dest[to_client] = matched[count:]

    cash_in = code == _CASH_IN
    old_orig = accounts.balance[orig]
    refused = ~cash_in & (amount > old_orig + accounts.limit[orig])
    moved = np.where(refused, 0.0, amount)
    new_orig = np.where(cash_in, old_orig + amount, np.maximum(old_orig - moved, 0.0))
    old_dest = np.where(to_client, accounts.balance[np.where(to_client, dest, 0)], 0.0)
    credited = np.where(cash_in, np.maximum(old_dest - amount, 0.0), old_dest + moved)
    new_dest = np.where(to_client, credited, 0.0)
    accounts.update(orig, np.round(new_orig, 2))
    accounts.update(dest[to_client], np.round(new_dest[to_client], 2))
    no = np.zeros(count, dtype=bool)
    return _Rows(code, amount, orig, old_orig, accounts.balance[orig], dest, old_dest, new_dest.round(2), no, no,
                 refused)


@dataclass
class _Takeovers:
    """The account takeovers of one step, before they become rows."""

    victim: np.ndarray
    mule: np.ndarray
    agent: np.ndarray
    chunks: np.ndarray
    caught: np.ndarray

    @classmethod
    def none(cls) -> _Takeovers:
        empty = np.zeros(0, dtype=np.int64)
        return cls(empty, empty, empty, empty, np.zeros(0, dtype=bool))

    @property
    def rows(self) -> np.ndarray:
        """Rows per takeover: TRANSFER and CASH_OUT per chunk paid, one TRANSFER per blocked chunk."""
        return np.where(self.caught, self.chunks + 1, 2 * self.chunks)

    def within(self, limit: int, accounts: _Accounts, step: int) -> _Takeovers:
        """The leading takeovers whose rows fit in ``limit``; the accounts of the rest may act normally."""
        fits = int(np.searchsorted(np.cumsum(self.rows), limit, side="right"))
        accounts.release(np.concatenate([self.victim[fits:], self.agent[fits:], self.mule[fits:]]), step)
        return _Takeovers(self.victim[:fits], self.mule[:fits], self.agent[:fits], self.chunks[:fits],
                          self.caught[:fits])


def _plan_takeovers(events: int, step: int, accounts: _Accounts, tables: _Tables) -> _Takeovers:
    """Pick victims (funded accounts), mules and cash-out agents for ``events`` account takeovers."""
    rng = accounts.rng
    mule = accounts.free_mules(events, step)
    events = len(mule)
    first_row = np.zeros(events, dtype=np.int64)
    wanted = np.concatenate([_draw(tables.victim_cdf, first_row, rng), _draw(tables.agent_cdf, first_row, rng)])
    people = accounts.match(wanted, step)
    victim, agent = people[:events], people[events:]
    funded = accounts.balance[victim] > 0
    accounts.release(np.concatenate([victim[~funded], agent[~funded], mule[~funded]]), step)
    victim, agent, mule = victim[funded], agent[funded], mule[funded]
    balance = accounts.balance[victim]
    chunks = np.ceil(balance / tables.transfer_cap).astype(np.int64)
    follow_up = _follow_up_amount(balance, tables.transfer_cap) > FLAG_THRESHOLD
    caught = follow_up & (rng.random(len(victim)) < tables.flag_probability)
    remainder = balance - (chunks - 1) * tables.transfer_cap
    chunks -= caught & (chunks > 2) & (remainder <= FLAG_THRESHOLD)  # a frozen account's small rest is not tried
    return _Takeovers(victim, mule, agent, chunks, caught)


def _earlier_in_group(values: np.ndarray, group: np.ndarray) -> np.ndarray:
    """For each entry, the sum of the entries before it in its group (``group`` sorted)."""
    running = np.cumsum(values) - values
    return running - running[np.searchsorted(group, group)]


def _fraud_rows(plan: _Takeovers, accounts: _Accounts, tables: _Tables) -> _Rows:
    """Each takeover as rows: per chunk a TRANSFER victim -> mule, then (unless blocked) the mule's CASH_OUT.

    A caught takeover pays its first chunk; its follow-up transfers are
    flagged and blocked, the account keeping what the first one left.
    """
    event = np.repeat(np.arange(len(plan.victim)), plan.chunks)
    chunk = np.arange(len(event)) - np.repeat(np.cumsum(plan.chunks) - plan.chunks, plan.chunks)
    start = accounts.balance[plan.victim][event]
    planned = np.round(np.maximum(start - chunk * tables.transfer_cap, 0.0), 2)
    amount = np.round(np.minimum(planned, tables.transfer_cap), 2)
    blocked = plan.caught[event] & (chunk > 0)
    before = np.where(blocked, np.round(start - tables.transfer_cap, 2), planned)
    paid = ~blocked
    mule = plan.mule[event]
    yes, no = np.ones(len(event), dtype=bool), np.zeros(len(event), dtype=bool)
    transfer = _Rows(
        code=np.full(len(event), _TRANSFER, dtype=np.int8), amount=amount,
        orig=plan.victim[event], old_orig=before,
        new_orig=np.where(blocked, before, np.round(before - amount, 2)),
        dest=mule, old_dest=np.zeros(len(event)), new_dest=np.where(blocked, 0.0, amount),
        fraud=yes, flagged=blocked, overdraft=no,
    )
    agent_before = accounts.balance[plan.agent][event] + _earlier_in_group(np.where(paid, amount, 0.0), event)
    cash_out = _Rows(
        code=np.full(int(paid.sum()), _CASH_OUT, dtype=np.int8), amount=amount[paid],
        orig=mule[paid], old_orig=amount[paid], new_orig=np.zeros(int(paid.sum())),
        dest=plan.agent[event][paid], old_dest=np.round(agent_before[paid], 2),
        new_dest=np.round(agent_before[paid] + amount[paid], 2),
        fraud=yes[paid], flagged=no[paid], overdraft=no[paid],
    )
    _commit_takeovers(plan, transfer, cash_out, accounts)
    order = np.argsort(np.concatenate([2 * np.arange(len(event)), 2 * np.flatnonzero(paid) + 1]), kind="stable")
    return _Rows.concat([transfer, cash_out]).take(order)


def _commit_takeovers(plan: _Takeovers, transfer: _Rows, cash_out: _Rows, accounts: _Accounts) -> None:
    """Write each takeover's end state: victim emptied (or left as blocked), mule empty again, agent paid."""
    accounts.update(plan.victim, transfer.new_orig[np.cumsum(plan.chunks) - 1])
    if len(cash_out):
        last = np.r_[np.flatnonzero(np.diff(cash_out.dest) != 0), len(cash_out) - 1]
        accounts.update(cash_out.dest[last], cash_out.new_dest[last])


# --------------------------------------------------------------------------- the step loop


def _interleave(normal: _Rows, frauds: _Rows, event_rows: np.ndarray, rng: np.random.Generator) -> _Rows:
    """Shuffle the step's rows, keeping each takeover's rows together and in order."""
    sizes = np.concatenate([np.ones(len(normal), dtype=np.int64), event_rows])
    order = rng.permutation(len(sizes))
    starts = (np.cumsum(sizes) - sizes)[order]
    sizes = sizes[order]
    offsets = np.arange(sizes.sum()) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    return _Rows.concat([normal, frauds]).take(np.repeat(starts, sizes) + offsets)


class _Simulation:
    """The month, step by step: cumulative row targets, the accounts, and what was emitted so far.

    Fraud rows follow their own (flat) hourly profile and ordinary rows the
    real volume profile. Takeovers are planned to keep the fraud rows on
    their cumulative target; ordinary rows fill each step up to the
    cumulative total, so the month ends at exactly ``n_rows`` rows.
    """

    def __init__(self, n_rows: int, seed: int, config: SimulationConfig) -> None:
        self.tables = _Tables.of(config.resolved_calibration())
        rng = np.random.default_rng(seed)
        frauds = round(n_rows * self.tables.fraud_row_rate)
        fraud_pdf, step_pdf = (np.diff(cdf, prepend=0.0) for cdf in (self.tables.fraud_step_cdf, self.tables.step_cdf))
        self.fraud_target = np.cumsum(rng.multinomial(frauds, fraud_pdf))
        self.total_target = np.cumsum(rng.multinomial(n_rows - frauds, step_pdf)) + self.fraud_target
        self.n_rows = n_rows
        self.accounts = _Accounts(n_rows, frauds // 2, config, self.tables, rng)
        self.refresh_steps = config.pool_refresh_steps
        self.emitted = 0
        self.fraud_emitted = 0

    def run_step(self, step: int) -> _Rows:
        """One hour: takeovers that keep the fraud rows on target, then ordinary rows up to the row target."""
        if step % self.refresh_steps == 0:
            self.accounts.refresh_pools()
        events = max(0, (int(self.fraud_target[step - 1]) - self.fraud_emitted + 1) // 2)
        takeovers = _plan_takeovers(events, step, self.accounts, self.tables) if events else _Takeovers.none()
        takeovers = takeovers.within(self.n_rows - self.emitted, self.accounts, step)
        frauds = _fraud_rows(takeovers, self.accounts, self.tables)
        count = max(int(self.total_target[step - 1]) - self.emitted - len(frauds), 0)
        normal = _normal_rows(count, step, self.accounts, self.tables)
        self.emitted += len(normal) + len(frauds)
        self.fraud_emitted += len(frauds)
        return _interleave(normal, frauds, takeovers.rows, self.accounts.rng)

    def names(self) -> np.ndarray:
        """PaySim-style names, people (mules, clients) first, then merchants: ``C`` or ``M`` + a random number."""
        people, merchants = self.accounts.count, self.accounts.merchants
        numbers = (self.accounts.rng.choice(2**31 - 10**8, size=people + merchants, replace=False) + 10**8).tolist()
        names = [f"C{number}" for number in numbers[:people]] + [f"M{number}" for number in numbers[people:]]
        return np.array(names, dtype=object)


def _frame(parts: list[_Rows], names: np.ndarray, people: int) -> pd.DataFrame:
    """The canonical table; merchant indices (negative) follow the ``people`` mule and client names."""
    rows = _Rows.concat(parts)
    rows.dest = np.where(rows.dest < 0, people - 1 - rows.dest, rows.dest)
    frame = pd.DataFrame({
        "step": np.repeat(np.arange(1, STEPS + 1, dtype=np.int32), [len(part) for part in parts]),
        "type": pd.Categorical.from_codes(rows.code, categories=list(TRANSACTION_TYPES)),
        "amount": rows.amount,
        "name_orig": names[rows.orig],
        "old_balance_orig": rows.old_orig,
        "new_balance_orig": rows.new_orig,
        "name_dest": names[rows.dest],
        "old_balance_dest": rows.old_dest,
        "new_balance_dest": rows.new_dest,
        "is_fraud": rows.fraud,
        "is_flagged_fraud": rows.flagged,
        "is_unauthorized_overdraft": rows.overdraft,
    })
    return to_canonical(frame)


def simulate(
    n_rows: int, *, seed: int = 0, progress: bool = True, config: SimulationConfig | None = None
) -> pd.DataFrame:
    """Simulate ``n_rows`` PaySim transactions over steps 1..743 as the canonical table of :mod:`fraudlab.data.readers`.

    Args:
        n_rows: rows to produce (exactly), e.g. 2_000_000.
        seed: the same seed gives the same table.
        progress: show a progress bar.
        config: population and behaviour settings (default :class:`SimulationConfig`).

    Raises:
        SimulationError: ``n_rows`` or ``seed`` is not a valid value.
    """
    if isinstance(n_rows, bool) or not isinstance(n_rows, int | np.integer) or n_rows < 1:
        raise SimulationError(f"Invalid n_rows {n_rows!r}: give a whole number of rows >= 1, e.g. 2_000_000.")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise SimulationError(f"Invalid seed {seed!r}: give a whole number >= 0.")
    simulation = _Simulation(int(n_rows), int(seed), config or SimulationConfig())
    parts = []
    with tqdm(total=int(n_rows), desc="Simulating PaySim", unit=" rows", unit_scale=True, disable=not progress) as bar:
        for step in range(1, STEPS + 1):
            parts.append(simulation.run_step(step))
            bar.update(len(parts[-1]))
    return _frame(parts, simulation.names(), simulation.accounts.count)


# --------------------------------------------------------------------------- fidelity against the real rows
