"""`mlgitops validate-model`: a new version validated on a real Delta table and compared with the
real champion, with the very arguments the controller's Job carries (``validation_args``).

Real scikit-learn models on scikit-learn's breast-cancer data (the seeded versions 1..3 of
prod.fraud.fraud_detector: logistic regressions with C = 0.01, 0.1, 1.0, each better than the
last), real ``mlflow.models.evaluate`` on a real MLflow store, slices selected by DataFusion.
On this data version 1 has precision 0.52 on the rows with mean_radius > 15, version 2 0.80 and
version 3 0.92; accuracy overall is 0.954, 0.981 and 0.988.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from deltalake import write_deltalake
from typer.testing import CliRunner

from controller.api.documents import ValidationSpec
from controller.cli import app
from controller.pipeline.validation import validation_args, validation_experiment
from examples.models import PIP_REQUIREMENTS, dataset
from tests.conftest import Ran
from tests.helpers import ConfigRepo, RegistryView, wait_for

FRAUD = "prod.fraud.fraud_detector"
HOLDOUT = "prod/fraud/holdout"
SPEC: dict[str, Any] = {
    "data": {"uri": HOLDOUT, "target": "label"},
    "thresholds": [{"metric": "roc_auc", "min": 0.95}, {"metric": "accuracy", "min": 0.9}],
    "slices": [
        {
            "name": "large",
            "where": "mean_radius > 15",
            "thresholds": [{"metric": "precision", "min": 0.75}],
        }
    ],
}
COMPARED: dict[str, Any] = {
    **SPEC,
    "thresholds": [*SPEC["thresholds"], {"metric": "accuracy", "minChangeVsChampion": 0.0}],
}


@pytest.fixture
def lake(tmp_path: Path) -> Path:
    """The data root, holding the held-out table: the features, the label and an amount."""
    root = tmp_path / "lake"
    features, label = dataset("classifier")
    table = features.assign(label=label, amount=features["worst_area"])
    write_deltalake(str(root / HOLDOUT), table)
    return root


@pytest.fixture
def validate(lake: Path, registry: RegistryView, state_dir: Path) -> Callable[..., Ran]:
    """``validate(version, spec)``: run the Job's command for ``version`` of the fraud model."""

    def run(version: str, spec: dict[str, Any] = SPEC, *extra: str) -> Ran:
        args = validation_args(
            name="fraud-detector",
            model=FRAUD,
            version=version,
            environment="prod",
            spec=ValidationSpec.model_validate(spec),
        )
        argv = [*args, *extra, "--data-root", str(lake), "--tracking-uri", registry.uri]
        argv += ["--state-dir", str(state_dir)]
        result = CliRunner().invoke(app, argv, catch_exceptions=False)
        return Ran(result.exit_code, result.stdout, result.stderr)

    return run


def runs(registry: RegistryView, deployment: str = "fraud-detector") -> list[Any]:
    experiment = registry.client.get_experiment_by_name(validation_experiment("prod", deployment))
    if experiment is None:
        return []
    return list(registry.client.search_runs([experiment.experiment_id]))


def register(registry: RegistryView, estimator: Any, tmp_path: Path) -> str:
    """A new version of the fraud model: ``estimator`` fitted on the data and logged as training
    logs it (signature, input example), tagged PENDING."""
    import mlflow
    from mlflow.models import infer_signature

    x, y = dataset("classifier")
    mlflow.set_tracking_uri(registry.uri)
    mlflow.set_registry_uri(registry.uri)
    experiment = registry.client.get_experiment_by_name("training") or None
    experiment_id = (
        experiment.experiment_id
        if experiment
        else registry.client.create_experiment(
            "training", artifact_location=(tmp_path / "training").as_uri()
        )
    )
    fitted = estimator.fit(x, y)
    example = x.head(5)
    with warnings.catch_warnings(), mlflow.start_run(experiment_id=experiment_id):
        warnings.simplefilter("ignore")
        info = mlflow.sklearn.log_model(
            fitted,
            name="model",
            signature=infer_signature(example, fitted.predict(example)),
            input_example=example,
            pip_requirements=PIP_REQUIREMENTS,
            registered_model_name=FRAUD,
        )
    version = str(info.registered_model_version)
    registry.client.set_model_version_tag(FRAUD, version, "model_validation_status", "PENDING")
    return version


