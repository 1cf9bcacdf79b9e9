"""The emulator against a real kube-apiserver: the same requests, the same outcomes.

Every test runs twice, through the same raw HTTP client: against the emulator (always) and against a
real cluster (only when ``MLGITOPS_CONFORMANCE_KUBECONFIG`` names a kubeconfig with admin rights;
skipped otherwise). Both runs assert the same expectations: status codes, reasons, the fields a
refusal names and the exact messages, as measured on kube-apiserver v1.36, and the objects' state
afterwards. A difference is a bug in the emulator.

To run the real half, with the local control plane of ``/work/shared/tools/kube-cluster``::

    cluster build MIRROR && cluster up && eval "$(cluster env)"
    MLGITOPS_CONFORMANCE_KUBECONFIG=$KUBECONFIG pytest tests/k8s/test_conformance.py

Each test works in a namespace of its own (``conformance-<random>``) and removes what it made,
finalizers included, so the cluster is left as it was. The CRDs it needs (the project's, and a
``Gadget`` of its own) are created when missing and stay: deleting a CRD is slow and other
tests may share it.

The real cluster runs kube-controller-manager, so its garbage collector and namespace controller
take their time (seconds); the tests wait for outcomes, never for a fixed time.
"""

from __future__ import annotations

import copy
import json
import os
import secrets
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes.client
import kubernetes.config
import pytest
import yaml

from tests.k8s.fixtures import start_emulator

KUBECONFIG_ENV = "MLGITOPS_CONFORMANCE_KUBECONFIG"
CRD_DIR = Path(__file__).resolve().parents[2] / "manifests" / "crds"
JSON, MERGE_PATCH = "application/json", "application/merge-patch+json"
JSON_PATCH, APPLY = "application/json-patch+json", "application/apply-patch+yaml"
GROUP = "mlgitops.io/v1alpha1"
GADGETS_GROUP = "conformance.mlgitops.io"
LOOSE = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
GADGET_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"gadgets.{GADGETS_GROUP}"},
    "spec": {
        "group": GADGETS_GROUP,
        "scope": "Namespaced",
        "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {"spec": LOOSE, "status": LOOSE},
                    }
                },
            }
        ],
    },
}
HOLD = "conformance.mlgitops.io/hold"  # a finalizer no controller removes: the test does


@dataclass
class Response:
    status: int
    body: Any
    warnings: list[str]

    @property
    def reason(self) -> str | None:
        return self.body.get("reason") if isinstance(self.body, dict) else None

    @property
    def message(self) -> str | None:
        return self.body.get("message") if isinstance(self.body, dict) else None

    def causes(self) -> list[tuple[str, str]]:
        """(field, reason) of each cause, sorted: the API server lists them in no fixed order."""
        causes = (self.body.get("details") or {}).get("causes") or []
        return sorted((c.get("field", ""), c.get("reason", "")) for c in causes)


