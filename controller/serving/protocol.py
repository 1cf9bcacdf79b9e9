"""MLflow's scoring protocol, request by request, with MLflow's own parsers and serializers.

Behaviour must match ``mlflow models serve`` so existing clients work unchanged, so every request
that is not plainly tabular goes through the functions MLflow's scoring server uses
(``_parse_json_data`` / ``parse_csv_input`` / ``parse_parquet_input``, then ``PyFuncModel.predict``
with its signature enforcement, then ``predictions_to_json``). Only errors are ours: MLflow answers
some bad payloads with the whole payload echoed or a generic "unexpected error", we name the
problem (which key, which columns, which type) in ``{"error_code", "message"}``.

The one shortcut is :class:`_FastFrame`, built once per model when its signature is a list of
required ``double`` columns and it is a scikit-learn model. It hands the flavour's predict the
single float64 block, in signature order and in the memory layout, that MLflow's
``_enforce_schema`` would have produced, and skips MLflow's column-by-column casting and
re-checking: about 80% of its time per request on a small frame. It takes a ``dataframe_split``
or ``dataframe_records`` body of exactly those columns and only finite JSON numbers straight to
one NumPy array (:meth:`_FastFrame.frame`), and any other format once MLflow's own parser has
made a float64 frame of exactly those columns (:meth:`_FastFrame.adopt`, for CSV say). Anything else (a string, a null, an extra or missing
column, ``params``) takes MLflow's full path, which accepts or rejects it exactly as MLflow does.
At load the shortcut must give byte-identical responses to MLflow's path on the model's input
example in every format, or it stays off.

The inference table needs the inputs as columns, and parsing them twice would double the
request's cost: :meth:`Scorer.score_inputs` hands back, with the response, the inputs as the
model got them, and :meth:`Scorer.parse` reads a failed request's body the same way, later, on
the inference log's thread. ``Scorer.input_columns`` (the signature's names and types) names the
table's columns.
"""

from __future__ import annotations

import inspect
import json
import math
import time
from collections.abc import Callable
from io import BytesIO, StringIO
from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped]

from controller.registry.models import (
    ColSpec,
    DataType,
    MlflowException,
    Schema,
    is_unified_llm_input,
)
from controller.registry.models import scoring_server as _mlflow

__all__ = ["ClientError", "ModelError", "Scorer", "error_body"]

JSON = "application/json"
CSV = "text/csv"
PARQUET = "application/vnd.apache.parquet"
CONTENT_TYPES = (JSON, CSV, PARQUET)
FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
_FORMAT_SET = frozenset(FORMATS)
_MAX_MESSAGE = 2000


class ClientError(Exception):
    """The request is wrong: answered with ``status`` (4xx) and a message naming the problem."""

    def __init__(self, message: str, *, status: int = 400, code: str = "BAD_REQUEST") -> None:
        super().__init__(message)
        self.message = _shorten(message)
        self.status = status
        self.code = code


class ModelError(Exception):
    """The model itself failed on an input that passed every check: a 500."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = _shorten(message)


def error_body(code: str, message: str) -> bytes:
    return json.dumps({"error_code": code, "message": message}).encode()


def _shorten(message: str) -> str:
    message = message.strip()
    if len(message) > _MAX_MESSAGE:
        return message[: _MAX_MESSAGE - 14] + " ... (cut off)"
    return message


_ctype_cache: dict[str, str] = {}


def content_kind(header: str | None) -> str:
    """The MIME type of a Content-Type header, checked as MLflow checks it (UTF-8 only)."""
    if header is None:
        raise ClientError(
            f"missing Content-Type header: send one of {', '.join(CONTENT_TYPES)}",
            status=415,
        )
    cached = _ctype_cache.get(header)
    if cached is not None:
        return cached
    parts = [p.strip() for p in header.split(";")]
    mime = parts[0].lower()
    params = {k.strip().lower(): v.strip() for k, _, v in (p.partition("=") for p in parts[1:])}
    if mime not in CONTENT_TYPES:
        raise ClientError(
            f"unsupported Content-Type {header!r}: send one of {', '.join(CONTENT_TYPES)}",
            status=415,
        )
    charset = params.pop("charset", "utf-8").strip("\"'").lower()
    if charset not in ("utf-8", "utf8"):
        raise ClientError(
            f"unsupported charset {charset!r} in Content-Type: only utf-8 is accepted", status=415
        )
    if params:
        raise ClientError(
            f"unrecognized Content-Type parameter(s): {', '.join(sorted(params))}", status=415
        )
    if len(_ctype_cache) < 64:
        _ctype_cache[header] = mime
    return mime


def _mlflow_message(exc: MlflowException) -> str:
    """MLflow's message without the echoed payload and schema, which can run to megabytes."""
    message = str(exc.message)
    if "Failed to enforce schema" in message or message.startswith("Failed to predict data"):
        return "input does not match the model signature: " + message.rsplit("Error: ", 1)[-1]
    if message.startswith("Invalid input. "):
        message = message[len("Invalid input. ") :]
    return message


