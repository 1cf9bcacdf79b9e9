"""From a commit on the release branch to a new champion, and back, on one machine.

Real Git (the config repository accepts pushes into its checked-out branch with
``receive.denyCurrentBranch updateInstead``), real MLflow, real training and validation
processes: the controller's passes (``reconcile`` with the local runtime's training and promotion
steps) run in this process, as ``mlgitops run`` runs them.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from deltalake import write_deltalake

from controller.engine import SyncResult, reconcile
from controller.local.promotion import LocalPromotion
from controller.local.training import LocalTraining
from controller.registry import MlflowRegistry, MlflowTracking
from controller.sources import CodeRepo, GitSource, WriteBack
from controller.state import StateDir
from controller.training import Event
from examples.models import transactions
from tests.helpers import ConfigRepo, RegistryView, git, mlgitops_run, wait_for
from tests.integration.test_training_local import CodeRepoDir
from tests.receiver import Receiver

FRAUD = "prod.fraud.fraud_detector"
FRAUD_FILE = "environments/prod/fraud-detector.yaml"


def fraud_doc(code: Path, policy: str = "auto") -> str:
    return f"""\
# Credit-card fraud: trained from code, validated, promoted by the controller.
apiVersion: mlgitops.io/v1alpha1
kind: ModelDeployment
metadata:
  name: fraud-detector
spec:
  model: fraud.fraud_detector   # prod.fraud.fraud_detector
  promotion:
    policy: {policy}
  training:
    source: {{repo: {code}, branch: release, paths: ["train.py", "params.json"]}}
    command: ["python", "train.py"]
    retries: 0
  validation:
    data: {{uri: prod/fraud/holdout, target: label}}
    thresholds:
      - {{metric: roc_auc, min: 0.8}}
    slices:
      - name: large_amounts
        where: "amount > 100"
        thresholds: [{{metric: roc_auc, min: 0.6}}]
