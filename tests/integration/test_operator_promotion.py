"""Validation and promotion on Kubernetes: a validation Job per new version, then the pins written
back to the config repository as commits, which the operator's Git sync applies.

The real operator against the API emulator (or, from tests/e2e, a real control plane), a real
``mlflow server`` and real Git: the config repository is a bare "remote" the operator syncs from
and pushes to. A training run's result is a version tagged as one (``mlgitops.run_id``, PENDING):
the seeded version 3, whose holdout table the test writes, so no training code runs here
(tests/integration/test_operator_training.py runs training Jobs). The emulator has no Job
controller and no kubelet, so the test plays them: it runs the validation Job's container
(``mlgitops validate-model`` with the Job's arguments and environment) as its pod would, then
reports the Job's outcome (``report``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from deltalake import write_deltalake

from tests.helpers import (
    PROJECT,
    ConfigRepo,
    MlflowServer,
    OperatorProcess,
    RegistryView,
    git,
    wait_for,
)
from tests.integration.test_operator import NS, OPERATOR, cluster, dig, get
from tests.integration.test_operator_rbac import allowed
from tests.integration.test_operator_training import report, server
from tests.k8s.fixtures import Cluster
from tests.receiver import Receiver

__all__ = ["cluster", "server"]
FRAUD = "prod.fraud.fraud_detector"
FRAUD_FILE = "environments/prod/fraud-detector.yaml"
DEFAULT_IMAGE = "ghcr.io/mlgitops/mlgitops:0.1.0"  # the operator's --image default

FRAUD_DOC = """\
# Credit-card fraud: validated and promoted by the controller.
apiVersion: mlgitops.io/v1alpha1
kind: ModelDeployment
metadata:
  name: fraud-detector
spec:
  model: fraud.fraud_detector   # prod.fraud.fraud_detector
  promotion:
    policy: auto                # the controller commits its promotions
  validation:
    data: {uri: prod/fraud/holdout, target: label}
    thresholds:
      - {metric: roc_auc, min: 0.8}
  serving:
    enabled: false
