"""One reconcile pass of one environment: observe -> plan -> apply -> summarize.

Level-based: every pass reads the whole desired state (a Git revision) and the observed state (the
registry), computes a plan with no I/O, applies it once, and writes one status summary. It never
asks what event woke it, so running it twice changes nothing the second time. Invalid input stops
the pass before the first write; an unreachable dependency leaves the last good state in force.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from controller.api.documents import ModelDeployment
from controller.api.loader import DesiredState, load_environment
from controller.api.status import (
    ModelDeploymentStatus,
    PromotionStatus,
    ServingStatus,
    TrainingStatus,
)
from controller.errors import InvalidInput, MlgitopsError, Problem, Unavailable
from controller.pipeline.promotion import PROMOTION_TRAILER, TAG_ROLLED_BACK, rolled_back
from controller.planning import AliasChange, Observed, Plan, plan, versions_to_inspect
from controller.planning.ports import Commit, Registry, RegistryFor, Source, Store
from controller.planning.summarize import (
    applied_status,
    dump,
    error_reason,
    failed_status,
    parse,
)

ENVIRONMENTS_ROOT = "environments"


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def load_desired(source: Source, *, env: str, rev: str | None) -> tuple[Commit, DesiredState]:
    """The environment ``env`` at ``rev``, validated whole. Raises InvalidInput / Unavailable."""
    commit = source.resolve(rev)
    folder = f"{ENVIRONMENTS_ROOT}/{env}"
    files = source.read_folder(commit.sha, folder)
    if files is None:
        raise InvalidInput(
            [Problem(folder, None, None, f"no such environment folder at revision {commit.short}")],
            commit.sha,
        )
    return commit, load_environment(files, env_name=env, revision=commit.sha, folder=folder)


# --- the pass -----------------------------------------------------------------------------------


@dataclass
class SyncResult:
    env: str
    commit: Commit | None = None
    desired: DesiredState | None = None
    plan: Plan | None = None
    applied: list[AliasChange] = field(default_factory=list)
    observed: Observed | None = None
    serving: dict[str, ServingStatus] = field(default_factory=dict)
    training: dict[str, TrainingStatus] = field(default_factory=dict)
    promotion: dict[str, PromotionStatus] = field(default_factory=dict)
    rolled_back: list[tuple[str, str]] = field(default_factory=list)  # (model, version)
    error: MlgitopsError | None = None
    status: dict[str, Any] = field(default_factory=dict)


def _spec_hash(doc: ModelDeployment) -> str:
    raw = json.dumps(doc.spec.model_dump(mode="json", by_alias=True), sort_keys=True)
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def _inspect(
    desired: DesiredState, previous: Mapping[str, ModelDeploymentStatus]
) -> Callable[[dict[str, dict[str, str]]], set[tuple[str, str]]]:
    """Versions to read one by one: those an alias will move to, and pins whose details we lack."""

    def inspect(aliases: dict[str, dict[str, str]]) -> set[tuple[str, str]]:
        want = versions_to_inspect(desired, aliases)
        for d in desired.deployments:
            old = previous.get(d.doc.metadata.name)
            for pin, known in (
                (d.doc.spec.champion, old.champion if old else None),
                (d.doc.spec.challenger, old.challenger if old else None),
            ):
                if pin is not None and (known is None or known.version != pin.version):
                    want.add((d.registered_model, pin.version))
        return want

    return inspect


def reconcile(
    *,
    env: str,
    source: Source,
    registry_for: RegistryFor,
    store: Store,
    rev: str | None = None,
    dry_run: bool = False,
    now: Callable[[], str] = now_iso,
    serve: Callable[[DesiredState], Mapping[str, ServingStatus]] | None = None,
    train: Callable[[DesiredState], Mapping[str, TrainingStatus]] | None = None,
    promote: Callable[[DesiredState], Mapping[str, PromotionStatus]] | None = None,
) -> SyncResult:
    """One pass over environment ``env``. Never raises for domain errors: see ``result.error``.

    With ``dry_run`` it stops after planning (``mlgitops diff``) and writes nothing at all.
    """
    result = SyncResult(env=env)
    saved = store.load_status(env) or {}
    records: dict[str, dict[str, Any]] = saved.get("models", {})
    previous = {
        name: status
        for name, rec in records.items()
        if (status := parse(ModelDeploymentStatus, rec.get("status"))) is not None
    }
    registry: Registry | None = None
    try:
        result.commit, result.desired = load_desired(source, env=env, rev=rev)
        desired = result.desired
        registry = registry_for(desired.environment.spec.registry.tracking_uri)
        result.observed = registry.observe(
            catalog=desired.catalog, inspect=_inspect(desired, previous)
        )
        result.plan = plan(desired, result.observed)
        if result.plan.problems:
            raise InvalidInput(list(result.plan.problems), desired.revision)
        if dry_run:
            return result
        reason = _reason(result.commit)
        stamp = now()
        for change in result.plan.changes:
            event = change.event(revision=result.commit.sha, reason=reason, time=stamp)
            registry.set_alias(model=change.model, event=event)
            result.applied.append(change)
        base = saved.get("lastAppliedRevision")
        for model, version in _rollbacks(source, base, result.commit.sha, env, result.applied):
            registry.tag_version(
                model=model, version=version, key=TAG_ROLLED_BACK, value=result.commit.sha
            )
            result.rolled_back.append((model, version))
        if serve is not None:
            result.serving = dict(serve(result.desired))
        if train is not None:
            result.training = dict(train(result.desired))
        if promote is not None:
            result.promotion = dict(promote(result.desired))
    except (InvalidInput, Unavailable) as exc:
        result.error = exc
        if dry_run:
            return result

    stamp = now()
    if result.error is None:
        models = _applied_records(result, records, previous, stamp)
        saved["lastAppliedRevision"] = result.desired.revision if result.desired else None
        saved["problems"] = []
        saved.pop("lastError", None)
    else:
        models = _failed_records(result.error, records, previous, result.commit, stamp)
        problems = getattr(result.error, "problems", None)
        saved["problems"] = [str(p) for p in problems] if problems else [str(result.error)]
        saved["lastError"] = {"reason": error_reason(result.error), "time": stamp}
    attempted = result.commit.sha if result.commit else getattr(result.error, "revision", None)
    if attempted:
        saved["lastAttemptedRevision"] = attempted
    saved.update(environment=env, models=models, updated=stamp, source=source.display)
    if registry is not None:
        saved["registry"] = registry.display
    store.save_status(env, saved)
    result.status = saved
    return result


def _rollbacks(
    source: Source, base: str | None, head: str, env: str, applied: list[AliasChange]
) -> list[tuple[str, str]]:
    """(model, version) of the champions this sync took away through a Git change that was not
    a promotion commit (a revert, a hand edit): never proposed again."""
    moved = [
        (c.deployment, c.model, c.previous, c.version)
        for c in applied
        if c.alias == "champion" and c.previous is not None
    ]
    return [
        (model, v) for _, model, v in rollbacks(source, base=base, head=head, env=env, moved=moved)
    ]


def rollbacks(
    source: Source,
    *,
    base: str | None,
    head: str,
    env: str,
    moved: list[tuple[str, str, str, str | None]],
) -> list[tuple[str, str, str]]:
    """(deployment, model, version) of the champions that lost their pin between revisions
    ``base`` and ``head`` of environment ``env`` through a change that was not a promotion
    commit. ``moved``: (deployment, registered model, previous champion, new champion or None)
    of each champion pin that changed. Unknown history (first sync, a force push) marks
    nothing. Shared by the local engine (alias changes) and the operator's Git sync (pins)."""
    if not moved or not base or base == head:
        return []
    values = source.trailers(base, head, PROMOTION_TRAILER)
    if values is None:
        return []
    promoted: dict[str, set[tuple[str, str]]] = {}
    for value in values:
        parts = value.split("/")
        if len(parts) == 4 and parts[0] == env and parts[3].startswith("v"):
            promoted.setdefault(parts[1], set()).add((parts[2], parts[3][1:]))
    out: list[tuple[str, str, str]] = []
    for deployment, model, previous, new in moved:
        lost = rolled_back([("champion", previous, new)], promoted.get(deployment, set()))
        out.extend((deployment, model, v) for v in lost)
    return out


