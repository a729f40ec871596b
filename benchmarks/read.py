"""How fast ``fraudlab.data.readers.read_transactions`` reads a full-size Kaggle PaySim CSV.

Writes a 6,362,620-row file in the Kaggle layout (the size of the real
``PS_20174392719_1491204439457_log.csv``, rows from fraudlab's simulator) into
a temporary directory, times reading all of it and drawing 2,000,000 rows
from it, then reading a copy with one malformed line added (``on_bad_rows="skip"``,
the path that locates and names bad values), and deletes the files.
Target: the full read in under 30 s.

    .venv/bin/python benchmarks/read.py [--rows 6362620] [--repeats 3]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv

from fraudlab.data.readers import KAGGLE_LAYOUT, read_transactions
from fraudlab.data.reference import POPULATION_ROWS
from fraudlab.generate.paysim import simulate

SUBSET_ROWS = 2_000_000
TARGET_SECONDS = 30.0


def write_kaggle_csv(rows: int, path: Path) -> Path:
    """Simulated rows written as the Kaggle release lays them out (flags as 0/1, no overdraft column)."""
    table = simulate(rows, seed=1, progress=False)
    kaggle = table.rename(columns={canonical: kaggle for kaggle, canonical in KAGGLE_LAYOUT.items()})
    kaggle = kaggle.loc[:, list(KAGGLE_LAYOUT)].astype({"isFraud": "int8", "isFlaggedFraud": "int8", "type": str})
    pacsv.write_csv(pa.Table.from_pandas(kaggle, preserve_index=False), path,
                    write_options=pacsv.WriteOptions(quoting_style="none"))
    return path


def with_a_bad_line(path: Path, dirty: Path) -> Path:
    """A copy of ``path`` with one line whose amount is no number, so the reader must find and name it."""
    shutil.copyfile(path, dirty)
    with dirty.open("a") as handle:
        handle.write("743,PAYMENT,not-a-number,C1,10.0,0.0,M1,0.0,0.0,0,0\n")
    return dirty


def timed(path: Path, n_rows: int | None) -> tuple[float, int]:
    started = time.perf_counter()
    table = read_transactions(path, n_rows=n_rows, on_bad_rows="skip", progress=False)
    return time.perf_counter() - started, len(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=POPULATION_ROWS, help="rows in the file")
    parser.add_argument("--repeats", type=int, default=3, help="timed reads of each kind (the median is shown)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fraudlab-read-") as tmp:
        path = write_kaggle_csv(args.rows, Path(tmp) / "paysim_kaggle.csv")
        size_mb = path.stat().st_size / 1e6
        print(f"file: {args.rows:,} rows, {size_mb:,.0f} MB (Kaggle layout)")
        print(f"{'read':<28} {'rows':>11} {'median s':>9} {'runs (s)':<24} {'rows/s':>11}")
        dirty = with_a_bad_line(path, Path(tmp) / "paysim_kaggle_one_bad_line.csv")
        for label, source, n_rows in (("all rows", path, None),
                                      (f"n_rows={SUBSET_ROWS:,}", path, min(SUBSET_ROWS, args.rows)),
                                      ("all rows + 1 bad line, skip", dirty, None)):
            runs = [timed(source, n_rows) for _ in range(args.repeats)]
            seconds = statistics.median(run[0] for run in runs)
            shown = ", ".join(f"{run[0]:.1f}" for run in runs)
            print(f"{label:<28} {runs[0][1]:>11,} {seconds:>9.1f} {shown:<24} {runs[0][1] / seconds:>11,.0f}")
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print(f"peak RSS of this process: {peak_gb:.2f} GB; target: all rows in under {TARGET_SECONDS:.0f} s")


if __name__ == "__main__":
    main()
