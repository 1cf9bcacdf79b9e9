"""The status contract, as Flux and the Kubernetes API conventions shape it.

One ``ModelDeploymentStatus`` per document, written by one summarizer
(``controller.reconcile.summarize``) and nowhere else. ``Ready`` is always present; ``Reconciling``
and ``Stalled`` appear only while true. There is no ``phase``: conditions carry the state.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

HISTORY_LIMIT = 10


class StatusModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class Condition(StatusModel):
    type: Literal["Ready", "Reconciling", "Stalled", "Training", "AwaitingApproval"]
    status: Literal["True", "False", "Unknown"]
    reason: str = Field(pattern=r"^[A-Z][A-Za-z0-9]*$")
    message: str = ""
    last_transition_time: str
    observed_generation: int | None = None


class VersionStatus(StatusModel):
    version: str
    run_id: str | None = None
    code_commit: str | None = None
    validation_status: str | None = None


class HistoryEntry(StatusModel):
    alias: Literal["champion", "challenger"]
    version: str | None = Field(
        default=None, description="The version the alias moved to; null: removed."
    )
    previous: str | None = None
    revision: str
    reason: str
    time: str


class ServingStatus(StatusModel):
    """What the serving Deployment reports (Kubernetes runtime) or the local server (embedded)."""

    url: str | None = None
    replicas: int = 0
    ready_replicas: int = 0
    updated_replicas: int = 0
    champion: str | None = Field(default=None, description="Champion version rolled out.")
    challenger: str | None = Field(default=None, description="Challenger version rolled out.")
    challenger_traffic: int = 0
    rolled_out: bool = Field(
        default=False, description="Every replica runs the versions and split Git pins."
    )


class InventoryEntry(StatusModel):
    """A child object the controller owns; what Git drops from here is pruned."""

    api_version: str
    kind: str
    name: str


class TrainingRunStatus(StatusModel):
    """One training run as status shows it (the MLflow run is the record)."""

    run_id: str
    trigger: str
    key: str
    attempt: int = 1
    code_commit: str | None = None
    state: Literal["Running", "Succeeded", "Failed"]
    started: str | None = None
    finished: str | None = None
    version: str | None = Field(default=None, description="The model version it produced.")
    reason: str | None = None
    log: str | None = Field(default=None, description="Where its output is kept.")


class TrainingStatus(StatusModel):
    """Training from code: what was trained last, what runs now, what came of the last run."""

    last_trained_commit: str | None = None
    in_flight: TrainingRunStatus | None = None
    last_run: TrainingRunStatus | None = None
    skipped: list[str] = Field(
        default_factory=list, description="Commits superseded before a run started (newest 10)."
    )
    problem: str | None = Field(
        default=None, description="Why training cannot proceed (an unreachable repository, ...)."
    )


class PromotionStatus(StatusModel):
    """The way from a new version to champion: what is being validated, what waits, and why."""

    validating: str | None = Field(default=None, description="The version being validated.")
    awaiting_approval: str | None = Field(
        default=None, description="The promotion branch whose merge approves the proposal."
    )
    last_proposal: str | None = Field(
        default=None, description="The last pin written back: alias, version, commit or branch."
    )
    waiting: str | None = Field(
        default=None, description="Why nothing moves now (a LOST challenger, a policy, ...)."
    )
    problem: str | None = Field(
        default=None, description="Why the promotion path cannot proceed (a failed write-back)."
    )


class ModelDeploymentStatus(StatusModel):
    observed_generation: int | None = None
    conditions: list[Condition] = Field(default_factory=list)
    last_applied_revision: str | None = None
    last_attempted_revision: str | None = None
    registered_model: str | None = None
    champion: VersionStatus | None = None
    challenger: VersionStatus | None = None
    history: list[HistoryEntry] = Field(default_factory=list)
    serving: ServingStatus | None = None
    training: TrainingStatus | None = None
    promotion: PromotionStatus | None = None
    inventory: list[InventoryEntry] = Field(default_factory=list)

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)


class EnvironmentStatus(StatusModel):
    """What the controller last did with an environment folder as a whole."""

    observed_generation: int | None = None
    conditions: list[Condition] = Field(default_factory=list)
    last_applied_revision: str | None = Field(
        default=None, description="The last config revision applied in full."
    )
    last_attempted_revision: str | None = Field(
        default=None, description="The last config revision tried, applied or rejected."
    )
    inventory: list[str] = Field(
        default_factory=list,
        description="ModelDeployments applied from Git; those Git drops are pruned.",
    )

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)
