"""One commit's way from the release branch to the new champion serving, phase by phase.

``bench/pipeline.py`` follows each commit it makes; this module holds what it learns and where it
reads it, so every phase boundary is a time something recorded (one clock: this machine's):

- the commit (or the webhook push) and the run started: seen by the benchmark, polling;
- the script's own start and end: stamped by the wrapper inside the training process;
- the version registered: MLflow's ``creation_timestamp``;
- the validation: its MLflow run's start and end, and the timestamps of the metrics it logged
  (the candidate's, then the champion's and the deltas: the comparison);
- each promotion commit: when it became the head of the config repository's branch, watched
  every 20 ms by ``HeadWatcher`` (Git keeps commit times to the second only);
- each alias move: the time in the ``mlgitops.history.<alias>.*`` tag the sync wrote;
- the new version serving: the model server's ``/version`` naming it as champion, polled.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

TRAILER = "Mlgitops-Promotion"
PHASES = (
    "detect",
    "train",
    "validate",
    "write-back challenger",
    "sync challenger",
    "write-back champion",
    "sync champion",
    "serve",
)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


class HeadWatcher:
    """When each commit became the head of ``branch`` in a non-bare repository (pushes land
    there through ``receive.denyCurrentBranch updateInstead``), read from its ref file."""

    def __init__(self, repo: Path, branch: str = "main", every: float = 0.02) -> None:
        self.repo, self.branch, self.every = repo, branch, every
        self.seen: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="head-watcher", daemon=True)
        self._thread.start()

    def _head(self) -> str:
        try:
            return (self.repo / ".git" / "refs" / "heads" / self.branch).read_text().strip()
        except OSError:  # packed: ask Git
            return git(self.repo, "rev-parse", self.branch)

    def _watch(self) -> None:
        last = None
        while not self._stop.is_set():
            head = self._head()
            if head != last:
                self.seen.append((time.time(), head))
                last = head
            self._stop.wait(self.every)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def landed(self, sha: str) -> float | None:
        """When ``sha`` was first on the branch (as the head, or under a head seen then)."""
        for when, head in list(self.seen):
            if head == sha:
                return when
        for when, head in list(self.seen):
            done = subprocess.run(
                ["git", "-C", str(self.repo), "merge-base", "--is-ancestor", sha, head]
            )
            if done.returncode == 0:
                return when
        return None

    def promotion(self, trailer: str) -> str | None:
        """The commit on the branch carrying ``Mlgitops-Promotion: <trailer>``."""
        out = git(self.repo, "log", self.branch, f"--format=%H %(trailers:key={TRAILER},valueonly)")
        for line in out.splitlines():
            sha, _, value = line.partition(" ")
            if value.strip() == trailer:
                return sha
        return None


def alias_moved(client: Any, model: str, version: str, alias: str, revision: str) -> float | None:
    """When the sync of ``revision`` pointed ``alias`` at ``version`` (its history tag)."""
    tags = client.get_model_version(model, version).tags
    for key, value in tags.items():
        if key.startswith(f"mlgitops.history.{alias}."):
            event = json.loads(value)
            if event.get("revision") == revision and event.get("version") == version:
                return datetime.fromisoformat(event["time"]).timestamp()
    return None


@dataclass
class Validation:
    """The validation run's start and end, and when its metrics were logged (s since the epoch)."""

    start: float
    end: float
    candidate: float | None  # the candidate's last metric
    compared: float | None  # the last champion./delta. metric: None when no champion was evaluated

    @property
    def evaluation(self) -> float:
        return self.end - self.start

    @property
    def compare(self) -> float | None:
        if self.compared is None or self.candidate is None:
            return None
        return self.compared - self.candidate


def validation_of(client: Any, run_id: str) -> Validation:
    run = client.get_run(run_id)
    candidate: list[float] = []
    compared: list[float] = []
    for key in run.data.metrics:
        stamps = [m.timestamp / 1000 for m in client.get_metric_history(run_id, key)]
        side = compared if key.startswith(("champion.", "delta.")) else candidate
        side.append(max(stamps))
    return Validation(
        start=run.info.start_time / 1000,
        end=run.info.end_time / 1000,
        candidate=max(candidate) if candidate else None,
        compared=max(compared) if compared else None,
    )


@dataclass
class Flow:
    """One commit followed to the new champion serving: every boundary as a wall-clock time."""

    sha: str
    mode: str  # polling | webhook
    t0: float  # the commit (polling), or the push sent to the webhook
    started: float = 0.0  # the training run's mlgitops.started seen
    version: str = ""
    served: float = 0.0  # the server named the version as champion
    script: tuple[float, float] = (0.0, 0.0)
    registered: float = 0.0
    validation: Validation | None = None
    challenger_commit: float = 0.0
    challenger_alias: float = 0.0
    champion_commit: float = 0.0
    champion_alias: float = 0.0

    @property
    def script_seconds(self) -> float:
        return self.script[1] - self.script[0]

    @property
    def total(self) -> float:
        return self.served - self.t0

    @property
    def evaluation(self) -> float:
        return self.validation.evaluation if self.validation else 0.0

    @property
    def overhead(self) -> float:
        """The controller's own time: everything but the script and the validation run."""
        return self.total - self.script_seconds - self.evaluation

    def phases(self) -> dict[str, float]:
        """The phases, end to end: they add up to ``total``."""
        assert self.validation is not None
        bounds = [
            self.t0,
            self.started,
            self.registered,
            self.validation.end,
            self.challenger_commit,
            self.challenger_alias,
            self.champion_commit,
            self.champion_alias,
            self.served,
        ]
        return {name: bounds[i + 1] - bounds[i] for i, name in enumerate(PHASES)}
