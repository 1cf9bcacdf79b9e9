"""The two registry transports agree, against one real ``mlflow server``.

``MlflowRegistry`` speaks MLflow's REST API itself for an ``http(s)://`` tracking URI (so the
operator never imports mlflow) and goes through ``MlflowClient`` for anything else. These tests
hold the REST transport to MLflow's own client: the same observations from the same server,
writes that MLflow's client then reads back, and the same errors for a missing model, a server
that is down, and a server that refuses the credentials.
"""

from __future__ import annotations

import http.server
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.errors import RegistryUnavailable
from controller.planning.types import AliasEvent
from controller.registry import MlflowRegistry
from controller.registry.client import ClientTransport
from controller.registry.rest import RestTransport
from tests.helpers import MlflowServer, RegistryView, free_port

pytestmark = pytest.mark.server
FRAUD = "staging.fraud.fraud_detector"
CHURN = "staging.customers.churn_predictor"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, seeded_store: Path) -> Iterator[MlflowServer]:
    root = tmp_path_factory.mktemp("transports")
    shutil.copy(seeded_store / "mlflow.db", root / "server.db")
    srv = MlflowServer(root / "server.db", root / "artifacts", free_port())
    srv.start()
    view = RegistryView(srv.url)
    view.client.set_model_version_tag(FRAUD, "1", "model_validation_status", "FAILED")
    view.client.set_registered_model_alias(FRAUD, "champion", "2")
    view.client.set_registered_model_alias(FRAUD, "challenger", "3")
    view.client.set_model_version_tag(FRAUD, "3", "mlgitops.code_commit", "abc1234")
    try:
        yield srv
    finally:
        srv.stop()


def both(url: str) -> tuple[MlflowRegistry, MlflowRegistry]:
    return (
        MlflowRegistry(url, transport=RestTransport(url)),
        MlflowRegistry(url, transport=ClientTransport(url)),
    )


def test_http_uris_use_rest_and_never_import_mlflow(server: MlflowServer) -> None:
    code = (
        "import sys\n"
        "from controller.registry import MlflowRegistry\n"
        f"r = MlflowRegistry({server.url!r})\n"
        f"print(sorted(r.observe_model(model={FRAUD!r}, pins=set()).models[{FRAUD!r}].aliases.items()))\n"
        "print('mlflow' in sys.modules, 'pandas' in sys.modules)\n"
    )
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    aliases, imported = ran.stdout.strip().splitlines()
    assert aliases == "[('challenger', '3'), ('champion', '2')]"
    assert imported == "False False"


def test_same_observations(server: MlflowServer) -> None:
    rest, client = both(server.url)
    for pins in (set(), {"1", "2", "3"}, {"9"}):
        assert rest.observe_model(model=FRAUD, pins=pins) == client.observe_model(
            model=FRAUD, pins=pins
        )
    one = rest.observe_model(model=FRAUD, pins={"1", "3"})
    assert one.failed == frozenset({(FRAUD, "1")})
    assert one.models[FRAUD].aliases == {"champion": "2", "challenger": "3"}
    assert set(one.models[FRAUD].versions) == {"1"}  # 3 is aliased: its info is not fetched
    assert rest.version(model=FRAUD, version="3") == client.version(model=FRAUD, version="3")
    assert rest.version(model=FRAUD, version="3").code_commit == "abc1234"  # type: ignore[union-attr]

    for pins in (set(), {"2", "3"}, {"1", "2", "3", "4"}):  # two reads, however many pins
        fresh, _ = both(server.url)
        fresh.observe_model(model=FRAUD, pins=pins)
        assert fresh.stats.reads == 2, (pins, fresh.stats.by_call)

    def wanted(aliases: dict[str, dict[str, str]]) -> set[tuple[str, str]]:
        return {(name, "1") for name in aliases}

    rest, client = both(server.url)
    catalog_rest = rest.observe(catalog="staging", inspect=wanted)
    assert catalog_rest == client.observe(catalog="staging", inspect=wanted)
    assert set(catalog_rest.models) == {FRAUD, CHURN}
    assert rest.stats.reads == client.stats.reads  # the same calls, counted alike


