"""The loader names file, line and field for every problem, and accepts a revision whole."""

from __future__ import annotations

import pytest

from controller.api.loader import load_environment
from controller.errors import InvalidInput

ENV = """apiVersion: mlgitops.io/v1alpha1
kind: Environment
metadata: {name: prod}
spec:
  catalog: prod
  namespace: ml-prod
"""
MD = """apiVersion: mlgitops.io/v1alpha1
kind: ModelDeployment
metadata:
  name: fraud
spec:
  model: fraud.detector
  champion: {version: "3"}
  serving:
    replicas: 2
"""


def problems(files: dict[str, str]) -> list[str]:
    try:
        load_environment(files, env_name="prod", revision="r", folder="environments/prod")
    except InvalidInput as exc:
        return [str(p) for p in exc.problems]
    return []


def test_valid_folder_loads() -> None:
    state = load_environment(
        {"e/env.yaml": ENV, "e/md.yaml": MD}, env_name="prod", revision="r", folder="e"
    )
    [d] = state.deployments
    assert d.registered_model == "prod.fraud.detector"
    assert d.at.line_of("spec.champion.version") == 7
    assert d.at.line_of("spec.serving.replicas") == 9
    assert d.at.line_of("spec.no.such.path") == 5  # nearest present ancestor: spec


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("replicas: 2", "replicas: many"),
            "md.yaml:9: spec.serving.replicas: must be a valid integer",
        ),
        (
            ("replicas: 2", "replicas: 2\n    colour: red"),
            "md.yaml:10: spec.serving.colour: unknown field",
        ),
        (('"3"', '"three"'), "md.yaml:7: spec.champion.version: must be a registry version number"),
        (
            ("kind: ModelDeployment", "kind: Model"),
            "md.yaml:2: kind: must be one of Environment, ModelDeployment",
        ),
        (("  model: fraud.detector\n", ""), "md.yaml:5: spec.model: required field is missing"),
        (
            ("name: fraud", "name: Fraud_Detector"),
            "md.yaml:4: metadata.name: String should match pattern",
        ),
        (
            (
                "replicas: 2",
                "replicas: 2\n  batchInference: {schedule: '61 * * * *', input: a, output: b}",
            ),
            "md.yaml:10: spec.batchInference.schedule: '61 * * * *' is not a valid cron schedule",
        ),
        (("replicas: 2", "replicas: [2"), "md.yaml:10: invalid YAML"),
        (
            ("apiVersion: mlgitops.io/v1alpha1", "apiVersion: mlgitops.io/v2"),
            "md.yaml:1: apiVersion: must be 'mlgitops.io/v1alpha1'",
        ),
    ],
)
def test_problem_names_file_line_and_field(change: tuple[str, str], expected: str) -> None:
    found = problems({"e/env.yaml": ENV, "e/md.yaml": MD.replace(*change)})
    assert any(p.startswith(f"e/{expected}") for p in found), found


@pytest.mark.parametrize(
    "uri",
    [
        "https://alice:s3cret@mlflow.example.com",
        "http://token@mlflow:5000",
        "https://mlflow.example.com/?token=abc",
        "https://mlflow.example.com/api?x=1&password=abc",
    ],
)
def test_a_tracking_uri_with_credentials_is_refused(uri: str) -> None:
    """Credentials in Git leak to every reader and into every object rendered from it."""
    env = ENV + f"  registry: {{trackingUri: '{uri}'}}\n"
    [problem] = problems({"e/env.yaml": env, "e/md.yaml": MD})
    assert problem.startswith("e/env.yaml:7: spec.registry.trackingUri: must not carry credentials")
    assert "s3cret" not in problem
    assert "abc" not in problem.split("Secret")[0]


def test_a_tracking_uri_without_credentials_is_accepted() -> None:
    env = ENV + "  registry: {trackingUri: 'https://mlflow.example.com:5000/path'}\n"
    assert problems({"e/env.yaml": env, "e/md.yaml": MD}) == []


