"""How requests and their responses become rows of the inference table: one row per input row.

The table is what the monitor reads (drift per feature, quality per version once labels land)
and what people query, so the inputs are columns named and typed by the model's signature and the
prediction is a column too: nobody has to parse JSON to ask how a feature moved. All of it
happens here, on the inference log's writer thread. The request path only hands over what it
already holds: the inputs as the model was given them (parsed once, for the prediction), the raw
body, the response, and the served model's :class:`Reader`, whose signature names the columns
and whose parser (MLflow's, as the scoring path uses it) reads a failed request's body here,
later, rather than on the request path.

The rows, per request (README, "Inference tables", says the same for users):

- ``request_id``, ``row`` (the input row's position in the request), ``timestamp`` (the
  request's start), ``model``, ``model_version``, ``role``, ``routing_key``, ``latency_ms`` and
  ``status``: :data:`REQUEST_SCHEMA`, in every row.
- One column per input of the signature, named as there (prefixed ``input_`` if that would take
  one of the names above), typed from its type: double, float, long, integer, boolean, string,
  datetime and binary as Arrow's; a nested type (array, object, map) as JSON text. Without a
  signature with named inputs, one JSON column ``inputs`` holds each row as an object.
- The prediction: ``prediction`` for one value per row (float64 when every value is a number,
  else text: JSON for a list); ``prediction_<name>`` per column when the model answers with named
  columns (a DataFrame, a dict of columns). Predictions that do not line up with the input rows
  are kept whole, as JSON text, in each row of the request.
- A request whose inputs cannot be read still leaves one row, with ``row`` and the inputs null
  (without a signature, ``inputs`` holds the body); a failed request has no prediction.

A batch's columns are the union of its requests' (a champion and a challenger with different
signatures each fill their own, null elsewhere); :func:`conform` casts a batch to the types the
table already has, value by value where a cast fails, so an append never fails on a type and
never drops a row.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import pandas as pd  # type: ignore[import-untyped]
import pyarrow as pa  # type: ignore[import-untyped]

__all__ = ["REQUEST_SCHEMA", "Reader", "arrow_type", "conform", "to_table"]

_TIMESTAMP = pa.timestamp("us", tz="UTC")

REQUEST_SCHEMA = pa.schema(
    [
        pa.field("request_id", pa.string()),
        pa.field("row", pa.int32()),
        pa.field("timestamp", _TIMESTAMP),
        pa.field("model", pa.string()),
        pa.field("model_version", pa.string()),
        pa.field("role", pa.string()),
        pa.field("routing_key", pa.string()),
        pa.field("latency_ms", pa.float64()),
        pa.field("status", pa.int32()),
    ]
)

_RESERVED = frozenset([*REQUEST_SCHEMA.names, "inputs", "prediction"])

# MLflow's column types (``DataType`` names) and the Arrow types the table stores them as.
_TYPES: dict[str, pa.DataType] = {
    "double": pa.float64(),
    "float": pa.float32(),
    "long": pa.int64(),
    "integer": pa.int32(),
    "boolean": pa.bool_(),
    "string": pa.string(),
    "datetime": _TIMESTAMP,
    "binary": pa.binary(),
}

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_ONE_US = dt.timedelta(microseconds=1)
_INT_RANGE = {32: (-(2**31), 2**31 - 1), 64: (-(2**63), 2**63 - 1), 16: (-(2**15), 2**15 - 1)}


class Reader(Protocol):
    """What the table needs of a served model (``controller.serving.protocol.Scorer``)."""

    # (name, MLflow type name) per input of the signature; None without named inputs.
    input_columns: tuple[tuple[str, str], ...] | None

    def parse(self, body: bytes, content_type: str | None) -> Any:
        """The inputs of a request body as the model would be handed them; raises when the
        body cannot be read."""
        ...


def arrow_type(mlflow_type: str) -> pa.DataType:
    """The column type of an input of MLflow type ``mlflow_type``; JSON text for nested ones."""
    return _TYPES.get(mlflow_type, pa.string())


def input_column(name: str) -> str:
    """The table column of signature input ``name``: itself, unless it is one of ours."""
    if name in _RESERVED or name.startswith("prediction_") or name.startswith("input_"):
        return f"input_{name}"
    return name


# -- the batch ------------------------------------------------------------------------------------


Index = slice | np.ndarray  # the rows of a batch a piece of a column fills


class _Column:
    """One column of a batch: pieces of values (NumPy arrays or lists), each filling some rows
    of the batch; the rows no piece fills are null."""

    __slots__ = ("numpy", "pieces", "type")

    def __init__(self, type_: pa.DataType | None) -> None:
        self.type = type_  # None: decided from the values (predictions)
        self.pieces: list[tuple[Index, Any]] = []
        self.numpy = True  # every piece is a NumPy array

    def put(self, rows: Index, values: Any) -> None:
        self.pieces.append((rows, values))
        if self.numpy and not isinstance(values, np.ndarray):
            self.numpy = False

    def array(self, total: int) -> pa.Array:
        type_ = self.type if self.type is not None else _decided(self.pieces)
        if self.numpy and self.pieces:
            converted = self._from_numpy(total, type_)
            if converted is not None:
                return converted
        values: list[Any] = [None] * total
        for rows, piece in self.pieces:
            if isinstance(piece, np.ndarray):
                piece = piece.tolist() if piece.dtype.kind != "M" else list(piece)
            if isinstance(rows, slice):
                values[rows] = piece
            else:
                for i, value in zip(rows.tolist(), piece, strict=True):
                    values[i] = value
        try:
            return pa.array(values, type=type_)
        except (pa.ArrowException, OverflowError, TypeError, ValueError):
            return pa.array([coerce(v, type_) for v in values], type=type_)

    def _from_numpy(self, total: int, type_: pa.DataType) -> pa.Array | None:
        dtypes = {piece.dtype for _, piece in self.pieces}
        if len(dtypes) != 1:
            return None
        dtype = dtypes.pop()
        if dtype.kind == "O":
            return None  # Python objects: value by value
        out = np.empty(total, dtype=dtype)
        null = np.ones(total, dtype=bool)
        for rows, piece in self.pieces:
            out[rows] = piece
            null[rows] = False
        try:
            if dtype.kind == "M":
                array = pa.array(out, mask=null)
                return array.cast(type_, safe=False)
            return pa.array(out, mask=null if null.any() else None).cast(type_)
        except (pa.ArrowException, OverflowError, TypeError, ValueError):
            return None  # value by value, then


def _decided(pieces: list[tuple[Index, Any]]) -> pa.DataType:
    """float64 when every value of a prediction column is a number (or null), else text."""
    for _, piece in pieces:
        if isinstance(piece, np.ndarray):
            if piece.dtype.kind not in "fiu":
                return pa.string()
            continue
        for value in piece:
            if value is not None and type(value) not in (int, float):
                return pa.string()
    return pa.float64()


class _Blocks:
    """The frames of one model with one column layout that are a single numeric block each
    (what the scoring shortcut hands over): stacked once per batch, not sliced per request."""

    __slots__ = ("blocks", "columns", "starts")

    def __init__(self, columns: list[tuple[_Column, int]]) -> None:
        self.columns = columns  # each input's column, and its position in the block
        self.blocks: list[np.ndarray] = []
        self.starts: list[int] = []

    def flush(self) -> None:
        if not self.blocks:
            return
        stacked = self.blocks[0] if len(self.blocks) == 1 else np.concatenate(self.blocks)
        rows = np.concatenate(
            [
                np.arange(start, start + len(b))
                for start, b in zip(self.starts, self.blocks, strict=True)
            ]
        )
        for column, i in self.columns:
            column.put(rows, stacked[:, i])
        self.blocks, self.starts = [], []


class _Batch:
    def __init__(self) -> None:
        self.rows = 0
        self.columns: dict[str, _Column] = {}  # the inputs and the prediction, in order met
        # The request's columns, one value per request, repeated for its rows at the end.
        self.meta: dict[str, list[Any]] = {name: [] for name in REQUEST_SCHEMA.names}
        self.counts: list[int] = []
        # Worked out once per batch: each reader's input columns, and how a frame with a given
        # Index is read (the frames the scoring shortcut makes for one model share theirs).
        self.signatures: dict[int, tuple[Any, list[tuple[str, _Column]] | None]] = {}
        self.layouts: dict[tuple[int, int], tuple[Any, Any, _Blocks | dict[str, int]]] = {}
        self.blocks: list[_Blocks] = []

    def column(self, name: str, type_: pa.DataType | None) -> _Column:
        column = self.columns.get(name)
        if column is None:
            column = self.columns[name] = _Column(type_)
        return column

    def add(self, record: Mapping[str, Any]) -> None:
        reader = record.get("reader")
        signature = self._signature(reader)
        data = record.get("inputs")
        if data is None and record.get("body") is not None and reader is not None:
            data = _parse(reader, record["body"], record.get("content_type"))
        status = _int(record.get("status"), 32)
        predictions = _predictions(record) if status in (None, 200) else None

        start = self.rows
        n: int | None = None
        if data is not None:
            if signature is not None:
                n = self._named(data, reader, signature, start)
            else:
                n = self._json_rows(data, start)
        if n == 0:
            n = None  # no input row: the request still leaves one
        if n is None and signature is None:
            raw = _raw_inputs(record)
            if raw is not None:
                self.column("inputs", pa.string()).put(slice(start, start + 1), [raw])
        count = n if n is not None else _count(predictions)
        self._predictions(predictions, start, count)
        meta = self.meta
        meta["request_id"].append(_text(record.get("request_id")))
        meta["row"].append(n is not None)
        meta["timestamp"].append(_micros(record.get("timestamp")))
        meta["model"].append(_text(record.get("model")))
        meta["model_version"].append(_text(record.get("model_version")))
        meta["role"].append(_text(record.get("role")))
        meta["routing_key"].append(_text(record.get("routing_key")))
        meta["latency_ms"].append(_float(record.get("latency_ms")))
        meta["status"].append(status)
        self.counts.append(count)
        self.rows += count

    def _signature(self, reader: Any) -> list[tuple[str, _Column]] | None:
        """The reader's inputs and their columns in this batch; None without a signature."""
        if reader is None:
            return None
        known = self.signatures.get(id(reader))
        if known is None or known[0] is not reader:
            spec = getattr(reader, "input_columns", None)
            columns = None
            if spec is not None:
                columns = [
                    (str(name), self.column(input_column(str(name)), arrow_type(str(kind))))
                    for name, kind in spec
                ]
            known = (reader, columns)
            self.signatures[id(reader)] = known
        return known[1]

    def _named(
        self, data: Any, reader: Any, signature: list[tuple[str, _Column]], start: int
    ) -> int | None:
        """Put the signature's columns of ``data``; the number of rows, None for a shape with no
        column names (a bare array)."""
        if isinstance(data, pd.DataFrame):
            return self._frame(data, reader, signature, start)
        found = _columns_of(data)
        if found is None:
            return None
        n, get = found
        rows = slice(start, start + n)
        for name, column in signature:
            values = get(name)
            if values is not None and len(values) == n:
                column.put(rows, values)
        return n

    def _frame(
        self, frame: pd.DataFrame, reader: Any, signature: list[tuple[str, _Column]], start: int
    ) -> int:
        columns = frame.columns
        key = (id(reader), id(columns))
        layout = self.layouts.get(key)
        if layout is None or layout[0] is not reader or layout[1] is not columns:
            position = _positions(columns)
            how: _Blocks | dict[str, int] = position
            if _one_block(frame):
                how = _Blocks([(c, position[n]) for n, c in signature if n in position])
                self.blocks.append(how)
            layout = (reader, columns, how)
            self.layouts[key] = layout
        how = layout[2]
        n = len(frame)
        # A layout is worked out from the first frame with that Index; frames sharing an Index
        # object are the shortcut's, all float64 (MLflow's parsers make an Index per request).
        if isinstance(how, _Blocks):
            how.blocks.append(frame.to_numpy())
            how.starts.append(start)
            return n
        rows = slice(start, start + n)
        for name, column in signature:  # column by column, each in its own dtype
            i = how.get(name)
            if i is not None:
                column.put(rows, _sequence(frame.iloc[:, i]))
        return n

    def _json_rows(self, data: Any, start: int) -> int | None:
        rows = _records(data)
        if rows is None:
            return None
        self.column("inputs", pa.string()).put(
            slice(start, start + len(rows)), [_json(r) for r in rows]
        )
        return len(rows)

    def _predictions(self, predictions: Any, start: int, n: int) -> None:
        if predictions is None:
            return
        rows = slice(start, start + n)
        if isinstance(predictions, dict) and predictions:
            for name, values in predictions.items():
                self.column(f"prediction_{name}", None).put(rows, _per_row(values, n))
            return
        if (
            isinstance(predictions, list)
            and predictions
            and len(predictions) == n
            and all(isinstance(p, dict) for p in predictions)
        ):
            names: dict[str, None] = {}
            for p in predictions:
                names.update(dict.fromkeys(p))
            for name in names:
                values = [_scalar(p.get(name)) for p in predictions]
                self.column(f"prediction_{name}", None).put(rows, values)
            return
        self.column("prediction", None).put(rows, _per_row(predictions, n))

    def table(self) -> pa.Table:
        for blocks in self.blocks:
            blocks.flush()
        total = self.rows
        counts = np.asarray(self.counts, dtype=np.int64)
        which = np.repeat(np.arange(len(counts)), counts)  # the request of each row
        names: list[str] = []
        arrays: list[pa.Array] = []
        for field in REQUEST_SCHEMA:
            values = self.meta[field.name]
            if field.name == "row":
                array = _row_numbers(counts, np.asarray(values, dtype=bool))
            else:
                array = pa.array(values, type=field.type)
                if len(values) != total:  # some request has several rows
                    array = array.take(pa.array(which))
            names.append(field.name)
            arrays.append(array)
        for name, column in self.columns.items():
            names.append(name)
            arrays.append(column.array(total))
        return pa.Table.from_arrays(arrays, names=names)