def _reason(commit: Commit) -> str:
    return f"revision {commit.short}: {commit.subject}"[:500]


def _applied_records(
    result: SyncResult,
    records: Mapping[str, dict[str, Any]],
    previous: Mapping[str, ModelDeploymentStatus],
    stamp: str,
) -> dict[str, dict[str, Any]]:
    desired, commit, observed = result.desired, result.commit, result.observed
    assert desired is not None
    assert commit is not None
    assert observed is not None
    out: dict[str, dict[str, Any]] = {}
    for d in desired.deployments:
        name = d.doc.metadata.name
        old_rec = records.get(name, {})
        spec_hash = _spec_hash(d.doc)
        # The local runtime's generation: bumped when the document's spec changes, as the API
        # server bumps metadata.generation.
        generation = int(old_rec.get("generation", 0)) + (old_rec.get("specHash") != spec_hash)
        status = applied_status(
            previous=previous.get(name),
            spec=d.doc.spec,
            model=d.registered_model,
            observed=observed,
            revision=commit.sha,
            applied=f"revision {commit.short}",
            reason=_reason(commit),
            changes=[c for c in result.applied if c.deployment == name],
            generation=generation,
            serving=result.serving.get(name),
            training=result.training.get(name),
            promotion=result.promotion.get(name),
            now=stamp,
        )
        out[name] = {"generation": generation, "specHash": spec_hash, "status": dump(status)}
    return out


def _failed_records(
    error: MlgitopsError,
    records: Mapping[str, dict[str, Any]],
    previous: Mapping[str, ModelDeploymentStatus],
    commit: Commit | None,
    stamp: str,
) -> dict[str, dict[str, Any]]:
    """The last good state stays in force; every known ModelDeployment says why it is not Ready."""
    attempted = (error.revision if isinstance(error, InvalidInput) else None) or (
        commit.sha if commit else None
    )
    return {
        name: {
            **rec,
            "status": dump(
                failed_status(
                    previous=previous.get(name), error=error, attempted=attempted, now=stamp
                )
            ),
        }
        for name, rec in records.items()
    }
