"""One ModelDeployment's training pass: observe Git and MLflow, plan, start at most one run, and
finish the runs its runner reports done. Shared by both runtimes; only the runner differs (a
local process under ``mlgitops run``, a Kubernetes Job under the operator).

The MLflow run is the record, created before anything starts and found by its tags afterwards,
so this pass keeps no state of its own and a restarted controller (kill -9, a lost state
directory, a new operator pod) picks up where the last one stopped:

- a run with no ``mlgitops.started`` tag was created but never started: it starts now (the
  same run, never a second one);
- a started run the runner no longer knows (the process or Job is gone with its outcome) was
  interrupted: it is recorded as failed, and the retry policy decides;
- a run that succeeded is adopted: the version its script registered, or else the model it
  logged registered now, as a new version of the environment's registered model, tagged with
  the trigger, key, code commit and run and ``model_validation_status=PENDING``. A script that
  registered into another catalog is refused: nothing is adopted and the run fails.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field

from controller.api.documents import Environment, TrainingSpec
from controller.api.status import TrainingRunStatus, TrainingStatus
from controller.errors import InvalidInput, MlgitopsError, Unavailable
from controller.pipeline import training
from controller.pipeline.training import (
    TAG_ATTEMPT,
    TAG_BRANCH,
    TAG_COMMIT,
    TAG_DEPLOYMENT,
    TAG_ENVIRONMENT,
    TAG_KEY,
    TAG_OUTCOME,
    TAG_REASON,
    TAG_REPO,
    TAG_RETRAIN_DUE,
    TAG_SKIPPED,
    TAG_STARTED,
    TAG_TRIGGER,
    TAG_VERSION,
    RunRequest,
)
from controller.planning.ports import CodeSource, Runner, Tracking
from controller.planning.types import VALIDATION_TAG, TrainingRun
from controller.redact import redact

SKIPPED_SHOWN = 10


@dataclass(frozen=True)
class Event:
    """A Kubernetes-style Event about the ModelDeployment (the operator posts it; the local
    runtime prints it)."""

    type: str  # Normal | Warning
    reason: str  # TrainingStarted, TrainingSucceeded, TrainingFailed, TrainingBlocked, ...
    message: str
    deployment: str | None = None  # the ModelDeployment it is about (set by the runtimes)


@dataclass
class TrainingResult:
    status: TrainingStatus
    events: list[Event] = field(default_factory=list)
    started: TrainingRun | None = None
    error: MlgitopsError | None = None


def experiment_name(environment: str, deployment: str) -> str:
    return f"mlgitops/{environment}/{deployment}"


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def run_status(run: TrainingRun, *, log: str | None = None) -> TrainingRunStatus:
    verdict = training.outcome(run)
    return TrainingRunStatus(
        run_id=run.run_id,
        trigger=run.trigger or "",
        key=run.key or "",
        attempt=training.attempt(run),
        code_commit=run.tags.get(TAG_COMMIT),
        state="Succeeded" if verdict == "succeeded" else "Failed" if verdict else "Running",
        started=_iso(run.start_time),
        finished=_iso(run.end_time) if verdict else None,
        version=run.tags.get(TAG_VERSION),
        reason=run.tags.get(TAG_REASON),
        log=log,
    )


def training_pass(
    *,
    environment: Environment,
    name: str,
    registered_model: str,
    spec: TrainingSpec,
    code: CodeSource,
    tracking: Tracking,
    runner: Runner,
    tracking_uri: str,
    data_root: str | None,
    now: dt.datetime,
    since: dt.datetime,
    manual: tuple[str, ...] = (),
) -> TrainingResult:
    """One pass over ``name``'s training. Raises nothing for domain errors: see ``.error``."""
    env_name = environment.metadata.name
    events: list[Event] = []
    ident = {TAG_ENVIRONMENT: env_name, TAG_DEPLOYMENT: name}
    try:
        experiment = tracking.experiment_id(experiment_name(env_name, name))
        runs = tracking.search_runs(experiment_id=experiment, tags=ident)
        due = tracking.model_tags(registered_model).get(TAG_RETRAIN_DUE)
    except Unavailable as exc:
        return TrainingResult(TrainingStatus(problem=str(exc)), error=exc)

    logs: dict[str, str | None] = {}

    def start(run: TrainingRun) -> TrainingRun:
        return _start(
            run,
            spec,
            runner,
            tracking_uri,
            data_root,
            registered_model,
            env_name,
            tracking,
            events,
            logs,
        )

    finished: list[TrainingRun] = []
    unstarted: list[TrainingRun] = []
    for run in runs:
        if training.outcome(run) is not None:
            finished.append(run)
            continue
        state = runner.state(run)
        logs[run.run_id] = state.log
        if state.state == "running":
            finished.append(run)
            continue
        if state.state == "absent" and TAG_STARTED not in run.tags:
            # Created, never started: the controller stopped in between, or `mlgitops train`
            # queued it. Started below, one at a time, never as a second run.
            unstarted.append(run)
            continue
        if state.state == "succeeded" or (state.state == "absent" and run.status == "FINISHED"):
            finished.append(_adopt(run, environment, registered_model, tracking, events))
        else:
            reason = state.reason or "interrupted: the run's process or Job is gone"
            finished.append(_fail(run, reason, tracking, events))
        runner.cleanup(run)
    if unstarted:
        if not any(training.outcome(r) is None for r in finished):
            first = unstarted.pop(0)
            finished.append(start(first))
        finished.extend(unstarted)  # still waiting: in flight for the planner, so nothing new

    head: str | None = None
    changed: tuple[str, ...] | None = None
    commits: tuple[str, ...] = ()
    problem: str | None = None
    try:
        code.fetch()
        head = code.head(spec.source.branch).sha
        last = training.last_trained_commit(finished)
        if last is not None and last != head:
            changed = tuple(code.changed(last, head))
            commits = tuple(c.sha for c in code.commits(last, head))
    except (InvalidInput, Unavailable) as exc:
        problem = redact(str(exc))
        if not any(e.reason == "TrainingBlocked" for e in events):
            events.append(Event("Warning", "TrainingBlocked", problem))

    decision = training.plan(
        spec,
        training.Observed(
            tuple(finished),
            head,
            now,
            since,
            changed,
            commits,
            manual=manual,
            retrain=(due,) if due else (),
        ),
    )
    result = TrainingResult(TrainingStatus(problem=problem), events)
    if decision.start is not None:
        request = decision.start
        tags = run_tags(env_name, name, spec, request)
        # Looked for again just before creating: the pair must not exist yet.
        again = tracking.search_runs(
            experiment_id=experiment,
            tags={
                **ident,
                TAG_TRIGGER: request.trigger,
                TAG_KEY: request.key,
                TAG_ATTEMPT: str(request.attempt),
            },
        )
        if not again:
            if request.trigger == "retrain" and request.attempt == 1:
                events.append(
                    Event(
                        "Normal",
                        "RetrainingDue",
                        f"monitoring window {request.key} made retraining due: training "
                        f"{request.commit[:12]}",
                    )
                )
            run = tracking.create_run(
                experiment_id=experiment, tags=tags, name=run_name(name, request)
            )
            run = start(run)
            result.started = run
            finished.append(run)
    for run in finished:
        if logs.get(run.run_id) is None:
            logs[run.run_id] = runner.log(run)
    result.status = _status(finished, logs, problem)
    return result


