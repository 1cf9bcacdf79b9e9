"""The operator for real (``mlgitops operator``, a kopf process) against the Kubernetes API emulator.

Assertions are on what ends up in the emulator (objects, status, events, request counts) and in
the real MLflow registry, never on calls made. An emulator cannot show schema validation, garbage
collection, RBAC or controllers; ``tests/e2e`` runs the same scenarios on a real cluster.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import PROJECT, ConfigRepo, OperatorProcess, RegistryView, wait_for
from tests.k8s.fixtures import Cluster, start_emulator

NS = os.environ.get("MLGITOPS_TEST_NAMESPACE", "ml-prod")
FRAUD = "prod.fraud.fraud_detector"
CHURN = "prod.customers.churn_predictor"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with start_emulator(directory=tmp_path) as k8s:
        for crd in sorted((PROJECT / "manifests/crds").glob("mlgitops.io_*.yaml")):
            k8s.emulator.add_crd(yaml.safe_load(crd.read_text()))
        k8s.kubectl(
            "apply",
            "--validate=false",
            "-f",
            "-",
            input=f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {NS}}}\n",
        )
        yield k8s


def assert_quiet(cluster: Cluster, *, seconds: float) -> None:
    """No write reaches the API server for ``seconds`` while the resync timer keeps running.

    Counted at the emulator's request log; on a real cluster (tests/e2e), where requests cannot
    be counted, every object of the namespace must keep its resourceVersion.
    """
    time.sleep(1)
    emulator = getattr(cluster, "emulator", None)
    if emulator is not None:
        emulator.reset_calls()
        time.sleep(seconds)
        writes = emulator.writes()
        assert writes == [], writes
        return
    kinds = "modeldeployments,deployments,services,cronjobs,environments"

    def versions() -> dict[str, str]:
        items = json.loads(cluster.kubectl("get", kinds, "-n", NS, "-o", "json").stdout)["items"]
        return {
            f"{i['kind']}/{i['metadata']['name']}": i["metadata"]["resourceVersion"] for i in items
        }

    before = versions()
    time.sleep(seconds)
    assert versions() == before


def merge_patch(cluster: Cluster, kind: str, name: str, body: str, *, status: bool = False) -> None:
    """``kubectl patch --type=merge`` in the test namespace (``status``: the /status subresource)."""
    args = ["patch", kind, name, "-n", NS, "--type=merge", "-p", body]
    cluster.kubectl(*args, *(["--subresource=status"] if status else []))


def get(cluster: Cluster, kind: str, name: str) -> dict[str, Any] | None:
    done = cluster.kubectl("get", kind, name, "-n", NS, "-o", "json", check=False)
    return json.loads(done.stdout) if done.returncode == 0 else None


def dig(obj: dict[str, Any] | None, *path: str) -> Any:
    """``obj[p0][p1]...``, or None where the object or a key along the path is missing (yet)."""
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any] | None:
    for c in ((obj or {}).get("status") or {}).get("conditions", []):
        if c["type"] == type_:
            return dict(c)
    return None


def ready(cluster: Cluster, name: str, kind: str = "modeldeployment") -> dict[str, Any] | None:
    """The object if its Ready condition is True, else None."""
    obj = get(cluster, kind, name)
    return obj if dig(condition(obj, "Ready"), "status") == "True" else None


def environment_yaml(state: Path) -> str:
    doc = yaml.safe_load((PROJECT / "environments/prod/environment.yaml").read_text())
    doc["spec"]["registry"] = {"trackingUri": f"sqlite:///{state / 'mlflow.db'}"}
    doc["spec"]["namespace"] = NS
    return yaml.safe_dump(doc)


def deployment_yaml(name: str, **spec: Any) -> str:
    doc = yaml.safe_load((PROJECT / f"environments/prod/{name}.yaml").read_text())
    doc["spec"].update(spec)
    return yaml.safe_dump(doc)


@pytest.fixture
def operator(cluster: Cluster, state_dir: Path, tmp_path: Path) -> Iterator[OperatorProcess]:
    cluster.kubectl(
        "apply", "--validate=false", "-n", NS, "-f", "-", input=environment_yaml(state_dir)
    )
    op = OperatorProcess(
        cluster.kubeconfig,
        state_dir,
        tmp_path / "operator.log",
        "--env",
        "prod",
        "--namespace",
        NS,
        "--resync-interval",
        "2",
        "--verbose",
        env={},
    )
    try:
        yield op
    finally:
        op.stop()
        # pytest shows this only when the test failed: the operator's side of the story (lines
        # cut short: kopf's debug lines carry whole object bodies).
        tail = "\n".join(line[:240] for line in op.tail(300).splitlines())
        print(f"--- operator log, last 300 lines of {op.log} ---\n{tail}")


def test_modeldeployment_lifecycle(
    cluster: Cluster, operator: OperatorProcess, registry: RegistryView
) -> None:
    cluster.kubectl(
        "apply", "--validate=false", "-n", NS, "-f", "-", input=deployment_yaml("fraud-detector")
    )
    md = wait_for("fraud-detector Ready", lambda: ready(cluster, "fraud-detector"), timeout=90)

    # Registry aliases follow the spec; status carries the contract.
    assert registry.aliases(FRAUD) == {"champion": "2", "challenger": "3"}
    status = md["status"]
    assert status["observedGeneration"] == md["metadata"]["generation"]
    assert status["champion"]["version"] == "2"
    assert status["challenger"]["version"] == "3"
    assert status["registeredModel"] == FRAUD
    assert "phase" not in status
    assert {(i["kind"], i["name"]) for i in status["inventory"]} == {
        ("Deployment", "fraud-detector-serving"),
        ("Service", "fraud-detector-serving"),
        ("CronJob", "fraud-detector-batch"),
        ("CronJob", "fraud-detector-monitor"),
    }
    assert "mlgitops.io/finalizer" in md["metadata"]["finalizers"]
    assert not any(k.startswith("kopf.zalando.org") for k in md["metadata"].get("annotations", {}))

    # Children: labelled, owned, the serving pod template pins the versions.
    deployment = get(cluster, "deployment", "fraud-detector-serving")
    assert deployment is not None
    assert deployment["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "mlgitops"
    assert deployment["metadata"]["labels"]["mlgitops.io/model-deployment"] == "fraud-detector"
    assert deployment["metadata"]["ownerReferences"][0]["uid"] == md["metadata"]["uid"]
    template = deployment["spec"]["template"]["metadata"]["annotations"]
    assert (template["mlgitops.io/champion"], template["mlgitops.io/challenger"]) == ("2", "3")
    # No pods run on an emulator, so serving reports the rollout as pending.
    assert status["serving"]["rolledOut"] is False
    assert condition(md, "Reconciling")["reason"] == "Progressing"

    table = cluster.kubectl("get", "modeldeployments", "-n", NS).stdout
    header = table.splitlines()[0].split()
    assert header == ["NAME", "CHAMPION", "CHALLENGER", "READY", "REVISION", "AGE"]
    assert table.splitlines()[1].split()[:4] == ["fraud-detector", "2", "3", "True"]

    # When the Deployment reports its replicas ready (a Deployment controller's job; the emulator
    # has none, so the test plays it), serving status says rolled out and Reconciling clears.
    if getattr(cluster, "emulator", None) is not None:
        rolled = {
            "observedGeneration": deployment["metadata"]["generation"],
            "replicas": 2,
            "readyReplicas": 2,
            "updatedReplicas": 2,
            "availableReplicas": 2,
        }
        merge_patch(
            cluster,
            "deployment",
            "fraud-detector-serving",
            json.dumps({"status": rolled}),
            status=True,
        )
        md = wait_for(
            "rolled out",
            lambda: (
                (m := get(cluster, "modeldeployment", "fraud-detector"))
                and dig(m, "status", "serving", "rolledOut")
                and m
            ),
        )
        assert md["status"]["serving"]["readyReplicas"] == 2
        assert (md["status"]["serving"]["champion"], md["status"]["serving"]["challenger"]) == (
            "2",
            "3",
        )
        assert md["status"]["serving"]["challengerTraffic"] == 10
        assert condition(md, "Reconciling") is None

    # Idempotent: passes over an unchanged object write nothing (the timer runs every 2 s).
    assert_quiet(cluster, seconds=6)

    # A child deleted by hand comes back; one edited by hand is put back.
    cluster.kubectl("delete", "deployment", "fraud-detector-serving", "-n", NS)
    wait_for(
        "serving Deployment restored", lambda: get(cluster, "deployment", "fraud-detector-serving")
    )
    merge_patch(cluster, "cronjob", "fraud-detector-batch", '{"spec": {"schedule": "* * * * *"}}')
    wait_for(
        "CronJob schedule restored",
        lambda: (
            dig(get(cluster, "cronjob", "fraud-detector-batch"), "spec", "schedule") == "0 11 * * *"
        ),
    )

    # A promotion by spec change moves the alias, rolls the template, and posts an Event.
    merge_patch(
        cluster,
        "modeldeployment",
        "fraud-detector",
        json.dumps(
            {
                "spec": {
                    "champion": {"version": "3"},
                    "challenger": None,
                    "serving": {"traffic": {"challenger": 0}},
                }
            }
        ),
    )
    wait_for("champion alias on 3", lambda: registry.aliases(FRAUD) == {"champion": "3"})
    wait_for(
        "template rolled",
        lambda: (
            dig(
                get(cluster, "deployment", "fraud-detector-serving"),
                "spec",
                "template",
                "metadata",
                "annotations",
                "mlgitops.io/champion",
            )
            == "3"
        ),
    )
    events = json.loads(cluster.kubectl("get", "events", "-n", NS, "-o", "json").stdout)["items"]
    assert any(e["reason"] == "AliasChanged" and "champion 2 -> 3" in e["message"] for e in events)
    md = wait_for(
        "history",
        lambda: (
            (m := get(cluster, "modeldeployment", "fraud-detector"))
            and len(dig(m, "status", "history") or []) >= 4
            and m
        ),
    )
    assert md["status"]["history"][-2]["version"] == "3"

    # An invalid spec: Stalled, the field named, no child and no alias changed.
    before = get(cluster, "deployment", "fraud-detector-serving")
    merge_patch(
        cluster, "modeldeployment", "fraud-detector", '{"spec": {"champion": {"version": "9"}}}'
    )
    stalled = wait_for(
        "Stalled", lambda: condition(get(cluster, "modeldeployment", "fraud-detector"), "Stalled")
    )
    assert stalled["reason"] == "InvalidSpec"
    assert "spec.champion.version" in stalled["message"]
    assert "version 9 of prod.fraud.fraud_detector does not exist" in stalled["message"]
    time.sleep(3)
    after = get(cluster, "deployment", "fraud-detector-serving")
    assert after is not None
    assert before is not None
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert registry.aliases(FRAUD) == {"champion": "3"}

    # Deleting the ModelDeployment removes its children and leaves the aliases alone.
    cluster.kubectl("delete", "modeldeployment", "fraud-detector", "-n", NS, "--wait=false")
    wait_for("gone", lambda: get(cluster, "modeldeployment", "fraud-detector") is None)
    for kind, name in (
        ("deployment", "fraud-detector-serving"),
        ("service", "fraud-detector-serving"),
        ("cronjob", "fraud-detector-batch"),
        ("cronjob", "fraud-detector-monitor"),
    ):
        assert get(cluster, kind, name) is None, (kind, name)
    assert registry.aliases(FRAUD) == {"champion": "3"}

    code, text = operator.get("/metrics")
    assert code == 200
    assert "mlgitops_reconcile_duration_seconds_count" in text
    assert 'mlgitops_alias_changes_total{alias="champion"}' in text


def test_deletion_during_a_resync_pass_completes_in_seconds(
    cluster: Cluster, operator: OperatorProcess, registry: RegistryView
) -> None:
    """A ModelDeployment deleted while a timer pass runs is gone once that pass ends.

    kopf keeps the finalizer until the timer's thread returns, and by default re-checks it only
    every 60 s; the operator polls every second. The emulator holds the pass's read of the serving
    Deployment, so the deletion surely lands mid-pass (emulator only: a real API server has no
    such hook).
    """
    cluster.kubectl(
        "apply", "--validate=false", "-n", NS, "-f", "-", input=deployment_yaml("fraud-detector")
    )
    wait_for("fraud-detector Ready", lambda: ready(cluster, "fraud-detector"), timeout=90)
    gate = cluster.emulator.hold(
        "GET", f"/apis/apps/v1/namespaces/{NS}/deployments/fraud-detector-serving"
    )
    try:
        wait_for("a resync pass in flight", lambda: gate.waiting > 0, timeout=20)
        cluster.kubectl("delete", "modeldeployment", "fraud-detector", "-n", NS, "--wait=false")
        time.sleep(2)  # kopf sees the deletion, finds the timer busy, and schedules a re-check
        assert get(cluster, "modeldeployment", "fraud-detector") is not None
    finally:
        gate.release()
    released = time.monotonic()
    wait_for("gone", lambda: get(cluster, "modeldeployment", "fraud-detector") is None, timeout=30)
    assert time.monotonic() - released < 15
    assert get(cluster, "deployment", "fraud-detector-serving") is None
    assert registry.aliases(FRAUD) == {"champion": "2", "challenger": "3"}


def test_invalid_document_is_stalled_with_the_field_named(
    cluster: Cluster, operator: OperatorProcess, registry: RegistryView
) -> None:
    before = registry.snapshot()
    cluster.kubectl(
        "apply",
        "--validate=false",
        "-n",
        NS,
        "-f",
        "-",
        input=deployment_yaml("fraud-detector", serving={"replicas": "two"}),
    )
    stalled = wait_for(
        "Stalled",
        lambda: condition(get(cluster, "modeldeployment", "fraud-detector"), "Stalled"),
        timeout=90,
    )
    assert "spec.serving.replicas" in stalled["message"]
    assert get(cluster, "deployment", "fraud-detector-serving") is None
    assert registry.snapshot() == before


def sign(token: str, body: bytes) -> str:
    return "sha256=" + hmac.new(token.encode(), body, hashlib.sha256).hexdigest()


def test_git_sync_applies_prunes_restores_and_rejects_bad_revisions(
    cluster: Cluster, state_dir: Path, tmp_path: Path, registry: RegistryView
) -> None:
    repo = ConfigRepo(tmp_path / "config")
    env_file = "environments/prod/environment.yaml"
    repo.write(env_file, environment_yaml(state_dir))
    repo.commit("Use the test registry")
    token = "webhook-secret"
    op = OperatorProcess(
        cluster.kubeconfig,
        state_dir,
        tmp_path / "operator.log",
        "--env",
        "prod",
        "--repo",
        str(repo.path),
        "--poll-interval",
        "600",
        "--resync-interval",
        "2",
        env={"MLGITOPS_WEBHOOK_TOKEN": token},
    )
    try:
        wait_for(
            "both Ready",
            lambda: ready(cluster, "fraud-detector") and ready(cluster, "churn-predictor"),
            timeout=90,
        )
        md = get(cluster, "modeldeployment", "fraud-detector")
        assert md is not None
        assert md["metadata"]["annotations"]["mlgitops.io/revision"] == repo.head()
        assert registry.aliases(CHURN) == {"champion": "1"}
        code, _body = op.get("/readyz")
        assert code == 200

        def webhook() -> None:
            payload = b'{"ref": "refs/heads/main"}'
            assert (
                op.post("/webhook", payload, {"X-Hub-Signature-256": sign("wrong", payload)}) == 401
            )
            assert (
                op.post("/webhook", payload, {"X-Hub-Signature-256": sign(token, payload)}) == 202
            )

        # A revision with one bad file changes nothing in the cluster.
        rv = {
            n: get(cluster, "modeldeployment", n)["metadata"]["resourceVersion"]  # type: ignore[index]
            for n in ("fraud-detector", "churn-predictor")
        }
        repo.pin("environments/prod/churn-predictor.yaml", "champion", "2")
        repo.write(
            "environments/prod/fraud-detector.yaml",
            repo.read("environments/prod/fraud-detector.yaml").replace(
                "replicas: 2", "replicas: x"
            ),
        )
        repo.commit("One good change, one bad file")
        webhook()
        time.sleep(4)
        assert {
            n: get(cluster, "modeldeployment", n)["metadata"]["resourceVersion"]  # type: ignore[index]
            for n in rv
        } == rv
        assert registry.aliases(CHURN) == {"champion": "1"}
        metrics = op.get("/metrics")[1]
        assert (
            'mlgitops_git_sync_errors_total{environment="prod",reason="InvalidRevision"}' in metrics
        )
        env = get(cluster, "environment", "prod")
        assert env is not None
        stalled = condition(env, "Stalled")
        assert stalled is not None
        assert "environments/prod/fraud-detector.yaml:" in stalled["message"]
        assert "spec.serving.replicas" in stalled["message"]
        assert env["status"]["lastAttemptedRevision"] == repo.head()
        assert env["status"]["lastAppliedRevision"] != repo.head()

        # Fixed: applied. Then a file removed from Git is pruned.
        repo.write(
            "environments/prod/fraud-detector.yaml",
            repo.read("environments/prod/fraud-detector.yaml").replace(
                "replicas: x", "replicas: 2"
            ),
        )
        fixed = repo.commit("Fix replicas")
        webhook()
        wait_for("churn champion 2", lambda: registry.aliases(CHURN) == {"champion": "2"})
        env = wait_for("environment Ready", lambda: ready(cluster, "prod", "environment"))
        assert condition(env, "Stalled") is None
        assert env["status"]["lastAppliedRevision"] == fixed
        assert f'revision="{fixed}"' in op.get("/metrics")[1]

        # Git wins over a hand edit.
        merge_patch(
            cluster, "modeldeployment", "fraud-detector", '{"spec": {"serving": {"replicas": 5}}}'
        )
        webhook()
        wait_for(
            "replicas restored",
            lambda: (
                dig(
                    get(cluster, "modeldeployment", "fraud-detector"), "spec", "serving", "replicas"
                )
                == 2
            ),
        )

        repo.remove("environments/prod/churn-predictor.yaml")
        repo.commit("Retire churn predictor")
        webhook()
        wait_for("churn pruned", lambda: get(cluster, "modeldeployment", "churn-predictor") is None)
        assert get(cluster, "deployment", "churn-predictor-serving") is None
        assert get(cluster, "modeldeployment", "fraud-detector") is not None
    finally:
        op.stop()