class Target:
    """One API server (the emulator or a real one) through raw HTTP, as kubeconfig allows."""

    def __init__(self, name: str, kubeconfig: Path) -> None:
        self.name = name
        self.client = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))
        self.host = self.client.configuration.host.rstrip("/")
        self.cleanups: list[Callable[[], None]] = []

    def __call__(
        self, method: str, path: str, body: Any = None, *, ctype: str = JSON, **params: str
    ) -> Response:
        headers = {"Accept": "application/json"}
        for setting in self.client.configuration.auth_settings().values():  # a bearer token
            headers[setting["key"]] = setting["value"]
        data = None
        if body is not None:
            headers["Content-Type"] = ctype
            data = body if isinstance(body, str) else json.dumps(body)
        url = self.host + path
        if params:
            url += "?" + urllib.parse.urlencode(params)
        answer = self.client.rest_client.pool_manager.request(
            method, url, body=data, headers=headers, timeout=30
        )
        text = answer.data.decode()
        # Warning: 299 - "text" (RFC 7234; the text quoted and escaped as Go's %q does)
        warnings = [json.loads(w.split(" ", 2)[2]) for w in answer.headers.getlist("Warning")]
        return Response(answer.status, json.loads(text) if text else None, warnings)

    def ok(self, method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
        done = self(method, path, body, **kwargs)
        assert done.status in (200, 201), (done.status, done.body)
        return done.body

    def exists(self, path: str) -> bool:
        done = self("GET", path)
        assert done.status in (200, 404), done.body
        return done.status == 200

    def ensure_crd(self, crd: dict[str, Any]) -> None:
        path = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd['metadata']['name']}"
        if not self.exists(path):
            self.ok("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)

        def established() -> bool:
            conditions = (self.ok("GET", path).get("status") or {}).get("conditions") or []
            return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

        wait_for(f"{crd['metadata']['name']} established", established)

    def namespace(self) -> str:
        """A fresh namespace, deleted (with every finalizer this module adds) after the test."""
        name = f"conformance-{secrets.token_hex(4)}"
        self.ok("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
        self.cleanups.append(lambda: self.drop_namespace(name))
        return name

    def drop_namespace(self, name: str) -> None:
        for plural in ("gadgets", "modeldeployments"):
            group = GADGETS_GROUP + "/v1" if plural == "gadgets" else GROUP
            listed = self("GET", f"/apis/{group}/namespaces/{name}/{plural}")
            for item in (listed.body or {}).get("items", []) if listed.status == 200 else []:
                if HOLD in (item["metadata"].get("finalizers") or []):
                    path = f"/apis/{group}/namespaces/{name}/{plural}/{item['metadata']['name']}"
                    finalizers = [f for f in item["metadata"]["finalizers"] if f != HOLD]
                    patch = {"metadata": {"finalizers": finalizers or None}}
                    self("PATCH", path, patch, ctype=MERGE_PATCH)
        self("DELETE", f"/api/v1/namespaces/{name}")


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def project_crds() -> list[dict[str, Any]]:
    return [yaml.safe_load(p.read_text()) for p in sorted(CRD_DIR.glob("mlgitops.io_*.yaml"))]


@pytest.fixture(scope="module", params=["emulator", "real"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Target]:
    """The emulator, or the real cluster ``$MLGITOPS_CONFORMANCE_KUBECONFIG`` names, with CRDs."""
    if request.param == "real":
        if not (kubeconfig := os.environ.get(KUBECONFIG_ENV)):
            pytest.skip(f"no real cluster: set {KUBECONFIG_ENV} to a kubeconfig")
        target = Target("real", Path(kubeconfig))
        for crd in [*project_crds(), GADGET_CRD]:
            target.ensure_crd(crd)
        yield target
        return
    directory = tmp_path_factory.mktemp("conformance")
    with start_emulator(directory=directory, set_env=False) as k8s:
        target = Target("emulator", k8s.kubeconfig)
        for crd in [*project_crds(), GADGET_CRD]:
            target.ensure_crd(crd)
        yield target


@pytest.fixture
def api(server: Target) -> Iterator[Target]:
    """The server, cleaning up after each test."""
    try:
        yield server
    finally:
        while server.cleanups:
            server.cleanups.pop()()


def gadget(name: str, **meta: Any) -> dict[str, Any]:
    body = {"apiVersion": f"{GADGETS_GROUP}/v1", "kind": "Gadget", "spec": {"size": 1}}
    return body | {"metadata": {"name": name, **meta}}


def deployment(name: str, **spec: Any) -> dict[str, Any]:
    body = {"apiVersion": GROUP, "kind": "ModelDeployment", "metadata": {"name": name}}
    return body | {"spec": {"model": "fraud.detector", **spec}}


def owned_by(*owners: dict[str, Any]) -> list[dict[str, Any]]:
    keys = ("apiVersion", "kind")
    return [
        {k: o[k] for k in keys} | {"name": o["metadata"]["name"], "uid": o["metadata"]["uid"]}
        for o in owners
    ]


def paths(ns: str) -> tuple[str, str, str]:
    """The gadgets, ModelDeployments and ConfigMaps of a namespace."""
    return (
        f"/apis/{GADGETS_GROUP}/v1/namespaces/{ns}/gadgets",
        f"/apis/{GROUP}/namespaces/{ns}/modeldeployments",
        f"/api/v1/namespaces/{ns}/configmaps",
    )


def test_a_status_write_bumps_the_resource_version_not_the_generation(api: Target) -> None:
    gadgets, _, _ = paths(api.namespace())
    created = api.ok("POST", gadgets, gadget("g"))
    status = api.ok("PATCH", f"{gadgets}/g/status", {"status": {"ready": True}}, ctype=MERGE_PATCH)
    labelled = {"metadata": {"labels": {"a": "b"}}}
    labels = api.ok("PATCH", f"{gadgets}/g", labelled, ctype=MERGE_PATCH)
    resized = api.ok("PATCH", f"{gadgets}/g", {"spec": {"size": 2}}, ctype=MERGE_PATCH)
    again = api.ok("PATCH", f"{gadgets}/g/status", {"status": {"ready": True}}, ctype=MERGE_PATCH)
    versions = [int(o["metadata"]["resourceVersion"]) for o in (created, status, labels, resized)]
    assert versions == sorted(set(versions))  # every change a new resourceVersion
    assert again["metadata"]["resourceVersion"] == resized["metadata"]["resourceVersion"]
    generations = [o["metadata"]["generation"] for o in (created, status, labels, resized)]
    assert generations == [1, 1, 1, 2]  # spec changes only
    assert status["status"] == {"ready": True}
    # The main endpoint ignores a status; the status endpoint ignores a spec.
    api.ok("PATCH", f"{gadgets}/g", {"status": {"ready": False}}, ctype=MERGE_PATCH)
    api.ok("PATCH", f"{gadgets}/g/status", {"spec": {"size": 9}}, ctype=MERGE_PATCH)
    final = api.ok("GET", f"{gadgets}/g")
    assert (final["spec"], final["status"]) == ({"size": 2}, {"ready": True})


def test_a_finalizer_holds_deletion(api: Target) -> None:
    gadgets, _, configmaps = paths(api.namespace())
    created = api.ok("POST", gadgets, gadget("held", finalizers=[HOLD]))
    marked = api.ok("DELETE", f"{gadgets}/held")
    assert marked["metadata"]["deletionTimestamp"]
    assert marked["metadata"]["deletionGracePeriodSeconds"] == 0
    assert marked["metadata"]["generation"] == created["metadata"]["generation"] + 1
    assert api.ok("DELETE", f"{gadgets}/held")["metadata"] == marked["metadata"]  # no change
    assert api.ok("GET", f"{gadgets}/held")["metadata"]["finalizers"] == [HOLD]
    api.ok("PATCH", f"{gadgets}/held", {"metadata": {"finalizers": None}}, ctype=MERGE_PATCH)
    assert api("GET", f"{gadgets}/held").status == 404
    # Deleted at once: a Status, for custom resources as for ConfigMaps.
    api.ok("POST", configmaps, {"metadata": {"name": "c"}})
    done = api.ok("DELETE", f"{configmaps}/c")
    assert (done["kind"], done["status"], done["details"]["kind"]) == (
        "Status",
        "Success",
        "configmaps",
    )


def test_a_terminating_namespace_refuses_content_until_it_is_gone(api: Target) -> None:
    ns = api.namespace()
    gadgets, deployments, configmaps = paths(ns)
    api.ok("POST", gadgets, gadget("held", finalizers=[HOLD]))
    api.ok("POST", configmaps, {"metadata": {"name": "plain"}})
    terminating = api.ok("DELETE", f"/api/v1/namespaces/{ns}")
    assert terminating["status"]["phase"] == "Terminating"
    assert terminating["metadata"]["deletionTimestamp"]
    assert terminating["spec"] == {"finalizers": ["kubernetes"]}

    refused = api("POST", configmaps, {"metadata": {"name": "late"}})
    assert (refused.status, refused.reason) == (403, "Forbidden")
    assert refused.message == (
        f'configmaps "late" is forbidden: unable to create new content in namespace {ns}'
        " because it is being terminated"
    )
    assert refused.body["details"]["causes"] == [
        {
            "reason": "NamespaceTerminating",
            "message": f"namespace {ns} is being terminated",
            "field": "metadata.namespace",
        }
    ]
    refused = api("POST", deployments, deployment("late"))
    assert (refused.status, refused.body["details"]["kind"]) == (403, "modeldeployments")

    wait_for("the plain content deleted", lambda: api("GET", f"{configmaps}/plain").status == 404)
    wait_for(  # the content with a finalizer: marked, kept
        "the held content marked",
        lambda: api.ok("GET", f"{gadgets}/held")["metadata"].get("deletionTimestamp"),
    )

    def conditions() -> dict[str, tuple[str, str, str]]:
        found = api.ok("GET", f"/api/v1/namespaces/{ns}")["status"].get("conditions") or []
        by_type = {c["type"]: (c["status"], c["reason"], c["message"]) for c in found}
        return by_type if "NamespaceFinalizersRemaining" in by_type else {}

    assert wait_for("the namespace's conditions", conditions) == {
        "NamespaceDeletionDiscoveryFailure": (
            "False",
            "ResourcesDiscovered",
            "All resources successfully discovered",
        ),
        "NamespaceDeletionGroupVersionParsingFailure": (
            "False",
            "ParsedGroupVersions",
            "All legacy kube types successfully parsed",
        ),
        "NamespaceDeletionContentFailure": (
            "False",
            "ContentDeleted",
            "All content successfully deleted, may be waiting on finalization",
        ),
        "NamespaceContentRemaining": (
            "True",
            "SomeResourcesRemain",
            f"Some resources are remaining: gadgets.{GADGETS_GROUP} has 1 resource instances",
        ),
        "NamespaceFinalizersRemaining": (
            "True",
            "SomeFinalizersRemain",
            f"Some content in the namespace has finalizers remaining: {HOLD} in 1 resource"
            " instances",
        ),
    }
    assert api.exists(f"/api/v1/namespaces/{ns}")
    api.ok("PATCH", f"{gadgets}/held", {"metadata": {"finalizers": None}}, ctype=MERGE_PATCH)
    wait_for("the namespace gone", lambda: not api.exists(f"/api/v1/namespaces/{ns}"), 120)


def test_namespaces_that_cannot_take_content_or_go(api: Target) -> None:
    missing = api("POST", "/api/v1/namespaces/conformance-nowhere/configmaps", {"metadata": {}})
    assert (missing.status, missing.reason) == (404, "NotFound")
    assert missing.message == 'namespaces "conformance-nowhere" not found'
    immortal = api("DELETE", "/api/v1/namespaces/default")
    assert (immortal.status, immortal.message) == (
        403,
        'namespaces "default" is forbidden: this namespace may not be deleted',
    )
    ns = api.namespace()
    created = api.ok("GET", f"/api/v1/namespaces/{ns}")
    assert created["metadata"]["labels"] == {"kubernetes.io/metadata.name": ns}
    assert (created["spec"], created["status"]) == (
        {"finalizers": ["kubernetes"]},
        {"phase": "Active"},
    )


def test_dependents_go_with_their_owner(api: Target) -> None:
    gadgets, _, configmaps = paths(api.namespace())
    owner = api.ok("POST", gadgets, gadget("owner"))
    other = api.ok("POST", configmaps, {"metadata": {"name": "other"}})
    child = api.ok(
        "POST", configmaps, {"metadata": {"name": "child", "ownerReferences": owned_by(owner)}}
    )
    grandchild = {"name": "grandchild", "ownerReferences": owned_by(child)}
    api.ok("POST", configmaps, {"metadata": grandchild})
    shared = {"name": "shared", "ownerReferences": owned_by(owner, other)}
    api.ok("POST", configmaps, {"metadata": shared})
    time.sleep(1)
    assert api.exists(f"{configmaps}/grandchild")  # nothing dangles yet

    gone = api.ok("DELETE", f"{gadgets}/owner")
    assert gone["kind"] == "Status"
    for name in ("child", "grandchild"):
        wait_for(f"{name} collected", lambda n=name: not api.exists(f"{configmaps}/{n}"))

    def one_owner_left() -> bool:
        refs = api.ok("GET", f"{configmaps}/shared")["metadata"].get("ownerReferences")
        return refs == owned_by(other)

    wait_for("the dangling reference removed", one_owner_left)


def test_a_dependent_of_a_missing_owner_is_collected(api: Target) -> None:
    gadgets, _, configmaps = paths(api.namespace())
    owner = api.ok("POST", gadgets, gadget("owner"))
    ghost = copy.deepcopy(owner)
    ghost["metadata"]["uid"] = (
        "00000000-0000-4000-8000-000000000000"  # the name lives, not this uid
    )
    api.ok(
        "POST", configmaps, {"metadata": {"name": "created", "ownerReferences": owned_by(ghost)}}
    )
    api.ok("POST", configmaps, {"metadata": {"name": "updated"}})
    patch = {"metadata": {"ownerReferences": owned_by(ghost)}}
    api.ok("PATCH", f"{configmaps}/updated", patch, ctype=MERGE_PATCH)
    for name in ("created", "updated"):
        wait_for(f"{name} collected", lambda n=name: not api.exists(f"{configmaps}/{n}"))
    assert api.exists(f"{gadgets}/owner")


def test_orphan_propagation_keeps_the_dependents(api: Target) -> None:
    gadgets, _, configmaps = paths(api.namespace())
    owner = api.ok("POST", gadgets, gadget("owner"))
    api.ok("POST", configmaps, {"metadata": {"name": "kept", "ownerReferences": owned_by(owner)}})
    marked = api.ok("DELETE", f"{gadgets}/owner", {"propagationPolicy": "Orphan"})
    assert marked["metadata"]["finalizers"] == ["orphan"]
    wait_for("the owner gone", lambda: not api.exists(f"{gadgets}/owner"))
    time.sleep(1)
    assert "ownerReferences" not in api.ok("GET", f"{configmaps}/kept")["metadata"]


SCHEMA_REFUSALS = [
    (
        {"serving": {"replicas": "two"}},
        "spec.serving.replicas",
        "FieldValueTypeInvalid",
        'Invalid value: "string": spec.serving.replicas in body must be of type integer: "string"',
    ),
    (
        {"promotion": {"policy": "sometimes"}},
        "spec.promotion.policy",
        "FieldValueNotSupported",
        'Unsupported value: "sometimes": supported values: "auto", "manual", "disabled"',
    ),
    (
        {"model": "nodot"},
        "spec.model",
        "FieldValueInvalid",
        'Invalid value: "nodot": spec.model in body should match \'^[A-Za-z0-9_\\-]+\\.'
        "[A-Za-z0-9_\\-]+(\\.[A-Za-z0-9_\\-]+)?$'",
    ),
    (
        {"serving": {"replicas": 101}},
        "spec.serving.replicas",
        "FieldValueInvalid",
        "Invalid value: 101: spec.serving.replicas in body should be less than or equal to 100",
    ),
    (
        {"serving": {"traffic": {"challenger": -5}}},
        "spec.serving.traffic.challenger",
        "FieldValueInvalid",
        "Invalid value: -5: spec.serving.traffic.challenger in body should be greater than or"
        " equal to 0",
    ),
    ({"champion": {}}, "spec.champion.version", "FieldValueRequired", "Required value"),
    (
        {"champion": {"version": "v2"}},
        "spec.champion.version",
        "FieldValueInvalid",
        "Invalid value: \"v2\": spec.champion.version in body should match '^[1-9][0-9]*$'",
    ),
    (
        {"champion": {"version": 0}},
        "spec.champion.version",
        "FieldValueInvalid",
        "Invalid value: 0: spec.champion.version in body should be greater than or equal to 1",
    ),
    (
        {"champion": {"version": True}},
        "spec.champion.version",
        "FieldValueTypeInvalid",
        'Invalid value: "boolean": spec.champion.version in body must be of type integer,string:'
        ' "boolean"',
    ),
    (
        {
            "monitoring": {
                "schedule": "@daily",
                "baseline": "prod/f/base",
                "drift": {"threshold": 0},
            }
        },
        "spec.monitoring.drift.threshold",
        "FieldValueInvalid",
        "Invalid value: 0: spec.monitoring.drift.threshold in body should be greater than 0",
    ),
    (
        {"training": {"source": {"repo": "r"}, "command": []}},
        "spec.training.command",
        "FieldValueInvalid",
        "Invalid value: 0: spec.training.command in body should have at least 1 items",
    ),
]


@pytest.mark.parametrize(("spec", "field", "reason", "error"), SCHEMA_REFUSALS)
def test_the_crd_schema_refuses_with_the_field_named(
    api: Target, spec: dict[str, Any], field: str, reason: str, error: str
) -> None:
    _, deployments, _ = paths(api.namespace())
    refused = api("POST", deployments, deployment("d", **spec))
    assert (refused.status, refused.reason) == (422, "Invalid")
    assert refused.message == f'ModelDeployment.mlgitops.io "d" is invalid: {field}: {error}'
    assert refused.body["details"]["causes"] == [
        {"reason": reason, "message": error, "field": field}
    ]
    # The same through a merge patch of a valid object, and through server-side apply.
    api.ok("POST", deployments, deployment("d"))
    patched = api("PATCH", f"{deployments}/d", {"spec": spec}, ctype=MERGE_PATCH)
    assert (patched.status, patched.causes()) == (422, [(field, reason)])


@pytest.mark.parametrize(
    ("spec", "status", "message"),
    [
        ({"serving": {"replicas": 500}}, 422, "spec.serving.replicas: Invalid value: 500"),
        ({"champion": {"version": True}}, 422, 'spec.champion.version: Invalid value: "boolean"'),
        ({"champion": {"version": {}}}, 422, 'spec.champion.version: Invalid value: "object"'),
        # structured-merge-diff checks an apply configuration's types first: a 500.
        (
            {"serving": {"replicas": "two"}},
            500,
            ".spec.serving.replicas: expected numeric (int or float), got string",
        ),
        ({"serving": {"enabled": "y"}}, 500, ".spec.serving.enabled: expected boolean, got &{y}"),
        ({"training": {"command": "x"}}, 500, ".spec.training.command: expected list, got &{x}"),
        ({"serving": "x"}, 500, ".spec.serving: expected map, got &{x}"),
        ({"model": 5}, 500, ".spec.model: expected string, got &value.valueUnstructured{Value:5}"),
        ({"bogus": 1}, 500, ".spec.bogus: field not declared in schema"),
    ],
)
def test_server_side_apply_refuses(
    api: Target, spec: dict[str, Any], status: int, message: str
) -> None:
    _, deployments, _ = paths(ns := api.namespace())
    api.ok("POST", deployments, deployment("d"))
    named = deployment("named", serving="x")
    named["metadata"]["namespace"] = ns  # the message names the object as the body does
    applied = api("PATCH", f"{deployments}/named", named, ctype=APPLY, fieldManager="c")
    assert applied.message == (
        f"failed to create typed patch object ({ns}/named; {GROUP}, Kind=ModelDeployment):"
        " .spec.serving: expected map, got &{x}"
    )
    for name in ("d", "new"):  # an update, then a create
        applied = api(
            "PATCH",
            f"{deployments}/{name}",
            deployment(name, **spec),
            ctype=APPLY,
            fieldManager="c",
            force="true",
        )
        assert applied.status == status, applied.body
        if status == 500:
            prefix = (
                f"failed to create typed patch object (/{name}; {GROUP}, Kind=ModelDeployment): "
            )
            assert (applied.reason, applied.message) == (None, prefix + message)
        else:
            assert message in applied.message
    assert not api.exists(f"{deployments}/new")


def test_the_status_is_validated_alone(api: Target) -> None:
    _, deployments, _ = paths(api.namespace())
    api.ok("POST", deployments, deployment("d"))
    condition = {
        "type": "Ready",
        "status": "Maybe",
        "reason": "bad reason",
        "lastTransitionTime": "t",
    }
    refused = api(
        "PATCH",
        f"{deployments}/d/status",
        {"status": {"conditions": [condition]}},
        ctype=MERGE_PATCH,
    )
    assert (refused.status, refused.causes()) == (
        422,
        [
            ("status.conditions[0].reason", "FieldValueInvalid"),
            ("status.conditions[0].status", "FieldValueNotSupported"),
        ],
    )
    reason = next(c for c in refused.body["details"]["causes"] if c["field"].endswith("reason"))
    assert reason["message"] == (
        'Invalid value: "bad reason": conditions[0].reason in body should match'
        " '^[A-Z][A-Za-z0-9]*$'"
    )
    ready = {**condition, "status": "True", "reason": "A"}
    twice = {"status": {"conditions": [ready, {**ready, "reason": "B"}]}}
    refused = api("PATCH", f"{deployments}/d/status", twice, ctype=MERGE_PATCH)
    assert refused.message == (
        'ModelDeployment.mlgitops.io "d" is invalid: status.conditions[1]: Duplicate value:'
        ' {"type":"Ready"}'
    )


def test_unknown_fields_are_pruned_unless_strict(api: Target) -> None:
    _, deployments, _ = paths(api.namespace())
    warned = api("POST", deployments, deployment("warned", bogus=1) | {"extra": 1})
    assert warned.status == 201
    assert warned.warnings == ['unknown field "extra"', 'unknown field "spec.bogus"']
    assert warned.body["spec"] == {"model": "fraud.detector"}
    assert "extra" not in warned.body
    ignored = api("POST", deployments, deployment("ignored", bogus=1), fieldValidation="Ignore")
    assert (ignored.status, ignored.warnings, ignored.body["spec"]) == (
        201,
        [],
        {"model": "fraud.detector"},
    )

    strict = api("POST", deployments, deployment("strict", bogus=1), fieldValidation="Strict")
    assert (strict.status, strict.reason) == (400, "BadRequest")
    assert strict.message == (
        'ModelDeployment in version "v1alpha1" cannot be handled as a ModelDeployment: strict'
        ' decoding error: unknown field "spec.bogus"'
    )
    replaced = api(
        "PUT", f"{deployments}/warned", deployment("warned", bogus=1), fieldValidation="Strict"
    )
    assert (replaced.status, replaced.message) == (400, strict.message)
    patched = api(
        "PATCH",
        f"{deployments}/warned",
        {"spec": {"bogus": 1}},
        ctype=MERGE_PATCH,
        fieldValidation="Strict",
    )
    assert (patched.status, patched.causes()) == (422, [("patch", "FieldValueInvalid")])
    assert patched.message.startswith(' "" is invalid: patch: Invalid value: "{')
    assert patched.message.endswith('": strict decoding error: unknown field "spec.bogus"')
    for validation in ("Ignore", "Warn", "Strict"):  # server-side apply refuses whatever the mode
        applied = api(
            "PATCH",
            f"{deployments}/warned",
            deployment("warned", bogus=1),
            ctype=APPLY,
            fieldManager="c",
            fieldValidation=validation,
        )
        assert (applied.status, applied.message) == (
            500,
            "failed to create typed patch object (/warned; mlgitops.io/v1alpha1,"
            " Kind=ModelDeployment): .spec.bogus: field not declared in schema",
        )
    assert api.ok("GET", f"{deployments}/warned")["spec"] == {"model": "fraud.detector"}


def test_defaults_are_filled_in(api: Target) -> None:
    _, deployments, _ = paths(api.namespace())
    spec = {
        "serving": {"replicas": None, "traffic": {}},
        "champion": None,
        "monitoring": {"schedule": "@daily", "baseline": "prod/f/base", "drift": {}},
        "promotion": {},
    }
    created = api.ok("POST", deployments, deployment("d", **spec))
    assert created["spec"] == {
        "model": "fraud.detector",
        "serving": {"replicas": 1, "enabled": True, "traffic": {"challenger": 0}},
        "champion": None,
        "monitoring": {
            "schedule": "@daily",
            "baseline": "prod/f/base",
            "lookback": 3,
            "drift": {"method": "psi", "threshold": 0.2},
        },
        "promotion": {"policy": "manual"},
    }


def test_a_field_its_manager_stops_applying_is_removed_unless_shared(api: Target) -> None:
    _, _, configmaps = paths(api.namespace())

    def apply(manager: str, **data: str) -> None:
        body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": data}
        api.ok("PATCH", f"{configmaps}/c", body, ctype=APPLY, fieldManager=manager)

    apply("one", a="1", b="2", s="3")
    apply("two", x="9", s="3")  # "s" is now shared by both managers
    apply("one", a="1")  # "one" stops applying b and s
    assert api.ok("GET", f"{configmaps}/c")["data"] == {"a": "1", "s": "3", "x": "9"}
    apply("two", x="9")  # the last owner of s lets it go
    assert api.ok("GET", f"{configmaps}/c")["data"] == {"a": "1", "x": "9"}