def test_a_good_model_passes_and_with_no_champion_wins(
    validate: Callable[..., Ran], registry: RegistryView
) -> None:
    ran = validate("3")
    assert ran.code == 0, ran.stderr
    lines = ran.stdout.splitlines()
    assert lines[0] == f"{FRAUD} version 3: 569 rows of {HOLDOUT}, classifier"
    assert lines[1:8] == [
        "  pass  signature: 30 inputs",
        "  pass  input_example: logged with the model",
        "  pass  predicts: 3 predictions on its input example",
        "  pass  required_tags: none required",
        "  pass  threshold:roc_auc:min: roc_auc 0.997437 >= 0.95",
        "  pass  threshold:accuracy:min: accuracy_score 0.987698 >= 0.9",
        "  pass  slice:large:precision:min: precision_score 0.923077 >= 0.75",
    ]
    assert "PASSED" in lines
    assert "comparison with the champion: WON (no champion: the thresholds alone decide)" in lines

    tags = registry.tags(FRAUD, "3")
    [run] = runs(registry)
    assert tags["model_validation_status"] == "PASSED"
    assert tags["mlgitops.validation.failed_checks"] == ""
    assert tags["mlgitops.validation.run_id"] == run.info.run_id
    assert tags["mlgitops.comparison"] == "WON"
    assert tags["mlgitops.comparison.champion"] == ""
    assert tags["mlgitops.comparison.detail"] == "no champion: the thresholds alone decide"
    # The run names the version; it holds the metrics overall and per slice, and the reports.
    assert run.info.status == "FINISHED"
    assert run.data.tags["mlgitops.validation.model"] == FRAUD
    assert run.data.tags["mlgitops.validation.version"] == "3"
    assert run.data.tags["model_validation_status"] == "PASSED"
    assert run.data.metrics["roc_auc"] == pytest.approx(0.99744, abs=1e-4)
    assert run.data.metrics["slice.large.precision_score"] == pytest.approx(0.923, abs=1e-3)
    assert run.data.metrics["slice.large.example_count"] == 173
    report = tags["mlgitops.validation.report"]
    assert report == f"{run.info.artifact_uri}/validation/report.html"
    html = Path(report.removeprefix("file://")).read_text()
    assert '<span class="badge pass">PASSED</span>' in html
    assert "slice:large:precision:min" in html
    assert "http" not in html.replace("http-equiv", "")  # self-contained: nothing fetched
    assert "report.json" in {
        a.path.rsplit("/", 1)[-1]
        for a in registry.client.list_artifacts(run.info.run_id, "validation")
    }


def test_a_worse_model_fails_its_thresholds_and_is_not_compared(
    validate: Callable[..., Ran], registry: RegistryView, tmp_path: Path
) -> None:
    from sklearn.dummy import DummyClassifier

    registry.client.set_registered_model_alias(FRAUD, "champion", "2")
    version = register(registry, DummyClassifier(strategy="prior"), tmp_path)
    ran = validate(version, COMPARED)
    assert ran.code == 0, ran.stderr  # a verdict, not an error
    assert "  FAIL  threshold:roc_auc:min: roc_auc 0.5 < 0.95" in ran.stdout
    assert "  FAIL  threshold:accuracy:min: accuracy_score 0.627417 < 0.9" in ran.stdout
    failed = "threshold:roc_auc:min,threshold:accuracy:min,slice:large:precision:min"
    assert f"FAILED: {failed.replace(',', ', ')}" in ran.stdout
    assert "comparison" not in ran.stdout

    tags = registry.tags(FRAUD, version)
    assert tags["model_validation_status"] == "FAILED"
    assert tags["mlgitops.validation.failed_checks"] == failed
    assert "mlgitops.comparison" not in tags  # a FAILED version is never compared
    [run] = runs(registry)
    assert not any(k.startswith("champion.") for k in run.data.metrics)


def test_a_failing_slice_fails_the_version(
    validate: Callable[..., Ran], registry: RegistryView
) -> None:
    ran = validate("1")
    assert ran.code == 0, ran.stderr
    assert "  pass  threshold:accuracy:min: accuracy_score 0.954306 >= 0.9" in ran.stdout
    assert "  FAIL  slice:large:precision:min: precision_score 0.521739 < 0.75" in ran.stdout
    assert "FAILED: slice:large:precision:min" in ran.stdout
    assert registry.tags(FRAUD, "1")["mlgitops.validation.failed_checks"] == (
        "slice:large:precision:min"
    )


