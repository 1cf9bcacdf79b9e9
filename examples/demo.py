"""``make demo``: the whole declarative loop on embedded defaults, in about a minute, on a fresh clone.

It builds a workspace (a Git repository holding a copy of ``environments/`` and a state directory
whose embedded MLflow store holds real scikit-learn models), then runs the same ``mlgitops``
commands a person would type, printing each one first so it can be replayed by hand. The commands
run in this process (the real CLI app) so MLflow is imported once, not once per step.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from rich.console import Console

from controller.cli import app

PROJECT = Path(__file__).resolve().parents[1]
console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
FRAUD_FILE = "environments/prod/fraud-detector.yaml"


def step(title: str) -> None:
    console.print(f"\n[bold cyan]== {title}[/]")


def git(repo: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Demo User",
        "GIT_AUTHOR_EMAIL": "demo@example.com",
        "GIT_COMMITTER_NAME": "Demo User",
        "GIT_COMMITTER_EMAIL": "demo@example.com",
    }
    console.print(f"[dim]$ git {' '.join(args)}[/]")
    done = subprocess.run(
        ["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True
    )
    return done.stdout.strip()


def mlgitops(workspace: Path, *args: str, expect: tuple[int, ...] = (0,)) -> int:
    shown = " ".join(args)
    console.print(f"[dim]$ mlgitops {shown}[/]")
    argv = [*args, "--state-dir", str(workspace / ".mlgitops")]
    if args[0] not in ("status", "batch"):
        argv += ["--repo", str(workspace / "config")]
    # With standalone_mode=False, Click returns the code of a typer.Exit instead of exiting.
    returned = app(argv, prog_name="mlgitops", standalone_mode=False)
    code = returned if isinstance(returned, int) else 0
    sys.stdout.flush()
    if code not in expect:
        raise SystemExit(f"demo: `mlgitops {shown}` exited {code}, expected {expect}")
    return code


def start_runtime(ws: Path) -> subprocess.Popen[bytes]:
    args = [
        "run",
        "--env",
        "prod",
        "--repo",
        str(ws / "config"),
        "--state-dir",
        str(ws / ".mlgitops"),
        "--interval",
        "1",
    ]
    console.print(f"[dim]$ mlgitops {' '.join(args)} &[/]")
    log = open(ws / "run.log", "wb")  # noqa: SIM115 - the child writes it
    proc = subprocess.Popen(
        [sys.executable, "-m", "controller", *args], stdout=log, stderr=subprocess.STDOUT
    )
    log.close()
    return proc


def stop_runtime(proc: subprocess.Popen[bytes]) -> None:
    console.print("[dim]$ kill -TERM <mlgitops run>[/]")
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    console.print(f"  mlgitops run stopped (exit {proc.returncode}); its servers are gone")


def wait_served(state: Path, champions: dict[str, str], timeout: float = 120) -> dict[str, str]:
    """Wait until `mlgitops run` serves these champions, ready; return the models' URLs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            doc = json.loads((state / "envs/prod/status.json").read_text())
            serving = {n: r["status"].get("serving") or {} for n, r in doc["models"].items()}
            if all(
                serving[n].get("champion") == v and serving[n].get("rolledOut")
                for n, v in champions.items()
            ):
                return {n: s["url"] for n, s in serving.items() if s}
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.5)
    raise SystemExit(f"demo: the local runtime did not serve {champions} in {timeout:.0f} s")


