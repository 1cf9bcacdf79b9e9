"""A Kubernetes API server in memory, honest enough for a real kopf operator and real kubectl.

Why: the fast test tier runs without a cluster, and kmock 0.8's ``KubernetesEmulator`` alone cannot
run kopf: it stamps no resourceVersion, so kopf's first finalizer JSON-patch fails. This subclass adds the API machinery operators and kubectl
rely on: resourceVersion, uid, generation (on the kinds that have one, bumped by spec changes only)
and creationTimestamp; 409 on a stale resourceVersion; 422 on a failed JSON-patch test; PUT,
merge, strategic-merge and JSON patches; server-side apply; the ``/status`` subresource; label and
field selectors; watches from a resourceVersion with ``timeoutSeconds``; discovery; CRDs
registered at runtime; server-side printing (Tables with ``additionalPrinterColumns``). Writes
that change nothing get no new resourceVersion and no watch event, as on a real server. Reactions
added with kmock's DSL (``emulator["get /api/v1/..."] << 503``) still win over the emulation, to
inject faults, and ``hold()`` keeps matching requests waiting until a test releases them, to catch
a client with a call in flight.

Like a real cluster, with the same status codes and messages (``tests/k8s/test_conformance.py``
holds both to them):

- Custom resources are decoded and validated against their CRD's ``openAPIV3Schema``
  (``structural``): unknown fields pruned (a ``Warning`` header by default, refused with
  ``fieldValidation=Strict``, a 500 from server-side apply), defaults filled in, violations a 422
  ``Invalid`` naming each field; on an update, what the update leaves as it was is not re-checked.
- Deletion: finalizers hold an object (deletionTimestamp set, generation bumped) until the last
  is removed; a DELETE answers with a ``Status`` once the object is gone (the object for
  namespaces and services); ``propagationPolicy`` Orphan and Foreground add the garbage
  collector's finalizers (batch/v1 Jobs orphan by default).
- A garbage collector (a sweep every SWEEP_SECONDS, after writes): an object whose owners are all
  gone (uid not found) is deleted, transitively, including one created with a dangling owner; a
  dangling reference beside a live owner is removed; orphaning strips the owner's references.
- Namespaces: created Active with the ``kubernetes`` finalizer and their name label; creating in
  a missing namespace is a 404, in a Terminating one a 403; a DELETE makes a namespace
  Terminating, the namespace controller deletes its content (what finalizers hold stays), keeps
  its five conditions, and the namespace goes once it is empty. default, kube-system and
  kube-public cannot be deleted.

Simplified: server-side apply is a deep merge (dicts merged, lists replaced, nulls remove) with
field ownership kept per apply manager only (no managedFields in the object): a field a manager
applied before and no longer applies is removed unless another manager's apply sets it, but
fields written by updates and patches are owned by nobody, and no conflict is ever reported; a strategic merge patch is a merge patch; each served version of a CRD is
its own store (no conversion); built-in kinds are not validated (any ConfigMap body is taken);
watches filter by the object's current labels (no synthetic DELETED when labels stop matching);
lists ignore ``limit``; deleting a CRD keeps its resources served; built-ins print only Name and
Age columns; protobuf bodies (kubectl's ``create configmap``/``create namespace``) get a 415; only
the default namespace exists at start.

What it cannot show, ever: admission webhooks, RBAC and authentication, CEL rules
(``x-kubernetes-validations``), and controllers beyond the two above (a Deployment creates no
pods, a Job never runs). Keep an e2e tier on a real cluster for those. RBAC is not enforced, but
every request is recorded as RBAC authorizes it (``accesses``), so a test can hold a Role against
the requests a client really makes.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import copy
import datetime
import json
import random
import re
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple

import aiohttp.web
import attrs
import jsonpatch
import jsonpointer
import yaml
from kmock import KubernetesEmulator, KubernetesError, RawHandler, Request, ResourceInfo, resource

from tests.k8s import structural

Obj = dict[str, Any]
VERBS = {"create", "delete", "get", "list", "patch", "update", "watch"}
CRDS = resource("apiextensions.k8s.io/v1/customresourcedefinitions")


def _path(res: resource) -> str:
    """A resource as its URL spells it: ``apps/v1/deployments``, ``v1/configmaps``."""
    return "/".join(str(part) for part in (res.group, res.version, res.plural) if part)


NAMESPACES = resource("v1/namespaces")
# The built-in resources an operator uses: kind, namespaced, short names, has a /status.
BUILTINS: dict[str | resource, tuple[str, bool, list[str], bool]] = {
    "v1/namespaces": ("Namespace", False, ["ns"], True),
    "v1/services": ("Service", True, ["svc"], True),
    "v1/secrets": ("Secret", True, [], False),
    "v1/configmaps": ("ConfigMap", True, ["cm"], False),
    "v1/events": ("Event", True, ["ev"], False),
    "apps/v1/deployments": ("Deployment", True, ["deploy"], True),
    "batch/v1/jobs": ("Job", True, [], True),
    "batch/v1/cronjobs": ("CronJob", True, ["cj"], True),
    "coordination.k8s.io/v1/leases": ("Lease", True, [], False),
    CRDS: ("CustomResourceDefinition", False, ["crd"], True),
}
RESOURCE_PATH = re.compile(
    r"/(?:api|apis/(?P<group>[^/]+))/(?P<version>[^/]+)(?:/namespaces/(?P<namespace>[^/]+))?"
    r"/(?P<plural>[^/]+)(?:/(?P<name>[^/]+))?(?:/(?P<sub>[^/]+))?"
)
JSON_PATCH, MERGE_PATCH = "application/json-patch+json", "application/merge-patch+json"
STRATEGIC, APPLY = "application/strategic-merge-patch+json", "application/apply-patch+yaml"
Key = tuple[resource, str | None, str]  # kmock's key of an object: resource, namespace, name
Change = Callable[[Obj], Obj]
VERSION = {"major": "1", "minor": "37", "gitVersion": "v1.37.0-emulated", "platform": "linux/amd64"}
COLUMN = {"format": "", "description": "", "priority": 0}
NAME_COLUMN = {**COLUMN, "name": "Name", "type": "string", "format": "name"}
AGE_COLUMN = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
CONFLICT = (
    'Operation cannot be fulfilled on {what} "{name}": the object has been modified;'
    " please apply your changes to the latest version and try again"
)
IMMUTABLE = ("name", "namespace", "uid", "creationTimestamp", "generation", "resourceVersion")
DELETING = ("deletionTimestamp", "deletionGracePeriodSeconds")  # only a DELETE sets these
# Built-ins whose strategy keeps metadata.generation (the others have none); CRs all do.
GENERATION = {"apps/v1/deployments", "batch/v1/jobs", "batch/v1/cronjobs", _path(CRDS)}
# Built-ins whose DELETE answers with the object; the others (and CRs) answer with a Status.
RETURNS_DELETED = {"v1/namespaces", "v1/services"}
# The garbage collector's finalizers, and the namespaces a kube-apiserver never deletes.
ORPHAN, FOREGROUND = "orphan", "foregroundDeletion"
IMMORTAL = ("default", "kube-system", "kube-public")
NAMESPACE_FINALIZER = "kubernetes"
# The namespace controller's conditions while a namespace terminates: type, reason, message
# when all is well (status False); a True one replaces it when something remains.
NAMESPACE_CONDITIONS = [
    (
        "NamespaceDeletionDiscoveryFailure",
        "ResourcesDiscovered",
        "All resources successfully discovered",
    ),
    (
        "NamespaceDeletionGroupVersionParsingFailure",
        "ParsedGroupVersions",
        "All legacy kube types successfully parsed",
    ),
    (
        "NamespaceDeletionContentFailure",
        "ContentDeleted",
        "All content successfully deleted, may be waiting on finalization",
    ),
    ("NamespaceContentRemaining", "ContentRemoved", "All content successfully removed"),
    (
        "NamespaceFinalizersRemaining",
        "ContentHasNoFinalizers",
        "All content-preserving finalizers finished",
    ),
]
SWEEP_SECONDS = 0.25  # how often the garbage collector and the namespace controller look


# The API server's names.SimpleNameGenerator: 5 characters from k8s.io/apimachinery's
# util/rand alphabet (no vowels, no confusable digits): 27**5 = 14.3M names, so a thousand
# kopf Events rarely collide, as on a real cluster (16**5 hex names collided once per run).
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def _leaf_paths(config: Any, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    """The fields an apply configuration sets, as paths to its leaves (a list is one leaf: the
    emulator's merge replaces lists whole)."""
    if not isinstance(config, dict) or not config:
        return {prefix} if prefix else set()
    out: set[tuple[str, ...]] = set()
    for k, v in config.items():
        out |= _leaf_paths(v, (*prefix, str(k)))
    return out


def _prune(obj: Any, dropped: set[tuple[str, ...]]) -> Any:
    """``obj`` without the fields at ``dropped`` (and the maps they leave empty below the top)."""
    for path in sorted(dropped, key=len, reverse=True):
        if path[:1] == ("metadata",) and path[1:2] in (("name",), ("namespace",)):
            continue
        trail = [obj]
        for k in path[:-1]:
            nxt = trail[-1].get(k) if isinstance(trail[-1], dict) else None
            if not isinstance(nxt, dict):
                break
            trail.append(nxt)
        else:
            trail[-1].pop(path[-1], None)
            for depth in range(len(trail) - 1, 1, -1):  # empty maps go, not top-level fields
                if not trail[depth]:
                    trail[depth - 1].pop(path[depth - 1], None)
    return obj


def _load_apply(body: bytes) -> Any:
    """An apply body is YAML; clients (kubectl, the Python client) mostly send JSON, a subset.

    JSON first (C-speed), then libyaml's safe loader: pure-Python YAML was 40% of the
    emulator's CPU in bench/operator_scale.py. Same documents either way.
    """
    try:
        return json.loads(body)
    except ValueError:
        return yaml.load(body, Loader=_YAML_LOADER)


_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class Call(NamedTuple):
    """One request as the server saw it; ``name`` is the object's (from the body for a POST)."""

    method: str
    path: str
    content_type: str
    name: str | None = None


class Access(NamedTuple):
    """One authorization check a kube-apiserver makes, in the terms RBAC rules are written in.

    One per request, in the order they arrive (before any reaction, fault or hold), plus a second
    check, ``create``, for a server-side apply (a PATCH) that creates its object, which a real API
    server authorizes as a create as well as a patch. Recording changes no response.

    ``verb`` is the RBAC verb of a resource request (get, list, watch, create, update, patch,
    delete, deletecollection) and the lower-case HTTP method of a non-resource URL (discovery,
    ``/version``), which has ``resource`` "". ``group`` is "" for the core group; ``resource`` is
    the plural, "plural/subresource" for a subresource. ``namespace`` and ``name`` come from the
    URL, as the API server's request info has them: a POST names no object, and a list or watch
    names one only by a ``metadata.name=`` field selector. ``user`` is the bearer token the
    client sent (None without one): the emulator authenticates no one, so a test tells its
    clients apart by giving each a token (``Cluster.kubeconfig_for``). ``path`` (query aside) and
    ``agent`` (the User-Agent header) are not RBAC's, but say where a request came from.
    """

    verb: str
    group: str
    resource: str
    namespace: str | None
    name: str | None
    user: str | None
    path: str
    agent: str = ""


def _error(code: int, reason: str, message: str, key: Key | None = None) -> Exception:
    """A Kubernetes ``Status`` (kmock renders it), about the object at ``key`` if given."""
    details = _details(name=key[2], group=key[0].group, kind=key[0].plural) if key else {}
    return KubernetesError(status=code, reason=reason, message=message, details=details)


def _details(**fields: Any) -> Obj:
    """A Status's details, without the empty fields (Go's omitempty)."""
    return {k: v for k, v in fields.items() if v}


def _invalid(
    qualified: str, kind: str, group: str, name: str, errors: list[structural.FieldError]
) -> Exception:
    """``apierrors.NewInvalid``: a 422 naming each field, as the API server words it."""
    message = f'{qualified} "{name}" is invalid: {structural.aggregate(errors)}'
    causes = [{"reason": e.type, "message": e.body(), "field": e.field} for e in errors]
    details = _details(name=name, group=group, kind=kind, causes=causes)
    return KubernetesError(status=422, reason="Invalid", message=message, details=details)


def _ratcheted(error: structural.FieldError, new: Obj, old: Obj) -> bool:
    """Whether an update leaves the failing value as it was (so the error does not count)."""
    path = error.field
    if error.type == structural.REQUIRED:  # about the object that lacks the field
        path = path.rpartition(".")[0]
    found, value = structural.value_at(new, path)
    was_found, was = structural.value_at(old, path)
    return found and was_found and value == was


def _gc_finalizers(res: resource, finalizers: list[str], options: Obj) -> list[str]:
    """A deleted object's finalizers, with the garbage collector's for the propagation policy.

    ``orphanDependents`` wins over ``propagationPolicy``, which wins over a finalizer already
    there; by default, batch/v1 Jobs orphan (for backward compatibility) and the rest do not.
    """
    orphan, foreground = options.get("orphanDependents"), False
    policy = options.get("propagationPolicy")
    if orphan is None and policy:
        orphan, foreground = policy == "Orphan", policy == "Foreground"
    elif orphan is None:
        first = next((f for f in finalizers if f in (ORPHAN, FOREGROUND)), None)
        orphan = first == ORPHAN if first else _path(res) == "batch/v1/jobs"
        foreground = first == FOREGROUND
    kept = [f for f in finalizers if f not in (ORPHAN, FOREGROUND)]
    wanted = kept + [ORPHAN] * bool(orphan) + [FOREGROUND] * foreground
    return finalizers if set(wanted) == set(finalizers) else wanted


def _namespace_gc_finalizers(meta: Obj, options: Obj) -> list[str]:
    """A namespace's own rule: only what the delete options ask for changes its finalizers."""
    finalizers = list(meta.get("finalizers") or [])
    orphan, policy = options.get("orphanDependents"), options.get("propagationPolicy")
    wanted = {
        ORPHAN: orphan if orphan is not None else (policy == "Orphan" if policy else None),
        FOREGROUND: (not orphan)
        if orphan is not None
        else (policy == "Foreground" if policy else None),
    }
    for finalizer, keep in wanted.items():
        if keep and finalizer not in finalizers:
            finalizers.append(finalizer)
        elif keep is False and finalizer in finalizers:
            finalizers.remove(finalizer)
    return finalizers


def _prepare_namespace(new: Obj, old: Obj | None, sub: str | None) -> None:
    """The namespace strategy: Active with the ``kubernetes`` finalizer on create; spec.finalizers
    change only through /finalize, the status only through /status; a label names it."""
    if old is None:
        finalizers = list((new.get("spec") or {}).get("finalizers") or [])
        new["spec"] = {**(new.get("spec") or {}), "finalizers": finalizers}
        if NAMESPACE_FINALIZER not in finalizers:
            finalizers.append(NAMESPACE_FINALIZER)
        new["status"] = {"phase": "Active"}
    elif sub != "finalize":
        new["spec"] = copy.deepcopy(old.get("spec") or {})
    labels = new["metadata"].setdefault("labels", {})
    labels["kubernetes.io/metadata.name"] = new["metadata"]["name"]


def _namespace_conditions(old: list[Obj], remaining: list[tuple[Key, Obj]]) -> list[Obj]:
    """The namespace controller's five conditions, given what is left in the namespace."""
    counts: dict[str, int] = {}
    by_finalizer: dict[str, int] = {}
    for key, obj in remaining:
        what = f"{key[0].plural}.{key[0].group or ''}"
        counts[what] = counts.get(what, 0) + 1
        for finalizer in obj["metadata"].get("finalizers") or []:
            by_finalizer[finalizer] = by_finalizer.get(finalizer, 0) + 1
    failing: dict[str, tuple[str, str]] = {}
    if counts:
        listed = sorted(f"{what} has {n} resource instances" for what, n in counts.items())
        failing["NamespaceContentRemaining"] = (
            "SomeResourcesRemain",
            f"Some resources are remaining: {', '.join(listed)}",
        )
    if by_finalizer:
        listed = sorted(f"{f} in {n} resource instances" for f, n in by_finalizer.items())
        failing["NamespaceFinalizersRemaining"] = (
            "SomeFinalizersRemain",
            f"Some content in the namespace has finalizers remaining: {', '.join(listed)}",
        )
    conditions = [dict(c) for c in old]
    for type_, ok_reason, ok_message in NAMESPACE_CONDITIONS:
        status, (reason, message) = (
            ("True", failing[type_]) if type_ in failing else ("False", (ok_reason, ok_message))
        )
        wanted = {"type": type_, "status": status, "reason": reason, "message": message}
        current = next((c for c in conditions if c.get("type") == type_), None)
        if current is None:
            conditions.append(wanted | {"lastTransitionTime": _now()})
        elif any(current.get(k) != wanted[k] for k in ("status", "reason", "message")):
            if current.get("status") != status:
                current["lastTransitionTime"] = _now()
            current |= wanted
    return conditions


def _deleted_status(res: resource, obj: Obj) -> Obj:
    """What most registries answer a DELETE that deleted at once with: a Success Status."""
    meta = obj["metadata"]
    details = _details(name=meta["name"], group=res.group, kind=res.plural, uid=meta["uid"])
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"} | {
        "details": details
    }


