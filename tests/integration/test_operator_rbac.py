"""The operator's Role, checked against the API requests the operator actually makes.

One scenario drives the real ``mlgitops operator`` process through everything it does against
the Kubernetes API emulator: Git sync with ``--repo`` (Environment and ModelDeployments applied,
one ModelDeployment pruned, Environment status written), ModelDeployment create, update and resync
passes with serving, batch and monitoring children, a child deleted by hand and restored,
children pruned when serving is switched off, Events, and the dashboard (``--ui``) read. The emulator records each request as
RBAC would authorize it (``Access``); the operator's own (told from the test's kubectl by the
bearer token of its kubeconfig) must each be allowed by manifests/base/role.yaml in the operator's
namespace, the ClusterRole of manifests/base/clusterrole.yaml, or the discovery every
authenticated user may read. And each grant of the Role and the ClusterRole must have been used,
or be listed in ``UNUSED`` with why: a grant nothing uses is a finding.

The emulator enforces nothing, so a missing grant shows here, not as a 403 in the operator.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import PROJECT, ConfigRepo, RegistryView, wait_for
from tests.integration.test_operator import (
    CHURN,
    FRAUD,
    NS,
    OPERATOR,
    cluster,
    environment_yaml,
    get,
    ready,
    rollouts,
    sign,
    start_git_operator,
)
from tests.k8s.emulator import Access
from tests.k8s.fixtures import Cluster

__all__ = ["cluster", "rollouts"]

Rule = dict[str, Any]


def role_rules(kind: str, path: Path) -> list[Rule]:
    [role] = [d for d in yaml.safe_load_all(path.read_text()) if d and d["kind"] == kind]
    return list(role["rules"])


ROLE = role_rules("Role", PROJECT / "manifests/base/role.yaml")
CLUSTER_ROLE = role_rules("ClusterRole", PROJECT / "manifests/base/clusterrole.yaml")
# Each set of rules with where its binding applies it: the RoleBinding in the operator's
# namespace, the ClusterRoleBinding everywhere (None).
BOUND: list[tuple[list[Rule], str | None]] = [(ROLE, NS), (CLUSTER_ROLE, None)]
# Kubernetes' default ClusterRole system:discovery, bound to every authenticated user: kopf and
# the kubernetes client find the API groups and resources here.
DISCOVERY = [
    "/api",
    "/api/*",
    "/apis",
    "/apis/*",
    "/openapi",
    "/openapi/*",
    "/version",
    "/version/",
]

# Grants (apiGroup, resource, verb) the scenario does not use, each with why it stays. A grant
# that gets used, or is no longer granted, must leave this list.
UNUSED: dict[tuple[str, str, str], str] = {
    **{
        ("batch", "jobs", verb): (
            "Training and validation Jobs: this scenario trains and validates nothing (on "
            "Kubernetes both need an MLflow tracking server their Jobs reach); "
            "tests/integration/test_operator_training.py runs a training Job and "
            "tests/integration/test_operator_promotion.py a validation Job, holding the "
            "operator's requests there to this Role, and the e2e tier runs both against the "
            "shipped Role."
        )
        for verb in ("get", "create", "patch")
    },
    ("batch", "cronjobs", "delete"): (
        "The operator prunes a CronJob when Git drops batchInference or monitoring; the emulator's "
        "server-side apply merges and never drops a field a manager stopped applying, so this "
        "scenario cannot express that Git change. The same prune path deletes the Deployment and "
        "the Service here (serving switched off), and a ModelDeployment's CronJobs go by garbage "
        "collection when it is deleted."
    ),
    ("apiextensions.k8s.io", "customresourcedefinitions", "get"): (
        "The ClusterRole's one grant, and nothing requests it: kopf reads CRDs only to scan for "
        "resources appearing at run time, which the operator disables, and the operator reads "
        "none itself. Kept until the ClusterRole and its binding leave the base, a change of "
        "their own (every overlay then has no cluster-scoped RBAC object)."
    ),
}


def allows(rule: Rule, access: Access) -> bool:
    """RBAC's rule match (k8s.io/kubernetes/pkg/apis/rbac/v1 RuleAllows), without wildcards."""
    names = rule.get("resourceNames") or []
    return (
        access.verb in rule["verbs"]
        and access.group in rule["apiGroups"]
        and access.resource in rule["resources"]
        and (not names or access.name in names)
    )


def allowed_by(rule: Rule, scope: str | None, access: Access) -> bool:
    return (scope is None or access.namespace == scope) and allows(rule, access)


def allowed(access: Access) -> bool:
    if not access.resource:
        return access.verb == "get" and any(
            access.path == url or (url.endswith("*") and access.path.startswith(url[:-1]))
            for url in DISCOVERY
        )
    return any(allowed_by(rule, scope, access) for rules, scope in BOUND for rule in rules)


