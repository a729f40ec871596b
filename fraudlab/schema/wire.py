"""The contract's Kafka records as column batches, with any protobuf runtime: no generated stubs, no gRPC.

The generated ``fraud_pb2`` checks for the protobuf runtime it was generated
for (7.x), so it does not import in the Flink venv (protobuf 5.29, pinned by
Apache Beam). This module builds the message classes from the descriptor set
``fraudlab/schema/proto/fraud.desc`` that ``make proto`` writes beside the stubs, in a
descriptor pool of its own (so it never clashes with ``fraud_pb2`` in the main
venv), and converts whole batches, because the scoring job gets Arrow batches
of ~1,000-10,000 records through pandas UDFs:

* :func:`decode_transactions` turns ``raw_transactions`` values into one typed
  column per ``TransactionRequest`` field plus one error string per record; a
  record that does not parse, or is no usable transaction, gets a reason and a
  neutral row instead of failing the batch;
* :func:`encode_scored` and :func:`encode_dead_letters` write what the job
  publishes; :func:`decode_scored` and :func:`decode_dead_letters` read it back
  (tests, notebooks, the demo summary);
* :func:`encode_transactions` and :func:`encode_transaction_batch` turn a table
  into ``raw_transactions`` values or one ``TransactionBatch``
  (:func:`fraudlab.schema.messages.transactions_batch` is built on it).

Parsing goes through upb in one call per batch: the payloads are framed as the
repeated field of a private message, so a batch costs one ``ParseFromString``
(a batch with an unparsable record falls back to one call per record).
Reading the fields back costs one attribute access per field and record, the
bulk of decoding. Encoding is vectorised with numpy, because building one
message per record through protobuf's constructor costs 6-16 µs a record (2-3
times this module's); it writes bytes for bytes what protobuf serializes
(field-number order, proto3 defaults omitted, ``-0.0`` kept, negative integers
as ten-byte varints), and the tests compare it with ``fraud_pb2``'s output.
"""

from __future__ import annotations

import reprlib
from collections.abc import Sequence
from functools import cache
from importlib import resources
from itertools import chain, groupby
from operator import attrgetter
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError, Message

from fraudlab.exceptions import DataValidationError, InvalidParameterError
from fraudlab.schema.protogen import DESCRIPTOR_SET
from fraudlab.schema.table import MONEY_COLUMNS, TRANSACTION_TYPES

__all__ = [
    "DEAD_LETTER_DTYPES",
    "SCORE_DTYPES",
    "TRANSACTION_DTYPES",
    "TRANSACTION_FIELDS",
    "DecodedTransactions",
    "decode_dead_letters",
    "decode_scored",
    "decode_transactions",
    "encode_dead_letters",
    "encode_scored",
    "encode_transaction_batch",
    "encode_transactions",
]

# --------------------------------------------------------------------------- the message classes

#: The column dtype of each scalar field type the contract uses.
_DTYPES: dict[int, np.dtype] = {
    FieldDescriptor.TYPE_DOUBLE: np.dtype("float64"),
    FieldDescriptor.TYPE_INT64: np.dtype("int64"),
    FieldDescriptor.TYPE_INT32: np.dtype("int32"),
    FieldDescriptor.TYPE_BOOL: np.dtype("bool"),
    FieldDescriptor.TYPE_STRING: np.dtype("object"),
    FieldDescriptor.TYPE_BYTES: np.dtype("object"),
}
_VARINT_TYPES = (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_BOOL)
_FRAMED = ("TransactionRequest", "ScoredTransaction", "DeadLetter")


def _frames_file(contract: descriptor_pb2.FileDescriptorProto) -> descriptor_pb2.FileDescriptorProto:
    """A private ``<Name>Frame { repeated fraud.<Name> records = 1; }`` per decoded message: one parse per batch."""
    frames = descriptor_pb2.FileDescriptorProto(
        name="fraudlab/schema/wire_frames.proto", package="fraudlab.wire", syntax="proto3",
        dependency=[contract.name])
    for name in _FRAMED:
        frames.message_type.add(name=f"{name}Frame").field.add(
            name="records", number=1, label=FieldDescriptor.LABEL_REPEATED, type=FieldDescriptor.TYPE_MESSAGE,
            type_name=f".{contract.package}.{name}")
    return frames


