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


def logged_requests(table: Path) -> dict[str, list[dict[str, Any]]]:
    """The rows of an inference table by request id; {} while there is no table."""
    from deltalake import DeltaTable

    if not (table / "_delta_log").exists():
        return {}
    rows: dict[str, list[dict[str, Any]]] = {}
    for row in DeltaTable(str(table)).to_pyarrow_table().to_pylist():
        rows.setdefault(row["request_id"], []).append(row)
    return rows


def post(url: str, rows: dict[str, Any], request_id: str) -> str:
    """Send ``rows`` as request ``request_id``; the version that answered."""
    body = json.dumps({"dataframe_split": rows}).encode()
    req = urllib.request.Request(
        f"{url}/invocations",
        data=body,
        headers={"Content-Type": "application/json", "X-Request-Id": request_id},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200
        return str(r.headers["X-Model-Version"])


def test_a_declared_inference_table_is_written_under_the_data_root(
    repo: ConfigRepo, state_dir: Path, tmp_path: Path, fraud_rows: dict[str, Any]
) -> None:
    lake = tmp_path / "lake"
    env_file = "environments/prod/environment.yaml"
    repo.write(env_file, repo.read(env_file) + f"  dataRoot: {lake}\n")
    text = repo.read(FRAUD_FILE)
    repo.write(
        FRAUD_FILE,
        text.replace(
            "    replicas: 2\n", "    replicas: 2\n    inferenceTable: prod/fraud/inference\n"
        ),
    )
    repo.commit("Log fraud-detector's requests")
    runtime = Runtime(repo, state_dir, "prod", tmp_path / "run.log")
    try:
        fraud = wait_for("fraud serving", lambda: rolled_out(state_dir, "fraud-detector"))
        versions = {f"local-{i}": post(fraud["url"], fraud_rows, f"local-{i}") for i in range(6)}
        table = lake / "prod" / "fraud" / "inference"
        logged = wait_for(
            "6 requests in the table",
            lambda: len(logged_requests(table)) == 6 and logged_requests(table),
        )
        for request_id, rows in logged.items():
            assert len(rows) == 5  # one row per input row
            assert {r["model_version"] for r in rows} == {versions[request_id]}
            assert sorted(r["mean_radius"] for r in rows) == sorted(
                row[0] for row in fraud_rows["data"]
            )
        # Only the ModelDeployment that declares a table logs one.
        assert [p.relative_to(lake).as_posix() for p in lake.glob("*/*/*")] == [
            "prod/fraud/inference"
        ]

        # The table is a start-time setting: a new name (here under the default data root,
        # <state dir>/tables) restarts the server, which logs there from then on.
        pid_file = state_dir / "envs/prod/serving/fraud-detector.pid"
        pid = read_pid(pid_file)
        repo.write(env_file, repo.read(env_file).replace(f"  dataRoot: {lake}\n", ""))
        repo.write(
            FRAUD_FILE,
            repo.read(FRAUD_FILE).replace("prod/fraud/inference", "prod/fraud/inference_v2"),
        )
        repo.commit("Log fraud-detector's requests to another table")
        wait_for("the server restarted", lambda: read_pid(pid_file) not in (None, pid))
        moved = state_dir / "tables" / "prod" / "fraud" / "inference_v2"

        def answered() -> bool:
            try:
                post(fraud["url"], fraud_rows, "after-move")
            except OSError:
                return False
            return True

        wait_for("served again", answered)
        wait_for("logged in the new table", lambda: "after-move" in logged_requests(moved))
        assert set(logged_requests(table)) == set(versions)  # the first table is left as it was
    finally:
        assert runtime.stop() == 0
        for pid_left in server_pids(state_dir):
            os.kill(pid_left, signal.SIGKILL)
