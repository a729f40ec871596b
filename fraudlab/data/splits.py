"""Real rows split once into a training and a held-out side, so a synthesizer is judged on rows it never saw.

The split of the bundled rows (:func:`split_reference`) is the one the
synthesizer's real training rows and the evaluation's real test rows come from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fraudlab.data.readers import read_transactions
from fraudlab.data.reference import Reference, load_reference
from fraudlab.exceptions import EvaluationInputError, InvalidParameterError
from fraudlab.schema.table import check_table

__all__ = ["REFERENCE", "TEST_SHARE", "RealSplit", "load_split", "split_reference", "split_table"]

#: Share of the real rows (frauds and non-frauds alike) held out for testing.
TEST_SHARE = 0.5
#: The name that stands for the bundled real rows wherever a real table is chosen by name.
REFERENCE = "reference"
#: A PaySim row is identified by these columns (names are random per transaction), used to deduplicate real rows.
_ROW_KEY = ["step", "type", "amount", "name_orig", "name_dest"]


@dataclass(frozen=True, eq=False)
class RealSplit:
    """Real rows split into a training and a held-out half, with population weights.

    The uniform sample gives the representative rows; a separate table of
    frauds (the bundled file of all real frauds) gives the classifier enough
    positives. Frauds present in both are one row. Each real row lands on
    exactly one side, so a synthesizer fitted on the training side is judged
    only on rows it never saw.

    Attributes:
        train_sample: representative rows to fit synthesizers on (uniform, natural fraud rate).
        test_sample: representative held-out rows: the real side of fidelity, validity and privacy.
        train_frauds: every fraud of the training side (those of ``train_sample`` included).
        test_frauds: every fraud of the held-out side (those of ``test_sample`` included).
        nonfraud_weight: population rows one non-fraud row stands for.
        fraud_weight: population rows one fraud row stands for.
        seed: seed of the split.
        test_share: share of the rows held out.
    """

    train_sample: pd.DataFrame
    test_sample: pd.DataFrame
    train_frauds: pd.DataFrame
    test_frauds: pd.DataFrame
    nonfraud_weight: float
    fraud_weight: float
    seed: int
    test_share: float

    def train_rows(self) -> tuple[pd.DataFrame, np.ndarray]:
        """The labelled training rows (sample non-frauds and all training frauds) and their population weights."""
        return _labelled(self.train_sample, self.train_frauds, self.nonfraud_weight, self.fraud_weight)

    def test_rows(self) -> tuple[pd.DataFrame, np.ndarray]:
        """The labelled held-out rows and their population weights: weighted, they have the population's fraud rate."""
        return _labelled(self.test_sample, self.test_frauds, self.nonfraud_weight, self.fraud_weight)

    def sizes(self) -> dict[str, int | float]:
        """Row counts of every part, for the record."""
        return {
            "train_sample_rows": len(self.train_sample),
            "test_sample_rows": len(self.test_sample),
            "train_frauds": len(self.train_frauds),
            "test_frauds": len(self.test_frauds),
            "nonfraud_weight": self.nonfraud_weight,
            "fraud_weight": self.fraud_weight,
            "seed": self.seed,
            "test_share": self.test_share,
        }


def _labelled(
    sample: pd.DataFrame, frauds: pd.DataFrame, nonfraud_weight: float, fraud_weight: float
) -> tuple[pd.DataFrame, np.ndarray]:
    nonfrauds = sample.loc[~sample["is_fraud"]]
    table = pd.concat([nonfrauds, frauds], ignore_index=True)
    weight = np.concatenate([np.full(len(nonfrauds), nonfraud_weight), np.full(len(frauds), fraud_weight)])
    return table, weight


def _held_out(table: pd.DataFrame, share: float, rng: np.random.Generator) -> np.ndarray:
    """Mark about ``share`` of the rows as held out, keeping rows with the same key on the same side."""
    groups = table.groupby(_ROW_KEY, sort=False, observed=True).ngroup().to_numpy()
    n_groups = int(groups.max()) + 1
    n_test = min(max(round(n_groups * share), 1), n_groups - 1)
    test_groups = np.zeros(n_groups, dtype=bool)
    test_groups[rng.permutation(n_groups)[:n_test]] = True
    return test_groups[groups]


