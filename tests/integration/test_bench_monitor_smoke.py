"""The drift and batch benchmark still runs end to end on 20,000 rows (not a timed test).

Asserted: what is exact whatever the machine's load. The monitor finds exactly the drift the
benchmark injected, by PSI and by KS; every figure is printed; batch scoring scored every row as a
bare predict does. Never the times, the memory, or their verdicts.

Evidently is not part of it: it does not install beside the project's pandas 3, so it has a venv
of its own (``bench/.venv-evidently``, built by ``make bench-monitor``), which CI does not build.
The second test runs the comparison when that venv is there, and says it skipped otherwise.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers import PROJECT, assert_pass, bench_figure, run_bench

EVIDENTLY_PYTHON = PROJECT / "bench" / ".venv-evidently" / "bin" / "python"
ROWS = "20000"


def assert_monitor_figures(out: str) -> None:
    for method, compared, drifted in (("psi", 20, 7), ("ks", 14, 4)):
        assert_pass(
            out,
            re.escape(
                f"mlgitops monitor {method}: the injected drift, and nothing else, is found "
                f"({drifted} of {compared} drifted)"
            ),
        )
        assert bench_figure(out, f"monitor {method} wall vs reading the tables") > 0
        assert bench_figure(out, f"monitor {method} peak RSS vs reading the tables") > 0


def assert_batch_figures(out: str) -> None:
    assert_pass(
        out,
        r"mlgitops batch scored every row as the bare predict did "
        rf"\({ROWS} rows, (\d+) positive vs {ROWS}, \1\)",
    )
    for name in ("batch throughput (rows/s)", "batch wall", "batch peak RSS"):
        assert bench_figure(out, name) > 0
    assert re.search(
        r"^(PASS|FAIL) mlgitops batch throughput at least 0\.9x a bare pyfunc predict ",
        out,
        flags=re.MULTILINE,
    )


@pytest.mark.timeout(600)
def test_monitor_bench_runs_without_evidently(tmp_path: Path) -> None:
    out = run_bench(
        "monitor.py", "--rows", ROWS, "--without-evidently", "--workdir", str(tmp_path), timeout=540
    )
    assert_monitor_figures(out)
    assert_batch_figures(out)
    assert "info: Evidently not run (--without-evidently): no comparison by psi" in out


@pytest.mark.skipif(
    not EVIDENTLY_PYTHON.exists(),
    reason="Evidently's venv is not built (make bench-monitor builds bench/.venv-evidently)",
)
@pytest.mark.timeout(900)
def test_monitor_bench_agrees_with_evidently(tmp_path: Path) -> None:
    out = run_bench("monitor.py", "--rows", ROWS, "--workdir", str(tmp_path), timeout=840)
    assert_monitor_figures(out)
    assert "verdicts differ" not in out
    for method, compared in (("psi", 20), ("ks", 14)):
        for label in ("Evidently DataDriftPreset", "Evidently ValueDrift per column"):
            agree = f"{method}: the per-feature verdicts agree with {label}"
            assert_pass(out, re.escape(f"{agree} ({compared} of {compared})"))
        for name in ("wall", "peak RSS", "wall vs ValueDrift only (info)"):
            assert bench_figure(out, f"monitor {method} {name}") > 0
