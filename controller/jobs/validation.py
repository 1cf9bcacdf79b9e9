"""Validate a new model version, and compare it with the champion: one result per version.

A training run leaves a version tagged ``model_validation_status=PENDING``; this job (the
controller's Job or process, or ``mlgitops validate-model`` by hand) decides it, by named checks:

- ``signature``, ``input_example``: the version's model has them (training logs both);
- ``predicts``: the model loads and predicts on its own input example;
- ``required_tags``: every ``validation.requiredTags`` is set on the version or its run;
- ``threshold:<metric>:min|max``: the metric, computed by ``mlflow.models.evaluate`` on
  ``validation.data`` (a Delta table holding the ``target`` column), is within the bound;
- ``slice:<name>:<metric>:min|max``: the same on the rows the slice's ``where`` selects (the
  condition parsed, the SQL rendered from it and run by DataFusion: ``controller.lake.query``).

All pass: PASSED; otherwise FAILED, naming the failed checks. Unusable input (the version or the
table missing, no target column, an empty table) is an error, not a verdict: nothing is written.

A PASSED version is then compared, offline and on the same data, with the version the
``champion`` alias names at that moment: each ``minChangeVsChampion`` (absolute) and
``minRelativeChangeVsChampion`` bound, overall or in a slice, is a check
``champion:[slice:<name>:]<metric>:min_change|min_relative_change`` decided by
``mlflow.validate_evaluation_results`` (see ``registry.evaluate.decide_change`` for ``0``, "no
worse"). All hold: WON; otherwise LOST. With no champion (or no such bound) the absolute checks
alone decide: WON. A FAILED version is not compared (no champion evaluation, no comparison tag):
it can never become challenger or champion anyway.

Everything is logged on ONE MLflow run per version, in ``mlgitops/<env>/<name>/validation``,
tagged with the model and version and found by them before anything else: a finished result is
reused (its tags put on the version again, nothing evaluated twice), and a run a crash left
unfinished is resumed rather than duplicated. The run holds the candidate's metrics (overall
under MLflow's names, ``slice.<name>.<metric>`` per slice), the champion's (``champion.``...) and
the differences (``delta.``...), MLflow's evaluation plots, and ``validation/report.json`` and
``validation/report.html`` (self-contained). Its tags, and the version's, carry the verdict.
"""

from __future__ import annotations

import datetime as dt
import html
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd  # type: ignore[import-untyped]

from controller.api.documents import Threshold, ValidationSpec
from controller.api.where import parse_where
from controller.errors import EvaluationFailed, JobError
from controller.lake.query import Snapshot
from controller.pipeline.training import TAG_DEPLOYMENT, TAG_ENVIRONMENT
from controller.pipeline.validation import (
    FAILED,
    LOST,
    PASSED,
    RUN_TAG_MODEL,
    RUN_TAG_VERSION,
    TAG_COMPARISON,
    TAG_COMPARISON_CHAMPION,
    TAG_COMPARISON_DETAIL,
    TAG_FAILED_CHECKS,
    TAG_REPORT,
    TAG_RUN,
    VALIDATION_TAG,
    WON,
    validation_experiment,
)
from controller.redact import redact

__all__ = [
    "Check",
    "Comparison",
    "ValidationResult",
    "infer_model_type",
    "metric_key",
    "validate_version",
]

CLASSES_MAX = 20  # an integer target with at most this many values is a class label
DETAIL_MAX = 300  # characters of mlgitops.comparison.detail
REPORT_DIR = "validation"

# How people write metrics, and the key MLflow's default evaluator gives them.
_ALIASES = {
    "accuracy": "accuracy_score",
    "precision": "precision_score",
    "recall": "recall_score",
    "f1": "f1_score",
    "auc": "roc_auc",
    "pr_auc": "precision_recall_auc",
    "r2": "r2_score",
    "mae": "mean_absolute_error",
    "mse": "mean_squared_error",
    "rmse": "root_mean_squared_error",
    "mape": "mean_absolute_percentage_error",
}


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class Comparison:
    result: str  # WON | LOST
    champion: str | None  # the version compared with; None: there was no champion
    detail: str
    checks: tuple[Check, ...] = ()


@dataclass(frozen=True)
class Scope:
    """The metrics of one part of the data: ``overall`` or ``slice:<name>``."""

    rows: int
    candidate: dict[str, float] = field(default_factory=dict)
    champion: dict[str, float] | None = None
    error: str | None = None


