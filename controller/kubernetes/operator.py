"""The kopf operator: thin handlers that all call the same ``reconcile_deployment``.

Create, update, resume and a jittered timer all run one level-based pass over the object as it is
now; delete removes the children and leaves the registry aliases alone (the registry is shared
with other tools and the aliases are history, not cluster state; Git decides them). kopf's own
bookkeeping (finalizer, progress, last-handled configuration) lives in ``mlgitops.io`` annotations,
not in status, so status holds only the contract.

Nothing here is configured at import: ``mlgitops operator`` builds an :class:`OperatorConfig`
from its flags and calls :func:`run`, which builds the per-run state (:class:`Operator`), a kopf
registry whose handlers close over it, and kopf's settings. So two operators can run in one
process (tests), and every setting, the resync interval included, is an argument.
This is the only module that imports kopf.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kopf

from controller.api.documents import API_VERSION, GROUP, Environment
from controller.errors import InvalidInput, Unavailable
from controller.kubernetes import http, metrics
from controller.kubernetes.client import KubeCluster
from controller.kubernetes.deployment import ObjectView, reconcile_deployment
from controller.kubernetes.gitsync import sync_environment
from controller.planning.children import RenderContext
from controller.planning.ports import Registry
from controller.state import StateDir

VERSION = API_VERSION.split("/")[1]
MD = (GROUP, VERSION, "modeldeployments")
ENVS = (GROUP, VERSION, "environments")
DEFAULT_IMAGE = "ghcr.io/mlgitops/mlgitops:0.1.0"
log = logging.getLogger("mlgitops.operator")


@dataclass(frozen=True)
class OperatorConfig:
    """Everything the operator is told at start, from ``mlgitops operator``'s flags."""

    env: str
    namespace: str | None = None  # the namespace watched (and Git-synced into); None: all
    repo: str | None = None  # the config repository, or None (ModelDeployments by kubectl)
    poll_seconds: float = 30.0
    resync_seconds: float = 300.0
    image: str = DEFAULT_IMAGE
    http_host: str = "0.0.0.0"  # a pod's port: reachable by kubelet and Prometheus
    http_port: int = 8080
    state_dir: Path = Path(".mlgitops")
    webhook_token: str | None = None
    workers: int = 16
    verbose: bool = False