def _row_numbers(counts: np.ndarray, numbered: np.ndarray) -> pa.Array:
    """Each row's position in its request: 0, 1, ... per request; null for a request whose
    inputs could not be read."""
    starts = np.cumsum(counts) - counts
    positions = np.arange(int(counts.sum())) - np.repeat(starts, counts)
    return pa.array(positions.astype(np.int32), mask=~np.repeat(numbered, counts))


def to_table(records: Sequence[Mapping[str, Any]]) -> pa.Table:
    """The rows of ``records`` (what the model server hands the inference log) as one table.

    A record's keys: the request's (:data:`REQUEST_SCHEMA`, ``row`` aside; a missing one is
    null); ``inputs``, the inputs as the model was handed them (a DataFrame, a dict of columns,
    a list of records), else ``body`` and ``content_type`` to read them from with ``reader``;
    ``reader``, the served model (:class:`Reader`; without one there is no signature);
    ``predictions``, else ``response``, the response body (``{"predictions": ...}``).
    """
    batch = _Batch()
    for record in records:
        batch.add(record)
    return batch.table()


def conform(table: pa.Table, schema: pa.Schema | None) -> pa.Table:
    """``table`` with each column that ``schema`` (the table's) also has cast to its type there:
    by Arrow when it can, else value by value, a value that does not fit becoming null."""
    if schema is None:
        return table
    names = set(schema.names)
    for i, name in enumerate(table.column_names):
        if name not in names:
            continue
        want = schema.field(name).type
        column = table.column(i)
        if column.type == want:
            continue
        try:
            cast = column.cast(want)
        except (pa.ArrowException, OverflowError, TypeError, ValueError):
            cast = pa.array([coerce(v, want) for v in column.to_pylist()], type=want)
        table = table.set_column(i, name, cast)
    return table