def _message_classes() -> dict[str, type[Message]]:
    """The contract's messages and their frames, by short name, built from the packaged descriptor set."""
    data = (resources.files("fraudlab.schema.proto") / DESCRIPTOR_SET).read_bytes()
    files = descriptor_pb2.FileDescriptorSet.FromString(data).file
    pool = descriptor_pool.DescriptorPool()
    for file in files:
        pool.Add(file)
    contract = next(file for file in files if file.package == "fraud")
    pool.Add(_frames_file(contract))
    names = [*(f"fraud.{message.name}" for message in contract.message_type),
             *(f"fraudlab.wire.{name}Frame" for name in _FRAMED)]
    return {name.rsplit(".", 1)[1]: message_factory.GetMessageClass(pool.FindMessageTypeByName(name))
            for name in names}


_CLASSES = _message_classes()
_TRANSACTION = _CLASSES["TransactionRequest"]
_SCORED = _CLASSES["ScoredTransaction"]
_DEAD_LETTER = _CLASSES["DeadLetter"]


def _is_repeated(field: FieldDescriptor) -> bool:
    """Whether a field is repeated: protobuf 7 has only ``is_repeated``, 5.29 only ``label``."""
    if hasattr(field, "is_repeated"):
        return bool(field.is_repeated)
    return field.label == field.LABEL_REPEATED


def _fields(message: type[Message]) -> tuple[FieldDescriptor, ...]:
    """A message's fields in field-number order, the order protobuf serializes them in."""
    descriptor: Descriptor = message.DESCRIPTOR
    return tuple(sorted(descriptor.fields, key=attrgetter("number")))


def _scalar_dtypes(message: type[Message]) -> dict[str, np.dtype]:
    """The column dtype of each non-message field (repeated fields are object columns of tuples)."""
    return {field.name: (np.dtype("object") if _is_repeated(field) else _DTYPES[field.type])
            for field in _fields(message) if field.type != field.TYPE_MESSAGE}


#: ``TransactionRequest``'s fields, in field-number order: the columns of every decoded batch.
TRANSACTION_FIELDS: tuple[str, ...] = tuple(field.name for field in _fields(_TRANSACTION))
#: The column dtype of each ``TransactionRequest`` field (strings are object columns of ``str``).
TRANSACTION_DTYPES: dict[str, np.dtype] = _scalar_dtypes(_TRANSACTION)
#: The columns ``ScoredTransaction`` adds to its transaction's (``reasons``: tuples of ``str``).
SCORE_DTYPES: dict[str, np.dtype] = _scalar_dtypes(_SCORED)
#: The columns of a decoded dead-letter batch (``payload``: ``bytes``).
DEAD_LETTER_DTYPES: dict[str, np.dtype] = _scalar_dtypes(_DEAD_LETTER)

# --------------------------------------------------------------------------- encoding: rows of bytes, column-wise
#
# A message's encoding in every row is a list of pieces in field-number order: a key, a varint, 8 bytes, a string,
# a sub-message's own pieces... Short pieces are padded into matrices (_Fixed); a run of them is packed by one
# boolean mask over the matrices side by side, so a whole message is usually a single numpy copy. A string so long
# that padding would waste memory stays unpadded (_Rows), and the parts are then interleaved row by row.


class _Rows(NamedTuple):
    """One byte string per row, back to back: row ``i`` is the ``lengths[i]`` bytes after the previous rows'."""

    lengths: np.ndarray  # int64, one per row (0: nothing in that row)
    data: np.ndarray  # uint8


class _Fixed(NamedTuple):
    """One byte string per row, padded: row ``i`` is the first ``lengths[i]`` bytes of ``matrix[i]``."""

    matrix: np.ndarray  # uint8, (rows, width)
    lengths: np.ndarray  # int64, one per row


_Piece = _Rows | _Fixed

#: Byte strings are padded into a matrix unless it would be more than this many times their bytes.
_PADDING_FACTOR = 8
_SHIFTS = np.arange(10, dtype=np.uint64) * np.uint64(7)
_VARINT_LIMITS = np.uint64(1) << _SHIFTS[1:]  # the smallest value of each varint length from two bytes on


def _varints(values: np.ndarray) -> _Fixed:
    """Each value's base-128 varint (a negative one as its 64-bit two's complement: ten bytes)."""
    unsigned = np.asarray(values).astype(np.int64).view(np.uint64)
    lengths = np.searchsorted(_VARINT_LIMITS, unsigned, side="right") + 1
    width = int(lengths.max(initial=1))
    groups = (unsigned[:, None] >> _SHIFTS[:width]) & np.uint64(0x7F)
    more = np.arange(width) < (lengths - 1)[:, None]
    return _Fixed((groups | (more * np.uint64(0x80))).astype(np.uint8), lengths.astype(np.int64))


