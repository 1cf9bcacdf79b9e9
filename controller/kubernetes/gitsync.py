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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from controller.api.documents import API_VERSION, Environment
from controller.api.loader import DeploymentDoc
from controller.api.status import EnvironmentStatus
from controller.engine import load_desired, now_iso, rollbacks
from controller.errors import InvalidInput, MlgitopsError, Unavailable
from controller.kubernetes import metrics
from controller.kubernetes.deployment import REVISION_ANNOTATION
from controller.pipeline.promotion import TAG_ROLLED_BACK
from controller.planning.children import MANAGED_BY, contains
from controller.planning.ports import Cluster, RegistryFor, Source
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
    environment: Environment | None = None  # the Environment of the revision read, if valid
    # (ModelDeployment, registered model, version): champions that lost their pin in this sync
    # through a change that was not a promotion commit, tagged mlgitops.rolled_back
    rolled_back: list[tuple[str, str, str]] = field(default_factory=list)


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
    registry_for: RegistryFor | None = None,
) -> GitSyncResult:
    """One Git sync of environment ``env`` into its namespace. Never raises domain errors.

    With ``registry_for``, a champion that loses its pin through a change that is not a
    promotion commit (a ``git revert``, a hand edit) is tagged ``mlgitops.rolled_back`` with the
    revision before anything of it is applied, as the local engine does: never proposed again.
    """
    result = GitSyncResult()
    try:
        commit, desired = load_desired(source, env=env, rev=None)
        result.revision = commit.sha
        result.environment = desired.environment
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
        lives = {
            (obj["kind"], obj["metadata"]["name"]): cluster.get(
                API_VERSION, obj["kind"], ns, obj["metadata"]["name"]
            )
            for obj in wanted
        }
        if registry_for is not None:
            env_before = lives[("Environment", env)] or {}
            base = getattr(
                parse(EnvironmentStatus, env_before.get("status")), "last_applied_revision", None
            )
            result.rolled_back = _tag_rollbacks(
                source,
                registry_for,
                desired.environment,
                env,
                base,
                commit.sha,
                desired.deployments,
                lives,
            )
        for obj in wanted:
            name = obj["metadata"]["name"]
            live = lives[(obj["kind"], name)]
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


def _tag_rollbacks(
    source: Source,
    registry_for: RegistryFor,
    environment: Environment,
    env: str,
    base: str | None,
    head: str,
    deployments: Sequence[DeploymentDoc],
    lives: Mapping[tuple[str, str], Obj | None],
) -> list[tuple[str, str, str]]:
    """Tag the champions this revision takes away without a promotion commit; what was tagged.
    Before the apply: a sync that fails after it still finds them next time (``base`` is the
    last revision applied whole)."""
    moved: list[tuple[str, str, str, str | None]] = []
    for d in deployments:
        name = d.doc.metadata.name
        live = lives.get(("ModelDeployment", name)) or {}
        before = ((live.get("spec") or {}).get("champion") or {}).get("version")
        after = d.doc.spec.champion.version if d.doc.spec.champion else None
        if before is not None and str(before) != after:
            moved.append((name, d.registered_model, str(before), after))
    lost = rollbacks(source, base=base, head=head, env=env, moved=moved)
    if lost:
        registry = registry_for(environment.spec.registry.tracking_uri)
        for _, model, version in lost:
            registry.tag_version(model=model, version=version, key=TAG_ROLLED_BACK, value=head)
    return lost


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
