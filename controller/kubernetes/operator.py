"""The kopf operator: every reason to look at a ModelDeployment again queues the same pass.

A pass (``deployment.reconcile_deployment``) reads the object as it is now, never the event that
woke it. What wakes it: the object's own watch events; events of its children (the serving
Deployment and Service, the CronJobs, and the training and validation Jobs, watched by the
``managed-by`` label), so a child deleted or scaled by hand is put back within seconds and the
end of a rollout or of a Job is noticed as it happens; a change of the namespace's Environment;
and a resync timer as the safety net. All of them go through one work queue
(``queue.WorkQueue``), which coalesces bursts, never runs two passes of one object at once, and
keeps the resync as a delayed request. Events echoing the operator's own writes (it knows the
resourceVersions it wrote) wake nothing.

A pass also runs a ModelDeployment's training (``training.JobRunner``) and promotion path
(``controller.promotion`` with ``validation.JobValidator``): a validation Job per new version,
and the resulting pins written back to the config repository as commits, which the Git sync
then applies like any other.

No finalizer: nothing of ours needs cleaning up when a ModelDeployment goes. Its children go by
owner reference (the garbage collector), and registry aliases are left as they are on purpose
(the registry is shared, and the aliases are history; Git decides them). So a delete never waits
for the operator, and an uninstalled or crashed operator never wedges a namespace. An object that
still carries the finalizer of an earlier version has it removed by kopf on first sight.

Nothing here is configured at import: ``mlgitops operator`` builds an :class:`OperatorConfig`
from its flags and calls :func:`run`, which builds the per-run state (:class:`Operator`), a kopf
registry whose handlers close over it, and kopf's settings. This is the only module that imports
kopf.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import datetime as dt
import functools
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import kopf
from pydantic import ValidationError

from controller.api.documents import API_VERSION, GROUP, Environment
from controller.api.loader import DeploymentDoc, Located
from controller.api.status import PromotionStatus, TrainingStatus
from controller.errors import InvalidInput, Problem, SyncFailed, Unavailable, one_line
from controller.kubernetes import http, metrics
from controller.kubernetes.client import KubeCluster
from controller.kubernetes.deployment import ObjectView, reconcile_deployment
from controller.kubernetes.gitsync import (
    SOURCE_ANNOTATION,
    GitSyncResult,
    report_failure,
    sync_environment,
)
from controller.kubernetes.queue import WorkQueue
from controller.kubernetes.training import JobRunner
from controller.kubernetes.validation import JobValidator
from controller.monitoring import AlertWatch
from controller.notify import Notifier
from controller.pipeline.pins import check_deployment
from controller.planning.children import MANAGED_BY, MD_LABEL, Owner, RenderContext
from controller.planning.ports import (
    CodeSource,
    Commit,
    Promoter,
    Registry,
    RegistryFor,
    Tracking,
)
from controller.planning.types import AliasEvent, Observed
from controller.promotion import ReadOnlyPromoter, promotion_pass
from controller.sources.webhook import push_urls, same_repo
from controller.state import StateDir
from controller.training import Event, training_pass

if TYPE_CHECKING:
    from aiohttp import web

VERSION = API_VERSION.split("/")[1]
MD = (GROUP, VERSION, "modeldeployments")
ENVS = (GROUP, VERSION, "environments")
# The children a pass renders, watched so that drift and rollouts are seen as they happen.
CHILDREN = {
    ("apps", "v1", "deployments"): "Deployment",
    ("", "v1", "services"): "Service",
    ("batch", "v1", "cronjobs"): "CronJob",
    ("batch", "v1", "jobs"): "Job",  # training and validation: a finished Job wakes its owner
}
DEFAULT_IMAGE = "ghcr.io/mlgitops/mlgitops:0.1.0"
CHILD_DELAY = 0.2  # coalesce a burst of child events (a rollout writes several) into one pass
RETRY_DELAY = 15.0  # after an unreachable registry or API server
OBSERVATION_TTL = 60.0  # how long a child-woken pass may reuse the last registry read
GIT_BACKOFF = 1.0  # first retry of a failed Git sync; doubles up to the poll interval
log = logging.getLogger("mlgitops.operator")

Key = tuple[str, str]  # (namespace, name) of a ModelDeployment


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
    ui: bool = False  # the dashboard on the HTTP port
    ui_token: str | None = None  # the dashboard's bearer token (the probes and metrics need none)


class Operator:
    """What one run of the operator builds once and shares between handlers and workers."""

    def __init__(self, config: OperatorConfig) -> None:
        self.config = config
        self.cluster: KubeCluster | None = None
        self.registries: dict[str, Registry] = {}
        self.trackings: dict[str, Tracking] = {}
        self.codes: dict[str, _Throttled] = {}
        self.trainers: dict[str, set[Key]] = {}  # code repository -> ModelDeployments it trains
        self.lock = threading.Lock()
        self.queue: WorkQueue[Key] = WorkQueue(self.process, workers=config.workers)
        self.known: dict[str, set[str]] = {}  # namespace -> ModelDeployments seen
        self.written: dict[tuple[str, str, str], str] = {}  # (kind, ns, name) -> our last rv
        self.wakes: dict[Key, str] = {}  # why a key is due: "child" (only children) or "full"
        self.child_wakes: dict[Key, list[tuple[str, str, str, str]]] = {}  # the child events
        self.children: dict[tuple[str, str, str], dict[str, Any]] = {}  # watched children
        self.resync_due: dict[Key, float] = {}  # monotonic time of each key's next resync
        self.observed: dict[Key, tuple[int, float, Observed]] = {}  # the last registry read
        self.environments: kopf.Index[str, Any] | None = None
        self.kopf_context: contextvars.Context | None = None  # for kopf.event from workers
        self.sync_now = threading.Event()
        self.stop = threading.Event()
        self.git_ready = threading.Event()
        self.git_thread: threading.Thread | None = None
        self.git_error: str | None = None  # why the last Git sync failed, None when it did not
        self.last_sync: dict[str, Any] = {}
        self.notifiers: dict[str, Notifier] = {}  # Environment name -> its notifications
        self.alerts = AlertWatch()  # the monitor alerts each registered model last showed
        self.notify_specs: dict[str, Any] = {}  # the spec.notifications each was configured with
        self.promoters: dict[tuple[str, str], Promoter] = {}  # (branch, author) -> write-back

    # -- shared state ------------------------------------------------------------------------------

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

    def environment(self, namespace: str) -> Environment | InvalidInput | None:
        """The namespace's Environment from kopf's index: None when there is none, the problem
        when it is invalid (applied by hand, say, with credentials in its tracking URI)."""
        wanted = self.config.env
        index: Mapping[str, Any] = self.environments if self.environments is not None else {}
        for entry in index.get(namespace, []):
            if not wanted or entry["name"] == wanted:
                try:
                    return Environment.model_validate(entry["body"])
                except ValidationError as exc:
                    problems = [
                        Problem(
                            f"environment/{entry['name']}",
                            None,
                            ".".join(str(p) for p in error["loc"]),
                            error["msg"].removeprefix("Value error, "),
                        )
                        for error in exc.errors()
                    ]
                    return InvalidInput(problems)
        return None

    def dashboard(self) -> list[web.RouteDef]:
        """The dashboard's routes (``--ui``): the objects through this run's cluster client, a
        model's record through its registry and tracking clients."""
        from controller.kubernetes.dashboard import KubeCollector
        from controller.registry import embedded_tracking_uri
        from controller.ui.app import Dashboard

        state = StateDir(self.config.state_dir.resolve())

        def tracking_for(uri: str | None) -> Tracking:
            return self.tracking_for(uri or embedded_tracking_uri(state.root))

        collector = KubeCollector(
            self.cluster_or_fail(),
            env=self.config.env,
            namespace=self.config.namespace,
            repo=self.config.repo,
            state=state,
            registry_for=self.registry_for,
            tracking_for=tracking_for,
        )
        return Dashboard(collector, token=self.config.ui_token).routes()

    def readiness(self) -> tuple[bool, Mapping[str, Any]]:
        if self.config.repo and not (self.git_thread and self.git_thread.is_alive()):
            return False, {"status": "Git sync is not running", "lastSync": self.last_sync}
        if not self.git_ready.is_set():
            return False, {"status": "waiting for the first Git sync"}
        if self.git_error:
            return False, {
                "status": f"Git sync failing: {self.git_error}",
                "lastSync": self.last_sync,
            }
        return True, {"status": "ready", "lastSync": self.last_sync}

    # -- what wakes a pass -------------------------------------------------------------------------

    def wrote(self, obj: Mapping[str, Any]) -> None:
        """Remember the resourceVersion of an object we just wrote: its echo wakes nothing."""
        meta = obj.get("metadata") or {}
        if meta.get("resourceVersion"):
            key = (str(obj.get("kind")), meta.get("namespace", ""), meta.get("name", ""))
            with self.lock:
                self.written[key] = meta["resourceVersion"]
        # Not into the children's cache: the watch alone feeds it, in the API server's order (a
        # write's response can return after a newer event, and would put an older body back).

    def echo(self, kind: str, body: Mapping[str, Any]) -> bool:
        """True when ``body`` is what our own last write of it left."""
        meta = body.get("metadata") or {}
        key = (kind, meta.get("namespace", ""), meta.get("name", ""))
        with self.lock:
            return bool(meta.get("resourceVersion")) and self.written.get(key) == meta.get(
                "resourceVersion"
            )

    def deployment_event(self, event: Mapping[str, Any], body: Mapping[str, Any]) -> None:
        meta = body.get("metadata") or {}
        key = (meta.get("namespace", ""), meta["name"])
        if event.get("type") == "DELETED":
            self.queue.forget(key)
            with self.lock:
                self.known.get(key[0], set()).discard(key[1])
                self.written.pop(("ModelDeployment", *key), None)
                self.wakes.pop(key, None)
                self.observed.pop(key, None)
                self.child_wakes.pop(key, None)
                self.resync_due.pop(key, None)
            with contextlib.suppress(KeyError):
                metrics.READY.remove(*key)
            return
        with self.lock:
            self.known.setdefault(key[0], set()).add(key[1])
        if not self.echo("ModelDeployment", body):
            self.wake(key, child=False)
            self.queue.add(key)

    def child_event(self, kind: str, event: Mapping[str, Any], body: Mapping[str, Any]) -> None:
        """Keep the child's latest body (a pass reads children from here, not from the API
        server) and queue a pass for its owner. Whether the event only echoes one of our own
        writes is decided when that pass is due, not now: the event can arrive before the write
        that caused it has returned to the pass that made it."""
        meta = body.get("metadata") or {}
        ns, name = meta.get("namespace", ""), meta.get("name", "")
        with self.lock:
            if event.get("type") == "DELETED":
                self.children.pop((kind, ns, name), None)
            else:
                self.children[(kind, ns, name)] = dict(body)
        owner = (meta.get("labels") or {}).get(MD_LABEL)
        if owner:
            key = (ns, owner)
            rv = "" if event.get("type") == "DELETED" else str(meta.get("resourceVersion", ""))
            with self.lock:
                self.child_wakes.setdefault(key, []).append((kind, ns, name, rv))
            self.wake(key, child=True)
            self.queue.add(key, delay=CHILD_DELAY)

    def only_echoes(self, key: Key) -> bool:
        """True when ``key`` is due only because of events echoing our own child writes."""
        with self.lock:
            events = self.child_wakes.pop(key, [])  # this pass covers them, whatever woke it
            if self.wakes.get(key, "idle") != "child":
                return False
            echoes = all(rv and self.written.get((k, ns, n)) == rv for k, ns, n, rv in events)
            if echoes:
                self.wakes.pop(key, None)
            return echoes

    def environment_event(self, namespace: str) -> None:
        with self.lock:
            names = sorted(self.known.get(namespace, ()))
        for name in names:
            self.wake((namespace, name), child=False)
            self.queue.add((namespace, name), delay=CHILD_DELAY)

    def wake(self, key: Key, *, child: bool) -> None:
        """Note why ``key`` is due: only its children changed, or more (its spec, its
        Environment). A resync, queued by the pass itself, counts as more."""
        with self.lock:
            if not child:
                self.wakes[key] = "full"
            elif self.wakes.get(key, "idle") == "idle":
                self.wakes[key] = "child"

    def registry_view(self, key: Key, generation: int) -> RegistryFor:
        """The registry for one pass of ``key``.

        A pass woken only by its children (a Deployment's rollout progressing, a child edited by
        hand) changes nothing in the registry and reads nothing the last pass did not: it reuses
        that pass's observation of the model, if it is of this generation, recent and left no
        alias moved. Every other pass (a spec change, an Environment change, the resync) reads
        the registry afresh. This halves the registry reads of a rollout.
        """
        with self.lock:
            mode = self.wakes.pop(key, "idle")
            cached = self.observed.get(key)
        reuse = (
            mode == "child"
            and cached is not None
            and cached[0] == generation
            and time.monotonic() - cached[1] < min(OBSERVATION_TTL, self.config.resync_seconds)
        )

        def registry_for(tracking_uri: str | None) -> Registry:
            registry = self.registry_for(tracking_uri)
            remember = functools.partial(self._remember, key, generation)
            if reuse and cached is not None:
                return _Observed(registry, cached[2], remember)
            return _Recording(registry, remember)

        return registry_for

    def cached_child(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        with self.lock:
            return self.children.get((kind, namespace, name))

    def _remember(self, key: Key, generation: int, seen: Observed) -> None:
        with self.lock:
            self.observed[key] = (generation, time.monotonic(), seen)

    # -- one pass ----------------------------------------------------------------------------------

    def process(self, key: Key) -> float | None:
        """One pass over the ModelDeployment ``key``; seconds until its next pass, or None."""
        context = self.kopf_context
        if context is None:
            return self._process(key)
        return context.copy().run(self._process, key)

    def _process(self, key: Key) -> float | None:
        if self.only_echoes(key):  # nothing changed but what we wrote: no pass, same resync
            return max(0.0, self.resync_due.get(key, time.monotonic()) - time.monotonic())
        delay = self._pass(key)
        if delay is not None:
            self.resync_due[key] = time.monotonic() + delay
        return delay

    def _pass(self, key: Key) -> float | None:
        cluster = self.cluster
        assert cluster is not None
        namespace, name = key
        fresh = cluster.get(API_VERSION, "ModelDeployment", namespace, name)
        if fresh is None:
            return None  # deleted meanwhile: its DELETED event forgets it
        if fresh.get("metadata", {}).get("deletionTimestamp"):
            # Being deleted (held by someone else's finalizer): its children go with it by owner
            # reference; a pass now would only put them back.
            return None
        obj = ObjectView.from_body(fresh)
        started = time.perf_counter()
        result = reconcile_deployment(
            obj=obj,
            environment=self.environment(obj.namespace),
            registry_for=self.registry_view(key, obj.generation),
            cluster=_Cached(cluster, self.cached_child),
            context=self.context,
            on_write=self.wrote,
            train=lambda environment, owner, doc: self.train(environment, owner, doc, fresh),
            promote=lambda environment, owner, doc: self.promote(environment, owner, doc, fresh),
            watch=lambda environment, owner, doc: self.watch(environment, doc, fresh),
        )
        metrics.RECONCILE_SECONDS.observe(time.perf_counter() - started)
        if result.error is not None:
            with self.lock:  # the registry may not have been read: the next pass reads it
                self.observed.pop(key, None)
        if result.changed:
            written = cluster.patch_status(
                API_VERSION,
                "ModelDeployment",
                obj.namespace,
                obj.name,
                merge_patch(obj.status, result.status),
            )
            self.wrote({**written, "kind": "ModelDeployment"})
        ready = next((c for c in result.status.get("conditions", []) if c["type"] == "Ready"), None)
        metrics.READY.labels(namespace=obj.namespace, name=obj.name).set(
            1 if ready and ready["status"] == "True" else 0
        )
        for change in result.changes:
            metrics.ALIAS_CHANGES.labels(alias=change.alias).inc()
            self.post(
                fresh,
                "Normal",
                "AliasChanged",
                f"{change.model}: {change.alias} {change.previous or '(none)'} -> "
                f"{change.version or '(none)'}",
            )
        if result.pruned:
            self.post(fresh, "Normal", "Pruned", ", ".join(result.pruned))
        error = result.error
        if error is not None:
            reason = (
                "InvalidSpec"
                if isinstance(error, InvalidInput)
                else getattr(error, "reason", "Error")
            )
            metrics.RECONCILE_ERRORS.labels(reason=reason).inc()
            if result.changed or result.changes:
                self.post(fresh, "Warning", reason, str(error)[:1000])
            if isinstance(error, Unavailable):
                return RETRY_DELAY  # the status above says why; try again soon
        # The safety net; jittered so that objects created together do not resync together.
        return self.config.resync_seconds * random.uniform(0.9, 1.1)

    def train(
        self, environment: Environment, owner: Owner, doc: DeploymentDoc, body: Mapping[str, Any]
    ) -> TrainingStatus:
        """The training pass of one ModelDeployment: its runs are Jobs (``training.JobRunner``)."""
        spec = doc.doc.spec.training
        assert spec is not None
        uri = environment.spec.registry.tracking_uri
        if not uri or not uri.startswith(("http://", "https://")):
            return TrainingStatus(
                problem="training on Kubernetes needs the Environment's registry.trackingUri: "
                "an MLflow tracking server its Jobs can reach"
            )
        with self.lock:
            self.trainers.setdefault(spec.source.repo, set()).add((owner.namespace, owner.name))
        created = (body.get("metadata") or {}).get("creationTimestamp")
        since = (
            dt.datetime.fromisoformat(created.replace("Z", "+00:00"))
            if created
            else dt.datetime.now(dt.UTC)
        )
        result = training_pass(
            environment=environment,
            name=owner.name,
            registered_model=doc.registered_model,
            spec=spec,
            code=self.code_for(spec.source.repo),
            tracking=self.tracking_for(uri),
            runner=JobRunner(
                cluster=_Cached(self.cluster_or_fail(), self.cached_child),
                owner=owner,
                spec=doc.doc.spec,
                ctx=self.context(environment),
            ),
            tracking_uri=uri,
            data_root=environment.spec.data_root,
            now=dt.datetime.now(dt.UTC),
            since=since,
        )
        notifier = self.notifier_for(environment)
        for event in result.events:
            metrics.TRAINING_EVENTS.labels(reason=event.reason).inc()
            self.post(body, event.type, event.reason, event.message[:1000])
            notifier.notify_event(event.reason, model=owner.name, message=event.message)
        return result.status

    def promote(
        self, environment: Environment, owner: Owner, doc: DeploymentDoc, body: Mapping[str, Any]
    ) -> PromotionStatus:
        """The promotion pass of one ModelDeployment (``controller.promotion``, shared with the
        local runtime): its validations are Jobs (``validation.JobValidator``), its write-backs
        commits to the config repository, which the Git sync then applies like any commit."""
        from controller.registry import embedded_tracking_uri

        uri = environment.spec.registry.tracking_uri or embedded_tracking_uri(
            self.config.state_dir.resolve()
        )
        # The file the Git sync applied it from: where its pins are written back.
        path = ((body.get("metadata") or {}).get("annotations") or {}).get(SOURCE_ANNOTATION)
        if path:
            doc = replace(doc, at=Located(path, 0))
        name, file = owner.name, doc.at.file

        def check(data: bytes) -> None:
            check_deployment(data, path=file, name=name, environment=environment)

        result = promotion_pass(
            environment=environment,
            deployment=doc,
            tracking=self.tracking_for(uri),
            validator=JobValidator(
                cluster=_Cached(self.cluster_or_fail(), self.cached_child),
                owner=owner,
                model=doc.registered_model,
                ctx=self.context(environment),
                on_write=self.wrote,
            ),
            promoter=self.promoter_for(environment, path),
            tracking_uri=None,  # the Job's MLFLOW_TRACKING_URI
            data_root=None,  # the Job's MLGITOPS_DATA_ROOT
            check=check,
        )
        before = ((body.get("status") or {}).get("promotion") or {}).get("problem")
        self.report(environment, body, result.events, repeated=before)
        if any(e.reason in ("ChallengerProposed", "PromotionCommitted") for e in result.events):
            self.sync_now.set()  # a commit on the synced branch: apply it now, not at the poll
        return result.status

    def watch(self, environment: Environment, doc: DeploymentDoc, body: Mapping[str, Any]) -> None:
        """The monitor's alerts on the registered model (``controller.monitoring``): posted as
        Events on the ModelDeployment and notified once per window, when they change."""
        from controller.registry import embedded_tracking_uri

        uri = environment.spec.registry.tracking_uri or embedded_tracking_uri(
            self.config.state_dir.resolve()
        )
        found = self.alerts.check(doc.registered_model, self.tracking_for(uri))
        notifier = self.notifier_for(environment)
        name = (body.get("metadata") or {}).get("name")
        for event, key in found:
            self.post(body, event.type, event.reason, event.message[:1000])
            notifier.notify(event.reason, key, model=name, message=event.message)

    def report(
        self,
        environment: Environment,
        body: Mapping[str, Any],
        events: list[Event],
        *,
        repeated: str | None = None,
    ) -> None:
        """Post a promotion pass's Events on the ModelDeployment, count them, and notify those
        notifications may subscribe to. A failed write-back that says what the last pass said
        is not posted again (it is in status)."""
        notifier = self.notifier_for(environment)
        name = (body.get("metadata") or {}).get("name")
        for event in events:
            if event.reason == "WriteBackFailed" and event.message == repeated:
                continue
            metrics.PROMOTION_EVENTS.labels(reason=event.reason).inc()
            self.post(body, event.type, event.reason, event.message[:1000])
            notifier.notify_event(event.reason, model=name, message=event.message)

    def on_push(self, body: bytes) -> None:
        """A signed push: the config repository syncs now; a code repository named in the
        payload (GitHub-style ``repository.clone_url`` and the like) is fetched on its
        ModelDeployments' next pass, queued now."""
        urls = push_urls(body)
        if self.config.repo and (not urls or same_repo(self.config.repo, urls)):
            self.sync_now.set()
        with self.lock:
            pushed = [(repo, keys) for repo, keys in self.trainers.items() if same_repo(repo, urls)]
        for repo, keys in pushed:
            self.codes[repo].force()
            for key in sorted(keys):
                self.wake(key, child=False)
                self.queue.add(key)

    def cluster_or_fail(self) -> KubeCluster:
        assert self.cluster is not None
        return self.cluster

    def tracking_for(self, uri: str) -> Tracking:
        from controller.registry import MlflowTracking

        with self.lock:
            if uri not in self.trackings:
                self.trackings[uri] = MlflowTracking(uri)
            return self.trackings[uri]

    def notifier_for(self, environment: Environment) -> Notifier:
        """The Environment's notifications (one Notifier per Environment, keys kept in the state
        directory), configured anew when its ``spec.notifications`` changed."""
        name, specs = environment.metadata.name, environment.spec.notifications
        with self.lock:
            notifier = self.notifiers.get(name)
            if notifier is None:
                notifier = Notifier.for_environment(
                    environment,
                    state_dir=StateDir(self.config.state_dir.resolve()),
                    on_result=metrics.notification_result,
                )
                self.notifiers[name] = notifier
            elif self.notify_specs.get(name) != specs:
                notifier.configure(specs)
            self.notify_specs[name] = specs
            return notifier

    def promoter_for(self, environment: Environment, path: str | None) -> Promoter:
        """Where a pin is written back: the config repository (``--repo``) on the Environment's
        ``writeBack.branch``, for a ModelDeployment the Git sync applied from file ``path``.
        Otherwise a promoter that refuses, saying why in one line: versions are still
        validated, and a person commits the pin."""
        repo = self.config.repo
        if not repo:
            return ReadOnlyPromoter(
                "no config repository to write to (the operator runs without --repo): "
                "commit the pin by hand"
            )
        if not path:
            return ReadOnlyPromoter(
                f"not applied from the config repository (no {SOURCE_ANNOTATION} annotation): "
                "commit the pin by hand"
            )
        from controller.sources import WriteBack

        write_back = environment.spec.write_back
        key = (write_back.branch, write_back.author)
        with self.lock:
            if key not in self.promoters:
                try:
                    self.promoters[key] = WriteBack(
                        repo,
                        cache_dir=StateDir(self.config.state_dir.resolve()).writeback,
                        branch=write_back.branch,
                        author=write_back.author,
                    )
                except InvalidInput as exc:
                    return ReadOnlyPromoter(str(exc))
            return self.promoters[key]

    def code_for(self, repo: str) -> CodeSource:
        """The code repository, fetched at most once per poll interval (or on a webhook push)."""
        from controller.sources import CodeRepo

        with self.lock:
            if repo not in self.codes:
                cache = StateDir(self.config.state_dir.resolve()).git_cache
                self.codes[repo] = _Throttled(
                    CodeRepo(repo, cache_dir=cache), self.config.poll_seconds
                )
            return self.codes[repo]

    def post(self, body: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        """A Kubernetes Event about ``body``, through kopf's poster (batched, retried)."""
        if self.kopf_context is None:
            return
        kopf.event(
            kopf.Body(cast(kopf.RawBody, dict(body))), type=type_, reason=reason, message=message
        )

    # -- Git sync ----------------------------------------------------------------------------------

    def git_loop(self) -> None:
        """Sync the environment folder from Git every poll interval (or on a webhook push).

        Supervised: no error ends it. A sync that fails (Git unreachable, an unexpected error)
        is retried with exponential backoff up to the poll interval, the Environment's Ready
        condition says why, and ``/readyz`` answers 503 until a sync succeeds again.
        """
        from controller.sources import GitSource

        cluster, repo = self.cluster, self.config.repo
        assert cluster is not None
        assert repo
        state = StateDir(self.config.state_dir.resolve())
        source = GitSource(repo, cache_dir=state.git_cache)
        failures = 0
        while not self.stop.is_set():
            error: str | None = None
            try:
                result = sync_environment(
                    env=self.config.env,
                    source=source,
                    cluster=cluster,
                    namespace=self.config.namespace,
                    registry_for=self.registry_for,
                )
            except Exception as exc:  # a bug must not end Git sync: report it, retry
                log.exception("git sync of %s failed", self.config.env)
                error = f"{type(exc).__name__}: {exc}"
                if self.config.namespace:
                    with contextlib.suppress(Exception):
                        report_failure(
                            cluster,
                            env=self.config.env,
                            namespace=self.config.namespace,
                            error=SyncFailed(f"Git sync failed: {one_line(exc)}"),
                        )
                self.last_sync = {"error": error, "time": time.time()}
            else:
                self.last_sync = {
                    "revision": result.revision,
                    "error": str(result.error or ""),
                    "applied": result.applied,
                    "pruned": result.pruned,
                    "time": time.time(),
                }
                try:
                    self.after_sync(result)
                except Exception:  # telling must never end Git sync
                    log.exception("after the git sync of %s", self.config.env)
                if isinstance(result.error, Unavailable):
                    error = str(result.error)
                if result.error is not None:
                    log.warning("git sync of %s applied nothing: %s", self.config.env, result.error)
                elif result.applied or result.pruned:
                    log.info(
                        "git sync %s: applied %s, pruned %s",
                        (result.revision or "")[:7],
                        result.applied,
                        result.pruned,
                    )
            finally:
                source.close()  # a fresh handle next time: a mirror fetches only what is new
            self.git_error = error
            failures = failures + 1 if error else 0
            self.git_ready.set()
            delay = self.config.poll_seconds
            if failures:
                delay = min(delay, GIT_BACKOFF * 2 ** min(failures - 1, 10))
            self.sync_now.wait(delay)
            self.sync_now.clear()

    def after_sync(self, result: GitSyncResult) -> None:
        """Tell what a Git sync found, as the local runtime does: a champion rolled back (an
        Event on its ModelDeployment and a notification) and a refused revision (a
        notification). Configures the Environment's notifications from the revision read."""
        if result.environment is not None:
            notifier: Notifier | None = self.notifier_for(result.environment)
        else:
            with self.lock:
                notifier = self.notifiers.get(self.config.env)
        revision = result.revision or ""
        namespace = self.config.namespace or (
            result.environment.spec.namespace if result.environment else None
        )
        for name, model, version in result.rolled_back:
            message = (
                f"{model} version {version} lost the champion pin at {revision[:12]} without a "
                "promotion commit: never proposed again"
            )
            log.info("%s: %s", name, message)
            if notifier is not None:
                key = f"{model}/{version}/{revision}"
                notifier.notify("RollbackDetected", key, model=name, message=message)
            body = self.cluster_or_fail().get(API_VERSION, "ModelDeployment", namespace, name)
            if body is not None and self.kopf_context is not None:
                self.kopf_context.copy().run(self.post, body, "Normal", "RollbackDetected", message)
        if isinstance(result.error, InvalidInput) and notifier is not None:
            notifier.notify(
                "SyncStalled",
                revision or str(result.error),
                message=f"revision {revision[:12]} refused: {result.error}",
            )


def merge_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) that turns ``old`` into ``new``: a key ``new`` lacks is
    null at every depth (``status.promotion.validating`` must go when the validation ended, not
    only a top-level key), objects are patched the same way, anything else is replaced."""
    patch: dict[str, Any] = dict.fromkeys(k for k in old if k not in new)
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            patch[key] = merge_patch(before, value)
        else:
            patch[key] = value
    return patch


class _Throttled:
    """A code repository fetched at most once per ``interval`` (a pass runs often; a fetch is a
    network round trip). ``force()`` makes the next pass fetch (a webhook push)."""

    def __init__(self, code: CodeSource, interval: float) -> None:
        self._code, self._interval = code, interval
        self._last = -math.inf
        self._lock = threading.Lock()
        self.display = code.display

    def force(self) -> None:
        self._last = -math.inf

    def fetch(self) -> None:
        with self._lock:
            if time.monotonic() - self._last < self._interval:
                return
            self._code.fetch()
            self._last = time.monotonic()

    def head(self, branch: str) -> Commit:
        return self._code.head(branch)

    def commits(self, base: str | None, head: str) -> list[Commit]:
        return self._code.commits(base, head)

    def changed(self, base: str | None, head: str) -> list[str]:
        return self._code.changed(base, head)

    def checkout(self, sha: str, path: Path) -> None:
        self._code.checkout(sha, path)

    def remove_checkout(self, path: Path) -> None:
        self._code.remove_checkout(path)

    def close(self) -> None:
        self._code.close()


class _Cached:
    """The cluster, with each child's live body taken from the watch (no GET per child)."""

    def __init__(
        self, cluster: KubeCluster, lookup: Callable[[str, str, str], dict[str, Any] | None]
    ) -> None:
        self._cluster, self._lookup = cluster, lookup

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> Any:
        return self._cluster.get(api_version, kind, namespace, name)

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        return self._cluster.apply(obj)

    def ensure(
        self, obj: dict[str, Any], live: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], bool]:
        meta = obj["metadata"]
        seen = live or self._lookup(obj["kind"], meta.get("namespace", ""), meta["name"])
        return self._cluster.ensure(obj, seen)

    def delete(self, api_version: str, kind: str, namespace: str | None, name: str) -> bool:
        return self._cluster.delete(api_version, kind, namespace, name)

    def patch_status(
        self, api_version: str, kind: str, namespace: str | None, name: str, status: Any
    ) -> dict[str, Any]:
        return self._cluster.patch_status(api_version, kind, namespace, name, status)

    def annotate(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        name: str,
        annotations: Mapping[str, str | None],
    ) -> dict[str, Any] | None:
        return self._cluster.annotate(api_version, kind, namespace, name, annotations)


