"""``plan(desired, observed)``: the whole decision of a sync, as a pure function.

Git pins ``champion`` and ``challenger``; the registry holds aliases. The plan moves each alias to
its pin, removes an alias Git no longer pins, and refuses the whole revision if any pin names a
model or version that does not exist or a version whose validation FAILED. (A model that trains
from code and pins nothing yet may not exist: its first training run registers it.) Refusing whole (rather
than skipping the bad document) is the GitOps contract: a revision is either in force or not.
"""

from __future__ import annotations

from controller.api.loader import DesiredState
from controller.errors import Problem
from controller.planning.types import ALIASES, AliasChange, ModelPlan, Observed, Plan


def _pins(desired: DesiredState) -> list[tuple[str, str, dict[str, str | None]]]:
    out = []
    for d in desired.deployments:
        spec = d.doc.spec
        pins: dict[str, str | None] = {
            "champion": spec.champion.version if spec.champion else None,
            "challenger": spec.challenger.version if spec.challenger else None,
        }
        out.append((d.doc.metadata.name, d.registered_model, pins))
    return out


def versions_to_inspect(
    desired: DesiredState, observed_aliases: dict[str, dict[str, str]]
) -> set[tuple[str, str]]:
    """Pinned versions the planner must see in detail: those no alias points at yet.

    A version an alias already points at is known to exist (MLflow drops the aliases of a deleted
    version), and FAILED versions come from one catalog-wide search, so a no-op sync reads nothing
    per model.
    """
    want: set[tuple[str, str]] = set()
    for _name, model, pins in _pins(desired):
        current = set(observed_aliases.get(model, {}).values())
        want.update((model, v) for v in pins.values() if v is not None and v not in current)
    return want


def plan(desired: DesiredState, observed: Observed) -> Plan:
    problems: list[Problem] = []
    models: list[ModelPlan] = []
    by_model = {d.registered_model: d for d in desired.deployments}
    for name, model, pins in _pins(desired):
        at = by_model[model].at
        seen = observed.models.get(model)
        if seen is None:
            pinned = any(v is not None for v in pins.values())
            if pinned or by_model[model].doc.spec.training is None:
                problems.append(
                    at.problem("spec.model", f"registered model {model} does not exist")
                )
            else:  # a new model: its first training run registers it; nothing to move yet
                empty: dict[str, str | None] = dict.fromkeys(ALIASES)
                models.append(ModelPlan(name, model, empty, pins, ()))
            continue
        aliased = set(seen.aliases.values())
        for alias in ALIASES:
            version = pins[alias]
            if version is None:
                continue
            field = f"spec.{alias}.version"
            if version not in aliased and version not in seen.versions:
                problems.append(at.problem(field, f"version {version} of {model} does not exist"))
            elif (model, version) in observed.failed:
                problems.append(
                    at.problem(
                        field,
                        f"version {version} of {model} failed validation (model_validation_status=FAILED)",
                    )
                )
        before: dict[str, str | None] = {alias: seen.aliases.get(alias) for alias in ALIASES}
        changes = tuple(
            AliasChange(
                model=model,
                alias=alias,
                version=pins[alias],
                previous=before[alias],
                deployment=name,
            )
            for alias in ALIASES
            if before[alias] != pins[alias]
        )
        models.append(
            ModelPlan(deployment=name, model=model, before=before, after=pins, changes=changes)
        )
    if problems:
        return Plan(desired.revision, (), tuple(problems))
    return Plan(desired.revision, tuple(models))
