"""Inference tables: requests to real models become typed rows of a real Delta table.

The first tests take what the request path hands the inference log (the response and the inputs
MLflow's parsers or the scoring shortcut made, from ``Scorer.score_inputs`` on models loaded
from the seeded store and on small pyfunc models with other signatures) and turn it into rows,
as the writer thread does. The last ones run ``mlgitops serve`` itself, champion and challenger,
under concurrent load, read the table it wrote, and run the monitoring CronJob over it.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import random
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from deltalake import DeltaTable
from mlflow.pyfunc import PythonModel
from prometheus_client import CollectorRegistry

from controller.serving.config import routing_bucket
from controller.serving.inference_log import InferenceLog
from controller.serving.inference_rows import REQUEST_SCHEMA, to_table
from controller.serving.models import LoadedModel, load
from tests.helpers import free_port, wait_for

FRAUD = "prod.fraud.fraud_detector"
CHURN = "prod.customers.churn_predictor"
BIN = Path(sys.executable).parent
JSON = "application/json"
CSV = "text/csv"


# -- models ---------------------------------------------------------------------------------------


class Typed(PythonModel):  # type: ignore[misc]
    """A pyfunc model over every column type: it answers with named columns (a DataFrame)."""

    def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
        return pd.DataFrame(
            {
                "label": [str(c).upper() for c in model_input["city"]],
                "score": [float(r) * 2 for r in model_input["ratio"]],
            }
        )


class Unsigned(PythonModel):  # type: ignore[misc]
    """A pyfunc model logged without a signature: it counts each row's values."""

    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        return [len(row) for row in np.asarray(model_input, dtype=object)]


@pytest.fixture(scope="module")
def models(seeded_store: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, LoadedModel]:
    """The seeded fraud and churn models, and two pyfunc models logged here, loaded for serving
    (``controller.serving.models.load``: what the server does)."""
    import mlflow
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    root = tmp_path_factory.mktemp("models")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    seeded = f"sqlite:///{seeded_store / 'mlflow.db'}"
    loaded: dict[str, LoadedModel] = {}
    try:
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        # Not set_experiment: this process's active experiment would leak into later tests.
        experiment = mlflow.MlflowClient(uri, uri).create_experiment("inference-table")
        signature = ModelSignature(
            inputs=Schema(
                [
                    ColSpec("long", "id"),
                    ColSpec("integer", "count"),
                    ColSpec("float", "ratio"),
                    ColSpec("boolean", "flag"),
                    ColSpec("string", "city"),
                    ColSpec("datetime", "seen"),
                    ColSpec("binary", "blob"),
                ]
            )
        )
        with mlflow.start_run(experiment_id=experiment):
            mlflow.pyfunc.log_model(
                name="typed",
                python_model=Typed(),
                signature=signature,
                registered_model_name="prod.tests.typed",
            )
            mlflow.pyfunc.log_model(
                name="unsigned",
                python_model=Unsigned(),
                registered_model_name="prod.tests.unsigned",
            )
        loaded["typed"] = load("models:/prod.tests.typed/1")
        loaded["unsigned"] = load("models:/prod.tests.unsigned/1")
        mlflow.set_tracking_uri(seeded)
        mlflow.set_registry_uri(seeded)
        for key, name in (("fraud", FRAUD), ("churn", CHURN)):
            loaded[key] = load(f"models:/{name}/2")
    finally:
        mlflow.set_tracking_uri(seeded)
        mlflow.set_registry_uri(seeded)
    assert loaded["unsigned"].scorer.input_columns is None
    assert loaded["fraud"].scorer.fast_check == "on"
    return loaded


def record(
    model: LoadedModel,
    body: bytes,
    content_type: str = JSON,
    *,
    request_id: str = "r1",
    routing_key: str | None = None,
    parsed: bool = True,
) -> dict[str, Any]:
    """What the request path hands the inference log for ``body`` sent to ``model``.

    ``parsed=False``: without the parsed inputs, so the writer reads the body itself.
    """
    from controller.serving.protocol import ClientError

    inputs: Any = None
    try:
        out, inputs = model.scorer.score_inputs(body, content_type)
        status = 200
    except ClientError as exc:
        out, status = json.dumps({"error_code": exc.code, "message": exc.message}).encode(), 400
    return {
        "request_id": request_id,
        "timestamp": 1_780_000_000.25,
        "model": model.name,
        "model_version": model.version,
        "role": "champion",
        "routing_key": routing_key,
        "latency_ms": 1.5,
        "status": status,
        "inputs": inputs if parsed else None,
        "body": body,
        "content_type": content_type,
        "response": out,
        "reader": model.scorer,
    }