@pytest.mark.parametrize(
    ("tables", "expected"),
    [
        (
            "  batchInference: {schedule: '0 1 * * *', input: ../../etc/t, output: prod/f/out}",
            "md.yaml:10: spec.batchInference.input: String should match pattern",
        ),
        (
            "  batchInference: {schedule: '0 1 * * *', input: /abs/t, output: prod/f/out}",
            "md.yaml:10: spec.batchInference.input: String should match pattern",
        ),
        (
            "  batchInference: {schedule: '0 1 * * *', input: prod/f/in, output: s3://other/t}",
            "md.yaml:10: spec.batchInference.output: String should match pattern",
        ),
        (
            "  batchInference: {schedule: '0 1 * * *', input: prod/f/in, output: dev/f/out}",
            "md.yaml:10: spec.batchInference.output: table 'dev/f/out' is in catalog 'dev', "
            "which environment 'prod' may not write",
        ),
        (
            "  monitoring: {schedule: '0 1 * * *', baseline: staging/f/base}\n"
            "  batchInference: {schedule: '0 1 * * *', input: prod/f/in, output: prod/f/out}",
            "md.yaml:10: spec.monitoring.baseline: table 'staging/f/base' is in catalog "
            "'staging', which environment 'prod' may not read",
        ),
        (
            "  monitoring: {schedule: '0 1 * * *', baseline: prod/f/base,"
            " labels: {table: staging/f/labels, key: [id], target: y}}\n"
            "  batchInference: {schedule: '0 1 * * *', input: prod/f/in, output: prod/f/out}",
            "md.yaml:10: spec.monitoring.labels.table: table 'staging/f/labels' is in catalog "
            "'staging', which environment 'prod' may not read",
        ),
        (
            "  monitoring: {schedule: '0 1 * * *', baseline: prod/f/base}",
            "md.yaml:10: spec.monitoring: needs a table to monitor: add serving.inferenceTable "
            "(what the model server logs) or batchInference (its output)",
        ),
    ],
)
def test_tables_stay_in_the_catalogs_the_environment_may_use(tables: str, expected: str) -> None:
    """A document cannot reach outside the lake, nor write another environment's tables."""
    found = problems({"e/env.yaml": ENV, "e/md.yaml": MD + tables + "\n"})
    assert any(p.startswith(f"e/{expected}") for p in found), found


def logging_to(table: str) -> str:
    """``MD`` whose serving replicas log to ``table`` (spec.serving.inferenceTable, line 10)."""
    return MD.replace("    replicas: 2\n", f"    replicas: 2\n    inferenceTable: {table}\n")


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ("prod/../etc", "String should match pattern"),
        ("prod/fraud/..", "String should match pattern"),
        ("/var/lib/inference", "String should match pattern"),
        ("s3://other/inference", "String should match pattern"),
        (
            "dev/fraud/inference",
            "table 'dev/fraud/inference' is in catalog 'dev', which environment 'prod' may not "
            "write",
        ),
    ],
)
def test_the_inference_table_stays_in_the_environments_lake(table: str, expected: str) -> None:
    """Every serving replica writes it: a name under the data root, in the own catalog."""
    found = problems({"e/env.yaml": ENV, "e/md.yaml": logging_to(table)})
    assert any(
        p.startswith(f"e/md.yaml:10: spec.serving.inferenceTable: {expected}") for p in found
    ), found
    assert problems({"e/env.yaml": ENV, "e/md.yaml": logging_to("prod/fraud/inference")}) == []


def test_read_catalogs_may_be_read_not_written() -> None:
    env = ENV + "  readCatalogs: [staging]\n"
    read = "  monitoring:\n    schedule: '0 1 * * *'\n    baseline: staging/f/base\n"
    read += "    labels: {table: staging/f/labels, key: [id], target: y}\n"
    read += "  batchInference: {schedule: '0 1 * * *', input: prod/f/in, output: prod/f/out}\n"
    assert problems({"e/env.yaml": env, "e/md.yaml": MD + read}) == []
    write = "  batchInference: {schedule: '0 1 * * *', input: staging/f/in, output: staging/f/o}\n"
    [problem] = problems({"e/env.yaml": env, "e/md.yaml": MD + write})
    assert "spec.batchInference.output" in problem
    assert "may not write (allowed: prod)" in problem
    # The serving replicas write the inference table: a read catalog is not enough.
    [problem] = problems({"e/env.yaml": env, "e/md.yaml": logging_to("staging/f/inference")})
    assert problem.startswith("e/md.yaml:10: spec.serving.inferenceTable: ")
    assert "may not write (allowed: prod)" in problem