@cache
def _key(field: FieldDescriptor, wire_type: int) -> np.ndarray:
    """A field's key (its number and wire type), the bytes that start its encoding."""
    key = _varints(np.array([field.number << 3 | wire_type]))
    return key.matrix[0, : key.lengths[0]]


def _keyed(key: np.ndarray, body: _Fixed, present: np.ndarray) -> list[_Piece]:
    """``key`` then ``body`` in the rows where the field is present, nothing in the others."""
    keys = _Fixed(np.broadcast_to(key, (len(body.matrix), len(key))), np.where(present, len(key), 0))
    return [keys, _Fixed(body.matrix, np.where(present, body.lengths, 0))]


def _padded(rows: _Rows) -> _Piece:
    """Rows of bytes as a padded matrix, unless one is so much longer than the others that it would waste memory."""
    count = len(rows.lengths)
    width = int(rows.lengths.max(initial=0))
    if width * count > _PADDING_FACTOR * len(rows.data) + count:
        return rows
    matrix = np.zeros((count, width), dtype=np.uint8)
    matrix.ravel()[(np.arange(width) < rows.lengths[:, None]).ravel()] = rows.data  # row-major: the rows' order
    return _Fixed(matrix, rows.lengths)


def _byte_piece(values: Sequence[bytes]) -> _Piece:
    lengths = np.fromiter(map(len, values), dtype=np.int64, count=len(values))
    return _padded(_Rows(lengths, np.frombuffer(b"".join(values), dtype=np.uint8)))


def _total_lengths(pieces: Sequence[_Piece]) -> np.ndarray:
    return np.sum([piece.lengths for piece in pieces], axis=0, dtype=np.int64)


def _length_delimited(field: FieldDescriptor, payload: Sequence[_Piece], present: np.ndarray) -> list[_Piece]:
    """A length-delimited field: its key and the payload's length, then the payload's pieces."""
    return [*_keyed(_key(field, 2), _varints(_total_lengths(payload)), present), *payload]


def _every_element(field: FieldDescriptor, elements: Sequence[_Piece]) -> _Rows:
    """Each element of a repeated length-delimited field, keyed: what the field writes for it."""
    return _pack(_length_delimited(field, elements, np.ones(len(elements[0].lengths), dtype=bool)))


def _field_pieces(field: FieldDescriptor, values: Any, count: int) -> list[_Piece]:
    """One field's encoding in every row.

    ``values``: an array for numbers and flags, ``str`` (``bytes``) objects for
    strings (bytes), a sequence of ``str`` sequences for a repeated string, and
    a sub-message's pieces (the field is then always written, as setting it does).
    """
    if _is_repeated(field):
        if field.type == field.TYPE_STRING:  # each element keyed; a row's elements are back to back
            elements = _every_element(field, [_byte_piece(list(map(str.encode, chain.from_iterable(values))))])
            owners = np.repeat(np.arange(count), np.fromiter(map(len, values), dtype=np.int64, count=count))
            per_row = np.bincount(owners, weights=elements.lengths, minlength=count).astype(np.int64)
            return [_padded(_Rows(per_row, elements.data))]
    elif field.type == field.TYPE_MESSAGE:
        return _length_delimited(field, values, np.ones(count, dtype=bool))
    elif field.type in (field.TYPE_STRING, field.TYPE_BYTES):
        payload = _byte_piece(list(map(str.encode, values)) if field.type == field.TYPE_STRING else values)
        return _length_delimited(field, [payload], payload.lengths > 0)
    elif field.type == field.TYPE_DOUBLE:  # 8 bytes little-endian; the default is +0.0 only (-0.0 is written)
        doubles = np.ascontiguousarray(values, dtype="<f8")
        body = _Fixed(doubles.view(np.uint8).reshape(count, 8), np.full(count, 8))
        return _keyed(_key(field, 1), body, doubles.view(np.uint64) != 0)
    elif field.type in _VARINT_TYPES:
        return _keyed(_key(field, 0), _varints(values), np.asarray(values) != 0)
    raise TypeError(f"{field.full_name}: this field's type ({field.type}) is not encoded by fraudlab.schema.wire")


