"""The inference log: every prediction the server makes, appended in batches to a Delta table.

It is the monitor's input (drift, quality, latency per version), so it must record what was served;
but a prediction matters more than its record. Logging therefore never blocks and never fails the
request: ``append`` only copies the record into a bounded in-memory buffer (microseconds, no
serialization on the request path), and one background thread turns batches into Arrow and commits
them to Delta, which also amortizes a commit over many rows. When the table cannot be written (an
unwritable path, the object store down) the thread keeps the batch and retries with capped
exponential backoff; records that arrive while the buffer is full are dropped, and every drop is
counted in ``mlgitops_inference_log_dropped_total`` and warned about, never lost silently.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import math
import threading
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, TypedDict

import pyarrow as pa  # type: ignore[import-untyped]
from prometheus_client import CollectorRegistry, Counter

from controller.lake import tables

__all__ = ["SCHEMA", "InferenceLog", "InferenceLogStats"]

log = logging.getLogger("mlgitops.serving.inference_log")

SCHEMA = pa.schema(
    [
        pa.field("request_id", pa.string()),
        pa.field("timestamp", pa.timestamp("us", tz="UTC")),
        pa.field("model", pa.string()),
        pa.field("model_version", pa.string()),
        pa.field("role", pa.string()),
        pa.field("latency_ms", pa.float64()),
        pa.field("status", pa.int32()),
        pa.field("inputs", pa.string()),
        pa.field("outputs", pa.string()),
    ]
)

_WARN_INTERVAL_S = 60.0
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_ONE_US = dt.timedelta(microseconds=1)
_INT32 = (-(2**31), 2**31 - 1)


class InferenceLogStats(TypedDict):
    rows_written: int
    dropped: int
    write_errors: int
    pending: int


@dataclass(frozen=True)
class _Metrics:
    rows: Counter
    dropped: Counter
    write_errors: Counter


# One set of counters per registry: several logs in one process (tests, a restarted server) share
# them instead of failing on a duplicated time series.
_METRICS: weakref.WeakKeyDictionary[CollectorRegistry, _Metrics] = weakref.WeakKeyDictionary()
_METRICS_LOCK = threading.Lock()


def _default_registry() -> CollectorRegistry:
    from controller.serving.metrics import REGISTRY

    return REGISTRY


def _metrics_for(registry: CollectorRegistry) -> _Metrics:
    with _METRICS_LOCK:
        metrics = _METRICS.get(registry)
        if metrics is None:
            metrics = _Metrics(
                rows=Counter(
                    "mlgitops_inference_log_rows",
                    "Rows committed to the inference log table.",
                    registry=registry,
                ),
                dropped=Counter(
                    "mlgitops_inference_log_dropped",
                    "Inference records dropped because the log buffer was full or closing.",
                    registry=registry,
                ),
                write_errors=Counter(
                    "mlgitops_inference_log_write_errors",
                    "Failed writes to the inference log table (each retried while the buffer holds).",
                    registry=registry,
                ),
            )
            _METRICS[registry] = metrics
        return metrics


class InferenceLog:
    """A non-blocking, batching writer of inference records to a Delta table.

    ``table_uri`` is a local path or an object-store URI (``s3://``, ``gs://``, ``az://``);
    ``storage_options`` go to deltalake as they are, and when None deltalake reads credentials
    from the environment (``AWS_*``, ``GOOGLE_*``, ``AZURE_*``). The table is created with
    :data:`SCHEMA` on the first write.

    Records are plain dicts with the keys of :data:`SCHEMA`; a missing key is stored as null
    (``timestamp`` defaults to the time of ``append``), unknown keys are ignored. ``inputs`` and
    ``outputs`` are stored as JSON text: a ``str`` is taken as JSON already (a raw request body),
    anything else is serialized (numpy and pandas values included) on the writer thread. Only a
    shallow copy is taken on ``append``, so do not mutate nested values after handing them over.
    """

    def __init__(
        self,
        table_uri: str,
        *,
        batch_size: int = 500,
        flush_seconds: float = 2.0,
        max_buffer: int = 10_000,
        storage_options: dict[str, str] | None = None,
        registry: CollectorRegistry | None = None,
        retry_initial_seconds: float = 0.5,
        retry_max_seconds: float = 30.0,
    ) -> None:
        if batch_size < 1 or max_buffer < 1:
            raise ValueError("batch_size and max_buffer must be at least 1")
        if flush_seconds <= 0 or retry_initial_seconds <= 0 or retry_max_seconds <= 0:
            raise ValueError("flush_seconds and the retry delays must be positive")
        self.table_uri = table_uri
        self._batch_size = batch_size
        self._flush_seconds = flush_seconds
        self._max_buffer = max_buffer
        self._storage_options = dict(storage_options) if storage_options is not None else None
        self._retry_initial = retry_initial_seconds
        self._retry_max = retry_max_seconds
        self._metrics = _metrics_for(registry if registry is not None else _default_registry())

        self._lock = threading.Lock()
        self._buffer: list[dict[str, Any]] = []
        # Records accepted and not yet committed: the buffer plus the batch the writer holds.
        self._pending = 0
        self._rows_written = 0
        self._dropped = 0
        self._write_errors = 0
        self._closed = False
        self._close_deadline = math.inf
        self._last_drop_warning = -math.inf
        self._drops_since_warning = 0
        self._last_error_warning = -math.inf

        self._wake = threading.Event()  # a full batch is ready, or closing
        self._stop = threading.Event()  # closing: cuts a retry backoff short
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the writer thread (once; later calls do nothing)."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the inference log is closed")
            if self._thread is not None:
                return
            self._thread = threading.Thread(
                target=self._run, name="mlgitops-inference-log", daemon=True
            )
            self._thread.start()

    def close(self, timeout: float = 10) -> None:
        """Flush what is buffered and stop the writer, waiting at most ``timeout`` seconds.

        Records that still cannot be written when the time is up are dropped and counted.
        """
        with self._lock:
            if self._closed:
                thread = self._thread
                needs_thread = False
            else:
                self._closed = True
                # The writer stops retrying a little before close() stops waiting, so that what
                # it gives up on is counted by the time close() returns.
                self._close_deadline = time.monotonic() + 0.8 * timeout
                thread = self._thread
                needs_thread = thread is None and self._pending > 0
        if needs_thread:
            thread = threading.Thread(target=self._run, name="mlgitops-inference-log", daemon=True)
            self._thread = thread
            thread.start()
        self._stop.set()
        self._wake.set()
        if thread is not None:
            thread.join(timeout)
        with self._lock:
            unreported, self._drops_since_warning = self._drops_since_warning, 0
        if unreported:
            log.warning(
                "inference log dropped %d more record(s) since its last warning (%s)",
                unreported,
                self.table_uri,
            )
        if thread is not None and thread.is_alive():
            log.warning(
                "inference log writer still busy after %.1fs; %d record(s) not yet written to %s",
                timeout,
                self._pending,
                self.table_uri,
            )

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the request path ------------------------------------------------------------------------

    def append(self, record: Mapping[str, Any]) -> bool:
        """Buffer one record; never blocks, never raises. False when the record was dropped."""
        try:
            row = dict(record)
        except Exception:  # not a mapping: a caller's bug must not fail the prediction
            with self._lock:
                self._count_drop_locked(1)
            return False
        if "timestamp" not in row:
            row["timestamp"] = time.time()
        with self._lock:
            if self._pending >= self._max_buffer or self._closed:
                self._count_drop_locked(1)
                return False
            self._buffer.append(row)
            self._pending += 1
            ready = len(self._buffer) >= self._batch_size
        if ready and not self._wake.is_set():
            self._wake.set()
        return True

    def stats(self) -> InferenceLogStats:
        with self._lock:
            return InferenceLogStats(
                rows_written=self._rows_written,
                dropped=self._dropped,
                write_errors=self._write_errors,
                pending=self._pending,
            )

    def _count_drop_locked(self, n: int) -> None:
        self._dropped += n
        self._drops_since_warning += n
        self._metrics.dropped.inc(n)
        now = time.monotonic()
        if now - self._last_drop_warning >= _WARN_INTERVAL_S:
            log.warning(
                "inference log dropped %d record(s) (buffer of %d full or log closed; %s)",
                self._drops_since_warning,
                self._max_buffer,
                self.table_uri,
            )
            self._last_drop_warning = now
            self._drops_since_warning = 0

    # -- the writer thread -----------------------------------------------------------------------

    def _run(self) -> None:
        # Arrow's first timestamp conversion takes about a second: pay it before the first batch.
        with contextlib.suppress(Exception):  # a real problem shows on the first batch
            _to_arrow([])
        batch: pa.Table | None = None  # taken from the buffer, kept until it is committed
        failures = 0
        while True:
            if self._stop.is_set() and time.monotonic() >= self._close_deadline:
                self._drop_all_pending(batch)  # closing took too long: count what is left
                return
            if batch is None:
                with self._lock:
                    ready = len(self._buffer) >= self._batch_size or self._closed
                if not ready:
                    self._wake.wait(self._flush_seconds)
                self._wake.clear()
                batch = self._take_batch()
                if batch is None:
                    with self._lock:
                        if self._closed and not self._buffer:
                            return
                    continue
            if self._write(batch):
                with self._lock:
                    self._pending -= batch.num_rows
                    self._rows_written += batch.num_rows
                self._metrics.rows.inc(batch.num_rows)
                batch, failures = None, 0
                continue
            failures += 1
            delay = min(self._retry_max, self._retry_initial * 2 ** min(failures - 1, 30))
            if not self._stop.is_set():
                self._stop.wait(delay)  # close() cuts the backoff short for a last attempt
            elif self._close_deadline - time.monotonic() > delay:
                time.sleep(delay)
            else:
                self._drop_all_pending(batch)
                return

    def _take_batch(self) -> pa.Table | None:
        with self._lock:
            rows = self._buffer[: self._batch_size]
            del self._buffer[: self._batch_size]
        if not rows:
            return None
        try:
            return _to_arrow(rows)
        except Exception:  # defensive: conversion is per-field and should not raise
            log.exception("inference log could not convert %d record(s); dropped", len(rows))
            with self._lock:
                self._pending -= len(rows)
                self._count_drop_locked(len(rows))
            return None

    def _write(self, batch: pa.Table) -> bool:
        try:
            tables.append(self.table_uri, batch, storage_options=self._storage_options)
        except Exception as exc:
            self._metrics.write_errors.inc()
            with self._lock:
                self._write_errors += 1
                pending = self._pending
            now = time.monotonic()
            if now - self._last_error_warning >= _WARN_INTERVAL_S:
                self._last_error_warning = now
                log.warning(
                    "inference log write to %s failed (%s: %s); retrying, %d record(s) pending",
                    self.table_uri,
                    type(exc).__name__,
                    exc,
                    pending,
                )
            return False
        return True

    def _drop_all_pending(self, batch: pa.Table | None) -> None:
        with self._lock:
            n = (0 if batch is None else batch.num_rows) + len(self._buffer)
            if n == 0:
                return
            self._buffer.clear()
            self._pending -= n
            self._last_drop_warning = -math.inf  # closing: always say what was lost
            self._count_drop_locked(n)


# -- conversion (writer thread only) -------------------------------------------------------------


def _to_arrow(rows: list[dict[str, Any]]) -> pa.Table:
    columns: dict[str, list[Any]] = {
        "request_id": [_text(r.get("request_id")) for r in rows],
        "timestamp": [_micros(r.get("timestamp")) for r in rows],
        "model": [_text(r.get("model")) for r in rows],
        "model_version": [_text(r.get("model_version")) for r in rows],
        "role": [_text(r.get("role")) for r in rows],
        "latency_ms": [_number(r.get("latency_ms")) for r in rows],
        "status": [_int32(r.get("status")) for r in rows],
        "inputs": [_json(r.get("inputs")) for r in rows],
        "outputs": [_json(r.get("outputs")) for r in rows],
    }
    arrays = [pa.array(columns[f.name], type=f.type) for f in SCHEMA]
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    try:
        return value if isinstance(value, str) else str(value)
    except Exception:
        return None


def _micros(value: Any) -> int | None:
    """Microseconds since the epoch from a datetime (naive means UTC), epoch seconds, or ISO text."""
    try:
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


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number


def _int32(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if _INT32[0] <= number <= _INT32[1] else None


def _json(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, default=_json_default, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError):
        return None


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy arrays and scalars, pandas Series and Index
        return value.tolist()
    if hasattr(value, "to_dict"):  # a pandas DataFrame, as MLflow's dataframe_split
        try:
            split = value.to_dict(orient="split", index=False)
        except TypeError:
            return value.to_dict()
        return split
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)
