"""From a commit on a release branch to a training run, on the local runtime: how fast, at what cost.

"Deploy code, not models" only feels right if a merge starts its training run promptly and the
controller adds little to the time the training script itself takes. This benchmark runs the
real thing: ``mlgitops run`` as a process (embedded MLflow store, its own state directory) on a
config repository whose ModelDeployment trains from a copy of ``examples/fraud_project``, and
commits to that code repository's release branch:

a. poll: a commit, nothing else; the time until its run has started (the script is running,
   ``mlgitops.started`` set), against the target of the poll interval plus 1 s;
b. webhook: a commit and a signed push to ``mlgitops run --webhook-port``; the time until its run
   has started, against the target of 1 s;
c. the controller's overhead per run: from the push to the new version registered and tagged
   PENDING, minus the time the training script itself ran (measured inside the script, from its
   first statement to its last), printed next to the script's time.

The training command is a wrapper, written into the code repository, that records the script's
own start and end times in a file outside the checkout (``BENCH_TIMES``, inherited from the
``mlgitops run`` process) and then runs the example's ``train.py`` in-process.

    .venv/bin/python bench/pipeline.py                   # interval 5 s, 3 commits per mode
    .venv/bin/python bench/pipeline.py --interval 2 --commits 1   # a quick run

Every figure is printed next to its baseline (the target, or the script's time) from this run.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"

from common import ENV, NS, figure, free_port, verdict, working_directory

ROOT = Path(__file__).resolve().parent.parent
MLGITOPS = str(Path(sys.executable).with_name("mlgitops"))
TOKEN = "bench-webhook-token"
MODEL = "fraud.fraud_detector"
POLL = 0.05  # how often the benchmark looks at MLflow

# Runs the example's train.py in this process, stamping the script's own first and last moment.
WRAPPER = """\
import json, os, runpy, sys, time
started = time.time()
try:
    runpy.run_path("train.py", run_name="__main__")
finally:
    ended = time.time()
    path = os.path.join(os.environ["BENCH_TIMES"], os.environ["MLGITOPS_CODE_COMMIT"] + ".json")
    with open(path, "w") as f:
        json.dump({"started": started, "ended": ended}, f)
"""


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def _commit(repo: Path, message: str) -> str:
    _git(repo, "add", "-A")
    _git(
        repo, "-c", "user.name=bench", "-c", "user.email=bench@localhost", "commit", "-qm", message
    )
    return _git(repo, "rev-parse", "HEAD")


def make_code_repo(path: Path) -> None:
    shutil.copytree(ROOT / "examples/fraud_project", path, ignore=shutil.ignore_patterns("mlruns"))
    (path / "timed_train.py").write_text(WRAPPER)
    _git(path, "init", "-q", "-b", "release")
    _commit(path, "The fraud detector's training code")


def make_config_repo(path: Path, code: Path) -> None:
    folder = path / "environments" / ENV
    folder.mkdir(parents=True)
    (folder / "environment.yaml").write_text(
        f"apiVersion: mlgitops.io/v1alpha1\nkind: Environment\nmetadata:\n  name: {ENV}\n"
        f"spec:\n  catalog: {ENV}\n  namespace: {NS}\n"
    )
    (folder / "fraud-detector.yaml").write_text(
        f"""\
apiVersion: mlgitops.io/v1alpha1
kind: ModelDeployment
metadata:
  name: fraud-detector
spec:
  model: {MODEL}
  serving: {{enabled: false}}
  training:
    source: {{repo: {json.dumps(str(code))}, branch: release, paths: ["train.py", "params.json"]}}
    command: ["python", "timed_train.py"]
    retries: 0
