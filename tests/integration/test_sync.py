"""The declarative core end to end: real Git repositories, a real MLflow store, the real CLI."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from tests.conftest import Ran
from tests.helpers import ConfigRepo, RegistryView, git

FRAUD = "prod.fraud.fraud_detector"
CHURN = "prod.customers.churn_predictor"
FRAUD_FILE = "environments/prod/fraud-detector.yaml"
CHURN_FILE = "environments/prod/churn-predictor.yaml"


def test_sync_points_aliases_at_git_pins_and_records_why(
    cli: Callable[..., Ran], repo: ConfigRepo, registry: RegistryView
) -> None:
    ran = cli("sync", "--env", "prod")
    assert ran.code == 0, ran.stderr
    assert registry.aliases(FRAUD) == {"champion": "2", "challenger": "3"}
    assert registry.aliases(CHURN) == {"champion": "1"}
    [event] = registry.history_tags(FRAUD, "2")
    assert event["alias"] == "champion"
    assert event["previous"] is None
    assert event["revision"] == repo.head()
    assert "Initial environments" in event["reason"]
    assert event["time"].endswith("Z")


def test_second_sync_changes_nothing(cli: Callable[..., Ran], registry: RegistryView) -> None:
    assert cli("sync", "--env", "prod").code == 0
    before = registry.snapshot()
    again = cli("sync", "--env", "prod")
    assert again.code == 0
    assert "no changes" in again.stdout
    assert registry.snapshot() == before
    assert cli("diff", "--env", "prod").code == 0


def test_diff_shows_before_and_after_and_changes_nothing(
    cli: Callable[..., Ran], repo: ConfigRepo, registry: RegistryView
) -> None:
    assert cli("sync", "--env", "prod").code == 0
    repo.pin(FRAUD_FILE, "champion", "3")
    repo.pin(FRAUD_FILE, "challenger", None)
    repo.commit("Promote fraud detector v3")
    before = registry.snapshot()
    ran = cli("diff", "--env", "prod")
    assert ran.code == 1
    assert FRAUD in ran.stdout
    assert "champion   2 -> 3" in ran.stdout
    assert "challenger 3 -> (none)" in ran.stdout
    assert CHURN not in ran.stdout
    assert registry.snapshot() == before


def test_rollback_by_git_revert(
    cli: Callable[..., Ran], repo: ConfigRepo, registry: RegistryView
) -> None:
    assert cli("sync", "--env", "prod").code == 0
    repo.pin(FRAUD_FILE, "champion", "1")
    promote = repo.commit("Use fraud detector v1 as champion")
    assert cli("sync", "--env", "prod").code == 0
    assert registry.aliases(FRAUD)["champion"] == "1"

    revert = repo.revert(promote)
    ran = cli("sync", "--env", "prod")
    assert ran.code == 0, ran.stderr
    assert registry.aliases(FRAUD) == {"champion": "2", "challenger": "3"}

    # Both changes are recorded on the versions involved, with revision, previous and reason.
    [to_v1] = registry.history_tags(FRAUD, "1")
    assert (to_v1["previous"], to_v1["revision"]) == ("2", promote)
    back = [e for e in registry.history_tags(FRAUD, "2") if e["revision"] == revert]
    assert len(back) == 1
    assert back[0]["previous"] == "1"
    assert "Revert" in back[0]["reason"]

    status = json.loads(cli("status", "--env", "prod", "-o", "json").stdout)
    fraud = next(m for m in status["models"] if m["name"] == "fraud-detector")
    moves = [
        (h.get("previous"), h.get("version")) for h in fraud["history"] if h["alias"] == "champion"
    ]
    assert moves == [(None, "2"), ("2", "1"), ("1", "2")]
    assert fraud["lastAppliedRevision"] == revert

    hist = cli("history", "--env", "prod", "--model", "fraud-detector")
    assert hist.code == 0
    assert "2 -> 1" in hist.stdout
    assert "1 -> 2" in hist.stdout


def test_a_reverted_promotion_marks_its_version_rolled_back(
    cli: Callable[..., Ran], repo: ConfigRepo, registry: RegistryView
) -> None:
    """Losing the champion pin through a promotion commit is not a rollback; through a revert
    (or a hand edit) it is, and the version carries the revision that took the pin away."""
    assert cli("sync", "--env", "prod").code == 0
    repo.pin(FRAUD_FILE, "champion", "1")
    git(repo.path, "add", "-A")
    message = "Promote fraud-detector to v1\n\nMlgitops-Promotion: prod/fraud-detector/champion/v1"
    git(repo.path, "commit", "-q", "-m", message)
    promote = repo.head()
    assert cli("sync", "--env", "prod").code == 0
    assert "mlgitops.rolled_back" not in registry.tags(FRAUD, "2")

    revert = repo.revert(promote)
    assert cli("sync", "--env", "prod").code == 0
    assert registry.aliases(FRAUD)["champion"] == "2"
    assert registry.tags(FRAUD, "1")["mlgitops.rolled_back"] == revert
    assert "mlgitops.rolled_back" not in registry.tags(FRAUD, "2")

    # A hand edit that moves the champion on is not a promotion commit either.
    repo.pin(FRAUD_FILE, "champion", "1")
    hand = repo.commit("Back to v1 by hand")
    assert cli("sync", "--env", "prod").code == 0
    assert registry.tags(FRAUD, "2")["mlgitops.rolled_back"] == hand
    assert cli("sync", "--env", "prod").code == 0  # a no-op pass tags nothing more


def test_status_table_and_json(cli: Callable[..., Ran], repo: ConfigRepo) -> None:
    missing = cli("status", "--env", "prod")
    assert missing.code == 2
    assert "mlgitops sync --env prod" in missing.stderr
    assert cli("sync", "--env", "prod").code == 0
    table = cli("status", "--env", "prod")
    assert table.code == 0
    header = table.stdout.splitlines()[0].split()
    assert header[:4] == ["MODEL", "REGISTERED", "MODEL", "CHAMPION"]
    row = next(line for line in table.stdout.splitlines() if line.startswith("fraud-detector"))
    assert row.split()[1:6] == [FRAUD, "2", "3", "2:PASSED", "3:PASSED"]
    doc = json.loads(cli("status", "--env", "prod", "-o", "json").stdout)
    assert doc["lastAppliedRevision"] == repo.head()
    fraud = next(m for m in doc["models"] if m["name"] == "fraud-detector")
    assert fraud["champion"]["version"] == "2"
    assert fraud["champion"]["runId"]
    assert fraud["champion"]["validationStatus"] == "PASSED"
    assert fraud["observedGeneration"] == 1
    [ready] = fraud["conditions"]
    assert (ready["type"], ready["status"], ready["reason"]) == ("Ready", "True", "Reconciled")


def test_generation_counts_spec_changes_only(cli: Callable[..., Ran], repo: ConfigRepo) -> None:
    assert cli("sync", "--env", "prod").code == 0
    repo.commit("An empty commit")
    assert cli("sync", "--env", "prod").code == 0
    repo.pin(FRAUD_FILE, "challenger", "1")
    repo.commit("Challenge with v1")
    assert cli("sync", "--env", "prod").code == 0
    doc = json.loads(cli("status", "--env", "prod", "-o", "json").stdout)
    gens = {m["name"]: m["observedGeneration"] for m in doc["models"]}
    assert gens == {"fraud-detector": 2, "churn-predictor": 1}


def test_remote_url_is_mirrored_and_fetched_incrementally(
    cli: Callable[..., Ran],
    repo: ConfigRepo,
    registry: RegistryView,
    tmp_path: Path,
    state_dir: Path,
) -> None:
    bare = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--bare", str(repo.path), str(bare))
    url = bare.as_uri()
    assert cli("sync", "--env", "prod", "--repo", url).code == 0
    assert registry.aliases(FRAUD)["champion"] == "2"
    mirrors = list((state_dir / "git").iterdir())
    assert len(mirrors) == 1

    repo.pin(FRAUD_FILE, "champion", "1")
    sha = repo.commit("Champion v1")
    git(repo.path, "push", "-q", str(bare), "main")
    ran = cli("sync", "--env", "prod", "--repo", url)
    assert ran.code == 0, ran.stderr
    assert registry.aliases(FRAUD)["champion"] == "1"
    assert git(mirrors[0], "rev-parse", "main") == sha


def test_rev_selects_an_older_revision(
    cli: Callable[..., Ran], repo: ConfigRepo, registry: RegistryView
) -> None:
    first = repo.head()
    repo.pin(FRAUD_FILE, "champion", "1")
    repo.commit("Champion v1")
    assert cli("sync", "--env", "prod", "--rev", first).code == 0
    assert registry.aliases(FRAUD)["champion"] == "2"
    unknown = cli("sync", "--env", "prod", "--rev", "no-such-branch")
    assert unknown.code == 2
    assert "unknown revision 'no-such-branch'" in unknown.stderr
