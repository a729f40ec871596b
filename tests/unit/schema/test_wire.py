"""The stub-free codec: exact round trips, bytes identical to the generated stubs', and bad records as reasons.

``fraud_pb2`` (the generated stubs) is the oracle here: the codec's bytes must be
what it serializes, and what it parses must be what the codec decodes. The last
test runs the codec in the Flink venv, whose protobuf cannot import the stubs.
"""

from __future__ import annotations

import json
import math
import os
import subprocess

import numpy as np
import pandas as pd
import pytest
from google.protobuf.message import DecodeError

from fraudlab.config import FLINK_VENV
from fraudlab.exceptions import DataValidationError, InvalidParameterError
from fraudlab.schema import wire
from fraudlab.schema.messages import transaction_to_dict
from fraudlab.schema.proto import fraud_pb2
from fraudlab.schema.table import MONEY_COLUMNS, TRANSACTION_TYPES

INT64 = (-(2**63), -1, 0, 1, 127, 128, 2**31, 2**63 - 1)
DOUBLES = (0.0, -0.0, 5e-324, 1e-300, 0.01, math.pi, 1.7976931348623157e308)
UNCHECKED_DOUBLES = (math.nan, math.inf, -math.inf, -1.5)  # is_unauthorized_overdraft is no money: not checked


def _edge_messages() -> list[fraud_pb2.TransactionRequest]:
    """Usable transactions whose every field takes edge values: extreme integers, odd doubles, any text."""
    ids = ("t", "tx-é-🙂-漢字", "x" * 300, "0f8fad5b-d9cb-469f-a165-70867728950e")
    addresses = ("", "81.2.69.160", "2001:0db8:85a3:0000:0000:8a2e:0370:7334", "::ffff:81.2.69.160", "::1")
    out = []
    for i in range(24):
        out.append(fraud_pb2.TransactionRequest(
            transaction_id=ids[i % len(ids)], user_id=INT64[i % len(INT64)], amount=DOUBLES[i % len(DOUBLES)],
            timestamp=INT64[(i + 3) % len(INT64)], is_fraud=i % 2 == 0, type=TRANSACTION_TYPES[i % 5],
            old_balance_orig=DOUBLES[(i + 1) % len(DOUBLES)], new_balance_orig=DOUBLES[(i + 2) % len(DOUBLES)],
            old_balance_dest=DOUBLES[(i + 3) % len(DOUBLES)], new_balance_dest=DOUBLES[(i + 4) % len(DOUBLES)],
            is_unauthorized_overdraft=(*DOUBLES, *UNCHECKED_DOUBLES)[i % 11], ip_address=addresses[i % 5],
            dest_user_id=INT64[(i + 5) % len(INT64)], dest_is_merchant=i % 3 == 0,
            device_id=("", "dév-1", "d" * 129)[i % 3]))
    return out


def _random_frame(rng: np.random.Generator, count: int) -> pd.DataFrame:
    """Random rows over the whole range of every field, strings of any length from empty (ASCII or not)."""
    def text(alphabet: str) -> list[str]:
        return ["".join(rng.choice(list(alphabet), size=rng.integers(0, 12))) for _ in range(count)]

    def doubles() -> np.ndarray:
        values = rng.normal(size=count) * 10.0 ** rng.integers(-300, 300, size=count)
        values[rng.random(count) < 0.2] = 0.0
        return values

    return pd.DataFrame({
        "transaction_id": text("ab-9é漢"), "user_id": rng.integers(-(2**63), 2**63 - 1, size=count, endpoint=True),
        "amount": doubles(), "timestamp": rng.integers(-(2**40), 2**42, size=count),
        "is_fraud": rng.random(count) < 0.5,
        "type": text("CASH_IN"), "old_balance_orig": doubles(), "new_balance_orig": doubles(),
        "old_balance_dest": doubles(), "new_balance_dest": doubles(), "is_unauthorized_overdraft": doubles(),
        "ip_address": text("0123456789abcdef:."), "dest_user_id": rng.integers(0, 2**20, size=count) - 2**19,
        "dest_is_merchant": rng.random(count) < 0.5, "device_id": text("dev-🙂"),
    })


def _stub(row: dict[str, object]) -> fraud_pb2.TransactionRequest:
    """The generated stub's message for a row of a frame (numpy scalars made Python values)."""
    return fraud_pb2.TransactionRequest(**{name: getattr(value, "item", lambda v=value: v)()
                                           for name, value in row.items()})


def _frame_of(messages: list[fraud_pb2.TransactionRequest]) -> pd.DataFrame:
    """What a decoded batch of these messages must be: every field, in its dtype."""
    rows = pd.DataFrame([transaction_to_dict(m) for m in messages], columns=list(wire.TRANSACTION_FIELDS))
    return rows.astype(wire.TRANSACTION_DTYPES)


