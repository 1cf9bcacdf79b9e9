"""The emulator's own API semantics, through real HTTP (aiohttp) and the real kubectl binary."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import kubernetes
import pytest
import yaml

from tests.k8s.emulator import fields_match, jsonpath, labels_match
from tests.k8s.fixtures import KUBECTL, Cluster, run_kubectl

# A schema that keeps whatever spec and status hold; with none, the API server prunes them.
LOOSE = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
LOOSE_SCHEMA = {"type": "object", "properties": {"spec": LOOSE, "status": LOOSE}}
CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {
        "group": "example.com",
        "scope": "Namespaced",
        "names": {
            "plural": "widgets",
            "singular": "widget",
            "kind": "Widget",
            "shortNames": ["wd"],
        },
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": LOOSE_SCHEMA},
                "additionalPrinterColumns": [
                    {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
                    {
                        "name": "Ready",
                        "type": "string",
                        "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
                    },
                ],
            }
        ],
    },
}
CRD_DIR = Path(__file__).resolve().parents[2] / "manifests" / "crds"
WIDGETS = "/apis/example.com/v1/namespaces/default/widgets"
CONFIGMAPS = "/api/v1/namespaces/default/configmaps"
JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
APPLY = "application/apply-patch+yaml"
FM = {"fieldManager": "test"}


class Api:
    """A thin HTTP client: (status, decoded body) for every call."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    async def __call__(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        ctype: str = "application/json",
        **params: str,
    ) -> tuple[int, Any]:
        data = body if body is None or isinstance(body, str) else json.dumps(body)
        headers = {"Content-Type": ctype} if body is not None else {}
        async with self.session.request(
            method, path, data=data, headers=headers, params=params
        ) as response:
            return response.status, await response.json()

    async def ok(self, method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
        status, result = await self(method, path, body, **kwargs)
        assert status in (200, 201), result
        return result

    async def watch(self, path: str, **params: str) -> list[tuple[str, Any]]:
        """Every event of one watch request, until the server ends it (timeoutSeconds)."""
        async with self.session.get(path, params={"watch": "true", **params}) as response:
            assert response.status == 200
            lines = [json.loads(line) async for line in response.content if line.strip()]
        return [(e["type"], e["object"]) for e in lines]


@pytest.fixture
async def api(k8s: Cluster) -> AsyncIterator[Api]:
    k8s.emulator.add_crd(CRD)
    async with aiohttp.ClientSession(base_url=k8s.url) as session:
        yield Api(session)


def widget(name: str, **spec: Any) -> dict[str, Any]:
    meta = {"name": name}
    return {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": meta, "spec": spec}


def rv(obj: dict[str, Any]) -> int:
    return int(obj["metadata"]["resourceVersion"])


async def test_create_stamps_metadata(api: Api) -> None:
    first = await api.ok("POST", CONFIGMAPS, {"metadata": {"name": "a"}, "data": {"k": "v"}})
    second = await api.ok("POST", WIDGETS, widget("w", size=1))
    assert (first["apiVersion"], first["kind"]) == ("v1", "ConfigMap")
    assert first["metadata"]["namespace"] == "default"
    assert "generation" not in first["metadata"]  # a ConfigMap has none; a custom resource has
    assert second["metadata"]["generation"] == 1
    assert first["metadata"]["uid"] != second["metadata"]["uid"]
    assert first["metadata"]["creationTimestamp"].endswith("Z")
    assert rv(second) > rv(first)
    assert await api.ok("GET", f"{WIDGETS}/w") == second


async def test_generate_name_as_the_api_server_does(api: Api) -> None:
    made = [
        await api.ok("POST", CONFIGMAPS, {"metadata": {"generateName": "ev-"}}) for _ in range(20)
    ]
    names = {m["metadata"]["name"] for m in made}
    assert len(names) == 20
    assert all(re.fullmatch(r"ev-[bcdfghjklmnpqrstvwxz2456789]{5}", n) for n in names)


async def test_generation_counts_only_changes_outside_metadata_and_status(api: Api) -> None:
    created = await api.ok("POST", WIDGETS, widget("w", size=1))
    labelled = await api.ok(
        "PATCH", f"{WIDGETS}/w", {"metadata": {"labels": {"a": "b"}}}, ctype=MERGE_PATCH
    )
    status = await api.ok(
        "PATCH", f"{WIDGETS}/w/status", {"status": {"ok": True}}, ctype=MERGE_PATCH
    )
    resized = await api.ok("PATCH", f"{WIDGETS}/w", {"spec": {"size": 2}}, ctype=MERGE_PATCH)
    generations = [o["metadata"]["generation"] for o in (created, labelled, status, resized)]
    assert generations == [1, 1, 1, 2]
    assert rv(created) < rv(labelled) < rv(status) < rv(resized)


async def test_missing_and_duplicate_objects_get_status_bodies(api: Api) -> None:
    status, missing = await api("GET", f"{WIDGETS}/nope")
    assert status == 404
    assert (missing["kind"], missing["reason"], missing["code"]) == ("Status", "NotFound", 404)
    await api.ok("POST", WIDGETS, widget("w"))
    status, duplicate = await api("POST", WIDGETS, widget("w"))
    assert status == 409
    assert (duplicate["kind"], duplicate["reason"]) == ("Status", "AlreadyExists")


async def test_stale_resource_version_is_a_conflict(api: Api) -> None:
    stale = await api.ok("POST", WIDGETS, widget("w", size=1))
    fresh = await api.ok("PATCH", f"{WIDGETS}/w", {"spec": {"size": 2}}, ctype=MERGE_PATCH)
    for method, ctype in (("PUT", "application/json"), ("PATCH", MERGE_PATCH)):
        status, body = await api(method, f"{WIDGETS}/w", stale, ctype=ctype)
        assert status == 409, method
        assert (body["kind"], body["reason"]) == ("Status", "Conflict")
    replaced = await api.ok("PUT", f"{WIDGETS}/w", {**fresh, "spec": {"size": 3}})
    assert replaced["spec"] == {"size": 3}


async def test_failed_json_patch_test_is_unprocessable(api: Api) -> None:
    created = await api.ok("POST", WIDGETS, widget("w", size=1))
    version = created["metadata"]["resourceVersion"]
    stale = [{"op": "test", "path": "/metadata/resourceVersion", "value": "0"}]
    status, body = await api("PATCH", f"{WIDGETS}/w", stale, ctype=JSON_PATCH)
    assert (status, body["reason"]) == (422, "Invalid")
    ops = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": version},
        {"op": "add", "path": "/metadata/finalizers", "value": ["x/y"]},
    ]
    patched = await api.ok("PATCH", f"{WIDGETS}/w", ops, ctype=JSON_PATCH)
    assert patched["metadata"]["finalizers"] == ["x/y"]


async def test_hold_keeps_a_request_in_flight_until_released(k8s: Cluster, api: Api) -> None:
    await api.ok("POST", WIDGETS, widget("w", size=1))
    gate = k8s.emulator.hold("GET", f"{WIDGETS}/w")
    try:
        held = asyncio.create_task(api.ok("GET", f"{WIDGETS}/w"))
        for _ in range(250):
            if gate.waiting:
                break
            await asyncio.sleep(0.02)
        assert gate.waiting == 1
        # Other requests pass meanwhile, writes included.
        assert len((await api.ok("GET", WIDGETS))["items"]) == 1
        await api.ok("PATCH", f"{WIDGETS}/w", {"spec": {"size": 2}}, ctype=MERGE_PATCH)
        await asyncio.sleep(0.1)
        assert not held.done()
    finally:
        gate.release()
    assert (await held)["spec"] == {"size": 2}  # answered with the state at release


async def test_status_subresource_is_separate(api: Api) -> None:
    created = await api.ok("POST", WIDGETS, {**widget("w", size=1), "status": {"phase": "fake"}})
    assert "status" not in created
    main = await api.ok(
        "PATCH", f"{WIDGETS}/w", {"spec": {"size": 2}, "status": {"phase": "x"}}, ctype=MERGE_PATCH
    )
    assert "status" not in main
    status = await api.ok(
        "PATCH",
        f"{WIDGETS}/w/status",
        {"spec": {"size": 9}, "status": {"phase": "ok"}},
        ctype=MERGE_PATCH,
    )
    assert (status["spec"], status["status"]) == ({"size": 2}, {"phase": "ok"})
    assert status["metadata"]["generation"] == main["metadata"]["generation"] == 2
    replaced = await api.ok("PUT", f"{WIDGETS}/w/status", {**status, "status": {"phase": "put"}})
    assert replaced["status"] == {"phase": "put"}
    status_code, _ = await api("PATCH", f"{CONFIGMAPS}/x/status", {}, ctype=MERGE_PATCH)
    assert status_code == 404  # configmaps have no status subresource


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("app=web", ["a", "b"]),
        ("app==web,tier=front", ["a"]),
        ("app!=web", ["c", "d"]),
        ("tier in (front, back)", ["a", "b", "c"]),
        ("tier notin (front)", ["b", "c", "d"]),
        ("tier", ["a", "b", "c"]),
        ("!tier", ["d"]),
        ("", ["a", "b", "c", "d"]),
    ],
)
def test_label_selectors(selector: str, expected: list[str]) -> None:
    labels = {
        "a": {"app": "web", "tier": "front"},
        "b": {"app": "web", "tier": "back"},
        "c": {"app": "db", "tier": "back"},
        "d": {},
    }
    assert [name for name, ls in labels.items() if labels_match(selector, ls)] == expected


