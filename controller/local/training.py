"""Training runs on this machine: each run's script in a clean checkout of its commit.

``LocalRunner`` is the embedded runtime's ``Runner``: ``training.command`` runs in a detached git
worktree of the commit under the state directory, in a session of its own, with the run's
environment (``MLFLOW_RUN_ID`` and the rest), its output in a log file beside it. A small shell
wrapper writes the script's exit code to a file when it ends, and a record names the process and
its deadline, so a restarted runtime adopts a run still going (never starting a second one) and
learns how one that ended while it was down went. A run past its ``training.timeout`` is ended
(its whole process group). The checkout is removed once the run is finished; the log stays.

``LocalTraining`` runs the shared training pass (``controller.training``) for every
ModelDeployment with a ``training`` section, on each pass of ``mlgitops run``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.api.loader import DesiredState
from controller.api.status import TrainingStatus
from controller.local import processes
from controller.planning.ports import CodeSource, RunnerState, Tracking
from controller.planning.types import TrainingRun
from controller.state import write_json
from controller.training import Event, training_pass

# Runs the script, then records its exit code: "$@" is the command, $0 the exit-code file.
_WRAPPER = '"$@"; code=$?; echo $code > "$0.tmp" && mv "$0.tmp" "$0"; exit $code'
COMMAND_NOT_FOUND = 127
KILL_GRACE = 10.0
# The runs this process started, kept to reap them when they end (no zombies) and polled by
# ``state``; a run adopted after a restart is found by its record instead.
_STARTED: dict[str, subprocess.Popen[bytes]] = {}


class LocalRunner:
    """The ``Runner`` of one ModelDeployment on this machine."""

    def __init__(
        self, *, root: Path, code: CodeSource, on_exit: Callable[[], None] = lambda: None
    ) -> None:
        self.root = root
        self.code = code
        self.on_exit = on_exit  # called (on a thread of its own) when a run it started ends

    def _paths(self, run_id: str) -> tuple[Path, Path, Path, Path]:
        base = self.root / run_id
        return base.with_suffix(".json"), base.with_suffix(".exit"), base.with_suffix(".log"), base

    def start(
        self,
        run: TrainingRun,
        *,
        commit: str,
        command: list[str],
        env: Mapping[str, str],
        timeout: float,
    ) -> str:
        record, exit_file, log, checkout = self._paths(run.run_id)
        self.root.mkdir(parents=True, exist_ok=True)
        exit_file.unlink(missing_ok=True)
        self.code.checkout(commit, checkout)
        with open(log, "ab") as out:
            out.write(f"$ {shlex.join(command)}   # at {commit} in {checkout}\n".encode())
        proc = processes.start_command(
            ["/bin/sh", "-c", _WRAPPER, str(exit_file), *command],
            log=log,
            env=env,
            cwd=checkout,
        )
        _STARTED[run.run_id] = proc
        on_exit = self.on_exit

        def watch() -> None:
            proc.wait()
            on_exit()

        threading.Thread(target=watch, name=f"training-{run.run_id[:8]}", daemon=True).start()
        write_json(
            record,
            {
                "pid": proc.pid,
                "command": command,
                "commit": commit,
                "started": time.time(),
                "deadline": time.time() + timeout,
                "timeout": timeout,
            },
        )
        return str(log)

    def state(self, run: TrainingRun) -> RunnerState:
        record_path, exit_file, log, _ = self._paths(run.run_id)
        child = _STARTED.get(run.run_id)
        if child is not None and child.poll() is not None:
            del _STARTED[run.run_id]  # reaped; its exit code is in the exit file
        try:
            record: dict[str, Any] = json.loads(record_path.read_text())
        except (OSError, ValueError):
            return RunnerState("absent", log=str(log) if log.exists() else None)
        if exit_file.exists():
            try:
                code = int(exit_file.read_text().strip())
            except ValueError:
                code = -1
            if code == 0:
                return RunnerState("succeeded", log=str(log))
            return RunnerState("failed", _exit_reason(code, record), str(log))
        pid = int(record["pid"])
        if _alive(pid, exit_file):
            if time.time() > float(record["deadline"]):
                _end_group(pid)
                return RunnerState(
                    "failed",
                    f"timed out after {record['timeout']:g} s (training.timeout)",
                    str(log),
                )
            return RunnerState("running", log=str(log))
        return RunnerState("failed", "the process ended without an exit code (killed)", str(log))

    def log(self, run: TrainingRun) -> str | None:
        path = self._paths(run.run_id)[2]
        return str(path) if path.exists() else None

    def cleanup(self, run: TrainingRun) -> None:
        record, exit_file, _, checkout = self._paths(run.run_id)
        with contextlib.suppress(Exception):
            self.code.remove_checkout(checkout)
        record.unlink(missing_ok=True)
        exit_file.unlink(missing_ok=True)


def _exit_reason(code: int, record: Mapping[str, Any]) -> str:
    if code == COMMAND_NOT_FOUND:
        return f"command not found: {record['command'][0]} (training.command)"
    return f"the script exited with code {code}"


def _alive(pid: int, exit_file: Path) -> bool:
    """The wrapper shell of this run still runs (its command line names the run's exit file:
    a recycled pid is not mistaken for it)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return str(exit_file).encode() in cmdline


def _end_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + KILL_GRACE
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


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
        """The records of runs on this machine that ended or are past their deadline (read from
        the records, so runs adopted after a restart count too)."""
        ended: set[Path] = set()
        for record in (self.state_root / "envs" / self.env / "training").glob("*/*.json"):
            if record.name == "since.json":
                continue
            exit_file = record.with_suffix(".exit")
            try:
                data = json.loads(record.read_text())
                over = time.time() > float(data["deadline"])
                if exit_file.exists() or over or not _alive(int(data["pid"]), exit_file):
                    ended.add(record)
            except (OSError, ValueError, KeyError):
                continue
        return ended

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
                    self.on_event(event)
            out[name] = result.status
        self.statuses = out
        self._left = self._ended()
        return out
