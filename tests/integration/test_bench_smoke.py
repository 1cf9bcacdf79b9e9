"""The sync benchmark still runs end to end, on tiny sizes (not a timed test).

Only the request counts and the verdicts on them are asserted, never the times: they are exact
whatever the machine's load.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "sync_scale.py"


def _figure(output: str, name: str) -> int:
    """The value of ``name: value  (baseline: ..., ratio: ...)`` in the benchmark's output."""
    found = re.findall(rf"^{re.escape(name)}: (\d+)  \(baseline: ", output, flags=re.MULTILINE)
    assert len(found) == 1, f"expected one {name!r} line in:\n{output}"
    return int(found[0])


def test_sync_scale_runs_on_tiny_sizes(tmp_path: Path) -> None:
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    proc = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            "--models",
            "20",
            "--changed",
            "3",
            "--workdir",
            str(tmp_path),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    out = proc.stdout
    assert _figure(out, "first sync alias_writes") == 20 + 10
    assert _figure(out, "no-op sync writes") == 0
    assert _figure(out, "change 3 alias_writes") == 3
    for verdict in (
        "first sync alias_writes == N + N/2 (30 vs 30)",
        "no-op sync writes == 0 (0)",
        "no-op sync reads <= 1 per model (",
        "change alias_writes == K (3 vs 3)",
    ):
        assert re.search(rf"^PASS {re.escape(verdict)}", out, flags=re.MULTILINE), (verdict, out)
