"""MlflowTracking, what training asks of MLflow, on both transports and real MLflow only.

Every behaviour runs twice: on a SQLite store through ``MlflowClient`` and on a real ``mlflow
server`` through MLflow's REST API, which the controller speaks itself so that it never imports
mlflow. The models are real too: a scikit-learn classifier trained on a bundled dataset and
logged with ``mlflow.sklearn.log_model`` in the run the controller created, as a training job
does, then registered from its ``models:/<model_id>``.
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.tracking._tracking_service.utils import _use_tracking_uri

from controller.errors import RegistryUnavailable
from controller.planning.types import VALIDATION_TAG, RegisteredVersion
from controller.registry import MlflowTracking
from controller.registry.client import ClientTransport
from controller.registry.rest import RestTransport
from controller.registry.tracking import TERMINAL
from examples.models import PIP_REQUIREMENTS, dataset, train
from tests.helpers import MlflowServer, free_port

pytestmark = pytest.mark.server
TRIGGER, KEY = "mlgitops.trigger", "mlgitops.trigger_key"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    root = tmp_path_factory.mktemp("tracking")
    srv = MlflowServer(root / "server.db", root / "artifacts", free_port())
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(params=["sqlite", "rest"])
def uri(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A SQLite store of this test, or the module's tracking server (tests use unique names)."""
    # A SQLite store puts new experiments' artifacts under ./mlruns: keep them in tmp_path.
    monkeypatch.chdir(tmp_path)
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    srv: MlflowServer = request.getfixturevalue("server")
    return srv.url


@pytest.fixture
def tracking(uri: str) -> MlflowTracking:
    return MlflowTracking(uri)


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture(scope="module")
def fitted() -> tuple[Any, Any]:
    """A real classifier (breast_cancer, bundled with scikit-learn) and an input example."""
    x, _ = dataset("classifier")
    return train("classifier", 1.0), x.head(3)


@contextmanager
def fluent_api_on(uri: str) -> Iterator[None]:
    """MLflow's fluent API (what a training job calls) on ``uri``; the process default after."""
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    with _use_tracking_uri(uri), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlflow.set_registry_uri(uri)
        try:
            yield
        finally:
            mlflow.set_registry_uri(None)
            # set_registry_uri exports $MLFLOW_REGISTRY_URI: leave the process as it was, or a
            # later test's MLflow client talks to this module's (stopped) server.
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def test_transport_follows_the_uri(tracking: MlflowTracking, uri: str) -> None:
    expected = RestTransport if uri.startswith("http") else ClientTransport
    assert isinstance(tracking._t, expected)
    assert tracking.display == uri


# -- experiments -------------------------------------------------------------------------------


def test_experiment_is_created_once(tracking: MlflowTracking, uri: str, unique: str) -> None:
    name = f"mlgitops/prod/fraud-detector-{unique}"
    first = tracking.experiment_id(name)
    assert tracking.experiment_id(name) == first
    assert MlflowTracking(uri).experiment_id(name) == first  # another caller, same id
    experiment = MlflowClient(uri).get_experiment(first)
    assert experiment.name == name
    assert experiment.lifecycle_stage == "active"


def test_racing_callers_get_one_experiment(uri: str, unique: str) -> None:
    name = f"mlgitops/race/{unique}"
    callers = [MlflowTracking(uri) for _ in range(4)]
    start = threading.Barrier(len(callers))
    ids: list[str] = []
    errors: list[BaseException] = []

    def call(tracking: MlflowTracking) -> None:
        start.wait()
        try:
            ids.append(tracking.experiment_id(name))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(c,)) for c in callers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(ids) == len(callers)
    assert len(set(ids)) == 1


def test_a_deleted_experiment_is_an_error_naming_it(
    tracking: MlflowTracking, uri: str, unique: str
) -> None:
    name = f"mlgitops/deleted/{unique}"
    MlflowClient(uri).delete_experiment(tracking.experiment_id(name))
    with pytest.raises(RegistryUnavailable, match="is deleted; restore it"):
        tracking.experiment_id(name)


# -- runs --------------------------------------------------------------------------------------


