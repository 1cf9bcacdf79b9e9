"""``mlgitops serve`` over real HTTP, side by side with MLflow's own ``mlflow models serve``.

Both serve real scikit-learn models from a copy of the seeded store. One server of ours runs for
the module and is reconfigured by each test the way the local runtime will do it (rewrite the
config file, send SIGHUP), so every test also exercises a live swap. Expected predictions come
from MLflow: its scoring server for the protocol tests, its scoring code in this process for the
versions it does not serve.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from controller.serving.config import routing_bucket
from tests.helpers import free_port, wait_for

pytestmark = pytest.mark.server

FRAUD = "prod.fraud.fraud_detector"
CHURN = "prod.customers.churn_predictor"
BIN = Path(sys.executable).parent
JSON_CT = {"Content-Type": "application/json"}


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    config: Path | None = None
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30)

    def post(self, body: bytes | str, headers: dict[str, str] | None = None) -> httpx.Response:
        return self.client.post("/invocations", content=body, headers=headers or JSON_CT)

    def version(self) -> dict[str, Any]:
        doc: dict[str, Any] = self.client.get("/version").json()
        return doc

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        text = self.client.get("/metrics").text
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    def write_config(self, doc: dict[str, Any] | str, *, hup: bool = True) -> None:
        assert self.config is not None
        tmp = self.config.with_suffix(".tmp")
        tmp.write_text(doc if isinstance(doc, str) else json.dumps(doc))
        tmp.replace(self.config)  # atomic, as the local runtime does
        if hup:
            os.kill(self.proc.pid, signal.SIGHUP)

    def configure(self, champion: str, challenger: str | None = None, traffic: int = 0) -> None:
        """Swap to this configuration (config file + SIGHUP) and wait until it is served."""
        self.write_config(
            {"champion": champion, "challenger": challenger, "challengerTraffic": traffic}
        )
        self.wait_until(
            f"{self.name} to serve {champion} / {challenger} at {traffic}%",
            lambda: _serves(self.version(), champion, challenger, traffic),
        )

    def wait_ready(self, timeout: float = 120) -> None:
        self.wait_until(
            f"{self.name} /ping 200", lambda: self.client.get("/ping").status_code == 200, timeout
        )

    def wait_until(self, what: str, check: Callable[[], Any], timeout: float = 60) -> Any:
        """``wait_for`` while this server runs: if it exits, or on timeout, fail with its log."""

        def running_and_check() -> Any:
            assert self.proc.poll() is None, f"{self.name} exited:\n{self.log.read_text()}"
            return check()

        return wait_for(
            what,
            running_and_check,
            timeout,
            interval=0.1,
            retry=(httpx.TransportError,),  # httpx's connection errors are no OSError
            on_timeout=lambda: self.log.read_text()[-4000:],
        )

    def stop(self) -> None:
        self.client.close()
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def _serves(doc: dict[str, Any], champion: str, challenger: str | None, traffic: int) -> bool:
    """Whether ``/version`` says these models are in service (no models yet: not)."""
    models = doc.get("models") or {}
    if (models.get("champion") or {}).get("uri") != champion:
        return False
    got = (models.get("challenger") or {}).get("uri")
    return bool(got == challenger and models["challengerTraffic"] == (traffic if challenger else 0))


def _serves_version(doc: dict[str, Any], version: str) -> bool:
    """Whether ``/version`` says the champion in service is this version."""
    return bool(((doc.get("models") or {}).get("champion") or {}).get("version") == version)


def store_env(db: Path) -> dict[str, str]:
    # Both URIs: mlflow.set_registry_uri (the seeding fixture calls it) exports
    # MLFLOW_REGISTRY_URI, which would otherwise point a child at the seeded store.
    return {"MLFLOW_TRACKING_URI": f"sqlite:///{db}", "MLFLOW_REGISTRY_URI": f"sqlite:///{db}"}


# ``mlgitops serve`` with Python's global random seeded first (the seed is argv[1]): requests
# without a routing key are split by random.random(), so a seeded server splits the same
# sequence of requests the same way on every run.
SEEDED_SERVE = (
    "import random, sys; random.seed(int(sys.argv.pop(1))); "
    "from controller.cli import main; sys.argv[0] = 'mlgitops'; main()"
)


def start_ours(
    work: Path,
    db: Path,
    config: dict[str, Any],
    *extra: str,
    name: str = "mlgitops serve",
    seed: int | None = None,
) -> Server:
    port = free_port()
    path = work / "serving.json"
    path.write_text(json.dumps(config))
    log = work / "ours.log"
    env = {**os.environ, **store_env(db)}
    program = [str(BIN / "mlgitops")]
    if seed is not None:
        program = [sys.executable, "-c", SEEDED_SERVE, str(seed)]
    command = [*program, "serve", "--config", str(path), "--host", "127.0.0.1"]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*command, "--port", str(port), *extra],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Server(name, proc, port, log, path)


def start_mlflow(work: Path, db: Path, model_uri: str) -> Server:
    port = free_port()
    log = work / "mlflow.log"
    env = {
        **os.environ,
        **store_env(db),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",  # it shells out to uvicorn
    }
    command = [str(BIN / "mlflow"), "models", "serve", "-m", model_uri, "--env-manager", "local"]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*command, "-h", "127.0.0.1", "-p", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Server("mlflow models serve", proc, port, log)


def copy_store(seeded_store: Path, dest: Path) -> Path:
    dest.mkdir(parents=True)
    shutil.copy(seeded_store / "mlflow.db", dest / "mlflow.db")  # artifacts are shared, read-only
    return dest / "mlflow.db"


@dataclass
class Pair:
    ours: Server
    theirs: Server
    inference_table: Path
    ours_db: Path


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory, seeded_store: Path) -> Iterator[Pair]:
    """Ours (config file, inference log) and MLflow's, both on fraud v2, started together."""
    work = tmp_path_factory.mktemp("serving")
    table = work / "inference"
    theirs = start_mlflow(work, copy_store(seeded_store, work / "theirs"), f"models:/{FRAUD}/2")
    db = copy_store(seeded_store, work / "ours")
    ours = start_ours(
        work,
        db,
        {"champion": f"models:/{FRAUD}/2"},
        "--inference-log",
        str(table),
    )
    try:
        ours.wait_ready()
        theirs.wait_ready()
        yield Pair(ours, theirs, table, db)
    finally:
        ours.stop()
        theirs.stop()