def test_folder_name_must_match_environment() -> None:
    found = problems({"e/env.yaml": ENV.replace("name: prod", "name: staging")})
    assert found == [
        "e/env.yaml:3: metadata.name: Environment is named 'staging' but lives in folder 'prod'"
    ]


def test_multi_document_files_and_ignored_files() -> None:
    state = load_environment(
        {
            "e/all.yaml": ENV + "---\n" + MD,
            "e/README.md": "# hi",
            "e/kustomization.yaml": "resources: []",
        },
        env_name="prod",
        revision="r",
        folder="e",
    )
    assert state.deployments[0].at.line == 8
    assert state.deployments[0].at.line_of("spec.champion.version") == 14


def test_three_part_model_in_own_catalog_is_accepted() -> None:
    state = load_environment(
        {"e/env.yaml": ENV, "e/md.yaml": MD.replace("fraud.detector", "prod.fraud.detector")},
        env_name="prod",
        revision="r",
        folder="e",
    )
    assert state.deployments[0].registered_model == "prod.fraud.detector"


def test_all_problems_are_reported_together() -> None:
    found = problems(
        {
            "e/env.yaml": ENV,
            "e/a.yaml": MD.replace("replicas: 2", "replicas: x"),
            "e/b.yaml": MD.replace("name: fraud", "name: other").replace('"3"', "[1]"),
        }
    )
    assert len(found) == 2
    assert found[0].startswith("e/a.yaml:9:")
    assert found[1].startswith("e/b.yaml:7:")


VALIDATION = """  validation:
    data: {uri: prod/fraud/holdout, target: label}
    thresholds:
      - {metric: roc_auc, min: 0.8, minRelativeChangeVsChampion: 0.01}
    slices:
      - name: large
        where: "amount > 1000"
        thresholds: [{metric: recall, min: 0.7}]
"""


def test_validation_with_slices_and_comparison_loads() -> None:
    state = load_environment(
        {"e/env.yaml": ENV, "e/md.yaml": MD + VALIDATION},
        env_name="prod",
        revision="r",
        folder="e",
    )
    validation = state.deployments[0].doc.spec.validation
    assert validation is not None
    assert validation.model_type is None  # inferred from the target when validating
    assert validation.thresholds[0].min_relative_change_vs_champion == 0.01
    assert validation.slices[0].where == "amount > 1000"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ('"amount > 1000"', '"1=1; DROP TABLE holdout"'),
            # the line of `where:`; the message names the character in the condition
            "md.yaml:16: spec.validation.slices.0.where: only one condition is allowed, not "
            "statements (';') (at character 4)",
        ),
        (
            ('"amount > 1000"', "\"lower(country) = 'fr'\""),
            "md.yaml:16: spec.validation.slices.0.where: function calls are not allowed",
        ),
        (
            ('"amount > 1000"', '"x > 1) OR (1=1"'),
            "md.yaml:16: spec.validation.slices.0.where: unbalanced ')' (at character 6)",
        ),
        (
            ("minRelativeChangeVsChampion: 0.01", "minRelativeChangeVsChampion: 1.5"),
            "md.yaml:13: spec.validation.thresholds.0.minRelativeChangeVsChampion: must be less "
            "than or equal to 1",
        ),
        (
            ("target: label}", "target: label}\n    modelType: ranker"),
            "md.yaml:12: spec.validation.modelType: must be 'classifier' or 'regressor', got "
            "'ranker'",
        ),
    ],
)
def test_validation_problems_name_file_line_and_field(
    change: tuple[str, str], expected: str
) -> None:
    found = problems({"e/env.yaml": ENV, "e/md.yaml": MD + VALIDATION.replace(*change)})
    assert any(p.startswith(f"e/{expected}") for p in found), found
