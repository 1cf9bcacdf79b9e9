"""Training from code on one machine: real Git commits, real training scripts, real MLflow.

The code repository is a copy of ``examples/fraud_project`` with a ``release`` branch; the
config repository's prod fraud-detector trains from it. Most tests drive ``LocalTraining`` (the
pass ``mlgitops run`` makes) in this process with an injected clock, waiting for the real
training subprocess between passes; one runs ``mlgitops run`` itself.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.api.loader import DesiredState
from controller.api.status import TrainingStatus
from controller.engine import load_desired
from controller.local.training import LocalTraining
from controller.pipeline.training import TAG_COMMIT, TAG_KEY, TAG_SKIPPED, TAG_TRIGGER
from controller.planning.types import TrainingRun
from controller.registry import MlflowTracking
from controller.sources import CodeRepo, GitSource
from controller.training import Event, experiment_name
from tests.helpers import PROJECT, ConfigRepo, RegistryView, free_port, git, wait_for

FRAUD = "prod.fraud.fraud_detector"
FRAUD_FILE = "environments/prod/fraud-detector.yaml"
NOW = dt.datetime.now(dt.UTC)  # runs end on the wall clock; the planner's clock moves from here


class CodeRepoDir:
    """The example training project as a Git repository with a release branch."""

    def __init__(self, path: Path) -> None:
        self.path = path
        shutil.copytree(PROJECT / "examples/fraud_project", path)
        git(path, "init", "-q", "-b", "release")
        self.commit("The fraud detector's training code")

    def write(self, rel: str, text: str) -> None:
        (self.path / rel).write_text(text)

    def commit(self, message: str) -> str:
        git(self.path, "add", "-A")
        git(self.path, "commit", "-q", "--allow-empty", "-m", message)
        return git(self.path, "rev-parse", "HEAD")


def train_from(repo: ConfigRepo, code: Path, **training: Any) -> None:
    doc = yaml.safe_load(repo.read(FRAUD_FILE))
    doc["spec"]["training"] = {
        "source": {"repo": str(code), "branch": "release", "paths": ["train.py", "params.json"]},
        "command": ["python", "train.py"],
        **training,
    }
    repo.write(FRAUD_FILE, yaml.safe_dump(doc, sort_keys=False))
    repo.commit("Train the fraud detector from its code")


class Harness:
    """LocalTraining against the test's state directory, with a clock the test moves."""

    def __init__(self, repo: ConfigRepo, state_dir: Path, clock: list[dt.datetime]) -> None:
        self.repo, self.state_dir, self.clock = repo, state_dir, clock
        self.uri = f"sqlite:///{state_dir / 'mlflow.db'}"
        self.tracking = MlflowTracking(self.uri, artifact_root=state_dir / "artifacts")
        self.events: list[Event] = []
        self.training = self.fresh()

    def fresh(self) -> LocalTraining:
        """A new controller (as after a restart): nothing carried over in memory."""
        return LocalTraining(
            env="prod",
            state_root=self.state_dir,
            tracking_uri=self.uri,
            tracking=self.tracking,
            code_for=lambda url: CodeRepo(url, cache_dir=self.state_dir / "git"),
            data_root=str(self.state_dir / "tables"),
            on_event=self.events.append,
            clock=lambda: self.clock[0],
        )

    def desired(self) -> DesiredState:
        source = GitSource(str(self.repo.path), cache_dir=self.state_dir / "git")
        try:
            return load_desired(source, env="prod", rev=None)[1]
        finally:
            source.close()

    def apply(self) -> TrainingStatus:
        return self.training.apply(self.desired())["fraud-detector"]

    def settle(self, timeout: float = 120) -> TrainingStatus:
        """Passes until no run is in flight (the scripts really run meanwhile)."""
        return wait_for(
            "no run in flight", lambda: (s := self.apply()).in_flight is None and s, timeout
        )

    def runs(self) -> list[TrainingRun]:
        experiment = self.tracking.experiment_id(experiment_name("prod", "fraud-detector"))
        return self.tracking.search_runs(
            experiment_id=experiment, tags={"mlgitops.model_deployment": "fraud-detector"}
        )


@pytest.fixture
def code(tmp_path: Path) -> CodeRepoDir:
    return CodeRepoDir(tmp_path / "fraud-code")


@pytest.fixture
def harness(repo: ConfigRepo, state_dir: Path, code: CodeRepoDir) -> Harness:
    train_from(repo, code.path, retries=1)
    return Harness(repo, state_dir, [NOW])


