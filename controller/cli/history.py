"""``history``: what happened to each model, from the durable records, in time order.

The registry is the record that outlives the state directory and the controller: the alias
changes every sync tags on the versions (``mlgitops.history.*``), and the tags of the promotion
path (validations, comparisons, proposals, rollbacks). Their times come from where each was
decided: the validation run's end, the promotion commit in Git, the sync. ``records`` reads them
(the dashboard does the same) and ``pipeline.history.timeline``, a pure function, merges them.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from controller.cli import options
from controller.cli.options import EnvOpt, RepoOpt, RevOpt, StateOpt
from controller.errors import InvalidInput, Unavailable


def history(
    env: EnvOpt,
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Only this ModelDeployment (metadata.name).")
    ] = None,
    repo: RepoOpt = ".",
    rev: RevOpt = None,
    state_dir: StateOpt = None,
) -> None:
    """Show each model's history: validations, comparisons with the champion, promotion commits,
    alias changes and rollbacks, oldest first.

    Read from the registry (tags on the model versions, and the validation runs) and the config
    repository (when promotion commits were made), so it survives the loss of the state
    directory or the controller. A time marked * is the version's own registration time: no
    better one was recorded.
    """
    from controller.engine import load_desired
    from controller.records import model_history

    state = options.state_for(state_dir)
    source = options.source_for(repo, state)
    table = Table(box=None, header_style="bold", pad_edge=False)
    for col in ("TIME", "MODEL", "EVENT", "CHANGE", "REVISION", "DETAIL"):
        table.add_column(col, overflow="fold")
    shown = approximate = 0
    try:
        _, desired = load_desired(source, env=env, rev=rev)
        if model and not any(d.doc.metadata.name == model for d in desired.deployments):
            options.fail([f"--model: no ModelDeployment named {model!r} in environment {env!r}"])
        uri = desired.environment.spec.registry.tracking_uri
        registry = options.registry_factory(state)(uri)
        tracking = options.tracking_factory(state)(uri)
        for d in desired.deployments:
            if model and d.doc.metadata.name != model:
                continue
            for e in model_history(d.registered_model, registry, tracking, source):
                shown += 1
                approximate += e.approximate
                when = (e.time or "")[:19].replace("T", " ") + ("*" if e.approximate else "")
                table.add_row(when, d.registered_model, e.event, e.change, e.revision[:7], e.detail)
    except (InvalidInput, Unavailable) as exc:
        options.fail(options.error_lines(exc))
    finally:
        source.close()
    if not shown:
        options.out.print("no history recorded")
        return
    options.out.print(table)
    if approximate:
        options.out.print("* the version's registration time: no better time was recorded")
