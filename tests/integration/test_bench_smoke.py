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
    """Timing verdicts are the benchmark's business; here: every figure is printed, each phase
    of the way from a commit to its champion serving, and both rollbacks."""
    out = run_bench(
        "pipeline.py", "--interval", "2", "--commits", "1", "--workdir", str(tmp_path), timeout=900
    )
    assert "training runs: 4 on the local runtime, interval 2 s" in out
    for name in (
        "a. commit -> run started, polling (worst)",
        "b. push -> run started, webhook (worst)",
        "c. controller overhead per run (median)",
        "d. commit -> new champion serving, polling (median)",
        "d. commit -> new champion serving, webhook (median)",
        "   detect, polling (median)",
        "   detect, webhook (median)",
        "   train (median)",
        "   validate (median)",
        "   write-back challenger (median)",
        "   sync challenger (median)",
        "   write-back champion (median)",
        "   sync champion (median)",
        "   serve (median)",
        "   of train: the script's own time (median)",
        "   of validate: until the validation run (the job starting) (median)",
        "   of validate: the validation run (median)",
        "   of the validation run: compare with the champion (median)",
        "d. controller overhead to champion serving, polling (median)",
        "d. controller overhead to champion serving, polling (worst)",
        "d. controller overhead to champion serving, webhook (median)",
        "d. controller overhead to champion serving, webhook (worst)",
        "e. revert pushed -> previous champion serving, polling",
        "e. revert pushed -> previous champion serving, webhook",
        "   revert -> alias moved back, polling",
        "   alias moved back -> served, webhook",
    ):
        assert bench_figure(out, name) >= 0
    assert "d. commit -> new champion serving: 3 commits followed end to end" in out
    assert (tmp_path / "flows.json").exists()  # each commit's boundaries, for a closer look
    for text in (
        "the controller adds at most 5 s to the script and the validation run (webhook)",
        "a reverted promotion serves the previous champion within 3 s (polling)",
        "a reverted promotion serves the previous champion within 1 s (webhook)",
    ):
        assert re.search(rf"^(PASS|FAIL) {re.escape(text)}$", out, flags=re.MULTILINE), text


def test_ui_bench_renders_every_model(tmp_path: Path) -> None:
    out = run_bench(
        "ui.py", "--models", "30", "--repeat", "2", "--workdir", str(tmp_path), timeout=300
    )
    assert "overview of 30 ModelDeployments x 3 environments (90 cells)" in out
    for name in ("overview render, server side (median)", "GET / through mlgitops ui (median)"):
        assert bench_figure(out, name) > 0
    assert bench_figure(out, "page weight gzipped (KiB)") < bench_figure(out, "page weight (KiB)")
    assert_pass(out, re.escape("every model has its row (30 of 30)"))