def _usable(message: fraud_pb2.TransactionRequest) -> bool:
    """The rules, restated independently of the codec."""
    return bool(message.transaction_id) and message.type in TRANSACTION_TYPES and all(
        0.0 <= getattr(message, name) < math.inf for name in MONEY_COLUMNS)


# --------------------------------------------------------------------------- transactions


def test_every_field_round_trips_exactly_and_the_bytes_are_the_stubs():
    messages = _edge_messages()
    payloads = [m.SerializeToString() for m in messages]

    decoded = wire.decode_transactions(payloads)

    assert decoded.errors == [""] * len(messages)
    pd.testing.assert_frame_equal(decoded.transactions, _frame_of(messages))
    assert decoded.transactions.dtypes.to_dict() == wire.TRANSACTION_DTYPES
    assert wire.encode_transactions(decoded.transactions) == payloads


def test_random_rows_encode_to_the_stubs_bytes():
    """Every encoder path (padded strings, unpadded long ones, ten-byte negative varints) against the stubs."""
    frame = _random_frame(np.random.default_rng(7), 400)
    frame.loc[5, "device_id"] = "long-" * 20_000  # too long to pad: the unpadded path

    expected = [_stub(row).SerializeToString() for row in frame.to_dict("records")]

    assert wire.encode_transactions(frame) == expected
    batch = fraud_pb2.TransactionBatch.FromString(wire.encode_transaction_batch(frame))
    assert [m.SerializeToString() for m in batch.transactions] == expected


def test_a_table_converts_like_the_contract_says_missing_columns_default_extra_ones_ignored():
    table = pd.DataFrame({"transaction_id": ["a"], "type": pd.Categorical(["PAYMENT"]), "amount": [np.float32(1.5)],
                          "is_unauthorized_overdraft": [True], "step": [3], "name_orig": ["C1"]})

    (payload,) = wire.encode_transactions(table)

    assert payload == fraud_pb2.TransactionRequest(transaction_id="a", type="PAYMENT", amount=1.5,
                                                   is_unauthorized_overdraft=1.0).SerializeToString()


def test_decoding_no_payloads_gives_the_typed_empty_frame():
    decoded = wire.decode_transactions([])

    assert decoded.errors == []
    assert list(decoded.transactions.columns) == list(wire.TRANSACTION_FIELDS)
    assert decoded.transactions.dtypes.to_dict() == wire.TRANSACTION_DTYPES
    assert wire.encode_transactions(decoded.transactions) == []
    assert wire.encode_scored(decoded.transactions, [], [], "v1", [], 0) == []
    assert wire.decode_scored([]).empty


@pytest.mark.parametrize(("change", "reason"), [
    ({"transaction_id": ""}, "transaction_id='' is empty"),
    ({"type": "REFUND"}, "type='REFUND' is not one of CASH_IN, CASH_OUT, DEBIT, PAYMENT, TRANSFER"),
    ({"type": ""}, "type='' is not one of"),
    ({"amount": math.nan}, "amount=nan must be a finite number >= 0"),
    ({"amount": -0.01}, "amount=-0.01 must be a finite number >= 0"),
    ({"amount": math.inf}, "amount=inf must be a finite number >= 0"),
    ({"new_balance_dest": -math.inf}, "new_balance_dest=-inf must be a finite number >= 0"),
])
def test_an_unusable_transaction_gets_a_reason_naming_field_and_value_and_a_neutral_row(change, reason):
    good = fraud_pb2.TransactionRequest(transaction_id="ok", type="CASH_OUT", amount=2.0, user_id=7)
    bad = fraud_pb2.TransactionRequest(transaction_id="bad", type="TRANSFER", amount=3.0, user_id=8, device_id="d")
    for name, value in change.items():
        setattr(bad, name, value)

    decoded = wire.decode_transactions([good.SerializeToString(), bad.SerializeToString()])

    assert decoded.errors[0] == ""
    assert reason in decoded.errors[1]
    pd.testing.assert_frame_equal(decoded.transactions, _frame_of([good, fraud_pb2.TransactionRequest()]))


def test_every_problem_of_a_record_is_named_and_long_garbage_text_is_cut():
    message = fraud_pb2.TransactionRequest(type="X" * 10_000, amount=-1.0, old_balance_orig=math.nan)

    (error,) = wire.decode_transactions([message.SerializeToString()]).errors

    assert error.startswith("transaction_id='' is empty")
    assert "type='XXXX" in error and "amount=-1.0" in error and "old_balance_orig=nan" in error
    assert len(error) < 500