def test_a_commit_trains_once_and_the_version_is_pending(
    harness: Harness, code: CodeRepoDir, registry: RegistryView
) -> None:
    first = harness.apply()
    assert first.in_flight is not None
    assert first.in_flight.trigger == "commit"
    status = harness.settle()
    assert status.last_run is not None
    assert status.last_run.state == "Succeeded", status.last_run
    version = status.last_run.version
    assert version == "4"  # the seeded store holds 1..3
    tags = registry.tags(FRAUD, version)
    head = git(code.path, "rev-parse", "HEAD")
    assert tags["model_validation_status"] == "PENDING"
    assert (tags[TAG_TRIGGER], tags[TAG_KEY], tags[TAG_COMMIT]) == ("commit", head, head)
    assert tags["mlgitops.run_id"] == status.last_run.run_id
    [run] = harness.runs()
    assert run.tags[TAG_COMMIT] == head
    assert run.tags["mlgitops.environment"] == "prod"
    assert status.last_trained_commit == head
    # Passes over the same head start nothing more.
    harness.apply()
    assert len(harness.runs()) == 1

    # A commit that touches no training path starts nothing.
    code.write("README.md", "Docs only.\n")
    code.commit("Docs")
    assert harness.apply().in_flight is None
    assert len(harness.runs()) == 1

    # Three quick commits: one run, for the newest; the two it superseded are recorded.
    shas = []
    for c in (0.5, 0.25, 0.1):
        code.write("params.json", f'{{"C": {c}}}\n')
        shas.append(code.commit(f"C={c}"))
    status = harness.settle()
    runs = harness.runs()
    assert len(runs) == 2
    assert runs[-1].tags[TAG_KEY] == shas[-1]
    assert set(runs[-1].tags[TAG_SKIPPED].split(",")) >= set(shas[:2])
    assert status.last_run is not None
    assert status.last_run.version == "5"


def test_a_failing_script_fails_and_is_retried_up_to_the_cap(
    harness: Harness, code: CodeRepoDir, repo: ConfigRepo
) -> None:
    code.write("train.py", "import sys\nprint('bad data')\nsys.exit(3)\n")
    code.commit("A broken training script")
    status = harness.settle()
    assert status.last_run is not None
    assert status.last_run.state == "Failed"
    assert status.last_run.reason == "the script exited with code 3"
    assert any(e.reason == "TrainingFailed" for e in harness.events)
    assert status.last_run.log is not None
    assert "bad data" in Path(status.last_run.log).read_text()
    # Before the backoff nothing starts; after it, attempt 2 (retries: 1), then never again.
    assert harness.apply().in_flight is None
    harness.clock[0] = NOW + dt.timedelta(hours=1)
    retried = harness.apply()
    assert retried.in_flight is not None
    assert retried.in_flight.attempt == 2
    harness.settle()
    harness.clock[0] = NOW + dt.timedelta(hours=2)
    assert harness.apply().in_flight is None
    attempts = [(r.tags["mlgitops.attempt"], r.tags["mlgitops.outcome"]) for r in harness.runs()]
    assert attempts == [("1", "failed"), ("2", "failed")]


def test_a_command_that_does_not_exist_is_named(
    repo: ConfigRepo, state_dir: Path, code: CodeRepoDir
) -> None:
    train_from(repo, code.path, retries=0, command=["no-such-trainer", "--fast"])
    harness = Harness(repo, state_dir, [NOW])
    status = harness.settle()
    assert status.last_run is not None
    assert status.last_run.reason == "command not found: no-such-trainer (training.command)"


def test_a_hanging_script_is_ended_at_the_timeout(
    repo: ConfigRepo, state_dir: Path, code: CodeRepoDir
) -> None:
    code.write("train.py", "import time\ntime.sleep(600)\n")
    code.commit("A script that hangs")
    train_from(repo, code.path, retries=0, timeout="2s")
    harness = Harness(repo, state_dir, [NOW])
    status = harness.settle(timeout=60)
    assert status.last_run is not None
    assert status.last_run.reason == "timed out after 2 s (training.timeout)"