def _raise_for_mlflow(exc: MlflowException) -> None:
    status = int(exc.get_http_status_code())  # type: ignore[no-untyped-call]
    if 400 <= status < 500:
        raise ClientError(_mlflow_message(exc), status=status) from None
    raise ModelError(_mlflow_message(exc)) from exc


_INPUT_ERRORS = (ValueError, TypeError, KeyError, IndexError)
_NUMBER_TYPES = frozenset({int, float})


class _FastFrame:
    """The tabular shortcut described in the module docstring, for one model."""

    def __init__(self, names: tuple[str, ...], predict: Callable[..., Any]) -> None:
        self.names = names
        self._k = len(names)
        self._index = {n: i for i, n in enumerate(names)}
        self._columns = pd.Index(list(names))
        self.predict = predict

    def frame(self, obj: dict[str, Any]) -> pd.DataFrame | None:
        if len(obj) != 1:
            return None  # params, or a malformed body: MLflow's path decides
        key, value = next(iter(obj.items()))
        if key == "dataframe_split":
            rows, perm = self._split(value)
        elif key == "dataframe_records":
            rows, perm = self._records(value), None
        else:
            return None
        if rows is None:
            return None
        try:
            arr = np.array(rows, dtype=np.float64)
        except (ValueError, TypeError, OverflowError):
            return None
        if arr.ndim != 2 or arr.shape[1] != self._k or not np.isfinite(arr).all():
            return None
        if perm is not None:
            arr = arr[:, perm]
        return pd.DataFrame(arr, columns=self._columns)

    def adopt(self, data: Any) -> pd.DataFrame | None:
        """MLflow's parse of any format, as the frame ``_enforce_schema`` would make of it."""
        if type(data) is dict:  # instances / inputs: column name -> array
            return self._adopt_columns(data)
        if type(data) is not pd.DataFrame or data.shape[1] != self._k or data.empty:
            return None
        columns = list(data.columns)
        if columns != list(self.names):
            if not all(type(c) is str for c in columns) or set(columns) != set(self.names):
                return None
            data = data[list(self.names)]
        if not all(dtype == np.float64 for dtype in data.dtypes):
            return None
        # C order, as np.array(rows) gives: the frame then has MLflow's block layout exactly.
        arr = np.ascontiguousarray(data.to_numpy(dtype=np.float64))
        if not np.isfinite(arr).all():
            return None
        return pd.DataFrame(arr, columns=self._columns)

    def _adopt_columns(self, data: dict[Any, Any]) -> pd.DataFrame | None:
        if len(data) != self._k:
            return None
        columns = []
        for name in self.names:
            col = data.get(name)
            if type(col) is not np.ndarray or col.dtype != np.float64 or col.ndim != 1:
                return None
            columns.append(col)
        if not columns[0].size or any(c.size != columns[0].size for c in columns):
            return None
        arr = np.column_stack(columns)  # C order, as in :meth:`frame`
        if not np.isfinite(arr).all():
            return None
        return pd.DataFrame(arr, columns=self._columns)

    def _typed(self, rows: list[Any]) -> bool:
        k, numbers = self._k, _NUMBER_TYPES
        for row in rows:
            if type(row) is not list or len(row) != k:
                return False
            for v in row:
                if type(v) not in numbers:
                    return False
        return True

    def _split(self, value: Any) -> tuple[list[Any] | None, list[int] | None]:
        if type(value) is not dict or not 2 <= len(value) <= 3:
            return None, None
        columns, data = value.get("columns"), value.get("data")
        if type(columns) is not list or type(data) is not list or not data:
            return None, None
        if len(value) == 3:
            index = value.get("index")
            if type(index) is not list or len(index) != len(data):
                return None, None
        perm: list[int] | None = None
        if columns != list(self.names):
            if len(columns) != self._k or not all(type(c) is str for c in columns):
                return None, None
            if set(columns) != set(self.names):
                return None, None
            position = {c: i for i, c in enumerate(columns)}
            perm = [position[n] for n in self.names]
        return (data if self._typed(data) else None), perm

    def _records(self, value: Any) -> list[Any] | None:
        if type(value) is not list or not value:
            return None
        names, k = self.names, self._k
        rows = []
        for record in value:
            if type(record) is not dict or len(record) != k:
                return None
            try:
                rows.append([record[n] for n in names])
            except KeyError:
                return None
        return rows if self._typed(rows) else None