# -- reading the inputs ---------------------------------------------------------------------------


def _parse(reader: Reader, body: Any, content_type: Any) -> Any:
    try:
        return reader.parse(bytes(body), content_type)
    except Exception:  # a body that cannot be read: the request leaves one row of nulls
        return None


ColumnGetter = Callable[[str], Any]


def _columns_of(data: Any) -> tuple[int, ColumnGetter] | None:
    """The number of rows of ``data`` (not a DataFrame) and how to get a column of it by name
    (None: absent); None for a shape with no column names."""
    if isinstance(data, Mapping):
        columns = {str(k): _sequence(v) for k, v in data.items()}
        lengths = {len(v) for v in columns.values() if v is not None}
        if not lengths and columns:  # one value per name: a single row
            row = {str(k): [_scalar(v)] for k, v in data.items()}
            return 1, row.get
        if len(lengths) != 1:
            return None
        return lengths.pop(), columns.get
    if isinstance(data, list) and data and all(isinstance(r, Mapping) for r in data):
        keys: dict[str, None] = {}
        for r in data:
            keys.update(dict.fromkeys(str(k) for k in r))
        by_name = {k: [_scalar(r.get(k)) for r in data] for k in keys}
        return len(data), by_name.get
    return None


def _positions(columns: Any) -> dict[str, int]:
    """Where each name is among a frame's columns (the first one, when a name repeats)."""
    position: dict[str, int] = {}
    for i, c in enumerate(columns):
        position.setdefault(str(c), i)
    return position


