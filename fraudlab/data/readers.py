"""The canonical transaction table, readers for PaySim files, and the bundled real rows.

Every part of fraudlab speaks one table: its money and flag columns carry the
names of the ``TransactionRequest`` proto fields, so a row converts to a
message without renaming. Readers accept the two layouts PaySim has been
published in, detected from the header:

* the Kaggle release (``step,type,amount,nameOrig,oldbalanceOrg,...,isFraud,isFlaggedFraud``);
* the raw log of PaySim v2 (``step,action,amount,nameOrig,oldBalanceOrig,...,isUnauthorizedOverdraft``).

The Kaggle file has no overdraft column. PaySim v1, which produced it, wrote
only transactions that went through and dropped the withdrawals an overdraft
limit refused, so no Kaggle row is an unauthorised overdraft:
``is_unauthorized_overdraft`` is ``False`` on every row read from it.
"""

from __future__ import annotations

import gzip
from collections import Counter
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from fraudlab.exceptions import DataValidationError, InvalidParameterError
from fraudlab.schema.table import (
    BALANCE_COLUMNS,
    CANONICAL_COLUMNS,
    FLAG_COLUMNS,
    MONEY_COLUMNS,
    TRANSACTION_TYPES,
    to_canonical,
)

__all__ = [
    "check_output_path",
    "read_transactions",
    "summarize",
    "write_transactions",
]

KAGGLE_LAYOUT: dict[str, str] = {
    "step": "step", "type": "type", "amount": "amount", "nameOrig": "name_orig",
    "oldbalanceOrg": "old_balance_orig", "newbalanceOrig": "new_balance_orig", "nameDest": "name_dest",
    "oldbalanceDest": "old_balance_dest", "newbalanceDest": "new_balance_dest", "isFraud": "is_fraud",
    "isFlaggedFraud": "is_flagged_fraud",
}
RAW_LOG_LAYOUT: dict[str, str] = {
    "step": "step", "action": "type", "amount": "amount", "nameOrig": "name_orig",
    "oldBalanceOrig": "old_balance_orig", "newBalanceOrig": "new_balance_orig", "nameDest": "name_dest",
    "oldBalanceDest": "old_balance_dest", "newBalanceDest": "new_balance_dest", "isFraud": "is_fraud",
    "isFlaggedFraud": "is_flagged_fraud", "isUnauthorizedOverdraft": "is_unauthorized_overdraft",
}
_LAYOUTS: dict[str, dict[str, str]] = {"kaggle": KAGGLE_LAYOUT, "raw-log": RAW_LOG_LAYOUT}
_PROGRESS_MIN_BYTES = 50_000_000
#: Text that ``pandas.to_numeric`` reads as a number (RE2 syntax, for Arrow), once whitespace is trimmed.
_NUMBER_PATTERN = r"^[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|(?i:inf|infinity|nan))$"



# --------------------------------------------------------------------------- layout detection


def _header(path: Path) -> list[str]:
    if path.suffix == ".parquet":
        return pq.read_schema(path).names
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return [name.strip().strip('"') for name in handle.readline().strip().split(",")]


def _detect_layout(path: Path, header: list[str]) -> str:
    names = set(header)
    if set(CANONICAL_COLUMNS) <= names:
        return "canonical"
    if "action" in names or "isUnauthorizedOverdraft" in names:
        layout = "raw-log"
    elif "oldbalanceOrg" in names or "type" in names:
        layout = "kaggle"
    else:
        raise DataValidationError(
            str(path),
            [f"header {','.join(header)!r} is neither the Kaggle PaySim layout "
             f"({','.join(KAGGLE_LAYOUT)}) nor the PaySim raw-log layout ({','.join(RAW_LOG_LAYOUT)})"],
        )
    missing = [column for column in _LAYOUTS[layout] if column not in names]
    if missing:
        raise DataValidationError(str(path), [f"missing column {column!r} ({layout} layout)" for column in missing])
    return layout


# --------------------------------------------------------------------------- reading


def _read_csv_arrow(path: Path, columns: list[str], progress: bool) -> pa.Table:
    """Read only ``columns``, everything as text first so bad values can be located, in streamed blocks."""
    return _stream_csv(path, dict.fromkeys(columns, pa.string()), progress)