"""
    )
    _git(path, "init", "-q", "-b", "main")
    _commit(path, "The bench environment")


class Pipeline:
    """``mlgitops run`` on the workspace, and what the benchmark reads of its MLflow store."""

    def __init__(self, work: Path, interval: float) -> None:
        from mlflow import MlflowClient

        self.work, self.code, self.times = work, work / "code", work / "times"
        self.state = work / "state"
        self.times.mkdir()
        make_code_repo(self.code)
        make_config_repo(work / "config", self.code)
        self.state.mkdir()
        uri = f"sqlite:///{self.state / 'mlflow.db'}"
        self.client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        self.client.search_experiments()  # creates the store's tables before two processes race
        self.port = free_port()
        self.log = (work / "run.log").open("w")
        self.proc = subprocess.Popen(
            [
                MLGITOPS,
                "run",
                "--env",
                ENV,
                "--repo",
                str(work / "config"),
                "--state-dir",
                str(self.state),
                "--interval",
                str(interval),
                "--webhook-port",
                str(self.port),
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=work,
            env={**os.environ, "MLGITOPS_WEBHOOK_TOKEN": TOKEN, "BENCH_TIMES": str(self.times)},
            start_new_session=True,
        )

    def close(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.log.close()

    def wait(self, what: str, check: Callable[[], Any], timeout: float = 300) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"mlgitops run exited; see {self.work / 'run.log'}")
            try:
                found = check()
            except Exception:  # the store is created by the first pass
                found = None
            if found:
                return found
            time.sleep(POLL)
        raise SystemExit(f"timed out after {timeout:g} s waiting for {what}")

    def run_of(self, sha: str) -> Any:
        experiments = self.client.search_experiments(filter_string="name LIKE 'mlgitops/%'")
        runs = self.client.search_runs(
            [e.experiment_id for e in experiments],
            filter_string=f"tags.`mlgitops.trigger_key` = '{sha}'",
        )
        return runs[0] if runs else None

    def started(self, sha: str) -> bool:
        run = self.run_of(sha)
        return run is not None and "mlgitops.started" in run.data.tags

    def version_of(self, sha: str) -> Any:
        found = self.client.search_model_versions(f"name = '{ENV}.{MODEL}'")
        mine = [v for v in found if v.tags.get("mlgitops.trigger_key") == sha]
        return (
            mine[0] if mine and mine[0].tags.get("model_validation_status") == "PENDING" else None
        )

    def script_seconds(self, sha: str) -> float:
        stamps = json.loads((self.times / f"{sha}.json").read_text())
        return float(stamps["ended"]) - float(stamps["started"])

    def push(self) -> None:
        body = json.dumps({"ref": "refs/heads/release", "repository": {"url": str(self.code)}})
        sig = hmac.new(TOKEN.encode(), body.encode(), hashlib.sha256).hexdigest()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/webhook",
            data=body.encode(),
            headers={"X-Hub-Signature-256": f"sha256={sig}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            if not json.loads(answer.read())["accepted"]:
                raise SystemExit("the webhook did not accept the push")


def run(work: Path, *, interval: float, commits: int) -> bool:
    pipeline = Pipeline(work, interval)
    ok = True
    try:
        head = _git(pipeline.code, "rev-parse", "HEAD")
        pipeline.wait("the first run's version", lambda: pipeline.version_of(head))
        c = 0.5

        def change() -> str:
            nonlocal c
            c = round(c * 0.8, 4)
            (pipeline.code / "params.json").write_text(json.dumps({"C": c}) + "\n")
            return _commit(pipeline.code, f"C={c}")

        polled: list[float] = []
        for i in range(commits):
            time.sleep(interval * (i + 0.5) / commits)  # commits land across the poll cycle
            t0 = time.monotonic()
            sha = change()
            pipeline.wait("the polled commit's run", lambda s=sha: pipeline.started(s))
            polled.append(time.monotonic() - t0)
            pipeline.wait("its version", lambda s=sha: pipeline.version_of(s))

        pushed: list[float] = []
        overhead: list[float] = []
        script: list[float] = []
        for _ in range(commits):
            sha = change()
            t0 = time.monotonic()
            pipeline.push()
            pipeline.wait("the pushed commit's run", lambda s=sha: pipeline.started(s))
            pushed.append(time.monotonic() - t0)
            pipeline.wait("its version", lambda s=sha: pipeline.version_of(s))
            total = time.monotonic() - t0
            script.append(pipeline.script_seconds(sha))
            overhead.append(total - script[-1])

        print(f"training runs: {2 * commits + 1} on the local runtime, interval {interval:g} s")
        figure("a. commit -> run started, polling (worst)", max(polled), interval + 1, "s")
        figure(
            "   commit -> run started, polling (median)",
            statistics.median(polled),
            interval + 1,
            "s",
        )
        figure("b. push -> run started, webhook (worst)", max(pushed), 1.0, "s")
        figure("   push -> run started, webhook (median)", statistics.median(pushed), 1.0, "s")
        figure(
            "c. controller overhead per run (median)",
            statistics.median(overhead),
            statistics.median(script),
            "s",
        )
        ok &= verdict(
            max(polled) <= interval + 1,
            f"a commit starts its run within the poll interval + 1 s ({interval + 1:g} s)",
        )
        ok &= verdict(
            max(pushed) <= 1.0, "a pushed commit starts its run within 1 s of the webhook"
        )
        print(
            "   (overhead: from the push to the version registered and tagged PENDING, minus the "
            "script's own time: detection, checkout, the MLflow run, process start, registration)"
        )
    finally:
        pipeline.close()
    return ok


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--interval", type=float, default=5.0, help="mlgitops run --interval (s)")
    parser.add_argument("--commits", type=int, default=3, help="commits per mode")
    parser.add_argument("--workdir", type=Path, help="keep everything here (must be empty)")
    args = parser.parse_args(argv)
    with working_directory(args.workdir, parser, prefix="mlgitops-bench-pipeline-") as work:
        run(work, interval=args.interval, commits=args.commits)
    return 0


if __name__ == "__main__":
    sys.exit(main())
