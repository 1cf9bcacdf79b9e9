"""`make demo` still tells the truth: the whole loop on embedded defaults, end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.helpers import PROJECT


def test_the_demo_runs_the_whole_loop(tmp_path: Path) -> None:
    ran = subprocess.run(
        [sys.executable, "-m", "examples.demo", "--workspace", str(tmp_path / "demo")],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    out = ran.stdout
    for line in (
        "the release branch's head trained: version 4 (PENDING)",
        "validated: PASSED, comparison WON",
        "prod serves fraud-detector v4, trained from code",
        "version 5: FAILED (threshold:roc_auc:min",
        "prod still serves fraud-detector v2: nothing was proposed",
        "Demo finished in",
        # Not from a terminal: the demo says how to start the dashboard instead of serving it.
        "mlgitops ui --state-dir",
    ):
        assert line in out, out[-4000:]