"""


def holdout(tables: Path) -> None:
    """The validation table: data of the distribution the example project trains on."""
    write_deltalake(str(tables / "prod/fraud/holdout"), transactions())


class Loop:
    """The passes of `mlgitops run --env prod`, in this process."""

    def __init__(self, repo: ConfigRepo, state_dir: Path) -> None:
        self.repo, self.state = repo, StateDir(state_dir)
        self.uri = f"sqlite:///{state_dir / 'mlflow.db'}"
        self.tracking = MlflowTracking(self.uri, artifact_root=state_dir / "artifacts")
        self.events: list[Event] = []
        tables = str(state_dir / "tables")
        self.training = LocalTraining(
            env="prod",
            state_root=state_dir,
            tracking_uri=self.uri,
            tracking=self.tracking,
            code_for=lambda url: CodeRepo(url, cache_dir=state_dir / "git"),
            data_root=tables,
            on_event=self.events.append,
        )
        self.promotion = LocalPromotion(
            env="prod",
            state_root=state_dir,
            tracking_uri=self.uri,
            tracking=self.tracking,
            promoter_for=lambda e: WriteBack(
                str(repo.path),
                cache_dir=self.state.writeback,
                branch=e.spec.write_back.branch,
                author=e.spec.write_back.author,
            ),
            data_root=tables,
            on_event=self.events.append,
        )

    def once(self) -> SyncResult:
        source = GitSource(str(self.repo.path), cache_dir=self.state.root / "git")
        try:
            result = reconcile(
                env="prod",
                source=source,
                registry_for=lambda _: MlflowRegistry(self.uri),
                store=self.state,
                train=self.training.apply,
                promote=self.promotion.apply,
            )
        finally:
            source.close()
        assert result.error is None, result.error
        return result

    def until(self, what: str, check: Any, timeout: float = 240) -> Any:
        def step() -> Any:
            self.once()
            found = check()
            if not found:
                time.sleep(0.5)
            return found

        return wait_for(
            what, step, timeout=timeout, on_timeout=lambda: "\n".join(map(str, self.events))
        )

    def reasons(self) -> list[str]:
        return [e.reason for e in self.events]


def trailers(repo: Path) -> list[str]:
    out = git(repo, "log", "--format=%(trailers:key=Mlgitops-Promotion,valueonly)")
    return [line for line in out.splitlines() if line.strip()]


@pytest.fixture
def loop(repo: ConfigRepo, state_dir: Path, code: CodeRepoDir) -> Loop:
    git(repo.path, "config", "receive.denyCurrentBranch", "updateInstead")
    repo.write(FRAUD_FILE, fraud_doc(code.path))
    repo.commit("Train, validate and promote the fraud detector")
    holdout(state_dir / "tables")
    return Loop(repo, state_dir)


@pytest.fixture
def code(tmp_path: Path) -> CodeRepoDir:
    return CodeRepoDir(tmp_path / "fraud-code")


def test_commit_to_champion_then_rollback_and_a_worse_model(
    loop: Loop, repo: ConfigRepo, code: CodeRepoDir, registry: RegistryView, state_dir: Path
) -> None:
    before = repo.read(FRAUD_FILE).encode()
    # The head trains (v4), validates, becomes challenger, wins (no champion yet), is promoted;
    # the controller restarts while v4 is validated: the validation is adopted, not repeated.
    loop.until("v4 validating", lambda: loop.promotion.statuses["fraud-detector"].validating)
    loop = Loop(repo, state_dir)
    loop.until("champion 4", lambda: registry.aliases(FRAUD).get("champion") == "4")
    validations = registry.client.search_runs(
        [
            registry.client.get_experiment_by_name(
                "mlgitops/prod/fraud-detector/validation"
            ).experiment_id
        ],
        filter_string="tags.`mlgitops.validation.version` = '4'",
    )
    assert len(validations) == 1
    tags = registry.tags(FRAUD, "4")
    assert (tags["model_validation_status"], tags["mlgitops.comparison"]) == ("PASSED", "WON")
    assert trailers(repo.path) == [
        "prod/fraud-detector/champion/v4",
        "prod/fraud-detector/challenger/v4",
    ]
    # The two write-backs changed only the pins: every other byte of the file is the same.
    after = repo.read(FRAUD_FILE).encode()
    assert (
        after
        == before.replace(b"  promotion:\n", b'  champion:\n    version: "4"\n  promotion:\n', 1)
        or after.replace(b'  champion:\n    version: "4"\n', b"", 1) == before
    ), after.decode()
    assert registry.aliases(FRAUD) == {"champion": "4"}
    assert {"ChallengerProposed", "PromotionCommitted"} <= set(loop.reasons())

    # A better model of the same line: v5, challenger, champion.
    code.write("params.json", '{"C": 0.5}\n')
    code.commit("C=0.5")
    loop.until("champion 5", lambda: registry.aliases(FRAUD).get("champion") == "5")
    assert len(trailers(repo.path)) == 4

    # mlgitops rollback: the revert of the last promotion commit; v4 serves again, and v5 (still
    # the challenger pin, as before its promotion) is never proposed again.
    ran = subprocess.run(
        [
            str(Path(sys.executable).with_name("mlgitops")),
            "rollback",
            "fraud-detector",
            "--env",
            "prod",
            "--repo",
            str(repo.path),
            "--state-dir",
            str(state_dir),
        ],
        capture_output=True,
        text=True,
    )
    assert ran.returncode == 0, ran.stderr
    loop.until("champion 4 again", lambda: registry.aliases(FRAUD).get("champion") == "4")
    assert registry.aliases(FRAUD) == {"champion": "4", "challenger": "5"}
    assert "mlgitops.rolled_back" in registry.tags(FRAUD, "5")
    head = repo.head()
    for _ in range(3):
        status = loop.once().status
    assert repo.head() == head  # nothing proposed again
    fraud = status["models"]["fraud-detector"]["status"]
    assert fraud["promotion"]["waiting"] == "challenger 5 was rolled back"

    # A person may pin it again, but only with --force.
    def promote(*extra: str) -> subprocess.CompletedProcess[str]:
        argv = [str(Path(sys.executable).with_name("mlgitops")), "promote", "fraud-detector"]
        argv += ["--env", "prod", "--version", "5", "--repo", str(repo.path)]
        argv += ["--state-dir", str(state_dir), *extra]
        return subprocess.run(argv, capture_output=True, text=True)

    refused = promote()
    assert refused.returncode == 2
    assert "version 5 was rolled back at" in refused.stderr
    assert "--force pins it again" in refused.stderr
    assert repo.head() == head

    # A worse model: its training code shuffles the labels. FAILED; the champion stays.
    train = (code.path / "train.py").read_text()
    code.write(
        "train.py",
        train.replace(
            "    model.fit(x_train, y_train)",
            "    model.fit(x_train, y_train.sample(frac=1, random_state=1).to_numpy())",
        ),
    )
    code.commit("A bug: the labels are shuffled")
    loop.until(
        "version 6 FAILED",
        lambda: _status(registry, "6") == "FAILED",
    )
    failed = registry.tags(FRAUD, "6")["mlgitops.validation.failed_checks"]
    assert "threshold:roc_auc:min" in failed
    loop.until("the verdict's Event", lambda: "ValidationFailed" in loop.reasons())
    loop.once()
    assert repo.head() == head
    assert registry.aliases(FRAUD) == {"champion": "4", "challenger": "5"}


def _status(registry: RegistryView, version: str) -> str | None:
    try:
        return registry.tags(FRAUD, version).get("model_validation_status")
    except Exception:  # not registered yet
        return None


def test_mlgitops_run_promotes_a_commit_and_notifies_once(
    repo: ConfigRepo,
    state_dir: Path,
    code: CodeRepoDir,
    registry: RegistryView,
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    """The whole loop through the real command: a pushed commit is trained, validated,
    proposed and promoted by `mlgitops run`, and each of those is notified once, signed."""
    import hashlib
    import hmac

    git(repo.path, "config", "receive.denyCurrentBranch", "updateInstead")
    env_file = "environments/prod/environment.yaml"
    repo.write(
        env_file,
        repo.read(env_file)
        + "  notifications:\n"
        + "    - name: audit\n"
        + f"      url: {receiver.url}/hook\n"
        + "      tokenEnv: MLGITOPS_NOTIFY_AUDIT_TOKEN\n"
        + "      events: [ChallengerProposed, PromotionCommitted, ValidationFailed]\n",
    )
    repo.write(FRAUD_FILE, fraud_doc(code.path))
    repo.commit("Train, validate and promote the fraud detector; tell the audit log")
    holdout(state_dir / "tables")
    log = tmp_path / "run.log"
    with mlgitops_run(repo.path, state_dir, log, env={"MLGITOPS_NOTIFY_AUDIT_TOKEN": "k3y"}):
        wait_for(
            "champion 4",
            lambda: registry.aliases(FRAUD).get("champion") == "4",
            timeout=240,
            on_timeout=lambda: log.read_text()[-3000:],
        )
        receiver.wait_for("/hook", 2, timeout=30)
        time.sleep(3)  # more passes: nothing is notified twice
    assert receiver.events("/hook") == ["ChallengerProposed", "PromotionCommitted"]
    for r in receiver.on("/hook"):
        expected = hmac.new(b"k3y", r.body, hashlib.sha256).hexdigest()
        assert r.header("X-Mlgitops-Signature-256") == f"sha256={expected}"
    assert "challenger 4" in str(receiver.on("/hook")[0].json())
    assert trailers(repo.path) == [
        "prod/fraud-detector/champion/v4",
        "prod/fraud-detector/challenger/v4",
    ]


def test_manual_policy_pushes_a_branch_and_awaits_its_merge(
    repo: ConfigRepo, state_dir: Path, code: CodeRepoDir, registry: RegistryView
) -> None:
    git(repo.path, "config", "receive.denyCurrentBranch", "updateInstead")
    repo.write(FRAUD_FILE, fraud_doc(code.path, policy="manual"))
    main = repo.commit("Promotions of the fraud detector go through review")
    holdout(state_dir / "tables")
    loop = Loop(repo, state_dir)
    branch = "mlgitops/promote/prod/fraud-detector-challenger-v4"

    def awaiting() -> Any:
        status = loop.once().status["models"]["fraud-detector"]["status"]
        found = [c for c in status["conditions"] if c["type"] == "AwaitingApproval"]
        return found and found[0]

    condition = loop.until("AwaitingApproval", awaiting)
    assert branch in condition["message"]
    assert repo.head() == main  # the branch under review is untouched
    assert git(
        repo.path, "log", "-1", "--format=%(trailers:key=Mlgitops-Promotion,valueonly)", branch
    ) == ("prod/fraud-detector/challenger/v4")
    assert "AwaitingApproval" in loop.reasons()
    # Merging is the approval: the challenger pin is in force, then the champion's branch waits.
    git(repo.path, "merge", "-q", "--no-edit", branch)
    loop.until("challenger 4", lambda: registry.aliases(FRAUD).get("challenger") == "4")
    loop.until(
        "the champion branch",
        lambda: "fraud-detector-v4" in git(repo.path, "branch", "--list", "mlgitops/*"),
    )
    assert registry.aliases(FRAUD) == {"challenger": "4"}


ONLINE_DOC = """\
# Credit-card fraud: the challenger serves 30% and is promoted when it wins on labeled traffic.
apiVersion: mlgitops.io/v1alpha1
kind: ModelDeployment
metadata:
  name: fraud-detector