def fraud_rows(n: int, start: int = 0) -> pd.DataFrame:
    from examples.models import dataset

    x, _ = dataset("classifier")
    return x.iloc[start : start + n].reset_index(drop=True)


def bodies(rows: pd.DataFrame) -> dict[str, tuple[bytes, str]]:
    """``rows`` in every format MLflow's scoring protocol takes, every float exact."""
    records = rows.to_dict(orient="records")
    split = {"columns": list(rows.columns), "data": rows.to_numpy().tolist()}
    reordered = rows[list(reversed(rows.columns))]
    return {
        "dataframe_split": (json.dumps({"dataframe_split": split}).encode(), JSON),
        "dataframe_split, columns reordered": (
            json.dumps(
                {
                    "dataframe_split": {
                        "columns": list(reordered.columns),
                        "data": reordered.to_numpy().tolist(),
                    }
                }
            ).encode(),
            JSON,
        ),
        "dataframe_records": (json.dumps({"dataframe_records": records}).encode(), JSON),
        "instances": (json.dumps({"instances": records}).encode(), JSON),
        "inputs": (
            json.dumps({"inputs": {c: rows[c].tolist() for c in rows.columns}}).encode(),
            JSON,
        ),
        "inputs as records": (json.dumps({"inputs": records}).encode(), JSON),
        "with params": (
            json.dumps({"dataframe_split": split, "params": {"unused": 1}}).encode(),
            JSON,
        ),
        "csv": (rows.to_csv(index=False).encode(), CSV),
    }


# -- flattening -----------------------------------------------------------------------------------


@pytest.mark.parametrize("parsed", [True, False], ids=["inputs from the request", "body re-read"])
def test_every_format_becomes_one_typed_row_per_input_row(
    models: dict[str, LoadedModel], parsed: bool
) -> None:
    fraud = models["fraud"]
    rows = fraud_rows(4, start=20)
    names = list(rows.columns)
    for fmt, (body, ctype) in bodies(rows).items():
        rec = record(fraud, body, ctype, request_id=fmt, routing_key="k-1", parsed=parsed)
        assert rec["status"] == 200, (fmt, rec["response"])
        table = to_table([rec])

        assert table.num_rows == 4, fmt
        assert table.schema.names == [*REQUEST_SCHEMA.names, *names, "prediction"], fmt
        for name in names:
            assert table.schema.field(name).type == pa.float64(), (fmt, name)
        # The very values sent, per row and column (CSV round-trips floats exactly).
        sent = table.select(names).to_pandas()
        pd.testing.assert_frame_equal(sent, rows, check_exact=True, obj=fmt)
        predictions = json.loads(rec["response"])["predictions"]
        assert table.column("prediction").to_pylist() == [float(p) for p in predictions], fmt
        assert table.schema.field("prediction").type == pa.float64()
        assert table.column("row").to_pylist() == [0, 1, 2, 3]
        assert set(table.column("request_id").to_pylist()) == {fmt}
        assert set(table.column("routing_key").to_pylist()) == {"k-1"}
        assert set(table.column("model_version").to_pylist()) == {"2"}
        assert set(table.column("model").to_pylist()) == {FRAUD}
        assert set(table.column("status").to_pylist()) == {200}
        assert set(table.column("timestamp").to_pylist()) == {
            dt.datetime(2026, 5, 28, 20, 26, 40, 250000, tzinfo=dt.UTC)
        }