def _without_owner(obj: Obj, uids: set[Any]) -> Obj:
    refs = [r for r in obj["metadata"].get("ownerReferences") or [] if r.get("uid") not in uids]
    obj["metadata"]["ownerReferences"] = refs or None
    if not refs:
        del obj["metadata"]["ownerReferences"]
    return obj


def _without_finalizer(obj: Obj, finalizer: str) -> Obj:
    finalizers = [f for f in obj["metadata"].get("finalizers") or [] if f != finalizer]
    obj["metadata"]["finalizers"] = finalizers
    if not finalizers:
        del obj["metadata"]["finalizers"]
    return obj


def _blocks(obj: Obj, uid: str) -> bool:
    """Whether a dependent holds up its owner's foreground deletion."""
    refs = obj["metadata"].get("ownerReferences") or []
    return any(r.get("uid") == uid and r.get("blockOwnerDeletion") for r in refs)


def _what(res: resource) -> str:
    return f"{res.plural}.{res.group}" if res.group else str(res.plural)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _age(timestamp: str) -> str:
    then = datetime.datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    seconds = int((datetime.datetime.now(datetime.UTC) - then).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= 2 * size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _merge(target: Any, patch: Any, *, strategic: bool = False) -> Any:
    """RFC 7386: dicts merge, anything else replaces, null removes; ``$`` directives dropped."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif not (strategic and key.startswith("$")):
            result[key] = _merge(result.get(key), value, strategic=strategic)
    return result


def _terms(selector: str) -> Iterator[str]:
    return (t.strip() for t in re.findall(r"(?:[^,(]|\([^)]*\))+", selector) if t.strip())


def labels_match(selector: str, labels: Mapping[str, str]) -> bool:
    """A label selector: ``k=v``/``k==v``, ``k!=v``, ``k in (a,b)``, ``k notin (a)``, ``k``, ``!k``."""
    for term in _terms(selector):
        if m := re.fullmatch(r"([^\s!=]+)\s+(in|notin)\s+\((.*)\)", term):
            values = {v.strip() for v in m[3].split(",")}
            ok = (labels.get(m[1]) in values) == (m[2] == "in")
        elif m := re.fullmatch(r"([^\s!=]+)\s*(!=|==|=)\s*(\S*)", term):
            ok = (labels.get(m[1]) == m[3]) == (m[2] != "!=")
        else:
            ok = (term.lstrip("!").strip() in labels) != term.startswith("!")
        if not ok:
            return False
    return True


def fields_match(selector: str, obj: Obj) -> bool:
    """A field selector on ``metadata.name`` and ``metadata.namespace`` (others are a 400)."""
    for term in _terms(selector):
        if not (m := re.fullmatch(r"metadata\.(name|namespace)\s*(!=|==|=)\s*(\S*)", term)):
            raise _error(400, "BadRequest", f'field label not supported: "{term}"')
        if (obj["metadata"].get(m[1], "") == m[3]) == (m[2] == "!="):
            return False
    return True


JSONPATH_STEP = re.compile(
    r"\.([\w-]+)|\[(\d+)\]|\[(\*)\]|\[\?\(@\.([\w-]+)\s*==\s*[\"']([^\"']*)[\"']\)\]"
)


def jsonpath(obj: Any, path: str) -> list[Any]:
    """The JSONPath subset printer columns use: ``.a.b``, ``[0]``, ``[*]``, ``[?(@.k=="v")]``."""
    values, pos = [obj], 0
    while pos < len(path):
        if not (m := JSONPATH_STEP.match(path, pos)):
            return []
        key, index, star, fkey, fval = m.groups()
        found: list[Any] = []
        for v in values:
            if isinstance(v, dict) and key in v:
                found.append(v[key])
            elif isinstance(v, list) and index is not None:
                found += v[int(index) : int(index) + 1]
            elif isinstance(v, list) and (star or fkey):
                found += [
                    i for i in v if star or (isinstance(i, dict) and str(i.get(fkey)) == fval)
                ]
        values, pos = found, m.end()
    return values


def _version_order(version: str) -> tuple[int, int, int]:
    """Kubernetes' version priority: GA over beta over alpha, then the higher number."""
    if not (m := re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", version)):
        return (-1, 0, 0)
    return ({"alpha": 0, "beta": 1}.get(m[2] or "", 2), int(m[1]), int(m[3] or 0))


@attrs.define(eq=False)
class Gate:
    """Requests of one method and path wait here until ``release()`` (see ``hold``)."""

    method: str
    path: str
    waiting: int = 0  # requests that have arrived at the gate so far
    _open: threading.Event = attrs.field(factory=threading.Event, init=False)

    def release(self) -> None:
        self._open.set()

    async def passage(self) -> None:
        self.waiting += 1
        while not self._open.is_set():
            await asyncio.sleep(0.02)


@attrs.define(kw_only=True)
class KubeApiEmulator(KubernetesEmulator):
    """kmock's emulator with the API machinery kopf and kubectl need (see the module docstring).

    ``objects`` (kmock's) holds every version of every object for assertions, ``calls`` every
    request (``writes()`` filters and ``reset_calls()`` clears them), ``accesses`` the same
    requests as RBAC authorizes them (see ``Access``), ``add_crd`` serves a CRD.
    """

    calls: list[Call] = attrs.field(factory=list, init=False)
    accesses: list[Access] = attrs.field(factory=list, init=False)
    # The fields each manager's last apply set, per (object, manager, subresource).
    _applied: dict[tuple[Key, str, str | None], set[tuple[str, ...]]] = attrs.field(
        factory=dict, init=False
    )
    _columns: dict[resource, list[Obj]] = attrs.field(factory=dict, init=False)
    _events: list[tuple[int, resource, Obj]] = attrs.field(factory=list, init=False)
    _rv: int = attrs.field(default=0, init=False)
    _tick: asyncio.Event = attrs.field(factory=asyncio.Event, init=False)
    _loop: asyncio.AbstractEventLoop | None = attrs.field(default=None, init=False)
    _closing: bool = attrs.field(default=False, init=False)
    _gates: list[Gate] = attrs.field(factory=list, init=False)
    # generateName suffixes and uids: random on a real server, seeded here, so the same sequence
    # of creates gets the same names and uids and a failure that depends on them (a suffix
    # collision is a 409) reproduces.
    _random: random.Random = attrs.field(factory=lambda: random.Random(0), init=False)
    _schemas: dict[resource, Obj] = attrs.field(factory=dict, init=False)  # CRs' openAPIV3Schema
    _warnings: list[str] = attrs.field(factory=list, init=False)  # the request's Warning headers
    _sweeper: asyncio.Task[None] | None = attrs.field(default=None, init=False)
    _swept: int = attrs.field(default=-1, init=False)  # the resourceVersion the last sweep saw
    # What the next sweep must look at, so that it is not a scan of every object at every write
    # (a thousand-object benchmark spent more CPU there than the operator did): the dependents
    # written since (a dangling owner?), those of the objects deleted since, and everything
    # when an object is being deleted with finalizers or a namespace terminates.
    _gc_keys: set[Key] = attrs.field(factory=set, init=False)
    _gc_dependents: dict[str, set[Key]] = attrs.field(factory=dict, init=False)  # owner uid ->
    _gc_full: bool = attrs.field(default=True, init=False)
    _terminating: set[str] = attrs.field(factory=set, init=False)  # namespaces being deleted
    _waiting: set[Key] = attrs.field(factory=set, init=False)  # owners held for the collector

    def __attrs_post_init__(self) -> None:
        # kmock's fallback reactions are not registered: _handle() serves what no reaction did.
        for res, (kind, namespaced, short, status) in BUILTINS.items():
            info = ResourceInfo(kind=kind, namespaced=namespaced, singular=kind.lower())
            info.verbs, info.shortnames = VERBS, set(short)
            info.subresources = {"status"} if status else set()
            info.subresources |= {"finalize"} if res == NAMESPACES else set()
            self.resources[res] = info
        self._create(NAMESPACES, None, {"metadata": {"name": "default"}})

    def add_crd(self, crd: Obj) -> None:
        """Store (or replace) a CustomResourceDefinition and serve its resources; any thread."""

        def store() -> None:
            key = (CRDS, None, crd["metadata"]["name"])
            if self._current(key) is None:
                self._create(CRDS, None, copy.deepcopy(crd))
            else:
                self._update(key, None, lambda _: copy.deepcopy(crd))

        async def in_loop() -> None:
            store()

        loop = self._loop  # all state lives in the server's loop, with the watchers
        if loop is not None and loop.is_running() and _running_loop() is not loop:
            asyncio.run_coroutine_threadsafe(in_loop(), loop).result(timeout=10)
        else:
            store()

    def writes(self, *, name: str | None = None, path: str | None = None) -> list[Call]:
        """The POST/PUT/PATCH/DELETE requests, optionally of one object name or a path part."""
        return [
            c
            for c in list(self.calls)
            if c.method in ("POST", "PUT", "PATCH", "DELETE")
            and name in (None, c.name)
            and (path is None or path in c.path)
        ]

    def reset_calls(self) -> None:
        self.calls.clear()
        self.accesses.clear()

    def hold(self, method: str, path: str) -> Gate:
        """Hold every ``method`` request on ``path`` (exact, query aside) until the gate's release.

        The request is recorded at once and answered, with the state current then, on release;
        ``Gate.waiting`` counts the arrivals. Release every gate before the emulator stops.
        """
        gate = Gate(method.upper(), path)
        self._gates.append(gate)
        return gate

    async def __aenter__(self) -> KubeApiEmulator:
        await super().__aenter__()
        self._loop, self._closing = asyncio.get_running_loop(), False
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="k8s-emulator-gc")
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self._stop_sweeping()
        await super().__aexit__(*exc_info)

    async def close_watches(self) -> None:
        """End every open watch stream (before the HTTP server shuts down)."""
        self._closing = True
        self._wake()
        await self._stop_sweeping()

    async def _stop_sweeping(self) -> None:
        if (sweeper := self._sweeper) is not None:
            self._sweeper = None
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper

    # --- HTTP ---------------------------------------------------------------------------------

    async def __call__(self, raw: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        try:
            request = await self._parse(raw)
            for gate in list(self._gates):
                if (gate.method, gate.path) == (raw.method, raw.path):
                    await gate.passage()
            return await self._handle(request)
        except KubernetesError as e:
            return await self._render_error(e)
        except Exception as e:  # a bug in the emulator: a 500, and kept for the fixture to raise
            if self._errors:
                self._errors[-1].append(e)
            return await self._render_error(e)

    async def _render_error(self, exc: Exception) -> aiohttp.web.StreamResponse:
        """A failure ``Status`` as the API server writes it (no details when it has none)."""
        if not isinstance(exc, KubernetesError):
            return await super()._render_error(exc)  # a bug: kmock's 500 with the traceback
        status: Obj = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure"}
        status |= {"message": exc.message} | ({"reason": exc.reason} if exc.reason else {})
        status |= {"details": exc.details} if exc.details else {}
        return aiohttp.web.json_response(status | {"code": exc.status}, status=exc.status)

    async def _parse(self, raw: aiohttp.web.BaseRequest) -> Request:
        """kmock's own parser breaks on ``/api/v1/namespaces``: parse paths here."""
        body, ctype = await raw.read(), raw.headers.get("Content-Type", "").split(";")[0].strip()
        k8s: dict[str, Any] = {}
        if m := RESOURCE_PATH.fullmatch(raw.path):
            group, version, ns, plural, name, sub = m["group"] or "", *m.groups()[1:]
            if ns and not name and resource(group, version, plural) not in self.resources:
                ns, plural, name, sub = None, "namespaces", ns, plural  # e.g. namespaces/x/status
            k8s = {"resource": resource(group, version, plural), "namespace": ns, "name": name}
            k8s |= {"subresource": sub}
        try:
            data = (_load_apply if ctype == APPLY else json.loads)(body) if body else None
        except (ValueError, yaml.YAMLError) as e:
            data = e
        name = k8s.get("name")
        if k8s and not name and isinstance(data, dict):  # a POST: the name is in the body
            name = (data.get("metadata") or {}).get("name")
        self.calls.append(Call(raw.method, raw.path, ctype, name))
        where = [k8s.get(part) for part in ("subresource", "namespace", "name")]
        self.accesses.append(_access(raw, k8s.get("resource"), *where))
        if "protobuf" in ctype:
            raise _error(415, "UnsupportedMediaType", f"{ctype} is not emulated; send JSON")
        if isinstance(data, Exception):
            raise _error(400, "BadRequest", f"cannot decode the body: {data}")
        http: dict[str, Any] = {
            "method": raw.method,
            "url": raw.url,
            "params": dict(raw.query),
            "body": body,
        }
        http |= {"headers": dict(raw.headers), "data": data, "raw_request": raw}
        request = Request(id=len(self._requests), **http, **k8s)
        self._requests.append(request)
        return request

    async def _handle(self, request: Request) -> aiohttp.web.StreamResponse:
        try:  # reactions added by tests (kmock's DSL) win
            response: aiohttp.web.StreamResponse = await RawHandler._handle(self, request)
            return response
        except NotImplementedError:
            return await self._serve(request)

    async def _serve(self, req: Request) -> aiohttp.web.StreamResponse:
        raw, method, params = req._raw_request, req.method.value, req.params
        res, name, sub = req.resource, req.name, req.subresource
        assert raw is not None
        unknown = _error(404, "NotFound", f"the server could not find the resource {raw.path}")
        if res is None:
            if method != "GET":
                raise _error(405, "MethodNotAllowed", f"{method} is not allowed on {raw.path}")
            return aiohttp.web.json_response(self._discovery(raw.path.rstrip("/"), unknown))
        if res not in self.resources:
            raise unknown
        info, ns = self.resources[res], req.namespace
        if info.namespaced and method == "POST" and not ns:
            ns = (_body(req).get("metadata") or {}).get("namespace") or "default"
        misplaced = (ns and not info.namespaced) or (info.namespaced and name and not ns)
        if misplaced or sub not in (None, *info.subresources):
            raise unknown
        if "dryRun" in params:
            raise _error(400, "BadRequest", "dryRun is not emulated")
        table, key = "as=Table" in raw.headers.get("Accept", ""), (res, ns, name or "")
        if method == "GET" and params.get("watch") in ("true", "1"):
            return await self._watch(req, res, ns, table)
        if method == "GET" and name:
            obj = self._get(key)
            return aiohttp.web.json_response(self._table(res, [obj]) if table else obj)
        if method == "GET":
            items = self._list(res, ns, params)
            listed: Obj = {"apiVersion": _gv(res), "kind": f"{info.kind}List", "items": items}
            listed["metadata"] = {"resourceVersion": str(self._rv)}
            return aiohttp.web.json_response(self._table(res, items) if table else listed)
        self._warnings = []  # what this write warns of; no await from here to the response
        validation = params.get("fieldValidation") or "Warn"  # the API server's default
        if method == "POST" and not name:
            created = self._create(res, ns, _body(req), validation=validation)
            return self._respond(created, status=201)
        if method == "PUT" and name:
            body = _body(req)
            return self._respond(self._update(key, sub, lambda _: body, validation=validation))
        if method == "PATCH" and name:
            return self._patch(req, key, sub, validation)
        if method == "DELETE" and name and not sub:
            options = {k: v for k, v in params.items() if k in ("propagationPolicy",)}
            if "orphanDependents" in params:
                options["orphanDependents"] = params["orphanDependents"] == "true"
            if isinstance(req.data, dict):
                options |= req.data
            return self._respond(self._delete(key, options, request=True))
        raise _error(405, "MethodNotAllowed", f"{method} is not allowed on {raw.path}")

    def _respond(self, body: Obj, status: int = 200) -> aiohttp.web.Response:
        """A JSON response, with a ``Warning`` header per warning the write produced."""
        response = aiohttp.web.json_response(body, status=status)
        for warning in self._warnings:
            response.headers.add("Warning", f"299 - {json.dumps(warning)}")
        return response

    def _patch(
        self, req: Request, key: Key, sub: str | None, validation: str
    ) -> aiohttp.web.Response:
        ctype, patch = req.headers.get("Content-Type", "").split(";")[0], req.data
        change: Change
        if ctype == JSON_PATCH:
            change = lambda old: jsonpatch.apply_patch(old, patch)  # noqa: E731
        elif ctype in (MERGE_PATCH, STRATEGIC):
            change = lambda old: _merge(old, patch, strategic=ctype == STRATEGIC)  # noqa: E731
        elif ctype == APPLY:  # server-side apply: a deep merge, no field ownership (see above)
            if not req.params.get("fieldManager"):
                raise _error(400, "BadRequest", "fieldManager is required for apply requests")
            config = _body(req)
            self._decode(key[0], config, validation, "apply", key[2])
            if self._current(key) is None and not sub:
                # A kube-apiserver authorizes an apply that creates its object as a create too.
                assert req._raw_request is not None
                check = _access(req._raw_request, key[0], None, key[1], key[2])
                self.accesses.append(check._replace(verb="create"))
                body = _merge(config, {"metadata": {"name": key[2]}})
                created = self._create(key[0], key[1], body, validation="Ignore")
                self._applied[(key, str(req.params["fieldManager"]), None)] = _leaf_paths(config)
                return self._respond(created, status=201)
            # A manager owns the fields it applies; a field it applied before and no longer
            # does is removed, unless another manager's apply still sets it (shared).
            manager = str(req.params["fieldManager"])
            mine = _leaf_paths(config)
            others = set().union(
                *(
                    v
                    for (k, m, s), v in self._applied.items()
                    if k == key and s == sub and m != manager
                )
            )
            dropped = self._applied.get((key, manager, sub), set()) - mine - others
            self._applied[(key, manager, sub)] = mine
            change = lambda old: _prune(_merge(old, config), dropped)  # noqa: E731
            validation = "Ignore"  # what the apply configuration did not declare is gone
        else:
            raise _error(415, "UnsupportedMediaType", f"unsupported patch type: {ctype}")
        return self._respond(self._update(key, sub, change, validation=validation, verb="patch"))

    # --- state: every write goes through _create, _update or _delete, then _store -----------
    # ``validation`` is the request's fieldValidation; None for the cluster's own writes (the
    # garbage collector's, the namespace controller's, add_crd's), which are not decoded,
    # admitted or validated.

    def _current(self, key: Key) -> Obj | None:
        if key in self.objects and not self.objects[key].deleted:
            return copy.deepcopy(self.objects[key].raw)
        return None

    def _get(self, key: Key) -> Obj:
        if (obj := self._current(key)) is None:
            raise _error(404, "NotFound", f'{_what(key[0])} "{key[2]}" not found', key)
        return obj

    def _list(self, res: resource, ns: str | None, params: Mapping[str, str]) -> list[Obj]:
        found = {
            (namespace or "", name): copy.deepcopy(obj.raw)
            for (r, namespace, name), obj in list(self.objects.items())
            if r == res and ns in (None, namespace) and not obj.deleted
        }
        return [obj for _, obj in sorted(found.items()) if self._matches(obj, params)]

    def _matches(self, obj: Obj, params: Mapping[str, str]) -> bool:
        labels = obj["metadata"].get("labels") or {}
        fields = fields_match(params.get("fieldSelector", ""), obj)  # raises on unsupported fields
        return fields and labels_match(params.get("labelSelector", ""), labels)

    def _store(self, res: resource, obj: Obj, event: str) -> Obj:
        """Stamp a new resourceVersion, keep the version (kmock's history), emit the event."""
        self._rv += 1
        meta = obj["metadata"]
        meta["resourceVersion"] = str(self._rv)
        key = (res, meta.get("namespace"), meta["name"])
        if event == "DELETED":
            self.objects[key].delete()
        elif key in self.objects:
            self.objects[key].create(copy.deepcopy(obj))
        else:
            self.objects[key] = copy.deepcopy(obj)
        self._events.append((self._rv, res, {"type": event, "object": copy.deepcopy(obj)}))
        self._note_for_gc(res, key, meta, event)
        self._wake()
        return obj

    def _note_for_gc(self, res: resource, key: Key, meta: Obj, event: str) -> None:
        if event == "DELETED":
            self._gc_keys |= self._gc_dependents.pop(str(meta.get("uid", "")), set())
            self._waiting.discard(key)
            if res == NAMESPACES:
                self._terminating.discard(meta["name"])
            return
        for ref in meta.get("ownerReferences") or []:
            self._gc_keys.add(key)
            self._gc_dependents.setdefault(str(ref.get("uid", "")), set()).add(key)
        if meta.get("deletionTimestamp"):
            self._gc_full = True
            if {ORPHAN, FOREGROUND} & set(meta.get("finalizers") or []):
                self._waiting.add(key)
            if res == NAMESPACES:
                self._terminating.add(meta["name"])

    def _create(
        self, res: resource, ns: str | None, obj: Obj, *, validation: str | None = None
    ) -> Obj:
        """A create, in the API server's order: decode, admit, prepare, validate, store."""
        info, meta = self.resources[res], obj.setdefault("metadata", {})
        for owned in [
            k for k in self._applied if k[0][:2] == (res, ns) and k[0][2] == meta.get("name")
        ]:
            del self._applied[owned]  # a new object: nobody owns its fields yet
        if validation is not None:
            self._decode(res, obj, validation, "create", meta.get("name") or "")
            self._admit_create(res, ns, meta.get("name") or meta.get("generateName") or "")
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + "".join(
                self._random.choice(_NAME_ALPHABET) for _ in range(5)
            )
        name = meta.get("name") or ""
        if "status" in info.subresources:
            obj.pop("status", None)
        for field in (*IMMUTABLE[1:], *DELETING):
            meta.pop(field, None)
        meta |= {"namespace": ns} if ns else {}
        meta |= {
            "uid": str(uuid.UUID(int=self._random.getrandbits(128), version=4)),
            "creationTimestamp": _now(),
        }
        meta |= {"generation": 1} if self._has_generation(res) else {}
        obj |= {"apiVersion": _gv(res), "kind": info.kind}
        if res == NAMESPACES:
            _prepare_namespace(obj, None, None)
        if not name:
            required = structural.FieldError(
                structural.REQUIRED, "metadata.name", "", "name or generateName is required"
            )
            raise self._invalid(res, "", [required])
        if validation is not None:
            self._validate(res, obj, None, None)
        if self._current(key := (res, ns, name)) is not None:
            raise _error(409, "AlreadyExists", f'{_what(res)} "{name}" already exists', key)
        created = self._store(res, obj, "ADDED")
        return self._serve_crd(created) if res == CRDS else created

    def _update(
        self,
        key: Key,
        sub: str | None,
        change: Change,
        *,
        validation: str | None = None,
        verb: str = "update",
    ) -> Obj:
        res, old = key[0], self._get(key)
        try:
            new = change(copy.deepcopy(old))
        except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as e:
            raise _error(422, "Invalid", f"the patch cannot be applied: {e}", key) from None
        if not isinstance(new, dict):
            raise _error(400, "BadRequest", "the result is not an object")
        if validation is not None:
            self._decode(res, new, validation, verb, key[2])
        old_meta, rv = old["metadata"], (new.get("metadata") or {}).get("resourceVersion")
        if rv and rv != old_meta["resourceVersion"]:  # optimistic concurrency
            raise _error(409, "Conflict", CONFLICT.format(what=_what(res), name=key[2]), key)
        if sub == "status":  # the status subresource changes only the status
            new = {**copy.deepcopy(old), "status": new.get("status")}
        elif sub == "finalize":  # a namespace's finalize subresource: only spec.finalizers
            finalizers = (new.get("spec") or {}).get("finalizers") or []
            new = copy.deepcopy(old)
            new["spec"] = {**(new.get("spec") or {}), "finalizers": finalizers}
        elif "status" in self.resources[res].subresources:  # the main endpoint ignores it
            new["status"] = copy.deepcopy(old.get("status"))
        if new.get("status") is None:
            new.pop("status", None)
        meta = new["metadata"] = dict(new.get("metadata") or {})
        for field in (*IMMUTABLE, *DELETING):
            meta.pop(field, None)
            meta |= {field: old_meta[field]} if field in old_meta else {}
        new |= {"apiVersion": old["apiVersion"], "kind": old["kind"]}
        if res == NAMESPACES:
            _prepare_namespace(new, old, sub)
        if validation is not None:
            self._validate(res, new, old, sub)
        if new == old:  # a write that changes nothing: no new resourceVersion, no event
            return old
        if "generation" in meta and _spec(new) != _spec(old):
            meta["generation"] += 1
        held = meta.get("finalizers") or (res == NAMESPACES and new["spec"].get("finalizers"))
        if meta.get("deletionTimestamp") and not held:
            return self._store(res, new, "DELETED")  # the last finalizer is gone
        updated = self._store(res, new, "MODIFIED")
        return self._serve_crd(updated) if res == CRDS and not sub else updated

    def _delete(self, key: Key, options: Obj, *, request: bool = False) -> Obj:
        """A DELETE: the object gone at once, or marked while finalizers remain.

        Answers with the object while it remains, once gone with the object or a ``Status``
        (as the resource's registry does). The garbage collector's finalizers come from the
        propagation policy: ``orphan`` (dependents keep existing, without this owner) and
        ``foregroundDeletion`` (dependents first); background, the default, needs none.
        """
        res, old = key[0], self._get(key)
        meta = old["metadata"]
        for field, value in (options.get("preconditions") or {}).items():
            if value and meta.get(field) != value:
                message = f"Precondition failed: {field} is {meta.get(field)}"
                raise _error(409, "Conflict", message, key)
        policy = options.get("propagationPolicy")
        if policy not in (None, "Foreground", "Background", "Orphan"):
            supported = ["Foreground", "Background", "Orphan", "nil"]
            error = structural.FieldError(
                structural.NOT_SUPPORTED,
                "propagationPolicy",
                policy,
                "supported values: " + ", ".join(f'"{v}"' for v in supported),
            )
            raise _invalid("DeleteOptions.meta.k8s.io", "DeleteOptions", "meta.k8s.io", "", [error])
        if res == NAMESPACES:
            if request and key[2] in IMMORTAL:
                message = f'namespaces "{key[2]}" is forbidden: this namespace may not be deleted'
                raise _error(403, "Forbidden", message, key)
            if not meta.get("deletionTimestamp"):  # Terminating; the namespace controller ends it
                marked = copy.deepcopy(old)
                marked["metadata"]["deletionTimestamp"] = _now()
                marked["status"] = {**(marked.get("status") or {}), "phase": "Terminating"}
                marked["metadata"]["finalizers"] = _namespace_gc_finalizers(meta, options)
                if not marked["metadata"]["finalizers"]:
                    del marked["metadata"]["finalizers"]
                return self._store(res, marked, "MODIFIED")
            if (old.get("spec") or {}).get("finalizers"):
                return old
        finalizers = _gc_finalizers(res, meta.get("finalizers") or [], options)
        if not finalizers:
            self._store(res, old, "DELETED")
            return old if _path(res) in RETURNS_DELETED else _deleted_status(res, old)
        marked = copy.deepcopy(old)
        mark = marked["metadata"]
        if not mark.get("deletionTimestamp"):
            mark["deletionTimestamp"] = _now()
            if mark.get("generation"):
                mark["generation"] += 1
        mark["deletionGracePeriodSeconds"] = 0
        mark["finalizers"] = finalizers
        if marked == old:  # already marked: nothing changes
            return old
        return self._store(res, marked, "MODIFIED")

    def _serve_crd(self, crd: Obj) -> Obj:
        spec, names = crd["spec"], crd["spec"]["names"]
        scope, kind = spec.get("scope", "Namespaced"), names["kind"]
        for version in (v for v in spec["versions"] if v.get("served", True)):
            res = resource(spec["group"], version["name"], names["plural"])
            info = ResourceInfo(kind=kind, namespaced=scope == "Namespaced", verbs=VERBS)
            info.singular = names.get("singular", kind.lower())
            info.shortnames = names.get("shortNames", [])
            info.categories = names.get("categories", [])
            info.subresources = {"status"} & set(version.get("subresources") or {})
            self.resources[res] = info
            self._columns[res] = version.get("additionalPrinterColumns") or []
            schema = (version.get("schema") or {}).get("openAPIV3Schema")
            self._schemas[res] = schema or {"x-kubernetes-preserve-unknown-fields": True}
        if crd.get("status", {}).get("acceptedNames") == names:
            return crd
        # The API server's own controller accepts the names; `kubectl wait` needs Established.
        conditions = [
            {"type": t, "status": "True", "reason": r, "message": "", "lastTransitionTime": _now()}
            for t, r in (("NamesAccepted", "NoConflicts"), ("Established", "InitialNamesAccepted"))
        ]
        stored = [v["name"] for v in spec["versions"] if v.get("storage")]
        status = {"conditions": conditions, "acceptedNames": names, "storedVersions": stored}
        key = (CRDS, None, crd["metadata"]["name"])
        return self._update(key, "status", lambda _: {"status": status})

    def _has_generation(self, res: resource) -> bool:
        return _path(res) in GENERATION or res in self._schemas

    # --- admission and validation ---------------------------------------------------------

    def _decode(self, res: resource, obj: Obj, validation: str, verb: str, name: str) -> None:
        """A custom resource's body as the API server decodes it, in place.

        Fields the CRD's schema does not declare are dropped: with ``fieldValidation=Strict`` the
        request fails (how depends on the verb), with ``Warn`` (the default) each is a warning.
        Then nulls of non-nullable fields go, the schema's defaults are filled in, and a float
        with no fraction becomes an integer (as Go writes it back).
        """
        if (schema := self._schemas.get(res)) is None:
            return
        kind = self.resources[res].kind
        if verb == "apply" and (errors := structural.apply_errors(obj, schema)):
            # Whatever fieldValidation says, structured-merge-diff refuses first: a 500.
            found = errors[0] if len(errors) == 1 else "\n  ".join(["errors:", *errors])
            meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
            named = f"{meta.get('namespace') or ''}/{meta.get('name') or ''}"  # as the body says
            gvk = f"{_gv(res)}, Kind={kind}"
            message = f"failed to create typed patch object ({named}; {gvk}): {found}"
            raise KubernetesError(status=500, reason=None, message=message)
        patched = structural.go_json(obj) if verb == "patch" and validation == "Strict" else ""
        unknown = structural.prune(obj, schema)
        if unknown and validation == "Strict":
            strict = "strict decoding error: " + ", ".join(f'unknown field "{u}"' for u in unknown)
            if verb == "patch":  # the patched object, as it stood before decoding
                error = structural.FieldError(structural.INVALID, "patch", patched, strict)
                raise _invalid("", "", "", "", [error])
            message = f'{kind} in version "{res.version}" cannot be handled as a {kind}: {strict}'
            raise _error(400, "BadRequest", message)
        if validation == "Warn":
            self._warnings += [f'unknown field "{u}"' for u in unknown]
        if verb == "apply":  # an apply configuration is merged first, then defaulted
            return
        structural.prune_nulls(obj, schema)
        structural.default(obj, schema)
        structural.integral_floats_as_ints(obj)

    def _admit_create(self, res: resource, ns: str | None, name: str) -> None:
        """The NamespaceLifecycle admission plugin: no new content in a missing or dying namespace."""
        if not ns or not self.resources[res].namespaced:
            return
        namespace = self._current((NAMESPACES, None, ns))
        if namespace is None:
            raise _error(404, "NotFound", f'namespaces "{ns}" not found', (NAMESPACES, None, ns))
        if (namespace.get("status") or {}).get("phase") != "Terminating":
            return
        what = f'{_what(res)} "{name}"' if name else _what(res)
        reason = f"unable to create new content in namespace {ns} because it is being terminated"
        cause = {"reason": "NamespaceTerminating", "field": "metadata.namespace"}
        cause["message"] = f"namespace {ns} is being terminated"
        details = _details(name=name, group=res.group, kind=res.plural, causes=[cause])
        raise KubernetesError(403, "Forbidden", f"{what} is forbidden: {reason}", details)

    def _validate(self, res: resource, new: Obj, old: Obj | None, sub: str | None) -> None:
        """A custom resource against its CRD's schema (only the status for /status): a 422.

        On an update, errors in what the update leaves as it was do not count (ratcheting).
        """
        if not (schema := self._schemas.get(res)):
            return
        if sub == "status":
            status_schema = (schema.get("properties") or {}).get("status")
            has_status = status_schema is not None and "status" in new
            errors = (
                structural.validate(new["status"], status_schema, "status") if has_status else []
            )
        else:
            errors = structural.validate(new, schema)
        if old is not None:
            errors = [e for e in errors if not _ratcheted(e, new, old)]
        if errors:
            raise self._invalid(res, new["metadata"].get("name") or "", errors)

    def _invalid(self, res: resource, name: str, errors: list[structural.FieldError]) -> Exception:
        kind = self.resources[res].kind
        qualified = f"{kind}.{res.group}" if res.group else kind
        return _invalid(qualified, kind, str(res.group or ""), name, errors)

    # --- controllers: the garbage collector and the namespace controller ------------------

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            try:
                self.sweep()
            except Exception as e:  # a bug in the emulator: kept for the fixture to raise
                if not self._errors:
                    raise
                self._errors[-1].append(e)

    def sweep(self) -> None:
        """What a cluster's controllers do after writes, until they have nothing left to do.

        The garbage collector deletes what only dangling ownerReferences own (background
        propagation) and serves the ``orphan`` and ``foregroundDeletion`` finalizers; the
        namespace controller empties a Terminating namespace, then lets it go. Runs on the
        emulator's loop every SWEEP_SECONDS, and only after writes.
        """
        for _ in range(1000):
            if self._swept == self._rv:
                return
            self._swept = self._rv
            full = self._gc_full or bool(self._terminating or self._waiting)
            keys, self._gc_keys, self._gc_full = self._gc_keys, set(), False
            self._collect_garbage(None if full else keys)
            if full:
                self._terminate_namespaces()

    def _live(self) -> dict[Key, Obj]:
        return {key: obj.raw for key, obj in list(self.objects.items()) if not obj.deleted}

    def _owner(self, dependent: Key, ref: Obj) -> Obj | bool | None:
        """The object an ownerReference names (None: absent); False if its kind is not served."""
        group, _, version = str(ref.get("apiVersion") or "").rpartition("/")
        for res, info in self.resources.items():
            if (res.group or "", res.version) == (group, version) and info.kind == ref.get("kind"):
                ns = dependent[1] if info.namespaced else None
                key = (res, ns, str(ref.get("name") or ""))
                return (
                    None
                    if key not in self.objects or self.objects[key].deleted
                    else (self.objects[key].raw)
                )
        return False  # the garbage collector cannot look it up, and leaves the dependent be

    def _collect_garbage(self, keys: set[Key] | None = None) -> None:
        """``keys``: look only at these dependents (None: at everything, finalizers included)."""
        if keys is not None:
            self._collect_dependents(
                {
                    k: self.objects[k].raw
                    for k in keys
                    if k in self.objects and not self.objects[k].deleted
                }
            )
            return
        live = self._live()
        for key, obj in live.items():  # owners whose deletion waits for the collector
            meta = obj["metadata"]
            finalizers = meta.get("finalizers") or []
            if not meta.get("deletionTimestamp") or not {ORPHAN, FOREGROUND} & set(finalizers):
                continue
            uid, dependents = meta["uid"], self._dependents(live, key, meta["uid"])
            if ORPHAN in finalizers:
                for dependent in dependents:
                    self._update(dependent, None, lambda o, uid=uid: _without_owner(o, {uid}))
                self._update(key, None, lambda o: _without_finalizer(o, ORPHAN))
            elif not any(_blocks(live[d], uid) for d in dependents if self._current(d)):
                self._update(key, None, lambda o: _without_finalizer(o, FOREGROUND))
        self._collect_dependents(self._live())

    def _collect_dependents(self, candidates: dict[Key, Obj]) -> None:
        """Delete what only dangling references own; drop dangling references beside live ones."""
        for key, obj in candidates.items():
            meta = obj["metadata"]
            refs = meta.get("ownerReferences") or []
            finalizers = meta.get("finalizers") or []
            if not refs or (meta.get("deletionTimestamp") and FOREGROUND not in finalizers):
                continue
            solid, gone = 0, set()
            waiting = False
            for ref in refs:
                owner = self._owner(key, ref)
                if owner is None or (owner and owner["metadata"]["uid"] != ref.get("uid")):
                    gone.add(ref.get("uid"))
                elif (
                    owner
                    and owner["metadata"].get("deletionTimestamp")
                    and FOREGROUND in (owner["metadata"].get("finalizers") or [])
                ):
                    gone.add(ref.get("uid"))
                    waiting = True
                else:
                    solid += 1
            if solid and gone:  # other owners remain: only the references go
                self._update(key, None, lambda o, gone=gone: _without_owner(o, gone))
            elif not solid:
                foreground = FOREGROUND in finalizers or (
                    waiting and bool(self._dependents(self._live(), key, meta["uid"]))
                )
                policy = "Orphan" if ORPHAN in finalizers else "Background"
                self._delete(key, {"propagationPolicy": "Foreground" if foreground else policy})

    @staticmethod
    def _dependents(live: dict[Key, Obj], owner: Key, uid: str) -> list[Key]:
        return [
            key
            for key, obj in live.items()
            if any(r.get("uid") == uid for r in obj["metadata"].get("ownerReferences") or [])
        ]

    def _terminate_namespaces(self) -> None:
        live = self._live()
        for ns_key, namespace in live.items():
            if ns_key[0] != NAMESPACES or not namespace["metadata"].get("deletionTimestamp"):
                continue
            inside = [k for k in live if k[1] == ns_key[2] and self.resources[k[0]].namespaced]
            for key in inside:
                if not live[key]["metadata"].get("deletionTimestamp"):
                    self._delete(key, {"propagationPolicy": "Background"})
            remaining = [(k, self.objects[k].raw) for k in inside if not self.objects[k].deleted]
            status = namespace.get("status") or {}
            conditions = _namespace_conditions(status.get("conditions") or [], remaining)
            if conditions != status.get("conditions"):
                change = {"status": {"conditions": conditions}}
                self._update(ns_key, "status", lambda o, c=change: _merge(o, c))  # type: ignore[misc]
            finalizers = (namespace.get("spec") or {}).get("finalizers") or []
            if not remaining and NAMESPACE_FINALIZER in finalizers:
                left = {"spec": {"finalizers": [f for f in finalizers if f != NAMESPACE_FINALIZER]}}
                self._update(ns_key, "finalize", lambda _, left=left: left)  # type: ignore[misc]

    # --- reading: discovery, tables, watches --------------------------------------------------

    def _discovery(self, path: str, unknown: Exception) -> Obj:
        groups: dict[str, list[str]] = {}  # group: versions, the preferred first
        by_priority = sorted(self._served(), key=lambda r: _version_order(str(r.version)))
        for res in reversed(by_priority):
            if res.group and res.version not in groups.setdefault(str(res.group), []):
                groups[str(res.group)].append(str(res.version))

        def group(name: str) -> Obj:
            versions = [{"groupVersion": f"{name}/{v}", "version": v} for v in groups[name]]
            return {"name": name, "versions": versions, "preferredVersion": versions[0]}

        if path == "/version":
            return VERSION
        if path == "/api":
            return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
        if path == "/apis":
            listed = [group(name) for name in sorted(groups)]
            return {"kind": "APIGroupList", "apiVersion": "v1", "groups": listed}
        if (m := re.fullmatch(r"/apis/([^/]+)", path)) and m[1] in groups:
            return {"kind": "APIGroup", "apiVersion": "v1", **group(m[1])}
        m = re.fullmatch(r"/api/(v1)|/apis/([^/]+)/([^/]+)", path)
        gv = (m[2] or "", m[3] or m[1]) if m else None
        if not (served := [r for r in self._served() if (r.group, r.version) == gv]):
            raise unknown
        entries = []
        for res in served:
            info = self.resources[res]
            entry: Obj = {"name": res.plural, "kind": info.kind, "namespaced": info.namespaced}
            entry |= {"singularName": info.singular, "verbs": sorted(info.verbs)}
            entries.append(
                entry | {"shortNames": [*info.shortnames], "categories": [*info.categories]}
            )
            for sub in sorted(info.subresources):
                verbs = ["update"] if sub == "finalize" else ["get", "patch", "update"]
                entries.append(
                    entry | {"name": f"{res.plural}/{sub}", "singularName": "", "verbs": verbs}
                )
        list_ = {"groupVersion": _gv(served[0]), "resources": entries}
        return {"kind": "APIResourceList", "apiVersion": "v1", **list_}

    def _table(self, res: resource, objs: list[Obj]) -> Obj:
        """Server-side printing: Name, then the CRD's additionalPrinterColumns (or Age)."""
        columns = self._columns.get(res) or [AGE_COLUMN]
        rows = []
        for obj in objs:
            cells = [obj["metadata"]["name"]]
            for column in columns:
                value = next(iter(jsonpath(obj, column["jsonPath"])), None)
                cells.append(_age(value) if value and column["type"] == "date" else value)
            partial = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1"}
            rows.append({"cells": cells, "object": partial | {"metadata": obj["metadata"]}})
        definitions = [NAME_COLUMN, *({**COLUMN, **column} for column in columns)]
        table = {"metadata": {"resourceVersion": str(self._rv)}, "columnDefinitions": definitions}
        return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", **table, "rows": rows}

    async def _watch(
        self, req: Request, res: resource, ns: str | None, table: bool
    ) -> aiohttp.web.StreamResponse:
        raw, params = req._raw_request, dict(req.params)
        assert raw is not None
        if req.name:  # a watch on an object's URL is a watch filtered by its name
            by_name = f"metadata.name={req.name}"
            params["fieldSelector"] = ",".join(filter(None, [params.get("fieldSelector"), by_name]))
        since = params.get("resourceVersion") or "0"
        if not since.isdigit():
            raise _error(400, "BadRequest", f"invalid resourceVersion: {since}")
        self._matches({"metadata": {}}, params)  # a bad selector fails before the stream starts
        loop = asyncio.get_running_loop()
        deadline = loop.time() + float(params.get("timeoutSeconds") or 1800)
        backlog: list[Obj] = []
        cursor = bisect.bisect_right(self._events, int(since), key=lambda e: e[0])
        if since == "0" or params.get("sendInitialEvents") == "true":  # the current state first
            backlog = [{"type": "ADDED", "object": obj} for obj in self._list(res, ns, params)]
            cursor = len(self._events)
        if params.get("sendInitialEvents") == "true":  # client-go's WatchList waits for this
            meta: Obj = {"annotations": {"k8s.io/initial-events-end": "true"}}
            meta |= {"resourceVersion": str(self._rv)}
            bookmark = {"kind": self.resources[res].kind, "apiVersion": _gv(res), "metadata": meta}
            backlog.append({"type": "BOOKMARK", "object": bookmark})
        response = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(raw)
        with contextlib.suppress(ConnectionError):
            while not (self._closing or raw.transport is None or raw.transport.is_closing()):
                tick, events = self._tick, [*backlog]
                for _, r, event in self._events[cursor:]:
                    obj = event["object"]
                    if r == res and ns in (None, obj["metadata"].get("namespace")):
                        events += [event] if self._matches(obj, params) else []
                backlog, cursor = [], len(self._events)
                for event in events:
                    if table and event["type"] != "BOOKMARK":
                        event = event | {"object": self._table(res, [event["object"]])}
                    await response.write(json.dumps(event).encode() + b"\n")
                if (remaining := deadline - loop.time()) <= 0:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(tick.wait(), min(remaining, 1.0))
            await response.write_eof()
        return response

    def _served(self) -> list[resource]:
        return [resource(r) for r in self.resources]

    def _wake(self) -> None:
        self._tick.set()
        self._tick = asyncio.Event()


def _gv(res: resource) -> str:
    return f"{res.group}/{res.version}" if res.group else str(res.version)


def _access(
    raw: aiohttp.web.BaseRequest,
    res: resource | None,
    sub: str | None,
    namespace: str | None,
    name: str | None,
) -> Access:
    """The RBAC attributes of a request, as k8s.io/apiserver's RequestInfo derives them."""
    auth, agent = raw.headers.get("Authorization", ""), raw.headers.get("User-Agent", "")
    user = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else None
    if res is None:
        return Access(raw.method.lower(), "", "", None, None, user, raw.path, agent)
    method, query = raw.method, raw.query
    if method == "GET" and query.get("watch") in ("true", "1"):  # as _serve tells a watch
        verb = "watch"
    elif method == "GET":
        verb = "get" if name else "list"
    elif method == "DELETE":
        verb = "delete" if name else "deletecollection"
    else:
        verb = {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method, method.lower())
    if verb in ("list", "watch") and not name:  # resourceNames can match these only this way
        for term in query.get("fieldSelector", "").split(","):
            if m := re.fullmatch(r"\s*metadata\.name\s*==?\s*(\S+)\s*", term):
                name = m[1]
    group, plural = str(res.group or ""), str(res.plural)
    if (group, plural) == ("", "namespaces") and name:
        namespace = name  # a Namespace is in itself, so a Role can grant reading its own
    resource_ = f"{plural}/{sub}" if sub else plural
    return Access(verb, group, resource_, namespace, name, user, raw.path, agent)


def _spec(obj: Obj) -> Obj:
    return {key: value for key, value in obj.items() if key not in ("metadata", "status")}


def _body(req: Request) -> Obj:
    if not isinstance(req.data, dict):
        raise _error(400, "BadRequest", "the body must be a JSON object")
    return copy.deepcopy(req.data)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