def run_tags(
    environment: str, name: str, spec: TrainingSpec, request: RunRequest
) -> dict[str, str]:
    """The tags a training run is created with: what identifies it, and what it trains."""
    tags = {
        TAG_ENVIRONMENT: environment,
        TAG_DEPLOYMENT: name,
        TAG_TRIGGER: request.trigger,
        TAG_KEY: request.key,
        TAG_ATTEMPT: str(request.attempt),
        TAG_REPO: redact(spec.source.repo),
        TAG_COMMIT: request.commit,
        TAG_BRANCH: spec.source.branch,
    }
    if request.skipped:
        tags[TAG_SKIPPED] = ",".join(request.skipped)
    return tags


def run_name(name: str, request: RunRequest) -> str:
    key = request.key[:12] if request.trigger == "commit" else request.key
    suffix = f"-attempt{request.attempt}" if request.attempt > 1 else ""
    return f"{name}-{request.trigger}-{key}{suffix}"


def _start(
    run: TrainingRun,
    spec: TrainingSpec,
    runner: Runner,
    tracking_uri: str,
    data_root: str | None,
    registered_model: str,
    environment: str,
    tracking: Tracking,
    events: list[Event],
    logs: dict[str, str | None],
) -> TrainingRun:
    commit = run.tags.get(TAG_COMMIT, "")
    env = {
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MLFLOW_RUN_ID": run.run_id,
        "MLFLOW_EXPERIMENT_ID": run.experiment_id,
        "MLGITOPS_REGISTERED_MODEL": registered_model,
        "MLGITOPS_ENVIRONMENT": environment,
        "MLGITOPS_CODE_COMMIT": commit,
        "MLGITOPS_TRIGGER": run.trigger or "",
    }
    if data_root:
        env["MLGITOPS_DATA_ROOT"] = data_root
    try:
        log = runner.start(
            run, commit=commit, command=list(spec.command), env=env, timeout=float(spec.timeout)
        )
    except (InvalidInput, Unavailable) as exc:
        return _fail(run, f"could not start: {exc}", tracking, events)
    logs[run.run_id] = log
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    tracking.set_run_tags(run.run_id, {TAG_STARTED: stamp})
    events.append(
        Event(
            "Normal",
            "TrainingStarted",
            f"run {run.run_id} ({run.trigger} {run.key}, attempt {training.attempt(run)}) "
            f"at {commit[:12]}",
        )
    )
    return TrainingRun(
        run.run_id,
        run.experiment_id,
        run.status,
        {**run.tags, TAG_STARTED: stamp},
        run.start_time,
        run.end_time,
    )


