"""Validation's pure parts: the comparison rule (MLflow's, and the edges it cannot express), the
model type inferred from a target, metric names, the Job's arguments and the record in tags."""

from __future__ import annotations

import pandas as pd
import pytest

from controller.api.documents import ValidationSpec
from controller.jobs.validation import infer_model_type, metric_key
from controller.pipeline.validation import (
    ValidationRecord,
    read_record,
    validation_args,
)


@pytest.mark.parametrize(
    ("metric", "candidate", "champion", "change", "relative", "wins"),
    [
        # minChangeVsChampion > 0: MLflow's min_absolute_change, >= (higher is better)
        ("roc_auc", 0.91, 0.90, 0.01, None, True),
        ("roc_auc", 0.905, 0.90, 0.01, None, False),
        # lower is better: the improvement is champion - candidate
        ("log_loss", 0.20, 0.25, 0.05, None, True),
        ("log_loss", 0.24, 0.25, 0.05, None, False),
        ("mean_absolute_error", 41.0, 40.0, 0.5, None, False),
        # 0: "no worse" (MLflow's min_relative_change=0.0): equal is enough
        ("accuracy_score", 0.90, 0.90, 0.0, None, True),
        ("accuracy_score", 0.8999, 0.90, 0.0, None, False),
        ("log_loss", 0.25, 0.25, 0.0, None, True),
        ("log_loss", 0.26, 0.25, 0.0, None, False),
        # ...also against a champion at exactly 0, where MLflow would demand a strict gain
        ("max_error", 0.0, 0.0, 0.0, None, True),
        ("max_error", 0.1, 0.0, 0.0, None, False),
        ("recall_score", 0.0, 0.0, 0.0, None, True),
        ("recall_score", 0.0, 0.0, None, 0.0, True),
        # a negative change is a tolerance: "may be that much worse"
        ("roc_auc", 0.895, 0.90, -0.01, None, True),
        ("roc_auc", 0.885, 0.90, -0.01, None, False),
        ("log_loss", 0.255, 0.25, -0.01, None, True),
        # relative: a fraction of the champion's magnitude
        ("roc_auc", 0.909, 0.90, None, 0.01, True),
        ("roc_auc", 0.908, 0.90, None, 0.01, False),
        ("r2_score", -0.09, -0.10, None, 0.05, True),  # a negative baseline keeps its direction
        ("root_mean_squared_error", 95.0, 100.0, None, 0.05, True),
        ("root_mean_squared_error", 96.0, 100.0, None, 0.05, False),
        ("accuracy_score", 0.9, 0.9, None, 0.0, True),
    ],
)
def test_the_comparison_rule(
    metric: str,
    candidate: float,
    champion: float,
    change: float | None,
    relative: float | None,
    wins: bool,
) -> None:
    from controller.registry.evaluate import decide_change  # imports mlflow

    decided = decide_change(
        metric=metric,
        candidate=candidate,
        champion=champion,
        min_change=change,
        min_relative_change=relative,
    )
    assert decided is wins


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (pd.Series([0, 1, 1, 0]), "classifier"),
        (pd.Series([True, False, True]), "classifier"),
        (pd.Series(["fraud", "ok", "ok"]), "classifier"),
        (pd.Series([0.0, 1.0, None, 1.0]), "classifier"),  # labels stored as doubles
        (pd.Series(range(5)), "classifier"),
        (pd.Series(range(100)), "regressor"),  # many integers: a count, not a class
        (pd.Series([151.0, 75.0, 141.0, 206.5]), "regressor"),
        (pd.Series([0.5, 1.5, 0.5]), "regressor"),
    ],
)
def test_the_model_type_is_inferred_from_the_target(target: pd.Series, expected: str) -> None:
    assert infer_model_type(target) == expected


def test_metric_names_people_write_find_mlflows_keys() -> None:
    computed = {"recall_score": 0.9, "roc_auc": 0.95, "root_mean_squared_error": 3.0, "f1_score": 1}
    assert metric_key("recall", computed) == "recall_score"
    assert metric_key("recall_score", computed) == "recall_score"
    assert metric_key("roc_auc", computed) == "roc_auc"
    assert metric_key("rmse", computed) == "root_mean_squared_error"
    assert metric_key("f1", computed) == "f1_score"
    assert metric_key("precision", computed) is None


def test_the_jobs_arguments_carry_the_validation_section_whole() -> None:
    spec = ValidationSpec.model_validate(
        {
            "data": {"uri": "prod/fraud/holdout", "target": "label"},
            "modelType": "classifier",
            "thresholds": [{"metric": "roc_auc", "min": 0.8, "minRelativeChangeVsChampion": 0}],
            "slices": [
                {
                    "name": "big",
                    "where": "amount > 1000",
                    "thresholds": [{"metric": "recall", "min": 0.7}],
                }
            ],
            "requiredTags": ["owner"],
        }
    )
    args = validation_args(
        name="fraud-detector", model="prod.fraud.fd", version="7", environment="prod", spec=spec
    )
    assert args[:9] == [
        "validate-model", "fraud-detector", "--version", "7", "--model", "prod.fraud.fd",
        "--environment", "prod", "--spec-json",
    ]  # fmt: skip
    assert ValidationSpec.model_validate_json(args[9]) == spec
    assert '"minRelativeChangeVsChampion":0.0' in args[9]  # camelCase, as in Git


def test_the_record_reads_back_from_version_tags() -> None:
    assert read_record({}) is None
    assert read_record({"model_validation_status": "PENDING"}) == ValidationRecord("PENDING")
    record = read_record(
        {
            "model_validation_status": "FAILED",
            "mlgitops.validation.failed_checks": "required_tags,slice:big:recall:min",
            "mlgitops.validation.report": "file:///a/report.html",
            "mlgitops.validation.run_id": "abc",
        }
    )
    assert record == ValidationRecord(
        "FAILED", ("required_tags", "slice:big:recall:min"), "file:///a/report.html", "abc"
    )
    won = read_record(
        {
            "model_validation_status": "PASSED",
            "mlgitops.validation.failed_checks": "",
            "mlgitops.comparison": "WON",
            "mlgitops.comparison.champion": "",
            "mlgitops.comparison.detail": "no champion: the thresholds alone decide",
        }
    )
    assert won is not None
    assert (won.failed_checks, won.comparison, won.champion) == ((), "WON", None)


def test_the_html_report_escapes_what_it_shows() -> None:
    from controller.jobs.validation import _html

    report = {
        "model": "prod.fraud.fd",
        "version": "7",
        "environment": "prod",
        "modelDeployment": "fd",
        "status": "FAILED",
        "checks": [{"name": "slice:x:recall:min", "passed": False, "detail": "<script>x</script>"}],
        "comparison": None,
        "data": {"uri": "prod/f/h", "tableVersion": 0, "rows": 3, "target": "y", "modelType": "c"},
        "metrics": {
            "overall": {"rows": 3, "candidate": {"a<b": 1.0}, "champion": None, "error": None}
        },
        "runId": "r",
        "validatedAt": "2026-11-30T00:00:00+00:00",
    }
    page = _html(report)
    assert "<script>" not in page
    assert "&lt;script&gt;x&lt;/script&gt;" in page
    assert "a&lt;b" in page