def wait_trained(state: Path, runs: int, timeout: float = 180) -> str:
    """Wait until fraud-detector's training has succeeded ``runs`` times; the version made."""
    deadline = time.monotonic() + timeout
    seen: set[str] = set()
    while time.monotonic() < deadline:
        try:
            doc = json.loads((state / "envs/prod/status.json").read_text())
            last = doc["models"]["fraud-detector"]["status"]["training"]["lastRun"]
            if last["state"] == "Succeeded":
                seen.add(last["version"])
            elif last["state"] == "Failed":
                raise SystemExit(f"demo: training failed: {last.get('reason')}")
            if len(seen) >= runs:
                return str(last["version"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
        time.sleep(0.5)
    raise SystemExit(f"demo: fraud-detector did not train {runs} time(s) in {timeout:.0f} s")


def holdout_table(tables: Path) -> None:
    """prod/fraud/holdout: labelled transactions the training project's model is validated on."""
    from deltalake import write_deltalake

    from examples.models import transactions

    write_deltalake(str(tables / "prod/fraud/holdout"), transactions())


def _version_tags(state: Path, version: str) -> dict[str, str]:
    from mlflow import MlflowClient

    uri = f"sqlite:///{state / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    return dict(client.get_model_version("prod.fraud.fraud_detector", version).tags)


def wait_validated(state: Path, version: str, timeout: float = 180) -> str:
    """The validation verdict of fraud-detector ``version``, once there is one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tags = _version_tags(state, version)
        verdict = tags.get("model_validation_status")
        if verdict in ("PASSED", "FAILED"):
            failed = tags.get("mlgitops.validation.failed_checks")
            return verdict + (f" ({failed})" if failed else "")
        if tags.get("mlgitops.validation.error"):
            raise SystemExit(f"demo: validation could not run: {tags['mlgitops.validation.error']}")
        time.sleep(0.5)
    raise SystemExit(f"demo: version {version} was not validated in {timeout:.0f} s")


def validation_of(state: Path, version: str) -> str:
    verdict = wait_validated(state, version)
    tags = _version_tags(state, version)
    return f"{verdict}, comparison {tags.get('mlgitops.comparison')}: {tags.get('mlgitops.comparison.detail')}"


def wait_branch(config: Path, branch: str, timeout: float = 180) -> str:
    """Wait until mlgitops has pushed ``branch`` to the config repository."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = subprocess.run(
            ["git", "-C", str(config), "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"],
            capture_output=True,
        )
        if found.returncode == 0:
            return branch
        time.sleep(0.5)
    raise SystemExit(f"demo: no branch {branch} in {timeout:.0f} s")


def show_prediction(url: str, when: str) -> None:
    from examples.models import dataset

    x, _ = dataset("classifier")
    rows = x.iloc[[0, 38, 205, 255]]  # rows 38, 205, 255: versions 2 and 3 disagree
    body = json.dumps(
        {"dataframe_split": {"columns": list(rows.columns), "data": rows.values.tolist()}}
    ).encode()
    console.print(
        f"[dim]$ curl -s {url}/invocations -H 'Content-Type: application/json' "
        "-d '{\"dataframe_split\": ...}'   # 4 rows of breast_cancer[/]"
    )
    request = urllib.request.Request(
        f"{url}/invocations",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "X-Routing-Key": "demo-client"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        version = response.headers.get("X-Model-Version")
        role = response.headers.get("X-Model-Role")
        predictions = json.loads(response.read())["predictions"]
    console.print(f"  {when}: served by version {version} ({role}): predictions {predictions}")


def set_champion(path: Path, version: str) -> None:
    text = path.read_text()
    start = text.index("  champion:\n")
    end = text.index("\n", text.index("version:", start))
    text = text[:start] + f'  champion:\n    version: "{version}"' + text[end:]
    # The challenger is being promoted: drop it and its traffic share.
    text = text.replace('  challenger:\n    version: "3"\n', "")
    text = text.replace("    traffic: {challenger: 10}\n", "")
    path.write_text(text)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--workspace",
        type=Path,
        default=PROJECT / ".demo",
        help="Where to build the demo (wiped first). Default: ./.demo",
    )
    parser.add_argument(
        "--ui",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="At the end, serve the dashboard on --ui-port until Ctrl-C. Default: when run "
        "from a terminal; otherwise the command that starts it is printed.",
    )
    parser.add_argument("--ui-port", type=int, default=8700, help="The dashboard's port.")
    args = parser.parse_args(argv)
    started = time.monotonic()
    logging.getLogger("mlflow").setLevel(logging.WARNING)  # schema-migration chatter
    ws: Path = args.workspace.resolve()
    if ws.exists():
        shutil.rmtree(ws)
    config, state = ws / "config", ws / ".mlgitops"
    config.mkdir(parents=True)

    step("1. A config repository with one folder per environment")
    shutil.copytree(PROJECT / "environments", config / "environments")
    code = ws / "fraud-code"  # the fraud detector's training code, on its release branch
    shutil.copytree(PROJECT / "examples/fraud_project", code)
    git(code, "init", "-q", "-b", "release")
    git(code, "add", "-A")
    git(code, "commit", "-q", "-m", "The fraud detector's training code")
    fraud = config / FRAUD_FILE
    fraud.write_text(
        fraud.read_text()
        .replace("https://git.example.com/ml/fraud-detector.git", str(code))
        .replace('paths: ["src/**", "train.py"]', 'paths: ["train.py", "params.json"]')
        # The seeded champion was trained on other features than the training project's, so
        # an offline comparison with it cannot be made here: the absolute thresholds decide.
        .replace("      - {metric: roc_auc, minChangeVsChampion: 0.0}\n", "")
    )
    git(config, "init", "-q", "-b", "main")
    # mlgitops pushes its promotion commits here (a checked-out branch: updateInstead).
    git(config, "config", "receive.denyCurrentBranch", "updateInstead")
    git(config, "add", "-A")
    git(config, "commit", "-q", "-m", "Add dev, staging and prod environments")
    for env_dir in sorted((config / "environments").iterdir()):
        console.print(
            f"  {env_dir.relative_to(config)}/: {', '.join(sorted(p.name for p in env_dir.iterdir()))}"
        )

    step("2. An embedded MLflow registry (SQLite) with real scikit-learn models")
    from controller.registry import embedded_tracking_uri
    from examples.models import seed

    t0 = time.monotonic()
    created = seed(
        tracking_uri=embedded_tracking_uri(state),
        artifact_dir=state / "artifacts",
        catalogs=("dev", "staging", "prod"),
    )
    for name, versions in created.items():
        console.print(f"  {name}: versions {', '.join(versions)} (model_validation_status=PASSED)")
    console.print(
        f"  [dim]trained and registered in {time.monotonic() - t0:.1f} s; store: {state}/mlflow.db[/]"
    )

    holdout_table(state / "tables")

    step("3. Lint every environment, as a pull-request check would")
    mlgitops(ws, "validate")

    step("4. Sync each environment: the registry aliases follow Git")
    for env in ("dev", "staging", "prod"):
        mlgitops(ws, "diff", "--env", env, expect=(1,))
        mlgitops(ws, "sync", "--env", env)
    mlgitops(ws, "status", "--env", "prod")

    step("5. Serve the prod models locally: mlgitops run (one model server per model)")
    runner = start_runtime(ws)
    try:
        urls = wait_served(state, {"fraud-detector": "2", "churn-predictor": "1"})
        for name, url in urls.items():
            console.print(f"  {name}: {url}")
        show_prediction(urls["fraud-detector"], "before the promotion")

        step("6. Promote: a commit makes fraud-detector v3 the prod champion")
        set_champion(config / FRAUD_FILE, "3")
        git(config, "commit", "-q", "-am", "Promote fraud-detector v3 to prod champion")
        promotion = git(config, "rev-parse", "--short", "HEAD")
        mlgitops(ws, "diff", "--env", "prod", expect=(0, 1))  # `run` may have applied it already
        wait_served(state, {"fraud-detector": "3"})
        mlgitops(ws, "status", "--env", "prod")
        show_prediction(urls["fraud-detector"], "after the promotion (same URL, no restart)")

        step("7. Roll back with git revert: champion and challenger return")
        git(config, "revert", "--no-edit", promotion)
        wait_served(state, {"fraud-detector": "2"})
        mlgitops(ws, "status", "--env", "prod")
        show_prediction(urls["fraud-detector"], "after the revert")

        step("8. Deploy code, not models: the release branch trains, validates, proposes")
        first = wait_trained(state, 1)  # its release branch was trained once, when first seen
        console.print(f"  the release branch's head trained: version {first} (PENDING)")
        branch = wait_branch(config, f"mlgitops/promote/prod/fraud-detector-challenger-v{first}")
        console.print(f"  validated: {validation_of(state, first)}")
        mlgitops(ws, "status", "--env", "prod")
        console.print(f"  promotion.policy is manual: a reviewer merges {branch}")
        git(config, "merge", "-q", "--no-edit", branch)
        branch = wait_branch(config, f"mlgitops/promote/prod/fraud-detector-v{first}")
        console.print(f"  challenger {first} WON: the champion proposal waits on {branch}")
        git(config, "merge", "-q", "--no-edit", branch)
        wait_served(state, {"fraud-detector": first})
        console.print(f"  prod serves fraud-detector v{first}, trained from code")
        for line in git(config, "log", "--format=%h %s", "-4").splitlines():
            console.print(f"  {line}", markup=False)

        step("9. mlgitops rollback: the revert of the promotion commit, pushed; never re-proposed")
        mlgitops(ws, "rollback", "fraud-detector", "--env", "prod", "--repo", str(config))
        wait_served(state, {"fraud-detector": "2"})
        mlgitops(ws, "status", "--env", "prod")

        step("10. A worse model: its code shuffles the labels; validation FAILS, champion stays")
        train = code / "train.py"
        train.write_text(
            train.read_text().replace(
                "    model.fit(x_train, y_train)",
                "    model.fit(x_train, y_train.sample(frac=1, random_state=1).to_numpy())",
            )
        )
        git(code, "commit", "-q", "-am", "Refactor the training loop (with a bug)")
        worse = wait_trained(state, 2)
        verdict = wait_validated(state, worse)
        console.print(f"  version {worse}: {verdict}")
        mlgitops(ws, "runs", "fraud-detector", "--env", "prod")
        wait_served(state, {"fraud-detector": "2"})
        console.print("  prod still serves fraud-detector v2: nothing was proposed")
    finally:
        stop_runtime(runner)

    step("11. Batch inference, as the batch CronJob runs it: @champion, resolved at the start")
    from deltalake import DeltaTable, write_deltalake

    from examples.models import dataset

    features, _ = dataset("classifier")
    tables = state / "tables"
    write_deltalake(str(tables / "prod/fraud/transactions_daily"), features.head(50))
    console.print(f"  input: 50 rows in the Delta table {tables}/prod/fraud/transactions_daily")
    mlgitops(
        ws,
        "batch",
        "--model",
        "models:/prod.fraud.fraud_detector@champion",
        "--input",
        "prod/fraud/transactions_daily",
        "--output",
        "prod/fraud/scores_daily",
    )
    scored = DeltaTable(str(tables / "prod/fraud/scores_daily")).to_pandas()
    counts = scored.groupby(["batch_id", "model_version"]).size().to_dict()
    for (batch_id, version), rows in counts.items():
        positives = int(scored[scored.batch_id == batch_id]["prediction"].sum())
        console.print(
            f"  batch {batch_id}: {rows} rows scored by version {version}, {positives} flagged"
        )

    step("12. The history, as recorded on the model versions in the registry")
    mlgitops(ws, "history", "--env", "prod", "--model", "fraud-detector")

    rel = ws.relative_to(PROJECT) if ws.is_relative_to(PROJECT) else ws
    console.print(
        f"\n[bold green]Demo finished in {time.monotonic() - started:.0f} s.[/] Explore it:\n"
        f"  .venv/bin/mlgitops status --env prod --state-dir {rel}/.mlgitops\n"
        f"  .venv/bin/mlgitops diff --env staging --repo {rel}/config --state-dir {rel}/.mlgitops"
    )
    serve = args.ui if args.ui is not None else sys.stdin.isatty() and sys.stdout.isatty()
    ui = f"mlgitops ui --state-dir {rel}/.mlgitops --repo {rel}/config --port {args.ui_port}"
    if not serve:
        console.print(f"  .venv/bin/{ui}   # the dashboard, http://127.0.0.1:{args.ui_port}/")
        return
    step("13. The dashboard: environments x models x versions (Ctrl-C stops it)")
    code = mlgitops(ws, "ui", "--port", str(args.ui_port), expect=(0, 2))
    if code:
        console.print(f"  the dashboard did not start; try another port: .venv/bin/{ui}")


if __name__ == "__main__":
    main()
