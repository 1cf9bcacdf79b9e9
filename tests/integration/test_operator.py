"""The operator for real (``mlgitops operator``, a kopf process) against the Kubernetes API emulator.

Assertions are on what ends up in the emulator (objects, status, events, request counts) and in
the real MLflow registry, never on calls made. An emulator cannot show schema validation, garbage
collection, RBAC or controllers; ``tests/e2e`` runs the same scenarios on a real cluster.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import PROJECT, ConfigRepo, OperatorProcess, RegistryView, wait_for
from tests.k8s.fixtures import Cluster, start_emulator

NS = os.environ.get("MLGITOPS_TEST_NAMESPACE", "ml-prod")
# The identity the operator runs as in its namespace (its ServiceAccount): on a real cluster
# (tests/e2e) its token, so it has exactly the shipped Role; on the emulator a bearer token
# naming it, so the requests it makes can be told apart from the test's own.
OPERATOR = f"system:serviceaccount:{NS}:mlgitops-operator"
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


def applied(cluster: Cluster, name: str) -> dict[str, Any] | None:
    """The ModelDeployment once a pass applied its spec (Ready may still be Unknown: rolling out)."""
    obj = get(cluster, "modeldeployment", name)
    return obj if dig(obj, "status", "lastAppliedRevision") else None


def complete_rollouts(cluster: Cluster) -> list[str]:
    """Play the controllers and kubelet for every serving Deployment of the namespace that has
    not rolled out: its pods run and are ready. Returns the Deployments it moved on.

    Pods never run here: the emulator has no controllers at all, so the Deployment's status is
    set as its controller would (the real deployment controller overwrites a patched Deployment
    status); a real control plane without a kubelet creates the Pods, whose status is set Running
    and Ready, and the deployment controller then reports the rollout itself.
    """
    moved = []
    deployments = json.loads(cluster.kubectl("get", "deployments", "-n", NS, "-o", "json").stdout)
    for d in deployments["items"]:
        name, want = d["metadata"]["name"], int(d["spec"].get("replicas", 1))
        st = d.get("status") or {}
        if (
            st.get("observedGeneration") == d["metadata"]["generation"]
            and st.get("readyReplicas", 0) == want
            and st.get("updatedReplicas", 0) == want
        ):
            continue
        moved.append(name)
        if getattr(cluster, "emulator", None) is not None:
            rolled = {
                "observedGeneration": d["metadata"]["generation"],
                "replicas": want,
                "readyReplicas": want,
                "updatedReplicas": want,
                "availableReplicas": want,
            }
            merge_patch(cluster, "deployment", name, json.dumps({"status": rolled}), status=True)
            continue
        selector = ",".join(f"{k}={v}" for k, v in d["spec"]["selector"]["matchLabels"].items())
        pods = json.loads(
            cluster.kubectl("get", "pods", "-n", NS, "-l", selector, "-o", "json").stdout
        )
        running = {
            "phase": "Running",
            "conditions": [
                {"type": "Ready", "status": "True"},
                {"type": "ContainersReady", "status": "True"},
                {"type": "PodScheduled", "status": "True"},
                {"type": "Initialized", "status": "True"},
            ],
        }
        for pod in pods["items"]:
            if (pod.get("status") or {}).get("phase") != "Running":
                merge_patch(
                    cluster,
                    "pod",
                    pod["metadata"]["name"],
                    json.dumps({"status": running}),
                    status=True,
                )
    return moved


@pytest.fixture
def rollouts(cluster: Cluster) -> Iterator[None]:
    """Every serving Deployment of the namespace rolls out soon after it changes."""
    stop = threading.Event()

    def play() -> None:
        while not stop.wait(0.5):
            with contextlib.suppress(AssertionError, ValueError):  # a kubectl racing a delete
                complete_rollouts(cluster)

    player = threading.Thread(target=play, daemon=True)
    player.start()
    yield
    stop.set()
    player.join()


def environment_yaml(state: Path) -> str:
    doc = yaml.safe_load((PROJECT / "environments/prod/environment.yaml").read_text())
    doc["spec"]["registry"] = {"trackingUri": f"sqlite:///{state / 'mlflow.db'}"}
    doc["spec"]["namespace"] = NS
    return yaml.safe_dump(doc)


def deployment_yaml(name: str, **spec: Any) -> str:
    doc = yaml.safe_load((PROJECT / f"environments/prod/{name}.yaml").read_text())
    doc["spec"].update(spec)
    return yaml.safe_dump(doc)


def start_operator(
    cluster: Cluster, state_dir: Path, log: Path, *args: str, token: str | None = None
) -> OperatorProcess:
    """``mlgitops operator --env prod`` as the operator's ServiceAccount (``token``: the
    webhook's)."""
    return OperatorProcess(
        cluster.kubeconfig_for(OPERATOR),
        state_dir,
        log,
        "--env",
        "prod",
        *args,
        env={"MLGITOPS_WEBHOOK_TOKEN": token} if token else {},
    )


