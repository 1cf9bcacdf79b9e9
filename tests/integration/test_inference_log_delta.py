"""The inference log against a real Delta table on disk: rows, schema, commits, and recovery.

The unwritable location is a path under a regular file, which fails the way a missing bucket or a
read-only mount does; removing the file makes it writable again without restarting the log. The
records here carry their inputs already parsed and no model (so no signature: the inputs are one
JSON column); tests/integration/test_inference_table.py has the real model servers.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pyarrow as pa
from deltalake import DeltaTable
from prometheus_client import CollectorRegistry

from controller.serving.inference_log import REQUEST_SCHEMA, InferenceLog
from tests.helpers import wait_for

T0 = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)


def record(i: int) -> dict[str, Any]:
    return {
        "request_id": f"req-{i:03d}",
        "timestamp": T0 + dt.timedelta(milliseconds=i),
        "model": "churn",
        "model_version": str(1 + i % 2),
        "role": "champion" if i % 2 == 0 else "challenger",
        "latency_ms": 0.5 * i,
        "routing_key": f"key-{i}" if i % 3 else None,
        "status": 200,
        "inputs": [{"x": i}],
        "predictions": [i % 2],
        "client": "ignored",
    }


def test_three_batches_become_three_commits_with_exact_rows(tmp_path: Path) -> None:
    path = tmp_path / "inference"
    registry = CollectorRegistry()
    with InferenceLog(str(path), batch_size=4, flush_seconds=60, registry=registry) as log:
        for batch in range(3):
            for i in range(batch * 4, batch * 4 + 4):
                assert log.append(record(i))
            wait_for(
                f"{4 * (batch + 1)} rows written",
                lambda n=batch: log.stats()["rows_written"] == 4 * (n + 1),
                15,
                interval=0.01,
            )
    assert log.stats() == {"rows_written": 12, "dropped": 0, "write_errors": 0, "pending": 0}
    assert registry.get_sample_value("mlgitops_inference_log_rows_total") == 12

    table = DeltaTable(str(path))
    assert table.version() == 2  # created by the first append, then two more commits
    assert [h["operation"] for h in table.history()] == ["WRITE", "WRITE", "WRITE"]
    schema = table.to_pyarrow_table().schema
    assert schema == pa.schema(
        [*REQUEST_SCHEMA, pa.field("inputs", pa.string()), pa.field("prediction", pa.float64())]
    )

    frame = table.to_pandas().sort_values("request_id").reset_index(drop=True)
    assert str(frame["timestamp"].dtype) == "datetime64[us, UTC]"
    assert str(frame["status"].dtype) == "int32"
    assert str(frame["row"].dtype) == "int32"
    assert str(frame["latency_ms"].dtype) == "float64"
    expected = [
        {
            "request_id": f"req-{i:03d}",
            "row": 0,
            "timestamp": T0 + dt.timedelta(milliseconds=i),
            "model": "churn",
            "model_version": str(1 + i % 2),
            "role": "champion" if i % 2 == 0 else "challenger",
            "routing_key": f"key-{i}" if i % 3 else None,
            "latency_ms": 0.5 * i,
            "status": 200,
            "inputs": f'{{"x":{i}}}',
            "prediction": float(i % 2),
        }
        for i in range(12)
    ]
    rows = table.to_pyarrow_table().sort_by("request_id").to_pylist()
    assert rows == expected


def test_nulls_round_trip_through_delta(tmp_path: Path) -> None:
    path = tmp_path / "inference"
    with InferenceLog(str(path), flush_seconds=60, registry=CollectorRegistry()) as log:
        log.append({"request_id": "only-id", "timestamp": None})
    rows = DeltaTable(str(path)).to_pyarrow_table().to_pylist()
    assert rows == [{"request_id": "only-id"} | dict.fromkeys(REQUEST_SCHEMA.names[1:])]


def test_unwritable_location_retains_rows_until_it_recovers(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a regular file where the table's parent directory should be")
    path = blocker / "inference"
    registry = CollectorRegistry()
    log = InferenceLog(
        str(path),
        batch_size=5,
        flush_seconds=60,  # batches form on size alone, so the commits below are deterministic
        max_buffer=20,
        registry=registry,
        retry_initial_seconds=0.05,
        retry_max_seconds=0.2,
    )
    log.start()
    try:
        assert all(log.append(record(i)) for i in range(20))  # the caller never sees the failure
        wait_for("2 write errors", lambda: log.stats()["write_errors"] >= 2, 15, interval=0.01)
        stats = log.stats()
        assert stats["dropped"] == 0
        assert stats["pending"] == 20
        assert stats["rows_written"] == 0
        assert registry.get_sample_value("mlgitops_inference_log_write_errors_total") == float(
            stats["write_errors"]
        )

        assert not any(log.append(record(i)) for i in range(20, 25))  # now the buffer overflows
        assert log.stats()["dropped"] == 5
        assert registry.get_sample_value("mlgitops_inference_log_dropped_total") == 5

        blocker.unlink()  # the location becomes writable
        wait_for("20 rows written", lambda: log.stats()["rows_written"] == 20, 15, interval=0.01)
    finally:
        log.close(timeout=10)

    assert log.stats()["pending"] == 0
    assert log.stats()["dropped"] == 5
    table = DeltaTable(str(path))
    assert table.version() == 3  # four batches of five retained rows, one commit each
    ids = table.to_pyarrow_table().column("request_id").to_pylist()
    assert sorted(ids) == [f"req-{i:03d}" for i in range(20)]
