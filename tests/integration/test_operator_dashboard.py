"""The dashboard the operator serves with ``--ui``, from its objects, Git and the registry.

The real operator (``mlgitops operator --ui``, a kopf process) syncs a real config repository
(through its mirror, as from a remote) into the API emulator, or from tests/e2e a real control
plane, with a real MLflow store; the pages and the JSON API are read over HTTP as a browser
would, and what they say is compared with the objects, the repository and the registry.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from croniter import croniter

from tests.helpers import ConfigRepo, OperatorProcess, RegistryView, wait_for
from tests.integration.test_operator import (
    CHURN,
    FRAUD,
    NS,
    OPERATOR,
    applied,
    cluster,
    condition,
    deployment_yaml,
    environment_yaml,
    get,
    merge_patch,
    ready,
    rollouts,
    sign,
)
from tests.k8s.fixtures import Cluster

__all__ = ["cluster", "rollouts"]
TOKEN = "dashboard-secret"
WEBHOOK = "webhook-secret"
FRAUD_FILE = "environments/prod/fraud-detector.yaml"
CHURN_FILE = "environments/prod/churn-predictor.yaml"


def fetch(
    op: OperatorProcess, path: str, *, token: str | None = TOKEN
) -> tuple[int, str, dict[str, str]]:
    """(status, body, headers) of ``GET path`` on the operator's HTTP port, with the bearer
    ``token`` (None: none). Redirects are not followed."""

    class Stay(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *_: Any, **__: Any) -> None:
            return None

    request = urllib.request.Request(f"http://127.0.0.1:{op.port}{path}")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.build_opener(Stay).open(request, timeout=30) as r:
            return int(r.status), r.read().decode(), dict(r.headers)
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode(), dict(exc.headers)


def api(op: OperatorProcess, path: str) -> Any:
    code, body, _ = fetch(op, path)
    assert code == 200, body
    return json.loads(body)


def line_of(text: str, block: str, key: str) -> int:
    """The 1-based line of ``key:`` inside the top-level-of-spec ``block:`` of a YAML file."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line == f"  {block}:")
    return next(i for i in range(start, len(lines)) if lines[i].strip().startswith(f"{key}:")) + 1


def webhook(op: OperatorProcess) -> None:
    """A signed push: the operator syncs Git now."""
    body = b'{"ref": "refs/heads/main"}'
    assert op.post("/webhook", body, {"X-Hub-Signature-256": sign(WEBHOOK, body)}) == 202


def start(cluster: Cluster, state_dir: Path, log: Path, *args: str, **env: str) -> OperatorProcess:
    """``mlgitops operator --env prod --ui`` as the operator's ServiceAccount."""
    return OperatorProcess(
        cluster.kubeconfig_for(OPERATOR), state_dir, log, "--env", "prod", "--ui", *args, env=env
    )


def play_cronjob_run(cluster: Cluster, cronjob: str) -> str:
    """The CronJob controller's part in one scheduled run that succeeded: its status, and (on
    the emulator, which has no controllers) the Job it started, finished. On a real control
    plane the Job controller owns Job status, so only the CronJob's status is set there, as it
    stands once the Job is gone. Returns the time it was scheduled: the schedule's newest time,
    or a real CronJob controller would start the runs it missed since."""
    owner = get(cluster, "cronjob", cronjob)
    assert owner is not None
    now = dt.datetime.now(dt.UTC)
    last = croniter(owner["spec"]["schedule"], now).get_prev(dt.datetime)
    scheduled = last.strftime("%Y-%m-%dT%H:%M:%SZ")
    finished = (last + dt.timedelta(seconds=130)).strftime("%Y-%m-%dT%H:%M:%SZ")
    if getattr(cluster, "emulator", None) is not None:
        template = owner["spec"]["jobTemplate"]
        job = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": f"{cronjob}-{int(last.timestamp()) // 60}",
                "namespace": NS,
                "labels": template["metadata"]["labels"],
                "ownerReferences": [
                    {
                        "apiVersion": "batch/v1",
                        "kind": "CronJob",
                        "name": cronjob,
                        "uid": owner["metadata"]["uid"],
                        "controller": True,
                    }
                ],
            },
            "spec": template["spec"],
        }
        cluster.kubectl("apply", "--validate=false", "-f", "-", input=json.dumps(job))
        done = {
            "status": {
                "startTime": scheduled,
                "completionTime": finished,
                "succeeded": 1,
                "conditions": [
                    {"type": "Complete", "status": "True", "lastTransitionTime": finished}
                ],
            }
        }
        merge_patch(cluster, "job", job["metadata"]["name"], json.dumps(done), status=True)
    times = {"status": {"lastScheduleTime": scheduled, "lastSuccessfulTime": finished}}
    merge_patch(cluster, "cronjob", cronjob, json.dumps(times), status=True)
    return scheduled