@pytest.fixture(scope="module")
def mlflow_models(seeded_store: Path) -> dict[str, Any]:
    """MLflow's own pyfunc models, loaded in this process, to compute what a version answers."""
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{seeded_store / 'mlflow.db'}")
    mlflow.set_registry_uri(f"sqlite:///{seeded_store / 'mlflow.db'}")
    return {
        f"{name}/{v}": mlflow.pyfunc.load_model(f"models:/{name}/{v}")
        for name in (FRAUD, CHURN)
        for v in ("1", "2", "3")
    }


def mlflow_answer(model: Any, body: bytes) -> bytes:
    from mlflow.pyfunc import scoring_server

    result = scoring_server.invocations(
        body, "application/json", model, model.metadata.get_input_schema()
    )
    assert result.status == 200
    return str(result.response).encode()


def frame(task: str, n: int, start: int = 0) -> Any:
    from examples.models import dataset

    x, _ = dataset(task)
    return x.iloc[start : start + n]


def split_body(rows: Any, *, index: bool = False) -> bytes:
    split = json.loads(rows.to_json(orient="split", index=index))
    return json.dumps({"dataframe_split": split}).encode()


# -- protocol compatibility ----------------------------------------------------------------------


def test_same_predictions_as_mlflow_for_every_format(pair: Pair) -> None:
    ours, theirs = pair.ours, pair.theirs
    ours.configure(f"models:/{FRAUD}/2")
    rows = frame("classifier", 6, start=10)
    records = json.loads(rows.to_json(orient="records"))
    payloads: dict[str, tuple[bytes, str]] = {
        "dataframe_split": (split_body(rows), "application/json"),
        "dataframe_split with index": (split_body(rows, index=True), "application/json"),
        "dataframe_split, columns reordered": (
            split_body(rows[list(reversed(rows.columns))]),
            "application/json",
        ),
        "dataframe_records": (
            json.dumps({"dataframe_records": records}).encode(),
            "application/json",
        ),
        "instances": (json.dumps({"instances": records}).encode(), "application/json"),
        "inputs": (
            json.dumps({"inputs": {c: rows[c].tolist() for c in rows.columns}}).encode(),
            "application/json",
        ),
        "inputs as records": (json.dumps({"inputs": records}).encode(), "application/json"),
        "dataframe_split with params": (
            json.dumps(
                {"dataframe_split": json.loads(rows.to_json(orient="split")), "params": {"a": 1}}
            ).encode(),
            "application/json",
        ),
        "integers for doubles": (
            json.dumps(
                {"dataframe_split": {"columns": list(rows.columns), "data": [[1] * 30, [2] * 30]}}
            ).encode(),
            "application/json",
        ),
        "csv": (rows.to_csv(index=False).encode(), "text/csv"),
        "csv; charset=utf-8": (rows.to_csv(index=False).encode(), "text/csv; charset=utf-8"),
    }
    for name, (body, ctype) in payloads.items():
        expected = theirs.post(body, {"Content-Type": ctype})
        got = ours.post(body, {"Content-Type": ctype})
        assert expected.status_code == 200, (name, expected.text)
        assert got.status_code == 200, (name, got.text)
        assert got.content == expected.content, name  # byte for byte
        assert got.headers["x-model-version"] == "2"
        assert got.headers["x-model-role"] == "champion"
        assert len(got.headers["x-request-id"]) >= 16
    # A client's request id is echoed, so it can be followed into the inference log.
    assert (
        ours.post(split_body(rows), {**JSON_CT, "X-Request-Id": "abc-1"}).headers["x-request-id"]
        == "abc-1"
    )

    version = ours.version()
    assert version["mlgitops"] == "0.1.0"
    assert version["mlflow"] == theirs.client.get("/version").text.strip('"')
    assert version["models"]["champion"]["name"] == FRAUD
    assert version["models"]["champion"]["version"] == "2"
    assert version["models"]["challenger"] is None
    assert version["models"]["champion"]["fastPath"] == "on"  # so both paths were compared
    assert ours.client.get("/health").status_code == 200


