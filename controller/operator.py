"""kopf handlers: thin. Every handler calls the same ``reconcile_deployment``.

Create, update, resume and a jittered timer all run one level-based pass over the object as it is
now; delete removes the children and leaves the registry aliases alone (the registry is shared
with other tools and the aliases are history, not cluster state; Git decides them). kopf's own
bookkeeping (finalizer, progress, last-handled configuration) lives in ``mlgitops.io`` annotations,
not in status, so status holds only the contract. Configuration comes from ``MLGITOPS_*``
environment variables, which ``mlgitops operator`` sets from its flags, so ``kopf run -m
controller.operator`` works the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import math
import os
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kopf
from aiohttp import web

from controller import metrics
from controller.api.documents import API_VERSION, GROUP, Environment
from controller.errors import InvalidInput, Unavailable
from controller.planning.children import RenderContext
from controller.reconcile_cluster import ModelRegistry, ObjectView, reconcile_deployment
from controller.runtimes.kubernetes import KubeCluster, contains

VERSION = API_VERSION.split("/")[1]
MD = (GROUP, VERSION, "modeldeployments")
ENVS = (GROUP, VERSION, "environments")
log = logging.getLogger("mlgitops.operator")


@dataclass
class Config:
    env: str = field(default_factory=lambda: os.environ.get("MLGITOPS_ENV", ""))
    repo: str | None = field(default_factory=lambda: os.environ.get("MLGITOPS_REPO") or None)
    namespace: str | None = field(
        default_factory=lambda: os.environ.get("MLGITOPS_NAMESPACE") or None
    )
    poll_seconds: float = field(
        default_factory=lambda: float(os.environ.get("MLGITOPS_POLL_SECONDS", "30"))
    )
    resync_seconds: float = field(
        default_factory=lambda: float(os.environ.get("MLGITOPS_RESYNC_SECONDS", "300"))
    )
    image: str = field(
        default_factory=lambda: os.environ.get("MLGITOPS_IMAGE", "ghcr.io/mlgitops/mlgitops:0.1.0")
    )
    http_port: int = field(
        default_factory=lambda: int(os.environ.get("MLGITOPS_HTTP_PORT", "8080"))
    )
    state_dir: Path = field(
        default_factory=lambda: Path(os.environ.get("MLGITOPS_STATE_DIR", ".mlgitops"))
    )
    webhook_token: str | None = field(
        default_factory=lambda: os.environ.get("MLGITOPS_WEBHOOK_TOKEN") or None
    )


CONFIG = Config()


class _Runtime:
    """Things built once at startup and shared by handler threads."""

    def __init__(self) -> None:
        self.cluster: KubeCluster | None = None
        self.registries: dict[str, ModelRegistry] = {}
        self.object_locks: dict[str, threading.Lock] = {}
        self.last_pass: dict[str, float] = {}  # uid -> time.monotonic() a pass last ended
        self.lock = threading.Lock()
        self.sync_now = threading.Event()
        self.stop = threading.Event()
        self.git_ready = threading.Event()
        self.last_sync: dict[str, Any] = {}

    def object_lock(self, uid: str) -> threading.Lock:
        with self.lock:
            return self.object_locks.setdefault(uid, threading.Lock())

    def registry_for(self, tracking_uri: str | None) -> ModelRegistry:
        from controller.registry import MlflowRegistry, embedded_tracking_uri

        uri = tracking_uri or embedded_tracking_uri(CONFIG.state_dir.resolve())
        with self.lock:
            if uri not in self.registries:
                self.registries[uri] = MlflowRegistry(uri)
            return self.registries[uri]


RUNTIME = _Runtime()


def _context(environment: Environment) -> RenderContext:
    return RenderContext(
        environment=environment.metadata.name,
        image=CONFIG.image,
        tracking_uri=environment.spec.registry.tracking_uri,
        data_root=environment.spec.data_root,
    )


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.scanning.disabled = True  # CRDs are known; no cluster-wide CRD watch (RBAC)
    settings.posting.level = logging.WARNING  # our own Events only, not one per handler run
    settings.execution.max_workers = int(os.environ.get("MLGITOPS_WORKERS", "16"))
    settings.watching.server_timeout = 270
    settings.networking.request_timeout = 60
    # A deletion that lands while a resync pass runs must wait for that pass (a thread kopf
    # cannot cancel) before the finalizer goes. kopf re-checks such a timer every 60 s by
    # default, so the object would linger a minute; a pass takes well under a second.
    settings.background.cancellation_polling = 1.0
    RUNTIME.cluster = KubeCluster(pool_size=(settings.execution.max_workers or 16) + 4)
    await _start_http()
    if CONFIG.repo:
        threading.Thread(target=_git_loop, name="mlgitops-git", daemon=True).start()
    else:
        RUNTIME.git_ready.set()


@kopf.on.cleanup()
async def cleanup(**_: Any) -> None:
    RUNTIME.stop.set()
    RUNTIME.sync_now.set()


@kopf.index(*ENVS)
def environments(*, name: str, namespace: str | None, body: kopf.Body, **_: Any) -> dict[str, Any]:
    """Environments by namespace, kept current by kopf's watch: no API read per pass."""
    return {
        namespace or "": {
            "name": name,
            "body": {
                "apiVersion": API_VERSION,
                "kind": "Environment",
                "metadata": {"name": name},
                "spec": dict(body.spec),
            },
        }
    }


