"""The sync and pipeline benchmarks still run end to end, on tiny sizes (not a timed test).

Only the request counts and the verdicts on them are asserted, never the times: they are exact
whatever the machine's load.
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.helpers import assert_pass, bench_figure, run_bench


def test_sync_scale_runs_on_tiny_sizes(tmp_path: Path) -> None:
    args = ("--models", "20", "--changed", "3", "--workdir", str(tmp_path))
    out = run_bench("sync_scale.py", *args, timeout=600)
    assert bench_figure(out, "first sync alias_writes") == 20 + 10
    assert bench_figure(out, "no-op sync writes") == 0
    assert bench_figure(out, "change 3 alias_writes") == 3
    assert_pass(out, re.escape("first sync alias_writes == N + N/2 (30 vs 30)"))
    assert_pass(out, re.escape("no-op sync writes == 0 (0)"))
    assert_pass(out, r"no-op sync reads <= 1 per model \(\d+ for 20 models\)")
    assert_pass(out, re.escape("change alias_writes == K (3 vs 3)"))


def test_pipeline_runs_one_commit_per_mode(tmp_path: Path) -> None:
    """Timing verdicts are the benchmark's business; here: every figure is printed, and the
    script's own time and the overhead add up to a positive whole."""
    out = run_bench(
        "pipeline.py", "--interval", "2", "--commits", "1", "--workdir", str(tmp_path), timeout=600
    )
    assert "training runs: 3 on the local runtime, interval 2 s" in out
    for name in (
        "a. commit -> run started, polling (worst)",
        "b. push -> run started, webhook (worst)",
    ):
        assert bench_figure(out, name) > 0
    assert bench_figure(out, "c. controller overhead per run (median)") > 0