@dataclass(frozen=True)
class ValidationResult:
    model: str
    version: str
    status: str  # PASSED | FAILED
    checks: tuple[Check, ...]
    comparison: Comparison | None  # None when FAILED
    run_id: str
    report_uri: str
    reused: bool = False  # an earlier run's result, found and applied again
    model_type: str | None = None
    rows: int | None = None

    @property
    def failed_checks(self) -> list[str]:
        return [c.name for c in self.checks if not c.passed]

    def tags(self) -> dict[str, str]:
        """The result as tags, for the version and its validation run."""
        tags = {
            VALIDATION_TAG: self.status,
            TAG_FAILED_CHECKS: ",".join(self.failed_checks),
            TAG_REPORT: self.report_uri,
            TAG_RUN: self.run_id,
        }
        if self.comparison is not None:
            tags[TAG_COMPARISON] = self.comparison.result
            tags[TAG_COMPARISON_CHAMPION] = self.comparison.champion or ""
            tags[TAG_COMPARISON_DETAIL] = self.comparison.detail
        return tags


def infer_model_type(target: pd.Series) -> str:
    """``classifier`` when the target holds labels (booleans, strings, or at most
    ``CLASSES_MAX`` distinct integers, also as whole floats), else ``regressor``."""
    values = target.dropna()
    if pd.api.types.is_bool_dtype(values) or not pd.api.types.is_numeric_dtype(values):
        return "classifier"
    whole = pd.api.types.is_integer_dtype(values) or bool((values % 1 == 0).all())
    return "classifier" if whole and values.nunique() <= CLASSES_MAX else "regressor"


def metric_key(name: str, metrics: Mapping[str, float]) -> str | None:
    """The key of ``metrics`` a threshold's ``metric`` means: itself, a common short name
    (``recall`` is ``recall_score``, ``rmse`` is ``root_mean_squared_error``) or itself +
    ``_score``; None when none was computed."""
    for key in (name, _ALIASES.get(name), f"{name}_score"):
        if key is not None and key in metrics:
            return key
    return None


def _num(value: float) -> str:
    return f"{value:.6g}"


def _bound_checks(prefix: str, threshold: Threshold, scope: Scope) -> list[Check]:
    bounds = [("min", threshold.min), ("max", threshold.max)]
    checks = []
    for which, bound in bounds:
        if bound is None:
            continue
        name = f"{prefix}:{threshold.metric}:{which}"
        if scope.error is not None:
            checks.append(Check(name, False, scope.error))
            continue
        key = metric_key(threshold.metric, scope.candidate)
        if key is None:
            computed = ", ".join(sorted(scope.candidate)) or "none"
            checks.append(
                Check(name, False, f"metric {threshold.metric!r} was not computed ({computed})")
            )
            continue
        value = scope.candidate[key]
        ok = value >= bound if which == "min" else value <= bound
        sign = (">=" if ok else "<") if which == "min" else ("<=" if ok else ">")
        checks.append(Check(name, ok, f"{key} {_num(value)} {sign} {_num(bound)}"))
    return checks


def _change_checks(prefix: str, threshold: Threshold, scope: Scope) -> list[Check]:
    from controller.registry.evaluate import decide_change

    bounds = [
        ("min_change", threshold.min_change_vs_champion),
        ("min_relative_change", threshold.min_relative_change_vs_champion),
    ]
    checks = []
    for which, bound in bounds:
        if bound is None:
            continue
        name = f"{prefix}:{threshold.metric}:{which}"
        if scope.error is not None or scope.champion is None:
            checks.append(Check(name, False, scope.error or "the champion was not evaluated"))
            continue
        key = metric_key(threshold.metric, scope.candidate)
        if key is None or key not in scope.champion:
            checks.append(Check(name, False, f"metric {threshold.metric!r} was not computed"))
            continue
        new, old = scope.candidate[key], scope.champion[key]
        ok = decide_change(
            metric=key,
            candidate=new,
            champion=old,
            min_change=bound if which == "min_change" else None,
            min_relative_change=bound if which == "min_relative_change" else None,
        )
        needs = f"{bound:+g}" if which == "min_change" else f"{bound:+.1%}"
        checks.append(
            Check(name, ok, f"{key} {_num(new)} vs {_num(old)} ({new - old:+.4g}, needs {needs})")
        )
    return checks


