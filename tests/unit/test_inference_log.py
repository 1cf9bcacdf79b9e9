"""The inference log's contract with the request path: never block, never raise, count every drop.

The Delta write is replaced by an in-memory sink (the real table is in the integration tests), so
these tests look at what landed in the sink, the stats and the Prometheus counters.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from controller.serving import inference_log
from controller.serving.inference_log import REQUEST_SCHEMA, InferenceLog
from tests.helpers import wait_for


class Sink:
    """Stands in for ``controller.lake.tables.append``: keeps committed tables, can fail or block."""

    def __init__(self) -> None:
        self.commits: list[Any] = []
        self.failures_left = 0
        self.always_fail = False
        self.gate = threading.Event()
        self.gate.set()

    def __call__(
        self, table_uri: str, data: Any, *, storage_options: Any, merge_schema: bool = False
    ) -> None:
        self.gate.wait()
        if self.always_fail or self.failures_left > 0:
            self.failures_left -= 1
            raise OSError("object store unavailable")
        self.commits.append(data)

    def rows(self) -> list[dict[str, Any]]:
        return [row for table in self.commits for row in table.to_pylist()]


@pytest.fixture
def sink(monkeypatch: pytest.MonkeyPatch) -> Iterator[Sink]:
    fake = Sink()
    monkeypatch.setattr(inference_log.tables, "append", fake)
    yield fake
    fake.gate.set()  # never leave a writer thread blocked


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


def metric(registry: CollectorRegistry, name: str) -> float:
    value = registry.get_sample_value(name)
    assert value is not None, name
    return value


def record(i: int) -> dict[str, Any]:
    return {
        "request_id": f"r{i:05d}",
        "timestamp": 1_700_000_000.0 + i,
        "model": "fraud",
        "model_version": "3",
        "role": "champion",
        "latency_ms": 1.25,
        "status": 200,
        "inputs": [{"a": i}],  # one input row: one row of the table
        "predictions": [0],
    }


def test_append_never_blocks_and_counts_every_drop(
    sink: Sink, registry: CollectorRegistry, tmp_path: Path
) -> None:
    log = InferenceLog(str(tmp_path / "t"), max_buffer=10, registry=registry)  # not started

    t0 = time.perf_counter()
    results = [log.append(record(i)) for i in range(10_000)]
    elapsed = time.perf_counter() - t0

    assert results == [True] * 10 + [False] * 9_990
    assert log.stats() == {"rows_written": 0, "dropped": 9_990, "write_errors": 0, "pending": 10}
    assert metric(registry, "mlgitops_inference_log_dropped_total") == 9_990
    assert elapsed < 0.5, f"10,000 appends took {elapsed:.3f}s"  # microseconds each, not millis

    log.close(timeout=5)  # flushes the ten it kept, even though it was never started
    assert [r["request_id"] for r in sink.rows()] == [f"r{i:05d}" for i in range(10)]
    assert log.stats()["pending"] == 0


def test_append_never_blocks_while_the_writer_is_stuck(
    sink: Sink, registry: CollectorRegistry, tmp_path: Path
) -> None:
    sink.gate.clear()  # the table write hangs (a slow object store)
    log = InferenceLog(
        str(tmp_path / "t"), batch_size=10, flush_seconds=0.01, max_buffer=100, registry=registry
    )
    log.start()
    try:
        t0 = time.perf_counter()
        accepted = sum(log.append(record(i)) for i in range(10_000))
        elapsed = time.perf_counter() - t0

        assert accepted == 100  # the batch held by the writer counts against the buffer
        assert log.stats()["dropped"] == 9_900
        assert metric(registry, "mlgitops_inference_log_dropped_total") == 9_900
        assert elapsed < 1.0, f"10,000 appends took {elapsed:.3f}s with the writer stuck"
    finally:
        sink.gate.set()
        log.close(timeout=10)

    assert len(sink.rows()) == 100
    assert log.stats() == {"rows_written": 100, "dropped": 9_900, "write_errors": 0, "pending": 0}
    assert metric(registry, "mlgitops_inference_log_rows_total") == 100


def test_close_flushes_a_partial_batch(
    sink: Sink, registry: CollectorRegistry, tmp_path: Path
) -> None:
    log = InferenceLog(str(tmp_path / "t"), batch_size=500, flush_seconds=60, registry=registry)
    log.start()
    for i in range(7):
        assert log.append(record(i))
    log.close(timeout=5)

    assert [r["request_id"] for r in sink.rows()] == [f"r{i:05d}" for i in range(7)]
    assert len(sink.commits) == 1
    assert log.stats() == {"rows_written": 7, "dropped": 0, "write_errors": 0, "pending": 0}
    assert not log.append(record(99))  # closed: dropped and counted, not raised
    assert log.stats()["dropped"] == 1


def test_batches_on_size_and_on_time(
    sink: Sink, registry: CollectorRegistry, tmp_path: Path
) -> None:
    with InferenceLog(
        str(tmp_path / "t"), batch_size=5, flush_seconds=0.2, registry=registry
    ) as log:
        for i in range(10):
            log.append(record(i))
        wait_for("10 rows written", lambda: log.stats()["rows_written"] == 10, 10, interval=0.005)
        assert [t.num_rows for t in sink.commits] == [5, 5]

        log.append(record(10))  # under a batch: written once flush_seconds pass
        wait_for("11 rows written", lambda: log.stats()["rows_written"] == 11, 10, interval=0.005)
    assert [t.num_rows for t in sink.commits] == [5, 5, 1]


def test_failed_writes_are_retried_and_counted(
    sink: Sink, registry: CollectorRegistry, tmp_path: Path
) -> None:
    sink.failures_left = 3
    log = InferenceLog(
        str(tmp_path / "t"),
        batch_size=4,
        flush_seconds=0.01,
        registry=registry,
        retry_initial_seconds=0.01,
        retry_max_seconds=0.05,
    )
    with log:
        for i in range(4):
            assert log.append(record(i))
        wait_for("4 rows written", lambda: log.stats()["rows_written"] == 4, 10, interval=0.005)

    assert log.stats() == {"rows_written": 4, "dropped": 0, "write_errors": 3, "pending": 0}
    assert [r["request_id"] for r in sink.rows()] == ["r00000", "r00001", "r00002", "r00003"]
    assert metric(registry, "mlgitops_inference_log_write_errors_total") == 3
    assert metric(registry, "mlgitops_inference_log_rows_total") == 4


def test_close_gives_up_at_its_timeout_and_counts_what_it_could_not_write(
    sink: Sink, registry: CollectorRegistry, tmp_path: Path
) -> None:
    sink.always_fail = True
    log = InferenceLog(
        str(tmp_path / "t"),
        batch_size=6,
        flush_seconds=60,
        registry=registry,
        retry_initial_seconds=0.01,
        retry_max_seconds=0.05,
    )
    log.start()
    for i in range(6):
        log.append(record(i))
    wait_for("a write error", lambda: log.stats()["write_errors"] >= 1, 10, interval=0.005)
    t0 = time.monotonic()
    log.close(timeout=1.0)

    assert time.monotonic() - t0 < 1.5
    stats = log.stats()
    assert stats["dropped"] == 6
    assert stats["pending"] == 0
    assert stats["rows_written"] == 0
    assert stats["write_errors"] >= 1
    assert metric(registry, "mlgitops_inference_log_dropped_total") == 6


def test_request_columns_with_nulls_for_missing_fields(
    sink: Sink, registry: CollectorRegistry, tmp_path: Path
) -> None:
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    with InferenceLog(str(tmp_path / "t"), flush_seconds=60, registry=registry) as log:
        log.append(
            {
                "request_id": "full",
                "timestamp": dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC),
                "model": "fraud",
                "model_version": 3,
                "role": "challenger",
                "routing_key": "customer-7",
                "latency_ms": np.float32(2.5),
                "status": np.int64(200),
                "inputs": {"a": np.array([1, 2]), "b": np.array(["x", "y"])},
                "predictions": np.array([0.25, 0.75]),
                "unknown": "ignored",
            }
        )
        log.append({"request_id": "sparse"})
        log.append({"request_id": "odd", "timestamp": "not a time", "status": 2**40})
        log.append("not a record")  # type: ignore[arg-type]

    (table,) = sink.commits
    assert table.schema.names == [*REQUEST_SCHEMA.names, "inputs", "prediction"]
    assert table.schema.field("prediction").type == "double"
    full_0, full_1, sparse, odd = table.to_pylist()
    request = {
        "request_id": "full",
        "timestamp": dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC),
        "model": "fraud",
        "model_version": "3",
        "role": "challenger",
        "routing_key": "customer-7",
        "latency_ms": 2.5,
        "status": 200,
    }
    # No reader, so no signature: each input row is one JSON object.
    assert full_0 == {**request, "row": 0, "inputs": '{"a":1,"b":"x"}', "prediction": 0.25}
    assert full_1 == {**request, "row": 1, "inputs": '{"a":2,"b":"y"}', "prediction": 0.75}
    assert sparse["timestamp"] >= before  # stamped at append when the caller gave none
    assert {k: v for k, v in sparse.items() if k not in ("request_id", "timestamp")} == (
        dict.fromkeys(["row", *REQUEST_SCHEMA.names[3:], "inputs", "prediction"])
    )
    assert odd["timestamp"] is None
    assert odd["status"] is None  # out of int32 range: null rather than a failed batch
    assert odd["row"] is None  # nothing to read the inputs from
    assert log.stats() == {"rows_written": 4, "dropped": 1, "write_errors": 0, "pending": 0}


def test_default_registry_is_the_model_servers_and_is_shared(sink: Sink, tmp_path: Path) -> None:
    from controller.serving.metrics import REGISTRY

    first = InferenceLog(str(tmp_path / "a"), max_buffer=1)
    second = InferenceLog(str(tmp_path / "b"), max_buffer=1)  # no duplicated-series error
    before = REGISTRY.get_sample_value("mlgitops_inference_log_dropped_total") or 0.0
    for log in (first, second):
        log.append(record(0))
        assert not log.append(record(1))
        log.close(timeout=5)

    exposition = generate_latest(REGISTRY).decode()
    for name in ("rows", "dropped", "write_errors"):
        assert f"mlgitops_inference_log_{name}_total" in exposition
    assert REGISTRY.get_sample_value("mlgitops_inference_log_dropped_total") == before + 2
    assert first.stats()["dropped"] == 1
    assert second.stats()["dropped"] == 1


def test_start_is_idempotent_and_refused_after_close(
    sink: Sink, registry: CollectorRegistry, tmp_path: Path
) -> None:
    log = InferenceLog(str(tmp_path / "t"), registry=registry)
    log.start()
    log.start()
    writers = [t for t in threading.enumerate() if t.name == "mlgitops-inference-log"]
    assert len(writers) == 1
    log.close()
    log.close()
    assert not writers[0].is_alive()
    with pytest.raises(RuntimeError):
        log.start()
