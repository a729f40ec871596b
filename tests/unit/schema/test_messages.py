"""The protobuf contract and the message helpers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from google.protobuf.descriptor import FieldDescriptor

from fraudlab.schema import messages
from fraudlab.schema.messages import (
    TransactionRequest,
    decode_transaction,
    encode_transaction,
    transaction_from_mapping,
    transaction_key,
    transaction_to_dict,
    transactions_from_table,
    user_id_from_account,
)
from fraudlab.schema.proto import fraud_pb2, fraud_pb2_grpc

EXPECTED_FIELDS = [
    ("transaction_id", 1, "TYPE_STRING"), ("user_id", 2, "TYPE_INT64"), ("amount", 3, "TYPE_DOUBLE"),
    ("timestamp", 4, "TYPE_INT64"), ("is_fraud", 5, "TYPE_BOOL"), ("type", 6, "TYPE_STRING"),
    ("old_balance_orig", 7, "TYPE_DOUBLE"), ("new_balance_orig", 8, "TYPE_DOUBLE"),
    ("old_balance_dest", 9, "TYPE_DOUBLE"), ("new_balance_dest", 10, "TYPE_DOUBLE"),
    ("is_unauthorized_overdraft", 11, "TYPE_DOUBLE"),
]
#: Added for account streams (enrichment and the detector), on new numbers only.
ADDED_FIELDS = [
    ("ip_address", 12, "TYPE_STRING"), ("dest_user_id", 13, "TYPE_INT64"), ("dest_is_merchant", 14, "TYPE_BOOL"),
    ("device_id", 15, "TYPE_STRING"),
]


def test_contract_keeps_the_original_fields_numbers_and_types_and_only_adds():
    """Existing clients of the original system depend on every number and type of fields 1-11."""
    descriptor = TransactionRequest.DESCRIPTOR
    type_names = {getattr(FieldDescriptor, name): name for name in dir(FieldDescriptor) if name.startswith("TYPE_")}
    got = [(f.name, f.number, type_names[f.type]) for f in descriptor.fields]
    assert got == EXPECTED_FIELDS + ADDED_FIELDS
    assert descriptor.file.package == "fraud"
    response = fraud_pb2.IngestionResponse.DESCRIPTOR
    assert [(f.name, f.number) for f in response.fields] == [("success", 1), ("message", 2)]


def test_grpc_method_path_is_the_original_one():
    service = fraud_pb2.DESCRIPTOR.services_by_name["FraudIngestion"]
    method = service.methods_by_name["SendTransaction"]
    assert f"/{service.full_name}/{method.name}" == "/fraud.FraudIngestion/SendTransaction"
    assert hasattr(fraud_pb2_grpc, "FraudIngestionStub")


def test_from_mapping_coerces_numpy_values_and_ignores_extra_columns():
    row = {
        "transaction_id": "t-1", "user_id": np.int64(42), "amount": np.float32(12.5),
        "timestamp": np.int64(1_700_000_000_000),
        "is_fraud": np.bool_(True), "type": "TRANSFER", "old_balance_orig": 100, "new_balance_orig": 87.5,
        "old_balance_dest": 0.0, "new_balance_dest": 12.5, "is_unauthorized_overdraft": False, "step": 3,
        "name_orig": "C1",
    }
    message = transaction_from_mapping(row)
    assert transaction_to_dict(message) == {
        "transaction_id": "t-1", "user_id": 42, "amount": 12.5, "timestamp": 1_700_000_000_000, "is_fraud": True,
        "type": "TRANSFER", "old_balance_orig": 100.0, "new_balance_orig": 87.5, "old_balance_dest": 0.0,
        "new_balance_dest": 12.5, "is_unauthorized_overdraft": 0.0,
        "ip_address": "", "dest_user_id": 0, "dest_is_merchant": False, "device_id": "",
    }


def test_encode_decode_round_trip_and_key_is_user_id():
    message = TransactionRequest(transaction_id="abc", user_id=9_000_000_001, amount=math.pi, type="CASH_OUT")
    assert decode_transaction(encode_transaction(message)) == message
    assert transaction_key(message) == b"9000000001"


@pytest.mark.parametrize(("account", "expected"), [("C1231006815", 1231006815), ("M1979787155", 1979787155)])
def test_user_id_from_account(account, expected):
    assert user_id_from_account(account) == expected


def test_user_id_from_account_without_digits_names_the_account():
    with pytest.raises(ValueError, match="'CUSTOMER'"):
        user_id_from_account("CUSTOMER")


def test_a_batch_carries_each_rows_event_time_and_origin_when_the_table_has_them():
    table = pd.DataFrame({
        "type": ["PAYMENT", "TRANSFER"], "amount": [1.5, 2.0], "timestamp": [1_767_225_600_000, 1_767_225_660_500],
        "ip_address": ["81.2.69.160", "2001:db8::1"], "dest_user_id": [7, 8], "dest_is_merchant": [True, False],
        "device_id": ["d1", "d2"], "scenario": ["normal", "account_takeover"],
    })
    batch = messages.transactions_batch(table, transaction_ids=["a", "b"], user_ids=[1, 2])
    got = [(m.timestamp, m.ip_address, m.dest_user_id, m.dest_is_merchant, m.device_id) for m in batch.transactions]
    assert got == [(1_767_225_600_000, "81.2.69.160", 7, True, "d1"),
                   (1_767_225_660_500, "2001:db8::1", 8, False, "d2")]
    stamped = messages.transactions_batch(table, transaction_ids=["a", "b"], user_ids=[1, 2], timestamp=5)
    assert [m.timestamp for m in stamped.transactions] == [5, 5]
    with pytest.raises(ValueError, match="timestamp"):
        messages.transactions_batch(table.drop(columns="timestamp"), transaction_ids=["a", "b"], user_ids=[1, 2])


def test_transactions_from_table_stamps_unique_ids_and_time():
    table = pd.DataFrame({"type": ["PAYMENT", "CASH_IN"], "amount": [1.0, 2.0], "name_orig": ["C11", "C22"]})
    out = transactions_from_table(table, timestamp=1_700_000_000_123)
    assert [m.user_id for m in out] == [11, 22]
    assert {m.timestamp for m in out} == {1_700_000_000_123}
    assert len({m.transaction_id for m in out}) == 2
    assert messages.now_millis() > 1_700_000_000_000
