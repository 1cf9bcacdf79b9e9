"""A real kopf operator's full lifecycle against the emulator: finalizer, status, child, update,
delete. This is what kmock 0.8 alone could not run."""

from __future__ import annotations

import time
from typing import Any

import kopf
import kubernetes.client
import kubernetes.config
import pytest
from kopf.testing import KopfRunner

from tests.helpers import wait_for
from tests.k8s.fixtures import Cluster
from tests.k8s.test_emulator import LOOSE_SCHEMA

FINALIZER = "example.com/finalizer"
WIDGETS = ("example.com", "v1", "widgets")
WIDGETS_KEY = "example.com/v1/widgets"  # kmock's notation, for emulator.objects
POLL: dict[str, Any] = {"timeout": 10, "interval": 0.05}  # an in-memory API server is quick
WIDGET_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {
        "group": "example.com",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": LOOSE_SCHEMA},
            }
        ],
    },
}


def make_operator(seen: list[tuple[str, str]]) -> kopf.OperatorRegistry:
    """One reconcile for create, update and resume (level-based), and a delete handler."""
    registry = kopf.OperatorRegistry()

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.finalizer = FINALIZER
        settings.watching.server_timeout = 10
        settings.watching.client_timeout = 15
        settings.networking.request_timeout = 10

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_via_client(**kwargs)  # kopf's default; needs the fixture's kubeconfig

    @kopf.on.create(*WIDGETS, registry=registry)
    @kopf.on.update(*WIDGETS, registry=registry)
    @kopf.on.resume(*WIDGETS, registry=registry)
    def reconcile(
        spec: kopf.Spec,
        status: kopf.Status,
        name: str,
        namespace: str,
        body: kopf.Body,
        patch: kopf.Patch,
        **kw: Any,
    ) -> None:
        seen.append((kw["reason"], name))
        child = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"{name}-child"}}
        child["data"] = {"size": str(spec.get("size"))}
        kopf.adopt(child, owner=body)
        kubernetes.config.load_kube_config()
        kubernetes.client.CoreV1Api().patch_namespaced_config_map(
            f"{name}-child",
            namespace,
            child,
            field_manager="widget-operator",
            _content_type="application/apply-patch+yaml",
        )
        kopf.info(body, reason="Reconciled", message=f"size {spec.get('size')}")  # an Event
        # Write only what changes: a no-op patch gets no new resourceVersion and no watch event
        # (on a real server too), so kopf would wait consistency_timeout (5 s) for it in vain.
        if dict(status) != (wanted := {"phase": "Ready", "observedSize": spec.get("size")}):
            patch.status.update(wanted)

    @kopf.on.delete(*WIDGETS, registry=registry)
    def cleanup(name: str, **_: Any) -> None:
        seen.append(("delete", name))

    return registry


@pytest.mark.timeout(60)
def test_operator_lifecycle(k8s: Cluster) -> None:
    k8s.emulator.add_crd(WIDGET_CRD)
    seen: list[tuple[str, str]] = []
    registry = make_operator(seen)
    api = kubernetes.client.CustomObjectsApi(kubernetes.config.new_client_from_config())
    core = kubernetes.client.CoreV1Api(api.api_client)
    run = ["run", "--standalone", "--all-namespaces"]

    def widget() -> dict[str, Any]:
        return api.get_namespaced_custom_object(*WIDGETS[:2], "default", WIDGETS[2], "w1")

    with KopfRunner(run, registry=registry, timeout=20) as runner:
        manifest = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w1"}}
        api.create_namespaced_custom_object(
            *WIDGETS[:2], "default", WIDGETS[2], {**manifest, "spec": {"size": 1}}
        )
        created = wait_for(
            "status", lambda: (w := widget()).get("status", {}).get("phase") and w, **POLL
        )
        assert created["metadata"]["finalizers"] == [FINALIZER]
        assert created["status"]["observedSize"] == 1
        child = core.read_namespaced_config_map("w1-child", "default")
        assert child.data == {"size": "1"}
        [owner] = child.metadata.owner_references
        assert (owner.kind, owner.name, owner.uid) == ("Widget", "w1", created["metadata"]["uid"])
        wait_for("an event", lambda: core.list_namespaced_event("default").items, **POLL)

        patch = {"spec": {"size": 2}}
        api.patch_namespaced_custom_object(*WIDGETS[:2], "default", WIDGETS[2], "w1", patch)
        updated = wait_for(
            "update",
            lambda: (w := widget()).get("status", {}).get("observedSize") == 2 and w,
            **POLL,
        )
        assert updated["metadata"]["generation"] == 2
        assert core.read_namespaced_config_map("w1-child", "default").data == {"size": "2"}

        k8s.emulator.reset_calls()
        time.sleep(1)
        assert k8s.emulator.writes() == []  # settled: an idle operator writes nothing
    assert runner.exception is None

    with KopfRunner(run, registry=registry, timeout=20) as runner:
        wait_for("resume", lambda: seen[-1:] == [("resume", "w1")], **POLL)
        api.delete_namespaced_custom_object(*WIDGETS[:2], "default", WIDGETS[2], "w1")
        wait_for(
            "deletion", lambda: k8s.emulator.objects[WIDGETS_KEY, "default", "w1"].deleted, **POLL
        )
    assert runner.exception is None

    assert seen == [("create", "w1"), ("update", "w1"), ("resume", "w1"), ("delete", "w1")]
    # The garbage collector deletes the child its owner left behind, as on a real cluster.
    wait_for("the child collected", lambda: core.list_namespaced_config_map("default").items == [])