def unused_grants(accesses: list[Access]) -> list[tuple[str, str, str]]:
    """Each (apiGroup, resource, verb) of the Role and the ClusterRole that no request needed."""
    return [
        grant
        for rules, scope in BOUND
        for rule in rules
        for grant in itertools.product(rule["apiGroups"], rule["resources"], rule["verbs"])
        if not any(
            (a.group, a.resource, a.verb) == grant and allowed_by(rule, scope, a) for a in accesses
        )
    ]


def run_scenario(
    cluster: Cluster, state_dir: Path, tmp_path: Path, registry: RegistryView
) -> list[Access]:
    """Everything the operator does, once; returns the operator's requests."""
    repo = ConfigRepo(tmp_path / "config")
    repo.write("environments/prod/environment.yaml", environment_yaml(state_dir))
    repo.commit("Use the test registry")
    token = "webhook-secret"
    op = start_git_operator(cluster, state_dir, tmp_path / "operator.log", repo, token, "--ui")

    def sync(message: str) -> None:
        repo.commit(message)
        payload = b'{"ref": "refs/heads/main"}'
        headers = {"X-Hub-Signature-256": sign(token, payload)}
        assert op.post("/webhook", payload, headers) == 202

    try:
        # Git sync creates the Environment and two ModelDeployments; the handlers create the
        # children, set the aliases (an Event each) and write status.
        wait_for(
            "both Ready",
            lambda: ready(cluster, "fraud-detector") and ready(cluster, "churn-predictor"),
            timeout=90,
        )
        assert registry.aliases(FRAUD) == {"champion": "2", "challenger": "3"}
        assert get(cluster, "cronjob", "fraud-detector-monitor") is not None
        # The dashboard lists the objects and reads one (loopback: no token).
        code, overview = op.get("/api/overview")
        assert code == 200, overview
        assert "churn-predictor" in overview
        assert op.get("/api/models/fraud-detector")[0] == 200
        # A child deleted by hand is restored (its watch event, or a resync every 2 s).
        cluster.kubectl("delete", "deployment", "fraud-detector-serving", "-n", NS)
        wait_for("serving restored", lambda: get(cluster, "deployment", "fraud-detector-serving"))
        # A Git change: a new champion (an update pass, an Event) and serving switched off (its
        # Deployment and Service pruned). Switched off, not removed: the emulator's server-side
        # apply merges and never drops a field the manager stopped applying.
        fraud = "environments/prod/fraud-detector.yaml"
        doc = yaml.safe_load(repo.read(fraud))
        doc["spec"]["champion"] = {"version": "1"}
        doc["spec"]["serving"]["enabled"] = False
        repo.write(fraud, yaml.safe_dump(doc))
        sync("Fraud champion 1, serving off")
        wait_for("champion 1", lambda: registry.aliases(FRAUD)["champion"] == "1")
        wait_for(
            "serving pruned", lambda: get(cluster, "service", "fraud-detector-serving") is None
        )
        assert get(cluster, "deployment", "fraud-detector-serving") is None
        # Git drops a ModelDeployment: pruned, its children removed, the finalizer released.
        repo.remove("environments/prod/churn-predictor.yaml")
        sync("Retire churn predictor")
        wait_for("churn pruned", lambda: get(cluster, "modeldeployment", "churn-predictor") is None)
        wait_for(
            "its children collected by owner reference",
            lambda: get(cluster, "deployment", "churn-predictor-serving") is None,
            timeout=30,
        )
        env = wait_for(
            "inventory written",
            lambda: (
                (e := get(cluster, "environment", "prod"))
                and e["status"].get("inventory") == ["fraud-detector"]
                and e
            ),
        )
        assert env["status"]["lastAppliedRevision"] == repo.head()
        assert registry.aliases(CHURN) == {"champion": "1"}
        time.sleep(3)  # more resync passes over the settled state
    finally:
        op.stop()
        print(f"--- operator log, last 100 lines of {op.log} ---\n{op.tail(100)}")
    # Only the test's kubectl sends no token (client-go sends none over http): no request of the
    # operator's escapes the check unattributed.
    anonymous = {a.agent.split("/")[0] for a in cluster.emulator.accesses if a.user is None}
    assert anonymous == {"kubectl"}, anonymous
    return [a for a in cluster.emulator.accesses if a.user == OPERATOR]


@pytest.fixture
def accesses(
    cluster: Cluster, state_dir: Path, tmp_path: Path, registry: RegistryView, rollouts: None
) -> list[Access]:
    return run_scenario(cluster, state_dir, tmp_path, registry)


def test_the_role_allows_every_request_and_grants_nothing_unused(accesses: list[Access]) -> None:
    made = sorted({(a.verb, a.group, a.resource or a.path, a.namespace) for a in accesses})
    denied = sorted(
        {(a.verb, a.group, a.resource or a.path, a.namespace) for a in accesses if not allowed(a)}
    )
    assert not denied, f"requests no rule allows: {denied}\n(all requests: {made})"
    unused = set(unused_grants(accesses))
    idle = sorted(unused - set(UNUSED))
    assert not idle, f"grants no request used (drop them, or say why in UNUSED): {idle}\n{made}"
    assert not set(UNUSED) - unused, "used, or no longer granted: take them out of UNUSED"
