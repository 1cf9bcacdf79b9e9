"""The dashboard's data in a cluster: the operator's Environment and ModelDeployment objects.

``mlgitops operator --ui`` serves the pages ``mlgitops ui`` serves, from what the operator wrote
rather than from a state directory: each object's status is the same contract (``api.status``),
so ``ui.views`` reads it unchanged. The overview lists four kinds (Environments,
ModelDeployments, and the CronJobs and Jobs the operator labels), one request each, and keeps
the answer for a couple of seconds, so browsers refreshing every few seconds cost the API server
little; it needs no registry and no Git, and answers while either is down.

ModelDeployments belong to the Environment of their namespace, named ``--env``, as a pass finds
it. Two things are translated for a person: a ModelDeployment stalled by its own spec names the
object (``modeldeployment/NAME: spec.champion.version: ...``, all the API server knows), and is
shown with the file and line of that field in the config repository at the applied revision
(``environments/prod/x.yaml:9: ...``), as the local runtime shows it; and a Job the CronJob
controller started is reported as its CronJob's last run.

A model's page reads the durable record (``ui.detail``): the document at the revision the
Environment last applied (Git's mirror, read in place and never fetched here: the Git sync
fetches), else the live object; then the registry and tracking server through the operator's
own clients.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import ValidationError

from controller.api.documents import API_VERSION, Environment
from controller.api.loader import DeploymentDoc, DesiredState, Located, load_deployment
from controller.engine import load_desired
from controller.errors import MlgitopsError, one_line
from controller.kubernetes.deployment import REVISION_ANNOTATION
from controller.kubernetes.gitsync import SOURCE_ANNOTATION
from controller.planning.children import MANAGED_BY
from controller.redact import redact
from controller.sources import GitSource, local_copy
from controller.ui.views import EnvSnapshot

if TYPE_CHECKING:
    from controller.planning.ports import CommitTimes, RegistryFor, Tracking
    from controller.state import StateDir

Obj = dict[str, Any]
SNAPSHOT_TTL = 2.0  # seconds one listing of the objects serves every page and browser
KEPT_REVISIONS = 2  # environment folders parsed and kept (the applied revision, the one before)
OURS = f"{MANAGED_BY}=mlgitops"
# "file: field: message" problems joined by "; " (InvalidInput's message): split before a
# "file:" or "file:line:" token, not at a "; " inside one problem's message.
_PROBLEMS = re.compile(r"; (?=[^\s;]+: )")
_FIELD = re.compile(r"^[A-Za-z][\w.\[\]-]*$")


class Reader(Protocol):
    """What the collector asks of the API server (``client.KubeCluster``): reads only."""

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> Obj | None: ...
    def list_objects(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        *,
        label_selector: str | None = None,
    ) -> list[Obj]: ...


class _NoRepository:
    """No config repository (ModelDeployments applied with kubectl): no commit to date."""

    def commit_time(self, sha: str) -> str | None:
        return None


def _conditions(obj: Mapping[str, Any]) -> list[Obj]:
    return list((obj.get("status") or {}).get("conditions") or [])


def _true(conditions: Sequence[Mapping[str, Any]], type_: str) -> Mapping[str, Any] | None:
    return next(
        (c for c in conditions if c.get("type") == type_ and c.get("status") == "True"), None
    )


def split_problems(message: str) -> list[str]:
    """The problems of a rejected revision or spec, one per entry, from the condition's message."""
    return [p for p in _PROBLEMS.split(message.strip()) if p]


def environment_problems(env: Mapping[str, Any]) -> list[str]:
    """What stands in the Environment's way, as the local runtime records ``problems``: each
    problem of a rejected revision (Stalled), or why Git cannot be synced (Ready False)."""
    conditions = _conditions(env)
    stalled = _true(conditions, "Stalled")
    if stalled is not None:
        return split_problems(str(stalled.get("message") or stalled.get("reason", "")))
    ready = next((c for c in conditions if c.get("type") == "Ready"), None)
    if ready is not None and ready.get("status") == "False":
        return [str(ready.get("message") or ready.get("reason", ""))]
    return []