def test_a_restarted_controller_never_starts_a_second_run(
    harness: Harness, code: CodeRepoDir, state_dir: Path
) -> None:
    script = (code.path / "train.py").read_text()
    slow = "from __future__ import annotations\n\nimport time\n\ntime.sleep(4)\n"
    code.write("train.py", script.replace("from __future__ import annotations\n", slow, 1))
    code.commit("Slower training")
    started = harness.apply()
    assert started.in_flight is not None
    # The controller dies (its memory is gone); a new one adopts the run still going.
    harness.training = harness.fresh()
    adopted = harness.apply()
    assert adopted.in_flight is not None
    assert adopted.in_flight.run_id == started.in_flight.run_id
    status = harness.settle()
    assert status.last_run is not None
    assert status.last_run.state == "Succeeded"
    assert len(harness.runs()) == 1

    # Again with the state directory's training records lost while a run goes: the run in MLflow
    # is the record; its process is unknown, so it is recorded as interrupted, never doubled.
    code.write("params.json", '{"C": 2.0}\n')
    code.commit("C=2")
    flying = harness.apply().in_flight
    assert flying is not None
    record = state_dir / "envs/prod/training/fraud-detector" / f"{flying.run_id}.json"
    pid = int(__import__("json").loads(record.read_text())["pid"])
    os.killpg(pid, signal.SIGKILL)  # the whole run, as a machine reboot would
    shutil.rmtree(state_dir / "envs/prod/training")
    harness.training = harness.fresh()
    status = harness.apply()
    keys = [r.tags[TAG_KEY] for r in harness.runs()]
    assert keys.count(flying.key) == 1  # not a second run for that key by itself
    assert status.last_run is not None
    assert status.last_run.run_id == flying.run_id
    assert status.last_run.state == "Failed"


