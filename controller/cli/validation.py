"""``validate-model``: validate a model version and compare it with the champion.

The controller runs it after each training run that produced a version (a Kubernetes Job, or a
process on one machine), and a person can run it by hand. By hand it reads the ModelDeployment
from the config repository, as ``mlgitops train`` does; a Job has no config repository in its
pod, so the controller passes the validation section as JSON instead (``--spec-json``, with
``--model``). Either way the same job runs (``controller.jobs.validation``) and leaves one result
per version in MLflow.
"""

from __future__ import annotations

import re
from typing import Annotated

import typer
from pydantic import ValidationError

from controller.cli.options import (
    DataRootOpt,
    RepoOpt,
    StateOpt,
    TrackingUriOpt,
    deployment_named,
    desired_for,
    error_lines,
    fail,
    out,
    resolve_tracking_uri,
    state_for,
)
from controller.errors import JobError, MlgitopsError
from controller.redact import redact

_VERSION = re.compile(r"^[1-9][0-9]*$")
_MODEL = re.compile(r"^[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+$")


def validate_model(
    name: Annotated[str, typer.Argument(help="The ModelDeployment (metadata.name).")],
    version: Annotated[
        str,
        typer.Option(
            "--version", help="The model version to validate (a number).", show_default=False
        ),
    ],
    env: Annotated[
        str | None,
        typer.Option(
            "--env",
            "-e",
            "--environment",
            help="Environment: the folder name under environments/ (required).",
            show_default=False,
        ),
    ] = None,
    spec_json: Annotated[
        str | None,
        typer.Option(
            "--spec-json",
            help="The ModelDeployment's spec.validation as JSON, instead of reading it from "
            "--repo (what the controller's Job passes; needs --model).",
            show_default=False,
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="The registered model, <catalog>.<schema>.<model> (with --spec-json only; "
            "from --repo it is the ModelDeployment's model in the environment's catalog).",
            show_default=False,
        ),
    ] = None,
    repo: RepoOpt = ".",
    data_root: DataRootOpt = None,
    tracking_uri: TrackingUriOpt = None,
    state_dir: StateOpt = None,
) -> None:
    """Validate version N of NAME's model and compare it with the champion.

    Checks, each printed by name: signature, input_example, predicts (on its input example),
    required_tags, threshold:<metric>:min|max (mlflow.models.evaluate on validation.data) and
    slice:<name>:<metric>:min|max (on the rows each slice's where selects). All pass: the version
    is tagged model_validation_status=PASSED and compared, on the same data, with the version the
    champion alias names: mlgitops.comparison=WON or LOST. Otherwise FAILED, with the failed
    checks in mlgitops.validation.failed_checks. Metrics and a JSON and HTML report go to one
    MLflow run per version; a version validated before gets its recorded result again.

    Exit 0 with a verdict (PASSED or FAILED: both are findings); 2 on unusable input (no
    validation section, the version, table or target column missing) or an unreachable
    registry.
    """
    from controller.api.documents import ValidationSpec

    if env is None:
        fail(["--env: required (the environment the version belongs to)"])
    if not _VERSION.match(version):
        fail([f"--version: must be a version number such as 3, got {version!r}"])
    state = state_for(state_dir)
    deployment = name
    if spec_json is not None:
        if model is None:
            fail(["--model: required with --spec-json (<catalog>.<schema>.<model>)"])
        if not _MODEL.match(model):
            fail([f"--model: must be <catalog>.<schema>.<model>, got {model!r}"])
        try:
            spec = ValidationSpec.model_validate_json(spec_json)
        except ValidationError as exc:
            fail(
                [
                    f"--spec-json: {'.'.join(str(p) for p in e['loc']) or '(root)'}: "
                    + str(e["msg"]).removeprefix("Value error, ")
                    for e in exc.errors()
                ]
            )
        registered, env_tracking, env_root = model, None, None
    else:
        if model is not None:
            fail(["--model: only with --spec-json (else the ModelDeployment names the model)"])
        desired = desired_for(repo, state, env)
        doc = deployment_named(desired, name)
        if doc.doc.spec.validation is None:
            fail([f"{doc.at.file}: spec.validation: {name!r} has no validation section"])
        spec = doc.doc.spec.validation
        registered = doc.registered_model
        env_tracking = desired.environment.spec.registry.tracking_uri
        env_root = desired.environment.spec.data_root

    from controller.jobs.validation import validate_version
    from controller.lake.tables import table_uri

    uri = resolve_tracking_uri(tracking_uri or env_tracking, state)
    root = data_root or env_root or str(state.tables)
    try:
        result = validate_version(
            tracking_uri=uri,
            model=registered,
            version=version,
            spec=spec,
            environment=env,
            deployment=deployment,
            data_uri=table_uri(spec.data.uri, root),
            artifact_root=state.root / "artifacts" if uri.startswith("sqlite:") else None,
        )
    except JobError as exc:
        fail([f"validate-model: {redact(str(exc))}"])
    except MlgitopsError as exc:
        fail(error_lines(exc))

    shown = f"{result.model} version {result.version}"
    if result.reused:
        out.print(f"{shown}: validated before (run {result.run_id}); its result:", markup=False)
    else:
        out.print(
            f"{shown}: {result.rows} rows of {spec.data.uri}, {result.model_type}", markup=False
        )
    for check in result.checks:
        _print_check(check.name, check.passed, check.detail)
    failed = result.failed_checks
    out.print(
        f"{result.status}" + (f": {', '.join(failed)}" if failed else ""),
        markup=False,
    )
    comparison = result.comparison
    if comparison is not None:
        for check in comparison.checks:
            _print_check(check.name, check.passed, check.detail)
        against = f"champion version {comparison.champion}" if comparison.champion else "champion"
        out.print(
            f"comparison with the {against}: {comparison.result} ({comparison.detail})",
            markup=False,
        )
    out.print(f"report: {result.report_uri}", markup=False)


def _print_check(name: str, passed: bool, detail: str) -> None:
    line = f"  {'pass' if passed else 'FAIL'}  {name}" + (f": {detail}" if detail else "")
    out.print(line, markup=False)