def _one_block(frame: pd.DataFrame) -> bool:
    """True when every column has one numeric or boolean dtype, so ``to_numpy`` is exact."""
    dtypes = set(frame.dtypes)
    return len(dtypes) == 1 and next(iter(dtypes)).kind in "fiub"


def _sequence(values: Any) -> Any:
    """A column's values as a 1-D NumPy array or a list; None when it is not one column."""
    if isinstance(values, pd.Series):
        if isinstance(values.dtype, pd.DatetimeTZDtype):
            return values.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy()
        values = values.to_numpy()
    if isinstance(values, np.ndarray):
        if values.ndim == 1:
            return values
        return [_scalar(v) for v in values] if values.ndim > 1 else None
    if isinstance(values, list | tuple):
        return [_scalar(v) for v in values]
    return None


def _records(data: Any) -> list[Any] | None:
    """Each input row as a JSON-able value: an object per row when there are column names."""
    if isinstance(data, pd.DataFrame):
        return [_jsonable(r) for r in data.to_dict(orient="records")]
    if isinstance(data, Mapping):
        columns = {str(k): _sequence(v) for k, v in data.items()}
        lengths = {len(v) for v in columns.values() if v is not None}
        if len(lengths) == 1 and all(v is not None for v in columns.values()):
            n = lengths.pop()
            return [{k: _scalar(v[i]) for k, v in columns.items()} for i in range(n)]
        return [_jsonable(dict(data))]
    if isinstance(data, np.ndarray):
        return [_jsonable(r) for r in data] if data.ndim >= 1 else [_jsonable(data)]
    if isinstance(data, list):
        return [_jsonable(r) for r in data]
    return [_jsonable(data)]


