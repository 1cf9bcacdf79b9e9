"""The record a validation leaves, shared by the job that writes it and the controller that reads it.

A validation's result lives in MLflow, never in the controller's memory or state directory: one
validation run per model version (experiment ``mlgitops/<env>/<name>/validation``, found by the
tags ``mlgitops.validation.model`` and ``.version``), and the same verdict as tags on the version,
where the planner and ``mlgitops status`` read it. This module names those tags, reads them
back, and renders the arguments of the job that writes them, so the operator's Job, the local
runtime's process and a person at a terminal run the same command.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from controller.api.documents import ValidationSpec
from controller.planning.types import VALIDATION_TAG

__all__ = [
    "FAILED",
    "LOST",
    "PASSED",
    "PENDING",
    "RUN_TAG_MODEL",
    "RUN_TAG_VERSION",
    "TAG_COMPARISON",
    "TAG_COMPARISON_CHAMPION",
    "TAG_COMPARISON_DETAIL",
    "TAG_FAILED_CHECKS",
    "TAG_REPORT",
    "TAG_RUN",
    "VALIDATION_TAG",
    "WON",
    "ValidationRecord",
    "read_record",
    "validation_args",
    "validation_experiment",
]

PENDING, PASSED, FAILED = "PENDING", "PASSED", "FAILED"
WON, LOST = "WON", "LOST"

# On the version (and, with the same values, on its validation run).
TAG_FAILED_CHECKS = "mlgitops.validation.failed_checks"  # comma list; empty when PASSED
TAG_REPORT = "mlgitops.validation.report"  # artifact URI of the HTML report
TAG_RUN = "mlgitops.validation.run_id"
TAG_COMPARISON = "mlgitops.comparison"  # WON | LOST; absent on a FAILED version
TAG_COMPARISON_CHAMPION = "mlgitops.comparison.champion"  # the champion compared with; "" if none
TAG_COMPARISON_DETAIL = "mlgitops.comparison.detail"  # the deciding numbers, one line

# On the validation run: which version it validates.
RUN_TAG_MODEL = "mlgitops.validation.model"
RUN_TAG_VERSION = "mlgitops.validation.version"

RESULT_TAGS = (
    VALIDATION_TAG,
    TAG_FAILED_CHECKS,
    TAG_REPORT,
    TAG_RUN,
    TAG_COMPARISON,
    TAG_COMPARISON_CHAMPION,
    TAG_COMPARISON_DETAIL,
)


def validation_experiment(environment: str, deployment: str) -> str:
    """Beside the training experiment ``mlgitops/<env>/<name>``."""
    return f"mlgitops/{environment}/{deployment}/validation"


@dataclass(frozen=True)
class ValidationRecord:
    """A version's validation as its tags tell it."""

    status: str  # PENDING | PASSED | FAILED
    failed_checks: tuple[str, ...] = ()
    report: str | None = None
    run_id: str | None = None
    comparison: str | None = None  # WON | LOST; None: not compared (FAILED, or not yet)
    champion: str | None = None
    detail: str | None = None


def read_record(tags: Mapping[str, str]) -> ValidationRecord | None:
    """The validation recorded in a version's ``tags``; None when it has no status tag."""
    status = tags.get(VALIDATION_TAG)
    if status is None:
        return None
    failed = tags.get(TAG_FAILED_CHECKS) or ""
    return ValidationRecord(
        status=status,
        failed_checks=tuple(c for c in failed.split(",") if c),
        report=tags.get(TAG_REPORT) or None,
        run_id=tags.get(TAG_RUN) or None,
        comparison=tags.get(TAG_COMPARISON) or None,
        champion=tags.get(TAG_COMPARISON_CHAMPION) or None,
        detail=tags.get(TAG_COMPARISON_DETAIL) or None,
    )


def validation_args(
    *, name: str, model: str, version: str, environment: str, spec: ValidationSpec
) -> list[str]:
    """The ``mlgitops`` arguments that validate ``version`` of ``model`` (the registered name,
    ``<catalog>.<schema>.<model>``) for the ModelDeployment ``name``, with no config repository
    at hand (a Kubernetes Job): the validation section travels as JSON. The tracking URI and the
    data root come from ``MLFLOW_TRACKING_URI`` and ``MLGITOPS_DATA_ROOT``, as for every job."""
    return [
        "validate-model",
        name,
        "--version",
        version,
        "--model",
        model,
        "--environment",
        environment,
        "--spec-json",
        spec.model_dump_json(by_alias=True, exclude_none=True),
    ]