def test_a_slice_naming_a_missing_column_or_selecting_nothing_fails_its_checks(
    validate: Callable[..., Ran], registry: RegistryView
) -> None:
    spec = {
        **SPEC,
        "slices": [
            {
                "name": "typo",
                "where": "mean_raduis > 15",
                "thresholds": [{"metric": "recall", "min": 0.5}],
            },
            {
                "name": "none",
                "where": "amount < 0",
                "thresholds": [{"metric": "recall", "min": 0.5}],
            },
            {
                "name": "types",
                "where": "amount = 'x'",
                "thresholds": [{"metric": "recall", "min": 0.5}],
            },
        ],
    }
    ran = validate("3", spec)
    assert ran.code == 0, ran.stderr
    assert (
        "  FAIL  slice:typo:recall:min: slice 'typo' (where mean_raduis > 15): validation data "
        in (ran.stdout)
    )
    assert "has no column 'mean_raduis'" in ran.stdout
    assert (
        "  FAIL  slice:none:recall:min: slice 'none': where amount < 0 selects no rows"
        in ran.stdout
    )
    assert "  FAIL  slice:types:recall:min: slice 'types' (where amount = 'x'): " in ran.stdout
    assert registry.tags(FRAUD, "3")["mlgitops.validation.failed_checks"] == (
        "slice:typo:recall:min,slice:none:recall:min,slice:types:recall:min"
    )


def test_a_missing_required_tag_fails_and_a_tag_on_the_version_or_its_run_counts(
    validate: Callable[..., Ran], registry: RegistryView
) -> None:
    spec = {**SPEC, "slices": [], "requiredTags": ["owner", "data_version"]}
    registry.client.set_model_version_tag(FRAUD, "2", "owner", "fraud-team")
    ran = validate("2", spec)
    assert "  FAIL  required_tags: missing: data_version" in ran.stdout
    assert registry.tags(FRAUD, "2")["mlgitops.validation.failed_checks"] == "required_tags"

    run_id = registry.client.get_model_version(FRAUD, "3").run_id
    registry.client.set_tag(run_id, "data_version", "2026-11")  # on the version's run
    registry.client.set_model_version_tag(FRAUD, "3", "owner", "fraud-team")
    ran = validate("3", spec)
    assert "  pass  required_tags: owner, data_version" in ran.stdout
    assert registry.tags(FRAUD, "3")["model_validation_status"] == "PASSED"


def test_better_than_the_champion_wins_and_worse_loses(
    validate: Callable[..., Ran], registry: RegistryView
) -> None:
    registry.client.set_registered_model_alias(FRAUD, "champion", "2")
    won = validate("3", COMPARED)
    assert won.code == 0, won.stderr
    assert (
        "  pass  champion:accuracy:min_change: accuracy_score 0.987698 vs 0.980668 (+0.00703, needs +0)"
        in (won.stdout)
    )
    tags = registry.tags(FRAUD, "3")
    assert (tags["mlgitops.comparison"], tags["mlgitops.comparison.champion"]) == ("WON", "2")
    assert tags["mlgitops.comparison.detail"] == (
        "accuracy_score 0.987698 vs 0.980668 (+0.00703, needs +0)"
    )
    [run] = runs(registry)
    assert run.data.metrics["champion.accuracy_score"] == pytest.approx(0.98067, abs=1e-4)
    assert run.data.metrics["delta.accuracy_score"] == pytest.approx(0.00703, abs=1e-4)

    registry.client.set_registered_model_alias(FRAUD, "champion", "3")
    lost = validate("2", COMPARED)
    assert lost.code == 0, lost.stderr
    assert "PASSED" in lost.stdout.splitlines()  # valid, just not better
    assert (
        "comparison with the champion version 3: LOST (accuracy_score 0.980668 vs 0.987698 (-0.00703, needs +0))"
        in (lost.stdout)
    )
    tags = registry.tags(FRAUD, "2")
    assert (tags["model_validation_status"], tags["mlgitops.comparison"]) == ("PASSED", "LOST")
    assert tags["mlgitops.comparison.champion"] == "3"


