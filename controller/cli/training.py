"""``train`` and ``runs``: start a training run by hand, and list a ModelDeployment's runs.

A manual run goes through the same path as every other trigger: ``mlgitops train`` creates the
MLflow run (trigger ``manual``, a fresh key) and the controller that owns the environment
(``mlgitops run``, or the operator) starts it on its next pass, one run at a time. With
``--wait`` on one machine, this command is that controller for as long as the run lasts.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Annotated

import typer
from rich.table import Table

from controller.cli.options import (
    EnvOpt,
    RepoOpt,
    StateOpt,
    code_factory,
    deployment_named,
    err,
    error_lines,
    fail,
    out,
    resolve_tracking_uri,
    source_for,
    state_for,
    tracking_factory,
)
from controller.errors import Busy, MlgitopsError

NameArg = Annotated[str, typer.Argument(help="The ModelDeployment (metadata.name).")]


def train(
    name: NameArg,
    env: EnvOpt,
    commit: Annotated[
        str | None,
        typer.Option(
            "--commit",
            help="Code commit to train (a sha of training.source.repo). Default: the head of "
            "training.source.branch.",
            show_default=False,
        ),
    ] = None,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait",
            help="Run it now, on this machine, and wait for the version it produces (needs the "
            "environment's lock: not while `mlgitops run` holds it).",
        ),
    ] = False,
    repo: RepoOpt = ".",
    state_dir: StateOpt = None,
) -> None:
    """Start a training run of NAME by hand: trigger manual, through the same path as a commit.

    The run is created in MLflow at once (so it happens exactly once) and started by the
    controller's next pass; --wait starts it here. Exit 0 when it was queued (or, with --wait,
    produced a version), 1 when the run failed, 2 on invalid input or an unreachable repository
    or registry.
    """
    from controller.engine import load_desired
    from controller.local.training import LocalTraining
    from controller.pipeline.training import RunRequest, outcome
    from controller.training import experiment_name, run_name, run_tags

    state = state_for(state_dir)
    source = source_for(repo, state)
    try:
        _, desired = load_desired(source, env=env, rev=None)
        deployment = deployment_named(desired, name)
        spec = deployment.doc.spec.training
        if spec is None:
            fail([f"{deployment.at.file}: spec.training: {name!r} has no training section"])
        code = code_factory(state)(spec.source.repo)
        code.fetch()
        sha = commit or code.head(spec.source.branch).sha
        tracking = tracking_factory(state)(desired.environment.spec.registry.tracking_uri)
        experiment = tracking.experiment_id(experiment_name(env, name))
        key = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")  # a manual run's id
        request = RunRequest("manual", key, sha)
        run = tracking.create_run(
            experiment_id=experiment,
            name=run_name(name, request),
            tags=run_tags(env, name, spec, request),
        )
        out.print(f"queued run {run.run_id} (manual {key}) at {sha[:12]}", markup=False)
        if not wait:
            out.print(f"`mlgitops run --env {env}` (or the operator) starts it on its next pass")
            return
        trainer = LocalTraining(
            env=env,
            state_root=state.root,
            tracking_uri=resolve_tracking_uri(
                desired.environment.spec.registry.tracking_uri, state
            ),
            tracking=tracking,
            code_for=code_factory(state),
            data_root=desired.environment.spec.data_root or str(state.tables),
            on_event=lambda e: out.print(f"{e.reason}: {e.message}", markup=False),
        )
        stop = threading.Event()
        with state.lock(env):
            while not stop.is_set():
                trainer.apply(desired)
                mine = tracking.get_run(run.run_id)
                if mine is not None and outcome(mine) is not None:
                    raise typer.Exit(0 if outcome(mine) == "succeeded" else 1)
                time.sleep(1.0)
    except Busy as exc:
        fail([f"{exc}: the run is queued; that process starts it"])
    except MlgitopsError as exc:
        fail(error_lines(exc))
    finally:
        source.close()


def runs(
    name: NameArg,
    env: EnvOpt,
    repo: RepoOpt = ".",
    state_dir: StateOpt = None,
) -> None:
    """List NAME's training runs: trigger, key, attempt, state, started, version, reason.

    Read from MLflow, the record that outlives the controller and its state directory.
    """
    from controller.engine import load_desired
    from controller.records import training_runs

    state = state_for(state_dir)
    source = source_for(repo, state)
    try:
        _, desired = load_desired(source, env=env, rev=None)
        tracking = tracking_factory(state)(desired.environment.spec.registry.tracking_uri)
        found = training_runs(tracking, env, name)
    except MlgitopsError as exc:
        fail(error_lines(exc))
    finally:
        source.close()
    if not found:
        err.print(f"no training runs of {name!r} in environment {env!r}")
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for col in ("RUN", "TRIGGER", "KEY", "ATTEMPT", "STATE", "STARTED", "VERSION", "REASON"):
        table.add_column(col, overflow="fold")
    for shown in found:
        table.add_row(
            shown.run_id,
            shown.trigger,
            shown.key[:24],
            str(shown.attempt),
            shown.state,
            (shown.started or "")[:16].replace("T", " "),
            shown.version or "-",
            shown.reason or "",
        )
    out.print(table)
