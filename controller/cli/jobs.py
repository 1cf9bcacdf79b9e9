"""``batch`` and ``monitor``: the commands the batch and monitoring CronJobs run."""

from __future__ import annotations

from typing import Annotated

import typer

from controller.cli.options import (
    DataRootOpt,
    StateOpt,
    TrackingUriOpt,
    fail,
    out,
    resolve_tracking_uri,
    state_for,
    tracking_factory,
)
from controller.errors import JobError
from controller.redact import redact
from controller.state import StateDir


def batch(
    model: Annotated[
        str,
        typer.Option(
            "--model",
            help="Model URI to score with, e.g. models:/prod.fraud.fraud_detector@champion. An "
            "alias is resolved once, when the run starts; that version scores every row.",
            show_default=False,
        ),
    ],
    input: Annotated[
        str,
        typer.Option(
            "--input", help="Delta table to score (a name under --data-root, a path or a URI)."
        ),
    ],
    output: Annotated[
        str,
        typer.Option(
            "--output",
            help="Delta table the scored rows are added to (created when missing): the input's "
            "columns, prediction, model_name, model_version, batch_id and scored_at.",
        ),
    ],
    data_root: DataRootOpt = None,
    batch_id: Annotated[
        str | None,
        typer.Option(
            "--batch-id",
            help="Id of this batch. A run replaces the rows an earlier run of the same id wrote, "
            "so a retried Job leaves one copy. The CronJob passes its Job's name. Default: the "
            "start time, UTC (YYYYMMDDTHHMMSSZ).",
            envvar="MLGITOPS_BATCH_ID",
            show_default=False,
        ),
    ] = None,
    tracking_uri: TrackingUriOpt = None,
    chunk_rows: Annotated[
        int,
        typer.Option("--chunk-rows", min=1, help="Rows scored and written per Delta commit."),
    ] = 100_000,
    state_dir: StateOpt = None,
) -> None:
    """Score a Delta table with the model an alias names now, and add the rows to another table.

    The batch CronJob of every ModelDeployment runs this with @champion, so the next run after a
    promotion scores with the new champion. Exit 0 when the batch was written, 2 when a table or
    the alias is missing, the model refuses the input, or the registry cannot be read.
    """
    import datetime as dt

    from controller.lake.tables import table_uri

    state = state_for(state_dir)
    tracking_uri = resolve_tracking_uri(tracking_uri, state)
    root = data_root or str(state.tables)
    started = dt.datetime.now(dt.UTC)
    batch_id = batch_id or started.strftime("%Y%m%dT%H%M%SZ")
    from controller.jobs.batch import run_batch

    try:
        result = run_batch(
            model_uri=model,
            input_uri=table_uri(input, root),
            output_uri=table_uri(output, root),
            batch_id=batch_id,
            tracking_uri=tracking_uri,
            chunk_rows=chunk_rows,
        )
    except JobError as exc:
        fail([f"batch: {redact(str(exc))}"])
    out.print(
        f"batch {result.batch_id}: scored {result.rows} rows with {result.model} version "
        f"{result.version} into {result.output}"
        + (
            f" (table version {result.output_version})" if result.output_version is not None else ""
        ),
        markup=False,
    )


