"""Pure planning: desired state (Git) + observed state (registry) -> a typed plan. No I/O here."""

from controller.planning.globs import touches
from controller.planning.plan import plan, versions_to_inspect
from controller.planning.types import (
    ALIASES,
    VALIDATION_TAG,
    Alias,
    AliasChange,
    AliasEvent,
    ModelPlan,
    Observed,
    ObservedModel,
    Plan,
    VersionInfo,
)

__all__ = [
    "ALIASES",
    "VALIDATION_TAG",
    "Alias",
    "AliasChange",
    "AliasEvent",
    "ModelPlan",
    "Observed",
    "ObservedModel",
    "Plan",
    "VersionInfo",
    "plan",
    "touches",
    "versions_to_inspect",
]