def test_every_signature_type_becomes_its_arrow_type(models: dict[str, LoadedModel]) -> None:
    typed = models["typed"]
    sent = [
        {
            "id": 2**40 + 7,
            "count": 3,
            "ratio": 0.5,
            "flag": True,
            "city": "lyon",
            "seen": "2026-03-01T12:30:00.000000",
            "blob": base64.b64encode(b"\x00\x01raw").decode(),
        },
        {
            "id": -1,
            "count": -2,
            "ratio": 1.25,
            "flag": False,
            "city": "oslo",
            "seen": "2026-03-02T00:00:01.500000",
            "blob": base64.b64encode(b"").decode(),
        },
    ]
    split = {"columns": list(sent[0]), "data": [list(r.values()) for r in sent]}
    for fmt, value in (("dataframe_records", sent), ("dataframe_split", split)):
        body = json.dumps({fmt: value}).encode()
        for parsed in (True, False):
            rec = record(typed, body, parsed=parsed)
            assert rec["status"] == 200, rec["response"]
            table = to_table([rec])
            assert table.schema == pa.schema(
                [
                    *REQUEST_SCHEMA,
                    pa.field("id", pa.int64()),
                    pa.field("count", pa.int32()),
                    pa.field("ratio", pa.float32()),
                    pa.field("flag", pa.bool_()),
                    pa.field("city", pa.string()),
                    pa.field("seen", pa.timestamp("us", tz="UTC")),
                    pa.field("blob", pa.binary()),
                    pa.field("prediction_label", pa.string()),
                    pa.field("prediction_score", pa.float64()),
                ]
            ), (fmt, parsed)
            got = table.drop_columns(REQUEST_SCHEMA.names).to_pylist()
            assert got == [
                {
                    "id": 2**40 + 7,
                    "count": 3,
                    "ratio": 0.5,
                    "flag": True,
                    "city": "lyon",
                    "seen": dt.datetime(2026, 3, 1, 12, 30, tzinfo=dt.UTC),
                    "blob": b"\x00\x01raw",
                    "prediction_label": "LYON",
                    "prediction_score": 1.0,
                },
                {
                    "id": -1,
                    "count": -2,
                    "ratio": 1.25,
                    "flag": False,
                    "city": "oslo",
                    "seen": dt.datetime(2026, 3, 2, 0, 0, 1, 500000, tzinfo=dt.UTC),
                    "blob": b"",
                    "prediction_label": "OSLO",
                    "prediction_score": 2.5,
                },
            ], (fmt, parsed)


def test_without_a_signature_the_inputs_are_one_json_column(
    models: dict[str, LoadedModel],
) -> None:
    unsigned = models["unsigned"]
    body = json.dumps(
        {"dataframe_split": {"columns": ["a", "b"], "data": [[1, "x"], [2, "y"], [3, None]]}}
    ).encode()
    for parsed in (True, False):
        rec = record(unsigned, body, parsed=parsed)
        assert rec["status"] == 200, rec["response"]
        table = to_table([rec])
        assert table.schema.names == [*REQUEST_SCHEMA.names, "inputs", "prediction"]
        assert [json.loads(v) for v in table.column("inputs").to_pylist()] == [
            {"a": 1, "b": "x"},
            {"a": 2, "b": "y"},
            {"a": 3, "b": None},
        ]
        assert table.column("prediction").to_pylist() == [2.0, 2.0, 2.0]
        assert table.column("row").to_pylist() == [0, 1, 2]

    # A body that cannot be read is kept whole, as JSON text, in one row.
    table = to_table([record(unsigned, b'{"dataframe_split": ')])
    assert table.num_rows == 1
    assert table.column("inputs").to_pylist() == [json.dumps('{"dataframe_split": ')]
    assert table.column("row").to_pylist() == [None]
    assert table.column("status").to_pylist() == [400]