def monitor(
    baseline: Annotated[
        str,
        typer.Option(
            "--baseline", help="Delta table of the reference data (e.g. the training features)."
        ),
    ],
    current: Annotated[
        str | None,
        typer.Option(
            "--current",
            help="Delta table of recent data: a batch output table, whose newest batch is the "
            "window compared, or any table, compared whole. The monitoring CronJob passes the "
            "ModelDeployment's batchInference.output.",
            show_default=False,
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="Model URI whose signature names the features to compare (e.g. "
            "models:/<name>@champion). Default: every column the two tables share.",
            show_default=False,
        ),
    ] = None,
    method: Annotated[
        str, typer.Option("--method", help="psi (population stability index) or ks.")
    ] = "psi",
    threshold: Annotated[
        float,
        typer.Option(
            "--threshold", min=0, help="A feature drifts when its PSI or KS statistic exceeds it."
        ),
    ] = 0.2,
    report: Annotated[
        str | None,
        typer.Option(
            "--report",
            help="Delta table the findings are added to, a row per feature per window (a rerun "
            "of a window replaces its rows). Default: the current table's name + _drift.",
            show_default=False,
        ),
    ] = None,
    retrain_violations: Annotated[
        int | None,
        typer.Option(
            "--retrain-violations",
            min=1,
            help="Retraining is due when this many of the last --retrain-windows windows drifted.",
            show_default=False,
        ),
    ] = None,
    retrain_windows: Annotated[
        int, typer.Option("--retrain-windows", min=1, help="Windows --retrain-violations counts.")
    ] = 5,
    window: Annotated[
        str | None,
        typer.Option(
            "--window",
            help="Id of the window. Default: the newest batch id of --current, else the time.",
            show_default=False,
        ),
    ] = None,
    data_root: DataRootOpt = None,
    tracking_uri: TrackingUriOpt = None,
    state_dir: StateOpt = None,
) -> None:
    """Compare the newest scored batch with a baseline, feature by feature, and record drift.

    Each feature gets a PSI (ten bins at the baseline's deciles) or Kolmogorov-Smirnov
    statistic; above --threshold it has drifted. The findings are added to the report table, and
    with --retrain-violations the run says whether retraining is due. Drift is a finding: exit 0
    either way; 2 when a table or the model is missing or nothing can be compared.
    """
    from controller.jobs.monitor import run_monitor, signature_features
    from controller.lake.tables import table_uri

    if method not in ("psi", "ks"):
        fail([f"--method: must be psi or ks, not {method!r}"])
    if current is None:
        fail(["--current: required (the monitoring CronJob passes batchInference.output)"])
    if retrain_violations is not None and retrain_violations > retrain_windows:
        fail(["--retrain-violations: cannot exceed --retrain-windows"])
    state = state_for(state_dir)
    root = data_root or str(state.tables)
    try:
        features = None
        if model is not None:
            features = signature_features(model, resolve_tracking_uri(tracking_uri, state))
        current_uri = table_uri(current, root)
        result = run_monitor(
            baseline_uri=table_uri(baseline, root),
            current_uri=current_uri,
            report_uri=table_uri(report, root) if report else current_uri.rstrip("/") + "_drift",
            method=method,
            threshold=threshold,
            features=features,
            window=window,
            retrain=(retrain_violations, retrain_windows) if retrain_violations else None,
        )
    except JobError as exc:
        fail([f"monitor: {redact(str(exc))}"])
    drifted = ", ".join(f"{f.feature} {f.statistic:.3f}" for f in result.drifted)
    out.print(
        f"window {result.window}: {len(result.features)} features compared by {result.method} "
        f"(threshold {result.threshold:g}) on {result.rows} rows; "
        + (f"{len(result.drifted)} drifted: {drifted}" if drifted else "no drift"),
        markup=False,
    )
    if result.skipped:
        out.print(f"not compared: {', '.join(result.skipped)}", markup=False)
    if retrain_violations:
        since = f" since {result.last_due}" if result.last_due else ""
        out.print(
            f"retraining {'due' if result.retrain_due else 'not due'}: {result.drifted_windows} "
            f"of the last {result.windows} windows{since} drifted (due at {retrain_violations})",
            markup=False,
        )
    if result.retrain_due and model is not None:
        _mark_retrain_due(model, result.window, resolve_tracking_uri(tracking_uri, state), state)
    out.print(f"report: {result.report}", markup=False)


def _mark_retrain_due(model: str, window: str, tracking_uri: str, state: StateDir) -> None:
    """Tag the registered model with the window that made retraining due: the controller of
    the environment trains once for it (a rerun of the window sets the same value)."""
    from controller.errors import MlgitopsError
    from controller.pipeline.training import TAG_RETRAIN_DUE

    name = registered_name(model)
    if name is None:
        out.print(f"retraining due, but {model} names no registered model to tag", markup=False)
        return
    try:
        tracking_factory(state)(tracking_uri).set_model_tag(
            model=name, key=TAG_RETRAIN_DUE, value=window
        )
    except MlgitopsError as exc:
        fail([f"monitor: cannot mark retraining due on {name}: {redact(str(exc))}"])
    out.print(f"tagged {name} {TAG_RETRAIN_DUE}={window}: its controller trains once", markup=False)


def registered_name(model_uri: str) -> str | None:
    """``prod.fraud.m`` of ``models:/prod.fraud.m@champion`` or ``models:/prod.fraud.m/3``."""
    if not model_uri.startswith("models:/"):
        return None
    rest = model_uri.removeprefix("models:/")
    if "@" in rest:
        return rest.split("@", 1)[0] or None
    if "/" in rest:  # a version; with neither, ``rest`` is a logged model's id
        return rest.rsplit("/", 1)[0] or None
    return None