def test_field_selectors_and_printer_jsonpath() -> None:
    obj = {
        "metadata": {"name": "w", "namespace": "ns"},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }
    assert fields_match("metadata.name=w,metadata.namespace!=other", obj)
    assert not fields_match("metadata.namespace==other", obj)
    assert jsonpath(obj, '.status.conditions[?(@.type=="Ready")].status') == ["True"]
    assert jsonpath(obj, ".status.conditions[0].type") == ["Ready"]
    assert jsonpath(obj, ".spec.missing") == []


async def test_list_filters_and_describes_itself(api: Api) -> None:
    for name, labels in (("a", {"app": "web"}), ("b", {"app": "db"})):
        await api.ok("POST", CONFIGMAPS, {"metadata": {"name": name, "labels": labels}})
    status, missing = await api("POST", "/api/v1/namespaces/other/configmaps", {"metadata": {}})
    assert (status, missing["message"]) == (404, 'namespaces "other" not found')
    await api.ok("POST", "/api/v1/namespaces", {"metadata": {"name": "other"}})
    await api.ok("POST", "/api/v1/namespaces/other/configmaps", {"metadata": {"name": "c"}})
    listed = await api.ok("GET", "/api/v1/configmaps")
    assert (listed["kind"], listed["apiVersion"]) == ("ConfigMapList", "v1")
    assert int(listed["metadata"]["resourceVersion"]) >= max(rv(o) for o in listed["items"])
    assert [o["metadata"]["name"] for o in listed["items"]] == ["a", "b", "c"]
    web = await api.ok("GET", CONFIGMAPS, labelSelector="app in (web)")
    assert [o["metadata"]["name"] for o in web["items"]] == ["a"]
    named = await api.ok("GET", "/api/v1/configmaps", fieldSelector="metadata.namespace=other")
    assert [o["metadata"]["name"] for o in named["items"]] == ["c"]
    status, bad = await api("GET", CONFIGMAPS, fieldSelector="spec.size=1")
    assert (status, bad["reason"]) == (400, "BadRequest")


