"""``mlgitops run``: the embedded runtime in the foreground, until SIGINT or SIGTERM."""

from __future__ import annotations

import os
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
    webhook_port: Annotated[
        int | None,
        typer.Option(
            "--webhook-port",
            help="Serve POST /webhook on this port: a signed push (X-Hub-Signature-256, token in "
            "$MLGITOPS_WEBHOOK_TOKEN) of the config or a code repository starts a pass at once.",
            show_default=False,
        ),
    ] = None,
    webhook_host: Annotated[
        str, typer.Option("--webhook-host", help="Address the webhook listens on.")
    ] = "127.0.0.1",
) -> None:
    """Run the controller continuously on this machine (the embedded runtime), until Ctrl-C.

    Every pass reads the branch head, moves the registry aliases, and starts, updates or stops
    one model server (mlgitops serve) per ModelDeployment on a stable local port; a champion or
    split change reaches the running server without dropping a request, and a crashed server is
    restarted with backoff. It also runs each ModelDeployment's batch and monitoring jobs
    (mlgitops batch / monitor) on their cron schedules, one run at a time per job; logs are under
    <state dir>/envs/<env>/jobs/. `mlgitops status -o json` shows each model's URL and versions.
    SIGINT or SIGTERM stops every server and job it started (a job cut short runs again on the
    next start). New commits are seen at the next pass; with --webhook-port, at once on a push.
    """
    from controller.local import loop
    from controller.local.webhook import WebhookServer
    from controller.sources import WriteBack
    from controller.sources.webhook import same_repo

    token = os.environ.get("MLGITOPS_WEBHOOK_TOKEN") or None
    if webhook_port is not None and token is None:
        fail(["--webhook-port: set $MLGITOPS_WEBHOOK_TOKEN, the secret pushes are signed with"])
    wake = threading.Event()
    repos: set[str] = set()

    def pushed(urls: set[str]) -> bool:
        if urls and not any(same_repo(r, urls) for r in set(repos)):
            return False
        wake.set()
        return True

    webhook = None
    if webhook_port is not None and token is not None:
        try:
            webhook = WebhookServer(webhook_host, webhook_port, token, pushed).start()
        except OSError as exc:
            fail(
                [f"--webhook-port: cannot listen on {webhook_host}:{webhook_port}: {exc.strerror}"]
            )
        out.print(f"mlgitops run: webhook on {webhook.url}", markup=False)

    state = state_for(state_dir)
    source = source_for(repo, state)
    stop = threading.Event()

    def stopping(*_: object) -> None:
        stop.set()
        wake.set()  # out of the wait between passes now

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stopping)

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
            wake=wake,
            on_repos=repos.update,
            promoter_for=lambda environment: WriteBack(
                repo,
                cache_dir=state.writeback,
                branch=environment.spec.write_back.branch,
                author=environment.spec.write_back.author,
            ),
        )
    except Busy as exc:
        out.print(f"mlgitops run: stopped {env}")
        fail([str(exc)])
    except MlgitopsError as exc:  # the environment cannot be read at start: nothing ran
        fail(error_lines(exc))
    finally:
        if webhook is not None:
            webhook.close()
    out.print(f"mlgitops run: stopped {env}")