def _bad_payloads() -> list[tuple[str, bytes, str, int, list[str]]]:
    rows = frame("classifier", 2)
    split = json.loads(rows.to_json(orient="split", index=False))
    missing = {"columns": split["columns"][1:], "data": [r[1:] for r in split["data"]]}
    strings = {"columns": split["columns"], "data": [["abc", *r[1:]] for r in split["data"]]}
    nulls = {"columns": split["columns"], "data": [[None, *r[1:]] for r in split["data"]]}
    j = "application/json"
    return [
        ("invalid JSON", b'{"dataframe_split": {"columns": [', j, 400, ["invalid JSON"]),
        (
            "unknown format key",
            json.dumps({"dataframe_splitt": split}).encode(),
            j,
            400,
            ["exactly one of the keys", "unknown key(s): dataframe_splitt"],
        ),
        (
            "two format keys",
            json.dumps({"dataframe_split": split, "inputs": split}).encode(),
            j,
            400,
            ["exactly one of the keys", "got 2 of them"],
        ),
        (
            "missing column",
            json.dumps({"dataframe_split": missing}).encode(),
            j,
            400,
            ["missing column(s) required by the model signature: mean_radius"],
        ),
        (
            "strings where doubles are expected",
            json.dumps({"dataframe_split": strings}).encode(),
            j,
            400,
            ["mean_radius", "float64", "'abc'"],
        ),
        (
            "null where a value is required",
            json.dumps({"dataframe_split": nulls}).encode(),
            j,
            400,
            ["the model could not score the input", "NaN"],
        ),
        ("a JSON array", b"[[1, 2, 3]]", j, 400, ["must be an object", "got an array"]),
        ("empty body", b"", j, 400, ["empty request body"]),
        (
            "csv with the wrong columns",
            b"a,b\n1,2\n",
            "text/csv",
            400,
            ["missing column(s) required by the model signature: mean_radius"],
        ),
        (
            "wrong content type",
            json.dumps({"dataframe_split": split}).encode(),
            "application/xml",
            415,
            ["unsupported Content-Type 'application/xml'"],
        ),
        (
            "a charset other than UTF-8",
            json.dumps({"dataframe_split": split}).encode(),
            "application/json; charset=latin-1",
            415,
            ["only utf-8"],
        ),
    ]