def test_the_operator_serves_the_dashboard_from_its_objects_git_and_the_registry(
    cluster: Cluster, state_dir: Path, tmp_path: Path, registry: RegistryView, rollouts: None
) -> None:
    repo = ConfigRepo(tmp_path / "config")
    repo.write("environments/prod/environment.yaml", environment_yaml(state_dir))
    first = repo.commit("Use the test registry")
    op = start(
        cluster,
        state_dir,
        tmp_path / "operator.log",
        # A URL: the operator mirrors it, and the dashboard reads that mirror.
        *("--repo", f"file://{repo.path}", "--poll-interval", "600", "--resync-interval", "2"),
        MLGITOPS_WEBHOOK_TOKEN=WEBHOOK,
        MLGITOPS_UI_TOKEN=TOKEN,
    )
    try:
        wait_for(
            "both Ready",
            lambda: ready(cluster, "fraud-detector") and ready(cluster, "churn-predictor"),
            timeout=90,
        )

        # The token: every page and /api call wants it; the metrics and probes never do.
        for path in ("/", "/api/overview", "/models/fraud-detector", "/environments/prod"):
            assert fetch(op, path, token=None)[0] == 401, path
            assert fetch(op, path, token="wrong")[0] == 401, path
        assert fetch(op, "/api/overview?token=wrong", token=None)[0] == 401
        code, _, headers = fetch(op, f"/?token={TOKEN}", token=None)
        assert code == 303  # once, then an HttpOnly cookie
        assert "HttpOnly" in headers["Set-Cookie"]
        assert fetch(op, "/metrics", token=None)[0] == 200
        assert "mlgitops_reconcile_duration_seconds_count" in fetch(op, "/metrics", token=None)[1]
        assert fetch(op, "/healthz", token=None)[0] == 200
        assert fetch(op, "/readyz", token=None)[0] == 200
        assert fetch(op, "/static/ui.css", token=None)[0] == 200

        # The overview: every ModelDeployment, its versions and state, the revision applied.
        overview = api(op, "/api/overview")
        [env] = overview["environments"]
        assert (env["name"], env["state"], env["applied"]) == ("prod", "Ready", first)
        assert env["pending"] is False
        assert env["problems"] == []
        assert env["source"] == f"file://{repo.path}"
        assert env["models"] == 2
        rows = {row["name"]: row for row in overview["models"]}
        assert sorted(rows) == ["churn-predictor", "fraud-detector"]
        fraud, churn = (
            rows["fraud-detector"]["cells"]["prod"],
            rows["churn-predictor"]["cells"]["prod"],
        )
        assert (fraud["champion"], fraud["challenger"], fraud["state"]) == ("2", "3", "Ready")
        assert (churn["champion"], churn["challenger"], churn["state"]) == ("1", None, "Ready")
        assert rows["fraud-detector"]["registeredModel"] == FRAUD
        assert fraud["serving"]["traffic"] == {"champion": 90, "challenger": 10}
        assert fraud["serving"]["rolledOut"] is True
        assert overview["counts"]["Ready"] == 2
        assert [r["name"] for r in api(op, "/api/overview?q=churn")["models"]] == [
            "churn-predictor"
        ]
        code, page, _ = fetch(op, "/")
        assert code == 200
        assert 'data-model="fraud-detector"' in page
        assert 'data-model="churn-predictor"' in page

        # A promotion by commit and its revert: both alias moves, with their revisions, in the
        # model's timeline from the registry; the document's file from Git.
        repo.pin(FRAUD_FILE, "champion", "1")
        promote = repo.commit("Use fraud detector v1 as champion")
        webhook(op)
        wait_for("champion on 1", lambda: registry.aliases(FRAUD).get("champion") == "1")
        revert = repo.revert(promote)
        webhook(op)
        wait_for("champion back on 2", lambda: registry.aliases(FRAUD).get("champion") == "2")
        wait_for("fraud applied at the revert", lambda: _applied_at(cluster, revert), timeout=30)
        model = api(op, "/api/models/fraud-detector")
        [section] = model["environments"]
        assert section["file"] == FRAUD_FILE
        assert section["registeredModel"] == FRAUD
        moves = [
            (e["change"], e["revision"])
            for e in section["timeline"]
            if e["kind"] == "alias" and e["event"] == "champion"
        ]
        assert moves[-2:] == [("2 -> 1", promote), ("1 -> 2", revert)]
        assert any(
            e["kind"] == "rollback" and e["version"] == "1" and e["revision"] == revert
            for e in section["timeline"]
        )
        assert section["problems"] == []
        code, page, _ = fetch(op, "/models/fraud-detector")
        assert code == 200
        assert "2 -&gt; 1" in page
        assert "1 -&gt; 2" in page
        assert revert[:7] in page
        assert fetch(op, "/models/no-such-model")[0] == 404

        # Jobs: each CronJob's last run, as its status (and its Job) say.
        scheduled = play_cronjob_run(cluster, "fraud-detector-batch")
        jobs = wait_for(
            "the batch run shown",
            lambda: (
                (j := {x["name"]: x for x in api(op, "/api/environments/prod")["jobs"]})
                .get("fraud-detector-batch", {})
                .get("result")
                == "succeeded"
                and j
            ),
            timeout=10,
        )
        assert sorted(jobs) == [
            "churn-predictor-batch",
            "churn-predictor-monitor",
            "fraud-detector-batch",
            "fraud-detector-monitor",
        ]
        assert jobs["fraud-detector-batch"]["lastScheduleTime"] == scheduled
        if getattr(cluster, "emulator", None) is not None:
            minutes = int(dt.datetime.fromisoformat(scheduled).timestamp()) // 60
            assert jobs["fraud-detector-batch"]["lastRun"] == f"fraud-detector-batch-{minutes}"
        assert jobs["fraud-detector-monitor"]["result"] == "-"

        # A pin the registry lacks: the ModelDeployment stalls on its own; the dashboard names
        # the file and line of the field, as the local runtime does.
        repo.pin(CHURN_FILE, "champion", "9")
        bad_pin = repo.commit("Pin a churn version that does not exist")
        webhook(op)
        wait_for(
            "churn Stalled",
            lambda: condition(get(cluster, "modeldeployment", "churn-predictor"), "Stalled"),
        )
        line = line_of(repo.read(CHURN_FILE), "champion", "version")
        cell = wait_for(  # the dashboard lists the objects anew every 2 s
            "the dashboard shows it",
            lambda: (c := _cell(op, "churn-predictor"))["state"] == "Stalled" and c,
            timeout=10,
        )
        assert cell["location"] == f"{CHURN_FILE}:{line}"
        assert cell["message"] == (
            f"{CHURN_FILE}:{line}: spec.champion.version: version 9 of {CHURN} does not exist"
        )
        assert api(op, "/api/overview?state=Stalled")["models"][0]["name"] == "churn-predictor"
        env = api(op, "/api/environments/prod")
        assert (env["state"], env["applied"]) == ("Ready", bad_pin)  # the revision was valid
        assert f"{CHURN_FILE}:{line}" in fetch(op, "/models/churn-predictor")[1]

        # A revision with an invalid file: the Environment stalls, naming file and line; the
        # last good revision stays applied, the new one attempted.
        text = repo.read(FRAUD_FILE)
        repo.write(FRAUD_FILE, text.replace("replicas: 2", "replicas: x"))
        rejected = repo.commit("A bad file")
        webhook(op)
        wait_for(
            "Environment Stalled", lambda: condition(get(cluster, "environment", "prod"), "Stalled")
        )
        replicas = line_of(text, "serving", "replicas")
        env = wait_for(
            "the dashboard shows it",
            lambda: (e := api(op, "/api/environments/prod"))["state"] == "Stalled" and e,
            timeout=10,
        )
        assert (env["applied"], env["attempted"], env["pending"]) == (bad_pin, rejected, True)
        [problem] = env["problems"]
        assert problem["location"] == f"{FRAUD_FILE}:{replicas}"
        assert "spec.serving.replicas" in problem["text"]
        assert api(op, "/api/overview")["environments"][0]["state"] == "Stalled"
        page = fetch(op, "/environments/prod")[1]
        assert f"{FRAUD_FILE}:{replicas}" in page
    finally:
        op.stop()
        print(f"--- operator log, last 100 lines of {op.log} ---\n{op.tail(100)}")


