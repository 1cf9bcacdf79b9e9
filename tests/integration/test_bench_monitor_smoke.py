"""The drift and batch benchmark still runs end to end on 20,000 rows (not a timed test).

Asserted: what is exact whatever the machine's load. The monitor finds exactly the drift the
benchmark injected, by PSI and by KS; every figure is printed; batch scoring scored every row as a
bare predict does. Never the times, the memory, or their verdicts.

Evidently is not part of it: it does not install beside the project's pandas 3, so it has a venv
of its own (``bench/.venv-evidently``, built by ``make bench-monitor``), which CI does not build:
the comparison with Evidently is run by ``make bench-monitor`` only, by hand.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers import assert_pass, bench_figure, run_bench

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
