"""What the emulator does for kube-controller-manager: garbage collection and namespace deletion.

``test_conformance.py`` holds the same behaviours against a real cluster.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from tests.k8s.fixtures import Cluster
from tests.k8s.test_emulator import CRD, WIDGETS, Api, rv, widget

NAMESPACES = "/api/v1/namespaces"
CONFIGMAPS = "/api/v1/namespaces/default/configmaps"
MERGE_PATCH = "application/merge-patch+json"


@pytest.fixture
async def api(k8s: Cluster) -> AsyncIterator[Api]:
    k8s.emulator.add_crd(CRD)
    async with aiohttp.ClientSession(base_url=k8s.url) as session:
        yield Api(session)


async def eventually(what: str, check: Callable[[], Awaitable[Any]], timeout: float = 5) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if result := await check():
            return result
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def owned_by(*owners: dict[str, Any], block: bool = False) -> list[dict[str, Any]]:
    refs = []
    for owner in owners:
        ref = {"apiVersion": owner["apiVersion"], "kind": owner["kind"]}
        ref |= {"name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"]}
        refs.append(ref | ({"blockOwnerDeletion": True} if block else {}))
    return refs


def configmap(name: str, owners: list[dict[str, Any]], **meta: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "ownerReferences": owners, **meta}}


async def gone(api: Api, path: str) -> bool:
    return (await api("GET", path))[0] == 404


async def test_the_garbage_collector_follows_owner_references(api: Api) -> None:
    owner = await api.ok("POST", WIDGETS, widget("owner"))
    other = await api.ok("POST", CONFIGMAPS, {"metadata": {"name": "other"}})
    child = await api.ok("POST", CONFIGMAPS, configmap("child", owned_by(owner)))
    await api.ok("POST", CONFIGMAPS, configmap("grandchild", owned_by(child)))
    await api.ok("POST", CONFIGMAPS, configmap("shared", owned_by(owner, other)))
    held = configmap("held", owned_by(owner), finalizers=["x/hold"])
    await api.ok("POST", CONFIGMAPS, held)
    await asyncio.sleep(0.6)  # nothing dangles yet: nothing goes
    assert not await gone(api, f"{CONFIGMAPS}/child")

    await api.ok("DELETE", f"{WIDGETS}/owner")
    await eventually("the grandchild", lambda: gone(api, f"{CONFIGMAPS}/grandchild"))
    assert await gone(api, f"{CONFIGMAPS}/child")
    # Another owner lives: the object stays, without the reference to the deleted one.
    shared = await api.ok("GET", f"{CONFIGMAPS}/shared")
    assert shared["metadata"]["ownerReferences"] == owned_by(other)
    # A finalizer holds a dependent as it holds anything: marked, kept.
    held = await api.ok("GET", f"{CONFIGMAPS}/held")
    assert held["metadata"]["deletionTimestamp"]
    events = await api.watch(CONFIGMAPS, resourceVersion=str(rv(owner)), timeoutSeconds="1")
    deleted = [o["metadata"]["name"] for t, o in events if t == "DELETED"]
    assert sorted(deleted) == ["child", "grandchild"]


async def test_a_dangling_owner_reference_is_collected(api: Api) -> None:
    owner = await api.ok("POST", WIDGETS, widget("owner"))
    ghost = {**owner, "metadata": {**owner["metadata"], "uid": str(uuid.uuid4())}}
    await api.ok("POST", CONFIGMAPS, configmap("created", owned_by(ghost)))  # the name lives
    await api.ok("POST", CONFIGMAPS, {"metadata": {"name": "updated"}})
    patch = {"metadata": {"ownerReferences": owned_by(ghost)}}
    await api.ok("PATCH", f"{CONFIGMAPS}/updated", patch, ctype=MERGE_PATCH)
    unknown = [{"apiVersion": "v1", "kind": "Nothing", "name": "n", "uid": "u"}]
    await api.ok("POST", CONFIGMAPS, configmap("unresolvable", unknown))
    await eventually("created", lambda: gone(api, f"{CONFIGMAPS}/created"))
    await eventually("updated", lambda: gone(api, f"{CONFIGMAPS}/updated"))
    # A kind the server does not serve cannot be looked up: the collector leaves it be.
    assert not await gone(api, f"{CONFIGMAPS}/unresolvable")


async def test_orphan_and_foreground_propagation(api: Api) -> None:
    orphaner = await api.ok("POST", WIDGETS, widget("orphaner"))
    await api.ok("POST", CONFIGMAPS, configmap("orphan", owned_by(orphaner)))
    marked = await api.ok("DELETE", f"{WIDGETS}/orphaner", {"propagationPolicy": "Orphan"})
    assert marked["metadata"]["finalizers"] == ["orphan"]
    await eventually("the orphaner", lambda: gone(api, f"{WIDGETS}/orphaner"))
    assert "ownerReferences" not in (await api.ok("GET", f"{CONFIGMAPS}/orphan"))["metadata"]

    owner = await api.ok("POST", WIDGETS, widget("owner"))
    held = configmap("blocking", owned_by(owner, block=True), finalizers=["x/hold"])
    await api.ok("POST", CONFIGMAPS, held)
    marked = await api.ok("DELETE", f"{WIDGETS}/owner", propagationPolicy="Foreground")
    assert marked["metadata"]["finalizers"] == ["foregroundDeletion"]
    await eventually(
        "the dependent marked",
        lambda: _marked(api, f"{CONFIGMAPS}/blocking"),
    )
    await asyncio.sleep(0.6)
    assert not await gone(api, f"{WIDGETS}/owner")  # waits for its blocking dependent
    await api.ok(
        "PATCH", f"{CONFIGMAPS}/blocking", {"metadata": {"finalizers": None}}, ctype=MERGE_PATCH
    )
    await eventually("the owner", lambda: gone(api, f"{WIDGETS}/owner"))


async def _marked(api: Api, path: str) -> bool:
    return bool((await api.ok("GET", path))["metadata"].get("deletionTimestamp"))


async def test_jobs_orphan_by_default(api: Api) -> None:
    jobs = "/apis/batch/v1/namespaces/default/jobs"
    job = await api.ok("POST", jobs, {"metadata": {"name": "j"}, "spec": {}})
    await api.ok("POST", CONFIGMAPS, configmap("pod", owned_by(job)))
    marked = await api.ok("DELETE", f"{jobs}/j")  # batch/v1's default: Orphan
    assert marked["metadata"]["finalizers"] == ["orphan"]
    await eventually("the job", lambda: gone(api, f"{jobs}/j"))
    assert not await gone(api, f"{CONFIGMAPS}/pod")


async def test_a_namespace_terminates_and_takes_its_content(api: Api) -> None:
    team = await api.ok("POST", NAMESPACES, {"metadata": {"name": "team"}})
    assert team["spec"] == {"finalizers": ["kubernetes"]}
    assert team["status"] == {"phase": "Active"}
    assert team["metadata"]["labels"] == {"kubernetes.io/metadata.name": "team"}
    status, missing = await api("POST", f"{NAMESPACES}/nowhere/configmaps", {"metadata": {}})
    assert (status, missing["message"]) == (404, 'namespaces "nowhere" not found')
    widgets = "/apis/example.com/v1/namespaces/team/widgets"
    held = {**widget("held"), "metadata": {"name": "held", "finalizers": ["x/hold"]}}
    await api.ok("POST", widgets, held)
    await api.ok("POST", f"{NAMESPACES}/team/configmaps", {"metadata": {"name": "c"}})

    terminating = await api.ok("DELETE", f"{NAMESPACES}/team")
    assert terminating["status"]["phase"] == "Terminating"
    assert terminating["metadata"]["deletionTimestamp"]
    status, refused = await api(
        "POST", f"{NAMESPACES}/team/configmaps", {"metadata": {"name": "n"}}
    )
    assert (status, refused["reason"]) == (403, "Forbidden")
    assert refused["message"] == (
        'configmaps "n" is forbidden: unable to create new content in namespace team'
        " because it is being terminated"
    )
    assert refused["details"]["causes"] == [
        {
            "reason": "NamespaceTerminating",
            "field": "metadata.namespace",
            "message": "namespace team is being terminated",
        }
    ]
    await eventually("the content", lambda: gone(api, f"{NAMESPACES}/team/configmaps/c"))
    assert await _marked(api, f"{widgets}/held")

    async def conditions() -> dict[str, tuple[str, str]]:
        namespace = await api.ok("GET", f"{NAMESPACES}/team")
        found = (namespace["status"].get("conditions")) or []
        return {c["type"]: (c["status"], c["message"]) for c in found}

    found = await eventually("conditions", conditions)
    assert found["NamespaceContentRemaining"] == (
        "True",
        "Some resources are remaining: widgets.example.com has 1 resource instances",
    )
    assert found["NamespaceFinalizersRemaining"] == (
        "True",
        "Some content in the namespace has finalizers remaining: x/hold in 1 resource instances",
    )
    assert found["NamespaceDeletionDiscoveryFailure"][0] == "False"
    await asyncio.sleep(0.6)
    assert not await gone(api, f"{NAMESPACES}/team")  # held by what it holds
    await api.ok("PATCH", f"{widgets}/held", {"metadata": {"finalizers": None}}, ctype=MERGE_PATCH)
    await eventually("the namespace", lambda: gone(api, f"{NAMESPACES}/team"))

    status, forbidden = await api("DELETE", f"{NAMESPACES}/default")
    assert (status, forbidden["message"]) == (
        403,
        'namespaces "default" is forbidden: this namespace may not be deleted',
    )
