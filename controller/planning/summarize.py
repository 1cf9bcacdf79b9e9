"""The one status builder: what a pass did, turned into a ModelDeployment or Environment status.

Both runtimes report through here: the environment pass (``controller.engine``, which the CLI and
``mlgitops run`` use) and the operator's per-object pass (``controller.kubernetes.deployment``).
Steps never write conditions themselves; they describe their result as an :class:`Outcome`, and
these functions decide the conditions, the versions shown, the history entries and the messages.
So both runtimes say the same thing in the same words, and a rule (say, Ready only once serving
has rolled out) changes in one place.

Rules kept here (Flux and the Kubernetes API conventions):

- ``Ready`` is always present; ``Reconciling`` and ``Stalled`` appear only while true; while
  what was applied is still rolling out, Ready is Unknown with reason Progressing (kstatus).
- A condition keeps its ``lastTransitionTime`` while its status stays the same, so an unchanged
  pass produces an identical status and costs no write.
- A pass that applied nothing keeps the last good state (revision, versions, serving, inventory)
  and says why it is not Ready.

Everything here is pure: the time is passed in.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import ValidationError

from controller.api.documents import ModelDeploymentSpec
from controller.api.status import (
    HISTORY_LIMIT,
    Condition,
    EnvironmentStatus,
    HistoryEntry,
    InventoryEntry,
    ModelDeploymentStatus,
    PromotionStatus,
    ServingStatus,
    StatusModel,
    TrainingStatus,
    VersionStatus,
)
from controller.errors import InvalidInput, MlgitopsError
from controller.planning.types import AliasChange, Observed, VersionInfo

S = TypeVar("S", bound=StatusModel)
MAX_PROBLEMS_SHOWN = 3


@dataclass(frozen=True)
class Outcome:
    """What a pass did, as the summarizer needs it. Steps build this; only this module reads it."""

    attempted: str | None  # the revision tried, None if Git could not be read
    applied: bool
    reason: str  # CamelCase
    message: str
    stalled: bool = False
    progressing: str | None = None  # set while applied state is still rolling out
    training: str | None = None  # set while a training run is in flight
    awaiting: str | None = None  # set while a promotion branch waits for its merge


def conditions(
    previous: ModelDeploymentStatus | EnvironmentStatus | None,
    outcome: Outcome,
    *,
    generation: int | None,
    now: str,
) -> list[Condition]:
    """Ready always; Reconciling and Stalled only while true.

    As kstatus has it, an applied revision still rolling out is not Ready yet: Ready is Unknown
    (reason Progressing) until serving runs what Git pins, so ``kubectl wait
    --for=condition=Ready`` returns only once the new version serves.
    """
    if outcome.applied and outcome.progressing:
        ready = ("Ready", "Unknown", "Progressing", outcome.progressing)
    else:
        ready = ("Ready", "True" if outcome.applied else "False", outcome.reason, outcome.message)
    wanted = [ready]
    if outcome.progressing:
        wanted.append(("Reconciling", "True", "Progressing", outcome.progressing))
    if outcome.stalled:
        wanted.append(("Stalled", "True", outcome.reason, outcome.message))
    if outcome.training:
        wanted.append(("Training", "True", "RunInFlight", outcome.training))
    if outcome.awaiting:
        wanted.append(("AwaitingApproval", "True", "PromotionBranchPushed", outcome.awaiting))
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
    events: Iterable[HistoryEntry] = (),
    serving: ServingStatus | None = None,
    inventory: list[InventoryEntry] | None = None,
    training: TrainingStatus | None = None,
    promotion: PromotionStatus | None = None,
) -> ModelDeploymentStatus:
    """One ModelDeployment's status after a pass: the last good state stays when nothing applied.

    A failed pass passes only the outcome: what it leaves out is kept from ``previous``.
    """
    applied = outcome.applied
    history = [*(previous.history if previous else []), *events][-HISTORY_LIMIT:]
    return ModelDeploymentStatus(
        observed_generation=generation
        if applied
        else (previous.observed_generation if previous else None),
        conditions=conditions(previous, outcome, generation=generation, now=now),
        last_applied_revision=outcome.attempted
        if applied
        else (previous.last_applied_revision if previous else None),
        last_attempted_revision=outcome.attempted
        or (previous.last_attempted_revision if previous else None),
        registered_model=registered_model or (previous.registered_model if previous else None),
        champion=champion if applied else (previous.champion if previous else None),
        challenger=challenger if applied else (previous.challenger if previous else None),
        history=history,
        serving=serving if applied else (previous.serving if previous else None),
        training=training or (previous.training if previous else None),
        promotion=promotion or (previous.promotion if previous else None),
        inventory=(
            inventory
            if applied and inventory is not None
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
    return EnvironmentStatus(
        conditions=conditions(previous, outcome, generation=None, now=now),
        last_applied_revision=outcome.attempted
        if outcome.applied
        else (previous.last_applied_revision if previous else None),
        last_attempted_revision=outcome.attempted
        or (previous.last_attempted_revision if previous else None),
        inventory=inventory if inventory is not None else (previous.inventory if previous else []),
    )


# --- the parts of a status both runtimes build ------------------------------------------------


def version_status(
    version: str | None,
    *,
    model: str,
    observed: Observed,
    previous: VersionStatus | None,
) -> VersionStatus | None:
    """The pinned ``version`` as status shows it: run, code commit and validation status.

    The registry was asked only about versions an alias is about to move to; for the others the
    details recorded when the alias moved are kept.
    """
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


def history_entries(
    changes: Iterable[AliasChange], *, revision: str, reason: str, now: str
) -> list[HistoryEntry]:
    """One history entry per alias change a pass applied: the event the registry records."""
    return [
        HistoryEntry.model_validate(
            dataclasses.asdict(c.event(revision=revision, reason=reason, time=now))
        )
        for c in changes
    ]


def progressing(serving: ServingStatus | None) -> str | None:
    """The Reconciling message while serving has not rolled out what Git pins, else None."""
    if serving is None or serving.rolled_out:
        return None
    return (
        f"serving {serving.ready_replicas}/{serving.replicas} replicas ready "
        f"with champion {serving.champion}"
    )


def applied_status(
    *,
    previous: ModelDeploymentStatus | None,
    spec: ModelDeploymentSpec,
    model: str,
    observed: Observed,
    revision: str,
    applied: str,
    reason: str,
    changes: Iterable[AliasChange],
    generation: int | None,
    now: str,
    serving: ServingStatus | None = None,
    inventory: list[InventoryEntry] | None = None,
    detail: str | None = None,
    training: TrainingStatus | None = None,
    promotion: PromotionStatus | None = None,
) -> ModelDeploymentStatus:
    """The status of a ModelDeployment whose revision was applied.

    ``applied`` names what was applied in the Ready message (``revision 1a2b3c4``), ``reason`` is
    the history reason of the alias changes, ``detail`` an optional tail of the message.
    """
    champion = spec.champion.version if spec.champion else None
    challenger = spec.challenger.version if spec.challenger else None
    parts = [f"champion {champion}" if champion else "no champion"]
    if challenger:
        parts.append(f"challenger {challenger}")
    message = f"Applied {applied}: {', '.join(parts)}" + (f"; {detail}" if detail else "")
    return summarize(
        previous=previous,
        outcome=Outcome(
            attempted=revision,
            applied=True,
            reason="Reconciled",
            message=message,
            progressing=progressing(serving),
            training=training_message(training),
            awaiting=awaiting_message(promotion),
        ),
        generation=generation,
        now=now,
        registered_model=model,
        champion=version_status(
            champion,
            model=model,
            observed=observed,
            previous=previous.champion if previous else None,
        ),
        challenger=version_status(
            challenger,
            model=model,
            observed=observed,
            previous=previous.challenger if previous else None,
        ),
        events=history_entries(changes, revision=revision, reason=reason, now=now),
        serving=serving,
        inventory=inventory,
        training=training,
        promotion=promotion,
    )


def training_message(training: TrainingStatus | None) -> str | None:
    """The Training condition's message while a run is in flight, else None."""
    run = training.in_flight if training else None
    if run is None:
        return None
    commit = f" at {run.code_commit[:12]}" if run.code_commit else ""
    return f"run {run.run_id} ({run.trigger} {run.key}, attempt {run.attempt}){commit}"