def test_mlgitops_run_trains_a_pushed_commit_at_once(
    repo: ConfigRepo, state_dir: Path, code: CodeRepoDir, registry: RegistryView, tmp_path: Path
) -> None:
    """`mlgitops run` with an hour between polls: only the signed push can start the second run."""
    import hashlib
    import hmac
    import json
    import time

    import httpx

    train_from(repo, code.path)
    port = free_port()
    log = (tmp_path / "run.log").open("w")
    mlgitops = str(Path(sys.executable).with_name("mlgitops"))
    argv = [mlgitops, "run", "--env", "prod", "--repo", str(repo.path)]
    argv += ["--state-dir", str(state_dir), "--interval", "3600", "--webhook-port", str(port)]
    proc = subprocess.Popen(
        argv,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "MLGITOPS_WEBHOOK_TOKEN": "s3cret"},
    )

    def push(repository: str, token: str = "s3cret") -> httpx.Response:
        body = json.dumps({"ref": "refs/heads/release", "repository": {"url": repository}})
        sig = hmac.new(token.encode(), body.encode(), hashlib.sha256).hexdigest()
        headers = {"X-Hub-Signature-256": f"sha256={sig}", "Content-Type": "application/json"}
        return httpx.post(f"http://127.0.0.1:{port}/webhook", content=body, headers=headers)

    try:
        wait_for("version 4", lambda: _tags_or_none(registry, "4"), timeout=180)
        assert registry.tags(FRAUD, "4")["model_validation_status"] == "PENDING"
        status = subprocess.run(
            [mlgitops, "status", "--env", "prod", "--state-dir", str(state_dir), "-o", "json"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert '"lastTrainedCommit"' in status

        code.write("params.json", '{"C": 0.3}\n')
        sha = code.commit("C=0.3")
        assert push(str(code.path), token="wrong").status_code == 401
        other = push("https://git.example.com/someone/else.git")
        assert (other.status_code, other.json()["accepted"]) == (202, False)
        pushed_at = time.monotonic()
        accepted = push(str(code.path) + ".git")
        assert (accepted.status_code, accepted.json()["accepted"]) == (202, True)
        harness = Harness(repo, state_dir, [NOW])
        started = wait_for(
            "the pushed commit's run",
            lambda: [r for r in harness.runs() if r.tags[TAG_KEY] == sha],
            timeout=30,
        )
        assert time.monotonic() - pushed_at < 10  # not the hour-long poll
        assert len(started) == 1
        wait_for("version 5", lambda: _tags_or_none(registry, "5"), timeout=180)
        assert registry.tags(FRAUD, "5")[TAG_COMMIT] == sha
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        log.close()


def _tags_or_none(registry: RegistryView, version: str) -> dict[str, str] | None:
    try:
        return registry.tags(FRAUD, version)
    except Exception:  # not registered yet
        return None


def test_a_schedule_trains_the_head_once_per_slot(
    repo: ConfigRepo, state_dir: Path, code: CodeRepoDir
) -> None:
    from croniter import croniter

    train_from(repo, code.path, retries=0, schedule="0 3 * * *")
    start = dt.datetime.now(dt.UTC)
    harness = Harness(repo, state_dir, [start])
    harness.settle()  # the head, trained once when first seen
    slot = croniter("0 3 * * *", start).get_next(dt.datetime)
    harness.clock[0] = slot + dt.timedelta(minutes=5)
    harness.settle()
    harness.clock[0] = slot + dt.timedelta(hours=2)  # the same slot again: nothing
    harness.settle()
    harness.clock[0] = slot + dt.timedelta(days=3, hours=1)  # three slots missed: one run
    harness.settle()
    keys = [(r.tags[TAG_TRIGGER], r.tags[TAG_KEY]) for r in harness.runs()]
    newest = (slot + dt.timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert keys[1:] == [("schedule", slot.strftime("%Y-%m-%dT%H:%M:%SZ")), ("schedule", newest)]


def test_mlgitops_train_queues_a_manual_run_the_controller_starts(
    harness: Harness, repo: ConfigRepo, state_dir: Path
) -> None:
    from typer.testing import CliRunner

    from controller.cli import app

    harness.settle()  # the head, trained when first seen

    def mlgitops(*args: str) -> Any:
        argv = [*args, "--repo", str(repo.path), "--state-dir", str(state_dir)]
        return CliRunner().invoke(app, argv, catch_exceptions=False)

    queued = mlgitops("train", "fraud-detector", "--env", "prod")
    assert queued.exit_code == 0, queued.stderr
    assert queued.stdout.startswith("queued run ")
    # The controller's next pass starts the queued run (created, never started), once.
    started = harness.apply()
    assert started.in_flight is not None
    assert started.in_flight.trigger == "manual"
    status = harness.settle()
    assert status.last_run is not None
    assert (status.last_run.trigger, status.last_run.state) == ("manual", "Succeeded")
    listed = mlgitops("runs", "fraud-detector", "--env", "prod")
    assert listed.exit_code == 0, listed.stderr
    rows = [line.split() for line in listed.stdout.splitlines()[1:]]
    assert [(r[1], r[4]) for r in rows] == [("commit", "Succeeded"), ("manual", "Succeeded")]
    unknown = mlgitops("train", "no-such-model", "--env", "prod")
    assert unknown.exit_code == 2
    assert "no ModelDeployment named 'no-such-model'" in unknown.stderr


def test_a_due_retraining_trains_once_for_its_window(
    harness: Harness, registry: RegistryView
) -> None:
    from deltalake import write_deltalake
    from typer.testing import CliRunner

    from controller.cli import app
    from examples.models import dataset

    harness.settle()  # the head, trained when first seen
    registry.client.set_registered_model_alias(FRAUD, "champion", "2")
    features, _ = dataset("classifier")
    tables = harness.state_dir / "tables"
    write_deltalake(str(tables / "base"), features.sample(300, random_state=1))
    drifted = features.sample(300, random_state=2)
    drifted["mean_radius"] += 2 * features["mean_radius"].std()
    write_deltalake(str(tables / "scores"), drifted)

    def monitor() -> str:
        argv = ["monitor", "--model", f"models:/{FRAUD}@champion", "--baseline", "base"]
        argv += ["--current", "scores", "--window-id", "w-7", "--retrain-violations", "1"]
        argv += ["--retrain-windows", "1", "--data-root", str(tables)]
        argv += ["--tracking-uri", harness.uri]
        ran = CliRunner().invoke(app, argv, catch_exceptions=False)
        assert ran.exit_code == 0, ran.stderr
        return str(ran.stdout)

    assert "retraining due" in monitor()
    status = harness.settle()
    assert status.last_run is not None
    assert (status.last_run.trigger, status.last_run.key) == ("retrain", "w-7")
    assert status.last_run.state == "Succeeded"
    assert registry.tags(FRAUD, str(status.last_run.version))[TAG_TRIGGER] == "retrain"
    # The window's Job retried, and passes by a restarted controller: still one run for it.
    monitor()
    harness.training = harness.fresh()
    harness.settle()
    keys = [(r.tags[TAG_TRIGGER], r.tags[TAG_KEY]) for r in harness.runs()]
    assert keys.count(("retrain", "w-7")) == 1
    assert [t for t, _ in keys] == ["commit", "retrain"]
