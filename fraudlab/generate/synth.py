"""The transaction synthesizer: SDV's Gaussian copula with the structure PaySim data needs.

SDV's ``GaussianCopulaSynthesizer`` used as is on PaySim rows breaks the
accounting identities on most rows, cannot produce the exact zero balances
that make up a third to a half of each balance column, and loses the fraud
signal (see ``docs/synth.md`` for the measurements). :class:`TransactionSynthesizer`
keeps SDV's copula as the engine and puts three pieces of structure around it:

1. **Segments.** One copula per (``type``, ``is_fraud``) segment, so every
   transaction type keeps its own amounts, balances and dependence, and the
   rare fraud segments are fitted on their own rows. Segment shares are
   learned (optionally weighted) and can be overridden at sampling time, which
   is how the fraud rate is controlled.
2. **Explicit marginals.** Every continuous column enters the copula as a
   normal score through its own empirical quantile table (in log space for
   money), so heavy tails come out as they went in; exact zeros are modelled
   by a separate latent indicator, as are the segment's *modes* (does the
   destination balance follow the amount? does a fraud empty the account?).
   SDV then fits only the dependence between these normal scores.
3. **Derived columns.** ``new_balance_orig`` is never sampled: it is computed
   from the accounting rules (``fraudlab.schema.rules``); so is ``new_balance_dest``
   in the rows whose mode says it follows the amount, and the fraud amount in
   rows that empty the account. Merchant destinations keep zero balances.

Sampling draws from the fitted copula's own parameters (its correlation
matrix and normal marginals) with numpy: the same distribution SDV's sampler
draws from, but vectorised and seeded per call. A model is saved as an
``.npz`` of plain arrays (never a pickle) plus a JSON manifest holding its
SHA-256; :meth:`TransactionSynthesizer.load` checks the format version and
the checksum before reading anything.
"""

from __future__ import annotations

import hashlib
import io
import json
import platform
import time
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import special
from tqdm.auto import tqdm

from fraudlab import config
from fraudlab.artefacts import verified_payload
from fraudlab.exceptions import DataValidationError, InvalidParameterError, ModelFileError, NotFittedError
from fraudlab.schema.rules import MONEY_TOLERANCE, booked_origin_balance
from fraudlab.schema.table import BALANCE_COLUMNS, CANONICAL_COLUMNS, TRANSACTION_TYPES, to_canonical

__all__ = [
    "DEFAULT_MODEL",
    "FORMAT_VERSION",
    "SegmentModel",
    "TrainingData",
    "TransactionSynthesizer",
    "load_training_data",
    "sample_in_chunks",
    "table_fingerprint",
]

FORMAT_VERSION = 1
#: The pre-trained 20-lakh model, package data of ``fraudlab.pretrained`` (see models/README.md). Found through
#: importlib.resources so an installed wheel has it too; on any file-system install it is a real file, its
#: manifest beside it.
DEFAULT_MODEL = Path(str(files("fraudlab.pretrained") / "gaussian_copula_20L.npz"))
ARTEFACT_KIND = "fraudlab.TransactionSynthesizer"
#: PaySim caps a single transfer at 10 million; a fraud on a larger account moves exactly this much.
MAX_TRANSFER = 10_000_000.0
_QUANTILE_KNOTS = 2049
_EPS = 1e-7
_MERCHANT_TYPE = "PAYMENT"




# --------------------------------------------------------------------------- marginals


def _normal_ppf(u: np.ndarray) -> np.ndarray:
    return special.ndtri(np.clip(u, _EPS, 1 - _EPS))


def _normal_scores(values: np.ndarray) -> np.ndarray:
    """Normal scores of ``values`` by mid-rank (ties share a score), as a copula expects."""
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    first = np.searchsorted(sorted_values, sorted_values, side="left")
    last = np.searchsorted(sorted_values, sorted_values, side="right")
    ranks = np.empty(len(values))
    ranks[order] = (first + last) / 2.0
    return _normal_ppf(ranks / len(values))


def _fit_knots(values: np.ndarray, *, log: bool) -> np.ndarray:
    """Quantiles of ``log1p(values)`` (money) or ``values`` at evenly spaced probabilities."""
    space = np.log1p(values) if log else values.astype("float64")
    if space.size == 0:
        space = np.zeros(1)
    return np.quantile(space, np.linspace(0.0, 1.0, _QUANTILE_KNOTS))


