from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TransactionRequest(_message.Message):
    __slots__ = ("transaction_id", "user_id", "amount", "timestamp", "is_fraud", "type", "old_balance_orig", "new_balance_orig", "old_balance_dest", "new_balance_dest", "is_unauthorized_overdraft", "ip_address", "dest_user_id", "dest_is_merchant", "device_id")
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    IS_FRAUD_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    OLD_BALANCE_ORIG_FIELD_NUMBER: _ClassVar[int]
    NEW_BALANCE_ORIG_FIELD_NUMBER: _ClassVar[int]
    OLD_BALANCE_DEST_FIELD_NUMBER: _ClassVar[int]
    NEW_BALANCE_DEST_FIELD_NUMBER: _ClassVar[int]
    IS_UNAUTHORIZED_OVERDRAFT_FIELD_NUMBER: _ClassVar[int]
    IP_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    DEST_USER_ID_FIELD_NUMBER: _ClassVar[int]
    DEST_IS_MERCHANT_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    transaction_id: str
    user_id: int
    amount: float
    timestamp: int
    is_fraud: bool
    type: str
    old_balance_orig: float
    new_balance_orig: float
    old_balance_dest: float
    new_balance_dest: float
    is_unauthorized_overdraft: float
    ip_address: str
    dest_user_id: int
    dest_is_merchant: bool
    device_id: str
    def __init__(self, transaction_id: _Optional[str] = ..., user_id: _Optional[int] = ..., amount: _Optional[float] = ..., timestamp: _Optional[int] = ..., is_fraud: _Optional[bool] = ..., type: _Optional[str] = ..., old_balance_orig: _Optional[float] = ..., new_balance_orig: _Optional[float] = ..., old_balance_dest: _Optional[float] = ..., new_balance_dest: _Optional[float] = ..., is_unauthorized_overdraft: _Optional[float] = ..., ip_address: _Optional[str] = ..., dest_user_id: _Optional[int] = ..., dest_is_merchant: _Optional[bool] = ..., device_id: _Optional[str] = ...) -> None: ...

class IngestionResponse(_message.Message):
    __slots__ = ("success", "message")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    success: bool
    message: str
    def __init__(self, success: _Optional[bool] = ..., message: _Optional[str] = ...) -> None: ...

class TransactionBatch(_message.Message):
    __slots__ = ("batch_id", "transactions")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    TRANSACTIONS_FIELD_NUMBER: _ClassVar[int]
    batch_id: int
    transactions: _containers.RepeatedCompositeFieldContainer[TransactionRequest]
    def __init__(self, batch_id: _Optional[int] = ..., transactions: _Optional[_Iterable[_Union[TransactionRequest, _Mapping]]] = ...) -> None: ...

class BatchResponse(_message.Message):
    __slots__ = ("batch_id", "accepted", "duplicates", "rejected", "errors")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    batch_id: int
    accepted: int
    duplicates: int
    rejected: int
    errors: _containers.RepeatedCompositeFieldContainer[RecordError]
    def __init__(self, batch_id: _Optional[int] = ..., accepted: _Optional[int] = ..., duplicates: _Optional[int] = ..., rejected: _Optional[int] = ..., errors: _Optional[_Iterable[_Union[RecordError, _Mapping]]] = ...) -> None: ...

class RecordError(_message.Message):
    __slots__ = ("index", "transaction_id", "code", "message")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    index: int
    transaction_id: str
    code: str
    message: str
    def __init__(self, index: _Optional[int] = ..., transaction_id: _Optional[str] = ..., code: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class ScoredTransaction(_message.Message):
    __slots__ = ("transaction", "score", "alert", "model_version", "reasons", "scored_at")
    TRANSACTION_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    ALERT_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    SCORED_AT_FIELD_NUMBER: _ClassVar[int]
    transaction: TransactionRequest
    score: float
    alert: bool
    model_version: str
    reasons: _containers.RepeatedScalarFieldContainer[str]
    scored_at: int
    def __init__(self, transaction: _Optional[_Union[TransactionRequest, _Mapping]] = ..., score: _Optional[float] = ..., alert: _Optional[bool] = ..., model_version: _Optional[str] = ..., reasons: _Optional[_Iterable[str]] = ..., scored_at: _Optional[int] = ...) -> None: ...

class DeadLetter(_message.Message):
    __slots__ = ("payload", "reason", "partition", "offset", "topic")
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    payload: bytes
    reason: str
    partition: int
    offset: int
    topic: str
    def __init__(self, payload: _Optional[bytes] = ..., reason: _Optional[str] = ..., partition: _Optional[int] = ..., offset: _Optional[int] = ..., topic: _Optional[str] = ...) -> None: ...
