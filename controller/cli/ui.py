"""``ui``: the web dashboard on one machine, from the state directory and the registry.

The same pages the operator serves with ``--ui``, read from what ``mlgitops sync`` and
``mlgitops run`` recorded. Loopback by default; any other address needs a token.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import TYPE_CHECKING, Annotated

import typer

from controller.cli.options import (
    StateOpt,
    err,
    fail,
    out,
    registry_factory,
    state_for,
    tracking_factory,
)

if TYPE_CHECKING:
    from aiohttp import web

DEFAULT_PORT = 8700


def ui(
    env: Annotated[
        list[str] | None,
        typer.Option(
            "--env",
            "-e",
            help="An environment to show (repeat for more). Default: every environment with a "
            "recorded status in the state directory.",
            show_default=False,
        ),
    ] = None,
    host: Annotated[
        str, typer.Option("--host", help="Address to bind. Not a loopback address: --token needed.")
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", help="Port to bind (0: any free port).")
    ] = DEFAULT_PORT,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            help="Bearer token every page and /api call must carry (required off loopback).",
            envvar="MLGITOPS_UI_TOKEN",
            show_default=False,
        ),
    ] = None,
    repo: Annotated[
        str | None,
        typer.Option(
            "--repo",
            "-r",
            help="Config repository for the models' history. Default: the source each "
            "environment's status records.",
            envvar="MLGITOPS_REPO",
            show_default=False,
        ),
    ] = None,
    state_dir: StateOpt = None,
) -> None:
    """Serve the read-only web dashboard: environments x models x versions.

    Overview (one row per model, one column per environment), a page per model (its timeline
    from the registry and Git, training runs, drift and quality charts, the commands to promote
    or roll back) and per environment (revision, problems, jobs), and the same data as JSON
    under /api/overview, /api/models/NAME and /api/environments/ENV. Runs until interrupted.
    """
    from controller.local.dashboard import LocalCollector
    from controller.ui.app import Dashboard, check_binding

    refused = check_binding(host, token)
    if refused:
        fail([refused])
    if not 0 <= port <= 65535:
        fail([f"--port: must be 0 to 65535, got {port}"])
    state = state_for(state_dir)
    collector = LocalCollector(
        state,
        envs=env or (),
        repo=repo,
        registry_for=registry_factory(state),
        tracking_for=tracking_factory(state),
    )
    if not collector.names():
        err.print(
            f"warning: no environment has a recorded status in {state.root} yet "
            "(mlgitops sync --env ENV records one); the page fills in as they appear",
            markup=False,
        )
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    app = Dashboard(collector, token=token).app()
    try:
        asyncio.run(_serve(app, host, port))
    except OSError as exc:
        fail([f"--port {port}: cannot listen on {host}: {exc.strerror or exc}"])
    except KeyboardInterrupt:
        pass


async def _serve(app: web.Application, host: str, port: int) -> None:
    """Serve ``app`` until SIGINT or SIGTERM; print the URL once it is listening."""
    from aiohttp import web

    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        bound = runner.addresses[0][1]
        shown = f"[{host}]" if ":" in host else host
        out.print(f"mlgitops ui: http://{shown}:{bound}/  (Ctrl-C stops it)", markup=False)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()