def _fail(run: TrainingRun, reason: str, tracking: Tracking, events: list[Event]) -> TrainingRun:
    reason = redact(reason)[:500]
    tags = {TAG_OUTCOME: "failed", TAG_REASON: reason}
    tracking.set_run_tags(run.run_id, tags)
    tracking.end_run(run.run_id, status="FAILED")
    events.append(
        Event("Warning", "TrainingFailed", f"run {run.run_id} ({run.trigger} {run.key}): {reason}")
    )
    now = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
    return TrainingRun(
        run.run_id, run.experiment_id, "FAILED", {**run.tags, **tags}, run.start_time, now
    )


def _adopt(
    run: TrainingRun,
    environment: Environment,
    registered_model: str,
    tracking: Tracking,
    events: list[Event],
) -> TrainingRun:
    """The version the run produced, registered and tagged PENDING; or the run failed."""
    catalog = environment.spec.catalog
    registered = tracking.run_versions(run.run_id)
    outside = [v for v in registered if not v.name.startswith(f"{catalog}.")]
    if outside:
        names = ", ".join(f"{v.name} version {v.version}" for v in outside)
        return _fail(
            run, f"registered {names}, outside catalog {catalog!r}: not adopted", tracking, events
        )
    mine = [v for v in registered if v.name == registered_model]
    if mine:
        version = mine[-1]
    else:
        logged = tracking.logged_models(run.run_id)
        if not logged:
            return _fail(run, "the run ended without logging a model", tracking, events)
        version = tracking.register_version(
            model=registered_model, source=logged[-1], run_id=run.run_id, tags={}
        )
    tracking.set_version_tags(
        model=registered_model,
        version=version.version,
        tags={
            TAG_TRIGGER: run.trigger or "",
            TAG_KEY: run.key or "",
            TAG_COMMIT: run.tags.get(TAG_COMMIT, ""),
            "mlgitops.run_id": run.run_id,
            VALIDATION_TAG: "PENDING",
        },
    )
    tags = {TAG_OUTCOME: "succeeded", TAG_VERSION: version.version}
    tracking.set_run_tags(run.run_id, tags)
    if run.status != "FINISHED":
        tracking.end_run(run.run_id, status="FINISHED")
    events.append(
        Event(
            "Normal",
            "TrainingSucceeded",
            f"run {run.run_id} ({run.trigger} {run.key}) produced {registered_model} version "
            f"{version.version} (model_validation_status=PENDING)",
        )
    )
    now = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
    return TrainingRun(
        run.run_id,
        run.experiment_id,
        "FINISHED",
        {**run.tags, **tags},
        run.start_time,
        run.end_time or now,
    )


def _status(
    runs: list[TrainingRun], logs: Mapping[str, str | None], problem: str | None
) -> TrainingStatus:
    ordered = sorted(runs, key=lambda r: r.start_time or 0)
    in_flight = next((r for r in reversed(ordered) if training.outcome(r) is None), None)
    done = [r for r in ordered if training.outcome(r) is not None]
    skipped = [c for r in ordered for c in r.tags.get(TAG_SKIPPED, "").split(",") if c]
    return TrainingStatus(
        last_trained_commit=training.last_trained_commit(
            [r for r in ordered if training.outcome(r) == "succeeded"]
        ),
        in_flight=run_status(in_flight, log=logs.get(in_flight.run_id)) if in_flight else None,
        last_run=run_status(done[-1], log=logs.get(done[-1].run_id)) if done else None,
        skipped=skipped[-SKIPPED_SHOWN:],
        problem=problem,
    )