def test_failed_requests_still_leave_their_rows(models: dict[str, LoadedModel]) -> None:
    fraud = models["fraud"]
    rows = fraud_rows(3)
    names = list(rows.columns)
    missing = rows.drop(columns=["mean_area"])
    wrong = {"columns": list(rows.columns), "data": rows.to_numpy().tolist()}
    wrong["data"][1][0] = "not a number"  # mean_radius of the second row
    records = [
        record(fraud, bodies(missing)["dataframe_split"][0], request_id="missing"),
        record(fraud, json.dumps({"dataframe_split": wrong}).encode(), request_id="wrong"),
        record(fraud, bodies(missing)["csv"][0], CSV, request_id="csv"),
        record(fraud, b"{not json", request_id="garbage"),
        record(fraud, b"", request_id="empty"),
        record(fraud, bodies(rows)["dataframe_records"][0], "text/plain", request_id="type"),
    ]
    assert [r["status"] for r in records] == [400] * 6
    table = to_table(records)
    by_request: dict[str, list[dict[str, Any]]] = {}
    for row in table.to_pylist():
        by_request.setdefault(row["request_id"], []).append(row)

    for request in ("missing", "csv"):  # one row per parsed input row, what was sent kept
        got = by_request[request]
        assert [r["row"] for r in got] == [0, 1, 2]
        assert [r["mean_area"] for r in got] == [None] * 3
        assert [r["mean_radius"] for r in got] == rows["mean_radius"].tolist()
        assert [r["worst_symmetry"] for r in got] == rows["worst_symmetry"].tolist()
        assert {r["status"] for r in got} == {400}
    got = by_request["wrong"]
    assert [r["row"] for r in got] == [0, 1, 2]
    assert [r["mean_radius"] for r in got] == [rows["mean_radius"][0], None, rows["mean_radius"][2]]
    assert [r["mean_texture"] for r in got] == rows["mean_texture"].tolist()
    for request in ("garbage", "empty", "type"):  # nothing to read: one row of nulls
        (only,) = by_request[request]
        assert only["row"] is None
        assert only["status"] == 400
        assert all(only[name] is None for name in names)
    assert "prediction" not in table.schema.names  # no request here had one
    assert "inputs" not in table.schema.names  # the model has a signature


# -- the Delta table ------------------------------------------------------------------------------


def test_a_new_signature_adds_columns_and_a_type_clash_loses_no_row(
    models: dict[str, LoadedModel], tmp_path: Path
) -> None:
    """A version with another signature adds its columns (schema merge); a prediction that no
    longer fits the column's type is null, its row kept."""
    from examples.models import dataset

    path = tmp_path / "lake" / "prod" / "fraud" / "inference"
    churn_rows = dataset("regressor")[0].head(2)
    with InferenceLog(
        str(path), batch_size=1, flush_seconds=60, registry=CollectorRegistry()
    ) as log:
        log.append(record(models["fraud"], bodies(fraud_rows(2))["dataframe_split"][0]))
        wait_for("the fraud rows", lambda: log.stats()["rows_written"] == 2, 30, interval=0.05)
        log.append(record(models["churn"], bodies(churn_rows)["dataframe_split"][0]))
        wait_for("the churn rows", lambda: log.stats()["rows_written"] == 4, 30, interval=0.05)
        words = {"request_id": "words", "status": 200, "inputs": [{"x": 1}], "predictions": ["y"]}
        log.append(words)
        wait_for("the last row", lambda: log.stats()["rows_written"] == 5, 30, interval=0.05)
    assert log.stats()["write_errors"] == 0

    table = DeltaTable(str(path)).to_pyarrow_table()
    assert table.num_rows == 5
    names = table.schema.names
    assert names[: len(REQUEST_SCHEMA)] == REQUEST_SCHEMA.names
    assert {"mean_radius", "age", "bmi", "inputs", "prediction"} <= set(names)
    assert table.schema.field("prediction").type == pa.float64()  # the first batch's type stays
    rows = {(r["model"], r["row"]): r for r in table.to_pylist()}
    assert rows[(FRAUD, 0)]["age"] is None  # the older rows are null in the new columns
    assert rows[(CHURN, 1)]["bmi"] == churn_rows["bmi"].iloc[1]
    assert rows[(CHURN, 1)]["mean_radius"] is None
    assert rows[(None, 0)]["prediction"] is None  # "y" is no float: null, the row kept
    assert rows[(None, 0)]["inputs"] == '{"x":1}'


# -- a real model server --------------------------------------------------------------------------


