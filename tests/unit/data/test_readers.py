"""The canonical table, the PaySim readers and their error paths, and the bundled real rows."""

from __future__ import annotations

import gzip
import shutil

import pandas as pd
import pyarrow as pa
import pytest

from fraudlab.data.readers import _parsed_numbers, read_transactions
from fraudlab.data.reference import load_reference
from fraudlab.exceptions import DataValidationError, FraudlabError
from fraudlab.schema.table import CANONICAL_COLUMNS, to_canonical

KAGGLE_HEADER = (
    "step,type,amount,nameOrig,oldbalanceOrg,newbalanceOrig,nameDest,oldbalanceDest,newbalanceDest,isFraud,isFlaggedFraud"
)
RAW_HEADER = (
    "step,action,amount,nameOrig,oldBalanceOrig,newBalanceOrig,nameDest,oldBalanceDest,newBalanceDest,"
    "isFraud,isFlaggedFraud,isUnauthorizedOverdraft"
)
KAGGLE_ROWS = [
    "1,PAYMENT,9839.64,C1231006815,170136.0,160296.36,M1979787155,0.0,0.0,0,0",
    "1,TRANSFER,181.0,C1305486145,181.0,0.0,C553264065,0.0,0.0,1,0",
    "2,CASH_IN,500.0,C1,100.0,600.0,C2,700.0,200.0,0,0",
]


@pytest.fixture(scope="module")
def reference():
    return load_reference()


def _write(path, lines, *, gz=False):
    text = "\n".join(lines) + "\n"
    if gz:
        with gzip.open(path, "wt") as handle:
            handle.write(text)
    else:
        path.write_text(text)
    return path


def test_reference_has_the_documented_rows(reference):
    assert len(reference.sample) == 49_061
    assert int(reference.sample["is_fraud"].sum()) == 63
    assert len(reference.frauds) == 8_213
    assert bool(reference.frauds["is_fraud"].all())
    assert reference.fraud_weight == 1.0
    assert reference.nonfraud_weight == pytest.approx(129.69, abs=0.01)
    assert list(reference.sample.columns) == list(CANONICAL_COLUMNS)
    assert str(reference.sample["type"].dtype) == "category"
    assert reference.sample["amount"].dtype == "float64"
    assert not reference.sample["is_unauthorized_overdraft"].any()


def test_reference_checksum_mismatch_is_refused(monkeypatch, tmp_path):
    from fraudlab.data import reference as data

    original = data._dataset_path
    tampered = tmp_path / data.REFERENCE_SAMPLE
    shutil.copy(original(data.REFERENCE_SAMPLE), tampered)
    with tampered.open("ab") as handle:
        handle.write(b"\0")
    monkeypatch.setattr(
        data, "_dataset_path", lambda name: tampered if name == data.REFERENCE_SAMPLE else original(name)
    )
    with pytest.raises(FraudlabError, match="corrupt or was modified"):
        load_reference()


@pytest.mark.parametrize("gz", [False, True])
def test_kaggle_layout_is_detected_and_typed(tmp_path, gz):
    path = _write(tmp_path / ("k.csv.gz" if gz else "k.csv"), [KAGGLE_HEADER, *KAGGLE_ROWS], gz=gz)
    table = read_transactions(path)
    assert table.attrs["layout"] == "kaggle"
    assert list(table.columns) == list(CANONICAL_COLUMNS)
    assert table["type"].tolist() == ["PAYMENT", "TRANSFER", "CASH_IN"]
    assert table["is_fraud"].tolist() == [False, True, False]
    assert table["new_balance_orig"].tolist() == [160296.36, 0.0, 600.0]
    assert table["is_unauthorized_overdraft"].dtype == bool and not table["is_unauthorized_overdraft"].any()


def test_raw_log_layout_keeps_the_overdraft_flag(tmp_path):
    rows = [r + ",0" for r in KAGGLE_ROWS[:2]] + ["3,CASH_OUT,50.0,C9,10.0,10.0,C8,0.0,0.0,0,0,1"]
    table = read_transactions(_write(tmp_path / "raw.csv", [RAW_HEADER, *rows]))
    assert table.attrs["layout"] == "raw-log"
    assert table["is_unauthorized_overdraft"].tolist() == [False, False, True]