def test_relative_change_and_a_slice_compared_with_the_champion(
    validate: Callable[..., Ran], registry: RegistryView
) -> None:
    registry.client.set_registered_model_alias(FRAUD, "champion", "1")
    spec = {
        **SPEC,
        "thresholds": [{"metric": "roc_auc", "minRelativeChangeVsChampion": 0.002}],
        "slices": [
            {
                "name": "large",
                "where": "mean_radius > 15",
                "thresholds": [{"metric": "precision", "min": 0.5, "minChangeVsChampion": 0.5}],
            }
        ],
    }
    ran = validate("3", spec)
    assert ran.code == 0, ran.stderr
    assert (
        "  pass  champion:roc_auc:min_relative_change: roc_auc 0.997437 vs 0.994147 (+0.00329, "
        "needs +0.2%)"
    ) in ran.stdout
    assert (
        "  FAIL  champion:slice:large:precision:min_change: precision_score 0.923077 vs 0.521739 (+0.4013, needs +0.5)"
        in (ran.stdout)
    )
    tags = registry.tags(FRAUD, "3")
    assert tags["mlgitops.comparison"] == "LOST"
    assert tags["mlgitops.comparison.detail"].startswith("precision_score 0.923077 vs 0.521739")
    [run] = runs(registry)
    assert run.data.metrics["champion.slice.large.precision_score"] == pytest.approx(
        0.5217, abs=1e-3
    )
    assert run.data.metrics["delta.slice.large.precision_score"] == pytest.approx(0.4013, abs=1e-3)


def test_a_finished_result_is_reused_and_an_unfinished_run_resumed(
    validate: Callable[..., Ran], registry: RegistryView
) -> None:
    from controller.pipeline.training import TAG_DEPLOYMENT, TAG_ENVIRONMENT
    from controller.registry import MlflowTracking

    # A crash right after the run was created: the run exists, RUNNING, with no verdict.
    tracking = MlflowTracking(registry.uri)
    experiment = tracking.experiment_id(validation_experiment("prod", "fraud-detector"))
    crashed = tracking.create_run(
        experiment_id=experiment,
        tags={
            "mlgitops.validation.model": FRAUD,
            "mlgitops.validation.version": "3",
            TAG_ENVIRONMENT: "prod",
            TAG_DEPLOYMENT: "fraud-detector",
        },
    )
    first = validate("3")
    assert first.code == 0, first.stderr
    [run] = runs(registry)
    assert run.info.run_id == crashed.run_id  # resumed, not duplicated
    assert run.info.status == "FINISHED"
    tags = registry.tags(FRAUD, "3")
    assert tags["mlgitops.validation.run_id"] == crashed.run_id

    # Run again (a retried Job, a restarted controller): the result is reused, tags re-applied.
    registry.client.delete_model_version_tag(FRAUD, "3", "mlgitops.comparison")
    registry.client.set_model_version_tag(FRAUD, "3", "model_validation_status", "PENDING")
    again = validate("3")
    assert again.code == 0, again.stderr
    assert again.stdout.startswith(f"{FRAUD} version 3: validated before (run {crashed.run_id})")
    assert "  pass  slice:large:precision:min: precision_score 0.923077 >= 0.75" in again.stdout
    assert [r.info.run_id for r in runs(registry)] == [crashed.run_id]
    assert registry.tags(FRAUD, "3") == tags
    assert registry.client.get_run(crashed.run_id).data.metrics == run.data.metrics


