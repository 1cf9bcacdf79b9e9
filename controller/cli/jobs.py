"""``batch`` and ``monitor``: the commands the batch and monitoring CronJobs run."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from controller.cli.options import (
    DataRootOpt,
    StateOpt,
    TrackingUriOpt,
    err,
    fail,
    out,
    resolve_tracking_uri,
    state_for,
    tracking_factory,
)
from controller.errors import JobError
from controller.redact import redact
from controller.state import StateDir

if TYPE_CHECKING:
    from controller.jobs.monitor import MonitorResult, MonitorSpec, QualityBound


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
            help="Delta table monitored: a batch output table (windows: its batches, or time "
            "buckets with --window), an inference table (--source inference), or any table, "
            "compared whole. The monitoring CronJob passes batchInference.output or "
            "serving.inferenceTable.",
            show_default=False,
        ),
    ] = None,
    source: Annotated[
        str,
        typer.Option(
            "--source",
            help="batch (scored_at, batch_id) or inference (timestamp; answered requests).",
        ),
    ] = "batch",
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
    window: Annotated[
        str | None,
        typer.Option(
            "--window",
            help='Windows are time buckets of this length ("1h", "1d", "30m"). Default: one '
            "window per batch (--source batch), 1h (--source inference).",
            show_default=False,
        ),
    ] = None,
    lookback: Annotated[
        int,
        typer.Option(
            "--lookback",
            min=1,
            help="Compute the newest this many windows (again): late labels update quality.",
        ),
    ] = 1,
    labels: Annotated[
        str | None,
        typer.Option(
            "--labels",
            help="Delta table of ground truth, joined by --label-key.",
            show_default=False,
        ),
    ] = None,
    label_key: Annotated[
        list[str] | None,
        typer.Option(
            "--label-key",
            help="A column joining labels to predictions (repeat for several).",
            show_default=False,
        ),
    ] = None,
    label_target: Annotated[
        str | None,
        typer.Option("--label-target", help="The labels table's truth column.", show_default=False),
    ] = None,
    label_min_rows: Annotated[
        int,
        typer.Option("--label-min-rows", min=1, help="Fewer labeled rows: quality not judged."),
    ] = 30,
    model_type: Annotated[
        str | None,
        typer.Option(
            "--model-type",
            help="classifier or regressor. Default: inferred from the labels.",
            show_default=False,
        ),
    ] = None,
    quality: Annotated[
        list[str] | None,
        typer.Option(
            "--quality",
            help="A bound METRIC:min:VALUE or METRIC:max:VALUE (repeat); a window breaching one "
            "counts toward retraining as a drifted one does.",
            show_default=False,
        ),
    ] = None,
    tables: Annotated[
        str | None,
        typer.Option(
            "--tables",
            help="Prefix of the metric tables <prefix>_drift, _profile and _quality (a rerun of "
            "a window replaces its rows). Default: the --current table.",
            show_default=False,
        ),
    ] = None,
    retrain_violations: Annotated[
        int | None,
        typer.Option(
            "--retrain-violations",
            min=1,
            help="Retraining is due when this many of the last --retrain-windows windows "
            "drifted or breached a quality bound.",
            show_default=False,
        ),
    ] = None,
    retrain_windows: Annotated[
        int, typer.Option("--retrain-windows", min=1, help="Windows --retrain-violations counts.")
    ] = 5,
    online_metric: Annotated[
        str | None,
        typer.Option(
            "--online-metric",
            help="Compare the serving challenger with the champion on this quality metric, on "
            "the windows where both had labels, and tag the challenger version WON, LOST or "
            "PENDING (promotion.online).",
            show_default=False,
        ),
    ] = None,
    online_min_change: Annotated[
        float, typer.Option("--online-min-change", help="The challenger's margin to win.")
    ] = 0.0,
    online_min_labeled_rows: Annotated[
        int,
        typer.Option(
            "--online-min-labeled-rows", min=1, help="Labeled rows each side needs to be judged."
        ),
    ] = 100,
    window_id: Annotated[
        str | None,
        typer.Option(
            "--window-id",
            help="Id of the one window of a table with no batch columns. Default: the time.",
            show_default=False,
        ),
    ] = None,
    data_root: DataRootOpt = None,
    tracking_uri: TrackingUriOpt = None,
    state_dir: StateOpt = None,
) -> None:
    """Monitor what a model scored, window by window: drift, profile and quality.

    Each feature of each window gets a PSI (ten bins at the baseline's deciles) or
    Kolmogorov-Smirnov statistic against the baseline; above --threshold it has drifted. With
    --labels, the window's predictions are joined to their labels and scored (accuracy, F1, ...
    or MAE, RMSE, R²). The rows go to the metric tables, and with --retrain-violations the run
    says whether retraining is due. Findings exit 0; 2 when a table, the model or the labels'
    columns are missing (after writing what could be computed).
    """
    from controller.jobs.monitor import LabelSource, MonitorSpec, run_monitor, signature_features
    from controller.lake.tables import table_uri

    if method not in ("psi", "ks"):
        fail([f"--method: must be psi or ks, not {method!r}"])
    if source not in ("batch", "inference"):
        fail([f"--source: must be batch or inference, not {source!r}"])
    if model_type not in (None, "classifier", "regressor"):
        fail([f"--model-type: must be classifier or regressor, not {model_type!r}"])
    if current is None:
        fail(["--current: required (the monitoring CronJob passes the table monitored)"])
    if retrain_violations is not None and retrain_violations > retrain_windows:
        fail(["--retrain-violations: cannot exceed --retrain-windows"])
    if labels is not None and (not label_key or label_target is None):
        fail(["--labels: give --label-key and --label-target too"])
    bounds = [_quality_bound(text) for text in quality or []]
    if bounds and labels is None:
        fail(["--quality: needs --labels"])
    if online_metric is not None and labels is None:
        fail(["--online-metric: needs --labels (the comparison is on labeled traffic)"])
    seconds = _window_seconds(window) if window is not None else None
    state = state_for(state_dir)
    root = data_root or str(state.tables)
    try:
        features = None
        if model is not None:
            features = signature_features(model, resolve_tracking_uri(tracking_uri, state))
        spec = MonitorSpec(
            baseline_uri=table_uri(baseline, root),
            current_uri=table_uri(current, root),
            method=method,
            threshold=threshold,
            source="inference" if source == "inference" else "batch",
            window_seconds=seconds,
            lookback=lookback,
            window_id=window_id,
            features=features,
            labels=LabelSource(
                table_uri(labels, root), tuple(label_key or ()), label_target or "", label_min_rows
            )
            if labels is not None
            else None,
            model_type=model_type,
            quality=tuple(bounds),
            retrain=(retrain_violations, retrain_windows) if retrain_violations else None,
            tables=table_uri(tables, root) if tables else None,
        )
        result = run_monitor(spec)
    except JobError as exc:
        fail([f"monitor: {redact(str(exc))}"])
    if model is not None and features is None:
        out.print(f"{model} has no signature: comparing every shared column", markup=False)
    for w in result.windows:
        if not w.rows:
            continue
        drifted = ", ".join(f"{f.feature} {f.statistic:.3f}" for f in w.drifted)
        out.print(
            f"window {w.window}: {len(w.features)} features compared by {result.method} "
            f"(threshold {result.threshold:g}) on {w.rows} rows; "
            + (f"{len(w.drifted)} drifted: {drifted}" if drifted else "no drift"),
            markup=False,
        )
        whole = [q for q in w.quality if q.model_version == "*"]
        if whole:
            values = ", ".join(f"{q.metric} {q.value:.4g}" for q in whole)
            out.print(
                f"window {w.window} quality ({result.model_type}, {whole[0].labeled_rows} of "
                f"{whole[0].rows} rows labeled): {values}",
                markup=False,
            )
            for q in w.breaches:
                assert q.bound is not None
                out.print(
                    f"window {w.window}: {q.metric} {q.value:.4g} breaches {q.bound.describe()}",
                    markup=False,
                )
    for finding in result.findings:
        out.print(finding, markup=False)
    if result.skipped:
        out.print(f"not compared: {', '.join(result.skipped)}", markup=False)
    if retrain_violations and result.newest is not None:
        since = f" since {result.last_due}" if result.last_due else ""
        out.print(
            f"retraining {'due' if result.retrain_due else 'not due'}: {result.violated_windows} "
            f"of the last {result.counted_windows} windows{since} drifted or breached (due at "
            f"{retrain_violations})",
            markup=False,
        )
    if result.due_window is not None and model is not None:
        _mark_retrain_due(
            model, result.due_window, resolve_tracking_uri(tracking_uri, state), state
        )
    if model is not None:
        _leave_alerts(model, result, resolve_tracking_uri(tracking_uri, state), state)
    if online_metric is not None and "quality" in result.tables:
        _compare_online(
            model,
            result.tables["quality"],
            online_metric,
            online_min_change,
            online_min_labeled_rows,
            resolve_tracking_uri(tracking_uri, state),
            state,
        )
    out.print(f"tables: {', '.join(result.tables.values())}", markup=False)
    if model is not None:
        _log_report(model, spec, result, resolve_tracking_uri(tracking_uri, state), state)
    problems = result.problems
    if problems:
        fail([f"monitor: {redact(p)}" for p in problems])


def _quality_bound(text: str) -> QualityBound:
    from controller.jobs.monitor import QualityBound

    metric, _, rest = text.partition(":")
    side, _, value = rest.partition(":")
    try:
        number = float(value)
    except ValueError:
        number = None
    if not metric or side not in ("min", "max") or number is None:
        fail([f"--quality: {text!r} is not METRIC:min:VALUE or METRIC:max:VALUE"])
    return QualityBound(
        metric, number if side == "min" else None, number if side == "max" else None
    )


def _window_seconds(text: str) -> int:
    from pydantic import TypeAdapter, ValidationError

    from controller.api.documents import Duration

    try:
        return int(TypeAdapter(Duration).validate_python(int(text) if text.isdigit() else text))
    except ValidationError as exc:
        fail([f"--window: {exc.errors()[0]['msg']}"])


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


def _leave_alerts(model: str, result: MonitorResult, tracking_uri: str, state: StateDir) -> None:
    """Put the alerts of the windows computed on the registered model, for its controller to
    report and notify (``controller.monitoring``): a drift, a quality breach, retraining due."""
    from controller.errors import MlgitopsError
    from controller.pipeline.monitoring import TAG_MONITOR_ALERTS, Alert, encode

    name = registered_name(model)
    if name is None:
        return
    alerts: list[Alert] = []
    for w in result.windows:
        if w.drifted:
            names = ", ".join(f"{f.feature} {f.statistic:.3f}" for f in w.drifted[:5])
            more = f" and {len(w.drifted) - 5} more" if len(w.drifted) > 5 else ""
            alerts.append(
                Alert(
                    "DriftDetected",
                    w.window,
                    f"{name} window {w.window}: {len(w.drifted)} feature(s) drifted by "
                    f"{result.method} above {result.threshold:g}: {names}{more}",
                )
            )
        if w.breaches:
            found = ", ".join(
                f"{q.metric} {q.value:.4g} (bound {q.bound.describe() if q.bound else ''})"
                for q in w.breaches
            )
            alerts.append(Alert("QualityBreached", w.window, f"{name} window {w.window}: {found}"))
    if result.due_window is not None:
        alerts.append(
            Alert(
                "RetrainingDue",
                result.due_window,
                f"{name}: retraining due at window {result.due_window}",
            )
        )
    try:
        tracking_factory(state)(tracking_uri).set_model_tag(
            model=name, key=TAG_MONITOR_ALERTS, value=encode(alerts)
        )
    except MlgitopsError as exc:
        fail([f"monitor: cannot leave the alerts on {name}: {redact(str(exc))}"])


def _compare_online(
    model: str | None,
    quality_uri: str,
    metric: str,
    min_change: float,
    min_rows: int,
    tracking_uri: str,
    state: StateDir,
) -> None:
    """The serving challenger against the champion on labeled traffic; the verdict goes on
    the challenger version, where the promotion pass reads it (``promotion.online``)."""
    from controller.errors import MlgitopsError
    from controller.jobs.quality import online_verdict
    from controller.lake.tables import read_table
    from controller.pipeline.promotion import TAG_ONLINE, TAG_ONLINE_DETAIL

    try:
        table = read_table(quality_uri)
    except JobError as exc:
        fail([f"monitor: {redact(str(exc))}"])
    verdict = online_verdict(table, metric, min_change=min_change, min_rows=min_rows)
    if verdict is None:
        out.print("online comparison: no challenger served labeled traffic", markup=False)
        return
    out.print(
        f"online comparison: challenger {verdict.challenger} {verdict.verdict} against champion "
        f"{verdict.champion or 'none'}: {verdict.detail()}",
        markup=False,
    )
    name = registered_name(model) if model else None
    if name is None:
        return
    tags = {TAG_ONLINE: verdict.verdict, TAG_ONLINE_DETAIL: verdict.detail()}
    try:
        tracking_factory(state)(tracking_uri).set_version_tags(
            model=name, version=verdict.challenger, tags=tags
        )
    except MlgitopsError as exc:
        fail([f"monitor: cannot tag {name} version {verdict.challenger}: {redact(str(exc))}"])


REPORT_ARTIFACT = "monitoring/report.html"


def _log_report(
    model: str, spec: MonitorSpec, result: MonitorResult, tracking_uri: str, state: StateDir
) -> None:
    """Draw the report from the metric tables as they now are and log it, with the newest
    window's numbers, to one MLflow run of the registered model's monitoring experiment. The
    tables are the record: a report that cannot be made or logged is a warning line."""
    from controller.errors import one_line
    from controller.jobs.report import gather, render
    from controller.pipeline.training import TAG_RETRAIN_DUE

    name = registered_name(model)
    if name is None:
        return
    try:
        from controller.registry.reports import log_monitoring_run

        due = tracking_factory(state)(tracking_uri).model_tags(name).get(TAG_RETRAIN_DUE)
        facts = [
            ("registered model", name),
            ("monitored table", spec.current_uri),
            ("baseline", spec.baseline_uri),
            ("drift", f"{spec.method}, threshold {spec.threshold:g}"),
        ]
        data = gather(
            spec,
            title=f"Monitoring report: {name}",
            facts=facts,
            no_labels="--labels not given (monitoring.labels is not set)",
            retrain_due=due,
        )
        computed = [w.window for w in result.windows if w.rows]
        newest = result.newest
        metrics: dict[str, float] = {}
        if newest is not None:
            metrics["drifted_features"] = float(len(newest.drifted))
            metrics["rows"] = float(newest.rows)
            for q in newest.quality:
                if q.model_version == "*":
                    metrics[f"quality.{q.metric}"] = q.value
        uri = log_monitoring_run(
            tracking_uri,
            model=name,
            tags={
                "mlgitops.model": name,
                "mlgitops.model_uri": model,
                "mlgitops.windows": ",".join(computed)[:5000],
                "mlgitops.newest_window": newest.window if newest is not None else "",
                "mlgitops.tables": ",".join(result.tables.values())[:5000],
            },
            metrics=metrics,
            report=render(data),
            artifact_path=REPORT_ARTIFACT,
            run_name=f"monitor {newest.window}" if newest is not None else "monitor",
        )
    except Exception as exc:  # the report is a view of the tables, never a reason to fail
        err.print(f"warning: monitor: report not logged: {redact(one_line(exc))}", markup=False)
        return
    out.print(f"report: {uri}", markup=False)


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
