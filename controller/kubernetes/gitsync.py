"""Git -> cluster: apply every ModelDeployment of an environment folder, prune what Git dropped.

One sync reads the folder at the branch head, validates it whole (the same loader the CLI uses)
and, only if every document is valid, server-side applies the Environment and each
ModelDeployment with the field manager ``mlgitops``. An object whose live fields already match
is not written, so a sync of an unchanged revision makes no writes; one edited by hand differs
and is put back (Git wins). The names applied are kept as an inventory in the Environment's
status; a name that leaves the folder is deleted on the next sync.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

from controller.api.documents import API_VERSION
from controller.api.status import EnvironmentStatus
from controller.engine import load_desired, now_iso
from controller.errors import InvalidInput, MlgitopsError, Unavailable
from controller.kubernetes import metrics
from controller.kubernetes.deployment import REVISION_ANNOTATION
from controller.planning.children import MANAGED_BY, contains
from controller.planning.ports import Cluster, Source
from controller.planning.summarize import (
    Outcome,
    dump,
    error_reason,
    keys,
    parse,
    summarize_environment,
)

Obj = dict[str, Any]
ENV_LABEL = "mlgitops.io/environment"
SOURCE_ANNOTATION = "mlgitops.io/source"


@dataclass
class GitSyncResult:
    revision: str | None = None
    applied: list[str] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)
    error: MlgitopsError | None = None


def _without_revision(obj: Obj) -> Obj:
    meta = dict(obj["metadata"])
    notes = {k: v for k, v in meta.get("annotations", {}).items() if k != REVISION_ANNOTATION}
    meta["annotations"] = notes
    return {**obj, "metadata": meta}


def _object(
    kind: str, name: str, namespace: str, env: str, spec: Obj, *, sha: str, path: str
) -> Obj:
    return {
        "apiVersion": API_VERSION,
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {MANAGED_BY: "mlgitops", ENV_LABEL: env},
            "annotations": {REVISION_ANNOTATION: sha, SOURCE_ANNOTATION: path},
        },
        "spec": spec,
    }


def _write_status(
    cluster: Cluster,
    namespace: str,
    env: str,
    live: Obj,
    previous: EnvironmentStatus | None,
    outcome: Outcome,
    inventory: list[str] | None,
) -> None:
    status = dump(
        summarize_environment(
            previous=previous, outcome=outcome, inventory=inventory, now=now_iso()
        )
    )
    current = live.get("status") or {}
    if contains(status, current) and contains(current, status):
        return  # unchanged: no write
    stale = {k: None for k in current if k in keys(EnvironmentStatus) and k not in status}
    cluster.patch_status(API_VERSION, "Environment", namespace, env, {**stale, **status})


def sync_environment(
    *,
    env: str,
    source: Source,
    cluster: Cluster,
    namespace: str | None = None,
) -> GitSyncResult:
    """One Git sync of environment ``env`` into its namespace. Never raises domain errors."""
    result = GitSyncResult()
    try:
        commit, desired = load_desired(source, env=env, rev=None)
        result.revision = commit.sha
        ns = namespace or desired.environment.spec.namespace
        env_spec = desired.environment.spec.model_dump(
            mode="json", by_alias=True, exclude_unset=True
        )
        wanted = [
            _object(
                "Environment",
                env,
                ns,
                env,
                env_spec,
                sha=commit.sha,
                path=desired.environment_at.file,
            )
        ]
        for d in desired.deployments:
            spec = d.doc.spec.model_dump(mode="json", by_alias=True, exclude_unset=True)
            wanted.append(
                _object(
                    "ModelDeployment",
                    d.doc.metadata.name,
                    ns,
                    env,
                    spec,
                    sha=commit.sha,
                    path=d.at.file,
                )
            )
        for obj in wanted:
            name = obj["metadata"]["name"]
            live = cluster.get(API_VERSION, obj["kind"], ns, name)
            # The revision annotation says which commit last changed the object: a commit that
            # leaves a document as it was does not rewrite it.
            if live is not None and contains(_without_revision(obj), live):
                continue
            cluster.apply(obj)
            result.applied.append(f"{obj['kind']}/{name}")

        env_live = cluster.get(API_VERSION, "Environment", ns, env) or {}
        previous = parse(EnvironmentStatus, env_live.get("status"))
        before = previous.inventory if previous else []
        names = sorted(d.doc.metadata.name for d in desired.deployments)
        for gone in sorted(set(before) - set(names)):
            cluster.delete(API_VERSION, "ModelDeployment", ns, gone)
            result.pruned.append(f"ModelDeployment/{gone}")
        outcome = Outcome(
            attempted=commit.sha,
            applied=True,
            reason="Synced",
            message=f"Applied revision {commit.short}: {len(names)} ModelDeployments",
        )
        _write_status(cluster, ns, env, env_live, previous, outcome, names)
        metrics.set_revision(env, commit.sha)
        metrics.GIT_LAST_SYNC.labels(environment=env).set(time.time())
    except (InvalidInput, Unavailable) as exc:
        result.error = exc
        reason = error_reason(exc)
        metrics.GIT_SYNC_ERRORS.labels(environment=env, reason=reason).inc()
        if isinstance(exc, InvalidInput) and exc.revision:
            result.revision = exc.revision
        if namespace:
            # Say why on the Environment (if one was applied before); the cluster is unchanged.
            # A bad revision stalls until Git changes; an unreachable repository is only not
            # Ready, and the next poll retries.
            report_failure(cluster, env=env, namespace=namespace, error=exc)
    return result


def report_failure(cluster: Cluster, *, env: str, namespace: str, error: MlgitopsError) -> None:
    """Ready False on the Environment, with the reason; the last good state stays in force."""
    with contextlib.suppress(Unavailable):  # the API server is down too: nothing to tell it
        env_obj = cluster.get(API_VERSION, "Environment", namespace, env)
        if env_obj is None:
            return
        invalid = isinstance(error, InvalidInput)
        outcome = Outcome(
            attempted=error.revision if isinstance(error, InvalidInput) else None,
            applied=False,
            reason=error_reason(error),
            message=str(error)[:2000],
            stalled=invalid,
        )
        previous = parse(EnvironmentStatus, env_obj.get("status"))
        _write_status(cluster, namespace, env, env_obj, previous, outcome, None)