def test_bad_payloads_get_4xx_from_both_and_a_json_error_naming_the_problem(pair: Pair) -> None:
    ours, theirs = pair.ours, pair.theirs
    ours.configure(f"models:/{FRAUD}/2")
    for name, body, ctype, status, words in _bad_payloads():
        expected = theirs.post(body, {"Content-Type": ctype})
        got = ours.post(body, {"Content-Type": ctype})
        assert 400 <= expected.status_code < 500, (name, expected.status_code, expected.text)
        assert got.status_code == status, (name, got.text)
        error = got.json()
        assert set(error) == {"error_code", "message"}, name
        assert error["error_code"] == "BAD_REQUEST", name
        for word in words:
            assert word in error["message"], (name, word, error["message"])
        assert len(error["message"]) < 1000, (name, "the payload must not be echoed")
        assert got.headers["x-model-version"] == "2"
    no_type = ours.client.post("/invocations", content=b"{}")
    assert no_type.status_code == 415
    assert "missing Content-Type" in no_type.json()["message"]
    assert ours.client.get("/invocations").status_code == 405


# -- swaps ---------------------------------------------------------------------------------------


def test_swap_under_continuous_load_fails_no_request(
    pair: Pair, mlflow_models: dict[str, Any]
) -> None:
    """Two clients fire requests while the champion changes 1 -> 2 -> 3 -> 1 -> 2."""
    ours = pair.ours
    body = split_body(frame("regressor", 4, start=20))
    expected = {v: mlflow_answer(mlflow_models[f"{CHURN}/{v}"], body) for v in "123"}
    assert len(set(expected.values())) == 3  # every version predicts differently
    ours.configure(f"models:/{CHURN}/1")

    stop = threading.Event()
    seen: list[list[tuple[int, str, bytes]]] = [[], []]
    failures: list[str] = []

    def client(out: list[tuple[int, str, bytes]]) -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{ours.port}", timeout=30) as c:
            while not stop.is_set():
                try:
                    r = c.post("/invocations", content=body, headers=JSON_CT)
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
                    continue
                out.append((r.status_code, r.headers.get("x-model-version", "?"), r.content))

    threads = [threading.Thread(target=client, args=(out,)) for out in seen]
    for t in threads:
        t.start()
    order = ["1", "2", "3", "1", "2"]
    try:
        for version in order[1:]:
            before = sum(1 for out in seen for r in out if r[1] == version)
            ours.configure(f"models:/{CHURN}/{version}")
            ours.wait_until(
                f"30 responses from version {version}",
                lambda v=version, b=before: (
                    sum(1 for out in seen for r in out if r[1] == v) >= b + 30
                ),
            )
    finally:
        stop.set()
        for t in threads:
            t.join()

    responses = [r for out in seen for r in out]
    assert not failures
    assert Counter(status for status, _, _ in responses) == {200: len(responses)}
    by_version = Counter(v for _, v, _ in responses)
    assert set(by_version) == {"1", "2", "3"}
    wrong = [(v, b) for _, v, b in responses if b != expected.get(v)]
    assert not wrong, f"{len(wrong)} responses not exactly the named version's predictions"
    for out in seen:  # each client sees the versions in swap order: no response from the past
        position = 0
        for _, version, _ in out:
            while order[position] != version:
                position += 1
                assert position < len(order), [v for _, v, _ in out]


