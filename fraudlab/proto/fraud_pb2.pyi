from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class TransactionRequest(_message.Message):
    __slots__ = ("transaction_id", "user_id", "amount", "timestamp", "is_fraud", "type", "old_balance_orig", "new_balance_orig", "old_balance_dest", "new_balance_dest", "is_unauthorized_overdraft")
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
    def __init__(self, transaction_id: _Optional[str] = ..., user_id: _Optional[int] = ..., amount: _Optional[float] = ..., timestamp: _Optional[int] = ..., is_fraud: _Optional[bool] = ..., type: _Optional[str] = ..., old_balance_orig: _Optional[float] = ..., new_balance_orig: _Optional[float] = ..., old_balance_dest: _Optional[float] = ..., new_balance_dest: _Optional[float] = ..., is_unauthorized_overdraft: _Optional[float] = ...) -> None: ...

class IngestionResponse(_message.Message):
    __slots__ = ("success", "message")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    success: bool
    message: str
    def __init__(self, success: _Optional[bool] = ..., message: _Optional[str] = ...) -> None: ...
