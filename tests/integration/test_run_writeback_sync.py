"""`mlgitops run` syncs its own promotion commits at once, not at its next poll.

The poll interval here is two minutes: every step of the way from the branch head to the new
champion must be woken by what came before it (the training run's end, the validation's end, the
challenger commit, then the champion commit). Without that, the two write-backs would each wait
for a poll and the champion would not move within the test's timeout.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from tests.helpers import ConfigRepo, RegistryView, git, wait_for
from tests.integration.test_promotion_local import FRAUD, FRAUD_FILE, fraud_doc, holdout
from tests.integration.test_training_local import CodeRepoDir

INTERVAL = 120


@pytest.fixture
def code(tmp_path: Path) -> CodeRepoDir:
    return CodeRepoDir(tmp_path / "fraud-code")


def _commit_time(repo: Path, trailer: str) -> float:
    out = git(repo, "log", "--format=%ct %(trailers:key=Mlgitops-Promotion,valueonly)")
    for line in out.splitlines():
        when, _, value = line.partition(" ")
        if value.strip() == trailer:
            return float(when)
    raise AssertionError(f"no commit with the trailer {trailer}:\n{out}")


def _alias_time(registry: RegistryView, version: str, alias: str) -> float:
    for event in registry.history_tags(FRAUD, version):
        if event["alias"] == alias and event["version"] == version:
            return datetime.fromisoformat(event["time"]).timestamp()
    raise AssertionError(f"no {alias} move to {version}")


def test_promotion_commits_are_synced_without_waiting_for_the_poll(
    repo: ConfigRepo, state_dir: Path, code: CodeRepoDir, registry: RegistryView, tmp_path: Path
) -> None:
    git(repo.path, "config", "receive.denyCurrentBranch", "updateInstead")
    repo.write(FRAUD_FILE, fraud_doc(code.path))
    repo.commit("Train, validate and promote the fraud detector")
    holdout(state_dir / "tables")
    log_path = tmp_path / "run.log"
    argv = [str(Path(sys.executable).with_name("mlgitops")), "run", "--env", "prod"]
    argv += ["--repo", str(repo.path), "--state-dir", str(state_dir)]
    argv += ["--interval", str(INTERVAL)]
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=os.environ
        )
        try:
            wait_for(
                "champion 4",
                lambda: registry.aliases(FRAUD).get("champion") == "4",
                timeout=INTERVAL,  # less than the two polls the write-backs would wait for
                on_timeout=lambda: log_path.read_text()[-3000:],
            )
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    # Each alias moved within seconds of its commit (Git keeps commit times to the second).
    for alias in ("challenger", "champion"):
        committed = _commit_time(repo.path, f"prod/fraud-detector/{alias}/v4")
        moved = _alias_time(registry, "4", alias)
        assert moved - committed < 15, (alias, moved - committed)
    status = json.loads((state_dir / "envs" / "prod" / "status.json").read_text())
    assert status["lastAppliedRevision"] == repo.head()
