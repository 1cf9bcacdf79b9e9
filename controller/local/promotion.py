"""Validation and promotion on this machine: ``mlgitops validate-model`` as a tracked process, and
the write-back to the config repository ``mlgitops run`` syncs from.

``LocalPromotion`` runs the shared promotion pass (``controller.promotion``) for every
ModelDeployment, on each pass of ``mlgitops run``, after training: a version a training run just
registered is validated in the same pass. Validations are tracked processes
(``local.tracked``) keyed by the version under ``<state>/envs/<env>/validation/<name>/``, so a
restarted runtime adopts one still going rather than starting a second. Write-backs go through
``sources.WriteBack`` with its own clone under ``<state>/writeback``; a local config repository
with the write-back branch checked out needs ``git config receive.denyCurrentBranch
updateInstead`` (the error says so). A commit pushed to the branch calls ``on_written``, so the
runtime syncs it at once instead of at its next poll: a challenger commit, then the champion
commit its sync leads to, each moves its alias within the second.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from controller.api.documents import Environment
from controller.api.loader import DesiredState
from controller.api.status import PromotionStatus
from controller.local.forkserver import ForkServer
from controller.local.tracked import Tracked
from controller.pipeline.pins import check_deployment
from controller.planning.ports import Promoter, RunnerState, Tracking
from controller.promotion import promotion_pass
from controller.training import Event

# The Events of a promotion commit pushed to the branch the runtime syncs (policy auto); a
# promotion branch awaiting its merge (manual) changes nothing until it is merged.
WRITTEN = frozenset({"ChallengerProposed", "PromotionCommitted"})


class LocalValidator:
    """``ports.Validator`` on this machine: ``python -m controller validate-model ...``."""

    def __init__(
        self,
        root: Path,
        state_root: Path,
        on_exit: Callable[[], None] = lambda: None,
        forks: ForkServer | None = None,
    ) -> None:
        self.tracked = Tracked(root, on_exit)
        self.state_root = state_root  # the embedded store keeps its artifacts there
        self.forks = forks  # warm starts (None: a fresh interpreter each time)

    def state(self, key: str) -> RunnerState:
        return self.tracked.state(key)

    def start(self, key: str, *, args: list[str], env: Mapping[str, str], timeout: float) -> str:
        return self.tracked.start_mlgitops(
            key,
            [*args, "--state-dir", str(self.state_root)],
            env=env,
            timeout=timeout,
            forks=self.forks,
            header=f"$ mlgitops {args[0]} (version {key})",
        )

    def cleanup(self, key: str) -> None:
        self.tracked.forget(key)


@dataclass
class LocalPromotion:
    """The promotion pass of every ModelDeployment, on this machine."""

    env: str
    state_root: Path
    tracking_uri: str
    tracking: Tracking
    promoter_for: Callable[[Environment], Promoter]  # the config repository's write-back
    data_root: str | None = None
    on_event: Callable[[Event], None] = lambda _: None
    on_exit: Callable[[], None] = lambda: None  # a validation this process started ended
    # A promotion was committed to the branch (policy auto): the next pass syncs it at once.
    on_written: Callable[[], None] = lambda: None
    forks: ForkServer | None = None  # warm starts for validations (None: cold ones)
    statuses: dict[str, PromotionStatus] = field(default_factory=dict)
    _left: set[Path] = field(default_factory=set)  # ended records the last pass left

    def dir(self, name: str) -> Path:
        return self.state_root / "envs" / self.env / "validation" / name

    def _ended(self) -> set[Path]:
        root = self.state_root / "envs" / self.env / "validation"
        return {r for d in root.glob("*/") for r in Tracked(d).ended()}

    def needs_pass(self) -> bool:
        """A validation ended since the last pass (one adopted after a restart too)."""
        return bool(self._ended() - self._left)

    def apply(self, desired: DesiredState) -> dict[str, PromotionStatus]:
        out: dict[str, PromotionStatus] = {}
        environment = desired.environment
        promoter = self.promoter_for(environment)
        if self.forks and any(d.doc.spec.validation for d in desired.deployments):
            self.forks.warm()  # imported by the time a training run ends
        for d in desired.deployments:
            spec = d.doc.spec
            if not (spec.validation or spec.training or spec.promotion.online):
                continue  # nothing of its versions is the controller's to validate or propose
            name = d.doc.metadata.name

            def check(data: bytes, path: str = d.at.file, name: str = name) -> None:
                check_deployment(data, path=path, name=name, environment=environment)

            result = promotion_pass(
                environment=environment,
                deployment=d,
                tracking=self.tracking,
                validator=LocalValidator(self.dir(name), self.state_root, self.on_exit, self.forks),
                promoter=promoter,
                tracking_uri=self.tracking_uri,
                data_root=self.data_root,
                check=check,
            )
            before = self.statuses.get(name)
            if any(e.reason in WRITTEN for e in result.events):
                self.on_written()
            for event in result.events:
                repeated = before is not None and event.message == before.problem
                if not (event.reason == "WriteBackFailed" and repeated):
                    self.on_event(dataclasses.replace(event, deployment=name))
            out[name] = result.status
        self.statuses = out
        self._left = self._ended()
        return out