def test_garbage_truncated_and_null_payloads_give_reasons_never_exceptions():
    """Oracle: the stubs. What they cannot parse gets a parse reason; what they parse is judged by the rules."""
    rng = np.random.default_rng(3)
    valid = [m.SerializeToString() for m in _edge_messages()[:4]]
    corpus = [
        *(payload[:cut] for payload in valid for cut in range(len(payload))),  # every truncation
        *(rng.bytes(int(rng.integers(1, 200))) for _ in range(300)),  # noise
        b"\x08\x96\x01" + valid[0],  # an unknown field before a valid transaction: still the transaction
        b"\x0a\x02\xc3\x28",  # transaction_id that is not UTF-8
        b"", *valid,
    ]

    decoded = wire.decode_transactions([*corpus, None])

    assert len(decoded.errors) == len(decoded.transactions) == len(corpus) + 1
    assert decoded.errors[-1] == "null record value (no payload)"
    neutral = _frame_of([fraud_pb2.TransactionRequest()]).iloc[0]
    for position, payload in enumerate(corpus):
        row, error = decoded.transactions.iloc[position], decoded.errors[position]
        try:
            expected = fraud_pb2.TransactionRequest.FromString(payload)
        except DecodeError:
            assert f"{len(payload)} bytes that do not parse as fraud.TransactionRequest" in error
            pd.testing.assert_series_equal(row, neutral, check_names=False)
            continue
        if _usable(expected):
            assert error == "", payload
            pd.testing.assert_series_equal(row, _frame_of([expected]).iloc[0], check_names=False)
        else:
            assert error, payload
            pd.testing.assert_series_equal(row, neutral, check_names=False)
    assert decoded.errors[-len(valid) - 1:-1] == [""] * len(valid)


# --------------------------------------------------------------------------- scored transactions, dead letters


def _scored_inputs(count: int, rng: np.random.Generator) -> dict[str, object]:
    words = ("amount", "velocity", "geo", "", "nouveauté", "device")
    return {
        "score": np.concatenate([[0.0, -0.0, math.nan, 1.0], rng.random(count - 4)]),
        "alert": rng.random(count) < 0.5,
        "model_version": [f"v{i % 3}" if i % 4 else "" for i in range(count)],
        "reasons": [tuple(rng.choice(words, size=rng.integers(0, 4))) for _ in range(count)],
        "scored_at": rng.integers(-(2**62), 2**62, size=count),
    }


def test_scored_transactions_are_the_stubs_bytes_and_decode_back():
    rng = np.random.default_rng(11)
    frame = wire.decode_transactions([m.SerializeToString() for m in _edge_messages()]).transactions
    inputs = _scored_inputs(len(frame), rng)

    payloads = wire.encode_scored(frame, **inputs)

    expected = [fraud_pb2.ScoredTransaction(
        transaction=_stub(row), score=inputs["score"][i], alert=bool(inputs["alert"][i]),
        model_version=inputs["model_version"][i], reasons=list(inputs["reasons"][i]),
        scored_at=int(inputs["scored_at"][i])).SerializeToString() for i, row in enumerate(frame.to_dict("records"))]
    assert payloads == expected
    back = wire.decode_scored(payloads)
    pd.testing.assert_frame_equal(back[list(wire.TRANSACTION_FIELDS)], frame)
    assert list(back.columns) == [*wire.TRANSACTION_FIELDS, *wire.SCORE_DTYPES]
    assert back["reasons"].tolist() == [tuple(r) for r in inputs["reasons"]]
    np.testing.assert_array_equal(back["score"].to_numpy(), inputs["score"])
    assert back["alert"].tolist() == inputs["alert"].tolist()
    assert back["model_version"].tolist() == inputs["model_version"]
    assert back["scored_at"].tolist() == inputs["scored_at"].tolist()


def test_one_model_version_and_time_for_a_whole_batch():
    frame = wire.decode_transactions([m.SerializeToString() for m in _edge_messages()[:3]]).transactions

    payloads = wire.encode_scored(frame, [0.1, 0.2, 0.9], [False, False, True], "7", [("amount",), (), ()], 123)

    back = wire.decode_scored(payloads)
    assert back["model_version"].tolist() == ["7"] * 3 and back["scored_at"].tolist() == [123] * 3


def test_scored_arguments_of_the_wrong_length_are_named():
    frame = wire.decode_transactions([m.SerializeToString() for m in _edge_messages()[:3]]).transactions

    with pytest.raises(InvalidParameterError, match=r"score has 2 value\(s\) for 3 row\(s\)"):
        wire.encode_scored(frame, [0.1, 0.2], [False] * 3, "v", [()] * 3, 0)
    with pytest.raises(InvalidParameterError, match="reasons has 1 value"):
        wire.encode_scored(frame, [0.1] * 3, [False] * 3, "v", [("a",)], 0)


