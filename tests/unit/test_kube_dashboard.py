"""The operator dashboard's pure parts: problems out of conditions, a stalled spec located in
its file, CronJobs and their Jobs as last runs, an Environment's state from its conditions."""

from __future__ import annotations

from typing import Any

from controller.api.loader import Located
from controller.kubernetes.dashboard import cron_jobs, environment_problems, locate, split_problems
from controller.ui.views import EnvSnapshot, environment, environment_row

F = "environments/prod/fraud-detector.yaml"


def test_a_rejected_revision_splits_into_its_problems_not_inside_a_message() -> None:
    message = (
        f"{F}:34: spec.serving.replicas: must be a valid integer; unable to parse string; "
        f"{F}:9: spec.champion.version: version 9 does not exist; and 3 more"
    )
    assert split_problems(message) == [
        f"{F}:34: spec.serving.replicas: must be a valid integer; unable to parse string",
        f"{F}:9: spec.champion.version: version 9 does not exist; and 3 more",
    ]


def _env(*conditions: dict[str, str]) -> dict[str, Any]:
    return {"status": {"conditions": list(conditions)}}


def test_environment_problems_are_a_stalled_revisions_or_why_git_is_not_synced() -> None:
    stalled = _env(
        {"type": "Ready", "status": "False", "reason": "InvalidRevision", "message": "x"},
        {"type": "Stalled", "status": "True", "reason": "InvalidRevision", "message": f"{F}:3: a"},
    )
    assert environment_problems(stalled) == [f"{F}:3: a"]
    down = _env({"type": "Ready", "status": "False", "reason": "GitUnavailable", "message": "gone"})
    assert environment_problems(down) == ["gone"]
    assert environment_problems(_env({"type": "Ready", "status": "True", "reason": "Synced"})) == []
    assert environment_problems({}) == []


def test_a_stalled_spec_is_located_at_its_field_in_the_file_it_came_from() -> None:
    at = Located(F, 1, {"spec.champion": 8, "spec.champion.version": 9})
    message = (
        "modeldeployment/fraud-detector: spec.champion.version: version 9 of m does not exist; "
        "modeldeployment/fraud-detector: spec.challenger.version: version 8 of m does not exist; "
        "environment/prod: spec.catalog: wrong"
    )
    assert locate(message, "fraud-detector", at) == (
        f"{F}:9: spec.champion.version: version 9 of m does not exist; "
        f"{F}:1: spec.challenger.version: version 8 of m does not exist; "  # nearest: the doc
        "environment/prod: spec.catalog: wrong"
    )


def _job(name: str, cronjob: str, created: str, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "creationTimestamp": created,
            "ownerReferences": [{"kind": "CronJob", "name": cronjob}],
        },
        "status": status,
    }


def test_cronjobs_last_runs_come_from_their_newest_jobs_or_their_status() -> None:
    cronjobs = [
        {
            "metadata": {"name": name},
            "spec": {"schedule": "0 11 * * *"},
            "status": status,
        }
        for name, status in (
            ("a-batch", {"lastScheduleTime": "2026-01-03T11:00:00Z", "active": [{"name": "a-3"}]}),
            (
                "b-batch",
                {
                    "lastScheduleTime": "2026-01-02T11:00:00Z",
                    "lastSuccessfulTime": "2026-01-02T11:05:00Z",
                },
            ),
            ("c-batch", {"lastScheduleTime": "2026-01-02T11:00:00Z"}),
            ("d-batch", {}),
        )
    ]
    complete = {"type": "Complete", "status": "True", "lastTransitionTime": "t"}
    failed = {"type": "Failed", "status": "True", "lastTransitionTime": "2026-01-02T11:09:00Z"}
    jobs = [
        _job("a-1", "a-batch", "2026-01-01T11:00:00Z", conditions=[complete], completionTime="t1"),
        _job("a-2", "a-batch", "2026-01-02T11:00:00Z", conditions=[failed]),
        _job("a-3", "a-batch", "2026-01-03T11:00:00Z"),  # running
        _job("c-1", "c-batch", "2026-01-02T11:00:00Z", conditions=[failed]),
        {"metadata": {"name": "train-1", "creationTimestamp": "2026-01-04T00:00:00Z"}},
    ]
    runs = cron_jobs(cronjobs, jobs)
    assert runs["a-batch"]["inFlight"] == {"name": "a-3"}
    assert runs["a-batch"]["lastRun"] == {
        "name": "a-2",
        "scheduled": "2026-01-02T11:00:00Z",
        "exitCode": None,  # a failed Job's exit code is its pod's
        "finished": "2026-01-02T11:09:00Z",
    }
    # Its Job gone, the CronJob's own status says the newest run succeeded.
    assert runs["b-batch"]["lastRun"] == {
        "name": None,
        "exitCode": 0,
        "finished": "2026-01-02T11:05:00Z",
    }
    assert runs["c-batch"]["lastRun"]["name"] == "c-1"
    assert "lastRun" not in runs["d-batch"]
    assert "inFlight" not in runs["d-batch"]
    env = EnvSnapshot(name="prod", jobs=runs)

    results = {j["name"]: j["result"] for j in environment(env)["jobs"]}
    assert results == {
        "a-batch": "running",
        "b-batch": "succeeded",
        "c-batch": "failed",
        "d-batch": "-",
    }


def test_an_operator_environment_s_state_is_its_conditions() -> None:
    def row(*conditions: dict[str, str], problems: tuple[str, ...] = ()) -> str:
        snap = EnvSnapshot(name="prod", applied="abc", problems=problems, conditions=conditions)
        return str(environment_row(snap)["state"])

    ready = {"type": "Ready", "status": "True", "reason": "Synced"}
    down = {"type": "Ready", "status": "False", "reason": "GitUnavailable", "message": "gone"}
    stalled = {"type": "Stalled", "status": "True", "reason": "InvalidRevision", "message": "x"}
    assert row(ready) == "Ready"
    assert row(down, problems=("gone",)) == "NotReady"  # retried: not the revision's fault
    assert row({**down, "reason": "InvalidRevision"}, stalled, problems=("x",)) == "Stalled"
    assert row(problems=("no status",)) == "Stalled"  # no conditions: the problems decide
