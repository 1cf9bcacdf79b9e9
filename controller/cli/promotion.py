"""``promote`` and ``rollback``: the write-back commits a person makes by hand.

They write exactly what the controller writes (the same pin edit, message trailer and branch
rules, through the same ``WriteBack``), so a promotion by hand and one by the controller are
told apart only by their author, and each is found by the other's trailer search. The
ModelDeployment is read from the config repository to find the file it lives in; the commit is
made in a clone of our own under the state directory and pushed to ``--repo``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

import typer

from controller.cli.options import (
    EnvOpt,
    RepoOpt,
    StateOpt,
    deployment_named,
    error_lines,
    fail,
    out,
    source_for,
    state_for,
    tracking_factory,
)
from controller.errors import InvalidInput, MlgitopsError, Problem

if TYPE_CHECKING:
    from controller.api.loader import DeploymentDoc, DesiredState
    from controller.state import StateDir

NameArg = Annotated[str, typer.Argument(help="The ModelDeployment (metadata.name).")]
MessageOpt = Annotated[
    str | None,
    typer.Option(
        "--message",
        "-m",
        help="Why, in the commit message's body (credentials are scrubbed).",
        show_default=False,
    ),
]


def promote(
    name: NameArg,
    env: EnvOpt,
    version: Annotated[
        str,
        typer.Option("--version", help="The registry version to pin, e.g. 7.", show_default=False),
    ],
    challenger: Annotated[
        bool,
        typer.Option(
            "--challenger",
            help="Pin the version as challenger (spec.challenger) instead of champion.",
        ),
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Promote a version that was rolled back before (its promotion commit was "
            "reverted): the override only a person uses; the controller never proposes a "
            "rolled-back version again.",
        ),
    ] = False,
    message: MessageOpt = None,
    repo: RepoOpt = ".",
    state_dir: StateOpt = None,
) -> None:
    """Pin NAME's champion (or, with --challenger, challenger) to VERSION by a commit in Git.

    The commit changes only that pin in NAME's file (and, for a champion, removes a challenger
    pin of the same version), is authored by the Environment's writeBack.author and carries the
    trailer Mlgitops-Promotion: ENV/NAME/ALIAS/vVERSION. With promotion.policy auto or disabled
    it is pushed to writeBack.branch; with manual, to a new branch
    mlgitops/promote/ENV/NAME-vVERSION, and merging that branch is the approval. Exit 0 when
    written, or when it already was (that commit, or the pin, is there); 2 on invalid input or
    an unreachable or refusing repository.
    """
    from controller.pipeline.pins import check_deployment
    from controller.sources import WriteBack

    state = state_for(state_dir)
    alias: Literal["champion", "challenger"] = "challenger" if challenger else "champion"
    try:
        desired, deployment = _deployment(repo, state, env=env, name=name)
        spec = desired.environment.spec.write_back
        write_back = WriteBack(
            repo, cache_dir=state.writeback, branch=spec.branch, author=spec.author
        )
        policy = deployment.doc.spec.promotion.policy
        if not force and version.isdigit():  # a bad version is refused by the write-back
            _refuse_rolled_back(desired, deployment.registered_model, version, state)
        result = write_back.promote(
            env=env,
            name=name,
            path=deployment.at.file,
            version=version,
            alias=alias,
            policy=policy,
            body=message or f"By hand (mlgitops promote{' --force' if force else ''}).",
            force=force,  # also past a reverted promotion commit of the same decision
            check=lambda data: check_deployment(
                data, path=deployment.at.file, name=name, environment=desired.environment
            ),
        )
    except MlgitopsError as exc:
        fail(error_lines(exc))
    if not result.created:
        out.print(f"nothing to do: {result.detail}", markup=False)
    elif result.branch == spec.branch:
        out.print(
            f"committed {result.sha[:12]} to {result.branch}: {env}/{name} {alias} v{version}",
            markup=False,
        )
    else:
        out.print(
            f"pushed {result.sha[:12]} to branch {result.branch}: merging it into {spec.branch} "
            f"pins {alias} v{version} (promotion.policy is {policy})",
            markup=False,
        )


def rollback(
    name: NameArg,
    env: EnvOpt,
    message: MessageOpt = None,
    repo: RepoOpt = ".",
    state_dir: StateOpt = None,
) -> None:
    """Revert NAME's last promotion to champion: `git revert` of the newest commit on
    writeBack.branch carrying Mlgitops-Promotion: ENV/NAME/champion/..., pushed to that branch.

    The controller then moves the champion alias and serving back, and never proposes the
    reverted version again (only `mlgitops promote --force` pins it). A promotion already
    reverted is not reverted twice: to go further back, promote the version you want. Exit 0
    when pushed (or already reverted), 2 when there is no promotion to revert, the revert
    conflicts, or the repository is unreachable or refuses the push.
    """
    from controller.sources import WriteBack

    state = state_for(state_dir)
    try:
        desired, _ = _deployment(repo, state, env=env, name=name)
        spec = desired.environment.spec.write_back
        write_back = WriteBack(
            repo, cache_dir=state.writeback, branch=spec.branch, author=spec.author
        )
        result = write_back.revert_last(
            env=env, name=name, body=message or "By hand (mlgitops rollback)."
        )
    except MlgitopsError as exc:
        fail(error_lines(exc))
    if result.created:
        out.print(f"{result.detail}, pushed to {result.branch}", markup=False)
    else:
        out.print(f"nothing to do: {result.detail}", markup=False)


def _deployment(
    repo: str, state: StateDir, *, env: str, name: str
) -> tuple[DesiredState, DeploymentDoc]:
    """Environment ``env`` as its write-back branch holds it (the branch head when that branch
    is missing: the write-back then says so), and the ModelDeployment ``name`` in it."""
    from controller.engine import load_desired

    source = source_for(repo, state)
    try:
        _, desired = load_desired(source, env=env, rev=None)
        branch = desired.environment.spec.write_back.branch
        try:
            source.resolve(branch)
        except InvalidInput:
            pass
        else:
            _, desired = load_desired(source, env=env, rev=branch)
    finally:
        source.close()
    return desired, deployment_named(desired, name)


def _refuse_rolled_back(desired: DesiredState, model: str, version: str, state: StateDir) -> None:
    """A version tagged mlgitops.rolled_back (it lost the champion pin through a revert or a
    hand edit) is pinned again only with --force."""
    from controller.pipeline.promotion import TAG_ROLLED_BACK

    uri = desired.environment.spec.registry.tracking_uri
    if uri is None and not (state.root / "mlflow.db").exists():
        return  # no embedded store yet, so no version was rolled back (and none is created)
    tracking = tracking_factory(state)(uri)
    tags = next((v.tags for v in tracking.model_versions(model) if v.version == version), {})
    if TAG_ROLLED_BACK in tags:
        revision = tags[TAG_ROLLED_BACK][:12]
        raise InvalidInput(
            [
                Problem(
                    "--version",
                    None,
                    None,
                    f"{model} version {version} was rolled back at {revision}: "
                    "--force pins it again",
                )
            ]
        )