def test_missing_things_are_none_not_errors(server: MlflowServer) -> None:
    for registry in both(server.url):
        assert registry.observe_model(model="staging.nope.nothing", pins={"1"}).models == {}
        assert registry.version(model=FRAUD, version="99") is None
        assert registry.version(model="staging.nope.nothing", version="1") is None
        assert registry.aliases(catalog="no_such_catalog") == {}


def test_rest_writes_are_what_mlflow_reads_back(server: MlflowServer) -> None:
    rest, _ = both(server.url)
    view = RegistryView(server.url)
    move = AliasEvent(
        alias="champion",
        version="3",
        previous=None,
        revision="r1",
        time="2026-11-26T20:00:00Z",
        reason="test",
    )
    rest.set_alias(model=CHURN, event=move)
    assert view.aliases(CHURN) == {"champion": "3"}
    [recorded] = view.history_tags(CHURN, "3")
    assert recorded["revision"] == "r1"
    drop = AliasEvent(
        alias="champion",
        version=None,
        previous="3",
        revision="r2",
        time="2026-11-26T20:00:01Z",
        reason="test",
    )
    rest.set_alias(model=CHURN, event=drop)
    assert view.aliases(CHURN) == {}
    _, client = both(server.url)
    assert rest.history(model=CHURN) == client.history(model=CHURN)
    assert [(e.revision, e.version) for e in rest.history(model=CHURN)] == [
        ("r1", "3"),
        ("r2", None),
    ]
    assert rest.stats.alias_writes == 2
    assert rest.stats.tag_writes == 2


def test_model_tags_and_versions_read_alike_over_both_transports(server: MlflowServer) -> None:
    """What the retraining trigger and the promotion pass read and write, either way."""
    from controller.registry import MlflowTracking

    rest = MlflowTracking(server.url, transport=RestTransport(server.url))
    client = MlflowTracking(server.url, transport=ClientTransport(server.url))
    rest.set_model_tag(model=FRAUD, key="mlgitops.retrain_due", value="w-1")
    assert client.model_tags(FRAUD)["mlgitops.retrain_due"] == "w-1"
    client.set_model_tag(model=FRAUD, key="mlgitops.retrain_due", value="w-2")
    assert rest.model_tags(FRAUD) == client.model_tags(FRAUD)
    assert rest.model_tags(FRAUD)["mlgitops.retrain_due"] == "w-2"
    assert (
        rest.model_tags("staging.nope.nothing") == {} == client.model_tags("staging.nope.nothing")
    )
    by_rest = {v.version: dict(v.tags) for v in rest.model_versions(FRAUD)}
    by_client = {v.version: dict(v.tags) for v in client.model_versions(FRAUD)}
    assert by_rest == by_client
    assert by_rest["3"]["mlgitops.code_commit"] == "abc1234"
    assert rest.model_versions("staging.nope.nothing") == []
    registry, _ = both(server.url)
    registry.tag_version(model=FRAUD, version="2", key="mlgitops.rolled_back", value="r9")
    assert RegistryView(server.url).tags(FRAUD, "2")["mlgitops.rolled_back"] == "r9"


def test_server_down_is_one_line_and_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    url = f"http://bob:hunter2@127.0.0.1:{free_port()}"
    registry = MlflowRegistry(url)
    started = time.monotonic()
    with pytest.raises(RegistryUnavailable) as caught:
        registry.observe_model(model=FRAUD, pins=set())
    assert time.monotonic() - started < 10
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("registry http://***@127.0.0.1:")
    assert "hunter2" not in message


class _Refusing(http.server.BaseHTTPRequestHandler):
    seen: list[str | None] = []  # noqa: RUF012

    def do_GET(self) -> None:
        type(self).seen.append(self.headers.get("Authorization"))
        body = b'{"error_code": "PERMISSION_DENIED", "message": "token\\nexpired"}'
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


def test_token_is_sent_and_a_refusal_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "t0ken")
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}"
        with pytest.raises(RegistryUnavailable) as caught:
            MlflowRegistry(url).observe_model(model=FRAUD, pins=set())
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert _Refusing.seen == ["Bearer t0ken"]  # 401 is not retried
    assert str(caught.value) == (
        f"registry {url}: HTTP 401 registered-models/get: PERMISSION_DENIED: token expired"
    )