def test_dead_letters_keep_the_record_byte_for_byte_with_why_and_where():
    payloads = [b"\xff\xfe garbage", b"", None, bytes(range(256))]
    reasons = ["1 bytes that do not parse", "transaction_id='' is empty", "null record value (no payload)", "é"]

    letters = wire.encode_dead_letters(payloads, reasons, topic="raw_transactions", partition=[0, 1, -1, 2**31 - 1],
                                       offset=[0, 2**63 - 1, -1, 42])

    expected = [fraud_pb2.DeadLetter(payload=p or b"", reason=r, partition=n, offset=o, topic="raw_transactions")
                .SerializeToString() for p, r, n, o in zip(payloads, reasons, [0, 1, -1, 2**31 - 1],
                                                           [0, 2**63 - 1, -1, 42], strict=True)]
    assert letters == expected
    back = wire.decode_dead_letters(letters)
    assert back.dtypes.to_dict() == wire.DEAD_LETTER_DTYPES
    assert back["payload"].tolist() == [p or b"" for p in payloads]
    assert back["reason"].tolist() == reasons and back["topic"].tolist() == ["raw_transactions"] * 4


def test_readers_of_the_jobs_output_name_a_record_that_is_not_one():
    good = wire.encode_dead_letters([b"x"], ["why"], topic="t", partition=0, offset=1)

    with pytest.raises(DataValidationError, match=r"record 1: 2 bytes that do not parse as fraud\.DeadLetter"):
        wire.decode_dead_letters([*good, b"\xff\xff"])
    with pytest.raises(DataValidationError, match="record 0: null record value"):
        wire.decode_scored([None])


# --------------------------------------------------------------------------- in the Flink venv

_IN_FLINK_VENV = """
import json, sys
import google.protobuf
from fraudlab.schema import wire
payloads = [bytes.fromhex(p) for p in json.load(sys.stdin)]
decoded = wire.decode_transactions(payloads)
usable = decoded.transactions[[not e for e in decoded.errors]]
bad = [i for i, e in enumerate(decoded.errors) if e]
print(json.dumps({
    "protobuf": google.protobuf.__version__,
    "errors": decoded.errors,
    "reencoded": [p.hex() for p in wire.encode_transactions(usable)],
    "scored": [p.hex() for p in wire.encode_scored(usable, [0.25] * len(usable), [True] * len(usable), "3",
                                                   [("amount", "geo")] * len(usable), 1767225600000)],
    "dead": [p.hex() for p in wire.encode_dead_letters([payloads[i] for i in bad], [decoded.errors[i] for i in bad],
                                                      topic="raw_transactions", partition=0, offset=bad)],
    "modules": sorted(sys.modules),
}))
"""


def test_the_codec_round_trips_the_main_venvs_bytes_inside_the_flink_venv(repo_root):
    """The job's side: protobuf 5 (no stubs) reads what the main venv wrote, and writes what the stubs read."""
    python = repo_root / FLINK_VENV / "bin" / "python"
    if not python.exists():
        pytest.skip(f"the Flink venv {FLINK_VENV}/ does not exist yet: create it with `make flink-venv`")
    messages = _edge_messages()
    payloads = [m.SerializeToString() for m in messages]
    garbage = b"\xff\xff\xff"
    env = {**os.environ, "PYTHONPATH": str(repo_root)}
    sent = json.dumps([p.hex() for p in [*payloads, garbage]])

    completed = subprocess.run([python, "-c", _IN_FLINK_VENV], input=sent, capture_output=True, text=True, env=env,
                               cwd=repo_root, timeout=120, check=False)

    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout)
    assert result["errors"][:-1] == [""] * len(payloads) and "do not parse" in result["errors"][-1]
    assert [bytes.fromhex(p) for p in result["reencoded"]] == payloads
    scored = [fraud_pb2.ScoredTransaction.FromString(bytes.fromhex(p)) for p in result["scored"]]
    assert [s.transaction for s in scored] == messages
    assert {(s.score, s.alert, s.model_version, tuple(s.reasons), s.scored_at) for s in scored} == {
        (0.25, True, "3", ("amount", "geo"), 1767225600000)}
    (dead,) = (fraud_pb2.DeadLetter.FromString(bytes.fromhex(p)) for p in result["dead"])
    assert (dead.payload, dead.offset, dead.topic) == (garbage, len(payloads), "raw_transactions")
    loaded = set(result["modules"])
    assert "fraudlab.schema.proto.fraud_pb2" not in loaded and "fraudlab.schema.messages" not in loaded
    assert not {name for name in loaded if name.split(".")[0] in ("grpc", "confluent_kafka", "pyflink")}
