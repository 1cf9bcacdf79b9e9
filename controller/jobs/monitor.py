"""The drift monitor: compare the newest scored batch with the training baseline, feature by feature.

The monitoring CronJob runs this after the batch CronJob has scored a batch. The current window is
the newest batch of the batch output table (the rows sharing its latest ``scored_at``), or the
whole table when it has no ``batch_id`` column. Each feature the model's signature names is
compared with the baseline table: PSI over ten bins cut at the baseline's deciles (categories for
text columns), or the two-sample Kolmogorov-Smirnov statistic (scipy). A feature drifts when the
statistic exceeds the threshold.

Every run adds one row per feature to a report Delta table, keyed by the window (the batch id),
and replaces an earlier report of the same window, so a retried Job counts once. Retraining is
due at a window when at least ``violations`` of the last ``windows`` windows drifted (the
ModelDeployment's ``monitoring.retrain``), counting only windows after the one that last made it
due: one stretch of drift makes retraining due once, and a drift that outlasts the retraining
makes it due again only after ``violations`` more drifted windows. ``mlgitops monitor`` then
tags the registered model with the window, and the controller trains once for it. Drift is a
finding, not a failure: the exit code is 0 either way.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped]
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]
from scipy import stats  # type: ignore[import-untyped]

from controller.errors import JobError, one_line
from controller.jobs.batch import ADDED_COLUMNS
from controller.lake.tables import Window, open_dataset, write_window

__all__ = ["FeatureDrift", "MonitorResult", "due_windows", "ks", "psi", "run_monitor"]

BINS = 10
_EPS = 1e-4  # floor of a bin's share, so an empty bin counts as rare rather than infinite


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    statistic: float
    drifted: bool


@dataclass(frozen=True)
class MonitorResult:
    window: str
    method: str
    threshold: float
    rows: int
    features: list[FeatureDrift]
    report: str
    drifted_windows: int = 0  # of the last ``windows`` in the report, this one included
    windows: int = 0
    retrain_due: bool = False
    last_due: str | None = None  # the window that last made retraining due before this one
    skipped: list[str] = field(default_factory=list)  # features missing from a table

    @property
    def drifted(self) -> list[FeatureDrift]:
        return [f for f in self.features if f.drifted]


def _shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)
    return np.maximum(counts / max(len(values), 1), _EPS)


def _category_shares(values: pd.Series, categories: list[str]) -> np.ndarray:
    shares = values.astype(str).value_counts(normalize=True).reindex(categories, fill_value=0)
    floored: np.ndarray = np.maximum(shares.to_numpy(dtype=float), _EPS)
    return floored


def psi(baseline: pd.Series, current: pd.Series) -> float:
    """Population stability index of ``current`` against ``baseline``."""
    base, cur = baseline.dropna(), current.dropna()
    if pd.api.types.is_numeric_dtype(base) and pd.api.types.is_numeric_dtype(cur):
        edges = np.unique(np.quantile(base.to_numpy(float), np.linspace(0, 1, BINS + 1)[1:-1]))
        p, q = _shares(base.to_numpy(float), edges), _shares(cur.to_numpy(float), edges)
    else:
        categories = sorted(set(base.astype(str)) | set(cur.astype(str)))
        p, q = _category_shares(base, categories), _category_shares(cur, categories)
    return float(np.sum((q - p) * np.log(q / p)))


def ks(baseline: pd.Series, current: pd.Series) -> float:
    """The two-sample Kolmogorov-Smirnov statistic (the largest gap between the two CDFs)."""
    return float(stats.ks_2samp(baseline.dropna(), current.dropna()).statistic)


def due_windows(drifted: list[bool], violations: int, windows: int) -> list[tuple[int, bool]]:
    """For each window in time order: (drifted windows counted, retraining due there).

    A window counts the last ``windows`` windows up to itself that came after the last window
    at which retraining was due; it is due when ``violations`` of them drifted.
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