def _fast_frame(model: Any, schema: Schema | None) -> _FastFrame | None:
    """A shortcut for ``model`` when its signature and flavour allow one (see module docstring)."""
    meta = model.metadata
    if schema is None or schema.is_tensor_spec() or not schema.has_input_names():
        return None
    if meta.get_params_schema() is not None or getattr(model, "loader_module", None) != (
        "mlflow.sklearn"
    ):
        return None
    if meta._is_signature_from_type_hint() or meta._is_type_hint_from_example():
        return None
    if (meta.metadata or {}).get("dependencies_schemas"):
        return None
    inputs = schema.inputs
    if not all(isinstance(c, ColSpec) and c.type == DataType.double and c.required for c in inputs):
        return None
    predict = getattr(model, "_predict_fn", None)
    if predict is None:
        return None
    names = tuple(str(c.name) for c in inputs)
    if len(set(names)) != len(names):
        return None
    return _FastFrame(names, predict)


class Scorer:
    """Everything the request path needs about one loaded model, worked out once at load."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.metadata = model.metadata
        self.schema: Schema | None = self.metadata.get_input_schema()
        self._takes_params = "params" in inspect.signature(model.predict).parameters
        self._required: tuple[str, ...] = ()
        self._names: frozenset[str] = frozenset()
        schema = self.schema
        # The signature's named columns and their MLflow types ("double", "string", ...; "array",
        # "object", "map" for nested ones): the inference table's input columns. None without.
        self.input_columns: tuple[tuple[str, str], ...] | None = None
        if schema is not None and not schema.is_tensor_spec() and schema.has_input_names():
            self._required = tuple(str(c.name) for c in schema.inputs if c.required)
            self._names = frozenset(str(c.name) for c in schema.inputs)
            self.input_columns = tuple((str(c.name), _type_name(c.type)) for c in schema.inputs)
        self.fast: _FastFrame | None = _fast_frame(model, schema)
        self.fast_check = "off"
        if self.fast is not None:
            self._verify_fast()
        self.slowest_ms = self._measure()

    def _measure(self) -> float:
        """Milliseconds of the slowest input-example format (best of 3 each); NaN when unknown."""
        slowest = math.nan
        try:
            for body, ctype in self.example_bodies():
                best = math.inf
                for _ in range(3):  # the best of 3: what the model costs, not the machine's noise
                    started = time.perf_counter()
                    self.score(body, ctype)
                    best = min(best, time.perf_counter() - started)
                slowest = best * 1000 if math.isnan(slowest) else max(slowest, best * 1000)
        except (ClientError, ModelError):
            return math.nan
        return slowest

    # -- load time -------------------------------------------------------------------------------

    def example_bodies(self) -> list[tuple[bytes, str]]:
        """The model's input example in every shape the shortcut takes, as clients send it."""
        example = getattr(self.model, "input_example", None)
        if not isinstance(example, pd.DataFrame) or example.empty:
            return []
        split = json.loads(example.to_json(orient="split", index=False))
        records = json.loads(example.to_json(orient="records"))
        columns = {c: example[c].tolist() for c in example.columns}
        return [
            (json.dumps({"dataframe_split": split}).encode(), JSON),
            (json.dumps({"dataframe_records": records}).encode(), JSON),
            (json.dumps({"instances": records}).encode(), JSON),
            (json.dumps({"inputs": columns}).encode(), JSON),
            (example.to_csv(index=False).encode(), CSV),
        ]

    def _verify_fast(self) -> None:
        """Keep the shortcut only if it gives MLflow's exact bytes on the input example."""
        fast, self.fast = self.fast, None
        bodies = self.example_bodies()
        if fast is None or not bodies:
            self.fast_check = "off: no input example to verify against"
            return
        try:
            expected = [self.score(body, ctype) for body, ctype in bodies]
            self.fast = fast
            got = [self.score(body, ctype) for body, ctype in bodies]
        except (ClientError, ModelError) as exc:
            self.fast = None
            self.fast_check = f"off: the input example failed: {exc}"
            return
        if got != expected:
            self.fast = None
            self.fast_check = "off: differs from MLflow's path on the input example"
            return
        self.fast_check = "on"

    # -- the request path ------------------------------------------------------------------------

    def score(self, body: bytes, content_type: str | None) -> bytes:
        """Predictions for one request body as MLflow's JSON response (``{"predictions": ...}``).

        Raises :class:`ClientError` for a bad request, :class:`ModelError` when the model fails.
        """
        return self.score_inputs(body, content_type)[0]

    def score_inputs(self, body: bytes, content_type: str | None) -> tuple[bytes, Any]:
        """:meth:`score`, and the inputs as the model was handed them (parsed by the shortcut or
        by MLflow's parsers), which the inference log then needs not parse again."""
        kind = content_kind(content_type)
        unified = False
        params: dict[str, Any] | None = None
        fast = self.fast
        if kind == JSON:
            obj = self._decode(body)
            if fast is not None:
                frame = fast.frame(obj)
                if frame is not None:
                    return self._serialize(self._call(fast.predict, frame), unified=False), frame
            data, params, unified = self._parse_json(obj)
        elif not body.strip():
            raise ClientError(_empty_message(kind))
        elif kind == CSV:
            data = self._parse_csv(body)
        else:
            data = self._parse_parquet(body)
        if self._required and isinstance(data, pd.DataFrame):
            self._check_columns(data)
        if fast is not None and params is None and not unified:
            frame = fast.adopt(data)
            if frame is not None:
                return self._serialize(self._call(fast.predict, frame), unified=False), frame
        if params is not None and self._takes_params:
            raw = self._call(self.model.predict, data, params=params)
        else:
            raw = self._call(self.model.predict, data)
        return self._serialize(raw, unified=unified), data

    def parse(self, body: bytes, content_type: str | None) -> Any:
        """The inputs of a request as :meth:`score` would hand them to the model, without
        predicting: for the inference log, off the request path, when a request failed.

        Values that do not fit the signature (the reason a request failed, often) are read as
        MLflow reads them without one, rather than refused. Raises :class:`ClientError` when the
        body cannot be read at all.
        """
        kind = content_kind(content_type)
        if kind == JSON:
            obj = self._decode(body)
            frame = self.fast.frame(obj) if self.fast is not None else None
            if frame is not None:
                return frame
            try:
                return self._parse_json(obj)[0]
            except ClientError:
                return self._parse_unchecked(
                    lambda: _mlflow._parse_json_data(obj, self.metadata, None).data
                )
        if not body.strip():
            raise ClientError(_empty_message(kind))
        if kind == CSV:
            try:
                return self._parse_csv(body)
            except ClientError:
                text = body.decode("utf-8")  # valid: _parse_csv got past decoding
                return self._parse_unchecked(
                    lambda: _mlflow.parse_csv_input(StringIO(text), schema=None)
                )
        return self._parse_parquet(body)

    @staticmethod
    def _parse_unchecked(parse: Callable[[], Any]) -> Any:
        try:
            return parse()
        except MlflowException as exc:
            raise ClientError(_mlflow_message(exc)) from None
        except _INPUT_ERRORS as exc:
            raise ClientError(f"{type(exc).__name__}: {exc}") from None

    def _decode(self, body: bytes) -> dict[str, Any]:
        if not body.strip():
            raise ClientError(_empty_message(JSON))
        try:
            obj = json.loads(body)
        except UnicodeDecodeError as exc:
            raise ClientError(f"request body is not valid UTF-8: {exc.reason}") from None
        except json.JSONDecodeError as exc:
            raise ClientError(f"invalid JSON: {exc}") from None
        if type(obj) is not dict:
            raise ClientError(
                f"the JSON body must be an object with exactly one of the keys "
                f"{', '.join(FORMATS)}; got {_json_kind(obj)}"
            )
        return obj

    def _parse_json(self, obj: dict[str, Any]) -> tuple[Any, dict[str, Any] | None, bool]:
        if not is_unified_llm_input(obj):
            keys = [k for k in obj if k in _FORMAT_SET]
            if len(keys) != 1:
                other = sorted(k for k in obj if k not in _FORMAT_SET and k != "params")
                raise ClientError(
                    f"the JSON body must have exactly one of the keys {', '.join(FORMATS)} "
                    f"(plus optional params); got "
                    + (f"{len(keys)} of them: {', '.join(keys)}" if keys else "none")
                    + (f"; unknown key(s): {', '.join(other)}" if other else "")
                )
            params = obj.get("params")
            if params is not None and not isinstance(params, dict):
                raise ClientError(f"params: must be a JSON object, got {_json_kind(params)}")
        try:
            parsed = _mlflow._parse_json_data(obj, self.metadata, self.schema)
        except MlflowException as exc:
            _raise_for_mlflow(exc)
            raise  # unreachable: _raise_for_mlflow always raises
        return parsed.data, parsed.params, bool(parsed.is_unified_llm_input)

    def _parse_csv(self, body: bytes) -> Any:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ClientError(f"request body is not valid UTF-8: {exc.reason}") from None
        try:
            return _mlflow.parse_csv_input(StringIO(text), schema=self.schema)
        except MlflowException as exc:
            message = str(exc.message)
            cause = message.rsplit("Error: ", 1)[-1].strip("'")
            raise ClientError(f"invalid CSV for the model signature: {cause}") from None

    def _parse_parquet(self, body: bytes) -> Any:
        try:
            return _mlflow.parse_parquet_input(BytesIO(body))
        except MlflowException as exc:
            cause = str(exc.message).rsplit("Error: ", 1)[-1].strip("'")
            raise ClientError(f"invalid Parquet: {cause}") from None

    def _check_columns(self, frame: pd.DataFrame) -> None:
        present = {str(c) for c in frame.columns}
        missing = [n for n in self._required if n not in present]
        if missing:
            extra = sorted(present - self._names)
            raise ClientError(
                f"missing column(s) required by the model signature: {', '.join(missing)}"
                + (f" (unexpected column(s): {', '.join(extra)})" if extra else "")
            )

    def _call(self, fn: Callable[..., Any], data: Any, **kwargs: Any) -> Any:
        try:
            return fn(data, **kwargs)
        except MlflowException as exc:
            _raise_for_mlflow(exc)
            raise  # unreachable
        except _INPUT_ERRORS as exc:
            raise ClientError(
                f"the model could not score the input: {type(exc).__name__}: {exc}"
            ) from None
        except Exception as exc:
            raise ModelError(f"the model failed: {type(exc).__name__}: {exc}") from exc

    def _serialize(self, raw: Any, *, unified: bool) -> bytes:
        out = StringIO()
        try:
            if unified:
                _mlflow.unwrapped_predictions_to_json(raw, out)
            else:
                _mlflow.predictions_to_json(raw, out)
        except Exception as exc:
            raise ModelError(
                f"the model's output could not be serialized: {type(exc).__name__}: {exc}"
            ) from exc
        return out.getvalue().encode()


def _type_name(value: Any) -> str:
    return str(value.name) if isinstance(value, DataType) else type(value).__name__.lower()


def _empty_message(kind: str) -> str:
    if kind == CSV:
        return "empty request body: send CSV with a header row and at least one data row"
    if kind == PARQUET:
        return "empty request body: send a Parquet file"
    return f"empty request body: send a JSON object with one of the keys {', '.join(FORMATS)}"


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    names = {list: "an array", str: "a string", bool: "a boolean", dict: "an object"}
    return names.get(type(value), "a number")
