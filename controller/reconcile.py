"""One reconcile pass of one environment: observe -> plan -> apply -> summarize.

Level-based: every pass reads the whole desired state (a Git revision) and the observed state (the
registry), computes a plan with no I/O, applies it once, and writes one status summary. It never
asks what event woke it, so running it twice changes nothing the second time. Invalid input stops
the pass before the first write; an unreachable dependency leaves the last good state in force.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from controller.api.documents import ModelDeployment
from controller.api.loader import DesiredState, load_environment
from controller.api.status import (
    HISTORY_LIMIT,
    Condition,
    EnvironmentStatus,
    HistoryEntry,
    InventoryEntry,
    ModelDeploymentStatus,
    ServingStatus,
    VersionStatus,
)
from controller.errors import InvalidInput, MlgitopsError, Problem, Unavailable
from controller.planning import (
    AliasChange,
    AliasEvent,
    Observed,
    Plan,
    VersionInfo,
    plan,
    versions_to_inspect,
)

ENVIRONMENTS_ROOT = "environments"


class Commit(Protocol):
    @property
    def sha(self) -> str: ...
    @property
    def short(self) -> str: ...
    @property
    def subject(self) -> str: ...


class Source(Protocol):
    display: str

    def resolve(self, rev: str | None = None) -> Commit: ...
    def read_folder(self, sha: str, folder: str) -> dict[str, bytes] | None: ...


class Registry(Protocol):
    display: str

    def observe(
        self, *, catalog: str, inspect: Callable[[dict[str, dict[str, str]]], set[tuple[str, str]]]
    ) -> Observed: ...
    def set_alias(self, *, model: str, event: AliasEvent) -> None: ...


class Store(Protocol):
    def load_status(self, env: str) -> dict[str, Any] | None: ...
    def save_status(self, env: str, data: dict[str, Any]) -> None: ...


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


# --- the one summarizer ------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What a pass did, as the summarizer needs it. Steps build this; only ``summarize`` reads it."""

    attempted: str | None  # the revision tried, None if Git could not be read
    applied: bool
    reason: str  # CamelCase
    message: str
    stalled: bool = False
    progressing: str | None = None  # set while applied state is still rolling out


def _conditions(
    previous: ModelDeploymentStatus | EnvironmentStatus | None,
    outcome: Outcome,
    *,
    generation: int | None,
    now: str,
) -> list[Condition]:
    """Ready always; Reconciling and Stalled only while true. A condition keeps its
    lastTransitionTime while its status stays the same, so an unchanged pass writes nothing."""
    wanted = [("Ready", "True" if outcome.applied else "False", outcome.reason, outcome.message)]
    if outcome.progressing:
        wanted.append(("Reconciling", "True", "Progressing", outcome.progressing))
    if outcome.stalled:
        wanted.append(("Stalled", "True", outcome.reason, outcome.message))
    out = []
    for type_, status, reason, message in wanted:
        old = previous.condition(type_) if previous else None
        since = old.last_transition_time if old is not None and old.status == status else now
        out.append(
            Condition.model_validate(
                {
                    "type": type_,
                    "status": status,
                    "reason": reason,
                    "message": message,
                    "lastTransitionTime": since,
                    "observedGeneration": generation,
                }
            )
        )
    return out


def summarize(
    *,
    previous: ModelDeploymentStatus | None,
    outcome: Outcome,
    generation: int | None,
    now: str,
    registered_model: str | None = None,
    champion: VersionStatus | None = None,
    challenger: VersionStatus | None = None,
    events: Sequence[HistoryEntry] = (),
    serving: ServingStatus | None = None,
    inventory: list[InventoryEntry] | None = None,
) -> ModelDeploymentStatus:
    """One ModelDeployment's status after a pass: the last good state stays when nothing applied.

    A failed pass passes only the outcome: what it leaves out is kept from ``previous``.
    """
    conditions = _conditions(previous, outcome, generation=generation, now=now)
    history = [*(previous.history if previous else []), *events][-HISTORY_LIMIT:]
    return ModelDeploymentStatus(
        observed_generation=generation
        if outcome.applied
        else (previous.observed_generation if previous else None),
        conditions=conditions,
        last_applied_revision=outcome.attempted
        if outcome.applied
        else (previous.last_applied_revision if previous else None),
        last_attempted_revision=outcome.attempted
        or (previous.last_attempted_revision if previous else None),
        registered_model=registered_model or (previous.registered_model if previous else None),
        champion=champion if outcome.applied else (previous.champion if previous else None),
        challenger=challenger if outcome.applied else (previous.challenger if previous else None),
        history=history,
        serving=serving if outcome.applied else (previous.serving if previous else None),
        inventory=(
            inventory
            if outcome.applied and inventory is not None
            else (previous.inventory if previous else [])
        ),
    )


def summarize_environment(
    *,
    previous: EnvironmentStatus | None,
    outcome: Outcome,
    inventory: list[str] | None,
    now: str,
) -> EnvironmentStatus:
    """The Environment's status after a Git sync: the same condition rules as a ModelDeployment."""
    conditions = _conditions(previous, outcome, generation=None, now=now)
    return EnvironmentStatus(
        conditions=conditions,
        last_applied_revision=outcome.attempted
        if outcome.applied
        else (previous.last_applied_revision if previous else None),
        last_attempted_revision=outcome.attempted
        or (previous.last_attempted_revision if previous else None),
        inventory=inventory if inventory is not None else (previous.inventory if previous else []),
    )


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
    error: MlgitopsError | None = None
    status: dict[str, Any] = field(default_factory=dict)