def _arrow_type(column: str) -> pa.DataType:
    """The Arrow type a canonical column is parsed as on the fast path."""
    if column == "type":
        return pa.dictionary(pa.int32(), pa.string())
    if column in MONEY_COLUMNS:
        return pa.float64()
    if column in FLAG_COLUMNS:
        return pa.int8()
    return pa.int32() if column == "step" else pa.string()


def _read_csv_typed(path: Path, rename: dict[str, str], progress: bool) -> pa.Table | None:
    """Read the columns already typed (the fast path); ``None`` when a value does not parse as its type."""
    try:
        return _stream_csv(path, {source: _arrow_type(column) for source, column in rename.items()}, progress)
    except pa.ArrowInvalid:
        return None


def _stream_csv(path: Path, column_types: dict[str, pa.DataType], progress: bool) -> pa.Table:
    """Read the given columns in streamed blocks, with a progress bar for large files."""
    convert = pacsv.ConvertOptions(
        include_columns=list(column_types), column_types=column_types, strings_can_be_null=False
    )
    reader = pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=16 << 20), convert_options=convert)
    show = progress and path.stat().st_size >= _PROGRESS_MIN_BYTES
    batches = []
    with tqdm(desc=f"Reading {path.name}", unit=" rows", unit_scale=True, disable=not show) as bar:
        for batch in reader:
            batches.append(batch)
            bar.update(batch.num_rows)
    return pa.Table.from_batches(batches, schema=reader.schema)


def _arrow_is_clean(table: pa.Table, rename: dict[str, str]) -> bool:
    """Whether every row obeys the schema, judged on typed Arrow columns without converting them.

    True means the text-based validation would find nothing; False sends the
    file down that slower path, which names each problem.
    """
    for source, column in rename.items():
        values = table.column(source)
        if values.null_count:
            return False
        if column == "type":
            kinds = values.type.value_type if pa.types.is_dictionary(values.type) else values.type
            if not (pa.types.is_string(kinds) or pa.types.is_large_string(kinds)):
                return False
            if not set(pc.unique(values.cast(kinds)).to_pylist()) <= set(TRANSACTION_TYPES):
                return False
        elif column in ("step", *MONEY_COLUMNS, *FLAG_COLUMNS) and not _numbers_are_clean(values, column):
            return False
    return True


def _numbers_are_clean(values: pa.ChunkedArray, column: str) -> bool:
    """A numeric column with nothing missing (NaN), and money that is finite and not negative."""
    kind = values.type
    if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)):
        return False
    numbers = values.to_numpy()
    if column in MONEY_COLUMNS:
        return bool((numbers >= 0).all() and np.isfinite(numbers).all())
    return not (numbers.dtype.kind == "f" and np.isnan(numbers).any())


def _parsed_numbers(values: pa.ChunkedArray) -> tuple[pa.ChunkedArray, np.ndarray]:
    """A column as float64 (NaN where empty, missing or no number) and a mask of non-empty text that is no number.

    Text is parsed by Arrow with the pattern of what ``pandas.to_numeric``
    accepts: turning millions of cells into Python strings first was most of
    the time a file with a bad row took to read.
    """
    values = _text(values)
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        return pc.fill_null(pc.cast(values, pa.float64()), np.nan), np.zeros(len(values), dtype=bool)
    text = pc.utf8_trim_whitespace(values)
    is_number = pc.fill_null(pc.match_substring_regex(text, _NUMBER_PATTERN), False)
    numbers = pc.cast(pc.if_else(is_number, text, "nan"), pa.float64())
    not_number = pc.fill_null(pc.and_(pc.invert(is_number), pc.not_equal(text, "")), False)
    return numbers, not_number.to_numpy(zero_copy_only=False)


def _text(values: pa.ChunkedArray) -> pa.ChunkedArray:
    """A column without dictionary encoding (parquet may store text that way)."""
    return values.cast(values.type.value_type) if pa.types.is_dictionary(values.type) else values


def _describe(value: object) -> str:
    """A cell as a person would write it: strings quoted, numbers plain, NaN as 'value'."""
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, float | np.floating) and np.isnan(value):
        return "value"
    return str(value.item() if isinstance(value, np.generic) else value)