def test_failed_load_or_bad_config_keeps_the_models_in_service(pair: Pair) -> None:
    ours = pair.ours
    ours.configure(f"models:/{FRAUD}/2")
    body = split_body(frame("classifier", 3))
    before = ours.metrics()
    errors = ("mlgitops_serving_model_loads_total", (("result", "error"),))

    ours.write_config({"champion": f"models:/{FRAUD}/99"})
    ours.wait_until(
        "a failed model load", lambda: ours.metrics().get(errors, 0) > before.get(errors, 0)
    )
    assert "could not load the models" in ours.version()["problem"]
    assert ours.client.get("/ping").status_code == 200
    r = ours.post(body)
    assert (r.status_code, r.headers["x-model-version"]) == (200, "2")

    reloads = ("mlgitops_serving_config_reloads_total", (("result", "error"),))
    count = ours.metrics().get(reloads, 0)
    ours.write_config('{"champion": "models:/x/1", "challengerTraffic": 200}')
    ours.wait_until("a rejected config", lambda: ours.metrics().get(reloads, 0) > count)
    assert "challengerTraffic: must be between 0 and 100" in ours.version()["problem"]
    r = ours.post(body)
    assert (r.status_code, r.headers["x-model-version"]) == (200, "2")

    ours.configure(f"models:/{FRAUD}/3")  # and a good file afterwards is taken
    assert ours.version()["problem"] is None


def test_alias_is_resolved_to_a_version(pair: Pair) -> None:
    from mlflow import MlflowClient

    db = pair.ours_db
    client = MlflowClient(tracking_uri=f"sqlite:///{db}", registry_uri=f"sqlite:///{db}")
    client.set_registered_model_alias(FRAUD, "champion", "3")
    ours = pair.ours
    ours.configure(f"models:/{FRAUD}@champion")
    assert ours.version()["models"]["champion"]["version"] == "3"
    assert ours.post(split_body(frame("classifier", 2))).headers["x-model-version"] == "3"
    client.set_registered_model_alias(FRAUD, "champion", "1")
    os.kill(ours.proc.pid, signal.SIGHUP)  # same file: SIGHUP alone re-resolves the alias
    ours.wait_until("the alias move", lambda: _serves_version(ours.version(), "1"))


# -- the split -----------------------------------------------------------------------------------


SPLIT_SEED = 1234


def test_split_within_binomial_bounds_and_sticky_by_routing_key(
    tmp_path: Path, seeded_store: Path
) -> None:
    """A server of its own, seeded (SEEDED_SERVE): the requests without a routing key, sent one
    after the other, meet the same draws on every run, so a count out of bounds reproduces."""
    split = {
        "champion": f"models:/{FRAUD}/2",
        "challenger": f"models:/{FRAUD}/3",
        "challengerTraffic": 30,
    }
    store = copy_store(seeded_store, tmp_path / "store")
    ours = start_ours(tmp_path, store, split, name="mlgitops serve (seeded)", seed=SPLIT_SEED)
    try:
        ours.wait_ready()
        body = split_body(frame("classifier", 1))
        n, p = 2000, 0.30
        roles: Counter[tuple[str, str]] = Counter()
        for _ in range(n):
            r = ours.post(body)
            assert r.status_code == 200
            roles[r.headers["x-model-role"], r.headers["x-model-version"]] += 1
        assert set(roles) == {("champion", "2"), ("challenger", "3")}
        # 99.9% two-sided interval of Binomial(2000, 0.3): +- 3.29 standard deviations.
        bound = 3.29 * math.sqrt(n * p * (1 - p))
        assert abs(roles["challenger", "3"] - n * p) <= bound, (roles, f"seed {SPLIT_SEED}")

        keys = [f"customer-{i}" for i in range(150)]
        first: dict[str, str] = {}
        for _ in range(3):
            for key in keys:
                role = ours.post(body, {**JSON_CT, "X-Routing-Key": key}).headers["x-model-role"]
                assert first.setdefault(key, role) == role, key
        for key in keys:  # the documented rule: bucket(sha256(key)) < percent: the challenger
            assert first[key] == ("challenger" if routing_bucket(key) < 30 else "champion")
        assert 0 < sum(r == "challenger" for r in first.values()) < len(keys)
    finally:
        ours.stop()


