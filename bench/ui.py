"""The dashboard's overview at scale: 1,000 ModelDeployments across 3 environments.

It writes a state directory as ``mlgitops sync`` leaves it (one status record per environment,
each model's status built by the real summarizer, a few Stalled and Progressing), then measures:

- the overview rendered on the server (``views.overview`` then the template), the issue's target
  being 300 ms or less, beside the JSON API's encoding of the same data as this run's baseline;
- the same through a real ``mlgitops ui`` process: ``GET /`` (reading the status records
  included) against ``GET /api/overview``;
- the page's weight, raw and gzipped, against the JSON's.

Usage: python bench/ui.py [--models 1000] [--envs 3] [--repeat 15] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from common import figure, verdict, working_directory

TARGET_MS = 300.0
ENVS = ("dev", "staging", "prod")


def status_of(i: int, env: str, revision: str) -> dict[str, Any]:
    """A ModelDeployment's status as the summarizer writes it: most Ready and served with a
    challenger share, every 50th Stalled on a refused file, every 20th still rolling out."""
    from controller.api.status import HistoryEntry, ServingStatus, VersionStatus
    from controller.planning.summarize import Outcome, dump, summarize

    champion, challenger = str(1 + i % 7), str(2 + i % 7)
    stalled = i % 50 == 7
    rolling = i % 20 == 3
    outcome = Outcome(
        attempted=revision,
        applied=not stalled,
        reason="InvalidRevision" if stalled else "Reconciled",
        message=f"environments/{env}/model-{i:04d}.yaml:12: spec.replicaz: unknown field"
        if stalled
        else f"Applied revision {revision[:7]}: champion {champion}, challenger {challenger}",
        stalled=stalled,
        progressing="serving 1/2 replicas ready" if rolling else None,
    )
    previous = None
    if stalled:  # a refused revision keeps the last good state: summarize one first
        previous = summarize(
            previous=None,
            outcome=Outcome(attempted="0" * 40, applied=True, reason="Reconciled", message="ok"),
            generation=1,
            now="2026-12-01T09:00:00Z",
            registered_model=f"{env}.bench.model_{i:04d}",
            champion=VersionStatus(version=champion, validation_status="PASSED"),
        )
    status = summarize(
        previous=previous,
        outcome=outcome,
        generation=2,
        now="2026-12-01T10:00:00Z",
        registered_model=f"{env}.bench.model_{i:04d}",
        champion=VersionStatus(version=champion, run_id="r" * 32, validation_status="PASSED"),
        challenger=VersionStatus(version=challenger, validation_status="PENDING"),
        events=[
            HistoryEntry(
                alias="challenger",
                version=challenger,
                previous=champion,
                revision=revision,
                reason=f"revision {revision[:7]}: bench",
                time="2026-12-01T10:00:00Z",
            )
        ],
        serving=ServingStatus(
            url=f"http://127.0.0.1:{9000 + i % 1000}",
            replicas=2,
            ready_replicas=1 if rolling else 2,
            updated_replicas=2,
            champion=champion,
            challenger=challenger,
            challenger_traffic=10,
            rolled_out=not rolling,
        ),
    )
    return dump(status)


def write_state(root: Path, models: int, envs: tuple[str, ...]) -> None:
    for n, env in enumerate(envs):
        revision = f"{n + 1:x}" * 40
        records = {
            f"model-{i:04d}": {"generation": 2, "status": status_of(i, env, revision[:40])}
            for i in range(models)
        }
        folder = root / "envs" / env
        folder.mkdir(parents=True, exist_ok=True)
        doc = {
            "environment": env,
            "lastAppliedRevision": revision[:40],
            "lastAttemptedRevision": revision[:40],
            "problems": [],
            "registry": "sqlite:////bench/mlflow.db",
            "source": "/bench/config",
            "updated": "2026-12-01T10:00:00Z",
            "models": records,
        }
        (folder / "status.json").write_text(json.dumps(doc))


def median_ms(fn: Any, repeat: int) -> float:
    fn()  # warm: templates compiled, caches filled
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def _unused(_: str | None) -> Any:
    raise RuntimeError("the overview reads no registry")


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as response:
        return bytes(response.read())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--models", type=int, default=1000, help="ModelDeployments per environment")
    parser.add_argument("--envs", type=int, default=3, choices=(1, 2, 3))
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    envs = ENVS[: args.envs]

    from controller.local.dashboard import LocalCollector
    from controller.state import StateDir
    from controller.ui import pages, views

    with working_directory(args.workdir, parser, prefix="mlgitops-bench-ui-") as work:
        state = work / "state"
        write_state(state, args.models, envs)
        collector = LocalCollector(StateDir(state), registry_for=_unused, tracking_for=_unused)
        snaps = collector.snapshots()
        shown = sum(len(s.models) for s in snaps)
        print(
            f"overview of {args.models} ModelDeployments x {len(envs)} environments ({shown} cells)"
        )

        data = views.overview(snaps, now="2026-12-01T10:00:00Z")
        render_ms = median_ms(
            lambda: pages.overview(
                views.overview(snaps, now="2026-12-01T10:00:00Z"), root="/", source="bench"
            ),
            args.repeat,
        )
        json_ms = median_ms(
            lambda: json.dumps(views.overview(snaps, now="2026-12-01T10:00:00Z")), args.repeat
        )
        read_ms = median_ms(collector.snapshots, args.repeat)
        figure("overview render, server side (median)", render_ms, json_ms, "ms")
        figure("status records read (median)", read_ms, json_ms, "ms")

        html = pages.overview(data, root="/", source="bench").encode()
        api = json.dumps(data).encode()
        figure("page weight (KiB)", len(html) / 1024, len(api) / 1024, "KiB")
        figure(
            "page weight gzipped (KiB)",
            len(gzip.compress(html)) / 1024,
            len(gzip.compress(api)) / 1024,
            "KiB",
        )

        proc = subprocess.Popen(
            [sys.executable, "-m", "controller", "ui", "--state-dir", str(state), "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "MLGITOPS_UI_TOKEN": ""},
        )
        try:
            assert proc.stdout is not None
            url = ""
            for line in proc.stdout:
                found = re.search(r"(http://\S+?)/? ", line)
                if found:
                    url = found.group(1)
                    break
            if not url:
                print("mlgitops ui did not start", file=sys.stderr)
                return 1
            page_ms = median_ms(lambda: fetch(url + "/"), args.repeat)
            api_ms = median_ms(lambda: fetch(url + "/api/overview"), args.repeat)
            figure("GET / through mlgitops ui (median)", page_ms, api_ms, "ms")
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            if proc.stdout is not None:
                proc.stdout.close()

        ok = verdict(
            render_ms <= TARGET_MS,
            f"overview render <= {TARGET_MS:.0f} ms ({render_ms:.1f} ms for {shown} cells)",
        )
        rows = len(re.findall(rb"<tr data-model=", html))
        ok &= verdict(rows == args.models, f"every model has its row ({rows} of {args.models})")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