def _window(dataset: Any) -> tuple[str, pd.DataFrame]:
    """The newest batch of a batch output table (only its rows are read), or the whole table."""
    names = set(dataset.schema.names)
    if not {"batch_id", "scored_at"} <= names:
        return "", dataset.to_table().to_pandas()
    newest = pc.max(dataset.to_table(columns=["scored_at"])["scored_at"])
    if not newest.is_valid:
        return "", pd.DataFrame(columns=list(dataset.schema.names))
    rows = dataset.to_table(filter=pc.field("scored_at") == newest).to_pandas()
    return str(rows["batch_id"].iloc[0]), rows


def run_monitor(
    *,
    baseline_uri: str,
    current_uri: str,
    report_uri: str,
    method: str,
    threshold: float,
    features: list[str] | None = None,
    window: str | None = None,
    retrain: tuple[int, int] | None = None,
    storage_options: dict[str, str] | None = None,
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
) -> MonitorResult:
    """Compare the current window with the baseline and add the findings to ``report_uri``.

    ``features``: the columns to compare (the model's signature); None: every column the two
    tables share, except those batch inference adds. ``retrain``: (violations, windows).
    Raises :class:`JobError` on a missing table or an empty window.
    """
    if method not in ("psi", "ks"):
        raise JobError(f"--method: {method!r} is not psi or ks")
    baseline = open_dataset(baseline_uri, "baseline", storage_options).to_table().to_pandas()
    newest_id, rows = _window(open_dataset(current_uri, "current", storage_options))
    if rows.empty:
        raise JobError(f"current table {current_uri} has no rows to compare")
    window = window or newest_id or now().strftime("%Y%m%dT%H%M%SZ")
    shared = [c for c in baseline.columns if c in rows.columns and c not in ADDED_COLUMNS]
    wanted = features if features is not None else shared
    skipped = [f for f in wanted if f not in shared]
    measure = psi if method == "psi" else ks
    found: list[FeatureDrift] = []
    for name in (f for f in wanted if f in shared):
        numeric = pd.api.types.is_numeric_dtype(baseline[name]) and pd.api.types.is_numeric_dtype(
            rows[name]
        )
        empty = baseline[name].isna().all() or rows[name].isna().all()
        if empty or (method == "ks" and not numeric):
            skipped.append(name)  # nothing to compare, or KS of text
            continue
        value = measure(baseline[name], rows[name])
        found.append(FeatureDrift(name, value, math.isfinite(value) and value > threshold))
    if not found:
        raise JobError(
            f"no feature to compare: baseline {baseline_uri} and current {current_uri} share none "
            f"of {', '.join(wanted) or 'their columns'}"
        )
    checked_at = now().astimezone(dt.UTC)
    report = pa.table(
        {
            "window": [window] * len(found),
            "feature": [f.feature for f in found],
            "method": [method] * len(found),
            "statistic": [f.statistic for f in found],
            "threshold": [threshold] * len(found),
            "drifted": [f.drifted for f in found],
            "rows": [len(rows)] * len(found),
            "checked_at": pa.array([checked_at] * len(found), type=pa.timestamp("us", tz="UTC")),
        }
    )
    write_window(Window(report_uri, "report", "window", window, storage_options), report)
    history = open_dataset(report_uri, "report", storage_options).to_table().to_pandas()
    result = MonitorResult(
        window=window,
        method=method,
        threshold=threshold,
        rows=len(rows),
        features=found,
        report=report_uri,
        skipped=skipped,
    )
    if retrain is None:
        return result
    violations, windows = retrain
    per_window = history.groupby("window").agg(drifted=("drifted", "any"), at=("checked_at", "max"))
    ordered = per_window.sort_values("at")
    verdicts = due_windows([bool(d) for d in ordered["drifted"]], violations, windows)
    names = [str(w) for w in ordered.index]
    here = names.index(window)
    earlier = [names[i] for i in range(here) if verdicts[i][1]]
    since = names.index(earlier[-1]) + 1 if earlier else 0
    counted, due = verdicts[here]
    return dataclasses.replace(
        result,
        drifted_windows=counted,
        windows=min(windows, here + 1 - since),
        retrain_due=due,
        last_due=earlier[-1] if earlier else None,
    )


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