def _split(
    sample: pd.DataFrame, frauds: pd.DataFrame, nonfraud_weight: float, fraud_weight: float, seed: int, share: float
) -> RealSplit:
    if not 0 < share < 1:
        raise InvalidParameterError(f"Invalid test_share {share!r}: give a share strictly between 0 and 1, e.g. 0.5.")
    sample = sample.reset_index(drop=True)
    pool = pd.concat([frauds, sample.loc[sample["is_fraud"]]], ignore_index=True).drop_duplicates(_ROW_KEY)
    nonfrauds = sample.loc[~sample["is_fraud"]]
    for what, rows in (("fraud", pool), ("non-fraud", nonfrauds)):
        if len(rows) < 2:
            raise EvaluationInputError(
                "real table", [f"has {len(rows)} {what} row(s): the train/test split needs at least 2, one per side"]
            )
    pool = pool.reset_index(drop=True)
    pool_test = _held_out(pool, share, np.random.default_rng([seed, 0]))
    test = pd.Series(False, index=sample.index)
    test[nonfrauds.index] = _held_out(nonfrauds, share, np.random.default_rng([seed, 1]))
    sample_frauds = sample.loc[sample["is_fraud"], _ROW_KEY]
    if len(sample_frauds):
        keyed = pool[_ROW_KEY].assign(_test=pool_test)
        test[sample_frauds.index] = sample_frauds.merge(keyed, on=_ROW_KEY, how="left")["_test"].to_numpy(dtype=bool)
    mask = test.to_numpy()
    return RealSplit(
        train_sample=sample.loc[~mask].reset_index(drop=True),
        test_sample=sample.loc[mask].reset_index(drop=True),
        train_frauds=pool.loc[~pool_test].reset_index(drop=True),
        test_frauds=pool.loc[pool_test].reset_index(drop=True),
        nonfraud_weight=float(nonfraud_weight),
        fraud_weight=float(fraud_weight),
        seed=seed,
        test_share=share,
    )


def split_reference(reference: Reference | None = None, *, seed: int = 0, test_share: float = TEST_SHARE) -> RealSplit:
    """Split the bundled real rows: the sample's non-frauds and the all-frauds file, each in two by ``seed``.

    This is the helper for fitting a synthesizer on real rows that the
    evaluation will not test on: fit on ``split.train_sample`` (uniform) or on
    ``split.train_rows()`` (weighted, fraud-enriched), then pass the same
    split to :func:`evaluate`. The 63 frauds of the sample are the same rows
    as 63 rows of the frauds file and follow them to their side.

    Weights: a non-fraud row stands for ``Reference.nonfraud_weight`` (about
    129.7) population rows, a fraud row for ``Reference.fraud_weight`` (1), so
    the weighted test set has the population's fraud rate (0.129%).
    """
    reference = reference if reference is not None else load_reference()
    return _split(
        reference.sample, reference.frauds, reference.nonfraud_weight, reference.fraud_weight, seed, test_share
    )


def load_split(real: str | Path, *, seed: int = 0) -> RealSplit:
    """The real split named on a command line or in a notebook parameter.

    ``"reference"`` is the bundled real rows (:func:`split_reference`); any
    other value is a PaySim file, read and split by :func:`split_table`.
    """
    if str(real) == REFERENCE:
        return split_reference(seed=seed)
    return split_table(read_transactions(real), seed=seed)


def split_table(table: pd.DataFrame, *, seed: int = 0, test_share: float = TEST_SHARE) -> RealSplit:
    """Split one uniform real table (a PaySim file, say) by ``seed``, stratified by the fraud label, unweighted.

    Raises:
        EvaluationInputError: the table is no canonical table or has fewer than two frauds or non-frauds.
    """
    table = check_table(table, "real table")
    return _split(table, table.loc[table["is_fraud"]], 1.0, 1.0, seed, test_share)
