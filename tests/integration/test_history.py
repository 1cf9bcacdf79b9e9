"""``mlgitops history``: validations, comparisons, proposals, alias changes and rollbacks of a
model, merged in time order, from a real MLflow store and a real config repository.

The validation verdicts are written as ``validate-model`` writes them (a validation run, and the
same tags on the version), straight through MlflowClient; the promotion is a real ``mlgitops
promote`` (policy manual: a promotion branch, merged by hand), the rollback a real ``mlgitops
rollback``, and the alias changes and the ``mlgitops.rolled_back`` tag come from real syncs.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from tests.conftest import Ran
from tests.helpers import ConfigRepo, RegistryView, git

FRAUD = "prod.fraud.fraud_detector"
COMMIT_SECOND = 1.1  # Git keeps commit times to the second: let each step have its own


def _validate(registry: RegistryView, version: str, *, verdict: str, tags: dict[str, str]) -> str:
    """What ``mlgitops validate-model`` leaves: one validation run, its verdict on the version."""
    client = registry.client
    name = "mlgitops/prod/fraud-detector/validation"
    found = client.get_experiment_by_name(name)
    experiment = found.experiment_id if found else client.create_experiment(name)
    run = client.create_run(experiment, tags={"mlgitops.validation.version": version})
    run_id = run.info.run_id
    report = f"file:///artifacts/{run_id}/validation/report.html"
    every = {
        "model_validation_status": verdict,
        "mlgitops.validation.run_id": run_id,
        "mlgitops.validation.report": report,
        **tags,
    }
    for key, value in every.items():
        client.set_tag(run_id, key, value)
        client.set_model_version_tag(FRAUD, version, key, value)
    client.set_terminated(run_id, "FINISHED")
    return run_id


def _rows(out: str) -> list[str]:
    """The table's rows, each reduced to 'EVENT CHANGE' (single spaces)."""
    rows = []
    for line in out.splitlines():
        if line.startswith("20"):  # a time: a row
            cells = re.split(r" {2,}", line.strip())
            rows.append(f"{cells[2]} {cells[3]}")
    return rows


def test_history_lists_validations_proposals_alias_changes_and_rollbacks_in_time_order(
    cli: Callable[..., Ran], repo: ConfigRepo, registry: RegistryView
) -> None:
    git(repo.path, "config", "receive.denyCurrentBranch", "updateInstead")
    assert cli("sync", "--env", "prod").code == 0  # champion 2, challenger 3 (as the file pins)

    time.sleep(COMMIT_SECOND)
    _validate(
        registry,
        "1",
        verdict="FAILED",
        tags={"mlgitops.validation.failed_checks": "threshold:roc_auc:min,required_tags"},
    )
    run3 = _validate(
        registry,
        "3",
        verdict="PASSED",
        tags={
            "mlgitops.validation.failed_checks": "",
            "mlgitops.comparison": "WON",
            "mlgitops.comparison.champion": "2",
            "mlgitops.comparison.detail": "roc_auc 0.991 vs 0.975 (+0.016 >= 0.0)",
        },
    )

    # The proposal: policy manual, so a promotion branch; the controller tags what it wrote.
    time.sleep(COMMIT_SECOND)
    ran = cli("promote", "fraud-detector", "--env", "prod", "--version", "3")
    assert ran.code == 0, ran.stderr
    branch = "mlgitops/promote/prod/fraud-detector-v3"
    proposal = git(repo.path, "rev-parse", branch)
    registry.client.set_model_version_tag(
        FRAUD, "3", "mlgitops.proposed.champion", f"{branch}@{proposal}"
    )
    git(repo.path, "merge", "-q", "--ff-only", branch)  # the approval
    time.sleep(COMMIT_SECOND)
    assert cli("sync", "--env", "prod").code == 0
    assert registry.aliases(FRAUD) == {"champion": "3"}

    time.sleep(COMMIT_SECOND)
    ran = cli("rollback", "fraud-detector", "--env", "prod")
    assert ran.code == 0, ran.stderr
    revert = repo.head()
    assert cli("sync", "--env", "prod").code == 0
    assert registry.aliases(FRAUD) == {"champion": "2", "challenger": "3"}
    assert registry.tags(FRAUD, "3")["mlgitops.rolled_back"] == revert

    hist = cli("history", "--env", "prod", "--model", "fraud-detector")
    assert hist.code == 0, hist.stderr
    out = hist.stdout
    rows = _rows(out)
    # The seeded versions were tagged PASSED when registered, with no validation run: their
    # registration time stands in, marked *. Version 1's and 3's verdicts were replaced since.
    assert rows[0] == "validation v2 PASSED"
    assert rows[1:] == [
        "champion (none) -> 2",
        "challenger (none) -> 3",
        "validation v1 FAILED",
        "validation v3 PASSED",
        "comparison v3 WON vs v2",
        "proposed champion v3",
        "champion 2 -> 3",
        "challenger 3 -> (none)",
        "champion 3 -> 2",
        "challenger (none) -> 3",
        "rolled back v3",
    ], out
    lines = out.splitlines()

    def line(text: str) -> str:
        return next(x for x in lines if text in re.sub(r" {2,}", " ", x))

    assert re.match(r"20\d\d-\d\d-\d\d \d\d:\d\d:\d\d\* ", line("validation v2 PASSED"))
    assert "* the version's registration time" in out
    assert "failed: threshold:roc_auc:min,required_tags" in line("validation v1 FAILED")
    flat = re.sub(r"\s+", "", out)  # long cells wrap
    assert f"report:file:///artifacts/{run3}/validation/report.html" in flat
    assert "roc_auc 0.991 vs 0.975" in line("comparison v3 WON")
    assert proposal[:7] in line("proposed champion v3")
    assert f"on branch {branch}" in line("proposed champion v3")
    assert revert[:7] in line("rolled back v3")
    assert "Revert" in line("champion 3 -> 2")
    # Each time is where it was decided: the validation run's end, the commit, the sync.
    assert not re.search(r"\d\d:\d\d:\d\d\* ", line("validation v3 PASSED"))
    assert not re.search(r"\d\d:\d\d:\d\d\* ", line("proposed champion v3"))
    assert not re.search(r"\d\d:\d\d:\d\d\* ", line("rolled back v3"))


def test_history_of_a_model_with_nothing_recorded(
    cli: Callable[..., Ran], repo: ConfigRepo, registry: RegistryView
) -> None:
    """Before any sync only the seeded verdicts exist, at the versions' registration (as is a
    proposal whose commit the config repository does not have); an unknown model is an error."""
    churn = "prod.customers.churn_predictor"
    registry.client.set_model_version_tag(churn, "1", "mlgitops.proposed.champion", "0" * 40)
    ran = cli("history", "--env", "prod", "--model", "churn-predictor")
    assert ran.code == 0, ran.stderr
    assert _rows(ran.stdout) == [
        "validation v1 PASSED",
        "proposed champion v1",
        "validation v2 PASSED",
        "validation v3 PASSED",
    ]
    assert all(re.match(r"\S+ \S+\* ", row) for row in ran.stdout.splitlines()[1:5])
    missing = cli("history", "--env", "prod", "--model", "nope")
    assert missing.code == 2
    assert "no ModelDeployment named 'nope'" in missing.stderr
