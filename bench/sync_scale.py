"""How a sync scales with the number of models in one environment, in time and registry requests.

A GitOps controller re-reads the whole desired state on every pass (it is level-based), so the
cost of a pass that changes nothing is what an environment with many models pays every few
seconds, forever. This benchmark builds one environment of N ModelDeployments in a real Git
repository and a SQLite-backed MLflow registry holding N models with 3 versions each, then
measures:

a. read+plan of one revision (Git read, YAML parse, schema validation, pure planning; no
   registry I/O), against merely ``yaml.safe_load``-ing the same bytes; target <= 2 s.
b. the first sync, which sets every alias (N champions + N/2 challengers).
c. a no-op sync right after: registry requests counted at the adapter (``MlflowRegistry.stats``);
   target 0 writes and at most one read per model.
d. a commit that bumps the champion of K models, then a sync: target exactly K alias writes.

The machines are shared and noisy, so every figure is printed next to a baseline measured in the
same run and only the ratios are meant to be compared. It is a benchmark, not a test: a missed
target prints FAIL but exits 0; only a sync that errors exits 1.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"

import yaml
from common import (
    CATALOG,
    ENV,
    environment_yaml,
    figure,
    make_registry,
    model_name,
    verdict,
    working_directory,
)

from controller.engine import SyncResult, load_desired, reconcile
from controller.planning import Observed, plan, versions_to_inspect
from controller.planning.ports import Registry
from controller.registry import MlflowRegistry
from controller.sources import GitSource
from controller.state import StateDir

FOLDER = f"environments/{ENV}"
READ_PLAN_TARGET_S = 2.0
REPEATS = 3
VERSIONS_PER_MODEL = 3
GIT_IDENTITY = ("-c", "user.name=mlgitops bench", "-c", "user.email=bench@localhost")


# --- the config repository ----------------------------------------------------------------------


def _git(repo: Path, *args: str, stdin: bytes | None = None) -> bytes:
    return subprocess.run(
        ["git", *GIT_IDENTITY, "-c", "commit.gpgsign=false", *args],
        cwd=repo,
        input=stdin,
        check=True,
        capture_output=True,
    ).stdout


def _deployment_yaml(i: int, *, champion: str) -> str:
    """A ModelDeployment as a team would write it; optional blocks vary with ``i``."""
    schema, name = model_name(i).split(".")
    has_challenger = i % 2 == 0
    lines = [
        f"# Model {name} of schema {schema}.",
        "apiVersion: mlgitops.io/v1alpha1",
        "kind: ModelDeployment",
        "metadata:",
        f"  name: {name}",
        "  labels: {team: " + schema + "}",
        "spec:",
        f"  model: {schema}.{name}            # registered as {CATALOG}.{schema}.{name}",
        "  champion:",
        f'    version: "{champion}"',
    ]
    if has_challenger:
        lines += ["  challenger:", '    version: "2"']
    lines += ["  promotion:", f"    policy: {('auto', 'manual', 'disabled')[i % 3]}"]
    if i % 5 == 0:
        lines += [
            "  training:",
            "    source:",
            f"      repo: https://git.example.com/ml/{name}.git",
            "      branch: release",
            '      paths: ["src/**", "train.py"]',
            '    command: ["python", "train.py"]',
            f"    image: registry.example.com/{name}-train:{{commit}}",
            f'    schedule: "{i % 60} 3 * * 0"',
        ]
    if i % 3 == 0:
        lines += [
            "  validation:",
            f"    data: {{uri: {CATALOG}/{schema}/{name}_holdout, target: label}}",
            "    thresholds:",
            "      - {metric: roc_auc, min: 0.80}",
            "      - {metric: roc_auc, minChangeVsChampion: 0.0}",
            "    slices:",
            "      - name: large_amounts",
            '        where: "amount > 1000"',
            "        thresholds: [{metric: recall, min: 0.7}]",
            "    requiredTags: [owner]",
        ]
    lines += ["  serving:", "    enabled: true", f"    replicas: {1 + i % 3}"]
    if has_challenger and i % 4 == 0:
        lines.append("    traffic: {challenger: 10}")
    if i % 6 == 0:  # monitored: what the model servers log
        lines.append(f"    inferenceTable: {CATALOG}/{schema}/{name}_requests")
    if i % 4 == 1:
        lines += [
            "  batchInference:",
            f'    schedule: "{i % 60} 11 * * *"',
            f"    input: {CATALOG}/{schema}/{name}_daily",
            f"    output: {CATALOG}/{schema}/{name}_scores",
        ]
    if i % 6 == 0:
        lines += [
            "  monitoring:",
            '    schedule: "0 8 * * *"',
            f"    baseline: {CATALOG}/{schema}/{name}_baseline",
            "    drift: {method: psi, threshold: 0.2}",
            "    retrain: {violations: 2, windows: 5}",
        ]
    return "\n".join(lines) + "\n"


def _write_deployment(repo: Path, i: int, *, champion: str) -> None:
    (repo / FOLDER / f"m{i}.yaml").write_text(_deployment_yaml(i, champion=champion))


def make_repo(repo: Path, *, models: int, tracking_uri: str) -> None:
    (repo / FOLDER).mkdir(parents=True)
    _git(repo, "init", "-q", "-b", "main")
    (repo / FOLDER / "environment.yaml").write_text(environment_yaml(tracking_uri))
    for i in range(models):
        _write_deployment(repo, i, champion="1")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", f"bench: {models} ModelDeployments")


def read_blobs(repo: Path) -> list[bytes]:
    """The bytes of every file of the environment folder at HEAD, via ``git cat-file --batch``."""
    listing = _git(repo, "ls-tree", "HEAD", f"{FOLDER}/").decode().splitlines()
    shas = [line.split()[2] for line in listing if line.split()[1] == "blob"]
    raw = _git(repo, "cat-file", "--batch", stdin="".join(f"{s}\n" for s in shas).encode())
    blobs: list[bytes] = []
    pos = 0
    for _ in shas:
        header_end = raw.index(b"\n", pos)
        size = int(raw[pos:header_end].split()[2])
        blobs.append(raw[header_end + 1 : header_end + 1 + size])
        pos = header_end + 1 + size + 1  # content, then a newline
    return blobs


# --- measuring ----------------------------------------------------------------------------------


class Passes:
    """A ``registry_for`` factory that builds a fresh adapter per pass and keeps it for its stats."""

    def __init__(self, tracking_uri: str) -> None:
        self.tracking_uri = tracking_uri
        self.made: list[MlflowRegistry] = []

    def __call__(self, tracking_uri: str | None) -> Registry:
        if tracking_uri != self.tracking_uri:
            raise AssertionError(f"unexpected tracking URI {tracking_uri!r}")
        registry = MlflowRegistry(tracking_uri)
        self.made.append(registry)
        return registry


def best_of(repeats: int, fn: Callable[[], Any]) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


class SyncFailed(Exception):
    pass


def sync(
    step: str, *, repo: Path, state: StateDir, passes: Passes
) -> tuple[SyncResult, MlflowRegistry, float]:
    source = GitSource(str(repo), cache_dir=state.git_cache)
    before = len(passes.made)
    start = time.perf_counter()
    try:
        result = reconcile(env=ENV, source=source, registry_for=passes, store=state, rev=None)
    finally:
        source.close()
    wall = time.perf_counter() - start
    if result.error is not None:
        raise SyncFailed(f"{step}: {type(result.error).__name__}: {result.error}")
    if len(passes.made) != before + 1:
        raise SyncFailed(f"{step}: expected one registry adapter per pass")
    registry = passes.made[-1]
    print(f"{step} requests by call: {dict(sorted(registry.stats.by_call.items()))}", flush=True)
    return result, registry, wall


def run(workdir: Path, *, models: int, changed: int) -> bool:
    """Every step; returns whether all targets were met. Raises SyncFailed if a sync errors."""
    repo, state = workdir / "repo", StateDir(workdir / "state")
    db = (workdir / "mlflow.db").resolve()
    tracking_uri = f"sqlite:///{db}"
    challengers = (models + 1) // 2  # every even-numbered model has one

    # 1. setup -----------------------------------------------------------------------------------
    start = time.perf_counter()
    make_repo(repo, models=models, tracking_uri=tracking_uri)
    git_s = time.perf_counter() - start
    print(f"setup: Git repository with {models} ModelDeployments in {git_s:.2f} s", flush=True)
    start = time.perf_counter()
    make_registry(
        tracking_uri, models=models, versions=VERSIONS_PER_MODEL, source=str(workdir / "artifacts")
    )
    reg_s = time.perf_counter() - start
    print(
        f"setup: MLflow registry with {models} models x {VERSIONS_PER_MODEL} versions "
        f"({models * VERSIONS_PER_MODEL} versions) in {reg_s:.2f} s "
        f"({reg_s / max(1, models * VERSIONS_PER_MODEL) * 1000:.1f} ms per version)",
        flush=True,
    )

    # 2a. read+plan one revision (registry I/O excluded: observed is read beforehand) -------------
    blobs = read_blobs(repo)
    source = GitSource(str(repo), cache_dir=state.git_cache)
    try:
        _, desired = load_desired(source, env=ENV, rev=None)
    finally:
        source.close()
    observer = MlflowRegistry(tracking_uri)
    observed: Observed = observer.observe(
        catalog=CATALOG, inspect=lambda aliases: versions_to_inspect(desired, aliases)
    )

    def read_and_plan() -> None:
        src = GitSource(str(repo), cache_dir=state.git_cache)
        try:
            _, want = load_desired(src, env=ENV, rev=None)
        finally:
            src.close()
        result = plan(want, observed)
        if result.problems or len(result.changes) != models + challengers:
            raise SyncFailed(f"read+plan: unexpected plan {result.problems[:3]}")

    read_plan_s = best_of(REPEATS, read_and_plan)
    safe_load_s = best_of(REPEATS, lambda: [yaml.safe_load(b) for b in blobs])
    c_load_s = best_of(
        REPEATS, lambda: [yaml.load(b, Loader=yaml.CSafeLoader) for b in blobs]
    )  # what the loader itself uses when libyaml is present
    figure(f"read+plan one revision ({len(blobs)} files)", read_plan_s, safe_load_s, "s")
    figure("read+plan one revision vs target", read_plan_s, READ_PLAN_TARGET_S, "s")
    figure("read+plan one revision vs CSafeLoader parse (info)", read_plan_s, c_load_s, "s")

    ok = verdict(
        read_plan_s <= READ_PLAN_TARGET_S,
        f"read+plan <= {READ_PLAN_TARGET_S:g} s ({read_plan_s:.3f} s)",
    )

    # 2b. first sync: every alias set --------------------------------------------------------------
    passes = Passes(tracking_uri)
    _, first, first_s = sync("first sync", repo=repo, state=state, passes=passes)
    figure("first sync wall", first_s, read_plan_s, "s")
    figure("first sync alias_writes", first.stats.alias_writes, models + challengers)
    figure("first sync writes", first.stats.writes, 2 * (models + challengers))
    figure("first sync reads", first.stats.reads, models)
    ok &= verdict(
        first.stats.alias_writes == models + challengers,
        f"first sync alias_writes == N + N/2 ({first.stats.alias_writes} vs {models + challengers})",
    )

    # 2c. no-op sync right after ----------------------------------------------------------------
    _, noop, noop_s = sync("no-op sync", repo=repo, state=state, passes=passes)
    figure("no-op sync reads", noop.stats.reads, models)  # the floor: one read per model
    figure("no-op sync writes", noop.stats.writes, 0)
    figure("no-op sync wall", noop_s, read_plan_s, "s")
    ok &= verdict(noop.stats.writes == 0, f"no-op sync writes == 0 ({noop.stats.writes})")
    ok &= verdict(
        noop.stats.reads <= models,
        f"no-op sync reads <= 1 per model ({noop.stats.reads} for {models} models)",
    )

    # 2d. bump the champion of K models, commit, sync --------------------------------------------
    step = max(1, models // changed)
    bumped = list(range(0, models, step))[:changed]
    for i in bumped:
        _write_deployment(repo, i, champion="3")
    _git(repo, "commit", "-q", "-a", "-m", f"bench: promote version 3 of {changed} models")
    _, change, change_s = sync(f"change {changed}", repo=repo, state=state, passes=passes)
    figure(f"change {changed} alias_writes", change.stats.alias_writes, changed)
    # One alias write plus one history tag per change is what the adapter is designed to do.
    figure(f"change {changed} writes", change.stats.writes, 2 * changed)
    figure(f"change {changed} reads", change.stats.reads, noop.stats.reads)
    figure(f"change {changed} wall", change_s, noop_s, "s")
    ok &= verdict(
        change.stats.alias_writes == changed,
        f"change alias_writes == K ({change.stats.alias_writes} vs {changed})",
    )
    return ok


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--models", type=int, default=1000, help="N ModelDeployments (1000)")
    parser.add_argument("--changed", type=int, default=10, help="K champions to bump (10)")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="empty directory to work in, kept afterwards (default: a temp dir, removed)",
    )
    args = parser.parse_args(argv)
    if args.models < 1 or not 1 <= args.changed <= args.models:
        parser.error("need --models >= 1 and 1 <= --changed <= --models")
    with working_directory(args.workdir, parser, prefix="mlgitops-bench-") as work:
        print(
            f"sync_scale: {args.models} models, {args.changed} changed, workdir {work}", flush=True
        )
        try:
            ok = run(work, models=args.models, changed=args.changed)
        except SyncFailed as exc:
            print(f"ERROR {exc}", file=sys.stderr, flush=True)
            return 1
    print(f"targets: {'all met' if ok else 'some missed (see FAIL lines)'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