def locate(message: str, name: str, at: Located) -> str:
    """``message`` with each ``modeldeployment/NAME: field: ...`` problem located in the file
    the object was applied from: ``file:line: field: ...`` (others are left as they are)."""
    prefix = f"modeldeployment/{name}: "
    out = []
    for problem in split_problems(message):
        if problem.startswith(prefix):
            rest = problem.removeprefix(prefix)
            field = rest.split(": ", 1)[0]
            line = at.line_of(field) if _FIELD.match(field) else at.line
            problem = f"{at.file}:{line}: {rest}" if line else f"{at.file}: {rest}"
        out.append(problem)
    return "; ".join(out)


def _newest(items: Sequence[Obj]) -> Obj | None:
    def key(obj: Obj) -> tuple[str, str]:
        meta = obj.get("metadata") or {}
        return str(meta.get("creationTimestamp") or ""), str(meta.get("name") or "")

    return max(items, key=key) if items else None


def _finished(job: Mapping[str, Any]) -> tuple[bool, str | None]:
    """(succeeded, when) of a Job that ended; (False, None) while it runs."""
    status = job.get("status") or {}
    conditions = status.get("conditions") or []
    if (done := _true(conditions, "Complete")) is not None:
        return True, status.get("completionTime") or done.get("lastTransitionTime")
    if (failed := _true(conditions, "Failed")) is not None:
        return False, failed.get("lastTransitionTime")
    return False, None


def cron_jobs(cronjobs: Sequence[Obj], jobs: Sequence[Obj]) -> dict[str, dict[str, Any]]:
    """Each CronJob's last runs, as the local runtime records them (``local.cron``): when it was
    last scheduled, the Job running now (``inFlight``) and the newest Job that ended (``lastRun``;
    a failed Job's exit code is its pod's, unread here, so ``exitCode`` is 0 or None)."""
    runs: dict[str, list[Obj]] = {}
    for job in jobs:
        for ref in (job.get("metadata") or {}).get("ownerReferences") or []:
            if ref.get("kind") == "CronJob":
                runs.setdefault(ref["name"], []).append(job)
    found: dict[str, dict[str, Any]] = {}
    for cronjob in cronjobs:
        name = cronjob["metadata"]["name"]
        status = cronjob.get("status") or {}
        record: dict[str, Any] = {
            "schedule": (cronjob.get("spec") or {}).get("schedule"),
            "lastScheduleTime": status.get("lastScheduleTime"),
            "lastSuccessfulTime": status.get("lastSuccessfulTime"),
        }
        ended = [j for j in runs.get(name, []) if _finished(j)[1] is not None]
        running = [j for j in runs.get(name, []) if _finished(j)[1] is None]
        active = status.get("active") or []
        if running or active:
            newest = _newest(running)
            record["inFlight"] = {
                "name": newest["metadata"]["name"] if newest else active[-1].get("name")
            }
        last = _newest(ended)
        if last is not None:
            succeeded, when = _finished(last)
            record["lastRun"] = {
                "name": last["metadata"]["name"],
                "scheduled": last["metadata"].get("creationTimestamp"),
                "exitCode": 0 if succeeded else None,
                "finished": when,
            }
        elif status.get("lastSuccessfulTime") and status["lastSuccessfulTime"] >= (
            status.get("lastScheduleTime") or ""
        ):
            # The Job is gone (its history limit, its TTL), but the CronJob says the newest
            # scheduled run succeeded.
            record["lastRun"] = {
                "name": None,
                "exitCode": 0,
                "finished": status["lastSuccessfulTime"],
            }
        found[name] = record
    return found


