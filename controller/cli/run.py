"""``mlgitops run``: the embedded runtime in the foreground, until SIGINT or SIGTERM."""

from __future__ import annotations

import signal
import threading
from typing import Annotated

import typer

from controller.cli.options import (
    EnvOpt,
    RepoOpt,
    StateOpt,
    code_factory,
    err,
    error_lines,
    fail,
    out,
    registry_factory,
    source_for,
    state_for,
    tracking_factory,
)
from controller.errors import Busy, MlgitopsError


def run(
    env: EnvOpt,
    repo: RepoOpt = ".",
    interval: Annotated[
        float, typer.Option("--interval", help="Seconds between passes (Git poll + reconcile).")
    ] = 10.0,
    state_dir: StateOpt = None,
) -> None:
    """Run the controller continuously on this machine (the embedded runtime), until Ctrl-C.

    Every pass reads the branch head, moves the registry aliases, and starts, updates or stops
    one model server (mlgitops serve) per ModelDeployment on a stable local port; a champion or
    split change reaches the running server without dropping a request, and a crashed server is
    restarted with backoff. It also runs each ModelDeployment's batch and monitoring jobs
    (mlgitops batch / monitor) on their cron schedules, one run at a time per job; logs are under
    <state dir>/envs/<env>/jobs/. `mlgitops status -o json` shows each model's URL and versions.
    SIGINT or SIGTERM stops every server and job it started (a job cut short runs again on the
    next start).
    """
    from controller.local import loop

    state = state_for(state_dir)
    source = source_for(repo, state)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    def report(error: MlgitopsError) -> None:
        for line in error_lines(error):
            err.print(f"error: {line}", markup=False)

    try:
        loop.run(
            env=env,
            source=source,
            state=state,
            registry_for=registry_factory(state),
            tracking_for=tracking_factory(state),
            code_for=code_factory(state),
            interval=interval,
            stop=stop,
            say=lambda line: out.print(line, markup=False),
            on_error=report,
        )
    except Busy as exc:
        out.print(f"mlgitops run: stopped {env}")
        fail([str(exc)])
    except MlgitopsError as exc:  # the environment cannot be read at start: nothing ran
        fail(error_lines(exc))
    out.print(f"mlgitops run: stopped {env}")
