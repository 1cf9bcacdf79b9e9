"""The e2e tier: the operator scenarios of tests/integration, on a real cluster from $KUBECONFIG.

Skipped when KUBECONFIG is not set. The README says how to get a cluster with kind. The tests
install the CRDs, use their own namespace (``$MLGITOPS_TEST_NAMESPACE``, default mlgitops-e2e,
deleted afterwards) and run the operator as a local process against the cluster, so no image has
to be built; serving pods will not start without the image, which the scenarios do not need.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.k8s.fixtures import run_kubectl

os.environ.setdefault("MLGITOPS_TEST_NAMESPACE", "mlgitops-e2e")
KUBECONFIG = os.environ.get("KUBECONFIG")
PROJECT = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if KUBECONFIG:
        return
    skip = pytest.mark.skip(reason="e2e: set KUBECONFIG to a real cluster (see README: kind)")
    for item in items:
        if item.nodeid.startswith("tests/e2e/"):
            item.add_marker(skip)


@dataclass(frozen=True)
class RealCluster:
    kubeconfig: Path

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return run_kubectl(self.kubeconfig, *args, input=input, check=check, timeout=timeout)


@pytest.fixture
def cluster() -> Iterator[RealCluster]:
    assert KUBECONFIG
    real = RealCluster(Path(KUBECONFIG))
    ns = os.environ["MLGITOPS_TEST_NAMESPACE"]
    real.kubectl("apply", "-f", str(PROJECT / "manifests/crds"))
    real.kubectl(
        "wait",
        "--for=condition=Established",
        "crd/modeldeployments.mlgitops.io",
        "crd/environments.mlgitops.io",
        "--timeout=60s",
    )
    real.kubectl("create", "namespace", ns)
    try:
        yield real
    finally:
        real.kubectl(
            "delete",
            "modeldeployments,environments",
            "--all",
            "-n",
            ns,
            "--wait=false",
            check=False,
        )
        real.kubectl("delete", "namespace", ns, "--wait=false", check=False)