def _packed(run: Sequence[_Fixed]) -> _Rows:
    """Neighbouring padded pieces, row by row: their matrices side by side, the bytes kept selected by one mask."""
    widths = [piece.matrix.shape[1] for piece in run]
    matrix = np.empty((len(run[0].lengths), sum(widths)), dtype=np.uint8)
    kept = np.empty(matrix.shape, dtype=bool)
    start = 0
    for piece, width in zip(run, widths, strict=True):
        matrix[:, start : start + width] = piece.matrix
        np.less(np.arange(width), piece.lengths[:, None], out=kept[:, start : start + width])
        start += width
    # Flat, a boolean mask is one fast copy; a 2-D one first makes an index array per dimension.
    return _Rows(_total_lengths(run), matrix.ravel()[kept.ravel()])


def _concat(parts: Sequence[_Rows]) -> _Rows:
    """Row ``i`` of the result is row ``i`` of every part, in order: the parts interleaved row by row."""
    lengths = np.stack([part.lengths for part in parts], axis=1)
    ends = np.cumsum(lengths.ravel()).reshape(lengths.shape)
    out = np.empty(int(ends[-1, -1]) if ends.size else 0, dtype=np.uint8)
    for column, part in enumerate(parts):
        if len(part.data):
            shift = (ends[:, column] - part.lengths) - (np.cumsum(part.lengths) - part.lengths)
            out[np.repeat(shift, part.lengths) + np.arange(len(part.data))] = part.data
    return _Rows(lengths.sum(axis=1), out)


def _pack(pieces: Sequence[_Piece]) -> _Rows:
    """Every row's pieces, in order, as one byte string per row."""
    parts: list[_Rows] = []
    for padded, group in groupby(pieces, key=lambda piece: isinstance(piece, _Fixed)):
        if padded:
            parts.append(_packed(list(group)))
        else:
            parts.extend(group)
    return parts[0] if len(parts) == 1 else _concat(parts)


def _pieces(message: type[Message], columns: dict[str, Any], count: int) -> list[_Piece]:
    """Every row's serialized ``message``, as pieces, from one column per field (see :func:`_field_pieces`)."""
    return [piece for field in _fields(message) for piece in _field_pieces(field, columns[field.name], count)]


def _split(rows: _Rows) -> list[bytes]:
    """The rows as separate byte strings (one Kafka record value each)."""
    blob = rows.data.tobytes()
    ends = np.cumsum(rows.lengths)
    return [blob[start:end] for start, end in zip((ends - rows.lengths).tolist(), ends.tolist(), strict=True)]


def _column(table: pd.DataFrame, name: str, dtype: np.dtype, default: object) -> np.ndarray:
    """A table column in its wire dtype (strings made ``str``), or the proto default when the table lacks it."""
    if name not in table.columns:
        return np.full(len(table), default, dtype=dtype)
    column = table[name]
    if dtype.kind == "O":
        strings = pd.api.types.infer_dtype(column, skipna=False) == "string"
        return (column if strings else column.astype(str)).to_numpy(dtype=object)
    return column.to_numpy() if column.dtype == dtype else column.astype(dtype).to_numpy()


def _transaction_pieces(transactions: pd.DataFrame) -> list[_Piece]:
    """Every row's serialized ``TransactionRequest``: contract columns converted, missing ones defaulted."""
    columns = {field.name: _column(transactions, field.name, TRANSACTION_DTYPES[field.name], field.default_value)
               for field in _fields(_TRANSACTION)}
    return _pieces(_TRANSACTION, columns, len(transactions))


def _check_count(name: str, length: int, count: int) -> None:
    if length != count:
        raise InvalidParameterError(f"{name} has {length} value(s) for {count} row(s): give one per row")


def _per_row(name: str, values: object, dtype: str, count: int) -> np.ndarray:
    """One value per row: a scalar is repeated, a sequence must have one value per row."""
    array = np.asarray(values, dtype=dtype)
    if array.ndim == 0:
        return np.broadcast_to(array, (count,))
    _check_count(name, len(array), count)
    return array


def encode_transactions(transactions: pd.DataFrame) -> list[bytes]:
    """One serialized ``TransactionRequest`` per row: ``raw_transactions`` record values.

    Columns named after the contract's fields are converted to the field's type
    (:data:`TRANSACTION_DTYPES`); missing ones keep the proto default and extra
    columns (``step``, ``name_orig``...) are ignored, so a canonical table or an
    account stream converts directly.
    """
    return _split(_pack(_transaction_pieces(transactions)))


