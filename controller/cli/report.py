"""``report``: the monitoring report of one ModelDeployment, as one HTML file to open.

The monitor logs the same report to MLflow on each run; this command is for the person who
wants it now, from the tables as they are, without a monitor run or a tracking server: it
reads the environment from the config repository (which tables, which baseline, labels or
not), the metric tables under the data root, and at most one registry tag (retraining due).
Tables not written yet are findings the report states; exit 2 is for input that makes no
report (an unknown NAME, no monitoring section, no monitored table) or a table that cannot be
read (after writing what could be).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from controller.cli.options import (
    DataRootOpt,
    EnvOpt,
    RepoOpt,
    StateOpt,
    deployment_named,
    desired_for,
    fail,
    out,
    state_for,
    tracking_factory,
)
from controller.errors import JobError, MlgitopsError, one_line
from controller.redact import redact

if TYPE_CHECKING:
    from controller.jobs.report import ReportData
    from controller.state import StateDir


def report(
    name: Annotated[str, typer.Argument(help="The ModelDeployment (metadata.name).")],
    env: EnvOpt,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="The HTML file to write. Default: NAME-report.html in the current directory.",
            show_default=False,
        ),
    ] = None,
    repo: RepoOpt = ".",
    data_root: DataRootOpt = None,
    state_dir: StateOpt = None,
) -> None:
    """Write NAME's monitoring report: one self-contained HTML file (inline SVG charts, no
    scripts, nothing fetched) drawn from the monitor's metric tables.

    A summary per window; drift per feature over the windows; the baseline beside the newest
    window for the features that drifted there; quality per metric and model version (with
    monitoring.labels); rows per window and, for an inference table, latency. Exit 0 when the
    report is written, also when tables are missing (it says which); 2 when NAME is unknown,
    has no monitoring section or no monitored table, or a table cannot be read.
    """
    from controller.jobs.report import gather, monitor_spec, monitored_table, render

    state = state_for(state_dir)
    desired = desired_for(repo, state, env)
    doc = deployment_named(desired, name)
    spec = doc.doc.spec
    if spec.monitoring is None:
        fail([f"{doc.at.file}: spec.monitoring: {name!r} has no monitoring section"])
    monitored = monitored_table(spec)
    if monitored.table is None:
        fail(
            [
                f"{doc.at.file}: {monitored.field}: not set, so {name!r} has no monitored "
                f"table (monitoring.input is {monitored.source})"
            ]
        )
    root = data_root or desired.environment.spec.data_root or str(state.tables)
    try:
        monitor = monitor_spec(spec, root)
    except JobError as exc:
        fail([f"report: {redact(str(exc))}"])
    tracking_uri = desired.environment.spec.registry.tracking_uri
    due, due_note = _retrain_due(doc.registered_model, tracking_uri, state)
    facts = [
        ("environment", env),
        ("registered model", doc.registered_model),
        ("monitored table", f"{monitored.table} ({monitored.source})"),
        ("baseline", spec.monitoring.baseline),
        ("drift", f"{spec.monitoring.drift.method}, threshold {spec.monitoring.drift.threshold:g}"),
    ]
    if due_note:
        facts.append(("retraining", due_note))
    data = gather(
        monitor,
        title=f"Monitoring report: {name} in {env}",
        facts=facts,
        retrain_due=due,
    )
    target = output or Path(f"{name}-report.html")
    try:
        html = render(data)
        _write(target, html)
    except OSError as exc:
        fail([f"--output: cannot write {target}: {one_line(exc)}"])
    for line in _findings(data):
        out.print(line, markup=False)
    out.print(f"report: {target.resolve()}", markup=False)
    if data.problems:
        fail([f"report: {redact(p)}" for p in data.problems])


def _write(target: Path, text: str) -> None:
    """Write ``text`` to ``target`` whole or not at all (a reader never sees half a file)."""
    partial = target.with_name(f".{target.name}.partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(target)


def _findings(data: ReportData) -> list[str]:
    """One line per section the report could not fill, the way the report says it."""
    return [
        data.notes[k] for k in ("drift", "profile", "quality", "distributions") if k in data.notes
    ]


def _retrain_due(model: str, tracking_uri: str | None, state: StateDir) -> tuple[str | None, str]:
    """The window the registered model's ``mlgitops.retrain_due`` tag names, and a note when it
    could not be read. An embedded store that does not exist yet is not created for this."""
    from controller.pipeline.training import TAG_RETRAIN_DUE

    if tracking_uri is None and not (state.root / "mlflow.db").exists():
        return None, ""
    try:
        tags = tracking_factory(state)(tracking_uri).model_tags(model)
    except MlgitopsError as exc:
        return None, f"not known: {redact(str(exc))}"
    return tags.get(TAG_RETRAIN_DUE), ""