def _validate_rows(table: pa.Table, rename: dict[str, str]) -> tuple[pa.Table, np.ndarray, list[str], Counter]:
    """Convert the columns and find every row breaking the schema, in Arrow.

    Returns the table with numbers parsed (float64), a mask of bad rows,
    messages naming line, column and value (the first 20 per rule, then a
    count), and the number of rows per reason.
    """
    problems: list[str] = []
    reasons: Counter[str] = Counter()
    bad = np.zeros(table.num_rows, dtype=bool)
    source_of = {column: source for source, column in rename.items()}

    def flag(mask: np.ndarray, column: str, what: str, shown: pa.ChunkedArray) -> None:
        nonlocal bad
        count = int(mask.sum())
        if not count:
            return
        name = source_of.get(column, column)
        problems.extend(
            f"line {index + 2}, column {name!r}: {_describe(shown[int(index)].as_py())} {what}"
            for index in np.flatnonzero(mask)[:20]
        )
        if count > 20:
            problems.append(f"column {name!r}: {count:,} value(s) in all {what}")
        reasons[f"{name} {what}"] += count
        bad |= mask

    columns = {column: table.column(source) for source, column in rename.items()}
    columns["type"] = types = _text(columns["type"])
    flag(~pc.is_in(types, pa.array(TRANSACTION_TYPES)).to_numpy(zero_copy_only=False), "type",
         f"is not one of {', '.join(TRANSACTION_TYPES)}", types)
    numeric = [column for column in ("step", *MONEY_COLUMNS, *FLAG_COLUMNS) if column in columns]
    for column in numeric:
        raw = columns[column]
        columns[column], not_number = _parsed_numbers(raw)
        flag(not_number, column, "is not a number", raw)
    for column in MONEY_COLUMNS:
        values = columns[column].to_numpy()
        flag(np.isnan(values) & ~bad, column, "is missing (NaN)", columns[column])
        flag(np.isinf(values), column, "is infinite", columns[column])
        flag(values < 0, column, "is negative", columns[column])
    for column in ("step", *FLAG_COLUMNS):
        if column in columns:
            flag(np.isnan(columns[column].to_numpy()) & ~bad, column, "is missing", columns[column])
    return pa.table(columns), bad, problems, reasons


def read_transactions(
    path: str | Path,
    *,
    n_rows: int | None = None,
    seed: int = 0,
    on_bad_rows: Literal["raise", "skip"] = "raise",
    progress: bool = True,
) -> pd.DataFrame:
    """Read a PaySim file (``.csv``, ``.csv.gz`` or ``.parquet``) into the canonical table.

    Args:
        path: the file; its layout (Kaggle, raw log, or canonical) is detected from the header.
        n_rows: draw this many rows uniformly at random (without replacement,
            reproducible by ``seed``), keeping file order; ``None`` keeps all.
        seed: seed of the ``n_rows`` draw.
        on_bad_rows: ``"raise"`` (default) stops with every problem listed;
            ``"skip"`` drops the bad rows and records how many and why in
            ``frame.attrs["rejected"]`` (a dict reason -> count).
        progress: show a progress bar for files over 50 MB.

    Raises:
        DataValidationError: naming the file, the line and the column of each problem.
    """
    path = Path(path)
    if not path.is_file():
        raise InvalidParameterError(f"No such transaction file: {path}")
    if on_bad_rows not in ("raise", "skip"):
        raise InvalidParameterError(f"Invalid on_bad_rows {on_bad_rows!r}: use 'raise' or 'skip'.")
    header = _header(path)
    layout = _detect_layout(path, header)
    rename = {c: c for c in CANONICAL_COLUMNS} if layout == "canonical" else _LAYOUTS[layout]
    if path.suffix == ".parquet":
        typed: pa.Table | None = pq.read_table(path, columns=list(rename))
    else:
        typed = _read_csv_typed(path, rename, progress)
    if typed is not None and _arrow_is_clean(typed, rename):
        if n_rows is not None:
            typed = typed.take(_chosen_rows(typed.num_rows, n_rows, seed, path))
        # Account names are nearly all distinct, so pyarrow's de-duplication of strings would only cost time.
        return _finish(_renamed(typed.to_pandas(deduplicate_objects=False), rename), path, layout, {})
    raw = typed if path.suffix == ".parquet" else _read_csv_arrow(path, list(rename), progress)
    parsed, bad, problems, reasons = _validate_rows(raw, rename)
    if bad.any() and on_bad_rows == "raise":
        raise DataValidationError(str(path), problems)
    kept = np.arange(len(bad)) if n_rows is None else _chosen_rows(len(bad), n_rows, seed, path)
    kept_bad = bad[kept]
    frame = parsed.take(kept[~kept_bad]).to_pandas(deduplicate_objects=False)
    return _finish(_renamed(frame, {}), path, layout, dict(reasons) if kept_bad.any() else {})