def encode_transaction_batch(transactions: pd.DataFrame) -> bytes:
    """One serialized ``TransactionBatch`` (``batch_id`` 0) of every row, converted as by :func:`encode_transactions`.

    :func:`fraudlab.schema.messages.transactions_batch` parses it into the gRPC
    stub's message: one column-wise conversion instead of one constructor call
    per row.
    """
    field = _CLASSES["TransactionBatch"].DESCRIPTOR.fields_by_name["transactions"]
    return _every_element(field, _transaction_pieces(transactions)).data.tobytes()


def encode_scored(
    transactions: pd.DataFrame,
    score: Sequence[float] | np.ndarray,
    alert: Sequence[bool] | np.ndarray,
    model_version: str | Sequence[str],
    reasons: Sequence[Sequence[str]],
    scored_at: int | Sequence[int] | np.ndarray,
) -> list[bytes]:
    """One serialized ``ScoredTransaction`` per row: ``scored_transactions`` (and ``fraud_alerts``) record values.

    The transaction is rebuilt from the columns as by :func:`encode_transactions`,
    so a batch from :func:`decode_transactions` round-trips every field. ``reasons``
    (feature-family names, most important first) has one sequence per row; ``score``,
    ``alert``, ``model_version`` and ``scored_at`` (epoch ms) one value per row or one
    for all.

    Raises:
        InvalidParameterError: an argument has a number of values other than the rows'.
    """
    count = len(transactions)
    _check_count("reasons", len(reasons), count)
    columns = {
        "transaction": _transaction_pieces(transactions),
        "score": _per_row("score", score, "float64", count),
        "alert": _per_row("alert", alert, "bool", count),
        "model_version": _per_row("model_version", model_version, "str", count),
        "reasons": reasons,
        "scored_at": _per_row("scored_at", scored_at, "int64", count),
    }
    return _split(_pack(_pieces(_SCORED, columns, count)))


def encode_dead_letters(
    payloads: Sequence[bytes | None],
    reasons: Sequence[str],
    *,
    topic: str | Sequence[str],
    partition: int | Sequence[int] | np.ndarray,
    offset: int | Sequence[int] | np.ndarray,
) -> list[bytes]:
    """One serialized ``DeadLetter`` per record the job could not use: its value byte for byte, why, and where.

    ``reasons`` are :func:`decode_transactions`' errors; ``topic``, ``partition``
    and ``offset`` (Kafka's metadata of the record read) one per record or one for
    all. A null record value is kept as empty bytes.

    Raises:
        InvalidParameterError: an argument has a number of values other than the payloads'.
    """
    count = len(payloads)
    _check_count("reasons", len(reasons), count)
    columns = {
        "payload": [b"" if payload is None else payload for payload in payloads],
        "reason": list(reasons),
        "partition": _per_row("partition", partition, "int32", count),
        "offset": _per_row("offset", offset, "int64", count),
        "topic": _per_row("topic", topic, "str", count),
    }
    return _split(_pack(_pieces(_DEAD_LETTER, columns, count)))


# --------------------------------------------------------------------------- decoding


class DecodedTransactions(NamedTuple):
    """:func:`decode_transactions`' answer: one row and one error per payload, in order."""

    #: One column per ``TransactionRequest`` field (:data:`TRANSACTION_DTYPES`), a RangeIndex.
    transactions: pd.DataFrame
    #: ``''`` for a usable transaction; otherwise why not, naming the field and its value (its row is neutral).
    errors: list[str]


def _parse(message: type[Message], payloads: Sequence[bytes | None]) -> tuple[list[Message], list[str]]:
    """Each payload parsed as ``message`` (an empty one where it does not parse), and why it did not ('' if fine).

    The whole batch is first parsed in one call, as the repeated field of
    ``message``'s frame; only a batch holding an unparsable payload is parsed
    again record by record, to find which.
    """
    values = [b"" if payload is None else payload for payload in payloads]
    errors = ["null record value (no payload)" if payload is None else "" for payload in payloads]
    frame = _CLASSES[f"{message.DESCRIPTOR.name}Frame"]()
    records = frame.DESCRIPTOR.fields_by_name["records"]
    try:
        frame.ParseFromString(_every_element(records, [_byte_piece(values)]).data.tobytes())
        return list(frame.records), errors
    except DecodeError:
        parsed = []
        for position, value in enumerate(values):
            try:
                parsed.append(message.FromString(value))
            except DecodeError:
                parsed.append(message())
                errors[position] = (f"{len(value)} bytes that do not parse as {message.DESCRIPTOR.full_name} "
                                    f"(they start {value[:16].hex()})")
        return parsed, errors