def start_git_operator(
    cluster: Cluster, state_dir: Path, log: Path, repo: ConfigRepo, token: str, *extra: str
) -> OperatorProcess:
    """Syncing ``repo`` on a webhook (the poll is 10 minutes away), resync every 2 s; ``extra``
    arguments after those."""
    args = ["--repo", str(repo.path), "--poll-interval", "600", "--resync-interval", "2", *extra]
    return start_operator(cluster, state_dir, log, *args, token=token)


@pytest.fixture
def operator(cluster: Cluster, state_dir: Path, tmp_path: Path) -> Iterator[OperatorProcess]:
    cluster.kubectl(
        "apply", "--validate=false", "-n", NS, "-f", "-", input=environment_yaml(state_dir)
    )
    op = start_operator(
        cluster,
        state_dir,
        tmp_path / "operator.log",
        "--namespace",
        NS,
        # Long: what these tests see corrected is seen through watches, not the safety net.
        "--resync-interval",
        "600",
        "--verbose",
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
    md = wait_for("fraud-detector applied", lambda: applied(cluster, "fraud-detector"), timeout=90)

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
    # No finalizer (nothing of ours needs cleaning up: children go by owner reference) and no
    # bookkeeping annotations: the operator only watches.
    assert not md["metadata"].get("finalizers")
    notes = md["metadata"].get("annotations") or {}
    assert not [k for k in notes if k.startswith(("mlgitops.io/", "kopf."))], notes

    # Children: labelled, owned, the serving pod template pins the versions.
    deployment = get(cluster, "deployment", "fraud-detector-serving")
    assert deployment is not None
    assert deployment["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "mlgitops"
    assert deployment["metadata"]["labels"]["mlgitops.io/model-deployment"] == "fraud-detector"
    assert deployment["metadata"]["ownerReferences"][0]["uid"] == md["metadata"]["uid"]
    template = deployment["spec"]["template"]["metadata"]["annotations"]
    assert (template["mlgitops.io/champion"], template["mlgitops.io/challenger"]) == ("2", "3")
    # Nothing serves yet, so the rollout is pending and Ready is Unknown (kstatus): `kubectl
    # wait --for=condition=Ready` does not return before the versions serve.
    assert status["serving"]["rolledOut"] is False
    assert condition(md, "Reconciling")["reason"] == "Progressing"  # type: ignore[index]
    assert (condition(md, "Ready") or {}).get("status") == "Unknown"
    assert (condition(md, "Ready") or {}).get("reason") == "Progressing"
    table = cluster.kubectl("get", "md", "-n", NS).stdout  # the short name
    header = table.splitlines()[0].split()
    assert header == ["NAME", "CHAMPION", "CHALLENGER", "READY", "REVISION", "AGE"]
    assert table.splitlines()[1].split()[:4] == ["fraud-detector", "2", "3", "Unknown"]
    listed = cluster.kubectl("get", "mlgitops", "-n", NS, "-o", "name").stdout.split()
    assert "modeldeployment.mlgitops.io/fraud-detector" in listed  # the category

    # The serving pod gets credentials by Secret reference only, and listens on the pod's
    # address (the server's own default is loopback).
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    for name in ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        assert "value" not in env[name]
        assert env[name]["valueFrom"]["secretKeyRef"]["name"] == "mlgitops-mlflow"
    assert container["args"][container["args"].index("--host") + 1] == "0.0.0.0"

    # The rollout completes: the watch of the Deployment notices it at once (the resync is
    # 600 s away): Ready, serving rolled out, Reconciling cleared.
    assert complete_rollouts(cluster) == ["fraud-detector-serving"]
    md = wait_for("Ready", lambda: ready(cluster, "fraud-detector"), timeout=10)
    assert md["status"]["serving"]["rolledOut"] is True
    assert md["status"]["serving"]["readyReplicas"] == 2
    assert (md["status"]["serving"]["champion"], md["status"]["serving"]["challenger"]) == (
        "2",
        "3",
    )
    assert md["status"]["serving"]["challengerTraffic"] == 10
    assert condition(md, "Reconciling") is None

    # Idempotent: a pass over an unchanged object writes nothing, and the operator's own
    # writes wake no pass.
    assert_quiet(cluster, seconds=4)

    # Drift is corrected within seconds, through the watch of the children: a child deleted by
    # hand comes back; one edited by hand (a schedule, a scale) is put back.
    cluster.kubectl("delete", "deployment", "fraud-detector-serving", "-n", NS)
    wait_for(
        "serving Deployment restored",
        lambda: get(cluster, "deployment", "fraud-detector-serving"),
        timeout=5,
    )
    cluster.kubectl("delete", "service", "fraud-detector-serving", "-n", NS)
    wait_for(
        "Service restored", lambda: get(cluster, "service", "fraud-detector-serving"), timeout=5
    )
    merge_patch(cluster, "cronjob", "fraud-detector-batch", '{"spec": {"schedule": "* * * * *"}}')
    wait_for(
        "CronJob schedule restored",
        lambda: (
            dig(get(cluster, "cronjob", "fraud-detector-batch"), "spec", "schedule") == "0 11 * * *"
        ),
        timeout=5,
    )
    merge_patch(cluster, "deployment", "fraud-detector-serving", '{"spec": {"replicas": 5}}')
    wait_for(
        "scale restored",
        lambda: dig(get(cluster, "deployment", "fraud-detector-serving"), "spec", "replicas") == 2,
        timeout=5,
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
    # Compared by what the operator writes (a real server's controllers write status too).
    assert (after["metadata"]["generation"], after["spec"]) == (
        before["metadata"]["generation"],
        before["spec"],
    )
    assert registry.aliases(FRAUD) == {"champion": "3"}

    # Deleting the ModelDeployment: gone at once (nothing holds it), its children collected by
    # owner reference, the aliases left alone.
    cluster.kubectl("delete", "modeldeployment", "fraud-detector", "-n", NS, "--wait=false")
    wait_for("gone", lambda: get(cluster, "modeldeployment", "fraud-detector") is None, timeout=5)
    for kind, name in (
        ("deployment", "fraud-detector-serving"),
        ("service", "fraud-detector-serving"),
        ("cronjob", "fraud-detector-batch"),
        ("cronjob", "fraud-detector-monitor"),
    ):
        wait_for(f"{kind}/{name} collected", lambda: get(cluster, kind, name) is None, timeout=30)  # noqa: B023
    assert registry.aliases(FRAUD) == {"champion": "3"}

    code, text = operator.get("/metrics")
    assert code == 200
    assert "mlgitops_reconcile_duration_seconds_count" in text
    assert 'mlgitops_alias_changes_total{alias="champion"}' in text


def test_a_delete_never_waits_for_the_operator(
    cluster: Cluster, state_dir: Path, tmp_path: Path, registry: RegistryView
) -> None:
    """With the operator stopped, uninstalled or crashed, deleting a ModelDeployment (and its
    namespace) completes; a finalizer an earlier version put is released on first sight."""
    cluster.kubectl(
        "apply", "--validate=false", "-n", NS, "-f", "-", input=environment_yaml(state_dir)
    )
    cluster.kubectl(
        "apply", "--validate=false", "-n", NS, "-f", "-", input=deployment_yaml("fraud-detector")
    )
    old = deployment_yaml("churn-predictor")
    doc = yaml.safe_load(old)
    doc["metadata"]["finalizers"] = ["mlgitops.io/finalizer"]  # as versions up to 0.1 held
    cluster.kubectl("apply", "--validate=false", "-n", NS, "-f", "-", input=yaml.safe_dump(doc))
    op = start_operator(cluster, state_dir, tmp_path / "operator.log", "--namespace", NS)
    try:
        wait_for(
            "both applied",
            lambda: applied(cluster, "fraud-detector") and applied(cluster, "churn-predictor"),
            timeout=90,
        )
        wait_for(
            "old finalizer released",
            lambda: (
                not dig(
                    get(cluster, "modeldeployment", "churn-predictor"), "metadata", "finalizers"
                )
            ),
            timeout=10,
        )
    finally:
        op.stop()
    # The operator is gone now: deletes must not wait for it.
    cluster.kubectl("delete", "modeldeployment", "fraud-detector", "-n", NS, "--timeout=10s")
    assert get(cluster, "modeldeployment", "fraud-detector") is None
    wait_for(
        "children collected",
        lambda: get(cluster, "deployment", "fraud-detector-serving") is None,
        timeout=30,
    )
    assert registry.aliases(FRAUD) == {"champion": "2", "challenger": "3"}
    # And the namespace, with a ModelDeployment and its children still in it.
    cluster.kubectl("delete", "namespace", NS, "--wait=false")
    wait_for(
        "namespace gone",
        lambda: cluster.kubectl("get", "namespace", NS, check=False).returncode != 0,
        timeout=90,
    )


def test_invalid_document_is_stalled_with_the_field_named(
    cluster: Cluster, operator: OperatorProcess, registry: RegistryView
) -> None:
    """A document the CRD's schema refuses never gets in (the API server names the field); one
    it lets through but the operator finds invalid (a version that does not exist) stalls."""
    before = registry.snapshot()
    refused = cluster.kubectl(
        "apply",
        "--validate=false",  # the API server's own validation, not kubectl's
        "-n",
        NS,
        "-f",
        "-",
        input=deployment_yaml("fraud-detector", serving={"replicas": "two"}),
        check=False,
    )
    assert refused.returncode != 0
    assert "spec.serving.replicas" in refused.stderr
    assert get(cluster, "modeldeployment", "fraud-detector") is None

    cluster.kubectl(
        "apply",
        "--validate=false",
        "-n",
        NS,
        "-f",
        "-",
        # A YAML integer: the CRD takes int-or-string, as `mlgitops validate` does.
        input=deployment_yaml("fraud-detector", champion={"version": 9}),
    )
    stalled = wait_for(
        "Stalled",
        lambda: condition(get(cluster, "modeldeployment", "fraud-detector"), "Stalled"),
        timeout=90,
    )
    assert stalled["reason"] == "InvalidSpec"
    assert (
        "spec.champion.version: version 9 of prod.fraud.fraud_detector does not exist"
        in (stalled["message"])
    )
    assert get(cluster, "deployment", "fraud-detector-serving") is None
    assert registry.snapshot() == before


def sign(token: str, body: bytes) -> str:
    return "sha256=" + hmac.new(token.encode(), body, hashlib.sha256).hexdigest()


def test_git_sync_applies_prunes_restores_and_rejects_bad_revisions(
    cluster: Cluster, state_dir: Path, tmp_path: Path, registry: RegistryView, rollouts: None
) -> None:
    repo = ConfigRepo(tmp_path / "config")
    env_file = "environments/prod/environment.yaml"
    repo.write(env_file, environment_yaml(state_dir))
    repo.commit("Use the test registry")
    token = "webhook-secret"
    op = start_git_operator(cluster, state_dir, tmp_path / "operator.log", repo, token)
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

        # A revision with one bad file changes nothing in the cluster (compared by generation
        # and spec: a real server's controllers keep writing status and metadata).
        def specs() -> dict[str, Any]:
            return {
                n: (m["metadata"]["generation"], m["spec"])
                for n in ("fraud-detector", "churn-predictor")
                if (m := get(cluster, "modeldeployment", n)) is not None
            }

        before = specs()
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
        assert specs() == before
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
        wait_for(
            "its children collected by owner reference",
            lambda: get(cluster, "deployment", "churn-predictor-serving") is None,
            timeout=30,
        )
        assert get(cluster, "modeldeployment", "fraud-detector") is not None

        # Git unreachable: nothing changes, the Environment and /readyz say so, Git sync keeps
        # retrying (backoff), and once Git is back everything is Ready again.
        away = repo.path.with_name("config-away")
        repo.path.rename(away)
        webhook()
        wait_for("readyz 503", lambda: op.get("/readyz")[0] == 503, timeout=10)
        assert "Git sync failing" in op.get("/readyz")[1]
        env = wait_for(
            "Environment not Ready",
            lambda: (
                (e := get(cluster, "environment", "prod"))
                and dig(condition(e, "Ready"), "status") == "False"
                and e
            ),
            timeout=10,
        )
        assert (condition(env, "Ready") or {}).get("reason") == "GitUnavailable"
        assert condition(env, "Stalled") is None  # not the revision's fault: retried
        assert get(cluster, "modeldeployment", "fraud-detector") is not None
        away.rename(repo.path)
        wait_for("readyz 200", lambda: op.get("/readyz")[0] == 200, timeout=20)
        wait_for("Environment Ready", lambda: ready(cluster, "prod", "environment"), timeout=10)
    finally:
        op.stop()


def test_serving_replicas_get_the_inference_table_and_write_it_under_the_data_root(
    cluster: Cluster, operator: OperatorProcess, state_dir: Path, tmp_path: Path
) -> None:
    """The operator renders ``serving.inferenceTable`` into the replica's arguments and the
    Environment's data root into its environment; the replica it rendered, run here as the
    kubelet would run it, writes the table there."""
    import signal
    import subprocess
    import sys
    import urllib.request

    from deltalake import DeltaTable

    from tests.helpers import free_port

    lake = tmp_path / "lake"
    env = yaml.safe_load(environment_yaml(state_dir))
    env["spec"]["dataRoot"] = str(lake)
    cluster.kubectl("apply", "--validate=false", "-n", NS, "-f", "-", input=yaml.safe_dump(env))
    # The CRD refuses a name that leaves the lake, naming the field.
    refused = cluster.kubectl(
        "apply",
        "--validate=false",
        "-n",
        NS,
        "-f",
        "-",
        input=deployment_yaml(
            "fraud-detector", serving={"replicas": 1, "inferenceTable": "prod/../etc/t"}
        ),
        check=False,
    )
    assert refused.returncode != 0
    assert "spec.serving.inferenceTable" in refused.stderr
    cluster.kubectl(
        "apply",
        "--validate=false",
        "-n",
        NS,
        "-f",
        "-",
        input=deployment_yaml(
            "fraud-detector", serving={"replicas": 1, "inferenceTable": "prod/fraud/inference"}
        ),
    )

    def rendered() -> dict[str, Any] | None:
        deployment = get(cluster, "deployment", "fraud-detector-serving")
        if deployment is None:
            return None
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        values = {e["name"]: e.get("value") for e in container["env"]}
        return container if values.get("MLGITOPS_DATA_ROOT") == str(lake) else None

    container = wait_for("the serving Deployment", rendered, timeout=90)
    args = container["args"]
    assert args[args.index("--inference-log") + 1] == "prod/fraud/inference"

    # Run that replica: its arguments and literal environment, on loopback and a free port.
    port = free_port()
    args[args.index("--host") + 1] = "127.0.0.1"
    args[args.index("--port") + 1] = str(port)
    literal = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    log = tmp_path / "replica.log"
    with log.open("wb") as out:
        replica = subprocess.Popen(
            [str(Path(sys.executable).with_name("mlgitops")), *args],
            env={**os.environ, **literal},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:

        def ready() -> bool:
            assert replica.poll() is None, log.read_text()
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as r:
                return bool(r.status == 200)

        wait_for("the replica ready", ready, timeout=120)
        from examples.models import dataset

        rows = dataset("classifier")[0].head(3)
        body = json.dumps(
            {"dataframe_split": {"columns": list(rows.columns), "data": rows.values.tolist()}}
        ).encode()
        for i in range(4):
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/invocations",
                data=body,
                headers={"Content-Type": "application/json", "X-Request-Id": f"pod-{i}"},
            )
            with urllib.request.urlopen(request, timeout=30) as r:
                assert r.status == 200
    finally:
        if replica.poll() is None:
            os.killpg(replica.pid, signal.SIGTERM)  # it flushes the log on the way out
            replica.wait(timeout=60)
    table = DeltaTable(str(lake / "prod" / "fraud" / "inference")).to_pyarrow_table()
    assert table.num_rows == 12  # 4 requests of 3 rows
    assert sorted(set(table.column("request_id").to_pylist())) == [f"pod-{i}" for i in range(4)]
    assert set(table.column("model").to_pylist()) == {FRAUD}
    assert table.column("mean_radius").to_pylist() == rows["mean_radius"].tolist() * 4
