"""The canonical transaction table every stage speaks: its columns, their dtypes, and the one table check.

Its money and flag columns carry the names of the ``TransactionRequest``
proto fields, so a row converts to a message without renaming
(:mod:`fraudlab.schema.messages`). Readers of PaySim files
(:mod:`fraudlab.data.readers`) produce it; the simulator and the synthesizer
write it; the evaluation and the plots check it with :func:`check_table`.
"""

from __future__ import annotations

from copy import deepcopy

import numpy as np
import pandas as pd

from fraudlab.exceptions import DataValidationError, EvaluationInputError

__all__ = [
    "BALANCE_COLUMNS",
    "CANONICAL_COLUMNS",
    "FLAG_COLUMNS",
    "MONEY_COLUMNS",
    "TRANSACTION_TYPES",
    "canonical_dtypes",
    "check_table",
    "to_canonical",
]

TRANSACTION_TYPES: tuple[str, ...] = ("CASH_IN", "CASH_OUT", "DEBIT", "PAYMENT", "TRANSFER")
BALANCE_COLUMNS: tuple[str, ...] = ("old_balance_orig", "new_balance_orig", "old_balance_dest", "new_balance_dest")
MONEY_COLUMNS: tuple[str, ...] = ("amount", *BALANCE_COLUMNS)
FLAG_COLUMNS: tuple[str, ...] = ("is_fraud", "is_flagged_fraud", "is_unauthorized_overdraft")
CANONICAL_COLUMNS: tuple[str, ...] = (
    "step", "type", "amount", "name_orig", "old_balance_orig", "new_balance_orig",
    "name_dest", "old_balance_dest", "new_balance_dest", "is_fraud", "is_flagged_fraud",
    "is_unauthorized_overdraft",
)


def canonical_dtypes() -> dict[str, object]:
    """The dtype of every canonical column."""
    money = dict.fromkeys(MONEY_COLUMNS, "float64")
    flags = dict.fromkeys(FLAG_COLUMNS, "bool")
    return {
        "step": "int32",
        "type": pd.CategoricalDtype(list(TRANSACTION_TYPES)),
        "name_orig": "object",
        "name_dest": "object",
        **money,
        **flags,
    }


def to_canonical(frame: pd.DataFrame) -> pd.DataFrame:
    """Order and type the canonical columns of a frame that already has them (extra columns are dropped)."""
    missing = [column for column in CANONICAL_COLUMNS if column not in frame.columns]
    if missing:
        raise DataValidationError("table", [f"missing column {column!r}" for column in missing])
    dtypes = canonical_dtypes()
    out = pd.DataFrame({column: _as_canonical(frame[column], dtypes[column]) for column in CANONICAL_COLUMNS})
    out.attrs = deepcopy(frame.attrs)
    return out


def _as_canonical(values: pd.Series, dtype: object) -> object:
    """One column in its canonical dtype, as an array: the frame built from these copies it once, with a fresh index."""
    if dtype == "bool":
        return pd.to_numeric(values).astype(bool).to_numpy()
    return values.astype(dtype, copy=False).array


# --------------------------------------------------------------------------- the table check


def _first(table: pd.DataFrame, column: str, mask: np.ndarray) -> str:
    """Where a problem first occurs: the row label and the value there."""
    position = int(np.flatnonzero(mask)[0])
    return f"first at row {table.index[position]}: {table[column].iloc[position]!r}"


def _column_problems(table: pd.DataFrame) -> list[str]:
    """Every NaN, infinite, non-numeric, non-flag or unknown-type value, by column, with where it first occurs."""
    problems = []
    for column in CANONICAL_COLUMNS:
        missing = table[column].isna().to_numpy()
        if missing.any():
            problems.append(f"column {column!r}: {int(missing.sum()):,} missing value(s) (NaN), "
                            f"first at row {table.index[np.flatnonzero(missing)[0]]}")
    for column in ("step", *MONEY_COLUMNS):
        values = pd.to_numeric(table[column], errors="coerce").to_numpy(dtype="float64")
        text = np.isnan(values) & table[column].notna().to_numpy()
        if text.any():
            where = _first(table, column, text)
            problems.append(f"column {column!r}: {int(text.sum()):,} value(s) not numbers, {where}")
        elif np.isinf(values).any():
            problems.append(f"column {column!r}: infinite value(s), {_first(table, column, np.isinf(values))}")
    for column in FLAG_COLUMNS:
        values = pd.to_numeric(table[column], errors="coerce")
        bad = (~values.isin([0, 1]) & table[column].notna()).to_numpy()
        if bad.any():
            problems.append(f"column {column!r}: value(s) other than True/False (or 1/0), {_first(table, column, bad)}")
    types = table["type"].astype(str)
    unknown = (~types.isin(TRANSACTION_TYPES) & table["type"].notna()).to_numpy()
    if unknown.any():
        problems.append(f"column 'type': {int(unknown.sum()):,} value(s) not one of {', '.join(TRANSACTION_TYPES)}, "
                        f"{_first(table, 'type', unknown)}")
    return problems


def check_table(table: object, name: str) -> pd.DataFrame:
    """Return ``table`` as a typed canonical table, or raise naming every problem.

    Checked before typing because typing hides problems: a NaN flag would
    silently become True and an unknown type NaN. Extra columns are ignored.

    Raises:
        EvaluationInputError: ``name`` is not a DataFrame, misses canonical
            columns, has no rows, or holds NaN, infinite or invalid values.
    """
    if not isinstance(table, pd.DataFrame):
        raise EvaluationInputError(name, [f"expected a pandas DataFrame, got {type(table).__name__}"])
    missing = [column for column in CANONICAL_COLUMNS if column not in table.columns]
    if missing:
        extra = [str(column) for column in table.columns if column not in CANONICAL_COLUMNS]
        hint = (f"; it has other columns ({', '.join(extra[:6])}): read files with fraudlab.data.read_transactions, "
                "which renames the PaySim layouts" if extra else "")
        raise EvaluationInputError(name, [f"missing column(s) {', '.join(map(repr, missing))}{hint}"])
    if table.empty:
        raise EvaluationInputError(name, ["the table has no rows"])
    problems = _column_problems(table)
    if problems:
        raise EvaluationInputError(name, problems)
    return to_canonical(table)