def _columns(message: type[Message], parsed: Sequence[Message]) -> dict[str, Any]:
    """A column per non-message field of the parsed messages (a repeated field's as a list of tuples)."""
    columns: dict[str, Any] = {}
    for field in _fields(message):
        if field.type != field.TYPE_MESSAGE:
            values = list(map(attrgetter(field.name), parsed))
            columns[field.name] = ([tuple(value) for value in values] if _is_repeated(field)
                                   else np.array(values, dtype=_DTYPES[field.type]))
    return columns


def _shown(value: object) -> str:
    """A value as a reason quotes it: repr, long strings cut (a garbage record's text can be any size)."""
    return reprlib.repr(value.item() if isinstance(value, np.generic) else value)


def _unusable(columns: dict[str, np.ndarray]) -> dict[str, tuple[np.ndarray, str]]:
    """Each rule a parsed transaction must pass: the rows it refuses, and what it requires.

    The ingestion service refuses the same records (with the same words); a
    consumer checks again because ``raw_transactions`` has other writers and
    any bytes parse as *some* message.
    """
    rules = {
        "transaction_id": (columns["transaction_id"] == "", "is empty: give every transaction a unique id (a UUID)"),
        "type": (~pd.Series(columns["type"], dtype=object).isin(TRANSACTION_TYPES).to_numpy(),
                 f"is not one of {', '.join(TRANSACTION_TYPES)}"),
    }
    for name in MONEY_COLUMNS:
        values = columns[name]
        rules[name] = (~((values >= 0.0) & (values < np.inf)), "must be a finite number >= 0")
    return rules


def decode_transactions(payloads: Sequence[bytes | None]) -> DecodedTransactions:
    """``raw_transactions`` record values as one typed row each, and one error string each ('' when usable).

    A payload that does not parse, or parses to no usable transaction (empty
    ``transaction_id``, a ``type`` outside the five, a money field negative, NaN
    or infinite), gets a reason naming the field and the value, and a row of
    proto defaults, so one bad record never fails the batch: route the rows with
    an error to the dead-letter topic (:func:`encode_dead_letters`) and score the
    others. The frame's columns feed :func:`fraudlab.detect.features.feature_inputs`.
    """
    parsed, errors = _parse(_TRANSACTION, payloads)
    columns = _columns(_TRANSACTION, parsed)
    rules = _unusable(columns)
    refused = np.logical_or.reduce([rows for rows, _ in rules.values()]) | (np.array(errors, dtype=object) != "")
    bad = np.flatnonzero(refused)
    for row in bad:
        if not errors[row]:
            errors[row] = "; ".join(f"{name}={_shown(columns[name][row])} {requirement}"
                                    for name, (rows, requirement) in rules.items() if rows[row])
    if len(bad):
        for field in _fields(_TRANSACTION):
            columns[field.name][bad] = field.default_value
    return DecodedTransactions(pd.DataFrame(columns), errors)


def _parsed_or_raise(message: type[Message], payloads: Sequence[bytes | None], source: str) -> list[Message]:
    parsed, errors = _parse(message, payloads)
    problems = [f"record {position}: {error}" for position, error in enumerate(errors) if error]
    if problems:
        raise DataValidationError(source, problems)
    return parsed


def decode_scored(payloads: Sequence[bytes | None]) -> pd.DataFrame:
    """``scored_transactions`` (or ``fraud_alerts``) record values as one row each, for readers of the job's output.

    Columns: the transaction's (:data:`TRANSACTION_DTYPES`), then
    :data:`SCORE_DTYPES` (``reasons`` a tuple of ``str`` per row).

    Raises:
        DataValidationError: a payload is not a ``ScoredTransaction`` (each one is named by position).
    """
    parsed = _parsed_or_raise(_SCORED, payloads, "scored transactions")
    transactions = list(map(attrgetter("transaction"), parsed))
    return pd.DataFrame({**_columns(_TRANSACTION, transactions), **_columns(_SCORED, parsed)})


def decode_dead_letters(payloads: Sequence[bytes | None]) -> pd.DataFrame:
    """Dead-letter record values as one row each (:data:`DEAD_LETTER_DTYPES`; ``payload`` the original bytes).

    Raises:
        DataValidationError: a payload is not a ``DeadLetter`` (each one is named by position).
    """
    return pd.DataFrame(_columns(_DEAD_LETTER, _parsed_or_raise(_DEAD_LETTER, payloads, "dead letters")))
