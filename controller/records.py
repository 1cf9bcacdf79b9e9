"""The durable record of a model, read back: its history and its training runs.

The state directory and the operator's status say what the controller did last; the registry
and Git keep what happened, and outlive both. ``mlgitops history``, ``mlgitops runs`` and the
dashboard read the same record through these two functions, so the terminal and the browser
never disagree about a model's past. The merge is ``pipeline.history.timeline``, a pure function;
this module only fetches what it needs (the validation runs' times, the commits' times).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from controller.pipeline.history import Entry, iso_from_ms, lookups, timeline
from controller.pipeline.training import TAG_DEPLOYMENT, TAG_ENVIRONMENT
from controller.training import experiment_name, run_status

if TYPE_CHECKING:
    from controller.api.status import TrainingRunStatus
    from controller.planning.ports import CommitTimes, Registry, Tracking


def model_history(
    model: str, registry: Registry, tracking: Tracking, source: CommitTimes
) -> list[Entry]:
    """Everything that happened to registered ``model``'s versions, oldest first."""
    versions = tracking.model_versions(model)
    runs, commits = lookups(versions)
    run_times: dict[str, str | None] = {}
    for run_id in sorted(runs):
        run = tracking.get_run(run_id)
        if run is not None:
            run_times[run_id] = iso_from_ms(run.end_time or run.start_time)
    return timeline(
        events=registry.history(model=model),
        versions=versions,
        run_times=run_times,
        commit_times={sha: source.commit_time(sha) for sha in sorted(commits)},
    )


def training_runs(tracking: Tracking, env: str, deployment: str) -> list[TrainingRunStatus]:
    """The training runs of ModelDeployment ``deployment`` in ``env``, as MLflow lists them."""
    experiment = tracking.experiment_id(experiment_name(env, deployment))
    found = tracking.search_runs(
        experiment_id=experiment, tags={TAG_ENVIRONMENT: env, TAG_DEPLOYMENT: deployment}
    )
    return [run_status(run) for run in found]
