"""The training planner, table by table: what starts, what waits, what is skipped."""

from __future__ import annotations

import datetime as dt

import pytest

from controller.api.documents import TrainingSpec
from controller.pipeline.training import (
    TAG_ATTEMPT,
    TAG_COMMIT,
    TAG_KEY,
    TAG_OUTCOME,
    TAG_TRIGGER,
    Observed,
    RunRequest,
    backoff,
    plan,
)
from controller.planning.types import TrainingRun

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
SPEC = TrainingSpec.model_validate(
    {
        "source": {"repo": "r", "branch": "release", "paths": ["src/**", "train.py"]},
        "command": ["python", "train.py"],
    }
)


def run(
    trigger: str,
    key: str,
    status: str,
    *,
    attempt: int = 1,
    commit: str | None = None,
    ended: dt.datetime | None = None,
) -> TrainingRun:
    tags = {TAG_TRIGGER: trigger, TAG_KEY: key, TAG_ATTEMPT: str(attempt)}
    tags[TAG_COMMIT] = commit or (key if trigger == "commit" else "c0")
    verdict = {"FINISHED": "succeeded", "FAILED": "failed", "KILLED": "failed"}.get(status)
    if verdict:
        tags[TAG_OUTCOME] = verdict
    stamp = int((ended or NOW - dt.timedelta(hours=1)).timestamp() * 1000)
    return TrainingRun(f"run-{key}-{attempt}", "1", status, tags, stamp, stamp)


def seen(*runs: TrainingRun, head: str | None = "c2", **kw: object) -> Observed:
    base = {"runs": tuple(runs), "head": head, "now": NOW, "since": NOW - dt.timedelta(days=1)}
    return Observed(**{**base, **kw})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("observed", "start"),
    [
        pytest.param(seen(), RunRequest("commit", "c2", "c2"), id="never trained: the head"),
        pytest.param(
            seen(run("commit", "c1", "FINISHED"), changed=("src/model.py",), commits=("c2",)),
            RunRequest("commit", "c2", "c2"),
            id="new head touching a path",
        ),
        pytest.param(
            seen(run("commit", "c1", "FINISHED"), changed=("README.md", "docs/x.md")),
            None,
            id="new head touching nothing",
        ),
        pytest.param(seen(run("commit", "c2", "FINISHED")), None, id="head already trained"),
        pytest.param(
            seen(run("commit", "c1", "FINISHED"), changed=("train.py",), commits=("a", "b", "c2")),
            RunRequest("commit", "c2", "c2", skipped=("a", "b")),
            id="three commits: one run for the newest, two skipped",
        ),
        pytest.param(seen(head=None), None, id="code repository unreadable"),
        pytest.param(
            seen(run("commit", "c1", "FINISHED"), manual=("m-1",), changed=("train.py",)),
            RunRequest("manual", "m-1", "c2"),
            id="manual before commit",
        ),
        pytest.param(
            seen(
                run("commit", "c2", "FINISHED"), run("manual", "m-1", "FINISHED"), manual=("m-1",)
            ),
            None,
            id="manual id trained once",
        ),
        pytest.param(
            seen(run("commit", "c2", "FINISHED"), retrain=("w-7",)),
            RunRequest("retrain", "w-7", "c2"),
            id="due retraining",
        ),
        pytest.param(
            seen(
                run("commit", "c2", "FINISHED"), run("retrain", "w-7", "FINISHED"), retrain=("w-7",)
            ),
            None,
            id="a retraining window once",
        ),
    ],
)
def test_what_starts(observed: Observed, start: RunRequest | None) -> None:
    assert plan(SPEC, observed).start == start


def test_at_most_one_run_in_flight_and_later_triggers_wait() -> None:
    flying = run("commit", "c1", "RUNNING")
    result = plan(SPEC, seen(flying, changed=("train.py",), manual=("m",)))
    assert result.start is None
    assert result.in_flight == flying
    assert result.waiting == "run run-c1-1 is in flight"


def test_a_failed_key_is_retried_after_backoff_up_to_the_cap() -> None:
    failed_at = NOW - dt.timedelta(seconds=10)
    one = run("commit", "c2", "FAILED", ended=failed_at)
    early = plan(SPEC, seen(one))
    assert early.start is None
    assert early.waiting is not None
    assert early.waiting.startswith("retrying c2 at")
    later = NOW + dt.timedelta(seconds=backoff(1))
    assert plan(SPEC, seen(one, now=later)).start == RunRequest("commit", "c2", "c2", attempt=2)
    two = run("commit", "c2", "FAILED", attempt=2, ended=failed_at)
    three = run("commit", "c2", "KILLED", attempt=3, ended=failed_at)
    exhausted = plan(SPEC, seen(one, two, three, now=NOW + dt.timedelta(hours=1)))
    assert exhausted.start is None  # 1 + retries (2) attempts: never forever
    assert backoff(1) < backoff(2) < backoff(3) <= 600


def test_a_newer_commit_supersedes_the_retry_of_an_older_one() -> None:
    failed = run("commit", "c1", "FAILED", ended=NOW - dt.timedelta(hours=1))
    result = plan(SPEC, seen(failed, changed=("src/a.py",)))
    assert result.start == RunRequest("commit", "c2", "c2")


def test_schedule_runs_the_newest_missed_slot_once() -> None:
    spec = SPEC.model_copy(update={"schedule": "0 3 * * *"})
    trained = run("commit", "c2", "FINISHED")
    due = plan(spec, seen(trained, since=NOW - dt.timedelta(days=5)))
    assert due.start == RunRequest("schedule", "2026-12-01T03:00:00Z", "c2")
    done = run("schedule", "2026-12-01T03:00:00Z", "FINISHED", commit="c2")
    assert plan(spec, seen(trained, done, since=NOW - dt.timedelta(days=5))).start is None
    # A ModelDeployment first seen after today's slot waits for tomorrow's.
    assert plan(spec, seen(trained, since=NOW - dt.timedelta(hours=1))).start is None
