"""The e2e tier: the operator scenarios of tests/integration, on a real cluster from $KUBECONFIG.

Skipped unless ``$MLGITOPS_E2E_KUBECONFIG`` names a kubeconfig (``make e2e`` passes
``$KUBECONFIG``): an explicit opt-in, so a ``KUBECONFIG`` exported for other work never sends the
test suite to that cluster. Any conformant control plane works; the README says how to
build and start one from Kubernetes' source on one machine (etcd, kube-apiserver and
kube-controller-manager on loopback: no scheduler or kubelet, so pods never run and the
scenarios that need a rollout mark the serving Pods Running and Ready themselves).

Each test gets the namespace the prod overlay deploys to (``ml-prod``, or
``$MLGITOPS_TEST_NAMESPACE``), with the overlay's ServiceAccount, Role and bindings applied as
shipped. The operator runs as a local process with that ServiceAccount's token (``kubectl create
token``), so the shipped RBAC is exactly what it gets; the test itself acts as admin. Between
tests the namespace is deleted and its deletion waited for: nothing of ours may hold it.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.k8s.fixtures import run_kubectl

os.environ.setdefault("MLGITOPS_TEST_NAMESPACE", "ml-prod")
KUBECONFIG = os.environ.get("MLGITOPS_E2E_KUBECONFIG")
PROJECT = Path(__file__).resolve().parents[2]
NS = os.environ["MLGITOPS_TEST_NAMESPACE"]
RBAC_KINDS = {"ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if KUBECONFIG:
        return
    skip = pytest.mark.skip(reason="e2e: run `make e2e` with KUBECONFIG set (see README)")
    for item in items:
        if item.nodeid.startswith("tests/e2e/"):
            item.add_marker(skip)


@dataclass(frozen=True)
class RealCluster:
    kubeconfig: Path
    directory: Path

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return run_kubectl(self.kubeconfig, *args, input=input, check=check, timeout=timeout)

    def kubeconfig_for(self, user: str) -> Path:
        """A kubeconfig acting as ``user``, a ServiceAccount (``system:serviceaccount:NS:NAME``)
        whose token the API server issues now: its requests get exactly its RBAC."""
        _, _, namespace, name = user.split(":")
        token = self.kubectl("create", "token", name, "-n", namespace, "--duration=2h")
        config = yaml.safe_load(self.kubeconfig.read_text())
        context = next(c for c in config["contexts"] if c["name"] == config["current-context"])
        config["users"] = [{"name": name, "user": {"token": token.stdout.strip()}}]
        context["context"]["user"] = name
        config["contexts"] = [context]
        path = self.directory / f"kubeconfig-{namespace}-{name}"
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path


def _gone(cluster: RealCluster, what: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cluster.kubectl("get", what, check=False).returncode != 0:
            return True
        time.sleep(1)
    return False


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[RealCluster]:
    assert KUBECONFIG
    real = RealCluster(Path(KUBECONFIG), tmp_path)
    # The CRDs folder is a kustomization (it lists the generated files): -k, not -f.
    real.kubectl("apply", "-k", str(PROJECT / "manifests/crds"))
    real.kubectl(
        "wait",
        "--for=condition=Established",
        "crd/modeldeployments.mlgitops.io",
        "crd/environments.mlgitops.io",
        "--timeout=60s",
    )
    # Never a namespace someone else has: wait for ours from a previous test to go, else stop.
    assert _gone(real, f"namespace/{NS}", 120), f"namespace {NS} exists: not ours to use"
    real.kubectl("create", "namespace", NS)
    overlay = real.kubectl("kustomize", str(PROJECT / "manifests/overlays/prod")).stdout
    rbac = [d for d in yaml.safe_load_all(overlay) if d and d["kind"] in RBAC_KINDS]
    for doc in rbac:
        if "namespace" in doc["metadata"]:
            doc["metadata"]["namespace"] = NS
        for subject in doc.get("subjects", []):
            subject["namespace"] = NS
    real.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(rbac))
    try:
        yield real
    finally:
        real.kubectl("delete", "namespace", NS, "--wait=false", check=False)
        # Nothing of ours holds a namespace: its deletion completes with no operator running.
        assert _gone(real, f"namespace/{NS}", 120), f"namespace {NS} stuck deleting"