def test_kill_9_during_validation_then_a_rerun_leaves_one_run_and_one_result(
    lake: Path, registry: RegistryView, state_dir: Path
) -> None:
    spec = {**SPEC, "slices": [dict(SPEC["slices"][0], name=f"s{i}") for i in range(4)]}
    args = validation_args(
        name="fraud-detector",
        model=FRAUD,
        version="3",
        environment="prod",
        spec=ValidationSpec.model_validate(spec),
    )
    argv = [*args, "--data-root", str(lake), "--tracking-uri", registry.uri]
    argv += ["--state-dir", str(state_dir)]
    mlgitops = Path(sys.executable).with_name("mlgitops")
    proc = subprocess.Popen(
        [str(mlgitops), *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"},
        start_new_session=True,
    )
    try:
        # Killed once it has logged a metric: the run exists and is part way through.
        started = wait_for(
            "the validation run to log metrics",
            lambda: [r for r in runs(registry) if r.data.metrics],
            timeout=120,
            interval=0.05,
        )
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    [killed] = started
    assert killed.info.status == "RUNNING"
    assert "model_validation_status" not in killed.data.tags
    assert registry.tags(FRAUD, "3")["model_validation_status"] == "PASSED"  # the seeded tag

    ran = CliRunner().invoke(app, argv, catch_exceptions=False)
    assert ran.exit_code == 0, ran.stderr
    [run] = runs(registry)
    assert run.info.run_id == killed.info.run_id
    assert run.info.status == "FINISHED"
    assert registry.tags(FRAUD, "3")["mlgitops.validation.run_id"] == run.info.run_id
    assert registry.tags(FRAUD, "3")["mlgitops.validation.failed_checks"] == ""


def test_from_the_config_repository_a_regressor_is_inferred_and_validated(
    cli: Callable[..., Ran], repo: ConfigRepo, registry: RegistryView, lake: Path
) -> None:
    features, target = dataset("regressor")
    write_deltalake(str(lake / "prod/customers/churn_holdout"), features.assign(churned=target))
    ran = cli(
        "validate-model", "churn-predictor", "--env", "prod", "--version", "2",
        "--data-root", str(lake), "--tracking-uri", registry.uri,
    )  # fmt: skip
    assert ran.code == 0, ran.stderr
    assert ran.stdout.splitlines()[0] == (
        "prod.customers.churn_predictor version 2: 442 rows of prod/customers/churn_holdout, "
        "regressor"
    )
    assert "  pass  threshold:r2_score:min: r2_score" in ran.stdout
    assert "  pass  threshold:mean_absolute_error:max: mean_absolute_error" in ran.stdout
    [run] = runs(registry, "churn-predictor")
    assert run.data.tags["mlgitops.environment"] == "prod"
    assert registry.tags("prod.customers.churn_predictor", "2")["model_validation_status"] == (
        "PASSED"
    )


def test_unusable_input_is_one_line_and_exit_2(
    validate: Callable[..., Ran],
    cli: Callable[..., Ran],
    repo: ConfigRepo,
    registry: RegistryView,
    lake: Path,
) -> None:
    missing = validate("9")
    assert (missing.code, missing.stderr) == (
        2,
        f"error: validate-model: version 9 of {FRAUD} does not exist\n",
    )
    no_target = validate("3", {**SPEC, "data": {"uri": HOLDOUT, "target": "is_fraud"}})
    assert no_target.code == 2
    assert no_target.stderr.startswith(
        f"error: validate-model: validation data table {lake / HOLDOUT} has no target column "
        "'is_fraud' (columns: mean_radius, "
    )
    no_table = validate("3", {**SPEC, "data": {"uri": "prod/fraud/nothing", "target": "label"}})
    assert (no_table.code, no_table.stderr) == (
        2,
        f"error: validate-model: validation data table {lake / 'prod/fraud/nothing'} does not "
        "exist (no Delta log there)\n",
    )
    # What a hand-edited Job would carry: the where is parsed before anything runs.
    spec_json = json.dumps(
        {
            "data": {"uri": HOLDOUT, "target": "label"},
            "slices": [
                {"name": "s", "where": "x > 1) OR (1=1", "thresholds": [{"metric": "m", "min": 1}]}
            ],
        }
    )
    argv = ["validate-model", "fraud-detector", "--version", "3", "--environment", "prod"]
    argv += ["--model", FRAUD, "--spec-json", spec_json, "--tracking-uri", registry.uri]
    bad = CliRunner().invoke(app, argv)
    assert (bad.exit_code, bad.stderr) == (
        2,
        "error: --spec-json: slices.0.where: unbalanced ')' (at character 6)\n",
    )
    no_model = CliRunner().invoke(
        app, argv[: argv.index("--model")] + argv[argv.index("--spec-json") :]
    )
    assert (no_model.exit_code, no_model.stderr) == (
        2,
        "error: --model: required with --spec-json (<catalog>.<schema>.<model>)\n",
    )
    assert runs(registry) == []  # nothing was started for any of them

    churn = "environments/prod/churn-predictor.yaml"
    text = repo.read(churn)
    start, end = text.index("  validation:"), text.index("  serving:")
    repo.write(churn, text[:start] + text[end:])
    repo.commit("churn: no validation")
    none = cli("validate-model", "churn-predictor", "--env", "prod", "--version", "2")
    assert (none.code, none.stderr) == (
        2,
        f"error: {churn}: spec.validation: 'churn-predictor' has no validation section\n",
    )
    assert registry.tags("prod.customers.churn_predictor", "2")["model_validation_status"] == (
        "PASSED"
    )  # the seeded tag, untouched