def test_create_and_get_a_run(tracking: MlflowTracking, unique: str) -> None:
    experiment = tracking.experiment_id(f"mlgitops/runs/{unique}")
    tags = {TRIGGER: "commit", KEY: unique}
    before = int(time.time() * 1000)
    run = tracking.create_run(experiment_id=experiment, tags=tags, name="train-abc1234")
    assert run.status == "RUNNING"
    assert run.experiment_id == experiment
    assert (run.trigger, run.key) == ("commit", unique)
    assert run.tags["mlflow.runName"] == "train-abc1234"
    assert run.start_time is not None
    assert run.start_time >= before - 1000
    assert run.end_time is None
    assert tracking.get_run(run.run_id) == run
    unnamed = tracking.create_run(experiment_id=experiment, tags=tags)
    assert unnamed.tags["mlflow.runName"]  # MLflow names it


def test_unknown_run_is_none(tracking: MlflowTracking) -> None:
    assert tracking.get_run("0" * 32) is None
    assert tracking.get_run("not-a-run") is None


def test_runs_are_found_by_a_subset_of_their_tags(tracking: MlflowTracking, unique: str) -> None:
    experiment = tracking.experiment_id(f"mlgitops/search/{unique}")
    tags = {TRIGGER: "commit", KEY: unique, "mlgitops.environment": "prod"}
    run = tracking.create_run(experiment_id=experiment, tags=tags)
    other = tracking.create_run(experiment_id=experiment, tags={TRIGGER: "commit", KEY: "other"})

    def found(**search: str) -> list[str]:
        wanted = {f"mlgitops.{k}": v for k, v in search.items()}
        return [r.run_id for r in tracking.search_runs(experiment_id=experiment, tags=wanted)]

    assert found(trigger_key=unique) == [run.run_id]
    assert found(trigger="commit", trigger_key=unique) == [run.run_id]
    assert found(trigger="commit") == [run.run_id, other.run_id]
    assert found(trigger_key="nope") == []
    assert found(other_key=unique) == []  # the same value under a different key
    assert found(trigger_key=unique, environment="staging") == []
    assert tracking.search_runs(experiment_id=experiment, tags={})[0] == run
    # A run of another experiment is not found.
    elsewhere = tracking.experiment_id(f"mlgitops/search-elsewhere/{unique}")
    assert tracking.search_runs(experiment_id=elsewhere, tags={KEY: unique}) == []


def test_tag_values_with_quotes(tracking: MlflowTracking, unique: str) -> None:
    """MLflow's filter syntax has no escapes: a single quote is double-quoted, and a value with
    both quotes, which no literal can hold, is matched here instead of by the server."""
    experiment = tracking.experiment_id(f"mlgitops/quotes/{unique}")
    values = ["it's", 'say "hi"', 'it\'s "both"', "plain"]
    runs = {v: tracking.create_run(experiment_id=experiment, tags={KEY: v}) for v in values}
    for value, run in runs.items():
        assert [
            r.run_id for r in tracking.search_runs(experiment_id=experiment, tags={KEY: value})
        ] == [run.run_id], value


