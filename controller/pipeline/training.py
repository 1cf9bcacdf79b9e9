"""What to train now, for one ModelDeployment: a pure function of what Git and MLflow say.

Every training run has a trigger and a key: ``commit`` (the code commit), ``schedule`` (the
slot's time), ``retrain`` (the monitoring window that made retraining due) or ``manual`` (an
id). The MLflow runs tagged with that pair are the only record that counts: the controller
creates the run before anything starts and looks for the pair first, so a key is trained once
whatever happens to the controller, its state directory or its pod. Attempts of a key are runs
with the same pair and ``mlgitops.attempt`` 1, 2, ...: a failed attempt is retried after an
exponential backoff until ``training.retries`` more attempts have failed, never forever.

Order, when nothing is in flight (at most one run per ModelDeployment at a time; later triggers
wait and coalesce):

1. the retry of the newest key whose last attempt failed, once its backoff has passed (unless
   it was a commit and the branch has moved on: the newer commit is trained instead);
2. a manual request;
3. the branch head, when it differs from the last trained commit and the commits between touch
   the training paths (the newest commit wins: the ones it supersedes are recorded as skipped);
   a ModelDeployment that never trained trains its branch head once;
4. a due retraining (the window that made it due);
5. the newest schedule slot since the last scheduled run (a slot missed while the controller was
   down runs once, never once per missed slot).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from croniter import croniter

from controller.api.documents import TrainingSpec
from controller.planning.globs import touches
from controller.planning.types import TrainingRun

TRIGGERS = ("commit", "schedule", "retrain", "manual")
BACKOFF_SECONDS = 30.0  # the first retry's delay; doubles with each attempt
BACKOFF_MAX_SECONDS = 600.0

# MLflow run tags: what identifies a training run and what it was for.
TAG_ENVIRONMENT = "mlgitops.environment"
TAG_DEPLOYMENT = "mlgitops.model_deployment"
TAG_TRIGGER = "mlgitops.trigger"
TAG_KEY = "mlgitops.trigger_key"
TAG_ATTEMPT = "mlgitops.attempt"
TAG_REPO = "mlgitops.code_repo"
TAG_COMMIT = "mlgitops.code_commit"
TAG_BRANCH = "mlgitops.branch"
TAG_SKIPPED = "mlgitops.skipped_commits"
TAG_REASON = "mlgitops.reason"
TAG_VERSION = "mlgitops.version"
TAG_STARTED = "mlgitops.started"  # set once the runner started it: a run without it never ran
# The controller's verdict, set when it finishes a run: "succeeded" (a version was adopted) or
# "failed". A run without it is in flight, whatever MLflow's own status says (a script that
# exits normally leaves its run FINISHED before the controller has adopted its model).
TAG_OUTCOME = "mlgitops.outcome"
# On the registered model: the monitoring window that last made retraining due (set by the
# monitoring job, read by the controller, which trains once per window).
TAG_RETRAIN_DUE = "mlgitops.retrain_due"


def outcome(run: TrainingRun) -> str | None:
    return run.tags.get(TAG_OUTCOME)


@dataclass(frozen=True)
class RunRequest:
    """A run to start: the MLflow run is created with these tags, then the runner starts."""

    trigger: str
    key: str
    commit: str  # the code commit it trains
    attempt: int = 1
    skipped: tuple[str, ...] = ()  # commits this one superseded (trigger commit only)


@dataclass(frozen=True)
class Observed:
    """What the engine saw of one ModelDeployment's training, for the planner."""

    runs: tuple[TrainingRun, ...]  # every training run of the ModelDeployment, oldest first
    head: str | None  # the branch head, None when the code repository cannot be read
    now: dt.datetime
    since: dt.datetime  # when the controller first saw the training spec (schedules start here)
    # Paths changed between the last trained commit and ``head`` (None: not asked, because
    # there is no head or it is the last trained commit), and the commits in between.
    changed: tuple[str, ...] | None = None
    commits: tuple[str, ...] = ()
    manual: tuple[str, ...] = ()  # ids of manual requests, oldest first
    retrain: tuple[str, ...] = ()  # windows that made retraining due, oldest first


