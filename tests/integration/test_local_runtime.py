"""``mlgitops run`` end to end: Git drives real model-server processes on this machine.

Real Git commits, the real MLflow store with scikit-learn models, real HTTP. The runtime is a
subprocess stopped with SIGTERM, after which no process it started may remain.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from examples.models import dataset
from tests.helpers import ConfigRepo, wait_for

EXE = Path(sys.executable).with_name("mlgitops")
FRAUD_FILE = "environments/prod/fraud-detector.yaml"


def serving(state: Path, name: str, env: str = "prod") -> dict[str, Any]:
    """A model's serving status from status.json (written whole, by rename); {} while it has none.

    Until the runtime's first pass there is no file: FileNotFoundError, which ``wait_for``
    retries.
    """
    doc = json.loads((state / "envs" / env / "status.json").read_text())
    record = (doc.get("models") or {}).get(name) or {}
    return dict((record.get("status") or {}).get("serving") or {})


def rolled_out(state: Path, name: str, env: str = "prod") -> dict[str, Any] | None:
    """The model's serving status once it is rolled out, else None."""
    found = serving(state, name, env)
    return found if found.get("rolledOut") else None


def read_pid(path: Path) -> int | None:
    """The pid in a pid file, or None while it is being written (it is not written by rename)."""
    text = path.read_text().strip()
    return int(text) if text.isdigit() else None


def predict(url: str, rows: dict[str, Any]) -> tuple[int, str, list[Any]]:
    body = json.dumps({"dataframe_split": rows}).encode()
    req = urllib.request.Request(
        f"{url}/invocations", data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status, r.headers.get("X-Model-Version", ""), json.loads(r.read())["predictions"]


def server_pids(state: Path) -> list[int]:
    """Every live process whose command line names a config under this state directory."""
    pids = []
    needle = str(state / "envs").encode()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if needle in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


@pytest.fixture
def fraud_rows() -> dict[str, Any]:
    x, _ = dataset("classifier")
    sample = x.head(5)
    return {"columns": list(sample.columns), "data": sample.values.tolist()}


class Runtime:
    def __init__(self, repo: ConfigRepo, state: Path, env: str, log: Path) -> None:
        self._log = log.open("w")
        self.proc = subprocess.Popen(
            [
                str(EXE),
                "run",
                "--env",
                env,
                "--repo",
                str(repo.path),
                "--state-dir",
                str(state),
                "--interval",
                "1",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()
        return int(self.proc.returncode)


@pytest.fixture
def runtime(repo: ConfigRepo, state_dir: Path, tmp_path: Path) -> Iterator[Runtime]:
    rt = Runtime(repo, state_dir, "prod", tmp_path / "run.log")
    try:
        yield rt
    finally:
        rt.stop()
        for pid in server_pids(state_dir):  # never leak servers, even when a test fails
            os.kill(pid, signal.SIGKILL)


def test_git_drives_local_servers(
    runtime: Runtime, repo: ConfigRepo, state_dir: Path, fraud_rows: dict[str, Any], tmp_path: Path
) -> None:
    fraud = wait_for("fraud serving", lambda: rolled_out(state_dir, "fraud-detector"))
    churn = wait_for("churn serving", lambda: rolled_out(state_dir, "churn-predictor"))
    assert fraud["url"] != churn["url"]
    assert (fraud["champion"], fraud["challenger"], fraud["challengerTraffic"]) == ("2", "3", 10)
    code, version, predictions = predict(fraud["url"], fraud_rows)
    assert code == 200
    assert version in {"2", "3"}
    assert len(predictions) == 5

    json_status = subprocess.run(
        [str(EXE), "status", "--env", "prod", "--state-dir", str(state_dir), "-o", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    models = {m["name"]: m for m in json.loads(json_status.stdout)["models"]}
    assert models["fraud-detector"]["serving"]["url"] == fraud["url"]

    # A champion change in Git reaches the running server without a failed request.
    failures: list[str] = []
    versions: list[str] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            try:
                versions.append(predict(fraud["url"], fraud_rows)[1])
            except OSError as exc:
                failures.append(repr(exc))

    client = threading.Thread(target=load)
    client.start()
    try:
        repo.pin(FRAUD_FILE, "champion", "1")
        repo.pin(FRAUD_FILE, "challenger", None)
        repo.commit("Champion v1, no challenger")
        wait_for(
            "champion 1 served",
            lambda: (s := rolled_out(state_dir, "fraud-detector")) and s.get("champion") == "1",
        )
        # rolledOut means the server answers with the new model now, not that its config file
        # was rewritten: the next request is v1's (there is no challenger left to route to).
        assert predict(fraud["url"], fraud_rows)[1] == "1"
        wait_for("responses from v1", lambda: versions[-20:] == ["1"] * 20)
    finally:
        stop.set()
        client.join()
    assert failures == []
    assert set(versions) <= {"1", "2", "3"}
    assert serving(state_dir, "fraud-detector")["url"] == fraud["url"]  # the port is stable

    # A crashed server comes back on the same port.
    pid_file = state_dir / "envs/prod/serving/fraud-detector.pid"
    pid = read_pid(pid_file)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    wait_for("restarted", lambda: read_pid(pid_file) not in (None, pid))
    wait_for("serving again", lambda: predict(fraud["url"], fraud_rows)[0] == 200)

    # Stopping the runtime stops everything it started.
    assert server_pids(state_dir)
    assert runtime.stop() == 0
    assert server_pids(state_dir) == []


def test_environments_side_by_side(
    state_dir: Path, tmp_path: Path, fraud_rows: dict[str, Any]
) -> None:
    repo = ConfigRepo(tmp_path / "two", envs=("prod", "staging"))
    prod = Runtime(repo, state_dir, "prod", tmp_path / "prod.log")
    staging = Runtime(repo, state_dir, "staging", tmp_path / "staging.log")
    try:
        a = wait_for("prod", lambda: rolled_out(state_dir, "fraud-detector"))
        b = wait_for("staging", lambda: rolled_out(state_dir, "fraud-detector", "staging"))
        assert a["url"] != b["url"]
        assert predict(a["url"], fraud_rows)[0] == predict(b["url"], fraud_rows)[0] == 200
    finally:
        assert prod.stop() == 0
        assert staging.stop() == 0
    assert server_pids(state_dir) == []
