"""From a commit on a release branch to its model serving as champion, on the local runtime.

"Deploy code, not models" only feels right if a merge starts its training run promptly, and the
controller adds little to the time the training script and the validation themselves take. This
benchmark runs the real thing: ``mlgitops run`` as a process (embedded MLflow store, its own
state directory, a model server) on a config repository whose ModelDeployment trains from a copy
of ``examples/fraud_project``, validates each new version on a holdout Delta table (compared with
the champion), and promotes it (``promotion.policy: auto``: the challenger, then the champion
commit, written back to the config repository). Each commit to the code repository's release
branch is followed until its version serves as champion:

a. poll: a commit, nothing else; the time until its run has started (the script is running,
   ``mlgitops.started`` set), against the target of the poll interval plus 1 s;
b. webhook: a commit and a signed push to ``mlgitops run --webhook-port``; the time until its run
   has started, against the target of 1 s;
c. the controller's overhead per run: from the push to the new version registered and tagged
   PENDING, minus the time the training script itself ran (measured inside the script, from its
   first statement to its last), printed next to the script's time;
d. the whole way, commit -> new champion serving, by phase (detect, train, validate, write-back,
   sync, serve: see ``flow.py``), next to the work itself (the script's and the validation's
   time); the controller's overhead, the total minus those two, against the target of 5 s;
e. rollback: ``mlgitops rollback`` pushes the revert of the last promotion commit; the time until
   the server answers with the previous champion again, polling (target: the poll interval plus
   1 s) and with a signed push to the webhook (target: 1 s).

The training command is a wrapper, written into the code repository, that records the script's
own start and end times in a file outside the checkout (``BENCH_TIMES``, inherited from the
``mlgitops run`` process) and then runs the example's ``train.py`` in-process.

    .venv/bin/python bench/pipeline.py                   # interval 5 s, 3 commits per mode
    .venv/bin/python bench/pipeline.py --interval 2 --commits 1   # a quick run

Every figure is printed next to its baseline (the target, or the work itself) from this run.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import importlib.util
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
from flow import PHASES, Flow, HeadWatcher, alias_moved, git, validation_of

ROOT = Path(__file__).resolve().parent.parent
MLGITOPS = str(Path(sys.executable).with_name("mlgitops"))
TOKEN = "bench-webhook-token"
MODEL = "fraud.fraud_detector"
REGISTERED = f"{ENV}.{MODEL}"
NAME = "fraud-detector"
POLL = 0.05  # how often the benchmark looks at MLflow and the model server
OVERHEAD_TARGET = 5.0

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


def _commit(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=bench", "-c", "user.email=bench@localhost", "commit", "-qm", message)
    return git(repo, "rev-parse", "HEAD")


def make_code_repo(path: Path) -> None:
    shutil.copytree(ROOT / "examples/fraud_project", path, ignore=shutil.ignore_patterns("mlruns"))
    (path / "timed_train.py").write_text(WRAPPER)
    git(path, "init", "-q", "-b", "release")
    _commit(path, "The fraud detector's training code")


def make_config_repo(path: Path, code: Path) -> None:
    """The environment: one ModelDeployment trained from ``code``, validated on a holdout table
    (no worse than the champion by more than 0.05 of ROC AUC), promoted by the controller, served.
    The repository takes the controller's pushes into its checked-out branch."""
    folder = path / "environments" / ENV
    folder.mkdir(parents=True)
    (folder / "environment.yaml").write_text(
        f"apiVersion: mlgitops.io/v1alpha1\nkind: Environment\nmetadata:\n  name: {ENV}\n"
        f"spec:\n  catalog: {ENV}\n  namespace: {NS}\n"
    )
    (folder / f"{NAME}.yaml").write_text(
        f"""\
apiVersion: mlgitops.io/v1alpha1
kind: ModelDeployment
metadata:
  name: {NAME}
spec:
  model: {MODEL}
  promotion: {{policy: auto}}
  serving: {{enabled: true}}
  training:
    source: {{repo: {json.dumps(str(code))}, branch: release, paths: ["train.py", "params.json"]}}
    command: ["python", "timed_train.py"]
    retries: 0
  validation:
    data: {{uri: {ENV}/fraud/holdout, target: label}}
    thresholds:
      - {{metric: roc_auc, min: 0.8}}
      - {{metric: roc_auc, minChangeVsChampion: -0.05}}
"""
    )
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "receive.denyCurrentBranch", "updateInstead")
    _commit(path, "The bench environment")