async def test_watch_sends_only_later_events_until_timeout(api: Api) -> None:
    first = await api.ok("POST", WIDGETS, widget("a", size=1))
    await api.ok("PATCH", f"{WIDGETS}/a", {"spec": {"size": 2}}, ctype=MERGE_PATCH)
    await api.ok("POST", WIDGETS, widget("b"))
    await api.ok("DELETE", f"{WIDGETS}/b")
    started = time.monotonic()
    events = await api.watch(WIDGETS, resourceVersion=str(rv(first)), timeoutSeconds="1")
    assert 0.9 < time.monotonic() - started < 3
    assert [(t, o["metadata"]["name"]) for t, o in events] == [
        ("MODIFIED", "a"),
        ("ADDED", "b"),
        ("DELETED", "b"),
    ]
    assert events[0][1]["spec"] == {"size": 2}  # the full object
    current = await api.watch(WIDGETS, timeoutSeconds="1", fieldSelector="metadata.name=a")
    assert [(t, o["metadata"]["name"]) for t, o in current] == [("ADDED", "a")]


async def test_watch_streams_live_changes(api: Api) -> None:
    listed = await api.ok("GET", WIDGETS)
    watch = api.watch(
        WIDGETS, resourceVersion=listed["metadata"]["resourceVersion"], timeoutSeconds="2"
    )

    async def write() -> None:
        await asyncio.sleep(0.2)
        await api.ok("POST", WIDGETS, widget("live"))

    events, _ = await asyncio.gather(watch, write())
    assert [(t, o["metadata"]["name"]) for t, o in events] == [("ADDED", "live")]