def _scope_name(slice_name: str | None) -> str:
    return "overall" if slice_name is None else f"slice:{slice_name}"


class _Validation:
    """One validation in progress: the data, the models and what was found."""

    def __init__(
        self,
        *,
        session: Any,
        facts: Any,
        spec: ValidationSpec,
        snapshot: Snapshot,
        frame: pd.DataFrame,
        model_type: str,
    ) -> None:
        self.session = session
        self.facts = facts
        self.spec = spec
        self.snapshot = snapshot
        self.frame = frame
        self.model_type = model_type
        self.target = spec.data.target
        self.slice_rows: dict[str, pd.DataFrame | str] = {}  # the rows, or why there are none
        self.scopes: dict[str, Scope] = {}

    def features(self, inputs: list[str] | None) -> list[str]:
        """What a model is given: its signature's inputs, else every column but the target."""
        return [c for c in (inputs or list(self.frame.columns)) if c != self.target]

    def evaluate(
        self, model: Any, features: list[str], rows: pd.DataFrame | str, prefix: str
    ) -> Scope:
        """Metrics of ``model`` (or why it is not there) on ``rows`` (or why there are none)."""
        if isinstance(rows, str):
            return Scope(0, error=rows)
        if isinstance(model, str):
            return Scope(len(rows), error=model)
        absent = [c for c in features if c not in rows.columns]
        if absent:
            return Scope(
                len(rows),
                error=f"the table lacks column(s) the model's signature needs: {', '.join(absent)}",
            )
        if rows.empty:
            return Scope(0, error="no rows to evaluate")
        columns = [*features, self.target]
        try:
            metrics = self.session.evaluate(
                model, rows[columns], target=self.target, model_type=self.model_type, prefix=prefix
            )
        except EvaluationFailed as exc:
            return Scope(len(rows), error=str(exc))
        return Scope(len(rows), candidate=metrics)

    def rows_of(self, name: str, where: str) -> pd.DataFrame | str:
        if name not in self.slice_rows:
            try:
                selected = self.snapshot.select(parse_where(where))
            except JobError as exc:
                self.slice_rows[name] = f"slice {name!r} (where {where}): {exc}"
            else:
                empty = f"slice {name!r}: where {where} selects no rows"
                self.slice_rows[name] = empty if selected.empty else selected
        return self.slice_rows[name]

    def checks(self) -> list[Check]:
        facts, spec = self.facts, self.spec
        found: list[Check] = []
        if facts.unreadable:
            found.append(Check("signature", False, f"cannot read the model: {facts.unreadable}"))
        elif facts.inputs is None:
            found.append(Check("signature", False, "the model has no signature"))
        else:
            found.append(Check("signature", True, f"{len(facts.inputs)} inputs"))
        found.append(
            Check("input_example", True, "logged with the model")
            if facts.has_input_example
            else Check("input_example", False, "the model has no input example")
        )
        model: Any
        try:
            model = self.session.load(facts.uri)
        except EvaluationFailed as exc:
            model = f"the model cannot be loaded: {exc}"
            found.append(Check("predicts", False, model))
        else:
            try:
                predicted = model.predict_example()
                found.append(
                    Check("predicts", True, f"{predicted} predictions on its input example")
                )
            except EvaluationFailed as exc:
                found.append(Check("predicts", False, str(exc)))
        missing = [
            t for t in spec.required_tags if not (facts.tags.get(t) or facts.run_tags.get(t))
        ]
        if missing:
            found.append(Check("required_tags", False, f"missing: {', '.join(missing)}"))
        else:
            shown = ", ".join(spec.required_tags) or "none required"
            found.append(Check("required_tags", True, shown))
        features = self.features(facts.inputs)
        overall = self.evaluate(model, features, self.frame, "")
        self.scopes["overall"] = overall
        for threshold in spec.thresholds:
            found.extend(_bound_checks("threshold", threshold, overall))
        for piece in spec.slices:
            rows = self.rows_of(piece.name, piece.where)
            scope = self.evaluate(model, features, rows, f"slice.{piece.name}.")
            self.scopes[_scope_name(piece.name)] = scope
            for threshold in piece.thresholds:
                found.extend(_bound_checks(f"slice:{piece.name}", threshold, scope))
        return found

    def compare(self, model_name: str, version: str) -> Comparison:
        champion = self.session.alias(model_name, "champion")
        if champion is None:
            return Comparison(WON, None, "no champion: the thresholds alone decide")
        if champion == version:
            return Comparison(WON, champion, f"version {version} is the champion")
        facts = self.session.version(model_name, champion)
        features = self.features(facts.inputs if facts is not None else None)
        try:
            model: Any = self.session.load(f"models:/{model_name}/{champion}")
        except EvaluationFailed as exc:
            model = f"the champion (version {champion}) cannot be loaded: {exc}"
        overall = self.scopes["overall"]
        theirs = self.evaluate(model, features, self.frame, "champion.")
        self.scopes["overall"] = Scope(
            overall.rows, overall.candidate, theirs.candidate, overall.error or theirs.error
        )
        checks: list[Check] = []
        for threshold in self.spec.thresholds:
            checks.extend(_change_checks("champion", threshold, self.scopes["overall"]))
        for piece in self.spec.slices:
            compared = [
                t
                for t in piece.thresholds
                if t.min_change_vs_champion is not None
                or t.min_relative_change_vs_champion is not None
            ]
            if not compared:
                continue
            mine = self.scopes[_scope_name(piece.name)]
            rows = self.rows_of(piece.name, piece.where)
            theirs = self.evaluate(model, features, rows, f"champion.slice.{piece.name}.")
            scope = Scope(mine.rows, mine.candidate, theirs.candidate, mine.error or theirs.error)
            self.scopes[_scope_name(piece.name)] = scope
            for threshold in compared:
                checks.extend(_change_checks(f"champion:slice:{piece.name}", threshold, scope))
        self.session.log_metrics(self.deltas())
        if not checks:
            detail = f"no threshold against the champion (version {champion}): the thresholds alone decide"
            return Comparison(WON, champion, detail)
        won = all(c.passed for c in checks)
        ordered = [c for c in checks if not c.passed] + [c for c in checks if c.passed]
        detail = "; ".join(c.detail for c in ordered)
        if len(detail) > DETAIL_MAX:
            detail = detail[: DETAIL_MAX - 3] + "..."
        return Comparison(WON if won else LOST, champion, detail, tuple(checks))

    def deltas(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, scope in self.scopes.items():
            if scope.champion is None:
                continue
            prefix = "delta." if name == "overall" else f"delta.{name.replace(':', '.', 1)}."
            for key, value in scope.candidate.items():
                if key in scope.champion:
                    out[prefix + key] = value - scope.champion[key]
        return out


# --- the report ----------------------------------------------------------------------------


def _report(
    result: ValidationResult,
    *,
    environment: str,
    deployment: str,
    data: Mapping[str, Any],
    scopes: Mapping[str, Scope],
    validated_at: str,
) -> dict[str, Any]:
    comparison = result.comparison
    return {
        "model": result.model,
        "version": result.version,
        "environment": environment,
        "modelDeployment": deployment,
        "status": result.status,
        "failedChecks": result.failed_checks,
        "checks": [{"name": c.name, "passed": c.passed, "detail": c.detail} for c in result.checks],
        "comparison": None
        if comparison is None
        else {
            "result": comparison.result,
            "champion": comparison.champion,
            "detail": comparison.detail,
            "checks": [
                {"name": c.name, "passed": c.passed, "detail": c.detail} for c in comparison.checks
            ],
        },
        "data": dict(data),
        "metrics": {
            name: {
                "rows": scope.rows,
                "candidate": scope.candidate,
                "champion": scope.champion,
                "error": scope.error,
            }
            for name, scope in scopes.items()
        },
        "runId": result.run_id,
        "validatedAt": validated_at,
    }


_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem;color:#1f2328;max-width:72rem}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #d0d7de;padding:.3rem .6rem;
text-align:left;vertical-align:top}th{background:#f6f8fa}td.num{text-align:right;
font-variant-numeric:tabular-nums}.pass{color:#1a7f37;font-weight:600}
.fail{color:#cf222e;font-weight:600}.badge{padding:.1rem .5rem;border-radius:.3rem;color:#fff}
.badge.pass{background:#1a7f37}.badge.fail{background:#cf222e}code{font-size:.9em}
"""


def _html(report: Mapping[str, Any]) -> str:
    e = html.escape

    def verdict(ok: bool, text: str) -> str:
        return f'<span class="{"pass" if ok else "fail"}">{e(text)}</span>'

    def checks_table(checks: list[dict[str, Any]]) -> str:
        rows = "".join(
            f"<tr><td><code>{e(c['name'])}</code></td><td>"
            f"{verdict(c['passed'], 'pass' if c['passed'] else 'FAIL')}</td>"
            f"<td>{e(c['detail'])}</td></tr>"
            for c in checks
        )
        return f"<table><tr><th>check</th><th>result</th><th>detail</th></tr>{rows}</table>"

    def number(value: float | None) -> str:
        return "" if value is None else e(f"{value:.6g}")

    ok = report["status"] == PASSED
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>Validation of {e(report['model'])} version {e(report['version'])}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>{e(report['model'])} version {e(report['version'])} "
        f'<span class="badge {"pass" if ok else "fail"}">{e(report["status"])}</span></h1>',
        f"<p>Environment <code>{e(report['environment'])}</code>, ModelDeployment "
        f"<code>{e(report['modelDeployment'])}</code>; data <code>{e(str(report['data']['uri']))}"
        f"</code> (table version {e(str(report['data']['tableVersion']))}, "
        f"{e(str(report['data']['rows']))} rows, target <code>{e(report['data']['target'])}"
        f"</code>, {e(report['data']['modelType'])}); validated {e(report['validatedAt'])}; "
        f"MLflow run <code>{e(report['runId'])}</code>.</p>",
        "<h2>Checks</h2>",
        checks_table(report["checks"]),
    ]
    comparison = report["comparison"]
    if comparison is not None:
        champion = comparison["champion"]
        against = f"version {champion}" if champion else "no champion"
        parts += [
            f"<h2>Comparison with the champion ({e(against)}): "
            f"{verdict(comparison['result'] == WON, comparison['result'])}</h2>",
            f"<p>{e(comparison['detail'])}</p>",
        ]
        if comparison["checks"]:
            parts.append(checks_table(comparison["checks"]))
    parts.append("<h2>Metrics</h2>")
    for name, scope in report["metrics"].items():
        parts.append(f"<h3>{e(name)} ({e(str(scope['rows']))} rows)</h3>")
        if scope["error"]:
            parts.append(f"<p>{verdict(False, scope['error'])}</p>")
        theirs = scope["champion"]
        header = "<tr><th>metric</th><th>candidate</th>"
        header += "<th>champion</th><th>delta</th></tr>" if theirs is not None else "</tr>"
        rows = []
        for key, value in sorted(scope["candidate"].items()):
            row = f"<tr><td><code>{e(key)}</code></td><td class='num'>{number(value)}</td>"
            if theirs is not None:
                old = theirs.get(key)
                delta = None if old is None else value - old
                row += f"<td class='num'>{number(old)}</td><td class='num'>{number(delta)}</td>"
            rows.append(row + "</tr>")
        if rows:
            parts.append(f"<table>{header}{''.join(rows)}</table>")
    parts.append("</body></html>")
    return "\n".join(parts)


# --- the job -------------------------------------------------------------------------------


def _from_report(text: str | None) -> tuple[list[Check], list[Check], str | None, int | None]:
    """Checks, comparison checks, model type and rows of a report logged earlier."""
    if text is None:
        return [], [], None, None
    try:
        report = json.loads(text)
        checks = [Check(c["name"], bool(c["passed"]), c["detail"]) for c in report["checks"]]
        comparison = report.get("comparison") or {}
        compared = [
            Check(c["name"], bool(c["passed"]), c["detail"]) for c in comparison.get("checks", [])
        ]
        return checks, compared, report["data"].get("modelType"), report["data"].get("rows")
    except (ValueError, KeyError, TypeError):
        return [], [], None, None


def _reuse(session: Any, run: Any, model: str, version: str) -> ValidationResult:
    """The result a finished validation run records."""
    tags: Mapping[str, str] = run.tags
    report_uri = tags.get(TAG_REPORT, "")
    json_uri = report_uri.rsplit("/", 1)[0] + "/report.json" if report_uri else ""
    checks, compared, model_type, rows = _from_report(
        session.read_text(json_uri) if json_uri else None
    )
    failed = [c for c in (tags.get(TAG_FAILED_CHECKS) or "").split(",") if c]
    if not checks:  # the report could not be read: the tags still say what failed
        checks = [Check(name, False, "") for name in failed]
    comparison = None
    if TAG_COMPARISON in tags:
        comparison = Comparison(
            tags[TAG_COMPARISON],
            tags.get(TAG_COMPARISON_CHAMPION) or None,
            tags.get(TAG_COMPARISON_DETAIL, ""),
            tuple(compared),
        )
    return ValidationResult(
        model=model,
        version=version,
        status=tags[VALIDATION_TAG],
        checks=tuple(checks),
        comparison=comparison,
        run_id=run.run_id,
        report_uri=report_uri,
        reused=True,
        model_type=model_type,
        rows=rows,
    )


def validate_version(
    *,
    tracking_uri: str,
    model: str,
    version: str,
    spec: ValidationSpec,
    environment: str,
    deployment: str,
    data_uri: str,
    artifact_root: Path | None = None,
    storage_options: dict[str, str] | None = None,
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
) -> ValidationResult:
    """Validate ``version`` of ``model`` (``<catalog>.<schema>.<model>``) against ``spec`` on
    the Delta table ``data_uri``, compare it with the champion, and tag the version.

    ``environment`` and ``deployment`` (the ModelDeployment's name) place the validation run.
    ``artifact_root``: where a new validation experiment keeps its artifacts on a store with no
    server (the embedded one). A version validated before gets that result again.

    Raises :class:`JobError` on unusable input (version, table or target column missing, no
    rows) and :class:`~controller.errors.RegistryUnavailable` when MLflow cannot be reached.
    """
    from controller.registry import MlflowTracking
    from controller.registry.evaluate import Session  # imports mlflow

    session = Session(tracking_uri)
    facts = session.version(model, version)
    if facts is None:
        raise JobError(f"version {version} of {model} does not exist")
    tracking = MlflowTracking(tracking_uri, artifact_root=artifact_root)
    experiment = tracking.experiment_id(validation_experiment(environment, deployment))
    identity = {RUN_TAG_MODEL: model, RUN_TAG_VERSION: version}
    runs = tracking.search_runs(experiment_id=experiment, tags=identity)
    for run in runs:
        if run.status == "FINISHED" and run.tags.get(VALIDATION_TAG) in (PASSED, FAILED):
            result = _reuse(session, run, model, version)
            tracking.set_version_tags(model=model, version=version, tags=result.tags())
            return result

    target = spec.data.target
    snapshot = Snapshot(data_uri, "validation data", storage_options)
    if target not in snapshot.columns:
        raise JobError(
            f"validation data table {data_uri} has no target column {target!r} (columns: "
            f"{', '.join(snapshot.columns)})"
        )
    frame = snapshot.frame()
    if frame.empty:
        raise JobError(f"validation data table {data_uri} has no rows")
    model_type = spec.model_type or infer_model_type(frame[target])

    # The run that holds this version's result: the one a crash left unfinished, else a new one.
    run = (
        runs[0]
        if runs
        else tracking.create_run(
            experiment_id=experiment,
            tags={**identity, TAG_ENVIRONMENT: environment, TAG_DEPLOYMENT: deployment},
            name=f"validate {model} v{version}",
        )
    )
    job = _Validation(
        session=session,
        facts=facts,
        spec=spec,
        snapshot=snapshot,
        frame=frame,
        model_type=model_type,
    )
    with session.active(run.run_id):
        checks = job.checks()
        status = PASSED if all(c.passed for c in checks) else FAILED
        comparison = job.compare(model, version) if status == PASSED else None
        report_uri = session.artifact_uri(f"{REPORT_DIR}/report.html")
        result = ValidationResult(
            model=model,
            version=version,
            status=status,
            checks=tuple(checks),
            comparison=comparison,
            run_id=run.run_id,
            report_uri=report_uri,
            model_type=model_type,
            rows=len(frame),
        )
        report = _report(
            result,
            environment=environment,
            deployment=deployment,
            data={
                "uri": redact(data_uri),
                "tableVersion": snapshot.version,
                "rows": len(frame),
                "target": target,
                "modelType": model_type,
            },
            scopes=job.scopes,
            validated_at=now().astimezone(dt.UTC).isoformat(timespec="seconds"),
        )
        session.log_text(json.dumps(report, indent=2, sort_keys=False), f"{REPORT_DIR}/report.json")
        session.log_text(_html(report), f"{REPORT_DIR}/report.html")
        # The verdict goes on the run last: a run without it is unfinished, whatever its status.
        tracking.set_run_tags(run.run_id, result.tags())
    tracking.set_version_tags(model=model, version=version, tags=result.tags())
    return result