def _renamed(frame: pd.DataFrame, rename: dict[str, str]) -> pd.DataFrame:
    """Canonical column names; the Kaggle layout has no overdraft column, so it is False (see the module doc)."""
    frame = frame.rename(columns=rename)
    if "is_unauthorized_overdraft" not in frame.columns:
        frame["is_unauthorized_overdraft"] = False
    return frame


def _finish(frame: pd.DataFrame, path: Path, layout: str, rejected: dict[str, int]) -> pd.DataFrame:
    table = to_canonical(frame)
    table.attrs["source"] = str(path)
    table.attrs["layout"] = layout
    table.attrs["rejected"] = rejected
    return table


def _chosen_rows(total: int, n_rows: int, seed: int, path: Path) -> np.ndarray:
    """The positions of an ``n_rows`` uniform draw without replacement, in file order."""
    if n_rows < 1 or n_rows > total:
        raise InvalidParameterError(f"Invalid n_rows {n_rows!r}: {path} has {total:,} rows; choose 1..{total:,}.")
    return np.sort(np.random.default_rng(seed).choice(total, size=n_rows, replace=False))


def summarize(table: pd.DataFrame, weights: np.ndarray | None = None) -> dict[str, object]:
    """The figures a person checks first about a transaction table.

    Rows, fraud rate, type mix, frauds per type and the share of exact-zero
    balances per column; with ``weights`` (e.g. for a fraud-enriched table)
    the rates are population-weighted.
    """
    if table.empty:
        raise InvalidParameterError("Cannot summarize an empty table.")
    w = pd.Series(np.ones(len(table)) if weights is None else np.asarray(weights, dtype="float64"), index=table.index)
    total = w.sum()
    types = table["type"].astype(str)
    fraud = table["is_fraud"].astype(bool)
    return {
        "rows": len(table),
        "fraud_rate": float(w[fraud].sum() / total),
        "type_mix": {t: float(w[types == t].sum() / total) for t in TRANSACTION_TYPES},
        "frauds_by_type": {t: int((fraud & (types == t)).sum()) for t in TRANSACTION_TYPES},
        "zero_share": {c: float(w[table[c] == 0].sum() / total) for c in BALANCE_COLUMNS},
    }


def check_output_path(path: str | Path) -> Path:
    """Refuse an output name :func:`write_transactions` cannot write, before any long work starts."""
    path = Path(path)
    if not path.name.lower().endswith((".parquet", ".csv", ".csv.gz")):
        raise InvalidParameterError(f"Invalid output {str(path)!r}: use a .parquet, .csv or .csv.gz file name.")
    return path


def write_transactions(table: pd.DataFrame, path: str | Path) -> Path:
    """Write a canonical table as ``.parquet``, ``.csv`` or ``.csv.gz`` (chosen by the file name)."""
    path = check_output_path(path)
    name = path.name.lower()
    path.parent.mkdir(parents=True, exist_ok=True)
    canonical = to_canonical(table)
    if name.endswith(".parquet"):
        pq.write_table(pa.Table.from_pandas(canonical, preserve_index=False), path)
        return path
    flags_as_digits = canonical.astype(dict.fromkeys(FLAG_COLUMNS, "int8"))
    arrow = pa.Table.from_pandas(flags_as_digits, preserve_index=False)
    sink = pa.CompressedOutputStream(str(path), "gzip") if name.endswith(".gz") else pa.OSFile(str(path), "wb")
    with sink:
        pacsv.write_csv(arrow, sink, write_options=pacsv.WriteOptions(quoting_style="none"))
    return path


# --------------------------------------------------------------------------- bundled real rows