async def test_noop_writes_change_nothing(api: Api) -> None:
    applied = await api.ok(
        "PATCH", f"{WIDGETS}/w", widget("w", size=1), ctype=APPLY, fieldManager="t"
    )
    again = await api.ok(
        "PATCH", f"{WIDGETS}/w", widget("w", size=1), ctype=APPLY, fieldManager="t"
    )
    merged = await api.ok("PATCH", f"{WIDGETS}/w", {"spec": {"size": 1}}, ctype=MERGE_PATCH)
    ignored = await api.ok("PATCH", f"{WIDGETS}/w", {"status": {"x": 1}}, ctype=MERGE_PATCH)
    assert rv(applied) == rv(again) == rv(merged) == rv(ignored)
    assert await api.watch(WIDGETS, resourceVersion=str(rv(applied)), timeoutSeconds="1") == []


async def test_server_side_apply_creates_then_merges(api: Api) -> None:
    status, missing_manager = await api("PATCH", f"{WIDGETS}/w", widget("w"), ctype=APPLY)
    assert (status, missing_manager["reason"]) == (400, "BadRequest")
    status, created = await api(
        "PATCH", f"{WIDGETS}/w", widget("w", size=1, tags=["a"]), ctype=APPLY, fieldManager="t"
    )
    assert (status, created["metadata"]["generation"]) == (201, 1)
    merged = await api.ok(
        "PATCH",
        f"{WIDGETS}/w",
        widget("w", color="red", tags=["b"]),
        ctype=APPLY,
        fieldManager="u",
        force="true",
    )
    assert merged["spec"] == {"size": 1, "color": "red", "tags": ["b"]}  # lists are replaced
    assert merged["metadata"]["generation"] == 2
    as_yaml = "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\nspec:\n  size: 3\n"
    status, reapplied = await api("PATCH", f"{WIDGETS}/w", as_yaml, ctype=APPLY, fieldManager="t")
    assert status == 200, reapplied
    assert reapplied["spec"] == {"size": 3, "color": "red", "tags": ["b"]}  # YAML, not only JSON
    status, broken = await api("PATCH", f"{WIDGETS}/w", "spec: [", ctype=APPLY, fieldManager="t")
    assert (status, broken["reason"]) == (400, "BadRequest")


async def test_namespaces_are_cluster_scoped(api: Api) -> None:
    await api.ok("POST", "/api/v1/namespaces", {"metadata": {"name": "team"}})
    listed = await api.ok("GET", "/api/v1/namespaces")
    assert listed["kind"] == "NamespaceList"
    assert [n["metadata"]["name"] for n in listed["items"]] == ["default", "team"]
    team = await api.ok("GET", "/api/v1/namespaces/team")
    assert "namespace" not in team["metadata"]
    status, _ = await api("GET", "/api/v1/namespaces/team/status")
    assert status == 200