def test_metrics_count_requests_errors_and_latency_per_version_and_role(pair: Pair) -> None:
    ours = pair.ours
    ours.configure(f"models:/{FRAUD}/2", f"models:/{FRAUD}/3", 50)
    body = split_body(frame("classifier", 2))
    keys = [f"m-{i}" for i in range(40)]
    before = ours.metrics()
    sent: Counter[tuple[str, str]] = Counter()
    for key in keys:
        r = ours.post(body, {**JSON_CT, "X-Routing-Key": key})
        sent[r.headers["x-model-version"], r.headers["x-model-role"]] += 1
    champion_key = next(k for k in keys if routing_bucket(k) >= 50)
    for _ in range(3):
        bad = ours.post(b"{nope", {**JSON_CT, "X-Routing-Key": champion_key})
        assert bad.status_code == 400
    sent["2", "champion"] += 3
    after = ours.metrics()

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted({"model": FRAUD, **labels}.items())))
        return after.get(key, 0) - before.get(key, 0)

    for (version, role), count in sent.items():
        assert delta("mlgitops_serving_requests_total", version=version, role=role) == count
        assert (
            delta("mlgitops_serving_request_duration_seconds_count", version=version, role=role)
            == count
        )
    assert delta("mlgitops_serving_errors_total", version="2", role="champion", status="400") == 3
    assert after[("mlgitops_serving_model_loads_total", (("result", "success"),))] >= 2


# -- the inference log ---------------------------------------------------------------------------


def test_every_request_reaches_the_inference_log(pair: Pair) -> None:
    from deltalake import DeltaTable

    ours = pair.ours
    ours.configure(f"models:/{FRAUD}/2")
    rows = frame("classifier", 2)
    body = split_body(rows)
    sent = {}
    for rid, payload in (("ilog-1", body), ("ilog-2", body), ("ilog-3", b"{bad")):
        r = ours.post(payload, {**JSON_CT, "X-Request-Id": rid, "X-Routing-Key": f"k-{rid}"})
        sent[rid] = (r.status_code, r.text)

    def logged() -> dict[str, list[dict[str, Any]]]:
        if not (pair.inference_table / "_delta_log").exists():
            return {}
        table = DeltaTable(str(pair.inference_table)).to_pyarrow_table()
        out: dict[str, list[dict[str, Any]]] = {}
        for r in table.to_pylist():
            if r["request_id"] in sent:
                out.setdefault(r["request_id"], []).append(r)
        return out

    # One row per input row: two for each good request, one for the body that is not JSON.
    ours.wait_until(
        "5 rows in the inference log",
        lambda: sum(len(v) for v in logged().values()) == 5,
        timeout=30,
    )
    for rid, records in logged().items():
        status, text = sent[rid]
        records.sort(key=lambda r: r["row"] if r["row"] is not None else -1)
        for record in records:
            assert record["status"] == status
            assert (record["model"], record["model_version"], record["role"]) == (
                FRAUD,
                "2",
                "champion",
            )
            assert record["routing_key"] == f"k-{rid}"
            assert record["latency_ms"] > 0
            assert abs(time.time() - record["timestamp"].timestamp()) < 120
        if status == 200:
            assert [r["row"] for r in records] == [0, 1]
            assert [r["prediction"] for r in records] == json.loads(text)["predictions"]
            assert [r["mean_radius"] for r in records] == rows["mean_radius"].tolist()
        else:
            assert [(r["row"], r["mean_radius"], r["prediction"]) for r in records] == [
                (None, None, None)
            ]


# -- readiness, limits, workers, shutdown --------------------------------------------------------


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def test_not_ready_until_loaded_then_bounded_with_two_workers(
    tmp_path: Path, seeded_store: Path
) -> None:
    ours = start_ours(
        tmp_path,
        copy_store(seeded_store, tmp_path / "store"),
        {"champion": f"models:/{FRAUD}/99"},  # no such version: never loads
        "--workers",
        "2",
        "--max-request-bytes",
        "4096",
        name="mlgitops serve --workers 2",
    )
    try:
        ours.wait_until("liveness", lambda: ours.client.get("/health").status_code == 200)
        ours.wait_until(
            "a failed first load",
            lambda: "could not load" in ours.client.get("/ping").json().get("message", ""),
        )
        for _ in range(10):
            assert ours.client.get("/ping").status_code == 503
            refused = ours.post(split_body(frame("classifier", 1)))
            assert refused.status_code == 503
            assert refused.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
            time.sleep(0.1)
        assert len(_children(ours.proc.pid)) == 2

        loads = ("mlgitops_serving_model_loads_total", (("result", "success"),))
        ours.write_config({"champion": f"models:/{FRAUD}/2"}, hup=False)  # mtime poll alone
        ours.wait_ready()
        # /metrics sums over the workers: 2 loads means both have the model.
        ours.wait_until("both workers loaded", lambda: ours.metrics().get(loads) == 2)
        small = split_body(frame("classifier", 3))
        assert len(small) < 4096
        assert ours.post(small).status_code == 200
        big = split_body(frame("classifier", 15))
        assert len(big) > 4096
        too_big = ours.post(big)
        assert too_big.status_code == 413
        assert too_big.json()["error_code"] == "REQUEST_LIMIT_EXCEEDED"
        assert "4096 bytes" in too_big.json()["message"]
        chunked = ours.client.post(
            "/invocations", content=iter([big[:3000], big[3000:]]), headers=JSON_CT
        )
        assert chunked.status_code == 413
        assert ours.post(small).status_code == 200  # and the server is fine afterwards

        ours.configure(f"models:/{FRAUD}/3")  # SIGHUP to the supervisor reaches both workers
        ours.wait_until("both workers swapped", lambda: ours.metrics().get(loads) == 4)
        fresh = {**JSON_CT, "Connection": "close"}  # new connections: either worker may answer
        assert {ours.post(small, fresh).headers["x-model-version"] for _ in range(20)} == {"3"}
    finally:
        workers = _children(ours.proc.pid)
        ours.stop()
    assert ours.proc.returncode == 0
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()]


