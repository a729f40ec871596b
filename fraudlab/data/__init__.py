"""Real data in: PaySim files (Kaggle CSV, the raw PaySim log, parquet), the bundled real rows and their splits.

* :mod:`~fraudlab.data.readers`: read any PaySim layout into the canonical table, write tables out;
* :mod:`~fraudlab.data.reference`: the bundled real rows, checksummed (``datasets/``);
* :mod:`~fraudlab.data.splits`: real rows split once into a training and a held-out side.
"""

from fraudlab.data.readers import read_transactions, summarize, write_transactions
from fraudlab.data.reference import Reference, load_reference
from fraudlab.data.splits import RealSplit, load_split, split_reference, split_table

__all__ = [
    "RealSplit",
    "Reference",
    "load_reference",
    "load_split",
    "read_transactions",
    "split_reference",
    "split_table",
    "summarize",
    "write_transactions",
]