def _raw_inputs(record: Mapping[str, Any]) -> str | None:
    """The body of a request whose inputs could not be read, as JSON text (as it was, when it
    is JSON; else a JSON string of it)."""
    body = record.get("body")
    if body is None:
        return None
    content_type = str(record.get("content_type") or "").lower()
    if not content_type.startswith(("application/json", "text/csv")) and body:
        return json.dumps(f"<{len(body)} bytes of {content_type or 'unknown type'}>")
    text = bytes(body).decode("utf-8", "replace")
    if content_type.startswith("application/json"):
        try:
            json.loads(text)
        except ValueError:
            return json.dumps(text)
        return text
    return json.dumps(text)


# -- the predictions ------------------------------------------------------------------------------


def _predictions(record: Mapping[str, Any]) -> Any:
    if "predictions" in record:
        return _jsonable(record["predictions"])
    response = record.get("response")
    if not response:
        return None
    try:
        doc = json.loads(response.decode() if isinstance(response, bytes) else response)
    except (ValueError, TypeError):
        return None
    if isinstance(doc, dict) and "predictions" in doc:
        return doc["predictions"]
    return doc  # an unwrapped answer (MLflow's chat and completion models)


def _count(predictions: Any) -> int:
    """How many rows a request whose inputs could not be read gets: one per prediction."""
    if isinstance(predictions, list) and predictions:
        return len(predictions)
    return 1


