"""What every ``mlgitops`` command shares: the common options, output, and the failure path.

Exit codes are part of the interface, so scripts and pull-request checks can rely on them: 0
success, 1 ``diff`` found changes, 2 invalid input or an unreachable dependency, with one line
per problem naming the file, the line and the field (credentials redacted). ``fail`` is the one
place that prints such lines and exits.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console

from controller.api.loader import DeploymentDoc, DesiredState
from controller.errors import InvalidInput, MlgitopsError
from controller.planning.ports import CodeSource, Registry, RegistryFor, Tracking, TrackingFor
from controller.sources import CodeRepo, GitSource
from controller.state import StateDir, resolve_state_dir

out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, highlight=False, soft_wrap=True)

RepoOpt = Annotated[
    str,
    typer.Option(
        "--repo",
        "-r",
        help="Config repository: a local path or a Git URL (file://, https://, ssh). "
        "URLs are mirrored under the state directory and fetched incrementally.",
        envvar="MLGITOPS_REPO",
    ),
]
RevOpt = Annotated[
    str | None,
    typer.Option(
        "--rev",
        help="Branch, tag or commit to read. Default: the branch head (HEAD). "
        "Only committed files are read, never uncommitted edits.",
    ),
]
EnvOpt = Annotated[
    str,
    typer.Option("--env", "-e", help="Environment: the folder name under environments/."),
]
StateOpt = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        help="Where mlgitops keeps its state: the embedded MLflow store (used when the "
        "Environment sets no registry.trackingUri), Git mirrors and the last status. "
        "Default: $MLGITOPS_STATE_DIR or ./.mlgitops",
        show_default=False,
    ),
]


DataRootOpt = Annotated[
    str | None,
    typer.Option(
        "--data-root",
        help="Where table names that are not absolute live: a directory or an object-store "
        "prefix (s3://bucket/lake). Default: $MLGITOPS_DATA_ROOT, else <state dir>/tables.",
        envvar="MLGITOPS_DATA_ROOT",
        show_default=False,
    ),
]
TrackingUriOpt = Annotated[
    str | None,
    typer.Option(
        "--tracking-uri",
        help="MLflow tracking/registry URI models are resolved against. Default: "
        "$MLFLOW_TRACKING_URI, else the embedded store in the state directory.",
        envvar="MLFLOW_TRACKING_URI",
        show_default=False,
    ),
]


def state_for(state_dir: Path | None) -> StateDir:
    return StateDir(resolve_state_dir(state_dir))


def fail(problems: list[str], code: int = 2) -> NoReturn:
    """Print each problem as one ``error:`` line and exit with ``code``."""
    for line in problems:
        err.print(f"error: {line}", markup=False)
    raise typer.Exit(code)


def error_lines(error: MlgitopsError) -> list[str]:
    if isinstance(error, InvalidInput):
        return [str(p) for p in error.problems] or [str(error)]
    return [str(error)]


def desired_for(repo: str, state: StateDir, env: str) -> DesiredState:
    """Environment ``env`` at the head of ``repo``, validated whole; one ``error:`` line per
    problem and exit 2 when it cannot be read or is invalid."""
    from controller.engine import load_desired

    source = source_for(repo, state)
    try:
        return load_desired(source, env=env, rev=None)[1]
    except MlgitopsError as exc:
        fail(error_lines(exc))
    finally:
        source.close()


def deployment_named(desired: DesiredState, name: str) -> DeploymentDoc:
    """The ModelDeployment ``name`` of ``desired``; exit 2 naming NAME when there is none."""
    for d in desired.deployments:
        if d.doc.metadata.name == name:
            return d
    env = desired.environment.metadata.name
    fail([f"NAME: no ModelDeployment named {name!r} in environment {env!r}"])


def resolve_tracking_uri(given: str | None, state: StateDir) -> str:
    """``given``, else the embedded store in the state directory (created on first use)."""
    if given is not None:
        return given
    from controller.registry import embedded_tracking_uri  # slow import

    return embedded_tracking_uri(state.root)


def registry_factory(state: StateDir) -> RegistryFor:
    def factory(tracking_uri: str | None) -> Registry:
        from controller.registry import MlflowRegistry, embedded_tracking_uri  # slow import

        return MlflowRegistry(tracking_uri or embedded_tracking_uri(state.root))

    return factory


def tracking_factory(state: StateDir) -> TrackingFor:
    def factory(tracking_uri: str | None) -> Tracking:
        from controller.registry import MlflowTracking, embedded_tracking_uri  # slow import

        if tracking_uri is not None:
            return MlflowTracking(tracking_uri)
        return MlflowTracking(
            embedded_tracking_uri(state.root), artifact_root=state.root / "artifacts"
        )

    return factory


def code_factory(state: StateDir) -> Callable[[str], CodeSource]:
    """Code repositories by URL or path, one handle each, mirrored under the state directory."""
    repos: dict[str, CodeSource] = {}

    def factory(repo: str) -> CodeSource:
        if repo not in repos:
            repos[repo] = CodeRepo(repo, cache_dir=state.git_cache)
        return repos[repo]

    return factory


def source_for(repo: str, state: StateDir) -> GitSource:
    return GitSource(repo, cache_dir=state.git_cache)


def fmt(version: str | None) -> str:
    return version if version is not None else "(none)"