spec:
  model: fraud.fraud_detector
  champion:
    version: "2"
  challenger:
    version: "3"
  promotion:
    policy: auto
    online: {metric: accuracy, minChange: 0.05, minLabeledRows: 50}
  serving:
    traffic: {challenger: 30}
    inferenceTable: prod/fraud/requests
  monitoring:
    schedule: "0 * * * *"
    baseline: prod/fraud/training_baseline
    lookback: 3
    labels: {table: prod/fraud/labels, key: [request_id], target: label}
"""


def test_a_challenger_that_wins_online_is_promoted_through_git(
    repo: ConfigRepo, state_dir: Path, registry: RegistryView
) -> None:
    """promotion.online: the monitoring job, run with the arguments its CronJob carries over the
    inference table and the labels that landed, finds the challenger better; the next pass
    writes the champion commit (trailer and all) and the sync moves the alias."""
    import datetime as dt

    import numpy as np
    import yaml
    from typer.testing import CliRunner

    from controller.api.documents import ModelDeployment
    from controller.cli import app
    from controller.planning.children import Owner, RenderContext, job_container, render_children
    from examples.models import dataset

    git(repo.path, "config", "receive.denyCurrentBranch", "updateInstead")
    repo.write(FRAUD_FILE, ONLINE_DOC)
    repo.commit("The fraud detector's challenger is judged on live traffic")
    loop = Loop(repo, state_dir)
    loop.until("the pins", lambda: registry.aliases(FRAUD) == {"champion": "2", "challenger": "3"})
    waiting = loop.once().status["models"]["fraud-detector"]["status"]["promotion"]["waiting"]
    assert waiting == "challenger 3 awaits its online comparison (no labeled traffic yet)"

    # What the model servers logged (the challenger right more often) and the labels that landed.
    tables = state_dir / "tables"
    features, truth = dataset("classifier")
    write_deltalake(str(tables / "prod/fraud/training_baseline"), features)
    rng = np.random.default_rng(8)
    n, now = len(features), dt.datetime.now(dt.UTC)
    challenger = rng.random(n) < 0.3
    right = rng.random(n) < np.where(challenger, 0.97, 0.8)
    requests = features.assign(
        request_id=[f"r{i}" for i in range(n)],
        timestamp=[now - dt.timedelta(minutes=int(m)) for m in rng.integers(0, 100, n)],
        model_version=np.where(challenger, "3", "2"),
        role=np.where(challenger, "challenger", "champion"),
        status=np.int32(200),
        prediction=np.where(right, truth, 1 - truth),
    )
    write_deltalake(str(tables / "prod/fraud/requests"), requests)
    write_deltalake(
        str(tables / "prod/fraud/labels"),
        requests[["request_id"]].assign(label=truth).sample(frac=0.8, random_state=1),
    )
    md = ModelDeployment.model_validate(yaml.safe_load(ONLINE_DOC))
    children = render_children(
        Owner("fraud-detector", "uid", "ml-prod"), md.spec, FRAUD, RenderContext("prod", "i", None)
    )
    [cronjob] = [c for c in children if c["metadata"]["name"] == "fraud-detector-monitor"]
    argv = [*job_container(cronjob)["args"], "--data-root", str(tables)]
    ran = CliRunner().invoke(app, [*argv, "--tracking-uri", loop.uri], catch_exceptions=False)
    assert ran.exit_code == 0, ran.stderr
    assert "online comparison: challenger 3 WON against champion 2" in ran.stdout

    loop.until("champion 3", lambda: registry.aliases(FRAUD) == {"champion": "3"})
    assert trailers(repo.path) == ["prod/fraud-detector/champion/v3"]
    message = git(repo.path, "log", "-1", "--format=%B", "main")
    assert "WON online against champion 2: accuracy 0.9" in message
    assert "PromotionCommitted" in loop.reasons()
