"""Bad input: one line naming file, line and field; exit 2; nothing at all changes in the registry.

Every bad revision below also carries a valid change to another model, so a partial apply would
show up in the registry snapshot.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from tests.conftest import Ran
from tests.helpers import ConfigRepo, RegistryView

ENV = "environments/prod"
FRAUD_FILE = f"{ENV}/fraud-detector.yaml"
CHURN_FILE = f"{ENV}/churn-predictor.yaml"


def line_of(repo: ConfigRepo, rel: str, needle: str) -> int:
    lines = repo.read(rel).splitlines()
    return next(i for i, line in enumerate(lines, 1) if needle in line)


def invalid_yaml(repo: ConfigRepo) -> str:
    repo.write(FRAUD_FILE, repo.read(FRAUD_FILE).replace("replicas: 2", "replicas: [2"))
    return f"{FRAUD_FILE}:"


def unknown_field(repo: ConfigRepo) -> str:
    repo.write(
        FRAUD_FILE, repo.read(FRAUD_FILE).replace("  serving:\n", "  colour: red\n  serving:\n")
    )
    return f"{FRAUD_FILE}:{line_of(repo, FRAUD_FILE, 'colour')}: spec.colour: unknown field"


def wrong_type(repo: ConfigRepo) -> str:
    repo.write(FRAUD_FILE, repo.read(FRAUD_FILE).replace("replicas: 2", "replicas: two"))
    line = line_of(repo, FRAUD_FILE, "replicas: two")
    return f"{FRAUD_FILE}:{line}: spec.serving.replicas: must be a valid integer"


def missing_version(repo: ConfigRepo) -> str:
    repo.pin(FRAUD_FILE, "champion", "9")
    line = line_of(repo, FRAUD_FILE, 'version: "9"')
    return (
        f"{FRAUD_FILE}:{line}: spec.champion.version: "
        "version 9 of prod.fraud.fraud_detector does not exist"
    )


def outside_catalog(repo: ConfigRepo) -> str:
    text = repo.read(FRAUD_FILE).replace(
        "model: fraud.fraud_detector", "model: staging.fraud.fraud_detector"
    )
    repo.write(FRAUD_FILE, text)
    line = line_of(repo, FRAUD_FILE, "model: staging")
    return f"{FRAUD_FILE}:{line}: spec.model: catalog 'staging' is outside environment 'prod'"


def inference_table_outside_the_lake(repo: ConfigRepo) -> str:
    text = repo.read(FRAUD_FILE).replace(
        "    replicas: 2\n", "    replicas: 2\n    inferenceTable: prod/../../etc/inference\n"
    )
    repo.write(FRAUD_FILE, text)
    line = line_of(repo, FRAUD_FILE, "inferenceTable:")
    return f"{FRAUD_FILE}:{line}: spec.serving.inferenceTable: String should match pattern"


def unknown_model(repo: ConfigRepo) -> str:
    repo.write(FRAUD_FILE, repo.read(FRAUD_FILE).replace("fraud.fraud_detector", "fraud.nope"))
    line = line_of(repo, FRAUD_FILE, "model: fraud.nope")
    return f"{FRAUD_FILE}:{line}: spec.model: registered model prod.fraud.nope does not exist"


def duplicate_model(repo: ConfigRepo) -> str:
    copy = repo.read(FRAUD_FILE).replace("name: fraud-detector", "name: fraud-detector-2")
    repo.write(f"{ENV}/zz-fraud.yaml", copy)
    line = line_of(repo, f"{ENV}/zz-fraud.yaml", "model: ")
    return (
        f"{ENV}/zz-fraud.yaml:{line}: spec.model: "
        f"prod.fraud.fraud_detector is already deployed by {FRAUD_FILE}:"
    )


def duplicate_key(repo: ConfigRepo) -> str:
    repo.write(
        FRAUD_FILE, repo.read(FRAUD_FILE).replace("  serving:\n", "  model: fraud.x\n  serving:\n")
    )
    line = line_of(repo, FRAUD_FILE, "model: fraud.x")
    return f"{FRAUD_FILE}:{line}: spec.model: duplicate key"


def missing_environment(repo: ConfigRepo) -> str:
    repo.remove(f"{ENV}/environment.yaml")
    return f"{ENV}: kind: no Environment document in the folder"


def duplicated_environment(repo: ConfigRepo) -> str:
    repo.write(f"{ENV}/zz-environment.yaml", repo.read(f"{ENV}/environment.yaml"))
    line = line_of(repo, f"{ENV}/zz-environment.yaml", "kind: Environment")
    return f"{ENV}/zz-environment.yaml:{line}: kind: second Environment document"


def empty_folder(repo: ConfigRepo) -> str:
    repo.remove(ENV)
    repo.write(f"{ENV}/README.md", "Nothing here yet.\n")
    return f"{ENV}: no YAML documents in the environment folder"


def failed_validation(repo: ConfigRepo) -> str:
    # Version 1 is tagged FAILED by the test below before the sync runs.
    repo.pin(FRAUD_FILE, "challenger", "1")
    line = line_of(repo, FRAUD_FILE, 'version: "1"')
    return (
        f"{FRAUD_FILE}:{line}: spec.challenger.version: version 1 of prod.fraud.fraud_detector "
        "failed validation (model_validation_status=FAILED)"
    )


CASES = [
    invalid_yaml,
    unknown_field,
    wrong_type,
    missing_version,
    outside_catalog,
    inference_table_outside_the_lake,
    unknown_model,
    duplicate_model,
    duplicate_key,
    missing_environment,
    duplicated_environment,
    empty_folder,
    failed_validation,
]
STATIC = {
    invalid_yaml,
    unknown_field,
    wrong_type,
    outside_catalog,
    inference_table_outside_the_lake,
    duplicate_model,
    duplicate_key,
    missing_environment,
    duplicated_environment,
    empty_folder,
}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.__name__)
def test_bad_revision_is_rejected_whole(
    case: Callable[[ConfigRepo], str],
    cli: Callable[..., Ran],
    repo: ConfigRepo,
    registry: RegistryView,
) -> None:
    assert cli("sync", "--env", "prod").code == 0
    good = repo.head()
    if case is failed_validation:
        registry.client.set_model_version_tag(
            "prod.fraud.fraud_detector", "1", "model_validation_status", "FAILED"
        )
    before = registry.snapshot()

    if case is not empty_folder:
        repo.pin(CHURN_FILE, "champion", "2")  # a valid change that must not be applied either
    expected = case(repo)
    bad = repo.commit(f"Bad revision: {case.__name__}")

    ran = cli("sync", "--env", "prod")
    assert ran.code == 2
    lines = ran.stderr.strip().splitlines()
    assert lines, "an error must be printed"
    assert any(line.startswith(f"error: {expected}") for line in lines), lines
    assert all(line.startswith("error: ") for line in lines)
    assert registry.snapshot() == before

    status = json.loads(cli("status", "--env", "prod", "-o", "json").stdout)
    assert status["lastAppliedRevision"] == good
    assert status["lastAttemptedRevision"] == bad
    assert any(expected.split(": ")[0] in p for p in status["problems"])
    fraud = next(m for m in status["models"] if m["name"] == "fraud-detector")
    conditions = {c["type"]: c for c in fraud["conditions"]}
    assert conditions["Ready"]["status"] == "False"
    assert conditions["Stalled"]["status"] == "True"
    assert conditions["Stalled"]["reason"] == "InvalidRevision"
    assert fraud["lastAppliedRevision"] == good
    assert fraud["champion"]["version"] == "2"

    if case in STATIC:  # the pull-request check catches it without a registry
        lint = cli("validate")
        assert lint.code == 2
        assert any(line.startswith(f"error: {expected}") for line in lint.stderr.splitlines())

    # Fixing the revision recovers: the next good commit applies and clears Stalled.
    repo.revert(bad)
    fixed = cli("sync", "--env", "prod")
    assert fixed.code == 0, fixed.stderr
    status = json.loads(cli("status", "--env", "prod", "-o", "json").stdout)
    fraud = next(m for m in status["models"] if m["name"] == "fraud-detector")
    assert [c["type"] for c in fraud["conditions"]] == ["Ready"]
    assert status["problems"] == []


def test_missing_environment_folder(cli: Callable[..., Ran]) -> None:
    ran = cli("sync", "--env", "qa")
    assert ran.code == 2
    assert ran.stderr.startswith("error: environments/qa: no such environment folder")


def test_validate_reports_every_problem_at_once(cli: Callable[..., Ran], repo: ConfigRepo) -> None:
    assert cli("validate").code == 0
    wrong_type(repo)
    unknown_field(repo)
    repo.commit("Two mistakes")
    ran = cli("validate")
    assert ran.code == 2
    assert len(ran.stderr.strip().splitlines()) == 2
