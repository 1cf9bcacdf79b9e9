"""Training on Kubernetes: the operator runs a training key as a Job, once, and adopts its model.

The real operator against the API emulator and a real ``mlflow server``; the code repository is
a real Git repository (the example training project). The emulator has no Job controller and no
kubelet, so the test plays them: it runs the Job's container as the pod would (its command, in a
checkout of the commit, with the Job's environment) and then reports the Job's outcome in its
status, as the Job controller would.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import PROJECT, MlflowServer, RegistryView, free_port, git, wait_for
from tests.integration.test_operator import (
    NS,
    OPERATOR,
    cluster,
    condition,
    get,
    merge_patch,
    start_operator,
)
from tests.k8s.fixtures import Cluster

__all__ = ["cluster"]
FRAUD = "prod.fraud.fraud_detector"


@pytest.fixture
def server(state_dir: Path, tmp_path: Path) -> Iterator[MlflowServer]:
    """The test's registry (the seeded store) behind a real tracking server the Jobs reach."""
    mlflow = MlflowServer(state_dir / "mlflow.db", tmp_path / "artifacts", free_port())
    mlflow.start()
    yield mlflow
    mlflow.stop()


@pytest.fixture
def code(tmp_path: Path) -> Path:
    path = tmp_path / "fraud-code"
    shutil.copytree(PROJECT / "examples/fraud_project", path)
    git(path, "init", "-q", "-b", "release")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "The fraud detector's training code")
    return path


def apply_environment(cluster: Cluster, uri: str) -> None:
    doc = yaml.safe_load((PROJECT / "environments/prod/environment.yaml").read_text())
    doc["spec"]["registry"] = {"trackingUri": uri}
    doc["spec"]["namespace"] = NS
    cluster.kubectl("apply", "--validate=false", "-n", NS, "-f", "-", input=yaml.safe_dump(doc))


def apply_deployment(cluster: Cluster, code: Path, **training: Any) -> None:
    doc = yaml.safe_load((PROJECT / "environments/prod/fraud-detector.yaml").read_text())
    doc["spec"].pop("batchInference", None)
    doc["spec"].pop("monitoring", None)
    doc["spec"]["training"] = {
        "source": {"repo": str(code), "branch": "release", "paths": ["train.py", "params.json"]},
        "command": ["python", "train.py"],
        "image": "registry.example.com/fraud-train:{commit}",
        "retries": 0,
        **training,
    }
    cluster.kubectl("apply", "--validate=false", "-n", NS, "-f", "-", input=yaml.safe_dump(doc))


def jobs(cluster: Cluster) -> list[dict[str, Any]]:
    """The training Jobs (a version they leave is then validated by a Job of its own)."""
    selector = "app.kubernetes.io/component=training"
    listed = cluster.kubectl("get", "jobs", "-n", NS, "-l", selector, "-o", "json").stdout
    return list(json.loads(listed)["items"])


