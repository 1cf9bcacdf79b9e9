"""The inference log: every prediction the server makes, appended in batches to a Delta table.

It is the monitor's input (drift, quality, latency per version), so it must record what was served;
but a prediction matters more than its record. Logging therefore never blocks and never fails the
request: ``append`` only copies the record into a bounded in-memory buffer (microseconds, no
parsing or serialization on the request path), and one background thread turns batches into rows
(``inference_rows``: one per input row, the inputs as typed columns) and commits them to Delta,
which also amortizes a commit over many rows. A model version with another signature adds its
columns to the table (schema merge), and a batch is cast to the types the table already has, so an
append never fails on the schema. When the table cannot be written (an
unwritable path, the object store down) the thread keeps the batch and retries with capped
exponential backoff; records that arrive while the buffer is full are dropped, and every drop is
counted in ``mlgitops_inference_log_dropped_total`` and warned about, never lost silently.
"""

from __future__ import annotations

import contextlib
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
from controller.serving import inference_rows
from controller.serving.inference_rows import REQUEST_SCHEMA

__all__ = ["REQUEST_SCHEMA", "InferenceLog", "InferenceLogStats"]

log = logging.getLogger("mlgitops.serving.inference_log")

_WARN_INTERVAL_S = 60.0


@dataclass(frozen=True)
class _Batch:
    """Records taken from the buffer, as the rows they become."""

    table: pa.Table
    records: int


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
    from the environment (``AWS_*``, ``GOOGLE_*``, ``AZURE_*``). The table is created on the
    first write.

    A record is one request, a plain dict with the keys :func:`inference_rows.to_table` reads
    (the request's columns, the inputs or the body and the served model to read them with, the
    predictions or the response); a missing key is stored as null (``timestamp`` defaults to the
    time of ``append``), unknown keys are ignored. It becomes one row per input row on the
    writer thread. Only a shallow copy is taken on ``append``, so do not mutate nested values
    after handing them over. The buffer, its limit and the drops count records (requests);
    ``rows_written`` counts the table's rows.
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
        # The table's schema as last seen (None: no table yet, or not read since a failure), so
        # a batch can be cast to the types the table already has before it is appended.
        self._schema: pa.Schema | None = None
        self._schema_known = False

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
            inference_rows.to_table([])
        batch: _Batch | None = None  # taken from the buffer, kept until it is committed
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
            if self._write(batch.table):
                rows = batch.table.num_rows
                with self._lock:
                    self._pending -= batch.records
                    self._rows_written += rows
                self._metrics.rows.inc(rows)
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

    def _take_batch(self) -> _Batch | None:
        with self._lock:
            records = self._buffer[: self._batch_size]
            del self._buffer[: self._batch_size]
        if not records:
            return None
        try:
            return _Batch(inference_rows.to_table(records), len(records))
        except Exception:  # defensive: conversion is per value and should not raise
            log.exception("inference log could not convert %d record(s); dropped", len(records))
            with self._lock:
                self._pending -= len(records)
                self._count_drop_locked(len(records))
            return None

    def _write(self, batch: pa.Table) -> bool:
        try:
            if not self._schema_known:
                self._schema = tables.arrow_schema(self.table_uri, self._storage_options)
                self._schema_known = True
            data = inference_rows.conform(batch, self._schema)
            tables.append(
                self.table_uri, data, storage_options=self._storage_options, merge_schema=True
            )
            self._schema = _merged(self._schema, data.schema)
        except Exception as exc:
            self._schema_known = False  # another writer may have changed it: read it again
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

    def _drop_all_pending(self, batch: _Batch | None) -> None:
        with self._lock:
            n = (0 if batch is None else batch.records) + len(self._buffer)
            if n == 0:
                return
            self._buffer.clear()
            self._pending -= n
            self._last_drop_warning = -math.inf  # closing: always say what was lost
            self._count_drop_locked(n)


def _merged(schema: pa.Schema | None, added: pa.Schema) -> pa.Schema:
    """The table's schema after ``added`` was appended with schema merge: new columns at the end."""
    if schema is None:
        return added
    known = set(schema.names)
    return pa.schema([*schema, *(f for f in added if f.name not in known)])