async def test_finalizers_delay_deletion(api: Api) -> None:
    created = await api.ok(
        "POST", WIDGETS, {**widget("w"), "metadata": {"name": "w", "finalizers": ["x/y"]}}
    )
    marked = await api.ok("DELETE", f"{WIDGETS}/w")
    assert marked["metadata"]["deletionTimestamp"]
    assert (await api.ok("GET", f"{WIDGETS}/w"))["metadata"]["deletionTimestamp"]
    # Marked as kube-apiserver marks it: no grace period, the generation bumped (once).
    assert marked["metadata"]["deletionGracePeriodSeconds"] == 0
    assert marked["metadata"]["generation"] == created["metadata"]["generation"] + 1
    assert await api.ok("DELETE", f"{WIDGETS}/w") == marked  # again: nothing changes
    remove = [{"op": "remove", "path": "/metadata/finalizers"}]
    await api.ok("PATCH", f"{WIDGETS}/w", remove, ctype=JSON_PATCH)
    status, _ = await api("GET", f"{WIDGETS}/w")
    assert status == 404
    events = await api.watch(WIDGETS, resourceVersion=str(rv(created)), timeoutSeconds="1")
    assert [t for t, _ in events] == ["MODIFIED", "DELETED"]
    # Gone at once: a Status for most kinds (custom resources too), the object for a few.
    await api.ok("POST", WIDGETS, widget("v"))
    gone = await api.ok("DELETE", f"{WIDGETS}/v")
    assert (gone["kind"], gone["status"], gone["details"]["name"]) == ("Status", "Success", "v")
    await api.ok("POST", "/api/v1/namespaces/default/services", {"metadata": {"name": "s"}})
    service = await api.ok("DELETE", "/api/v1/namespaces/default/services/s")
    assert (service["kind"], service["metadata"]["name"]) == ("Service", "s")


async def test_write_counter(k8s: Cluster, api: Api) -> None:
    await api.ok("POST", WIDGETS, widget("a"))
    k8s.emulator.reset_calls()
    await api.ok("POST", WIDGETS, widget("b"))
    await api.ok("PATCH", f"{WIDGETS}/b", {"spec": {"x": 1}}, ctype=MERGE_PATCH)
    await api.ok("GET", f"{WIDGETS}/b")
    await api.ok("DELETE", f"{WIDGETS}/a")
    assert len(k8s.emulator.writes()) == 3
    assert [c.method for c in k8s.emulator.writes(name="b")] == ["POST", "PATCH"]
    assert [c.content_type for c in k8s.emulator.writes(name="b")] == [
        "application/json",
        MERGE_PATCH,
    ]
    assert len(k8s.emulator.calls) == 4


async def test_accesses_are_the_requests_as_rbac_authorizes_them(k8s: Cluster) -> None:
    """Every request as (verb, apiGroup, resource[/subresource], namespace, name) and its token.

    Failed and unserved requests are authorized too, so they are recorded; a server-side apply
    that creates is a patch and a create. Recording answers nothing: a 404 stays a 404, and a
    DELETE of a collection (not emulated) a 405.
    """
    k8s.emulator.add_crd(CRD)
    k8s.emulator.reset_calls()
    session = aiohttp.ClientSession(base_url=k8s.url, headers={"Authorization": "Bearer alice"})
    async with session:
        api = Api(session)
        await api.ok("GET", "/apis")
        created = await api.ok("POST", WIDGETS, widget("a"))
        await api.ok("GET", f"{WIDGETS}/a")
        await api.ok("GET", WIDGETS)
        await api.ok("GET", "/apis/example.com/v1/widgets", fieldSelector="metadata.name=a")
        await api.watch(WIDGETS, resourceVersion=str(rv(created)), timeoutSeconds="1")
        await api.ok("PUT", f"{WIDGETS}/a", {**created, "spec": {"size": 2}})
        await api.ok("PATCH", f"{WIDGETS}/a/status", {"status": {"ok": 1}}, ctype=MERGE_PATCH)
        for size in (1, 2):  # the first apply creates, the second changes
            await api.ok("PATCH", f"{WIDGETS}/b", widget("b", size=size), ctype=APPLY, **FM)
        await api.ok("DELETE", f"{WIDGETS}/a")
        assert (await api("GET", f"{CONFIGMAPS}/missing"))[0] == 404
        assert (await api("DELETE", WIDGETS))[0] == 405  # not emulated, still authorized
        await api.ok("GET", "/api/v1/namespaces/default")
    # A Python client's token names its user; kubectl sends none to an http:// server.
    bob = "system:serviceaccount:default:bob"
    client = kubernetes.config.new_client_from_config(str(k8s.kubeconfig_for(bob)))
    with client:
        kubernetes.client.CoreV1Api(client).list_namespaced_config_map("default")
    kubeconfig = k8s.kubeconfig_for("carol")
    env = {**k8s.kubectl_env(), "KUBECONFIG": str(kubeconfig)}
    run_kubectl(kubeconfig, "get", "widgets", "-n", "default", env=env)

    widgets = ("example.com", "widgets", "default")
    seen = [(a.verb, a.group, a.resource, a.namespace, a.name) for a in k8s.emulator.accesses]
    assert seen[:15] == [
        ("get", "", "", None, None),
        ("create", *widgets, None),
        ("get", *widgets, "a"),
        ("list", *widgets, None),
        ("list", "example.com", "widgets", None, "a"),
        ("watch", *widgets, None),
        ("update", *widgets, "a"),
        ("patch", "example.com", "widgets/status", "default", "a"),
        ("patch", *widgets, "b"),
        ("create", *widgets, "b"),
        ("patch", *widgets, "b"),
        ("delete", *widgets, "a"),
        ("get", "", "configmaps", "default", "missing"),
        ("deletecollection", *widgets, None),
        ("get", "", "namespaces", "default", "default"),
    ]
    assert k8s.emulator.accesses[0].path == "/apis"
    assert {a.user for a in k8s.emulator.accesses[:15]} == {"alice"}
    assert k8s.emulator.accesses[15][:6] == ("list", "", "configmaps", "default", None, bob)
    kubectl = k8s.emulator.accesses[16:]
    assert ("list", "widgets", "default") in {(a.verb, a.resource, a.namespace) for a in kubectl}
    assert {a.user for a in kubectl} == {None}  # client-go sends credentials only over TLS
    assert {a.agent.split("/")[0] for a in kubectl} == {"kubectl"}
    assert len(k8s.emulator.accesses) == len(k8s.emulator.calls) + 1  # the creating apply
    k8s.emulator.reset_calls()
    assert k8s.emulator.accesses == []