def write_holdout(tables: Path) -> None:
    """The validation table: rows of the distribution the example project trains on."""
    from deltalake import write_deltalake

    spec = importlib.util.spec_from_file_location(
        "fraud_train", ROOT / "examples/fraud_project/train.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    features, label = module.dataset()  # the data of the distribution it trains on
    write_deltalake(str(tables / ENV / "fraud" / "holdout"), features.assign(label=label))


def _signed_post(port: int, repository: Path) -> None:
    body = json.dumps({"ref": "refs/heads/main", "repository": {"url": str(repository)}})
    sig = hmac.new(TOKEN.encode(), body.encode(), hashlib.sha256).hexdigest()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/webhook",
        data=body.encode(),
        headers={"X-Hub-Signature-256": f"sha256={sig}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        if not json.loads(answer.read())["accepted"]:
            raise SystemExit("the webhook did not accept the push")


class Pipeline:
    """``mlgitops run`` on the workspace, and what the benchmark reads of its MLflow store,
    its config repository and its model server."""

    def __init__(self, work: Path, interval: float) -> None:
        from mlflow import MlflowClient

        self.work, self.code, self.times = work, work / "code", work / "times"
        self.config, self.state = work / "config", work / "state"
        self.times.mkdir()
        make_code_repo(self.code)
        make_config_repo(self.config, self.code)
        self.state.mkdir()
        write_holdout(self.state / "tables")
        uri = f"sqlite:///{self.state / 'mlflow.db'}"
        self.client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        self.client.search_experiments()  # creates the store's tables before two processes race
        self.heads = HeadWatcher(self.config)
        self.port = free_port()
        self.url = ""  # the model server, once it serves
        self.log = (work / "run.log").open("w")
        self.proc = subprocess.Popen(
            [
                MLGITOPS,
                "run",
                "--env",
                ENV,
                "--repo",
                str(self.config),
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
        self.heads.stop()
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

    # -- what the benchmark reads ------------------------------------------------------------------

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
        """The version the run of ``sha`` registered (tagged PENDING as it was created)."""
        found = self.client.search_model_versions(f"name = '{REGISTERED}'")
        mine = [v for v in found if v.tags.get("mlgitops.trigger_key") == sha]
        return mine[0] if mine else None

    def script_times(self, sha: str) -> tuple[float, float]:
        stamps = json.loads((self.times / f"{sha}.json").read_text())
        return float(stamps["started"]), float(stamps["ended"])

    def serving(self) -> str | None:
        """The version the model server answers with as champion now."""
        if not self.url:
            status = subprocess.run(
                [MLGITOPS, "status", "--env", ENV, "--state-dir", str(self.state), "-o", "json"],
                capture_output=True,
                text=True,
                check=True,
            )
            model = json.loads(status.stdout)["models"][0]
            self.url = (model.get("serving") or {}).get("url", "")
            if not self.url:
                return None
        with urllib.request.urlopen(f"{self.url}/version", timeout=2) as answer:
            served = json.loads(answer.read())
        return str(((served.get("models") or {}).get("champion") or {}).get("version") or "")

    def push(self) -> None:
        _signed_post(self.port, self.code)

    # -- one commit, end to end --------------------------------------------------------------------

    def follow(self, sha: str, t0: float, mode: str) -> Flow:
        """Wait for the run of ``sha``, its version, and that version serving as champion."""
        flow = Flow(sha=sha, mode=mode, t0=t0)
        self.wait(f"the {mode} commit's run", lambda: self.started(sha))
        flow.started = time.time()
        flow.version = str(self.wait("its version", lambda: self.version_of(sha)).version)

        def serving() -> bool:
            tags = self.client.get_model_version(REGISTERED, flow.version).tags
            if (
                tags.get("model_validation_status") == "FAILED"
                or tags.get("mlgitops.comparison") == "LOST"
            ):
                raise SystemExit(f"version {flow.version} did not pass: {tags}")
            return self.serving() == flow.version

        self.wait(f"version {flow.version} serving as champion", serving)
        flow.served = time.time()
        self.complete(flow)
        return flow

    def complete(self, flow: Flow) -> None:
        """Fill in the boundaries recorded by MLflow, Git and the wrapper."""
        n = flow.version
        mv = self.client.get_model_version(REGISTERED, n)
        flow.registered = int(mv.creation_timestamp) / 1000
        flow.script = self.script_times(flow.sha)
        flow.validation = validation_of(self.client, mv.tags["mlgitops.validation.run_id"])
        for alias in ("challenger", "champion"):
            sha = self.heads.promotion(f"{ENV}/{NAME}/{alias}/v{n}")
            landed = self.heads.landed(sha) if sha else None
            moved = alias_moved(self.client, REGISTERED, n, alias, sha) if sha else None
            if landed is None or moved is None:
                raise SystemExit(f"no {alias} commit or alias move recorded for version {n}")
            setattr(flow, f"{alias}_commit", landed)
            setattr(flow, f"{alias}_alias", moved)

    # -- rollback ------------------------------------------------------------------------------------

    def rollback(self, current: str, previous: str, *, webhook: bool) -> dict[str, float]:
        """The promotion of ``current`` reverted; the time from the revert on the branch to ``previous``
        serving again, split at the alias's move back.

        Polling: ``mlgitops rollback`` (a person's, with a state directory of their own) pushes
        the revert; the clock starts when it lands on the branch. Webhook: ``git revert`` of the
        champion's promotion commit in the config repository, and a signed push to the webhook
        right after, where the clock starts (a plain revert: no process start between the
        revert landing and the push, which the next poll could otherwise pick up first).
        """
        if webhook:
            champion = self.heads.promotion(f"{ENV}/{NAME}/champion/v{current}")
            assert champion is not None
            author = ["-c", "user.name=bench", "-c", "user.email=bench@localhost"]
            git(self.config, *author, "revert", "--no-edit", champion)
            t0 = time.time()
            _signed_post(self.port, self.config)
        else:
            person = ["--repo", str(self.config), "--state-dir", str(self.work / "person")]
            ran = subprocess.run(
                [MLGITOPS, "rollback", NAME, "--env", ENV, *person],
                capture_output=True,
                text=True,
            )
            if ran.returncode != 0:
                raise SystemExit(f"mlgitops rollback failed: {ran.stderr.strip()}")
        revert = git(self.config, "rev-parse", "main")
        if not webhook:
            t0 = self.heads.landed(revert) or time.time()
        self.wait(f"version {previous} serving again", lambda: self.serving() == previous)
        served = time.time()
        moved = self.wait(
            "the alias history of the revert",
            lambda: alias_moved(self.client, REGISTERED, previous, "champion", revert),
        )
        return {"total": served - t0, "sync": moved - t0, "serve": served - moved}


def report_flows(flows: list[Flow], interval: float) -> bool:
    """d.: the total per mode, the phases (medians over every commit followed), the overhead."""
    ok = True
    modes = [m for m in ("polling", "webhook") if any(f.mode == m for f in flows)]
    total = statistics.median(f.total for f in flows)
    print(f"d. commit -> new champion serving: {len(flows)} commits followed end to end")
    for mode in modes:
        mine = [f for f in flows if f.mode == mode]
        figure(
            f"d. commit -> new champion serving, {mode} (median)",
            statistics.median(f.total for f in mine),
            statistics.median(f.script_seconds + f.evaluation for f in mine),
            "s",
        )
    print("   (baseline: the work itself, the script's own time + the validation run's)")
    print(f"   phases, median of the {len(flows)} commits (baseline: their median total):")

    def phase(name: str, values: list[float]) -> None:
        figure(f"   {name} (median)", statistics.median(values), total, "s")

    for name in PHASES:
        if name == "detect":
            for mode in modes:
                phase(f"detect, {mode}", [f.phases()[name] for f in flows if f.mode == mode])
        else:
            phase(name, [f.phases()[name] for f in flows])
    phase("of train: the script's own time", [f.script_seconds for f in flows])
    phase(
        "of validate: until the validation run (the job starting)",
        [f.validation.start - f.registered for f in flows if f.validation],
    )
    phase("of validate: the validation run", [f.evaluation for f in flows])
    compare = [f.validation.compare for f in flows if f.validation]
    if any(c is None for c in compare):
        print("   of the validation run: compare with the champion: no champion was evaluated")
    else:
        phase("of the validation run: compare with the champion", [c for c in compare if c])
    for mode in modes:
        target = OVERHEAD_TARGET + (interval if mode == "polling" else 0)
        mine = [f for f in flows if f.mode == mode]
        worst = max(f.overhead for f in mine)
        median = statistics.median(f.overhead for f in mine)
        figure(f"d. controller overhead to champion serving, {mode} (median)", median, target, "s")
        figure(f"d. controller overhead to champion serving, {mode} (worst)", worst, target, "s")
        each = ", ".join(f"{f.total:.1f}/{f.overhead:.1f}" for f in mine)
        print(f"info: {mode}, each commit's total/overhead (s): {each}")
        poll = f" + the poll interval ({target:g} s)" if mode == "polling" else ""
        ok &= verdict(
            worst <= target,
            f"the controller adds at most {OVERHEAD_TARGET:g} s{poll} to the script and the "
            f"validation run ({mode})",
        )
    print(
        "   (overhead: the total minus the script's own time and the validation run's: noticing "
        "the commit, the checkout, the jobs' processes starting and ending, registration, "
        "write-backs, syncs, the model server's swap)"
    )
    return ok


def run(work: Path, *, interval: float, commits: int) -> bool:
    pipeline = Pipeline(work, interval)
    ok = True
    try:
        head = git(pipeline.code, "rev-parse", "HEAD")
        first = pipeline.follow(head, time.time(), "first")
        served = [first.version]
        c = 0.5

        def change() -> str:
            nonlocal c
            c = round(c * 0.8, 4)
            (pipeline.code / "params.json").write_text(json.dumps({"C": c}) + "\n")
            return _commit(pipeline.code, f"C={c}")

        flows: list[Flow] = []
        polled: list[float] = []
        for i in range(commits):
            time.sleep(interval * (i + 0.5) / commits)  # commits land across the poll cycle
            t0 = time.time()
            flow = pipeline.follow(change(), t0, "polling")
            polled.append(flow.started - flow.t0)
            flows.append(flow)
            served.append(flow.version)

        pushed: list[float] = []
        overhead: list[float] = []
        script: list[float] = []
        webhook: list[Flow] = []
        for _ in range(commits + 1):  # one more: the champion the webhook's rollback reverts
            sha = change()
            t0 = time.time()
            pipeline.push()
            flow = pipeline.follow(sha, t0, "webhook")
            webhook.append(flow)
            served.append(flow.version)
            if len(webhook) == commits:  # e. polling: revert the last promotion, mid-cycle
                time.sleep(interval / 2)
                polled_back = pipeline.rollback(served[-1], served[-2], webhook=False)
                served.append(served[-2])
        flows += webhook
        webhook_back = pipeline.rollback(served[-1], served[-2], webhook=True)
        for flow in webhook[:commits]:
            pushed.append(flow.started - flow.t0)
            script.append(flow.script_seconds)
            overhead.append(flow.registered - flow.t0 - flow.script_seconds)

        print(f"training runs: {len(flows) + 1} on the local runtime, interval {interval:g} s")
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
        ok &= report_flows(flows, interval)
        (work / "flows.json").write_text(
            json.dumps([{**vars(f), "phases": f.phases()} for f in [first, *flows]], default=vars)
        )
        for mode, back, target in (
            ("polling", polled_back, interval + 1),
            ("webhook", webhook_back, 1.0),
        ):
            figure(
                f"e. revert pushed -> previous champion serving, {mode}", back["total"], target, "s"
            )
            figure(f"   revert -> alias moved back, {mode}", back["sync"], back["total"], "s")
            figure(f"   alias moved back -> served, {mode}", back["serve"], back["total"], "s")
            ok &= verdict(
                back["total"] <= target,
                f"a reverted promotion serves the previous champion within {target:g} s ({mode})",
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