class _Recording:
    """A registry that hands what a pass observed of the model, and the alias moves the pass
    then made, to ``remember``: the next pass, if only its children woke it, starts from there."""

    def __init__(self, registry: Registry, remember: Callable[[Observed], None]) -> None:
        self._registry, self._remember = registry, remember
        self.display = registry.display
        self._seen: Observed | None = None

    def observe(self, **kw: Any) -> Observed:
        return self._registry.observe(**kw)

    def observe_model(self, *, model: str, pins: set[str]) -> Observed:
        self._seen = self._registry.observe_model(model=model, pins=pins)
        self._remember(self._seen)
        return self._seen

    def set_alias(self, *, model: str, event: AliasEvent) -> None:
        self._registry.set_alias(model=model, event=event)
        seen = self._seen
        if seen is not None and model in seen.models:
            before = seen.models[model]
            aliases = {k: v for k, v in before.aliases.items() if k != event.alias}
            if event.version is not None:
                aliases[event.alias] = event.version
            models = {**seen.models, model: replace(before, aliases=aliases)}
            self._seen = replace(seen, models=models)
            self._remember(self._seen)

    def history(self, *, model: str) -> list[AliasEvent]:
        return self._registry.history(model=model)

    def tag_version(self, *, model: str, version: str, key: str, value: str) -> None:
        self._registry.tag_version(model=model, version=version, key=key, value=value)