class Operator:
    """What one run of the operator builds once and shares between handler threads."""

    def __init__(self, config: OperatorConfig) -> None:
        self.config = config
        self.cluster: KubeCluster | None = None
        self.registries: dict[str, Registry] = {}
        self.object_locks: dict[str, threading.Lock] = {}
        self.last_pass: dict[str, float] = {}  # uid -> time.monotonic() a pass last ended
        self.lock = threading.Lock()
        self.sync_now = threading.Event()
        self.stop = threading.Event()
        self.git_ready = threading.Event()
        self.last_sync: dict[str, Any] = {}

    # -- shared state ------------------------------------------------------------------------------

    def object_lock(self, uid: str) -> threading.Lock:
        with self.lock:
            return self.object_locks.setdefault(uid, threading.Lock())

    def registry_for(self, tracking_uri: str | None) -> Registry:
        from controller.registry import MlflowRegistry, embedded_tracking_uri

        uri = tracking_uri or embedded_tracking_uri(self.config.state_dir.resolve())
        with self.lock:
            if uri not in self.registries:
                self.registries[uri] = MlflowRegistry(uri)
            return self.registries[uri]

    def context(self, environment: Environment) -> RenderContext:
        return RenderContext(
            environment=environment.metadata.name,
            image=self.config.image,
            tracking_uri=environment.spec.registry.tracking_uri,
            data_root=environment.spec.data_root,
        )

    def environment(self, index: kopf.Index[str, Any], namespace: str) -> Environment | None:
        wanted = self.config.env
        for entry in index.get(namespace, []):
            if not wanted or entry["name"] == wanted:
                try:
                    return Environment.model_validate(entry["body"])
                except ValueError:
                    return None
        return None

    def readiness(self) -> tuple[bool, Mapping[str, Any]]:
        if not self.git_ready.is_set():
            return False, {"status": "waiting for the first Git sync"}
        return True, {"status": "ready", "lastSync": self.last_sync}

    # -- one pass ----------------------------------------------------------------------------------

    def reconcile(self, body: kopf.Body, environments: kopf.Index[str, Any]) -> None:
        # kopf may run the timer and a change handler of one object at once; passes of one
        # object must not interleave (two would both move an alias and record it twice).
        uid = body.get("metadata", {}).get("uid", "")
        with self.object_lock(uid):
            try:
                self._reconcile_locked(body, environments)
            finally:
                self.last_pass[uid] = time.monotonic()

    def _reconcile_locked(self, body: kopf.Body, environments: kopf.Index[str, Any]) -> None:
        cluster = self.cluster
        assert cluster is not None
        meta = body.get("metadata", {})
        # Read the object afresh under the lock: the body kopf hands a handler is a snapshot, and
        # a pass that ran meanwhile (timer or change) may have written status this one builds on.
        fresh = cluster.get(API_VERSION, "ModelDeployment", meta.get("namespace"), meta["name"])
        if fresh is None or fresh.get("metadata", {}).get("uid") != meta.get("uid"):
            return  # deleted (or replaced) meanwhile; the delete handler or the new object acts
        if fresh.get("metadata", {}).get("deletionTimestamp"):
            # Being deleted: the delete handler removes the children; a pass now would put them
            # back, and its status write would race kopf's removal of the finalizer.
            return
        obj = ObjectView.from_body(fresh)
        started = time.perf_counter()
        result = reconcile_deployment(
            obj=obj,
            environment=self.environment(environments, obj.namespace),
            registry_for=self.registry_for,
            cluster=cluster,
            context=self.context,
        )
        metrics.RECONCILE_SECONDS.observe(time.perf_counter() - started)
        if result.changed:
            # Written here, under the object's lock, not through kopf's patch (applied only
            # after the handler returns): the next pass of this object must read this status.
            stale = dict.fromkeys(set(obj.status) - set(result.status))
            cluster.patch_status(
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
        reason = (
            "InvalidSpec" if isinstance(error, InvalidInput) else getattr(error, "reason", "Error")
        )
        metrics.RECONCILE_ERRORS.labels(reason=reason).inc()
        if result.changed or result.changes:
            kopf.event(body, type="Warning", reason=reason, message=str(error)[:1000])
        if isinstance(error, Unavailable):
            # Keep the status written above, and let kopf retry with backoff.
            raise kopf.TemporaryError(str(error), delay=15)

    def resync(self, body: kopf.Body, environments: kopf.Index[str, Any]) -> None:
        """The periodic level-based pass: restores children deleted or edited by hand.

        Skipped when a pass of this object (a change, or the create) ended less than half an
        interval ago: that pass saw the world as recently, so the last pass is never more than
        1.5 intervals old, and a timer that fires just after a create or update pass does not
        repeat it.
        """
        uid = body.get("metadata", {}).get("uid", "")
        since = time.monotonic() - self.last_pass.get(uid, -math.inf)
        if since < self.config.resync_seconds / 2:
            return
        self.reconcile(body, environments)

    def delete(self, body: kopf.Body) -> None:
        """Remove the children (a real cluster would also garbage-collect them by owner reference).

        Registry aliases are left as they are: deleting a Kubernetes object must not change what
        other environments, batch jobs or people see in the shared registry.
        """
        cluster = self.cluster
        assert cluster is not None
        obj = ObjectView.from_body(body)
        with self.object_lock(obj.uid):  # after a pass in flight, which may have applied children
            fresh = cluster.get(API_VERSION, "ModelDeployment", obj.namespace, obj.name)
            if fresh is not None and fresh.get("metadata", {}).get("uid") == obj.uid:
                obj = ObjectView.from_body(fresh)  # its inventory includes that pass's children
            for entry in (obj.status or {}).get("inventory", []):
                cluster.delete(entry["apiVersion"], entry["kind"], obj.namespace, entry["name"])
        with contextlib.suppress(KeyError):
            metrics.READY.remove(obj.namespace, obj.name)
        with self.lock:
            self.object_locks.pop(obj.uid, None)
            self.last_pass.pop(obj.uid, None)

    # -- Git sync ----------------------------------------------------------------------------------

    def git_loop(self) -> None:
        from controller.sources import GitSource

        cluster, repo = self.cluster, self.config.repo
        assert cluster is not None
        assert repo
        state = StateDir(self.config.state_dir.resolve())
        source = GitSource(repo, cache_dir=state.git_cache)
        while not self.stop.is_set():
            result = sync_environment(
                env=self.config.env,
                source=source,
                cluster=cluster,
                namespace=self.config.namespace,
            )
            self.last_sync = {
                "revision": result.revision,
                "error": str(result.error or ""),
                "applied": result.applied,
                "pruned": result.pruned,
                "time": time.time(),
            }
            if result.error is not None:
                log.warning("git sync of %s applied nothing: %s", self.config.env, result.error)
            elif result.applied or result.pruned:
                log.info(
                    "git sync %s: applied %s, pruned %s",
                    (result.revision or "")[:7],
                    result.applied,
                    result.pruned,
                )
            source.close()  # a fresh handle next time: a remote mirror fetches only what is new
            self.git_ready.set()
            self.sync_now.wait(self.config.poll_seconds)
            self.sync_now.clear()


def settings_for(config: OperatorConfig) -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.scanning.disabled = True  # CRDs are known; no cluster-wide CRD watch (RBAC)
    settings.posting.level = logging.WARNING  # our own Events only, not one per handler run
    settings.execution.max_workers = config.workers
    settings.watching.server_timeout = 270
    settings.networking.request_timeout = 60
    # A deletion that lands while a resync pass runs must wait for that pass (a thread kopf
    # cannot cancel) before the finalizer goes. kopf re-checks such a timer every 60 s by
    # default, so the object would linger a minute; a pass takes well under a second.
    settings.background.cancellation_polling = 1.0
    return settings


def build_registry(op: Operator) -> kopf.OperatorRegistry:
    """kopf's handlers for one operator run, each a closure over ``op``.

    Handler ids are fixed (kopf keys its progress annotations by them), so renaming a function
    here does not orphan the bookkeeping of objects in a cluster.
    """
    registry = kopf.OperatorRegistry()
    config = op.config
    # kopf's default registry carries its login handlers; a registry of our own must name one.
    # The Kubernetes client's: the kubeconfig ($KUBECONFIG) or the pod's service account, as
    # KubeCluster itself logs in.
    kopf.on.login(id="login", registry=registry)(kopf.login_via_client)

    @kopf.on.startup(registry=registry)
    async def startup(**_: Any) -> None:
        op.cluster = KubeCluster(pool_size=config.workers + 4)
        await http.start(
            host=config.http_host,
            port=config.http_port,
            readiness=op.readiness,
            webhook_token=config.webhook_token,
            on_push=op.sync_now.set if config.repo else None,
        )
        if config.repo:
            threading.Thread(target=op.git_loop, name="mlgitops-git", daemon=True).start()
        else:
            op.git_ready.set()

    @kopf.on.cleanup(registry=registry)
    async def cleanup(**_: Any) -> None:
        op.stop.set()
        op.sync_now.set()

    @kopf.index(*ENVS, id="environments", registry=registry)
    def environments(
        *, name: str, namespace: str | None, body: kopf.Body, **_: Any
    ) -> dict[str, Any]:
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

    @kopf.on.resume(*MD, id="on_change", registry=registry)
    @kopf.on.create(*MD, id="on_change", registry=registry)
    @kopf.on.update(*MD, id="on_change", registry=registry)
    def on_change(*, body: kopf.Body, **kwargs: Any) -> None:
        op.reconcile(body, kwargs["environments"])

    def jitter(**_: Any) -> float:
        return random.uniform(0, config.resync_seconds)

    @kopf.timer(
        *MD,
        id="resync",
        interval=config.resync_seconds,
        initial_delay=jitter,
        sharp=False,
        registry=registry,
    )
    def resync(*, body: kopf.Body, **kwargs: Any) -> None:
        op.resync(body, kwargs["environments"])

    @kopf.on.delete(*MD, id="on_delete", registry=registry)
    def on_delete(*, body: kopf.Body, **_: Any) -> None:
        op.delete(body)

    return registry


def run(config: OperatorConfig) -> None:
    """Run the operator until SIGINT/SIGTERM (kopf handles the signals)."""
    kopf.configure(verbose=config.verbose)  # kopf's log format on stderr, as `kopf run` does
    op = Operator(config)
    asyncio.run(
        kopf.operator(
            registry=build_registry(op),
            settings=settings_for(config),
            standalone=True,
            clusterwide=config.namespace is None,
            namespaces=[config.namespace] if config.namespace is not None else [],
        )
    )