def _spec_hash(doc: ModelDeployment) -> str:
    raw = json.dumps(doc.spec.model_dump(mode="json", by_alias=True), sort_keys=True)
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def _version_status(
    version: str | None,
    *,
    model: str,
    observed: Observed,
    previous: VersionStatus | None,
) -> VersionStatus | None:
    if version is None:
        return None
    seen = observed.models.get(model)
    info: VersionInfo | None = seen.versions.get(version) if seen else None
    if info is not None:
        return VersionStatus(
            version=version,
            run_id=info.run_id,
            code_commit=info.code_commit,
            validation_status=info.validation_status,
        )
    if previous is not None and previous.version == version:
        return previous
    failed = (model, version) in observed.failed
    return VersionStatus(version=version, validation_status="FAILED" if failed else None)


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
    registry_for: Callable[[str | None], Registry],
    store: Store,
    rev: str | None = None,
    dry_run: bool = False,
    now: Callable[[], str] = now_iso,
    serve: Callable[[DesiredState], Mapping[str, ServingStatus]] | None = None,
) -> SyncResult:
    """One pass over environment ``env``. Never raises for domain errors: see ``result.error``.

    With ``dry_run`` it stops after planning (``mlgitops diff``) and writes nothing at all.
    """
    result = SyncResult(env=env)
    saved = store.load_status(env) or {}
    records: dict[str, dict[str, Any]] = saved.get("models", {})
    previous = {
        name: ModelDeploymentStatus.model_validate(rec["status"])
        for name, rec in records.items()
        if "status" in rec
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
            event = AliasEvent(
                alias=change.alias,
                version=change.version,
                previous=change.previous,
                revision=result.commit.sha,
                reason=reason,
                time=stamp,
            )
            registry.set_alias(model=change.model, event=event)
            result.applied.append(change)
        if serve is not None:
            result.serving = dict(serve(result.desired))
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
        saved["lastError"] = {"reason": _error_reason(result.error), "time": stamp}
    attempted = result.commit.sha if result.commit else getattr(result.error, "revision", None)
    if attempted:
        saved["lastAttemptedRevision"] = attempted
    saved.update(environment=env, models=models, updated=stamp, source=source.display)
    if registry is not None:
        saved["registry"] = registry.display
    store.save_status(env, saved)
    result.status = saved
    return result


def _reason(commit: Commit) -> str:
    return f"revision {commit.short}: {commit.subject}"[:500]


def _error_reason(error: MlgitopsError) -> str:
    return (
        "InvalidRevision"
        if isinstance(error, InvalidInput)
        else getattr(error, "reason", "Unavailable")
    )


def _dump(status: ModelDeploymentStatus) -> dict[str, Any]:
    return status.model_dump(mode="json", by_alias=True, exclude_none=True)


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
        name, spec = d.doc.metadata.name, d.doc.spec
        old_rec, old = records.get(name, {}), previous.get(name)
        spec_hash = _spec_hash(d.doc)
        generation = int(old_rec.get("generation", 0)) + (old_rec.get("specHash") != spec_hash)
        champion = _version_status(
            spec.champion.version if spec.champion else None,
            model=d.registered_model,
            observed=observed,
            previous=old.champion if old else None,
        )
        challenger = _version_status(
            spec.challenger.version if spec.challenger else None,
            model=d.registered_model,
            observed=observed,
            previous=old.challenger if old else None,
        )
        events = [
            HistoryEntry(
                alias=c.alias,
                version=c.version,
                previous=c.previous,
                revision=commit.sha,
                reason=_reason(commit),
                time=stamp,
            )
            for c in result.applied
            if c.deployment == name
        ]
        parts = [f"champion {champion.version}" if champion else "no champion"]
        if challenger:
            parts.append(f"challenger {challenger.version}")
        serving = result.serving.get(name)
        progressing = None
        if serving is not None and not serving.rolled_out:
            progressing = f"serving at {serving.url} is not ready yet"
        status = summarize(
            previous=old,
            outcome=Outcome(
                attempted=commit.sha,
                applied=True,
                reason="Reconciled",
                message=f"Applied revision {commit.short}: {', '.join(parts)}",
                progressing=progressing,
            ),
            serving=serving,
            generation=generation,
            registered_model=d.registered_model,
            champion=champion,
            challenger=challenger,
            events=events,
            now=stamp,
        )
        out[name] = {"generation": generation, "specHash": spec_hash, "status": _dump(status)}
    return out


def _failed_records(
    error: MlgitopsError,
    records: Mapping[str, dict[str, Any]],
    previous: Mapping[str, ModelDeploymentStatus],
    commit: Commit | None,
    stamp: str,
) -> dict[str, dict[str, Any]]:
    """The last good state stays in force; every known ModelDeployment says why it is not Ready."""
    stalled = isinstance(error, InvalidInput)
    attempted = (error.revision if isinstance(error, InvalidInput) else None) or (
        commit.sha if commit else None
    )
    message = str(error)
    if isinstance(error, InvalidInput) and len(error.problems) > 3:
        message = "; ".join(str(p) for p in error.problems[:3])
        message += f"; and {len(error.problems) - 3} more"
    out: dict[str, dict[str, Any]] = {}
    for name, rec in records.items():
        status = summarize(
            previous=previous.get(name),
            outcome=Outcome(
                attempted=attempted,
                applied=False,
                reason=_error_reason(error),
                message=message,
                stalled=stalled,
            ),
            generation=None,
            now=stamp,
        )
        out[name] = {**rec, "status": _dump(status)}
    return out