class _Observed(_Recording):
    """A registry that answers ``observe_model`` with an observation made moments ago."""

    def __init__(
        self, registry: Registry, seen: Observed, remember: Callable[[Observed], None]
    ) -> None:
        super().__init__(registry, remember)
        self._seen = self._reused = seen

    def observe_model(self, *, model: str, pins: set[str]) -> Observed:
        return self._reused


def build_registry(op: Operator) -> kopf.OperatorRegistry:
    """kopf's handlers for one operator run, each a closure over ``op``.

    Only watch-event handlers and an index: no resource-changing handler, timer or daemon, so
    kopf puts no finalizer and no bookkeeping annotation on our objects.
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
        op.queue.start()
        await http.start(
            host=config.http_host,
            port=config.http_port,
            readiness=op.readiness,
            webhook_token=config.webhook_token,
            on_push=op.on_push,
            routes=op.dashboard() if config.ui else (),
        )
        if config.repo:
            op.git_thread = threading.Thread(target=op.git_loop, name="mlgitops-git", daemon=True)
            op.git_thread.start()
        else:
            op.git_ready.set()

    @kopf.on.cleanup(registry=registry)
    async def cleanup(**_: Any) -> None:
        op.stop.set()
        op.sync_now.set()
        await asyncio.get_running_loop().run_in_executor(None, op.queue.stop)
        for notifier in list(op.notifiers.values()):  # queued notifications get a few seconds
            await asyncio.get_running_loop().run_in_executor(None, notifier.close, 5.0)

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

    @kopf.on.event(*MD, id="modeldeployment", registry=registry)
    async def on_deployment(*, event: kopf.RawEvent, body: kopf.Body, **kwargs: Any) -> None:
        op.environments = kwargs["environments"]  # kopf's live index, filled before any event
        if op.kopf_context is None:
            op.kopf_context = contextvars.copy_context()  # kopf's Event poster, for workers
        op.deployment_event(event, body)

    @kopf.on.event(*ENVS, id="environment", registry=registry)
    async def on_environment(*, namespace: str | None, **_: Any) -> None:
        op.environment_event(namespace or "")

    def child_handler(kind: str) -> Any:
        async def on_child(*, event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
            op.child_event(kind, event, body)

        return on_child

    for (group, version, plural), kind in CHILDREN.items():
        kopf.on.event(
            group,
            version,
            plural,
            id=f"child-{plural}",
            labels={MANAGED_BY: "mlgitops"},
            registry=registry,
        )(child_handler(kind))

    return registry


def settings_for(config: OperatorConfig) -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    settings.persistence.finalizer = f"{GROUP}/finalizer"  # only to remove an old version's
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.scanning.disabled = True  # CRDs are known; no cluster-wide CRD watch (RBAC)
    settings.posting.level = logging.WARNING  # our own Events only, not one per handler run
    settings.watching.server_timeout = 270
    settings.networking.request_timeout = 60
    return settings


def run(config: OperatorConfig) -> None:
    """Run the operator until SIGINT/SIGTERM (kopf handles the signals)."""
    kopf.configure(verbose=config.verbose)  # kopf's log format on stderr, as `kopf run` does
    if not config.verbose:  # not a line per watch event ("Handler ... succeeded")
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
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
