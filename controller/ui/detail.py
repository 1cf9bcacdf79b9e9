"""A model's page in one environment: its record from the registry, Git and the metric tables.

The overview needs only what the controller recorded (cheap, no I/O beyond the status). A model's
page needs the durable record too: the timeline ``mlgitops history`` prints (``records``), its
training runs, and, with monitoring on, the metric tables the monitor writes. Both runtimes call
:func:`model_detail` with their own adapters; each part that cannot be read is reported in
``problems`` and the rest is still shown (a registry down must not blank the page).
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any

from controller.errors import MlgitopsError
from controller.lake.tables import read_table, table_uri
from controller.records import model_history, training_runs
from controller.redact import redact

if TYPE_CHECKING:
    from controller.api.loader import DeploymentDoc
    from controller.planning.ports import CommitTimes, Registry, Tracking

ALL_VERSIONS = "*"  # the metric tables' model_version of rows that cover every version
MAX_WINDOWS = 30  # the newest windows drawn


def _problem(what: str, exc: BaseException) -> str:
    return redact(f"{what}: {exc}".splitlines()[0])


def _number(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) else number


def monitoring(doc: DeploymentDoc, data_root: str) -> dict[str, Any] | None:
    """Drift per feature and quality per metric and version, newest windows, from the metric
    tables next to the monitored table; None when the ModelDeployment has no monitoring."""
    spec = doc.doc.spec
    if spec.monitoring is None:
        return None
    source, table = spec.monitored()
    found: dict[str, Any] = {
        "table": table,
        "input": source,
        "method": spec.monitoring.drift.method,
        "threshold": spec.monitoring.drift.threshold,
        "drift": {},
        "quality": {},
        "windows": [],
    }
    if table is None:
        return found
    prefix = table_uri(table, data_root).rstrip("/")
    drift = read_table(f"{prefix}_drift")
    windows: dict[str, str] = {}
    if drift is not None:
        for row in drift.to_pylist():
            if row["model_version"] != ALL_VERSIONS:
                continue
            windows[row["window"]] = str(row["window_start"] or "")
            found["drift"].setdefault(row["feature"], {})[row["window"]] = {
                "statistic": _number(row["statistic"]),
                "drifted": bool(row["drifted"]),
            }
    quality = read_table(f"{prefix}_quality")
    if quality is not None:
        for row in quality.to_pylist():
            windows.setdefault(row["window"], str(row["window_start"] or ""))
            by_version = found["quality"].setdefault(row["metric"], {})
            by_version.setdefault(row["model_version"], {})[row["window"]] = {
                "value": _number(row["value"]),
                "labeledRows": row["labeled_rows"],
                "breached": bool(row["breached"]),
            }
    ordered = sorted(windows, key=lambda w: (windows[w], w))[-MAX_WINDOWS:]
    found["windows"] = ordered
    return found


def model_detail(
    doc: DeploymentDoc,
    *,
    env: str,
    registry: Registry,
    tracking: Tracking,
    source: CommitTimes,
    data_root: str,
) -> dict[str, Any]:
    """The timeline, training runs and monitoring of ``doc`` in ``env``; what could not be read
    is named in ``problems``."""
    name = doc.doc.metadata.name
    problems: list[str] = []
    timeline: list[dict[str, Any]] = []
    try:
        timeline = [
            dataclasses.asdict(e)
            for e in model_history(doc.registered_model, registry, tracking, source)
        ]
    except MlgitopsError as exc:
        problems.append(_problem("history", exc))
    for entry in timeline:
        entry["detail"] = redact(entry["detail"])
    runs: list[dict[str, Any]] = []
    if doc.doc.spec.training is not None:
        try:
            runs = [r.model_dump(by_alias=True) for r in training_runs(tracking, env, name)]
        except MlgitopsError as exc:
            problems.append(_problem("training runs", exc))
    for run in runs:
        if run.get("reason"):
            run["reason"] = redact(run["reason"])
    watched: dict[str, Any] | None = None
    try:
        watched = monitoring(doc, data_root)
    except MlgitopsError as exc:
        problems.append(_problem("metric tables", exc))
    promotion = next(
        (
            {"version": e["version"], "commit": e["revision"]}
            for e in reversed(timeline)
            if e["kind"] == "proposal" and e["event"] == "proposed champion"
        ),
        None,
    )
    return {
        "file": doc.at.file,
        "registeredModel": doc.registered_model,
        "timeline": timeline,
        "trainingRuns": runs,
        "monitoring": watched,
        "promotion": promotion,
        "problems": problems,
    }