def _environment(index: kopf.Index[str, Any], namespace: str) -> Environment | None:
    wanted = CONFIG.env
    for entry in index.get(namespace, []):
        if not wanted or entry["name"] == wanted:
            try:
                return Environment.model_validate(entry["body"])
            except ValueError:
                return None
    return None


def _reconcile(body: kopf.Body, environments: kopf.Index[str, Any]) -> None:
    # kopf may run the timer and a change handler of one object at once; passes of one object
    # must not interleave (two would both move an alias and record it twice).
    uid = body.get("metadata", {}).get("uid", "")
    with RUNTIME.object_lock(uid):
        try:
            _reconcile_locked(body, environments)
        finally:
            RUNTIME.last_pass[uid] = time.monotonic()


def _reconcile_locked(body: kopf.Body, environments: kopf.Index[str, Any]) -> None:
    assert RUNTIME.cluster is not None
    meta = body.get("metadata", {})
    # Read the object afresh under the lock: the body kopf hands a handler is a snapshot, and a
    # pass that ran meanwhile (timer or change) may have written status this one must build on.
    fresh = RUNTIME.cluster.get(API_VERSION, "ModelDeployment", meta.get("namespace"), meta["name"])
    if fresh is None or fresh.get("metadata", {}).get("uid") != meta.get("uid"):
        return  # deleted (or replaced) meanwhile; the delete handler or the new object's pass acts
    if fresh.get("metadata", {}).get("deletionTimestamp"):
        # Being deleted: the delete handler removes the children; a pass now would put them
        # back, and its status write would race kopf's removal of the finalizer.
        return
    obj = ObjectView.from_body(fresh)
    started = time.perf_counter()
    result = reconcile_deployment(
        obj=obj,
        environment=_environment(environments, obj.namespace),
        registry_for=RUNTIME.registry_for,
        cluster=RUNTIME.cluster,
        context=_context,
    )
    metrics.RECONCILE_SECONDS.observe(time.perf_counter() - started)
    if result.changed:
        # Written here, under the object's lock, not through kopf's patch (applied only after
        # the handler returns): the next pass of this object must read this status.
        stale = dict.fromkeys(set(obj.status) - set(result.status))
        RUNTIME.cluster.patch_status(
            API_VERSION, "ModelDeployment", obj.namespace, obj.name, {**stale, **result.status}
        )
    ready = next((c for c in result.status.get("conditions", []) if c["type"] == "Ready"), None)
    metrics.READY.labels(namespace=obj.namespace, name=obj.name).set(
        1 if ready and ready["status"] == "True" else 0
    )
    for change in result.changes:
        metrics.ALIAS_CHANGES.labels(alias=change.alias).inc()
        kopf.event(
            body,
            type="Normal",
            reason="AliasChanged",
            message=f"{change.model}: {change.alias} {change.previous or '(none)'} -> "
            f"{change.version or '(none)'}",
        )
    if result.pruned:
        kopf.event(body, type="Normal", reason="Pruned", message=", ".join(result.pruned))
    error = result.error
    if error is None:
        return
    reason = "InvalidSpec" if isinstance(error, InvalidInput) else getattr(error, "reason", "Error")
    metrics.RECONCILE_ERRORS.labels(reason=reason).inc()
    if result.changed or result.changes:
        kopf.event(body, type="Warning", reason=reason, message=str(error)[:1000])
    if isinstance(error, Unavailable):
        # Keep the status written above, and let kopf retry with backoff.
        raise kopf.TemporaryError(str(error), delay=15)


@kopf.on.resume(*MD)
@kopf.on.create(*MD)
@kopf.on.update(*MD)
def on_change(*, body: kopf.Body, **kwargs: Any) -> None:
    _reconcile(body, kwargs["environments"])


def _jitter(**_: Any) -> float:
    return random.uniform(0, CONFIG.resync_seconds)


@kopf.timer(*MD, interval=CONFIG.resync_seconds, initial_delay=_jitter, sharp=False)
def resync(*, body: kopf.Body, **kwargs: Any) -> None:
    """The periodic level-based pass: restores children deleted or edited by hand.

    Skipped when a pass of this object (a change, or the create) ended less than half an
    interval ago: that pass saw the world as recently, so the last pass is never more than 1.5
    intervals old, and a timer that fires just after a create or update pass does not repeat it.
    """
    since = time.monotonic() - RUNTIME.last_pass.get(
        body.get("metadata", {}).get("uid", ""), -math.inf
    )
    if since < CONFIG.resync_seconds / 2:
        return
    _reconcile(body, kwargs["environments"])