async def test_kmock_reactions_win(k8s: Cluster, api: Api) -> None:
    k8s.emulator[f"get {WIDGETS}/boom"] << 503
    async with api.session.get(f"{WIDGETS}/boom") as response:
        assert response.status == 503
    status, _ = await api("GET", f"{WIDGETS}/other")
    assert status == 404


async def test_discovery(api: Api) -> None:
    core = await api.ok("GET", "/api/v1")
    namespaces = next(r for r in core["resources"] if r["name"] == "namespaces")
    assert namespaces["namespaced"] is False
    groups = await api.ok("GET", "/apis")
    names = {g["name"] for g in groups["groups"]}
    assert {"apps", "batch", "coordination.k8s.io", "example.com"} <= names
    widgets = await api.ok("GET", "/apis/example.com/v1")
    assert {r["name"] for r in widgets["resources"]} == {"widgets", "widgets/status"}
    status, _ = await api("GET", "/apis/nothing.example.com/v1")
    assert status == 404


def test_kubectl_round_trip(k8s: Cluster) -> None:
    kubectl = k8s.kubectl

    def apply(obj: dict[str, Any], *flags: str) -> str:
        return kubectl("apply", "--validate=false", *flags, "-f", "-", input=json.dumps(obj)).stdout

    apply(CRD)
    kubectl("wait", "--for=condition=Established", "crd/widgets.example.com", "--timeout=10s")
    watch = [str(KUBECTL), "get", "widgets", "--watch", "--output-watch-events", "--no-headers"]
    lines: list[str] = []
    with subprocess.Popen(
        watch, env=k8s.kubectl_env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    ) as watcher:
        reader = threading.Thread(target=lambda: lines.extend(watcher.stdout or ()), daemon=True)
        reader.start()
        try:
            assert "created" in apply(widget("w1", size=1))
            assert "configured" in apply(widget("w1", size=2))
            assert "serverside-applied" in apply(widget("w2", size=1), "--server-side")
            kubectl("patch", "widget", "w2", "--type=merge", "-p", '{"spec":{"size":5}}')
            ready = '{"status":{"conditions":[{"type":"Ready","status":"True"}]}}'
            kubectl("patch", "wd", "w2", "--subresource=status", "--type=merge", "-p", ready)
            kubectl(
                "replace", "--validate=false", "-f", "-", input=json.dumps(widget("w1", size=3))
            )
            kubectl("wait", "--for=jsonpath={.spec.size}=3", "widget/w1", "--timeout=10s")
            table = [row.split() for row in kubectl("get", "widgets").stdout.splitlines()]
            assert table == [["NAME", "SIZE", "READY"], ["w1", "3"], ["w2", "5", "True"]]
            kubectl("delete", "widget", "w1", "--timeout=10s")
            kubectl("wait", "--for=delete", "widget/w1", "--timeout=10s")
            names = kubectl("get", "widgets", "-o", "name").stdout.split()
            assert names == ["widget.example.com/w2"]
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not any("DELETED" in line for line in lines):
                time.sleep(0.05)
        finally:
            watcher.terminate()
    reader.join(timeout=10)
    events = [line.split()[:2] for line in lines]
    assert events[0] == ["ADDED", "w1"]
    assert ["MODIFIED", "w2"] in events
    assert events[-1] == ["DELETED", "w1"]


