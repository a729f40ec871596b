"""SDV's default GaussianCopulaSynthesizer on the canonical table: the yardstick every report is set against.

"Better than SDV's defaults" needs SDV's defaults, fitted on the same real
rows and judged by the same evaluation. This module keeps the SDV model as
it comes (``default_distribution`` left at ``beta``, min/max and rounding
enforced, no constraints) and adds only what the canonical table needs to
exist: the account names. SDV would treat them as identifiers; their first
letter, though, is data (``M`` marks a merchant, whose balances PaySim keeps
at zero), so it is modelled as the categorical column ``dest_kind`` and the
names are drawn around it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from fraudlab.exceptions import InvalidParameterError
from fraudlab.schema.table import BALANCE_COLUMNS, FLAG_COLUMNS, check_table, to_canonical

__all__ = ["BASELINE_COLUMNS", "SdvBaseline", "baseline_metadata", "fit_sdv_baseline"]

#: The columns SDV models: the canonical ones without the names, plus the kind of destination account.
BASELINE_COLUMNS: tuple[str, ...] = ("step", "type", "amount", *BALANCE_COLUMNS, *FLAG_COLUMNS, "dest_kind")
_TABLE = "transactions"
_ACCOUNT_NUMBERS = (100_000_000, 2_000_000_000)


def baseline_metadata() -> dict[str, Any]:
    """SDV metadata for :data:`BASELINE_COLUMNS`, written out so SDV's detection cannot guess differently."""
    sdtypes = {"step": "numerical", "type": "categorical", "amount": "numerical",
               **dict.fromkeys(BALANCE_COLUMNS, "numerical"), **dict.fromkeys(FLAG_COLUMNS, "boolean"),
               "dest_kind": "categorical"}
    return {"tables": {_TABLE: {"columns": {column: {"sdtype": sdtypes[column]} for column in BASELINE_COLUMNS}}}}


def _model_frame(table: pd.DataFrame) -> pd.DataFrame:
    frame = table.loc[:, [c for c in BASELINE_COLUMNS if c != "dest_kind"]].astype({"type": str})
    frame["dest_kind"] = table["name_dest"].astype(str).str[0]
    return frame.reset_index(drop=True)


def _names(prefixes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    numbers = rng.integers(*_ACCOUNT_NUMBERS, size=len(prefixes)).astype(str)
    return np.char.add(prefixes.astype(str), numbers).astype(object)


class SdvBaseline:
    """A fitted SDV GaussianCopulaSynthesizer with default settings that samples canonical tables."""

    def __init__(self, synthesizer: Any, training_rows: int) -> None:
        self._synthesizer = synthesizer
        self.training_rows = training_rows

    @property
    def synthesizer(self) -> Any:
        """The underlying ``sdv.single_table.GaussianCopulaSynthesizer`` (for its parameters, say)."""
        return self._synthesizer

    def sample(self, n_rows: int, *, seed: int = 0) -> pd.DataFrame:
        """Draw ``n_rows`` canonical rows; the same ``seed`` gives the same rows.

        SDV 2.x has no public seed argument: sampling is reset to the state
        right after fitting, then the copula's generator is seeded through
        the hook SDV's own sampling uses.
        """
        if not isinstance(n_rows, int) or isinstance(n_rows, bool) or n_rows < 1:
            raise InvalidParameterError(f"Invalid n_rows {n_rows!r}: give a whole number of rows of at least 1.")
        self._synthesizer.reset_sampling()
        self._synthesizer._set_random_state(seed)
        rows = self._synthesizer.sample(n_rows)[_TABLE]
        rng = np.random.default_rng([seed, 1])
        rows["name_orig"] = _names(np.full(len(rows), "C"), rng)
        rows["name_dest"] = _names(rows.pop("dest_kind").to_numpy(dtype=str), rng)
        return to_canonical(rows)


def fit_sdv_baseline(train: pd.DataFrame) -> SdvBaseline:
    """Fit SDV's default GaussianCopulaSynthesizer (``beta`` marginals) on real canonical rows.

    Fitting is deterministic (SDV seeds its transformers), so the same rows
    give the same model. Fit on rows the evaluation does not test on, such
    as ``fraudlab.evaluate.metrics.split_reference(seed=...).train_sample``.

    Raises:
        EvaluationInputError: ``train`` is no canonical table (missing columns, no rows, NaN).
    """
    from sdv.metadata import Metadata
    from sdv.single_table import GaussianCopulaSynthesizer

    train = check_table(train, "training table")
    synthesizer = GaussianCopulaSynthesizer(Metadata.load_from_dict(baseline_metadata()))
    synthesizer.fit({_TABLE: _model_frame(train)})
    return SdvBaseline(synthesizer, training_rows=len(train))