def play_pod(job: dict[str, Any], code: Path, workdir: Path) -> int:
    """Run the Job's container as its pod would: the command, in the commit, with its env."""
    [container] = job["spec"]["template"]["spec"]["containers"]
    commit = job["metadata"]["annotations"]["mlgitops.io/code-commit"]
    assert container["image"] == f"registry.example.com/fraud-train:{commit}"
    checkout = workdir / job["metadata"]["name"]
    git(code, "worktree", "add", "-q", "--detach", str(checkout), commit)
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    done = subprocess.run(
        container["command"],
        cwd=checkout,
        env={**os.environ, **env, "PATH": f"{Path(os.sys.executable).parent}:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    return done.returncode


def report(cluster: Cluster, job: dict[str, Any], *, succeeded: bool) -> None:
    """The Job's outcome, as the cluster would come to it. On the emulator (no controllers) the
    Job controller's verdict goes in the Job's status; on a real control plane (no kubelet) the
    Job's pod is marked as its kubelet would, and the real Job controller takes it from there."""
    name = job["metadata"]["name"]
    if getattr(cluster, "emulator", None) is not None:
        kind = "Complete" if succeeded else "Failed"
        status: dict[str, Any] = {
            "conditions": [{"type": kind, "status": "True", "reason": "Played"}],
            "succeeded" if succeeded else "failed": 1,
        }
        merge_patch(cluster, "job", name, json.dumps({"status": status}), status=True)
        return
    pods = wait_for(
        "the Job's pod",
        lambda: json.loads(
            cluster.kubectl("get", "pods", "-n", NS, "-l", f"job-name={name}", "-o", "json").stdout
        )["items"],
        timeout=60,
    )
    terminated = {
        "exitCode": 0 if succeeded else 3,
        "reason": "Completed" if succeeded else "Error",
        "startedAt": "2026-01-01T00:00:00Z",
        "finishedAt": "2026-01-01T00:00:01Z",
    }
    for pod in pods:
        status = {
            "phase": "Succeeded" if succeeded else "Failed",
            "containerStatuses": [
                {
                    "name": "main",
                    "image": pod["spec"]["containers"][0]["image"],
                    "imageID": "",
                    "ready": False,
                    "restartCount": 0,
                    "state": {"terminated": terminated},
                }
            ],
        }
        merge_patch(
            cluster, "pod", pod["metadata"]["name"], json.dumps({"status": status}), status=True
        )


def last_run(cluster: Cluster) -> dict[str, Any] | None:
    """status.training.lastRun of the fraud detector, once there is one."""
    md = get(cluster, "modeldeployment", "fraud-detector") or {}
    run = ((md.get("status") or {}).get("training") or {}).get("lastRun")
    return dict(run) if run else None


def failed_run(cluster: Cluster) -> dict[str, Any] | None:
    run = last_run(cluster)
    return run if run and run["state"] == "Failed" else None


def test_a_commit_trains_once_as_a_job_and_its_model_becomes_a_pending_version(
    cluster: Cluster,
    server: MlflowServer,
    state_dir: Path,
    tmp_path: Path,
    code: Path,
    registry: RegistryView,
) -> None:
    apply_environment(cluster, server.url)
    apply_deployment(cluster, code)
    op = start_operator(cluster, state_dir, tmp_path / "operator.log", "--namespace", NS)
    try:
        [job] = wait_for("a training Job", lambda: jobs(cluster), timeout=90)
        head = git(code, "rev-parse", "HEAD")
        assert job["metadata"]["ownerReferences"][0]["name"] == "fraud-detector"
        assert (job["spec"]["backoffLimit"], job["spec"]["activeDeadlineSeconds"]) == (0, 7200)
        assert job["spec"]["ttlSecondsAfterFinished"] > 0
        env = {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["MLGITOPS_CODE_COMMIT"]["value"] == head
        assert env["MLGITOPS_REGISTERED_MODEL"]["value"] == FRAUD
        assert env["MLFLOW_TRACKING_URI"]["value"] == server.url
        assert "value" not in env["MLFLOW_TRACKING_TOKEN"]  # by Secret reference only
        run_id = env["MLFLOW_RUN_ID"]["value"]
        md = wait_for(
            "Training condition",
            lambda: condition(get(cluster, "modeldeployment", "fraud-detector"), "Training"),
        )
        assert run_id in md["message"]

        # The operator restarts while the Job runs: the same run, the same Job, no second one.
        op.stop()
        op = start_operator(cluster, state_dir, tmp_path / "operator2.log", "--namespace", NS)
        wait_for("the operator back", op.healthy, timeout=60)

        assert play_pod(job, code, tmp_path / "pods") == 0
        report(cluster, job, succeeded=True)
        md = wait_for(
            "trained",
            lambda: (
                (m := get(cluster, "modeldeployment", "fraud-detector"))
                and ((m.get("status") or {}).get("training") or {}).get("lastRun")
                and m
            ),
            timeout=60,
        )
        last = md["status"]["training"]["lastRun"]
        assert (last["state"], last["version"], last["runId"]) == ("Succeeded", "4", run_id)
        assert md["status"]["training"]["lastTrainedCommit"] == head
        assert condition(md, "Training") is None
        tags = registry.tags(FRAUD, "4")
        assert tags["model_validation_status"] == "PENDING"
        assert (tags["mlgitops.trigger"], tags["mlgitops.code_commit"]) == ("commit", head)
        assert len(jobs(cluster)) == 1
        events = json.loads(cluster.kubectl("get", "events", "-n", NS, "-o", "json").stdout)
        reasons = {e["reason"] for e in events["items"]}
        assert {"TrainingStarted", "TrainingSucceeded"} <= reasons
    finally:
        op.stop()


def test_a_push_to_the_code_repository_trains_at_once(
    cluster: Cluster, server: MlflowServer, state_dir: Path, tmp_path: Path, code: Path
) -> None:
    """The code repository is fetched once per poll interval (10 minutes here), or at once when
    the webhook gets a signed push naming it."""
    import hashlib
    import hmac

    apply_environment(cluster, server.url)
    apply_deployment(cluster, code)
    token = "webhook-secret"
    op = start_operator(
        cluster,
        state_dir,
        tmp_path / "operator.log",
        "--namespace",
        NS,
        "--poll-interval",
        "600",
        token=token,
    )
    try:
        [first] = wait_for("a training Job", lambda: jobs(cluster), timeout=90)
        assert play_pod(first, code, tmp_path / "pods") == 0
        report(cluster, first, succeeded=True)
        wait_for("trained", lambda: last_run(cluster), timeout=60)
        (code / "params.json").write_text('{"C": 0.3}\n')
        git(code, "commit", "-q", "-am", "C=0.3")
        time.sleep(3)
        assert len(jobs(cluster)) == 1  # not fetched: the poll is 10 minutes away
        payload = json.dumps({"ref": "refs/heads/release", "repository": {"clone_url": str(code)}})
        body = payload.encode()
        signature = "sha256=" + hmac.new(token.encode(), body, hashlib.sha256).hexdigest()
        assert op.post("/webhook", body, {"X-Hub-Signature-256": signature}) == 202
        wait_for("a Job for the pushed commit", lambda: len(jobs(cluster)) == 2, timeout=20)
    finally:
        op.stop()


def test_a_failed_job_is_reported(
    cluster: Cluster, server: MlflowServer, state_dir: Path, tmp_path: Path, code: Path
) -> None:
    apply_environment(cluster, server.url)
    apply_deployment(cluster, code)
    op = start_operator(cluster, state_dir, tmp_path / "operator.log", "--namespace", NS)
    try:
        [job] = wait_for("a training Job", lambda: jobs(cluster), timeout=90)
        report(cluster, job, succeeded=False)
        last = wait_for("failed", lambda: failed_run(cluster), timeout=60)
        assert last["reason"].startswith("Job ")
        events = json.loads(cluster.kubectl("get", "events", "-n", NS, "-o", "json").stdout)
        assert "TrainingFailed" in {e["reason"] for e in events["items"]}
        assert len(jobs(cluster)) == 1  # retries: 0
    finally:
        op.stop()


def test_an_image_without_commit_blocks_training_with_the_field_named(
    cluster: Cluster, server: MlflowServer, state_dir: Path, tmp_path: Path, code: Path
) -> None:
    apply_environment(cluster, server.url)
    apply_deployment(cluster, code, image="registry.example.com/fraud-train:latest")
    op = start_operator(cluster, state_dir, tmp_path / "operator.log", "--namespace", NS)
    try:
        last = wait_for("failed", lambda: failed_run(cluster), timeout=60)
        assert "spec.training.image" in last["reason"]
        assert jobs(cluster) == []
    finally:
        op.stop()


_ = OPERATOR