@kopf.on.delete(*MD)
def on_delete(*, body: kopf.Body, **_: Any) -> None:
    """Remove the children (a real cluster would also garbage-collect them by owner reference).

    Registry aliases are left as they are: deleting a Kubernetes object must not change what
    other environments, batch jobs or people see in the shared registry.
    """
    assert RUNTIME.cluster is not None
    obj = ObjectView.from_body(body)
    with RUNTIME.object_lock(obj.uid):  # after a pass in flight, which may have applied children
        fresh = RUNTIME.cluster.get(API_VERSION, "ModelDeployment", obj.namespace, obj.name)
        if fresh is not None and fresh.get("metadata", {}).get("uid") == obj.uid:
            obj = ObjectView.from_body(fresh)  # its inventory includes that pass's children
        for entry in (obj.status or {}).get("inventory", []):
            RUNTIME.cluster.delete(entry["apiVersion"], entry["kind"], obj.namespace, entry["name"])
    with contextlib.suppress(KeyError):
        metrics.READY.remove(obj.namespace, obj.name)
    with RUNTIME.lock:
        RUNTIME.object_locks.pop(obj.uid, None)
        RUNTIME.last_pass.pop(obj.uid, None)


# --- Git sync ------------------------------------------------------------------------------------


def _git_loop() -> None:
    from controller.gitsync import sync_environment
    from controller.sources import GitSource
    from controller.state import StateDir

    assert RUNTIME.cluster is not None
    assert CONFIG.repo
    state = StateDir(CONFIG.state_dir.resolve())
    source = GitSource(CONFIG.repo, cache_dir=state.git_cache)
    while not RUNTIME.stop.is_set():
        result = sync_environment(
            env=CONFIG.env,
            source=source,
            cluster=RUNTIME.cluster,
            contains=contains,
            namespace=CONFIG.namespace,
        )
        RUNTIME.last_sync = {
            "revision": result.revision,
            "error": str(result.error or ""),
            "applied": result.applied,
            "pruned": result.pruned,
            "time": time.time(),
        }
        if result.error is not None:
            log.warning("git sync of %s applied nothing: %s", CONFIG.env, result.error)
        elif result.applied or result.pruned:
            log.info(
                "git sync %s: applied %s, pruned %s",
                (result.revision or "")[:7],
                result.applied,
                result.pruned,
            )
        source.close()  # a fresh handle next time: a remote mirror fetches only what is new
        RUNTIME.git_ready.set()
        RUNTIME.sync_now.wait(CONFIG.poll_seconds)
        RUNTIME.sync_now.clear()


# --- HTTP: metrics, health, webhook --------------------------------------------------------------


def verify_signature(token: str, body: bytes, header: str | None) -> bool:
    """GitHub-style ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>``."""
    if not header or not header.startswith("sha256="):
        return False
    expected = hmac.new(token.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header.removeprefix("sha256="))


async def _metrics(_: web.Request) -> web.Response:
    return web.Response(body=metrics.render(), content_type="text/plain", charset="utf-8")


async def _healthz(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _readyz(_: web.Request) -> web.Response:
    if not RUNTIME.git_ready.is_set():
        return web.json_response({"status": "waiting for the first Git sync"}, status=503)
    return web.json_response({"status": "ready", "lastSync": RUNTIME.last_sync})


async def _webhook(request: web.Request) -> web.Response:
    token = CONFIG.webhook_token
    if not token or not CONFIG.repo:
        return web.json_response({"error": "webhook disabled: no token or no --repo"}, status=404)
    body = await request.read()
    if not verify_signature(token, body, request.headers.get("X-Hub-Signature-256")):
        return web.json_response({"error": "bad signature"}, status=401)
    RUNTIME.sync_now.set()
    return web.json_response({"status": "sync triggered"}, status=202)


async def _start_http() -> None:
    app = web.Application(client_max_size=1024 * 1024)
    app.add_routes(
        [
            web.get("/metrics", _metrics),
            web.get("/healthz", _healthz),
            web.get("/readyz", _readyz),
            web.post("/webhook", _webhook),
        ]
    )
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    host = os.environ.get(
        "MLGITOPS_HTTP_HOST", "0.0.0.0"
    )  # a pod's port: reachable by kubelet and Prometheus
    await web.TCPSite(runner, host, CONFIG.http_port).start()
    log.info("metrics, health and webhook on %s:%d", host, CONFIG.http_port)


def run(*, namespaces: list[str] | None, clusterwide: bool, verbose: bool = False) -> None:
    """Run the operator until SIGINT/SIGTERM (kopf handles the signals)."""
    kopf.configure(verbose=verbose)  # kopf's log format on stderr, as `kopf run` sets it up
    asyncio.run(
        kopf.operator(
            standalone=True,
            clusterwide=clusterwide,
            namespaces=namespaces or [],
        )
    )
