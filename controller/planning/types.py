"""Plain data shared by the planner and the adapters: what was observed, and what to do.

Everything here is immutable and free of I/O, so a plan can be computed, printed (``diff``),
compared in a test and applied later, exactly once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from controller.errors import Problem

Alias = Literal["champion", "challenger"]
ALIASES: tuple[Alias, ...] = ("champion", "challenger")
VALIDATION_TAG = "model_validation_status"


@dataclass(frozen=True)
class VersionInfo:
    """One registered model version, as far as the planner cares."""

    version: str
    validation_status: str | None = None
    run_id: str | None = None
    code_commit: str | None = None


@dataclass(frozen=True)
class ObservedModel:
    name: str
    aliases: Mapping[str, str] = field(default_factory=dict)
    # Only the versions the planner asked about; a pinned version absent here does not exist.
    versions: Mapping[str, VersionInfo] = field(default_factory=dict)


@dataclass(frozen=True)
class Observed:
    """The registry as seen at one moment, for one catalog."""

    models: Mapping[str, ObservedModel]
    failed: frozenset[tuple[str, str]] = frozenset()  # (model, version) tagged FAILED


@dataclass(frozen=True)
class AliasChange:
    """Point ``alias`` of ``model`` at ``version`` (None: remove the alias)."""

    model: str
    alias: Alias
    version: str | None
    previous: str | None
    deployment: str  # the ModelDeployment's metadata.name

    def event(self, *, revision: str, reason: str, time: str) -> AliasEvent:
        """The record of this change, as the registry keeps it."""
        return AliasEvent(
            alias=self.alias,
            version=self.version,
            previous=self.previous,
            revision=revision,
            reason=reason,
            time=time,
        )


@dataclass(frozen=True)
class ModelPlan:
    deployment: str
    model: str
    before: Mapping[str, str | None]
    after: Mapping[str, str | None]
    changes: tuple[AliasChange, ...]


@dataclass(frozen=True)
class Plan:
    revision: str
    models: tuple[ModelPlan, ...]
    problems: tuple[Problem, ...] = ()

    @property
    def changes(self) -> tuple[AliasChange, ...]:
        return tuple(c for m in self.models for c in m.changes)


@dataclass(frozen=True)
class AliasEvent:
    """The record of one alias change, stored on the model version so history outlives us."""

    alias: Alias
    version: str | None
    previous: str | None
    revision: str
    reason: str
    time: str


# --- training -------------------------------------------------------------------------------------

RUN_STATES = ("SCHEDULED", "RUNNING", "FINISHED", "FAILED", "KILLED")  # MLflow's run statuses


@dataclass(frozen=True)
class TrainingRun:
    """One training run as the tracking server keeps it: an MLflow run tagged ``mlgitops.*``.

    The MLflow run is created by the controller before anything starts, and searched for by its
    (trigger, key) first, so it is the record that makes a run happen exactly once.
    """

    run_id: str
    experiment_id: str
    status: str  # one of RUN_STATES
    tags: Mapping[str, str] = field(default_factory=dict)
    start_time: int | None = None  # ms since the epoch
    end_time: int | None = None

    @property
    def trigger(self) -> str | None:
        return self.tags.get("mlgitops.trigger")

    @property
    def key(self) -> str | None:
        return self.tags.get("mlgitops.trigger_key")


@dataclass(frozen=True)
class RegisteredVersion:
    """A model version registered from a run (``name`` is the full registered model name)."""

    name: str
    version: str
    run_id: str | None = None
    source: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    created: int | None = None  # ms since the epoch
    updated: int | None = None  # MLflow's last_updated_timestamp: tag writes leave it alone