def _per_row(values: Any, n: int) -> list[Any]:
    if isinstance(values, list) and len(values) == n:
        return [_scalar(v) for v in values]
    whole = _scalar(values)
    return [whole] * n


def _scalar(value: Any) -> Any:
    """A cell: numbers and text as they are; anything nested as JSON text."""
    if value is None or type(value) in (int, float, str, bool):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes | dt.datetime | dt.date):
        return value
    return _json(value)


# -- values ---------------------------------------------------------------------------------------


def coerce(value: Any, type_: pa.DataType) -> Any:
    """``value`` as a Python value of Arrow type ``type_``; None when it does not fit."""
    if value is None:
        return None
    try:
        if pa.types.is_string(type_) or pa.types.is_large_string(type_):
            if isinstance(value, str):
                return value
            if isinstance(value, bytes):
                return value.decode("utf-8", "replace")
            if isinstance(value, float) and math.isnan(value):
                return None
            return _json(value)
        if pa.types.is_floating(type_):
            if isinstance(value, str | bytes):
                return float(value)
            return float(value)
        if pa.types.is_integer(type_):
            return _int(value, type_.bit_width)
        if pa.types.is_boolean(type_):
            return bool(value) if isinstance(value, bool | np.bool_) else None
        if pa.types.is_timestamp(type_):
            micros = _micros(value)
            return None if micros is None else _scale(micros, type_.unit)
        if pa.types.is_binary(type_) or pa.types.is_large_binary(type_):
            if isinstance(value, bytes):
                return value
            return value.encode("utf-8") if isinstance(value, str) else None
    except (TypeError, ValueError, OverflowError):
        return None
    return None


def _scale(micros: int, unit: str) -> int:
    return {"s": micros // 1_000_000, "ms": micros // 1000, "us": micros, "ns": micros * 1000}[unit]


def _text(value: Any) -> str | None:
    if value is None:
        return None
    try:
        return value if isinstance(value, str) else str(value)
    except Exception:
        return None


def _float(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return None


def _int(value: Any, bits: int) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        if isinstance(value, float | np.floating) and not float(value).is_integer():
            return None
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        return None
    low, high = _INT_RANGE.get(bits, (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1))
    return number if low <= number <= high else None


def _micros(value: Any) -> int | None:
    """Microseconds since the epoch from a datetime (naive means UTC), epoch seconds, a NumPy
    datetime64, or ISO text."""
    try:
        if isinstance(value, np.datetime64):
            if np.isnat(value):
                return None
            return int(value.astype("datetime64[us]").astype(np.int64))
        if isinstance(value, str):
            value = dt.datetime.fromisoformat(value)
        if isinstance(value, dt.datetime):
            if value.tzinfo is None:
                value = value.replace(tzinfo=dt.UTC)
            micros: int = (value - _EPOCH) // _ONE_US
            return micros
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            return round(value * 1_000_000)
    except (ValueError, OverflowError, TypeError):
        pass
    return None


def _json(value: Any) -> str | None:
    if value is None:
        return None
    try:
        return json.dumps(value, default=_json_default, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError):
        return None


def _jsonable(value: Any) -> Any:
    """``value`` with NumPy and pandas values made plain, and missing values (NaN, NA, NaT)
    null, so the JSON written is JSON (for rows without a signature, and predictions)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, np.ndarray | pd.Series):
        return _jsonable(value.tolist())
    if isinstance(value, pd.DataFrame):
        return _jsonable(value.to_dict(orient="records"))
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy arrays and scalars, pandas Series and Index
        return value.tolist()
    if hasattr(value, "to_dict"):  # a pandas DataFrame
        try:
            return value.to_dict(orient="records")
        except TypeError:
            return value.to_dict()
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)