def _applied_at(cluster: Cluster, revision: str) -> bool:
    md = get(cluster, "modeldeployment", "fraud-detector") or {}
    notes = (md.get("metadata") or {}).get("annotations") or {}
    return bool(notes.get("mlgitops.io/revision") == revision and ready(cluster, "fraud-detector"))


def _cell(op: OperatorProcess, name: str) -> dict[str, Any]:
    rows = {row["name"]: row for row in api(op, "/api/overview")["models"]}
    return dict(rows[name]["cells"]["prod"])


def test_without_a_config_repository_the_dashboard_reads_the_objects(
    cluster: Cluster, state_dir: Path, tmp_path: Path
) -> None:
    """ModelDeployments applied with kubectl: the pages come from the objects and the registry
    alone (no Git to date commits with), a stalled one names the object, and on loopback no
    token is needed."""
    cluster.kubectl(
        "apply", "--validate=false", "-n", NS, "-f", "-", input=environment_yaml(state_dir)
    )
    cluster.kubectl(
        "apply", "--validate=false", "-n", NS, "-f", "-", input=deployment_yaml("fraud-detector")
    )
    cluster.kubectl(
        "apply",
        "--validate=false",
        "-n",
        NS,
        "-f",
        "-",
        input=deployment_yaml("churn-predictor", champion={"version": "9"}),
    )
    op = start(cluster, state_dir, tmp_path / "operator.log", "--namespace", NS)
    try:
        wait_for("fraud applied", lambda: applied(cluster, "fraud-detector"), timeout=90)
        wait_for(
            "churn Stalled",
            lambda: condition(get(cluster, "modeldeployment", "churn-predictor"), "Stalled"),
        )
        cell = wait_for(
            "both shown",
            lambda: (c := _cell(op, "churn-predictor"))["state"] == "Stalled" and c,
            timeout=10,
        )
        assert cell["location"] is None  # no file: an object applied by hand
        assert cell["message"].startswith("modeldeployment/churn-predictor: spec.champion.version")
        fraud = _cell(op, "fraud-detector")
        assert (fraud["champion"], fraud["challenger"]) == ("2", "3")
        env = api(op, "/api/environments/prod")
        assert env["source"] is None
        assert env["applied"] is None  # no Git sync: the Environment has no status
        model = api(op, "/api/models/fraud-detector")
        [section] = model["environments"]
        assert section["file"] == "modeldeployment/fraud-detector"
        moves = {(e["event"], e["change"]) for e in section["timeline"] if e["kind"] == "alias"}
        assert moves == {("champion", "(none) -> 2"), ("challenger", "(none) -> 3")}
        assert section["problems"] == []
    finally:
        op.stop()
        print(f"--- operator log, last 100 lines of {op.log} ---\n{op.tail(100)}")


def test_the_dashboard_off_loopback_without_a_token_refuses_to_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from controller.cli import app

    monkeypatch.delenv("MLGITOPS_UI_TOKEN", raising=False)
    monkeypatch.delenv("MLGITOPS_HTTP_HOST", raising=False)
    args = ["operator", "--env", "prod", "-n", NS, "--ui", "--state-dir", str(tmp_path)]
    ran = CliRunner().invoke(app, args)
    assert ran.exit_code == 2
    [line] = ran.stderr.strip().splitlines()
    assert line.startswith("error: --ui: the HTTP port listens on 0.0.0.0")
    assert "$MLGITOPS_UI_TOKEN" in line
    assert not re.search(r"Traceback", ran.stderr)