def test_parquet_round_trip(tmp_path):
    table = read_transactions(_write(tmp_path / "k.csv", [KAGGLE_HEADER, *KAGGLE_ROWS]))
    table.to_parquet(tmp_path / "t.parquet")
    again = read_transactions(tmp_path / "t.parquet")
    pd.testing.assert_frame_equal(again, table, check_exact=True)


def test_missing_columns_are_all_named(tmp_path):
    header = KAGGLE_HEADER.replace(",oldbalanceDest", "").replace(",isFraud", "")
    path = _write(tmp_path / "bad.csv", [header])
    expected = r"(?s)bad\.csv.*missing column 'oldbalanceDest'.*missing column 'isFraud'"
    with pytest.raises(DataValidationError, match=expected):
        read_transactions(path)


def test_unknown_header_is_explained(tmp_path):
    with pytest.raises(DataValidationError, match="neither the Kaggle PaySim layout"):
        read_transactions(_write(tmp_path / "x.csv", ["a,b,c", "1,2,3"]))


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("1,REFUND,1.0,C1,1.0,0.0,C2,0.0,0.0,0,0", r"line 3, column 'type': 'REFUND' is not one of"),
        ("1,PAYMENT,abc,C1,1.0,0.0,M2,0.0,0.0,0,0", r"line 3, column 'amount': 'abc' is not a number"),
        ("1,PAYMENT,-5.0,C1,1.0,0.0,M2,0.0,0.0,0,0", r"line 3, column 'amount': -5.0 is negative"),
        ("1,PAYMENT,5.0,C1,,0.0,M2,0.0,0.0,0,0", r"line 3, column 'oldbalanceOrg': value is missing \(NaN\)"),
    ],
)
def test_bad_rows_are_reported_with_file_line_and_column(tmp_path, row, message):
    path = _write(tmp_path / "rows.csv", [KAGGLE_HEADER, KAGGLE_ROWS[0], row])
    with pytest.raises(DataValidationError, match=rf"rows\.csv: 1 problem\(s\):\s+{message}"):
        read_transactions(path)


def test_skip_drops_bad_rows_and_says_why(tmp_path):
    rows = [*KAGGLE_ROWS, "1,REFUND,1.0,C1,1.0,0.0,C2,0.0,0.0,0,0", "1,PAYMENT,-5.0,C1,1.0,0.0,M2,0.0,0.0,0,0"]
    table = read_transactions(_write(tmp_path / "rows.csv", [KAGGLE_HEADER, *rows]), on_bad_rows="skip")
    assert len(table) == 3
    assert table.attrs["rejected"] == {
        "type is not one of CASH_IN, CASH_OUT, DEBIT, PAYMENT, TRANSFER": 1,
        "amount is negative": 1,
    }


CELLS = ["1", "+5", "-5.0", " 7 ", ".5", "5.", "1e5", "1E-3", "inf", "-Infinity", "nan", "NaN", "abc", "", "1,000",
         "0x10", "1_000", "True", "--1", "1e", "e5", "\u0661\u0662"]


def test_numbers_are_parsed_as_pandas_reads_them():
    numbers, not_number = _parsed_numbers(pa.chunked_array([pa.array(CELLS)]))
    expected = pd.to_numeric(pd.Series(CELLS), errors="coerce")
    assert numbers.to_numpy() == pytest.approx(expected.to_numpy(), nan_ok=True)
    assert [cell for cell, flagged in zip(CELLS, not_number, strict=True) if flagged] == [
        "abc", "1,000", "0x10", "1_000", "True", "--1", "1e", "e5", "\u0661\u0662"]