def _from_normal(scores: np.ndarray, knots: np.ndarray, *, log: bool) -> np.ndarray:
    """Invert a quantile table: normal score -> probability -> linear interpolation between knots."""
    position = special.ndtr(scores) * (len(knots) - 1)
    index = np.minimum(position.astype(np.int64), len(knots) - 2)
    space = knots[index] + (position - index) * (knots[index + 1] - knots[index])
    return np.expm1(space) if log else space


def _latent_indicator(flags: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Encode a boolean as a normal score: True below the threshold ``ndtri(p)``, False above.

    Drawing each row uniformly inside its side of the threshold gives an
    exactly standard-normal column whose correlation with the others the
    copula can learn; decoding is ``score < threshold``.
    """
    share = float(flags.mean()) if flags.size else 0.0
    u = rng.uniform(size=len(flags))
    u = np.where(flags, u * share, share + u * (1.0 - share))
    return _normal_ppf(u), share


# --------------------------------------------------------------------------- one segment


@dataclass
class SegmentModel:
    """Everything learned about one (type, is_fraud) segment.

    Attributes:
        columns: the latent copula columns, in the order of ``correlation``.
        correlation, loc, scale: the fitted SDV copula (correlation matrix and
            the normal marginals of the latent columns).
        knots: quantile tables of the continuous columns.
        shares: the share of True of each latent boolean (zero, mode and flag indicators).
    """

    type: str
    is_fraud: bool
    share: float
    rows: int
    max_step: int
    columns: list[str]
    correlation: np.ndarray
    loc: np.ndarray
    scale: np.ndarray
    knots: dict[str, np.ndarray]
    shares: dict[str, float]
    sdv: Any = field(default=None, repr=False, compare=False)

    @property
    def key(self) -> tuple[str, bool]:
        return (self.type, self.is_fraud)

    def correlation_frame(self) -> pd.DataFrame:
        """The copula's correlation matrix, labelled by latent column."""
        return pd.DataFrame(self.correlation, index=self.columns, columns=self.columns)

    def marginal_quantiles(self, name: str, probabilities: np.ndarray) -> np.ndarray:
        """Quantiles of a continuous column (in its own units) at ``probabilities``, from its quantile table."""
        if name not in self.knots:
            raise InvalidParameterError(f"Segment {self.type}/{self.is_fraud} has no continuous column {name!r}; "
                                f"it has {sorted(self.knots)}.")
        return _from_normal(special.ndtri(np.clip(probabilities, _EPS, 1 - _EPS)), self.knots[name],
                            log=name != "step")

    def draw_latent(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Draw ``n`` rows of the copula: correlated normals mapped through the normal marginals."""
        normals = rng.standard_normal((n, len(self.columns))) @ _cholesky(self.correlation).T
        values = self.loc + self.scale * normals
        return {name: values[:, i] for i, name in enumerate(self.columns)}

    def structure(self) -> dict[str, Any]:
        """The JSON-safe part of the segment (arrays are stored separately)."""
        return {
            "type": self.type, "is_fraud": self.is_fraud, "share": self.share, "rows": self.rows,
            "max_step": self.max_step, "columns": self.columns, "shares": self.shares, "knots": sorted(self.knots),
        }


def _cholesky(correlation: np.ndarray) -> np.ndarray:
    """Cholesky factor of a correlation matrix, nudged to positive definite if rounding left it singular."""
    try:
        return np.linalg.cholesky(correlation)
    except np.linalg.LinAlgError:
        values, vectors = np.linalg.eigh(correlation)
        fixed = vectors @ np.diag(np.maximum(values, 1e-9)) @ vectors.T
        scale = np.sqrt(np.diag(fixed))
        return np.linalg.cholesky(fixed / np.outer(scale, scale))


def _follows(actual: np.ndarray, expected: np.ndarray) -> np.ndarray:
    return np.abs(actual - expected) <= MONEY_TOLERANCE


def _dest_expected(kind: str, old_dest: np.ndarray, amount: np.ndarray) -> np.ndarray:
    """The destination balance PaySim usually books: credited for debits, debited (floored) for CASH_IN."""
    return np.maximum(old_dest - amount, 0.0) if kind == "CASH_IN" else old_dest + amount


def _fraud_amount(old_orig: np.ndarray) -> np.ndarray:
    return np.minimum(old_orig, MAX_TRANSFER)


class _Encoder:
    """Builds one segment's latent table column by column (fit side)."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.latent: dict[str, np.ndarray] = {}
        self.knots: dict[str, np.ndarray] = {}
        self.shares: dict[str, float] = {}

    def flag(self, name: str, flags: np.ndarray) -> None:
        self.latent[name], self.shares[name] = _latent_indicator(flags, self.rng)

    def value(self, name: str, values: np.ndarray, mask: np.ndarray, *, log: bool = True) -> None:
        """A continuous column; rows outside ``mask`` (zeros, derived rows) get independent filler scores."""
        scores = self.rng.standard_normal(len(values))
        scores[mask] = _normal_scores(values[mask])
        self.latent[name] = scores
        self.knots[name] = _fit_knots(values[mask], log=log)


def _encode_segment(kind: str, is_fraud: bool, rows: pd.DataFrame, rng: np.random.Generator) -> _Encoder:
    """Latent columns of one segment: values as normal scores, zeros and modes as indicators."""
    enc = _Encoder(rng)
    everything = np.ones(len(rows), dtype=bool)
    amount = rows["amount"].to_numpy(dtype="float64")
    old_orig = rows["old_balance_orig"].to_numpy(dtype="float64")
    enc.value("step", rows["step"].to_numpy(dtype="float64"), everything, log=False)
    enc.flag("old_orig_zero", old_orig == 0)
    enc.value("old_orig", old_orig, old_orig > 0)
    if is_fraud:
        empties = _follows(amount, _fraud_amount(old_orig))
        enc.flag("empties_origin", empties)
        enc.value("amount", amount, ~empties)
        enc.flag("flagged", rows["is_flagged_fraud"].to_numpy(dtype=bool))
    else:
        enc.value("amount", amount, everything)
    if kind != _MERCHANT_TYPE:
        old_dest = rows["old_balance_dest"].to_numpy(dtype="float64")
        new_dest = rows["new_balance_dest"].to_numpy(dtype="float64")
        follows = _follows(new_dest, _dest_expected(kind, old_dest, amount))
        enc.flag("old_dest_zero", old_dest == 0)
        enc.value("old_dest", old_dest, old_dest > 0)
        enc.flag("dest_follows", follows)
        enc.flag("new_dest_zero", new_dest == 0)
        enc.value("new_dest", new_dest, (new_dest > 0) & ~follows)
    enc.flag("overdraft", rows["is_unauthorized_overdraft"].to_numpy(dtype=bool))
    return enc


def _decode_segment(segment: SegmentModel, latent: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Turn latent draws into the segment's money columns, deriving what the accounting rules fix."""
    n = len(latent["step"])

    def value(name: str) -> np.ndarray:
        return np.round(_from_normal(latent[name], segment.knots[name], log=name != "step"), 2)

    def flag(name: str) -> np.ndarray:
        share = segment.shares[name]
        if share in (0.0, 1.0):
            return np.full(n, share == 1.0)
        return latent[name] < special.ndtri(share)

    old_orig = np.where(flag("old_orig_zero"), 0.0, value("old_orig"))
    amount = value("amount")
    flagged = np.zeros(n, dtype=bool)
    if segment.is_fraud:
        amount = np.where(flag("empties_origin"), _fraud_amount(old_orig), amount)
        flagged = flag("flagged")
    new_orig = booked_origin_balance(old_orig, amount, cash_in=segment.type == "CASH_IN", blocked=flagged)
    if segment.type == _MERCHANT_TYPE:
        old_dest = new_dest = np.zeros(n)
    else:
        old_dest = np.where(flag("old_dest_zero"), 0.0, value("old_dest"))
        free_dest = np.where(flag("new_dest_zero"), 0.0, value("new_dest"))
        new_dest = np.where(flag("dest_follows"), _dest_expected(segment.type, old_dest, amount), free_dest)
    return {
        "step": np.clip(np.rint(value("step")), 1, segment.max_step).astype("int32"),
        "type": np.full(n, TRANSACTION_TYPES.index(segment.type), dtype="int8"),
        "amount": amount,
        "old_balance_orig": old_orig,
        "new_balance_orig": np.round(new_orig, 2),
        "old_balance_dest": old_dest,
        "new_balance_dest": np.round(new_dest, 2),
        "is_fraud": np.full(n, segment.is_fraud),
        "is_flagged_fraud": flagged,
        "is_unauthorized_overdraft": flag("overdraft"),
        "merchant": np.full(n, segment.type == _MERCHANT_TYPE),
    }


@cache
def _name_pool(prefix: str, size: int = 1 << 18) -> np.ndarray:
    """A fixed pool of PaySim-style account names (prefix + number), drawn once per process.

    Accounts recur across sampled rows as they do in a real ledger; none is
    taken from the training rows.
    """
    numbers = np.random.default_rng(sum(map(ord, prefix))).integers(100_000_000, 2_147_483_647, size=size)
    return np.char.add(prefix, numbers.astype("U10")).astype(object)


def _assemble(parts: list[dict[str, np.ndarray]], rng: np.random.Generator) -> pd.DataFrame:
    """Concatenate segment draws, shuffle the rows, name the accounts and type the columns canonically."""
    columns = {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
    order = rng.permutation(len(columns["step"]))
    columns = {name: values[order] for name, values in columns.items()}
    n = len(order)
    customers, merchants = _name_pool("C"), _name_pool("M")
    merchant = columns.pop("merchant")
    name_dest = customers[rng.integers(len(customers), size=n)]
    name_dest[merchant] = merchants[rng.integers(len(merchants), size=int(merchant.sum()))]
    columns["type"] = pd.Categorical.from_codes(columns["type"], categories=list(TRANSACTION_TYPES))
    columns["name_orig"] = customers[rng.integers(len(customers), size=n)]
    columns["name_dest"] = name_dest
    return pd.DataFrame({name: columns[name] for name in CANONICAL_COLUMNS})


# --------------------------------------------------------------------------- SDV engine


_PREPROCESS_PROBE_ROWS = 5_000


def _fit_copula(latent: pd.DataFrame) -> Any:
    """Fit SDV's Gaussian copula on the latent columns (normal marginals: they are normal by construction).

    SDV's ``fit`` validates every cell with a Python call per value, which is
    most of the fitting time at 20 lakh rows, for a table this module built
    itself (complete float64 scores). So the data processor is fitted with
    SDV's ``preprocess`` on a probe of the rows; when that leaves the probe
    unchanged (the case for complete numerical columns with rounding and
    clipping off), the full table already is "processed data" and goes to
    SDV's public ``fit_processed_data``. Otherwise the plain ``fit`` runs.
    """
    from sdv.metadata import Metadata
    from sdv.single_table import GaussianCopulaSynthesizer

    metadata = Metadata.load_from_dict({
        "tables": {"segment": {"columns": {name: {"sdtype": "numerical"} for name in latent.columns}}}
    })
    copula = GaussianCopulaSynthesizer(
        metadata, enforce_min_max_values=False, enforce_rounding=False, default_distribution="norm"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        probe = latent.head(_PREPROCESS_PROBE_ROWS)
        processed = copula.preprocess({"segment": probe})["segment"]
        if processed.equals(probe):
            copula.fit_processed_data({"segment": latent})
        else:
            copula.fit({"segment": latent})
    return copula


def _copula_parameters(copula: Any, columns: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The fitted correlation matrix and normal marginals (loc, scale), in ``columns`` order."""
    learned = copula._model.to_dict()
    order = [learned["columns"].index(name) for name in columns]
    correlation = np.asarray(learned["correlation"], dtype="float64")[np.ix_(order, order)]
    loc = np.array([learned["univariates"][i]["loc"] for i in order], dtype="float64")
    scale = np.array([learned["univariates"][i]["scale"] for i in order], dtype="float64")
    return correlation, loc, scale


# --------------------------------------------------------------------------- validation


def table_fingerprint(table: pd.DataFrame) -> str:
    """A SHA-256 over the canonical table's contents (row order included): which data a model saw."""
    hashed = pd.util.hash_pandas_object(table[list(CANONICAL_COLUMNS)], index=False).to_numpy()
    return hashlib.sha256(hashed.tobytes()).hexdigest()


def _check_table(table: pd.DataFrame) -> pd.DataFrame:
    if table.empty:
        raise DataValidationError("training table", ["the table has no rows"])
    missing = [c for c in CANONICAL_COLUMNS if c not in table.columns]
    if missing:
        raise DataValidationError("training table", [f"missing column {c!r}" for c in missing])
    unknown = sorted(set(table["type"].dropna().astype(str)) - set(TRANSACTION_TYPES))
    if unknown:
        raise DataValidationError(
            "training table", [f"column 'type': unknown value {u!r} (expected one of {TRANSACTION_TYPES})"
                               for u in unknown],
        )
    canonical = to_canonical(table)
    problems = [f"column {c!r}: {int(canonical[c].isna().sum())} missing value(s)"
                for c in ("step", "amount", *BALANCE_COLUMNS) if canonical[c].isna().any()]
    if problems:
        raise DataValidationError("training table", problems)
    return canonical


def _largest_remainder(total: int, shares: np.ndarray) -> np.ndarray:
    raw = shares / shares.sum() * total if shares.sum() > 0 else np.zeros(len(shares))
    counts = np.floor(raw).astype(int)
    counts[np.argsort(-(raw - counts), kind="stable")[: total - counts.sum()]] += 1
    return counts


def _allocate(total: int, shares: np.ndarray, fraud: np.ndarray) -> np.ndarray:
    """Split ``total`` rows over segments: first frauds vs the rest, then within each, by largest remainder.

    Rounding the fraud count once (rather than per segment) makes the fraud
    rate of a sample the requested one to the nearest row.
    """
    frauds = round(total * shares[fraud].sum() / shares.sum())
    counts = np.zeros(len(shares), dtype=int)
    counts[fraud] = _largest_remainder(frauds, shares[fraud])
    counts[~fraud] = _largest_remainder(total - frauds, shares[~fraud])
    return counts


def _npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    """A compressed ``.npz`` whose bytes depend only on the arrays (fixed entry times), so refits reproduce it."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, array in arrays.items():
            entry = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            entry.compress_type = zipfile.ZIP_DEFLATED
            with archive.open(entry, "w") as handle:
                np.lib.format.write_array(handle, np.asarray(array), allow_pickle=False)
    return buffer.getvalue()


def _library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in ("fraudlab", "sdv", "copulas", "numpy", "pandas", "scipy"):
        try:
            versions[name] = package_version(name)
        except PackageNotFoundError:
            continue
    return versions


# --------------------------------------------------------------------------- public API


class TransactionSynthesizer:
    """Fit on a canonical PaySim table; sample any number of realistic, rule-abiding transactions.

    Args:
        min_segment_rows: (type, is_fraud) segments with fewer training rows
            are not modelled, and so never sampled.
        seed: seed of the fitting randomness (latent encodings of zeros and modes).
    """

    def __init__(self, *, min_segment_rows: int = 20, seed: int = 0) -> None:
        if min_segment_rows < 2:
            raise InvalidParameterError(f"Invalid min_segment_rows {min_segment_rows!r}: use at least 2.")
        self.min_segment_rows = min_segment_rows
        self.seed = seed
        self.segments: list[SegmentModel] = []
        self.training: dict[str, Any] = {}
        #: Wall-clock seconds of the last ``fit`` in this process (None for a loaded model).
        self.fit_seconds: float | None = None

    # ---- fitting
    def fit(self, table: pd.DataFrame, *, weights: Sequence[float] | np.ndarray | None = None,
            progress: bool = True, source: str = "table") -> TransactionSynthesizer:
        """Learn segment shares, marginals and one SDV copula per segment.

        Args:
            table: canonical transactions (see ``fraudlab.data.readers``).
            weights: optional per-row weights for the segment shares, e.g. to fit
                on real non-frauds plus the filtered all-frauds file without
                inflating the fraud rate.
            progress: show a progress bar over segments.
            source: where the rows came from, kept in the manifest.

        Raises:
            DataValidationError: missing columns, unknown types, or missing values.
        """
        started = time.perf_counter()
        canonical = _check_table(table)
        row_weights = np.ones(len(canonical)) if weights is None else np.asarray(weights, dtype="float64")
        if row_weights.shape != (len(canonical),) or not (row_weights >= 0).all():
            raise InvalidParameterError(
                f"Invalid weights: expected {len(canonical)} non-negative numbers, one per row."
            )
        rng = np.random.default_rng(self.seed)
        groups = canonical.groupby(["type", "is_fraud"], observed=True, sort=True).indices
        keys = [key for key, index in groups.items() if len(index) >= self.min_segment_rows]
        if not keys:
            raise InvalidParameterError(
                f"No (type, is_fraud) segment has {self.min_segment_rows} rows or more; fit on a larger table."
            )
        total_weight = row_weights[np.concatenate([groups[k] for k in keys])].sum()
        max_step = int(canonical["step"].max())
        self.segments = [
            self._fit_segment(str(kind), bool(fraud), canonical.iloc[groups[(kind, fraud)]],
                              float(row_weights[groups[(kind, fraud)]].sum() / total_weight), max_step, rng)
            for kind, fraud in tqdm(keys, desc="Fitting segments", disable=not progress)
        ]
        self.training = {
            "rows": len(canonical), "fingerprint": table_fingerprint(canonical), "source": source,
            "weighted": weights is not None,
        }
        self.fit_seconds = round(time.perf_counter() - started, 2)
        return self

    @staticmethod
    def _fit_segment(kind: str, is_fraud: bool, rows: pd.DataFrame, share: float, max_step: int,
                     rng: np.random.Generator) -> SegmentModel:
        encoded = _encode_segment(kind, is_fraud, rows, rng)
        latent = pd.DataFrame(encoded.latent)
        copula = _fit_copula(latent)
        columns = list(latent.columns)
        correlation, loc, scale = _copula_parameters(copula, columns)
        return SegmentModel(
            type=kind, is_fraud=is_fraud, share=share, rows=len(rows), max_step=max_step, columns=columns,
            correlation=correlation, loc=loc, scale=scale, knots=encoded.knots, shares=encoded.shares, sdv=copula,
        )

    @property
    def is_fitted(self) -> bool:
        return bool(self.segments)

    def segment_table(self) -> pd.DataFrame:
        """One row per modelled segment: its share of sampled rows, training rows and latent columns."""
        self._require_fitted()
        return pd.DataFrame([
            {"type": s.type, "is_fraud": s.is_fraud, "share": s.share, "training_rows": s.rows,
             "latent_columns": len(s.columns)}
            for s in self.segments
        ])

    def segment(self, kind: str, is_fraud: bool = False) -> SegmentModel:
        """The fitted model of one segment, e.g. ``segment("TRANSFER", is_fraud=True)``."""
        self._require_fitted()
        for candidate in self.segments:
            if candidate.key == (kind, is_fraud):
                return candidate
        known = ", ".join(f"{s.type}/{'fraud' if s.is_fraud else 'genuine'}" for s in self.segments)
        raise InvalidParameterError(f"No segment type={kind!r}, is_fraud={is_fraud!r} in this model; it has: {known}.")

    def natural_fraud_rate(self) -> float:
        """The fraud share learned from the training rows (weighted if weights were given)."""
        self._require_fitted()
        return float(sum(s.share for s in self.segments if s.is_fraud))

    def _require_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError("This TransactionSynthesizer has not been fitted. Call fit(table) first, "
                                 "or load a saved model with TransactionSynthesizer.load(path).")

    # ---- sampling
    def _segment_shares(self, fraud_rate: float | None, conditions: Mapping[str, Any] | None) -> np.ndarray:
        conditions = dict(conditions or {})
        unknown = sorted(set(conditions) - {"type", "is_fraud"})
        if unknown:
            raise InvalidParameterError(f"Unsupported condition(s) {unknown}: condition on 'type' and/or 'is_fraud'.")
        wanted = conditions.get("type", TRANSACTION_TYPES)
        wanted = [wanted] if isinstance(wanted, str) else list(wanted)
        bad = sorted(set(wanted) - set(TRANSACTION_TYPES))
        if bad:
            raise InvalidParameterError(f"Invalid condition type={bad!r}: expected any of {TRANSACTION_TYPES}.")
        shares = np.array([
            s.share if s.type in wanted and conditions.get("is_fraud", s.is_fraud) == s.is_fraud else 0.0
            for s in self.segments
        ])
        if fraud_rate is not None:
            shares = self._rescale_fraud(shares, fraud_rate, conditions)
        if shares.sum() == 0:
            raise InvalidParameterError(f"No modelled segment matches the conditions {conditions}.")
        return shares

    def _rescale_fraud(self, shares: np.ndarray, fraud_rate: float, conditions: Mapping[str, Any]) -> np.ndarray:
        if not 0.0 <= fraud_rate <= 1.0:
            raise InvalidParameterError(f"Invalid fraud_rate {fraud_rate!r}: use a share between 0 and 1.")
        fraud = np.array([s.is_fraud for s in self.segments])
        rescaled = shares.copy()
        for label, mask, target in (("fraud", fraud, fraud_rate), ("non-fraud", ~fraud, 1.0 - fraud_rate)):
            subtotal = shares[mask].sum()
            if target > 0 and subtotal == 0:
                raise InvalidParameterError(f"fraud_rate {fraud_rate!r} needs {label} rows, but the model has no "
                                            f"{label} segment matching the conditions {dict(conditions)}.")
            if subtotal > 0:
                rescaled[mask] = shares[mask] / subtotal * target
        return rescaled

    def sample(self, n: int, *, seed: int | None = None, conditions: Mapping[str, Any] | None = None,
               fraud_rate: float | None = None) -> pd.DataFrame:
        """Sample ``n`` transactions in the canonical table layout, rows shuffled.

        Args:
            n: number of rows.
            seed: makes the sample reproducible; ``None`` draws fresh randomness.
            conditions: restrict to ``{"type": "TRANSFER" | [...], "is_fraud": bool}``.
            fraud_rate: share of fraud rows (exact up to rounding); ``None`` keeps
                the natural rate learned at fit time (within the conditions).
        """
        self._require_fitted()
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
            raise InvalidParameterError(f"Invalid n {n!r}: the number of rows must be a non-negative integer.")
        fraud = np.array([s.is_fraud for s in self.segments])
        counts = _allocate(int(n), self._segment_shares(fraud_rate, conditions), fraud)
        rng = np.random.default_rng(seed)
        parts = [
            _decode_segment(segment, segment.draw_latent(int(count), rng))
            for segment, count in zip(self.segments, counts, strict=True)
        ]
        return _assemble(parts, rng)

    # ---- persistence
    def save(self, path: str | Path, *, metrics: Mapping[str, Any] | None = None) -> Path:
        """Write the model to ``path`` (``.npz``) and its manifest beside it (``.json``); return the manifest path."""
        self._require_fitted()
        path = Path(path)
        if path.suffix != ".npz":
            raise ModelFileError(f"Invalid model path {str(path)!r}: use a '.npz' file name (the manifest is "
                                 "written beside it as '.json').")
        arrays: dict[str, np.ndarray] = {
            "structure": np.array(json.dumps({
                "kind": ARTEFACT_KIND, "format_version": FORMAT_VERSION, "seed": self.seed,
                "min_segment_rows": self.min_segment_rows, "training": self.training,
                "segments": [s.structure() for s in self.segments],
            })),
        }
        for i, segment in enumerate(self.segments):
            arrays.update({f"{i}/correlation": segment.correlation, f"{i}/loc": segment.loc,
                           f"{i}/scale": segment.scale})
            arrays.update({f"{i}/knots/{name}": knots for name, knots in segment.knots.items()})
        payload = _npz_bytes(arrays)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(payload)
        manifest = {
            "kind": ARTEFACT_KIND, "format_version": FORMAT_VERSION, "model_file": path.name,
            "sha256": hashlib.sha256(payload).hexdigest(), "bytes": len(payload),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "libraries": _library_versions(),
            "training_data": self.training, "fit_seconds": self.fit_seconds,
            "natural_fraud_rate": self.natural_fraud_rate(),
            "segments": [{"type": s.type, "is_fraud": s.is_fraud, "share": s.share, "rows": s.rows}
                         for s in self.segments],
            "metrics": dict(metrics or {}),
        }
        manifest_path = path.with_suffix(".json")
        manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        return manifest_path

    @staticmethod
    def read_manifest(path: str | Path) -> dict[str, Any]:
        """The manifest of a saved model (the ``.npz`` or ``.json`` path), not yet verified."""
        manifest_path = Path(path).with_suffix(".json")
        if not manifest_path.is_file():
            raise ModelFileError(f"No model manifest at {manifest_path}: a model is an .npz plus a .json manifest.")
        try:
            return json.loads(manifest_path.read_text())
        except json.JSONDecodeError as exc:
            raise ModelFileError(f"The manifest {manifest_path} is not valid JSON: {exc}") from exc

    @classmethod
    def load(cls, path: str | Path) -> TransactionSynthesizer:
        """Load a saved model after checking its format version and SHA-256.

        Raises:
            ModelFileError: a missing file, an unknown format version, or a
                checksum mismatch (the model file is then not read at all).
        """
        manifest = cls.read_manifest(path)
        model_path = Path(path).with_suffix(".npz")
        payload = verified_payload(model_path, manifest, manifest_name="its manifest", format_key="kind",
                                   format_name=ARTEFACT_KIND, format_version=FORMAT_VERSION,
                                   remedy="refit it with `fraudlab fit`")
        with np.load(io.BytesIO(payload), allow_pickle=False) as arrays:
            return cls._from_arrays({name: arrays[name] for name in arrays.files})

    @classmethod
    def _from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> TransactionSynthesizer:
        structure = json.loads(str(arrays["structure"]))
        model = cls(min_segment_rows=structure["min_segment_rows"], seed=structure["seed"])
        model.training = structure["training"]
        model.segments = [
            SegmentModel(
                type=s["type"], is_fraud=s["is_fraud"], share=s["share"], rows=s["rows"], max_step=s["max_step"],
                columns=s["columns"], correlation=arrays[f"{i}/correlation"], loc=arrays[f"{i}/loc"],
                scale=arrays[f"{i}/scale"], knots={name: arrays[f"{i}/knots/{name}"] for name in s["knots"]},
                shares=s["shares"],
            )
            for i, s in enumerate(structure["segments"])
        ]
        return model


# --------------------------------------------------------------------------- training data and chunked sampling


@dataclass(frozen=True)
class TrainingData:
    """Rows to fit on, their optional weights, and a description kept in the model's manifest."""

    table: pd.DataFrame
    weights: np.ndarray | None
    description: str


def load_training_data(source: str | Path, *, rows: int | None, seed: int, progress: bool = True) -> TrainingData:
    """Resolve a ``fraudlab fit --source`` value into training rows.

    * ``"simulator"``: ``rows`` fresh rows from fraudlab's PaySim simulator (the default, offline, any size);
    * ``"reference"``: the training half of the bundled real rows (``fraudlab.data.split_reference``,
      seed 0): real non-frauds plus real frauds, weighted back to the population fraud rate, so that
      ``fraudlab evaluate`` can judge the model on the other half (``rows`` is ignored);
    * a path: a PaySim file read by :func:`fraudlab.data.read_transactions`, ``rows`` drawn from it at random.
    """
    if str(source) == "simulator":
        from fraudlab.generate.paysim import simulate

        n = rows or config.FIT_ROWS
        return TrainingData(simulate(n, seed=seed, progress=progress), None, f"simulator (rows={n}, seed={seed})")
    if str(source) == "reference":
        from fraudlab.data.splits import split_reference

        table, weights = split_reference(seed=0).train_rows()
        return TrainingData(table, weights, "bundled real PaySim rows, training half (split seed 0), frauds weighted")
    from fraudlab.data.readers import read_transactions

    table = read_transactions(source, n_rows=rows, seed=seed, progress=progress)
    return TrainingData(table, None, f"{source} (rows={len(table)}, seed={seed})")


def sample_in_chunks(model: TransactionSynthesizer, n: int, *, seed: int | None = None, chunk: int = 500_000,
                     fraud_rate: float | None = None, progress: bool = True) -> pd.DataFrame:
    """Sample ``n`` rows in chunks (each seeded from ``seed``) behind a progress bar; for large ``n``."""
    if chunk < 1:
        raise InvalidParameterError(f"Invalid chunk {chunk!r}: use a positive number of rows.")
    sizes = [chunk] * (n // chunk) + ([n % chunk] if n % chunk else [])
    seeds = np.random.SeedSequence(seed).spawn(len(sizes))
    parts = []
    with tqdm(total=n, desc="Sampling", unit=" rows", unit_scale=True, disable=not progress) as bar:
        for size, child in zip(sizes, seeds, strict=True):
            parts.append(model.sample(size, seed=int(child.generate_state(1)[0]), fraud_rate=fraud_rate))
            bar.update(size)
    if not parts:
        return model.sample(0, seed=seed, fraud_rate=fraud_rate)
    return pd.concat(parts, ignore_index=True)
