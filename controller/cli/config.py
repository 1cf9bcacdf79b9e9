"""``validate``, ``diff`` and ``sync``: an environment folder checked, compared, applied.

``validate`` reads no registry, so it fits a pull-request check; ``diff`` plans and writes
nothing (no lock, so it works while ``mlgitops run`` holds one); ``sync`` is one pass of the
engine, the same pass ``mlgitops run`` repeats.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated, Any

import typer

from controller.api.loader import load_environment
from controller.cli.options import (
    EnvOpt,
    RepoOpt,
    RevOpt,
    StateOpt,
    error_lines,
    fail,
    fmt,
    out,
    registry_factory,
    source_for,
    state_for,
)
from controller.engine import ENVIRONMENTS_ROOT, SyncResult, reconcile
from controller.errors import Busy, InvalidInput, MlgitopsError, Problem
from controller.state import StateDir


def validate(
    repo: RepoOpt = ".",
    rev: RevOpt = None,
    env: Annotated[
        list[str] | None, typer.Option("--env", "-e", help="Only these environments.")
    ] = None,
    state_dir: StateOpt = None,
) -> None:
    """Lint every environment folder at a revision. Exit 0 when all are valid, 2 otherwise.

    Checks YAML syntax, the document schemas (unknown fields, types, schedules), one Environment
    per folder, one ModelDeployment per model, and that every model is in the environment's own
    catalog. It reads no registry, so it is fit for a pull-request check.
    """
    state = state_for(state_dir)
    source = source_for(repo, state)
    try:
        commit = source.resolve(rev)
        names = env or source.list_folders(commit.sha, ENVIRONMENTS_ROOT)
        if not names:
            fail(
                [
                    f"{source.display}: no environment folders under {ENVIRONMENTS_ROOT}/ at {commit.short}"
                ]
            )
        problems: list[str] = []
        for name in names:
            folder = f"{ENVIRONMENTS_ROOT}/{name}"
            files = source.read_folder(commit.sha, folder)
            if files is None:
                problems.append(
                    str(
                        Problem(folder, None, None, f"no such environment folder at {commit.short}")
                    )
                )
                continue
            try:
                desired = load_environment(files, env_name=name, revision=commit.sha, folder=folder)
            except InvalidInput as exc:
                problems.extend(str(p) for p in exc.problems)
                continue
            out.print(
                f"ok   {folder} ({len(desired.deployments)} ModelDeployments, catalog {desired.catalog})"
            )
    except MlgitopsError as exc:
        fail(error_lines(exc))
    if problems:
        fail(problems)
    out.print(f"valid: {len(names)} environment(s) at {commit.short}")


def _run(
    env: str, repo: str, rev: str | None, state_dir: Path | None, *, dry_run: bool
) -> SyncResult:
    state = state_for(state_dir)
    source = source_for(repo, state)
    # diff writes nothing, so it needs no lock and works while `mlgitops run` holds it.
    lock = contextlib.nullcontext() if dry_run else state.lock(env)
    try:
        with lock:
            return reconcile(
                env=env,
                source=source,
                registry_for=registry_factory(state),
                store=state if not dry_run else _ReadOnly(state),
                rev=rev,
                dry_run=dry_run,
            )
    except Busy as exc:
        fail([str(exc)])
    finally:
        source.close()


class _ReadOnly:
    """A store that reads the real status but never writes: ``diff`` changes nothing."""

    def __init__(self, state: StateDir) -> None:
        self._state = state

    def load_status(self, env: str) -> dict[str, Any] | None:
        return self._state.load_status(env)

    def save_status(self, env: str, data: dict[str, Any]) -> None:
        return None


def diff(
    env: EnvOpt,
    repo: RepoOpt = ".",
    rev: RevOpt = None,
    state_dir: StateOpt = None,
) -> None:
    """Show what a sync would change, model by model (before -> after). Changes nothing.

    Exit 0 when nothing would change, 1 when something would, 2 on invalid input or an
    unreachable repository or registry.
    """
    result = _run(env, repo, rev, state_dir, dry_run=True)
    if result.error is not None:
        fail(error_lines(result.error))
    assert result.plan is not None
    assert result.commit is not None
    changed = [m for m in result.plan.models if m.changes]
    for model in changed:
        out.print(f"~ {model.model} ({model.deployment})")
        for change in model.changes:
            out.print(f"    {change.alias:<10} {fmt(change.previous)} -> {fmt(change.version)}")
    total = len(result.plan.changes)
    if not total:
        out.print(f"{env}: in sync with {result.commit.short} ({len(result.plan.models)} models)")
        raise typer.Exit(0)
    out.print(
        f"{env}: {total} alias change(s) in {len(changed)} model(s) to reach {result.commit.short}"
    )
    raise typer.Exit(1)


def sync(
    env: EnvOpt,
    repo: RepoOpt = ".",
    rev: RevOpt = None,
    state_dir: StateOpt = None,
) -> None:
    """Run one reconcile pass: move the registry aliases to what Git pins at the revision.

    A revision with any invalid document, unknown model or version, or a version whose
    validation FAILED is rejected whole: nothing is changed and the last good revision stays in
    force. Every alias change is recorded as a tag on the model version. Exit 0 or 2.
    """
    result = _run(env, repo, rev, state_dir, dry_run=False)
    if result.error is not None:
        fail(error_lines(result.error))
    assert result.commit is not None
    assert result.plan is not None
    for change in result.applied:
        out.print(
            f"  {change.model}: {change.alias} {fmt(change.previous)} -> {fmt(change.version)}"
        )
    n = len(result.applied)
    what = f"{n} alias change(s)" if n else "no changes"
    out.print(f"{env}: synced to {result.commit.short} ({len(result.plan.models)} models, {what})")