def test_skip_with_n_rows_keeps_the_good_rows_of_the_draw(tmp_path):
    rows = [f"{i},PAYMENT,{i + 1}.0,C{i},100.0,99.0,M{i},0.0,0.0,0,0" for i in range(1, 201)]
    rows[10] = "11,PAYMENT,oops,C11,100.0,99.0,M11,0.0,0.0,0,0"
    path = _write(tmp_path / "rows.csv", [KAGGLE_HEADER, *rows])
    table = read_transactions(path, n_rows=200, on_bad_rows="skip")
    assert len(table) == 199 and 11 not in set(table["step"])
    assert table.attrs["rejected"] == {"amount is not a number": 1}
    assert table["amount"].dtype == "float64" and table["step"].tolist()[:3] == [1, 2, 3]


def test_bad_rows_of_a_parquet_file_are_reported(tmp_path):
    frame = read_transactions(_write(tmp_path / "rows.csv", [KAGGLE_HEADER, *KAGGLE_ROWS]))
    frame.loc[1, "amount"] = -1.0
    frame.loc[2, "new_balance_dest"] = float("nan")
    frame.to_parquet(tmp_path / "rows.parquet")
    with pytest.raises(DataValidationError, match=r"line 3, column 'amount': -1.0 is negative") as raised:
        read_transactions(tmp_path / "rows.parquet")
    assert "line 4, column 'new_balance_dest': value is missing (NaN)" in str(raised.value)
    assert len(read_transactions(tmp_path / "rows.parquet", on_bad_rows="skip")) == 1


def test_n_rows_is_a_reproducible_uniform_subset(tmp_path):
    rows = [f"{i},PAYMENT,{i + 1}.0,C{i},100.0,99.0,M{i},0.0,0.0,0,0" for i in range(1, 501)]
    path = _write(tmp_path / "many.csv", [KAGGLE_HEADER, *rows])
    first = read_transactions(path, n_rows=100, seed=3)
    assert len(first) == 100
    assert first["step"].is_monotonic_increasing
    assert first.equals(read_transactions(path, n_rows=100, seed=3))
    assert not first.equals(read_transactions(path, n_rows=100, seed=4))
    with pytest.raises(FraudlabError, match="Invalid n_rows 501"):
        read_transactions(path, n_rows=501)


def test_to_canonical_names_missing_columns():
    with pytest.raises(DataValidationError, match="missing column 'amount'"):
        to_canonical(pd.DataFrame({"type": ["PAYMENT"]}))


@pytest.mark.parametrize("name", ["out.parquet", "out.csv", "out.csv.gz"])
def test_write_then_read_gives_the_same_table(tmp_path, reference, name):
    from fraudlab.data.readers import write_transactions

    table = reference.sample.head(500)
    again = read_transactions(write_transactions(table, tmp_path / name))
    pd.testing.assert_frame_equal(again, table, check_exact=True)


def test_write_refuses_an_unknown_format(tmp_path, reference):
    from fraudlab.data.readers import write_transactions

    with pytest.raises(FraudlabError, match=r"Invalid output .*out\.xlsx"):
        write_transactions(reference.sample.head(5), tmp_path / "out.xlsx")


def test_summarize_reports_the_documented_figures(reference):
    from fraudlab.data.readers import summarize

    summary = summarize(reference.sample)
    assert summary["rows"] == 49_061
    assert summary["fraud_rate"] == pytest.approx(63 / 49_061)
    assert summary["type_mix"]["CASH_OUT"] == pytest.approx(0.3522, abs=1e-4)
    assert sum(summary["frauds_by_type"].values()) == 63
    assert summary["zero_share"]["old_balance_orig"] == pytest.approx(0.331, abs=1e-3)


def test_summarize_weights_a_fraud_enriched_table(reference):
    from fraudlab.data.readers import summarize

    nonfraud = reference.sample[~reference.sample["is_fraud"]]
    table = pd.concat([nonfraud, reference.frauds], ignore_index=True)
    weights = [reference.nonfraud_weight] * len(nonfraud) + [1.0] * len(reference.frauds)
    assert summarize(table, weights)["fraud_rate"] == pytest.approx(8_213 / 6_362_620, rel=1e-6)
    assert summarize(table)["fraud_rate"] == pytest.approx(8_213 / len(table))