class Served:
    """``mlgitops serve`` with an inference table under a data root, on a copy of the store."""

    def __init__(self, work: Path, seeded_store: Path, *args: str) -> None:
        import shutil

        work.mkdir(parents=True, exist_ok=True)
        shutil.copy(seeded_store / "mlflow.db", work / "mlflow.db")
        db = f"sqlite:///{work / 'mlflow.db'}"
        self.port = free_port()
        self.log = work / "serve.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [str(BIN / "mlgitops"), "serve", "--port", str(self.port), *args],
                env={**os.environ, "MLFLOW_TRACKING_URI": db, "MLFLOW_REGISTRY_URI": db},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_ready(self) -> None:
        def ready() -> bool:
            assert self.proc.poll() is None, self.log.read_text()
            return httpx.get(f"{self.url}/ping", timeout=5).status_code == 200

        wait_for("the server ready", ready, 120, retry=(httpx.TransportError,))

    def stop(self) -> None:
        """SIGTERM: the server drains and flushes its inference log before it exits (uvicorn
        then ends by the signal it caught)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@pytest.fixture
def split_server(tmp_path: Path, seeded_store: Path) -> Iterator[tuple[Served, Path]]:
    lake = tmp_path / "lake"
    server = Served(
        tmp_path / "server",
        seeded_store,
        "--champion",
        f"models:/{FRAUD}/2",
        "--challenger",
        f"models:/{FRAUD}/3",
        "--challenger-traffic",
        "30",
        "--inference-log",
        "prod/fraud/inference",
        "--data-root",
        str(lake),
        # Two processes appending to one table, as the replicas of a Deployment do.
        "--workers",
        "2",
    )
    try:
        server.wait_ready()
        yield server, lake / "prod" / "fraud" / "inference"
    finally:
        server.stop()


def test_a_split_server_under_load_logs_every_input_row(
    split_server: tuple[Served, Path],
) -> None:
    server, table_path = split_server
    data = fraud_rows(60)
    rng = random.Random(7)
    # 240 requests from 8 threads: 1 to 6 rows each, every format, most with a routing key,
    # some that fail (a missing column; a body that is not JSON).
    plan: list[dict[str, Any]] = []
    for i in range(240):
        n = rng.randint(1, 6)
        start = rng.randint(0, len(data) - n)
        rows = data.iloc[start : start + n].reset_index(drop=True)
        fmt = rng.choice(list(bodies(rows)))
        body, ctype = bodies(rows)[fmt]
        kind = "ok"
        if i % 40 == 7:
            body, ctype, kind = (
                bodies(rows.drop(columns=["mean_area"]))["dataframe_split"][0],
                JSON,
                "missing",
            )
        elif i % 40 == 23:
            body, ctype, kind = b"{oops", JSON, "garbage"
        key = f"customer-{rng.randint(0, 50)}" if i % 5 else None
        plan.append(
            {
                "id": f"load-{i:03d}",
                "rows": rows,
                "body": body,
                "ctype": ctype,
                "key": key,
                "kind": kind,
            }
        )

    answers: dict[str, httpx.Response] = {}
    lock = threading.Lock()
    todo = list(plan)

    def client() -> None:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            while True:
                with lock:
                    if not todo:
                        return
                    item = todo.pop()
                headers = {"Content-Type": item["ctype"], "X-Request-Id": item["id"]}
                if item["key"] is not None:
                    headers["X-Routing-Key"] = item["key"]
                response = http.post("/invocations", content=item["body"], headers=headers)
                with lock:
                    answers[item["id"]] = response

    threads = [threading.Thread(target=client) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    server.stop()  # the log is flushed on the way out
    assert "Traceback" not in server.log.read_text()

    table = DeltaTable(str(table_path)).to_pyarrow_table()
    by_request: dict[str, list[dict[str, Any]]] = {}
    for row in table.to_pylist():
        by_request.setdefault(row["request_id"], []).append(row)
    assert set(by_request) == {item["id"] for item in plan}

    roles: dict[str, int] = {}
    for item in plan:
        got = sorted(by_request[item["id"]], key=lambda r: (r["row"] is None, r["row"] or 0))
        answer = answers[item["id"]]
        version, role = answer.headers["x-model-version"], answer.headers["x-model-role"]
        assert {(r["model"], r["model_version"], r["role"]) for r in got} == {
            (FRAUD, version, role)
        }
        assert {r["routing_key"] for r in got} == {item["key"]}
        assert {r["status"] for r in got} == {answer.status_code}
        if item["key"] is not None:  # a routing key always reaches the same role
            expected = "challenger" if routing_bucket(item["key"]) < 30 else "champion"
            assert role == expected
        roles[role] = roles.get(role, 0) + 1
        rows: pd.DataFrame = item["rows"]
        if item["kind"] == "garbage":
            assert answer.status_code == 400
            assert [(r["row"], r["mean_radius"], r.get("prediction")) for r in got] == [
                (None, None, None)
            ]
            continue
        assert [r["row"] for r in got] == list(range(len(rows)))  # one row per input row
        for column in ("mean_radius", "worst_texture", "area_error"):
            assert [r[column] for r in got] == rows[column].tolist(), (item["id"], column)
        if item["kind"] == "missing":
            assert answer.status_code == 400
            assert [r["mean_area"] for r in got] == [None] * len(rows)
            assert [r["prediction"] for r in got] == [None] * len(rows)
        else:
            assert answer.status_code == 200, answer.text
            predictions = answer.json()["predictions"]
            assert [r["prediction"] for r in got] == [float(p) for p in predictions]
            assert all(r["latency_ms"] > 0 for r in got)
    assert roles.get("champion", 0) > 0
    assert roles.get("challenger", 0) > 0
    assert table.num_rows == sum(
        1 if item["kind"] == "garbage" else len(item["rows"]) for item in plan
    )


def test_the_monitor_cronjob_reads_the_table_the_server_wrote(
    split_server: tuple[Served, Path], tmp_path: Path
) -> None:
    """The two pieces joined: a ModelDeployment with ``serving.inferenceTable`` and
    ``monitoring.input: inference``, its monitoring CronJob's arguments as rendered, run over the
    table a real server wrote."""
    import yaml
    from deltalake import write_deltalake
    from typer.testing import CliRunner

    from controller.api.documents import ModelDeployment
    from controller.cli import app
    from controller.planning.children import Owner, RenderContext, job_container, render_monitor
    from examples.models import dataset
    from tests.helpers import PROJECT

    server, table_path = split_server
    lake = table_path.parents[2]
    features, _ = dataset("classifier")
    write_deltalake(str(lake / "prod/fraud/training_baseline"), features)
    answered = 0
    with httpx.Client(base_url=server.url, timeout=60) as http:
        for i in range(30):
            rows = features.iloc[i * 4 : i * 4 + 4]
            body, ctype = bodies(rows)["dataframe_records"]
            r = http.post("/invocations", content=body, headers={"Content-Type": ctype})
            assert r.status_code == 200
            answered += len(rows)
        failed = http.post("/invocations", content=b"{", headers={"Content-Type": JSON})
        assert failed.status_code == 400  # logged, but not a row the monitor compares
    server.stop()

    doc = yaml.safe_load((PROJECT / "environments/prod/fraud-detector.yaml").read_text())
    doc["spec"]["serving"]["inferenceTable"] = "prod/fraud/inference"
    doc["spec"]["monitoring"]["input"] = "inference"
    md = ModelDeployment.model_validate(doc)
    [cronjob] = render_monitor(
        Owner("fraud-detector", "uid", "ml-prod"), md.spec, FRAUD, RenderContext("prod", "i", None)
    )
    args = list(job_container(cronjob)["args"])
    args[args.index("--model") + 1] = f"models:/{FRAUD}/2"  # this store has no aliases
    db = f"sqlite:///{tmp_path / 'server' / 'mlflow.db'}"
    ran = CliRunner().invoke(
        app, [*args, "--data-root", str(lake), "--tracking-uri", db], catch_exceptions=False
    )
    assert ran.exit_code == 0, ran.stderr

    drift = DeltaTable(str(lake / "prod/fraud/inference_drift")).to_pyarrow_table().to_pylist()
    overall = [d for d in drift if d["model_version"] == "*"]
    assert {d["feature"] for d in overall} == set(features.columns)  # the signature's inputs
    assert sum({d["window"]: d["rows"] for d in overall}.values()) == answered  # 200s only
    assert {d["model_version"] for d in drift} >= {"*", "2", "3"}  # champion and challenger