def test_cli_rejects_bad_settings(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from controller.cli import app

    def run(*args: str, **env: str) -> tuple[int, str]:
        result = CliRunner().invoke(app, ["serve", *args], env=env)
        return result.exit_code, result.stderr

    code, err = run()
    assert (code, err.strip()) == (2, "error: --champion: required (or --config FILE)")
    code, err = run("--champion", "models:/a/1", "--challenger-traffic", "10")
    assert (code, err.strip()) == (2, "error: --challenger-traffic: is 10 but no challenger is set")
    code, err = run(
        "--champion", "models:/a/1", "--challenger", "models:/a/2", "--challenger-traffic", "101"
    )
    assert code == 2
    assert "between 0 and 100, got 101" in err
    code, err = run(MLGITOPS_SERVE_CHAMPION="models:/a/1", MLGITOPS_SERVE_CHALLENGER_TRAFFIC="x")
    assert code == 2
    assert "--challenger-traffic" in err
    bad = tmp_path / "serving.json"
    bad.write_text('{"champion": "models:/a/1", "challengerTraffic": 5}')
    code, err = run("--config", str(bad))
    assert (code, err.strip()) == (
        2,
        f"error: {bad}: challengerTraffic: is 5 but no challenger is set",
    )
    code, err = run(MLGITOPS_SERVE_CONFIG=str(tmp_path / "missing.json"))
    assert code == 2
    assert "cannot read" in err


FAILING_MODEL = """
import mlflow


class Failing(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        raise RuntimeError("cannot open /srv/secret/features.parquet for customer 4711")


mlflow.models.set_model(Failing())
"""


def test_a_model_failure_is_a_generic_500_naming_the_request_and_logged_whole(
    tmp_path: Path, seeded_store: Path
) -> None:
    """What a model raises can quote data and paths: the client gets the request id, the log
    gets the details."""
    import mlflow.pyfunc

    code = tmp_path / "failing.py"
    code.write_text(FAILING_MODEL)
    model_dir = tmp_path / "failing-model"
    mlflow.pyfunc.save_model(str(model_dir), python_model=str(code), pip_requirements=[])
    db = copy_store(seeded_store, tmp_path / "store")
    ours = start_ours(tmp_path, db, {"champion": str(model_dir)})
    try:
        ours.wait_ready()
        body = json.dumps({"dataframe_split": {"columns": ["x"], "data": [[1.0]]}}).encode()
        response = ours.post(body, {**JSON_CT, "X-Request-Id": "req-42"})
        assert response.status_code == 500
        error = response.json()
        assert error["error_code"] == "INTERNAL_ERROR"
        assert "req-42" in error["message"]
        assert "secret" not in response.text
        assert "4711" not in response.text
        assert response.headers["x-request-id"] == "req-42"
        ours.wait_until("the detail logged", lambda: "4711" in ours.log.read_text(), timeout=10)
        assert "req-42" in ours.log.read_text()
    finally:
        ours.stop()
