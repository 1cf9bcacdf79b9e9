"""Training runs on this machine: each run's script in a clean checkout of its commit.

``LocalRunner`` is the embedded runtime's ``Runner``: ``training.command`` runs in a detached git
worktree of the commit under the state directory, in a session of its own, with the run's
environment (``MLFLOW_RUN_ID`` and the rest), its output in a log file beside it. It is a tracked
process (``local.tracked``): a record and an exit-code file outlive this runtime, so a restarted
runtime adopts a run still going (never starting a second one) and
learns how one that ended while it was down went. A run past its ``training.timeout`` is ended
(its whole process group). The checkout is removed once the run is finished; the log stays.

``LocalTraining`` runs the shared training pass (``controller.training``) for every
ModelDeployment with a ``training`` section, on each pass of ``mlgitops run``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from controller.api.loader import DesiredState
from controller.api.status import TrainingStatus
from controller.local.tracked import Tracked
from controller.planning.ports import CodeSource, RunnerState, Tracking
from controller.planning.types import TrainingRun
from controller.state import write_json
from controller.training import Event, training_pass


class LocalRunner:
    """The ``Runner`` of one ModelDeployment on this machine: a tracked process per run."""

    def __init__(
        self, *, root: Path, code: CodeSource, on_exit: Callable[[], None] = lambda: None
    ) -> None:
        self.root = root
        self.code = code
        self.tracked = Tracked(root, on_exit)  # on_exit: a run it started ended

    def _checkout(self, run_id: str) -> Path:
        return self.root / run_id

    def start(
        self,
        run: TrainingRun,
        *,
        commit: str,
        command: list[str],
        env: Mapping[str, str],
        timeout: float,
    ) -> str:
        checkout = self._checkout(run.run_id)
        self.root.mkdir(parents=True, exist_ok=True)
        self.code.checkout(commit, checkout)
        return self.tracked.start(
            run.run_id,
            command,
            env=env,
            timeout=timeout,
            cwd=checkout,
            header=f"$ {shlex.join(command)}   # at {commit} in {checkout}",
        )

    def state(self, run: TrainingRun) -> RunnerState:
        state = self.tracked.state(run.run_id)
        if state.state != "failed" or state.reason is None:
            return state
        reason = state.reason
        if reason.startswith("command not found"):
            reason += " (training.command)"
        elif reason.startswith("exited with code"):
            reason = f"the script {reason}"
        elif reason.startswith("timed out"):
            reason += " (training.timeout)"
        return RunnerState("failed", reason, state.log)

    def log(self, run: TrainingRun) -> str | None:
        return self.tracked.log(run.run_id)

    def cleanup(self, run: TrainingRun) -> None:
        with contextlib.suppress(Exception):
            self.code.remove_checkout(self._checkout(run.run_id))
        self.tracked.forget(run.run_id)


@dataclass
class LocalTraining:
    """The training pass of every ModelDeployment with ``training``, on this machine."""

    env: str
    state_root: Path
    tracking_uri: str
    tracking: Tracking
    code_for: Callable[[str], CodeSource]  # the code repository of a training.source.repo
    data_root: str | None = None
    on_event: Callable[[Event], None] = lambda _: None
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)
    on_exit: Callable[[], None] = lambda: None  # a run this process started ended
    statuses: dict[str, TrainingStatus] = field(default_factory=dict)
    _left: set[Path] = field(default_factory=set)  # ended records the last pass did not clear

    def dir(self, name: str) -> Path:
        return self.state_root / "envs" / self.env / "training" / name

    def _since(self, name: str) -> dt.datetime:
        """When this machine first saw ``name``'s training (schedules count from there)."""
        path = self.dir(name) / "since.json"
        try:
            return dt.datetime.fromisoformat(json.loads(path.read_text())["since"])
        except (OSError, ValueError, KeyError):
            now = self.clock()
            path.parent.mkdir(parents=True, exist_ok=True)
            write_json(path, {"since": now.isoformat()})
            return now

    def _ended(self) -> set[Path]:
        """The records of runs on this machine that ended or are past their deadline."""
        root = self.state_root / "envs" / self.env / "training"
        return {r for d in root.glob("*/") for r in Tracked(d).ended()}

    def needs_pass(self) -> bool:
        """Whether a run ended (or passed its deadline) since the last pass: its version is
        registered, or its failure recorded, now rather than at the next Git poll. A record the
        last pass left as it was does not count again (no pass after pass)."""
        return bool(self._ended() - self._left)

    def apply(self, desired: DesiredState) -> dict[str, TrainingStatus]:
        out: dict[str, TrainingStatus] = {}
        for d in desired.deployments:
            spec = d.doc.spec.training
            if spec is None:
                continue
            name = d.doc.metadata.name
            code = self.code_for(spec.source.repo)
            result = training_pass(
                environment=desired.environment,
                name=name,
                registered_model=d.registered_model,
                spec=spec,
                code=code,
                tracking=self.tracking,
                runner=LocalRunner(root=self.dir(name), code=code, on_exit=self.on_exit),
                tracking_uri=self.tracking_uri,
                data_root=self.data_root,
                now=self.clock(),
                since=self._since(name),
            )
            before = self.statuses.get(name)
            for event in result.events:
                # A blocked source is said once, not on every pass until it is fixed.
                repeated = before is not None and event.message == before.problem
                if not (event.reason == "TrainingBlocked" and repeated):
                    self.on_event(dataclasses.replace(event, deployment=name))
            out[name] = result.status
        self.statuses = out
        self._left = self._ended()
        return out
