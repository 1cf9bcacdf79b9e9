"""The ``mlgitops`` command: one module per command group, put together here.

- ``config``: ``validate``, ``diff``, ``sync`` (an environment folder checked, compared, applied)
- ``inspect``: ``status``; ``history``: validations, proposals, alias changes, rollbacks
- ``run``: the embedded runtime; ``operator``: the Kubernetes operator
- ``training``: ``train``, ``runs`` (training runs by hand, and their record)
- ``promotion``: ``promote``, ``rollback`` (write-back commits by hand)
- ``jobs``: ``batch``, ``monitor`` (what the CronJobs run); ``serve``: the model server
- ``report``: ``report`` (the monitoring report of a ModelDeployment, as one HTML file)
- ``validation``: ``validate-model`` (a new version validated and compared with the champion)
- ``ui``: ``ui`` (the web dashboard on one machine)
- ``options``: the options, output and failure path they share

Modules import their heavy dependencies (MLflow, kopf) inside the command that needs them, so
``mlgitops validate`` or ``--help`` starts in a fraction of a second.
"""

from __future__ import annotations

import sys

import typer

from controller import exits
from controller.cli import (
    config,
    history,
    inspect,
    jobs,
    operator,
    promotion,
    report,
    run,
    serve,
    training,
    ui,
    validation,
)

app = typer.Typer(
    name="mlgitops",
    help=(
        "GitOps for ML models. Each folder environments/<env>/ of a Git repository holds an "
        "Environment document and one ModelDeployment per model; mlgitops makes the MLflow "
        "registry match it (aliases champion and challenger in the environment's catalog)."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

for command in (
    config.validate,
    config.diff,
    config.sync,
    inspect.status,
    history.history,
    run.run,
    training.train,
    training.runs,
    promotion.promote,
    promotion.rollback,
    operator.operator,
    jobs.batch,
    jobs.monitor,
    report.report,
    serve.serve,
    validation.validate_model,
    ui.ui,
):
    app.command()(command)


# The jobs (what the CronJobs run, and the report drawn from their tables) end without the
# interpreter's teardown, where reading Delta tables can abort a finished run (controller.exits).
# Decided here, where ``mlgitops`` is the process's program, never in the commands: a test
# that runs one in-process gets its exit code back instead of losing its own process.
LEAVE_FAST = frozenset({"batch", "monitor", "report"})


def main() -> None:
    """``mlgitops`` as a program: the console script and ``python -m controller``."""
    try:
        app()
    except SystemExit as exc:
        if sys.argv[1:2] and sys.argv[1] in LEAVE_FAST:
            exits.leave(exits.exit_code(exc))
        raise


__all__ = ["LEAVE_FAST", "app", "main"]