"""


def environment_doc(server: MlflowServer, tables: Path, receiver: Receiver) -> str:
    doc = yaml.safe_load((PROJECT / "environments/prod/environment.yaml").read_text())
    doc["spec"]["registry"] = {"trackingUri": server.url}
    doc["spec"]["namespace"] = NS
    doc["spec"]["dataRoot"] = str(tables)
    doc["spec"]["notifications"] = [
        {
            "name": "audit",
            "url": f"{receiver.url}/hook",
            "tokenEnv": "MLGITOPS_NOTIFY_AUDIT_TOKEN",
            "events": ["ChallengerProposed", "PromotionCommitted", "RollbackDetected"],
        }
    ]
    return yaml.safe_dump(doc)


def trained(server: MlflowServer, tables: Path, version: str = "3") -> None:
    """Seeded ``version`` as a training run leaves one (PENDING, its run named), and the holdout
    table of the data it was trained on (scikit-learn's breast cancer set)."""
    from mlflow import MlflowClient

    from examples.models import dataset

    client = MlflowClient(tracking_uri=server.url, registry_uri=server.url)
    run_id = client.get_model_version(FRAUD, version).run_id
    client.set_model_version_tag(FRAUD, version, "mlgitops.run_id", run_id)
    client.set_model_version_tag(FRAUD, version, "model_validation_status", "PENDING")
    features, label = dataset("classifier")
    write_deltalake(str(tables / "prod/fraud/holdout"), features.assign(label=label))


def validation_jobs(cluster: Cluster) -> list[dict[str, Any]]:
    selector = "app.kubernetes.io/component=validation"
    listed = cluster.kubectl("get", "jobs", "-n", NS, "-l", selector, "-o", "json").stdout
    return list(json.loads(listed)["items"])


def play_validation(job: dict[str, Any], workdir: Path) -> subprocess.CompletedProcess[str]:
    """Run the Job's container as its pod would: ``mlgitops <args>`` with its literal env (the
    image's entry point is ``mlgitops``)."""
    [container] = job["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    workdir.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "controller", *container["args"]],
        cwd=workdir,
        env={**os.environ, **env, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=600,
    )


def trailers(remote: Path) -> list[str]:
    out = git(remote, "log", "main", "--format=%(trailers:key=Mlgitops-Promotion,valueonly)")
    return [line for line in out.splitlines() if line.strip()]


def promotion(cluster: Cluster) -> dict[str, Any]:
    return dig(get(cluster, "modeldeployment", "fraud-detector"), "status", "promotion") or {}


def pin(cluster: Cluster, alias: str) -> str | None:
    return dig(get(cluster, "modeldeployment", "fraud-detector"), "spec", alias, "version")


def pruned_by_apply(cluster: Cluster, alias: str) -> None:
    """The pin a commit removed is gone from the object: server-side apply prunes a field its
    manager (the Git sync) stopped applying."""
    wait_for(f"no {alias} pin", lambda: pin(cluster, alias) is None, timeout=30)


def reasons(cluster: Cluster) -> list[str]:
    events = json.loads(cluster.kubectl("get", "events", "-n", NS, "-o", "json").stdout)["items"]
    return [e["reason"] for e in events if e["involvedObject"]["name"] == "fraud-detector"]


def test_a_trained_version_is_validated_by_a_job_then_proposed_and_promoted_through_git(
    cluster: Cluster,
    server: MlflowServer,
    state_dir: Path,
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    tables = tmp_path / "tables"
    work = ConfigRepo(tmp_path / "config")
    work.remove("environments/prod/churn-predictor.yaml")
    work.write("environments/prod/environment.yaml", environment_doc(server, tables, receiver))
    work.write(FRAUD_FILE, FRAUD_DOC)
    work.commit("The fraud detector, validated and promoted by mlgitops")
    remote = tmp_path / "config.git"
    git(tmp_path, "clone", "-q", "--bare", str(work.path), str(remote))
    trained(server, tables)
    token = "webhook-secret"
    op = OperatorProcess(
        cluster.kubeconfig_for(OPERATOR),
        state_dir,
        tmp_path / "operator.log",
        *("--env", "prod", "--repo", str(remote)),
        *("--poll-interval", "600", "--resync-interval", "3"),
        env={"MLGITOPS_WEBHOOK_TOKEN": token, "MLGITOPS_NOTIFY_AUDIT_TOKEN": "k3y"},
    )
    registry = RegistryView(server.url)
    try:
        # The trained version gets one validation Job: the operator's image running
        # validate-model, owned, credentials by Secret reference, a deadline, never retried.
        [job] = wait_for("a validation Job", lambda: validation_jobs(cluster), timeout=90)
        md = get(cluster, "modeldeployment", "fraud-detector")
        assert md is not None
        assert job["metadata"]["name"].startswith("fraud-detector-validate-v3-")
        assert job["metadata"]["ownerReferences"][0]["uid"] == md["metadata"]["uid"]
        spec = job["spec"]
        assert (spec["backoffLimit"], spec["activeDeadlineSeconds"]) == (0, 3600)
        assert spec["ttlSecondsAfterFinished"] > 0
        [container] = spec["template"]["spec"]["containers"]
        assert container["image"] == DEFAULT_IMAGE
        args = container["args"]
        assert args[:4] == ["validate-model", "fraud-detector", "--version", "3"]
        assert args[args.index("--model") + 1] == FRAUD
        assert "--tracking-uri" not in args
        env = {e["name"]: e for e in container["env"]}
        assert env["MLFLOW_TRACKING_URI"]["value"] == server.url
        assert env["MLGITOPS_DATA_ROOT"]["value"] == str(tables)
        assert "value" not in env["MLFLOW_TRACKING_TOKEN"]
        assert (
            env["MLFLOW_TRACKING_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "mlgitops-mlflow"
        )
        wait_for("validating 3", lambda: promotion(cluster).get("validating") == "3")

        # Its pod: the real validate-model, then the Job controller's verdict.
        ran = play_validation(job, tmp_path / "pod")
        assert ran.returncode == 0, ran.stdout + ran.stderr
        assert "PASSED" in ran.stdout
        report(cluster, job, succeeded=True)

        # PASSED -> the challenger commit, synced at once (the poll is 10 minutes away) -> WON
        # (no champion) -> the champion commit -> synced -> the champion alias.
        wait_for(
            "the champion commit",
            lambda: (
                trailers(remote)
                == ["prod/fraud-detector/champion/v3", "prod/fraud-detector/challenger/v3"]
            ),
            timeout=90,
            on_timeout=lambda: op.tail(60),
        )
        wait_for("champion 3 synced", lambda: pin(cluster, "champion") == "3", timeout=30)
        pruned_by_apply(cluster, "challenger")
        wait_for(
            "champion 3",
            lambda: registry.aliases(FRAUD) == {"champion": "3"},
            timeout=60,
            on_timeout=lambda: json.dumps(get(cluster, "modeldeployment", "fraud-detector")),
        )
        head = git(remote, "rev-parse", "main")
        assert head in promotion(cluster).get("lastProposal", "")
        assert promotion(cluster)["lastProposal"].startswith("champion v3: ")
        assert "problem" not in promotion(cluster)
        text = git(remote, "show", "main:" + FRAUD_FILE)
        assert 'champion:\n    version: "3"' in text
        assert "challenger" not in yaml.safe_load(text)["spec"]
        assert {"ValidationStarted", "ValidationPassed", "ChallengerProposed"} <= set(
            reasons(cluster)
        )
        wait_for("PromotionCommitted", lambda: "PromotionCommitted" in reasons(cluster))
        # The verdict was recorded once: the Job is marked, and no second Job was made.
        [job] = validation_jobs(cluster)
        assert job["metadata"]["annotations"]["mlgitops.io/validation-recorded"] == "true"
        assert reasons(cluster).count("ValidationPassed") == 1

        # git revert of the promotion commit: the champion pin goes, v3 is tagged rolled back
        # and never proposed again.
        clone = tmp_path / "clone"
        git(tmp_path, "clone", "-q", str(remote), str(clone))
        git(clone, "revert", "--no-edit", head)
        git(clone, "push", "-q", "origin", "main")
        reverted = git(remote, "rev-parse", "main")
        payload = b'{"ref": "refs/heads/main"}'
        assert op.post("/webhook", payload, {"X-Hub-Signature-256": _sign(token, payload)}) == 202
        wait_for(
            "rolled back",
            lambda: registry.tags(FRAUD, "3").get("mlgitops.rolled_back") == reverted,
            timeout=60,
        )
        wait_for("challenger 3 synced", lambda: pin(cluster, "challenger") == "3", timeout=30)
        pruned_by_apply(cluster, "champion")
        wait_for("no champion", lambda: registry.aliases(FRAUD) == {"challenger": "3"})
        wait_for(
            "waiting",
            lambda: promotion(cluster).get("waiting") == "challenger 3 was rolled back",
        )
        wait_for("RollbackDetected", lambda: "RollbackDetected" in reasons(cluster))
        time.sleep(4)  # resync passes: nothing is written again
        assert git(remote, "rev-parse", "main") == reverted
        receiver.wait_for("/hook", 3, timeout=30)
    finally:
        op.stop()
        print(f"--- operator log, last 150 lines of {op.log} ---\n{op.tail(150)}")
    assert receiver.events("/hook") == [
        "ChallengerProposed",
        "PromotionCommitted",
        "RollbackDetected",
    ]
    assert len(validation_jobs(cluster)) == 1
    emulator = getattr(cluster, "emulator", None)
    if emulator is not None:  # the Role allows every request the operator made
        denied = {
            (a.verb, a.group, a.resource or a.path)
            for a in emulator.accesses
            if a.user == OPERATOR and not allowed(a)
        }
        assert not denied, denied


def test_without_a_config_repository_versions_are_validated_and_a_failed_job_is_reported(
    cluster: Cluster, server: MlflowServer, state_dir: Path, tmp_path: Path
) -> None:
    """kubectl-applied objects: the Job runs, its outcome is recorded once (a Job that ended
    without a verdict is not started again), and a write-back has nowhere to go."""
    tables = tmp_path / "tables"
    trained(server, tables)
    env = yaml.safe_load((PROJECT / "environments/prod/environment.yaml").read_text())
    env["spec"].update(registry={"trackingUri": server.url}, namespace=NS, dataRoot=str(tables))
    cluster.kubectl("apply", "--validate=false", "-n", NS, "-f", "-", input=yaml.safe_dump(env))
    cluster.kubectl("apply", "--validate=false", "-n", NS, "-f", "-", input=FRAUD_DOC)
    op = OperatorProcess(
        cluster.kubeconfig_for(OPERATOR),
        state_dir,
        tmp_path / "operator.log",
        *("--env", "prod", "--namespace", NS, "--resync-interval", "2"),
        env={},
    )
    try:
        [job] = wait_for("a validation Job", lambda: validation_jobs(cluster), timeout=90)
        report(cluster, job, succeeded=False)
        problem = wait_for("a problem", lambda: promotion(cluster).get("problem"), timeout=60)
        assert problem.startswith("validation of version 3 could not run: Job ")
        wait_for(
            "tagged",
            lambda: "mlgitops.validation.error" in RegistryView(server.url).tags(FRAUD, "3"),
        )
        time.sleep(5)  # resync passes
        assert len(validation_jobs(cluster)) == 1
        assert reasons(cluster).count("ValidationFailed") == 1
        assert reasons(cluster).count("ValidationStarted") == 1

        # Validated by hand (validate-model, run again by a person): PASSED. The challenger
        # commit has nowhere to go; status says why, one Event says so, not one per pass.
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=server.url, registry_uri=server.url)
        for key, value in (
            ("mlgitops.validation.run_id", "by-hand"),
            ("model_validation_status", "PASSED"),
        ):
            client.set_model_version_tag(FRAUD, "3", key, value)
        problem = wait_for(
            "the write-back refused",
            lambda: (p := promotion(cluster).get("problem")) and "write-back" in p and p,
            timeout=30,
        )
        assert "no config repository to write to" in problem
        time.sleep(5)  # resync passes
        assert reasons(cluster).count("WriteBackFailed") == 1
        assert len(validation_jobs(cluster)) == 1
    finally:
        op.stop()
        print(f"--- operator log, last 100 lines of {op.log} ---\n{op.tail(100)}")


def _sign(token: str, body: bytes) -> str:
    import hashlib
    import hmac

    return "sha256=" + hmac.new(token.encode(), body, hashlib.sha256).hexdigest()