def awaiting_message(promotion: PromotionStatus | None) -> str | None:
    """The AwaitingApproval condition's message while a promotion branch waits, else None."""
    branch = promotion.awaiting_approval if promotion else None
    if branch is None:
        return None
    return f"merge branch {branch} to approve: {promotion.last_proposal if promotion else ''}"


def error_reason(error: MlgitopsError, *, invalid: str = "InvalidRevision") -> str:
    """The CamelCase reason of an error: ``invalid`` for bad input, else the dependency's."""
    if isinstance(error, InvalidInput):
        return invalid
    return str(getattr(error, "reason", "Unavailable"))


def error_message(error: MlgitopsError) -> str:
    """The error in one message, the first few problems of a rejected revision named."""
    if isinstance(error, InvalidInput) and len(error.problems) > MAX_PROBLEMS_SHOWN:
        shown = "; ".join(str(p) for p in error.problems[:MAX_PROBLEMS_SHOWN])
        return f"{shown}; and {len(error.problems) - MAX_PROBLEMS_SHOWN} more"
    return str(error)


def failed_status(
    *,
    previous: ModelDeploymentStatus | None,
    error: MlgitopsError,
    attempted: str | None,
    now: str,
    generation: int | None = None,
    invalid: str = "InvalidRevision",
) -> ModelDeploymentStatus:
    """The status of a ModelDeployment whose pass applied nothing: the last good state stays.

    Invalid input stalls (retrying will not help); with ``generation``, ``observedGeneration``
    says that generation was seen and refused. An unreachable dependency is only not Ready.
    """
    invalid_input = isinstance(error, InvalidInput)
    status = summarize(
        previous=previous,
        outcome=Outcome(
            attempted=attempted,
            applied=False,
            reason=error_reason(error, invalid=invalid),
            message=error_message(error),
            stalled=invalid_input,
        ),
        generation=generation if invalid_input else None,
        now=now,
    )
    if invalid_input and generation is not None:
        status.observed_generation = generation
    return status


# --- status as stored (JSON / Kubernetes) -------------------------------------------------------


def dump(status: StatusModel) -> dict[str, Any]:
    """A status as JSON-ready data, camelCase keys, empty fields left out."""
    return status.model_dump(mode="json", by_alias=True, exclude_none=True)


@functools.cache
def keys(model: type[StatusModel]) -> frozenset[str]:
    """The top-level keys of a stored status of type ``model``."""
    return frozenset(f.alias or n for n, f in model.model_fields.items())


def parse(model: type[S], stored: Mapping[str, Any] | None) -> S | None:
    """A stored status read back, or None when absent or unreadable (hand-edited, or from an
    older version): the next pass then rebuilds it. Keys of other writers are ignored."""
    known = {k: v for k, v in (stored or {}).items() if k in keys(model)}
    if not known:
        return None
    try:
        return model.model_validate(known)
    except ValidationError:
        return None