class KubeCollector:
    """The Environment ``env`` and its ModelDeployments: in ``namespace``, or (None) in every
    namespace the operator watches."""

    def __init__(
        self,
        cluster: Reader,
        *,
        env: str,
        namespace: str | None,
        repo: str | None,
        state: StateDir,
        registry_for: RegistryFor,
        tracking_for: Callable[[str | None], Tracking],
    ) -> None:
        self.cluster = cluster
        self.env = env
        self.namespace = namespace
        self.repo = repo
        self.state = state
        self.registry_for = registry_for
        self.tracking_for = tracking_for
        self._lock = threading.Lock()
        self._listed: tuple[float, list[EnvSnapshot]] | None = None
        self._where: dict[str, str] = {}  # environment as shown -> its namespace
        self._desired: dict[str, DesiredState | None] = {}  # applied revision -> documents

    @property
    def label(self) -> str:
        where = f"namespace {self.namespace}" if self.namespace else "every namespace"
        return f"operator for {self.env}, {where}"

    # --- the overview -----------------------------------------------------------------------

    def snapshots(self) -> list[EnvSnapshot]:
        with self._lock:
            if self._listed is not None and time.monotonic() - self._listed[0] < SNAPSHOT_TTL:
                return self._listed[1]
        try:
            found = self._snapshots()
        except MlgitopsError as exc:  # the API server is unreachable or refuses: say so
            problem = redact(f"Kubernetes API: {one_line(exc)}")
            return [EnvSnapshot(name=self.env, problems=[problem])]
        with self._lock:
            self._listed = (time.monotonic(), found)
        return found

    def _snapshots(self) -> list[EnvSnapshot]:
        ns = self.namespace
        environments = {
            e["metadata"].get("namespace", ""): e
            for e in self.cluster.list_objects(API_VERSION, "Environment", ns)
            if e["metadata"]["name"] == self.env
        }
        deployments: dict[str, list[Obj]] = {}
        for md in self.cluster.list_objects(API_VERSION, "ModelDeployment", ns):
            deployments.setdefault(md["metadata"].get("namespace", ""), []).append(md)
        cronjobs: dict[str, list[Obj]] = {}
        for cj in self.cluster.list_objects("batch/v1", "CronJob", ns, label_selector=OURS):
            cronjobs.setdefault(cj["metadata"].get("namespace", ""), []).append(cj)
        jobs: dict[str, list[Obj]] = {}
        for job in self.cluster.list_objects("batch/v1", "Job", ns, label_selector=OURS):
            jobs.setdefault(job["metadata"].get("namespace", ""), []).append(job)
        namespaces = [ns] if ns is not None else sorted(set(environments) | set(deployments))
        shown = {n: self.env if len(namespaces) == 1 else f"{self.env}@{n}" for n in namespaces}
        self._where = {name: n for n, name in shown.items()}
        return [
            self._snapshot(
                shown[n],
                n,
                environments.get(n),
                deployments.get(n, []),
                cron_jobs(cronjobs.get(n, []), jobs.get(n, [])),
            )
            for n in namespaces
        ]

    def _snapshot(
        self,
        name: str,
        namespace: str,
        env: Obj | None,
        deployments: list[Obj],
        jobs: dict[str, dict[str, Any]],
    ) -> EnvSnapshot:
        status = (env or {}).get("status") or {}
        conditions = _conditions(env or {})
        problems = (
            environment_problems(env)
            if env is not None
            else [f"no Environment named {self.env} in namespace {namespace}: apply one"]
        )
        applied = status.get("lastAppliedRevision")
        models = {
            md["metadata"]["name"]: self._model_status(md, applied)
            for md in sorted(deployments, key=lambda m: str(m["metadata"]["name"]))
        }
        times = [str(c["lastTransitionTime"]) for c in conditions if c.get("lastTransitionTime")]
        spec = (env or {}).get("spec") or {}
        return EnvSnapshot(
            name=name,
            applied=applied,
            attempted=status.get("lastAttemptedRevision"),
            updated=max(times) if times else None,
            problems=problems,
            source=redact(self.repo) if self.repo else None,
            registry=self._registry_display(spec),
            models=models,
            jobs=jobs,
            conditions=conditions,
            registered={
                n: s["registeredModel"] for n, s in models.items() if s.get("registeredModel")
            },
        )

    def _registry_display(self, spec: Mapping[str, Any]) -> str:
        uri = (spec.get("registry") or {}).get("trackingUri")
        if uri:
            return redact(str(uri))
        from controller.registry import embedded_tracking_uri

        return embedded_tracking_uri(self.state.root)

    def _model_status(self, md: Obj, applied: str | None) -> dict[str, Any]:
        """The object's status; a Stalled message that names the object names the file and line
        of the field in the config repository instead."""
        status = dict(md.get("status") or {})
        name = md["metadata"]["name"]
        stalled = _true(status.get("conditions") or [], "Stalled")
        if stalled is None or not str(stalled.get("message", "")).startswith("modeldeployment/"):
            return status
        doc = self._document(md, applied)
        if doc is None:
            return status
        message = locate(str(stalled["message"]), name, doc.at)
        status["conditions"] = [
            {**c, "message": message} if c is stalled else c for c in status["conditions"]
        ]
        return status

    # --- the documents ------------------------------------------------------------------------

    def _source(self) -> GitSource | None:
        if not self.repo:
            return None
        return GitSource(
            local_copy(self.repo, cache_dir=self.state.git_cache), cache_dir=self.state.git_cache
        )

    def _applied(self, revision: str) -> DesiredState | None:
        """The environment folder at ``revision`` (parsed once; None when unreadable)."""
        with self._lock:
            if revision in self._desired:
                return self._desired[revision]
        desired: DesiredState | None = None
        source = self._source()
        if source is not None:
            try:
                _, desired = load_desired(source, env=self.env, rev=revision)
            except MlgitopsError:
                desired = None  # not mirrored yet, or gone: the object stands in
            finally:
                source.close()
        with self._lock:
            self._desired[revision] = desired
            while len(self._desired) > KEPT_REVISIONS:
                self._desired.pop(next(iter(self._desired)))
        return desired

    def _document(self, md: Obj, applied: str | None) -> DeploymentDoc | None:
        """ModelDeployment ``md`` as Git has it at the applied revision, if it came from Git."""
        notes = (md.get("metadata") or {}).get("annotations") or {}
        if not applied or SOURCE_ANNOTATION not in notes:
            return None
        desired = self._applied(applied)
        if desired is None:
            return None
        name = md["metadata"]["name"]
        return next((d for d in desired.deployments if d.doc.metadata.name == name), None)

    # --- a model's page -----------------------------------------------------------------------

    def detail(self, env: str, name: str) -> dict[str, Any] | None:
        if env not in self._where:
            self.snapshots()
        namespace = self._where.get(env)
        if namespace is None:
            return None
        try:
            md = self.cluster.get(API_VERSION, "ModelDeployment", namespace, name)
            if md is None:
                return None
            live = self.cluster.get(API_VERSION, "Environment", namespace, self.env)
            if live is None:
                return {"problems": [f"no Environment named {self.env} in namespace {namespace}"]}
            environment = Environment.model_validate(
                {
                    "apiVersion": API_VERSION,
                    "kind": "Environment",
                    "metadata": {"name": self.env},
                    "spec": dict(live.get("spec") or {}),
                }
            )
            applied = (live.get("status") or {}).get("lastAppliedRevision")
            doc = self._document(md, applied) or self._from_object(md, environment)
            from controller.ui.detail import model_detail  # Delta tables: ~55 MiB, when first read

            spec = environment.spec
            uri = spec.registry.tracking_uri
            source: CommitTimes = self._source() or _NoRepository()
            try:
                return model_detail(
                    doc,
                    env=self.env,
                    registry=self.registry_for(uri),
                    tracking=self.tracking_for(uri),
                    source=source,
                    data_root=spec.data_root or str(self.state.tables),
                )
            finally:
                if isinstance(source, GitSource):
                    source.close()
        except ValidationError as exc:
            return {"problems": [redact(f"environment/{self.env}: {one_line(exc)}")]}
        except MlgitopsError as exc:
            return {"problems": [redact(f"{env}: {one_line(exc)}")]}

    def _from_object(self, md: Obj, environment: Environment) -> DeploymentDoc:
        """The document the live object is (applied with kubectl, or not in Git's applied
        revision); the file it was applied from, when Git applied it."""
        meta = md.get("metadata") or {}
        notes = meta.get("annotations") or {}
        data = {
            "apiVersion": API_VERSION,
            "kind": "ModelDeployment",
            "metadata": {"name": meta["name"]},
            "spec": dict(md.get("spec") or {}),
        }
        revision = notes.get(REVISION_ANNOTATION) or f"generation-{meta.get('generation', 1)}"
        [doc] = load_deployment(
            data,
            environment=environment,
            source=f"modeldeployment/{meta['name']}",
            revision=revision,
        ).deployments
        path = notes.get(SOURCE_ANNOTATION)
        return replace(doc, at=Located(path, 0)) if path else doc