def test_kubectl_with_builtin_resources(k8s: Cluster) -> None:
    config = {"apiVersion": "v1", "kind": "ConfigMap", "data": {"k": "1"}}
    config["metadata"] = {"name": "c", "labels": {"app": "web"}}
    for value in ("1", "2"):  # create, then a strategic merge patch
        manifest = json.dumps({**config, "data": {"k": value}})
        k8s.kubectl("apply", "--validate=false", "-f", "-", input=manifest)
    [stored] = [o for k, o in k8s.emulator.objects.items() if k[0] == "v1/configmaps"]
    assert stored["data"] == {"k": "2"}
    assert "kubectl.kubernetes.io/last-applied-configuration" in stored["metadata"]["annotations"]
    assert k8s.kubectl("get", "cm", "-l", "app in (web)", "-o", "name").stdout == "configmap/c\n"
    assert k8s.kubectl("get", "cm", "-l", "app!=web", "-o", "name").stdout == ""
    assert k8s.kubectl("get", "namespaces", "-o", "name").stdout == "namespace/default\n"
    table = k8s.kubectl("get", "configmaps").stdout.splitlines()
    assert [row.split()[0] for row in table] == ["NAME", "c"]
    assert table[0].split() == ["NAME", "AGE"]  # default columns for built-in resources


def test_the_projects_crds_are_served_and_printed(k8s: Cluster) -> None:
    for path in sorted(CRD_DIR.glob("mlgitops.io_*.yaml")):
        k8s.emulator.add_crd(yaml.safe_load(path.read_text()))
    deployment = {"apiVersion": "mlgitops.io/v1alpha1", "kind": "ModelDeployment"}
    spec = {"model": "fraud.detector", "champion": {"version": "3"}}
    deployment |= {"metadata": {"name": "fraud"}, "spec": spec}
    k8s.kubectl("apply", "--validate=false", "-f", "-", input=json.dumps(deployment))
    condition = {"type": "Ready", "status": "True", "reason": "Applied"}
    condition["lastTransitionTime"] = "2026-01-01T00:00:00Z"
    ready = {"conditions": [condition], "lastAppliedRevision": "abc"}
    status = json.dumps({"status": ready})
    k8s.kubectl("patch", "md", "fraud", "--subresource=status", "--type=merge", "-p", status)
    header, row = k8s.kubectl("get", "md").stdout.splitlines()  # the short name
    assert header.split() == ["NAME", "CHAMPION", "CHALLENGER", "READY", "REVISION", "AGE"]
    assert row.split()[:4] == ["fraud", "3", "True", "abc"]
    environment = {"apiVersion": "mlgitops.io/v1alpha1", "kind": "Environment"}
    environment |= {"metadata": {"name": "prod"}, "spec": {"catalog": "prod", "namespace": "x"}}
    k8s.kubectl("apply", "--validate=false", "-f", "-", input=json.dumps(environment))
    listed = k8s.kubectl("get", "mlgitops", "-o", "name").stdout.split()  # the category
    assert sorted(listed) == ["environment.mlgitops.io/prod", "modeldeployment.mlgitops.io/fraud"]
