"""The monitor: drift, profile and quality of what a model scored, window by window, in Delta tables.

The monitoring CronJob runs this on either source a ModelDeployment names (``monitoring.input``):

- the batch output table (``batchInference.output``): one window per scored batch (its
  ``batch_id``), or, with ``monitoring.window``, time buckets on ``scored_at``;
- the inference table the model server writes (``serving.inferenceTable``): time buckets of
  ``monitoring.window`` (default 1 h) on the request ``timestamp``, answered requests only.

Each run computes the newest ``lookback`` windows again, so labels that land late update their
quality, and writes three metric tables next to the monitored one, each row keyed by its window
and replaced when the window is computed again (one Delta commit per table per run):

- ``<table>_drift``: per window and feature, the PSI or KS statistic against the baseline and
  the verdict (``controller.jobs.drift``); the prediction too when the baseline has it. Rows of
  ``model_version`` ``*`` cover the whole window; with several versions in a window, each
  version gets its own rows as well;
- ``<table>_profile``: per window and column, count, nulls, distinct, mean, std, quantiles;
- ``<table>_quality``: per window, version (and ``*``) and metric, the value with the labeled
  row count and the verdict of ``monitoring.quality`` (judged on ``*`` rows with at least
  ``labels.minRows`` labels) (``controller.jobs.quality``).

A window violates when a feature drifted or a quality bound was breached. Retraining is due at
a window when at least ``violations`` of the last ``windows`` windows violated (the
ModelDeployment's ``monitoring.retrain``), counting only windows after the one that last made it
due: one stretch of drift makes retraining due once. Findings (drift, a breach, a window with
no rows, a feature missing) exit 0; unusable input (a table missing, a labels table without its
key or target) is reported after writing what could be computed, and exits 2.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]

from controller.errors import JobError, one_line
from controller.jobs.batch import ADDED_COLUMNS
from controller.jobs.drift import PROFILE_STATS, Reference, is_numeric, ordered, profile
from controller.jobs.quality import LABEL, Labels, infer_model_type, join_labels, metrics
from controller.lake.tables import open_dataset, read_table, replace_windows

__all__ = [
    "ALL",
    "FeatureDrift",
    "LabelSource",
    "MonitorResult",
    "MonitorSpec",
    "QualityBound",
    "WindowResult",
    "due_windows",
    "run_monitor",
    "window_rows",
]

ALL = "*"  # the model_version of rows covering every version in the window
DEFAULT_INFERENCE_WINDOW = 3600
# Columns the model server writes beside the inputs and the prediction: never features.
INFERENCE_COLUMNS = (
    "request_id",
    "row",
    "timestamp",
    "model",
    "model_version",
    "role",
    "routing_key",
    "latency_ms",
    "status",
    "inputs",
)
NOT_FEATURES = frozenset({*ADDED_COLUMNS, *INFERENCE_COLUMNS, "score", "model_name"})
TIMESTAMP = pa.timestamp("us", tz="UTC")


@dataclass(frozen=True)
class LabelSource:
    uri: str
    key: tuple[str, ...]
    target: str
    min_rows: int = 30


@dataclass(frozen=True)
class QualityBound:
    metric: str
    min: float | None = None
    max: float | None = None

    def breached(self, value: float) -> bool:
        return (self.min is not None and value < self.min) or (
            self.max is not None and value > self.max
        )

    def describe(self) -> str:
        return " and ".join(
            f"{op} {bound:g}"
            for op, bound in ((">=", self.min), ("<=", self.max))
            if bound is not None
        )


@dataclass(frozen=True)
class MonitorSpec:
    """What one run compares, and where it writes."""

    baseline_uri: str
    current_uri: str
    method: str = "psi"
    threshold: float = 0.2
    source: Literal["batch", "inference"] = "batch"
    window_seconds: int | None = None  # None: per batch (batch), 1 h (inference)
    lookback: int = 1
    window_id: str | None = None  # a table with no batch columns: the id of its one window
    features: list[str] | None = None  # None: every column the two tables share
    labels: LabelSource | None = None
    model_type: str | None = None
    quality: tuple[QualityBound, ...] = ()
    retrain: tuple[int, int] | None = None  # (violations, windows)
    tables: str | None = None  # the metric tables' prefix; None: the current table's URI
    storage_options: dict[str, str] | None = None

    def table(self, kind: str) -> str:
        return f"{(self.tables or self.current_uri).rstrip('/')}_{kind}"


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    statistic: float
    drifted: bool


@dataclass(frozen=True)
class Quality:
    model_version: str
    role: str
    metric: str
    value: float
    labeled_rows: int
    rows: int
    bound: QualityBound | None = None
    judged: bool = False  # enough labeled rows to apply the bound

    @property
    def breached(self) -> bool:
        return self.judged and self.bound is not None and self.bound.breached(self.value)


@dataclass
class WindowResult:
    window: str
    start: dt.datetime
    rows: int
    versions: list[str] = field(default_factory=list)
    features: list[FeatureDrift] = field(default_factory=list)  # the whole window's
    quality: list[Quality] = field(default_factory=list)
    by_version: list[tuple[str, FeatureDrift]] = field(default_factory=list)  # several versions
    profiles: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (column, stats)

    @property
    def drifted(self) -> list[FeatureDrift]:
        return [f for f in self.features if f.drifted]

    @property
    def breaches(self) -> list[Quality]:
        return [q for q in self.quality if q.model_version == ALL and q.breached]

    @property
    def violated(self) -> bool:
        return bool(self.drifted or self.breaches)


@dataclass
class MonitorResult:
    method: str
    threshold: float
    windows: list[WindowResult]  # computed this run, oldest first
    tables: dict[str, str]
    skipped: list[str] = field(default_factory=list)  # features that could not be compared
    findings: list[str] = field(default_factory=list)  # worth saying, not errors
    problems: list[str] = field(default_factory=list)  # unusable input: the run exits 2
    model_type: str | None = None
    violated_windows: int = 0  # of the last ``windows`` windows, up to the newest computed
    counted_windows: int = 0
    retrain_due: bool = False
    due_window: str | None = None  # the newest window computed this run where retraining is due
    last_due: str | None = None  # the window that last made it due before that

    @property
    def newest(self) -> WindowResult | None:
        with_rows = [w for w in self.windows if w.rows]
        return with_rows[-1] if with_rows else None


def due_windows(drifted: list[bool], violations: int, windows: int) -> list[tuple[int, bool]]:
    """For each window in time order: (violating windows counted, retraining due there).

    A window counts the last ``windows`` windows up to itself that came after the last window
    at which retraining was due; it is due when ``violations`` of them violated.
    """
    out: list[tuple[int, bool]] = []
    since = 0  # index of the first window after the last due one
    for i in range(len(drifted)):
        counted = drifted[max(since, i + 1 - windows) : i + 1]
        due = sum(counted) >= violations
        out.append((sum(counted), due))
        if due:
            since = i + 1
    return out


# --- windows -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Window:
    id: str
    start: dt.datetime
    rows: Any  # pyarrow.Table


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _time_column(spec: MonitorSpec) -> str:
    return "timestamp" if spec.source == "inference" else "scored_at"


def _answered(names: set[str]) -> Any:
    """Only answered requests count (an inference table); None: every row does."""
    return (pc.field("status") == 200) if "status" in names else None


def _windows(
    spec: MonitorSpec, dataset: Any, columns: list[str], now: dt.datetime
) -> list[_Window]:
    """The newest ``lookback`` windows of the current table, oldest first, with their rows."""
    names = set(dataset.schema.names)
    wanted = [c for c in columns if c in names]
    time_column = _time_column(spec)
    answered = _answered(names)

    def read(condition: Any) -> Any:
        if answered is not None:
            condition = answered if condition is None else (condition & answered)
        return dataset.to_table(columns=wanted, filter=condition)

    per_batch = spec.source == "batch" and spec.window_seconds is None
    if per_batch and not {"batch_id", "scored_at"} <= names:
        # Any table, compared whole: one window.
        return [_Window(spec.window_id or now.strftime("%Y%m%dT%H%M%SZ"), now, read(None))]
    if time_column not in names:
        raise JobError(
            f"current table {spec.current_uri} has no {time_column} column to cut windows on "
            f"(monitoring.input {spec.source})"
        )
    if per_batch:
        stamps = dataset.to_table(columns=["batch_id", "scored_at"])
        if stamps.num_rows == 0:
            return []
        starts = stamps.group_by("batch_id").aggregate([("scored_at", "min")])
        order = pc.sort_indices(starts, sort_keys=[("scored_at_min", "descending")])
        newest = starts.take(order[: spec.lookback])
        ids = newest["batch_id"].to_pylist()
        rows = read(pc.field("batch_id").isin(ids))
        out = [
            _Window(str(i), start, rows.filter(pc.equal(rows["batch_id"], i)))
            for i, start in zip(ids, newest["scored_at_min"].to_pylist(), strict=True)
        ]
        return sorted(out, key=lambda w: w.start)
    size = spec.window_seconds or DEFAULT_INFERENCE_WINDOW
    now_s = now.timestamp()
    last = math.floor(now_s / size) * size
    starts_s = [last - size * i for i in range(spec.lookback)][::-1]
    first = dt.datetime.fromtimestamp(starts_s[0], dt.UTC)
    end = dt.datetime.fromtimestamp(last + size, dt.UTC)
    field_ = pc.field(time_column)
    rows = read((field_ >= pa.scalar(first, TIMESTAMP)) & (field_ < pa.scalar(end, TIMESTAMP)))
    micros = pc.cast(pc.cast(rows[time_column], TIMESTAMP), pa.int64())
    bucket = pc.multiply(pc.floor(pc.divide(pc.cast(micros, pa.float64()), size * 1e6)), size)
    out = []
    for start_s in starts_s:
        start = dt.datetime.fromtimestamp(start_s, dt.UTC)
        out.append(_Window(_iso(start), start, rows.filter(pc.equal(bucket, float(start_s)))))
    return out


def window_rows(spec: MonitorSpec, window: str, start: dt.datetime, columns: list[str]) -> Any:
    """The rows a run read for ``window`` (starting at ``start``), only ``columns`` of them: the
    batch of that id, the time bucket from ``start``, or, for a table with no batch columns,
    the whole table. For the report, which shows the newest window beside the baseline.
    Raises :class:`JobError` when the current table is missing."""
    dataset = open_dataset(spec.current_uri, "current", spec.storage_options)
    names = set(dataset.schema.names)
    wanted = [c for c in columns if c in names]
    condition = None
    per_batch = spec.source == "batch" and spec.window_seconds is None
    if per_batch and {"batch_id", "scored_at"} <= names:
        condition = pc.field("batch_id") == window
    elif not per_batch and _time_column(spec) in names:
        size = spec.window_seconds or DEFAULT_INFERENCE_WINDOW
        first = start.astimezone(dt.UTC)
        end = first + dt.timedelta(seconds=size)
        field_ = pc.field(_time_column(spec))
        condition = (field_ >= pa.scalar(first, TIMESTAMP)) & (field_ < pa.scalar(end, TIMESTAMP))
    answered = _answered(names)
    if answered is not None:
        condition = answered if condition is None else (condition & answered)
    return dataset.to_table(columns=wanted, filter=condition)


# --- the run -------------------------------------------------------------------------------


def run_monitor(
    spec: MonitorSpec, *, now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)
) -> MonitorResult:
    """Compute the newest windows of ``spec.current_uri``, write the metric tables, and judge
    retraining. Raises :class:`JobError` when nothing can be computed (a table missing, no
    feature to compare); problems with the labels are reported in the result."""
    if spec.method not in ("psi", "ks"):
        raise JobError(f"--method: {spec.method!r} is not psi or ks")
    moment = now().astimezone(dt.UTC)
    options = spec.storage_options
    current = open_dataset(spec.current_uri, "current", options)
    baseline_ds = open_dataset(spec.baseline_uri, "baseline", options)
    base_names, cur_names = list(baseline_ds.schema.names), list(current.schema.names)
    result = MonitorResult(
        method=spec.method,
        threshold=spec.threshold,
        windows=[],
        tables={
            k: spec.table(k) for k in ("drift", "profile", *(("quality",) if spec.labels else ()))
        },
    )

    predictions = [c for c in cur_names if c == "prediction" or c.startswith("prediction_")]
    shared = [c for c in base_names if c in cur_names and c not in NOT_FEATURES]
    wanted = spec.features if spec.features is not None else shared
    for name in wanted:
        if name not in cur_names:
            result.skipped.append(f"{name} (not in the current table)")
        elif name not in base_names:
            result.skipped.append(f"{name} (not in the baseline)")
    features = [f for f in wanted if f in cur_names and f in base_names]
    compared = [*features, *(p for p in predictions if p in base_names and p not in features)]
    # The baseline is read a column at a time, each kept only as its Reference (bin edges and
    # shares, or sorted values), so the whole table is never in memory; KS compares numbers,
    # so its text columns, known from the schema, are not read at all.
    references: dict[str, Reference] = {}
    for name in compared:
        text = spec.method == "ks" and not is_numeric(baseline_ds.schema.field(name))
        column = None if text else baseline_ds.to_table(columns=[name])[name]
        ref = None if column is None else Reference.of(column, spec.method)
        if ref is None:
            why = "text: KS compares numbers" if text else "no values in the baseline"
            result.skipped.append(f"{name} ({why})")
        else:
            references[name] = ref
    if not references:
        raise JobError(
            f"no feature to compare: baseline {spec.baseline_uri} and current "
            f"{spec.current_uri} share none of {', '.join(wanted) or 'their columns'}"
        )

    labels = _labels(spec, result)
    extra = ["model_version", "role", "score", "latency_ms", "batch_id"]
    if labels is not None:
        extra += list(labels.key)
    profiled = [*compared, *(p for p in predictions if p not in compared)]
    columns = list(dict.fromkeys([*profiled, *extra, "scored_at", "timestamp"]))
    windows = _windows(spec, current, columns, moment)
    if not windows:
        result.findings.append(f"current table {spec.current_uri} has no rows to compare")
    for window in windows:
        result.windows.append(_compute(spec, window, references, profiled, labels, result))
    for w in result.windows:
        if w.rows == 0:
            result.findings.append(f"window {w.window}: no rows")
    _write(spec, result, moment)
    if spec.retrain is not None:
        _retrain(spec, result)
    return result


def _labels(spec: MonitorSpec, result: MonitorResult) -> Labels | None:
    if spec.labels is None:
        return None
    source = spec.labels
    try:
        dataset = open_dataset(source.uri, "labels", spec.storage_options)
    except JobError as exc:
        result.problems.append(str(exc))
        return None
    names = set(dataset.schema.names)
    missing = [c for c in (*source.key, source.target) if c not in names]
    if missing:
        result.problems.append(
            f"labels table {source.uri} has no column {', '.join(missing)} (labels.key and "
            f"labels.target name its columns; it has {', '.join(sorted(names))}): quality not "
            "measured"
        )
        return None
    return Labels.of(
        dataset.to_table(columns=[*source.key, source.target]), source.key, source.target
    )


def _compute(
    spec: MonitorSpec,
    window: _Window,
    references: dict[str, Reference],
    profiled: list[str],
    labels: Labels | None,
    result: MonitorResult,
) -> WindowResult:
    rows = window.rows
    out = WindowResult(window.id, window.start, rows.num_rows)
    if rows.num_rows == 0:
        return out
    versions = (
        sorted({str(v) for v in pc.unique(rows["model_version"]).to_pylist() if v is not None})
        if "model_version" in rows.column_names
        else []
    )
    out.versions = versions
    for name in profiled:  # column by column: one sorted copy alive at a time
        if name not in rows.column_names:
            continue
        column = rows[name]
        values = ordered(column)  # sorted once, for its drift and its profile
        if name in references:
            out.features.append(_drift(name, references[name], column, spec.threshold, values))
        out.profiles.append((name, profile(column, values)))
    if len(versions) > 1:
        for version in versions:
            part = rows.filter(pc.equal(rows["model_version"], version))
            out.by_version += [
                (version, _drift(name, ref, part[name], spec.threshold))
                for name, ref in references.items()
                if name in part.column_names
            ]
    if "latency_ms" in rows.column_names:
        out.profiles.append(("latency_ms", profile(rows["latency_ms"])))
    if labels is not None:
        out.quality = _quality(spec, rows, labels, versions, result)
    return out


def _drift(
    name: str, ref: Reference, column: Any, threshold: float, values: Any = None
) -> FeatureDrift:
    value = ref.compare(column, values)
    return FeatureDrift(name, value, math.isfinite(value) and value > threshold)


def _quality(
    spec: MonitorSpec, rows: Any, labels: Labels, versions: list[str], result: MonitorResult
) -> list[Quality]:
    assert spec.labels is not None
    joined = join_labels(rows, labels)
    model_type = spec.model_type or result.model_type
    if model_type is None and joined.num_rows:
        model_type = infer_model_type(joined[LABEL])
    if model_type is None:
        return []
    result.model_type = model_type
    bounds = {b.metric: b for b in spec.quality}
    groups: list[tuple[str, str, Any]] = [(ALL, "", joined)]
    if len(versions) > 1:
        for version in versions:
            part = joined.filter(pc.equal(joined["model_version"], version))
            role = ""
            if "role" in rows.column_names:
                mine = rows.filter(pc.equal(rows["model_version"], version))["role"]
                role = str(mine[0].as_py() or "") if len(mine) else ""
            groups.append((version, role, part))
    found: list[Quality] = []
    for version, role, part in groups:
        total = rows.num_rows if version == ALL else _count(rows, version)
        values = metrics(part, model_type)
        for metric, value in values.items():
            bound = bounds.get(metric) if version == ALL else None
            judged = part.num_rows >= spec.labels.min_rows
            found.append(Quality(version, role, metric, value, part.num_rows, total, bound, judged))
    for bound in spec.quality:
        if joined.num_rows and not any(q.metric == bound.metric for q in found):
            result.findings.append(f"quality {bound.metric} not measured (no score column?)")
    return found


def _count(rows: Any, version: str) -> int:
    return int(pc.sum(pc.equal(rows["model_version"], version)).as_py() or 0)


# --- tables --------------------------------------------------------------------------------


DRIFT_SCHEMA = pa.schema(
    [
        ("window", pa.string()),
        ("window_start", TIMESTAMP),
        ("model_version", pa.string()),
        ("feature", pa.string()),
        ("method", pa.string()),
        ("statistic", pa.float64()),
        ("threshold", pa.float64()),
        ("drifted", pa.bool_()),
        ("rows", pa.int64()),
        ("checked_at", TIMESTAMP),
    ]
)
PROFILE_SCHEMA = pa.schema(
    [
        ("window", pa.string()),
        ("window_start", TIMESTAMP),
        ("model_version", pa.string()),
        ("column", pa.string()),
        ("count", pa.int64()),
        ("nulls", pa.int64()),
        ("distinct", pa.int64()),
        *(
            (name, pa.float64())
            for name in PROFILE_STATS
            if name not in ("count", "nulls", "distinct")
        ),
        ("checked_at", TIMESTAMP),
    ]
)
QUALITY_SCHEMA = pa.schema(
    [
        ("window", pa.string()),
        ("window_start", TIMESTAMP),
        ("model_version", pa.string()),
        ("role", pa.string()),
        ("metric", pa.string()),
        ("value", pa.float64()),
        ("labeled_rows", pa.int64()),
        ("rows", pa.int64()),
        ("min", pa.float64()),
        ("max", pa.float64()),
        ("breached", pa.bool_()),
        ("checked_at", TIMESTAMP),
    ]
)


def _write(spec: MonitorSpec, result: MonitorResult, moment: dt.datetime) -> None:
    """Each metric table's rows of this run's windows, replacing theirs: one commit each."""
    ids = [w.window for w in result.windows]
    drift: list[dict[str, Any]] = []
    prof: list[dict[str, Any]] = []
    qual: list[dict[str, Any]] = []
    for w in result.windows:
        key = {"window": w.window, "window_start": w.start}
        for version, f in [(ALL, f) for f in w.features] + w.by_version:
            drift.append(
                {
                    **key,
                    "model_version": version,
                    "feature": f.feature,
                    "method": spec.method,
                    "statistic": f.statistic,
                    "threshold": spec.threshold,
                    "drifted": f.drifted,
                    "rows": w.rows if version == ALL else None,
                    "checked_at": moment,
                }
            )
        for column, stats in w.profiles:
            prof.append(
                {**key, "model_version": ALL, "column": column, **stats, "checked_at": moment}
            )
        for q in w.quality:
            qual.append(
                {
                    **key,
                    "model_version": q.model_version,
                    "role": q.role,
                    "metric": q.metric,
                    "value": q.value,
                    "labeled_rows": q.labeled_rows,
                    "rows": q.rows,
                    "min": q.bound.min if q.bound else None,
                    "max": q.bound.max if q.bound else None,
                    "breached": q.breached if q.judged and q.bound else None,
                    "checked_at": moment,
                }
            )
    options = spec.storage_options
    replace_windows(spec.table("drift"), "drift", ids, _rows(drift, DRIFT_SCHEMA), options)
    replace_windows(spec.table("profile"), "profile", ids, _rows(prof, PROFILE_SCHEMA), options)
    if spec.labels is not None:
        replace_windows(spec.table("quality"), "quality", ids, _rows(qual, QUALITY_SCHEMA), options)


def _rows(rows: list[dict[str, Any]], schema: Any) -> Any:
    return pa.Table.from_pylist(rows, schema=schema)


def _retrain(spec: MonitorSpec, result: MonitorResult) -> None:
    """Judge retraining over every window the metric tables hold, in time order."""
    assert spec.retrain is not None
    violations, windows = spec.retrain
    starts: dict[str, dt.datetime] = {}
    violated: dict[str, bool] = {}
    for kind, flag in (("drift", "drifted"), ("quality", "breached")):
        table = read_table(spec.table(kind), spec.storage_options)
        if table is None:
            continue
        whole = table.filter(pc.equal(table["model_version"], ALL))
        for window, start, hit in zip(
            whole["window"].to_pylist(),
            whole["window_start"].to_pylist(),
            whole[flag].to_pylist(),
            strict=True,
        ):
            starts[window] = min(start, starts.get(window, start))
            violated[window] = violated.get(window, False) or bool(hit)
    ordered = sorted(starts, key=lambda w: (starts[w], w))
    verdicts = due_windows([violated[w] for w in ordered], violations, windows)
    computed = {w.window for w in result.windows if w.rows}
    mine = [i for i, w in enumerate(ordered) if w in computed]
    if not mine:
        return
    here = mine[-1]  # the newest window computed: what the run reports
    before = [i for i in range(here) if verdicts[i][1]]
    since = before[-1] + 1 if before else 0
    result.violated_windows, result.retrain_due = verdicts[here]
    result.counted_windows = min(windows, here + 1 - since)
    result.last_due = ordered[before[-1]] if before else None
    due = [i for i in mine if verdicts[i][1]]  # an older window too, when labels came late
    result.due_window = ordered[due[-1]] if due else None


def signature_features(model_uri: str, tracking_uri: str | None = None) -> list[str] | None:
    """The input column names of the model's signature (reads its MLmodel file, not the model);
    None when it has no signature. Resolves an alias as batch inference does."""
    from controller.registry import models  # imports mlflow

    models.use_tracking_uri(tracking_uri)
    try:
        resolved_uri, _, _ = models.resolve(model_uri)
        return models.signature_inputs(resolved_uri)
    except Exception as exc:  # MLflow's own exceptions
        raise JobError(f"cannot read the signature of {model_uri}: {one_line(exc)}") from None
