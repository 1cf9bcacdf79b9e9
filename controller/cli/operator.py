"""``mlgitops operator``: the Kubernetes operator, configured from its flags and nothing else."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from controller.cli.options import (
    EnvOpt,
    StateOpt,
    desired_for,
    err,
    fail,
    state_for,
)

DEFAULT_IMAGE = "ghcr.io/mlgitops/mlgitops:0.1.0"  # the released image of this version


def operator(
    env: EnvOpt,
    namespace: Annotated[
        str | None,
        typer.Option(
            "--namespace",
            "-n",
            help="Namespace to watch. Default: the Environment's spec.namespace from --repo.",
            envvar="MLGITOPS_NAMESPACE",
        ),
    ] = None,
    all_namespaces: Annotated[
        bool, typer.Option("--all-namespaces", "-A", help="Watch every namespace.")
    ] = False,
    repo: Annotated[
        str | None,
        typer.Option(
            "--repo",
            "-r",
            help="Config repository to sync ModelDeployments from (polled, and on webhook). "
            "Without it, ModelDeployments come from kubectl apply alone.",
            envvar="MLGITOPS_REPO",
        ),
    ] = None,
    poll_interval: Annotated[
        float, typer.Option("--poll-interval", help="Seconds between Git polls.")
    ] = 30.0,
    resync_interval: Annotated[
        float,
        typer.Option(
            "--resync-interval",
            help="Seconds between periodic passes per object (a pass that ran less than half "
            "an interval ago, on a create or an update, stands in for one).",
        ),
    ] = 300.0,
    http_host: Annotated[
        str,
        typer.Option(
            "--http-host",
            help="Address of the HTTP port. The default reaches the kubelet and Prometheus in a pod.",
            envvar="MLGITOPS_HTTP_HOST",
        ),
    ] = "0.0.0.0",
    http_port: Annotated[
        int, typer.Option("--http-port", help="Port of /metrics, /healthz, /readyz, /webhook.")
    ] = 8080,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            min=1,
            help="Handler threads: ModelDeployments reconciled at once.",
            envvar="MLGITOPS_WORKERS",
        ),
    ] = 16,
    image: Annotated[
        str,
        typer.Option(
            "--image",
            help="Image of the serving, batch and monitoring pods.",
            envvar="MLGITOPS_IMAGE",
        ),
    ] = DEFAULT_IMAGE,
    ui: Annotated[
        bool,
        typer.Option(
            "--ui",
            help="Serve the read-only web dashboard (the pages of `mlgitops ui`) on the HTTP "
            "port too. Off a loopback --http-host it needs a token.",
            envvar="MLGITOPS_UI",
        ),
    ] = False,
    ui_token: Annotated[
        str | None,
        typer.Option(
            "--ui-token",
            help="Bearer token the dashboard's pages and /api calls must carry (not /metrics, "
            "the probes or the webhook). Prefer $MLGITOPS_UI_TOKEN: flags show in ps.",
            envvar="MLGITOPS_UI_TOKEN",
            show_default=False,
        ),
    ] = None,
    state_dir: StateOpt = None,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            "-v",
            help="Log kopf's debug lines too: every watch event, patch and handler outcome.",
            envvar="MLGITOPS_VERBOSE",
        ),
    ] = False,
) -> None:
    """Run the Kubernetes operator (kopf) for one environment until SIGINT or SIGTERM.

    Reconciles every ModelDeployment of the namespace into registry aliases, a serving
    Deployment and Service, and batch and monitoring CronJobs, and writes its status. With
    --repo it also applies the environment folder from Git (Git wins over manual edits) and
    prunes what Git dropped. The webhook checks a GitHub-style X-Hub-Signature-256 with the
    token in $MLGITOPS_WEBHOOK_TOKEN. With --ui the HTTP port also serves the web dashboard
    from the Environment and ModelDeployment objects and the registry.
    """
    if ui:
        from controller.ui.app import check_binding

        if check_binding(http_host, ui_token):
            fail(
                [
                    f"--ui: the HTTP port listens on {http_host} (--http-host), not a loopback "
                    "address, so the dashboard needs a token: $MLGITOPS_UI_TOKEN or --ui-token"
                ]
            )
    state = state_for(state_dir)
    if namespace is None and not all_namespaces:
        if repo is None:
            fail(["--namespace: required without --repo (or use --all-namespaces)"])
        namespace = desired_for(repo, state, env).environment.spec.namespace
    from controller.kubernetes.operator import OperatorConfig, run  # imports kopf

    config = OperatorConfig(
        env=env,
        namespace=None if all_namespaces else namespace,
        repo=repo,
        poll_seconds=poll_interval,
        resync_seconds=resync_interval,
        image=image,
        http_host=http_host,
        http_port=http_port,
        state_dir=state.root,
        # From the environment only (the Secret mlgitops-git), never a flag: flags show in ps.
        webhook_token=os.environ.get("MLGITOPS_WEBHOOK_TOKEN") or None,
        workers=workers,
        verbose=verbose,
        ui=ui,
        ui_token=ui_token or None,
    )
    err.print(
        f"mlgitops operator: environment {env}, namespace "
        f"{'(all)' if all_namespaces else namespace}, repo {repo or '(none: kubectl apply)'}"
        + (f", dashboard on {http_host}:{http_port}" if ui else "")
    )
    run(config)
