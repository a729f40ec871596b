"""The real PaySim rows bundled with fraudlab, checked against their checksums.

Two files (CC BY-SA 4.0; see ``datasets/PROVENANCE.md``): a uniform sample of
the Kaggle release and the file of all its frauds, a *filtered* set that must
be weighted (:class:`Reference` carries the weights).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import pandas as pd

from fraudlab.data.readers import read_transactions
from fraudlab.exceptions import DataValidationError

__all__ = ["POPULATION_FRAUDS", "POPULATION_ROWS", "Reference", "load_reference"]

REFERENCE_SAMPLE = "paysim_random_sample.csv.gz"
REFERENCE_FRAUDS = "paysim_all_frauds.csv.gz"
POPULATION_ROWS = 6_362_620
POPULATION_FRAUDS = 8_213


@dataclass(frozen=True)
class Reference:
    """The real PaySim rows bundled with fraudlab (CC BY-SA 4.0; see ``datasets/PROVENANCE.md``).

    Attributes:
        sample: 49,061 rows drawn uniformly from the 6,362,620-row Kaggle file:
            the representative side of every synthetic-vs-real comparison.
        frauds: all 8,213 real frauds, a *filtered* set. Never append it to
            ``sample`` as is: weight each of its rows by ``fraud_weight``
            relative to a non-fraud sample row weighted ``nonfraud_weight``.
    """

    sample: pd.DataFrame
    frauds: pd.DataFrame

    @property
    def nonfraud_weight(self) -> float:
        """Population rows that one non-fraud row of ``sample`` stands for (about 129.7)."""
        return (POPULATION_ROWS - POPULATION_FRAUDS) / int((~self.sample["is_fraud"]).sum())

    @property
    def fraud_weight(self) -> float:
        """Population rows that one row of ``frauds`` stands for (exactly 1: it is the whole fraud set)."""
        return POPULATION_FRAUDS / len(self.frauds)


def _dataset_path(name: str) -> Path:
    return Path(str(resources.files("fraudlab.data") / "datasets" / name))


def _verify_checksum(path: Path) -> None:
    sums = dict(
        reversed(line.split()) for line in _dataset_path("SHA256SUMS").read_text().splitlines() if line.strip()
    )
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    if sums.get(path.name) != actual:
        raise DataValidationError(str(path), [
            f"SHA-256 {actual}, expected {sums.get(path.name)}: the file is corrupt or was modified; reinstall fraudlab"
        ])


def load_reference() -> Reference:
    """Load the bundled real rows after checking their SHA-256 checksums."""
    frames = []
    for name in (REFERENCE_SAMPLE, REFERENCE_FRAUDS):
        path = _dataset_path(name)
        _verify_checksum(path)
        frames.append(read_transactions(path, progress=False))
    return Reference(sample=frames[0], frauds=frames[1])