def test_runs_oldest_first_across_pages(
    tracking: MlflowTracking, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("controller.registry.rest.PAGE_SIZE", 2)
    monkeypatch.setattr("controller.registry.client.PAGE_SIZE", 2)
    experiment = tracking.experiment_id(f"mlgitops/order/{unique}")
    created = []
    for _ in range(5):
        created.append(tracking.create_run(experiment_id=experiment, tags={KEY: unique}).run_id)
        time.sleep(0.005)  # start times are milliseconds
    tracking.create_run(experiment_id=experiment, tags={KEY: "other"})
    found = tracking.search_runs(experiment_id=experiment, tags={KEY: unique})
    assert [r.run_id for r in found] == created  # MLflow's own default is newest first


def test_set_run_tags(tracking: MlflowTracking, unique: str) -> None:
    experiment = tracking.experiment_id(f"mlgitops/tags/{unique}")
    run = tracking.create_run(experiment_id=experiment, tags={KEY: unique, "mlgitops.phase": "a"})
    tracking.set_run_tags(run.run_id, {"mlgitops.phase": "b", "mlgitops.job": "train-1"})
    tags = tracking.get_run(run.run_id).tags  # type: ignore[union-attr]
    assert tags[KEY] == unique
    assert tags["mlgitops.phase"] == "b"
    assert tags["mlgitops.job"] == "train-1"
    found = tracking.search_runs(experiment_id=experiment, tags={"mlgitops.phase": "b"})
    assert [r.run_id for r in found] == [run.run_id]


@pytest.mark.parametrize("status", TERMINAL)
def test_end_run(tracking: MlflowTracking, unique: str, status: str) -> None:
    experiment = tracking.experiment_id(f"mlgitops/end/{unique}")
    run = tracking.create_run(experiment_id=experiment, tags={KEY: unique})
    tracking.end_run(run.run_id, status=status)
    ended = tracking.get_run(run.run_id)
    assert ended is not None
    assert ended.status == status
    assert ended.end_time is not None
    assert run.start_time is not None
    assert ended.end_time >= run.start_time
    assert ended.tags[KEY] == unique


def test_end_run_refuses_a_status_that_does_not_end(tracking: MlflowTracking) -> None:
    with pytest.raises(ValueError, match="FINISHED, FAILED, KILLED"):
        tracking.end_run("0" * 32, status="RUNNING")


# -- logged models and registration ------------------------------------------------------------


def test_logged_models_are_registered_as_versions(
    tracking: MlflowTracking,
    uri: str,
    unique: str,
    fitted: tuple[Any, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The training flow: a run, a job logging two models in it, both registered, found again."""
    monkeypatch.setattr("controller.registry.rest.LOGGED_MODEL_PAGE_SIZE", 1)
    monkeypatch.setattr("controller.registry.client.LOGGED_MODEL_PAGE_SIZE", 1)
    model, example = fitted
    experiment = tracking.experiment_id(f"mlgitops/prod/fraud-{unique}")
    run = tracking.create_run(experiment_id=experiment, tags={TRIGGER: "commit", KEY: unique})
    quiet = tracking.create_run(experiment_id=experiment, tags={KEY: f"{unique}-nothing"})
    assert tracking.logged_models(run.run_id) == []

    with fluent_api_on(uri), mlflow.start_run(run_id=run.run_id):
        kwargs = {"input_example": example, "pip_requirements": PIP_REQUIREMENTS}
        first = mlflow.sklearn.log_model(model, name="model", **kwargs)
        second = mlflow.sklearn.log_model(model, name="model-b", **kwargs)
    # Leaving ``mlflow.start_run`` ends the run: a job that logs into the controller's run ends it.
    assert tracking.get_run(run.run_id).status == "FINISHED"  # type: ignore[union-attr]

    assert first.model_uri == f"models:/{first.model_id}"
    assert tracking.logged_models(run.run_id) == [first.model_uri, second.model_uri]
    assert tracking.logged_models(quiet.run_id) == []
    assert tracking.logged_models("0" * 32) == []

    name = f"test.fraud_{unique}.fraud_detector"
    tags = {KEY: unique, "mlgitops.code_commit": "abc1234"}
    v1 = tracking.register_version(model=name, source=first.model_uri, run_id=run.run_id, tags=tags)
    v2 = tracking.register_version(model=name, source=second.model_uri, run_id=run.run_id, tags={})
    assert v1 == RegisteredVersion(
        name=name,
        version="1",
        run_id=run.run_id,
        source=first.model_uri,
        tags=tags,
        created=v1.created,
        updated=v1.updated,
    )
    # Both transports read the registration time (ms), which `mlgitops history` falls back on.
    assert v1.created is not None
    assert abs(v1.created / 1000 - time.time()) < 600
    assert v1.updated is not None
    assert v1.updated >= v1.created
    assert (v2.name, v2.version, v2.run_id, v2.source) == (name, "2", run.run_id, second.model_uri)

    assert tracking.run_versions(run.run_id) == [v1, v2]
    assert tracking.run_versions(quiet.run_id) == []
    tracking.set_version_tags(model=name, version="1", tags={VALIDATION_TAG: "PASSED"})
    assert tracking.run_versions(run.run_id)[0].tags == {**tags, VALIDATION_TAG: "PASSED"}

    # MLflow reads back what was written: the version, its logged model's link to it, and a
    # model that loads and predicts.
    client = MlflowClient(uri, registry_uri=uri)
    assert client.get_model_version(name, "1").run_id == run.run_id
    linked = json.loads(client.get_logged_model(first.model_id).tags["mlflow.modelVersions"])
    assert linked == [{"name": name, "version": 1}]
    with fluent_api_on(uri):
        loaded = mlflow.sklearn.load_model(f"models:/{name}/1")
    assert list(loaded.predict(example)) == list(model.predict(example))
    # The SQLite store's registration did not fall back to MLflow's default store in the cwd.
    assert not (tmp_path / "mlflow.db").exists()


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", [RestTransport, ClientTransport])
def test_unreachable_server_is_one_line_without_credentials(
    transport: type[RestTransport | ClientTransport], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    url = f"http://bob:hunter2@127.0.0.1:{free_port()}"
    tracking = MlflowTracking(url, transport=transport(url))
    assert tracking.display.startswith("http://***@127.0.0.1:")
    started = time.monotonic()
    calls = [
        lambda: tracking.experiment_id("mlgitops/prod/x"),
        lambda: tracking.create_run(experiment_id="1", tags={KEY: "k"}),
        lambda: tracking.get_run("0" * 32),
        lambda: tracking.logged_models("0" * 32),
        lambda: tracking.register_version(model="m", source="models:/m-1", run_id="r", tags={}),
    ]
    for call in calls:
        with pytest.raises(RegistryUnavailable) as caught:
            call()
        message = str(caught.value)
        assert "\n" not in message
        assert message.startswith("registry http://***@127.0.0.1:")
        assert "hunter2" not in message
    assert time.monotonic() - started < 30


class _Overloaded(http.server.BaseHTTPRequestHandler):
    """A tracking server answering 503 to everything, counting what it was asked."""

    seen: list[str] = []  # noqa: RUF012

    def _answer(self) -> None:
        type(self).seen.append(f"{self.command} {self.path.split('?')[0]}")
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = b'{"error_code": "TEMPORARILY_UNAVAILABLE", "message": "busy"}'
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def log_message(self, *_: object) -> None:
        pass


def test_rest_retries_reads_but_never_resends_a_create(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 503 may come after the server acted: a second run or version for one trigger is worse
    than an error the caller retries after searching."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Overloaded)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        tracking = MlflowTracking(f"http://127.0.0.1:{httpd.server_address[1]}")
        with pytest.raises(RegistryUnavailable, match="HTTP 503 runs/get: TEMPORARILY_UNAVAILABLE"):
            tracking.get_run("0" * 32)
        assert _Overloaded.seen == ["GET /api/2.0/mlflow/runs/get"] * 3
        _Overloaded.seen.clear()
        with pytest.raises(RegistryUnavailable, match="HTTP 503 runs/create"):
            tracking.create_run(experiment_id="1", tags={KEY: "k"})
        assert _Overloaded.seen == ["POST /api/2.0/mlflow/runs/create"]
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_rest_tracking_never_imports_mlflow(server: MlflowServer, unique: str) -> None:
    code = f"""
import sys
from controller.registry import MlflowTracking
t = MlflowTracking({server.url!r})
experiment = t.experiment_id("mlgitops/no-import/{unique}")
run = t.create_run(experiment_id=experiment, tags={{"mlgitops.trigger_key": "{unique}"}})
t.set_run_tags(run.run_id, {{"mlgitops.phase": "done"}})
t.end_run(run.run_id, status="FINISHED")
found = t.search_runs(experiment_id=experiment, tags={{"mlgitops.trigger_key": "{unique}"}})
assert [r.run_id for r in found] == [run.run_id]
assert t.get_run(run.run_id).status == "FINISHED"
assert t.logged_models(run.run_id) == [] and t.run_versions(run.run_id) == []
print("mlflow" in sys.modules, "pandas" in sys.modules)
"""
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "False False"