@dataclass(frozen=True)
class Plan:
    start: RunRequest | None
    waiting: str | None = None  # why nothing starts although something is due
    in_flight: TrainingRun | None = None
    last_trained: str | None = None  # the code commit of the newest commit-triggered run


def last_trained_commit(runs: Sequence[TrainingRun]) -> str | None:
    """The code commit the newest commit-triggered run trained (any outcome: a failed key is
    retried by its own attempts, not by starting over)."""
    commits = [r.tags.get(TAG_COMMIT) for r in runs if r.trigger == "commit"]
    return next((c for c in reversed(commits) if c), None)


def attempt(run: TrainingRun) -> int:
    try:
        return int(run.tags.get(TAG_ATTEMPT, "1"))
    except ValueError:
        return 1


def backoff(attempts: int) -> float:
    """Seconds to wait after ``attempts`` failed attempts of a key."""
    return float(min(BACKOFF_MAX_SECONDS, BACKOFF_SECONDS * 2 ** max(0, attempts - 1)))


def _ended(run: TrainingRun) -> dt.datetime | None:
    stamp = run.end_time or run.start_time
    return None if stamp is None else dt.datetime.fromtimestamp(stamp / 1000, dt.UTC)


def _keys(runs: Sequence[TrainingRun]) -> dict[tuple[str, str], list[TrainingRun]]:
    by_key: dict[tuple[str, str], list[TrainingRun]] = {}
    for run in runs:
        if run.trigger and run.key:
            by_key.setdefault((run.trigger, run.key), []).append(run)
    return by_key


def plan(spec: TrainingSpec, seen: Observed) -> Plan:
    """The one run to start now, if any. Pure: same observations, same plan."""
    last = last_trained_commit(seen.runs)
    in_flight = next((r for r in reversed(seen.runs) if outcome(r) is None), None)
    if in_flight is not None:
        return Plan(None, f"run {in_flight.run_id} is in flight", in_flight, last)
    by_key = _keys(seen.runs)
    head = seen.head

    # 1. A failed key is retried before anything new starts, after its backoff.
    if seen.runs:
        newest = seen.runs[-1]
        superseded = newest.trigger == "commit" and head is not None and newest.key != head
        failed = outcome(newest) == "failed"
        if failed and newest.trigger and newest.key and not superseded:
            tries = max(attempt(r) for r in by_key[(newest.trigger, newest.key)])
            done = any(outcome(r) == "succeeded" for r in by_key[(newest.trigger, newest.key)])
            if not done and tries < 1 + spec.retries:
                ended = _ended(newest)
                due = ended + dt.timedelta(seconds=backoff(tries)) if ended else seen.now
                if seen.now < due:
                    return Plan(None, f"retrying {newest.key} at {due.isoformat()}", None, last)
                commit = newest.tags.get(TAG_COMMIT) or head
                if commit:
                    return Plan(
                        RunRequest(newest.trigger, newest.key, commit, tries + 1), None, None, last
                    )

    def fresh(trigger: str, key: str) -> bool:
        return (trigger, key) not in by_key

    # 2. Manual requests, oldest first.
    for request in seen.manual:
        if fresh("manual", request) and head:
            return Plan(RunRequest("manual", request, head), None, None, last)

    # 3. New code on the release branch.
    new_code = seen.changed is None or touches(list(seen.changed), spec.source.paths)
    if head and head != last and fresh("commit", head) and new_code:
        skipped = tuple(c for c in seen.commits if c != head)
        return Plan(RunRequest("commit", head, head, skipped=skipped), None, None, last)

    # 4. Retraining the monitor found due.
    for window in seen.retrain:
        if fresh("retrain", window) and head:
            return Plan(RunRequest("retrain", window, head), None, None, last)

    # 5. The newest schedule slot not yet trained.
    if spec.schedule and head:
        slot = croniter(spec.schedule, seen.now).get_prev(dt.datetime)
        key = slot.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if slot >= seen.since and fresh("schedule", key):
            return Plan(RunRequest("schedule", key, head), None, None, last)
    return Plan(None, None, None, last)
