"""The jobs' parts that need no registry: table names, prediction columns, PSI, KS, skipping."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from controller.errors import JobError
from controller.jobs.batch import _prediction_columns
from controller.lake.tables import sql_string, table_uri


@pytest.mark.parametrize(
    ("name", "root", "expected"),
    [
        ("prod/fraud/scores", "/lake", "/lake/prod/fraud/scores"),
        ("prod/fraud/scores", "s3://bucket/lake/", "s3://bucket/lake/prod/fraud/scores"),
        ("/abs/table", "/lake", "/abs/table"),
        ("gs://other/table", "/lake", "gs://other/table"),
    ],
)
def test_table_uri(name: str, root: str, expected: str) -> None:
    assert table_uri(name, root) == expected


def test_prediction_columns_by_shape() -> None:
    assert list(_prediction_columns(np.array([1, 0]), 2)) == ["prediction"]
    assert list(_prediction_columns(pd.Series([1.0, 2.0]), 2)) == ["prediction"]
    assert list(_prediction_columns(np.array([[0.1, 0.9], [0.8, 0.2]]), 2)) == [
        "prediction_0",
        "prediction_1",
    ]
    frame = pd.DataFrame({"label": [1, 0], "score": [0.9, 0.2]})
    assert list(_prediction_columns(frame, 2)) == ["prediction_label", "prediction_score"]
    assert list(_prediction_columns(frame[["score"]], 2)) == ["prediction"]
    assert _prediction_columns([3, 4], 2) == {"prediction": [3, 4]}
    with pytest.raises(JobError, match="returned 1 predictions for 2 rows"):
        _prediction_columns([3], 2)
    with pytest.raises(JobError, match="returned 3 predictions for 2 rows"):
        _prediction_columns(np.array([[1, 2], [3, 4], [5, 6]]), 2)


def test_batch_ids_are_quoted_for_the_delta_predicate() -> None:
    assert sql_string("cron-2911'x") == "'cron-2911''x'"


def _stat(method: str, base: pd.Series, cur: pd.Series) -> float:
    from controller.jobs.drift import Reference

    ref = Reference.of(pa.array(base), method)
    assert ref is not None
    return ref.compare(pa.array(cur))


def test_psi_and_ks_grow_with_the_shift() -> None:
    rng = np.random.default_rng(0)
    base = pd.Series(rng.normal(0, 1, 5000))
    same = pd.Series(rng.normal(0, 1, 5000))
    assert _stat("psi", base, same) < 0.02
    assert _stat("ks", base, same) < 0.05
    shifts = [0.25, 0.5, 1.0]
    psis = [_stat("psi", base, base + s) for s in shifts]
    kss = [_stat("ks", base, base + s) for s in shifts]
    assert psis == sorted(psis)
    assert psis[-1] > 0.5
    assert kss == sorted(kss)
    assert kss[-1] > 0.3
    # All of the current mass outside the baseline's range: large, finite (empty bins floored).
    assert 1 < _stat("psi", base, base + 100) < 100


def test_psi_of_categories() -> None:
    base = pd.Series(["a"] * 50 + ["b"] * 50)
    assert _stat("psi", base, pd.Series(["a"] * 50 + ["b"] * 50)) == pytest.approx(0)
    assert _stat("psi", base, pd.Series(["a"] * 90 + ["b"] * 10)) > 0.2
    assert _stat("psi", base, pd.Series(["c"] * 100)) > 1  # a category never seen before


def test_monitor_skips_what_it_cannot_compare_and_needs_something(tmp_path: Path) -> None:
    from deltalake import write_deltalake

    from controller.jobs.monitor import MonitorSpec, run_monitor

    rng = np.random.default_rng(1)
    base = pd.DataFrame(
        {"x": rng.normal(0, 1, 500), "kind": ["a", "b"] * 250, "blank": [np.nan] * 500}
    )
    write_deltalake(str(tmp_path / "base"), base)
    write_deltalake(str(tmp_path / "cur"), base.sample(200, random_state=0))
    spec = MonitorSpec(
        baseline_uri=str(tmp_path / "base"),
        current_uri=str(tmp_path / "cur"),
        method="ks",
        threshold=0.2,
        window_id="w1",
        features=["x", "kind", "blank", "absent"],
    )
    result = run_monitor(spec)
    [window] = result.windows
    assert window.window == "w1"
    assert [f.feature for f in window.features] == ["x"]
    assert sorted(result.skipped) == [
        "absent (not in the current table)",
        "blank (no values in the baseline)",
        "kind (text: KS compares numbers)",
    ]
    assert window.drifted == []
    with pytest.raises(JobError, match="no feature to compare"):
        run_monitor(dataclasses.replace(spec, method="psi", features=["blank"]))


def test_a_relative_table_name_never_leaves_the_data_root() -> None:
    assert table_uri("prod/fraud/t", "s3://lake") == "s3://lake/prod/fraud/t"
    for name in ("../t", "prod/../../t", "prod/fraud/.."):
        with pytest.raises(JobError, match="leaves the data root"):
            table_uri(name, "/lake")


@pytest.mark.parametrize(
    ("drifted", "violations", "windows", "due_at"),
    [
        pytest.param("DDD", 2, 3, [1], id="due once per stretch: the third counts anew"),
        pytest.param("DDDD", 2, 3, [1, 3], id="drift outlasting it: due again after two more"),
        pytest.param("D.D.D", 2, 2, [], id="never two of the last two"),
        pytest.param("D.D.D", 2, 3, [2], id="two of the last three"),
        pytest.param("D....D", 2, 5, [], id="the first fell out of the last five"),
        pytest.param("DDDDDD", 1, 1, [0, 1, 2, 3, 4, 5], id="every drifted window"),
        pytest.param("", 1, 1, [], id="no windows"),
    ],
)
def test_retraining_is_due_once_per_stretch_of_drift(
    drifted: str, violations: int, windows: int, due_at: list[int]
) -> None:
    from controller.jobs.monitor import due_windows

    verdicts = due_windows([c == "D" for c in drifted], violations, windows)
    assert [i for i, (_, due) in enumerate(verdicts) if due] == due_at
    # The count never exceeds the window, and a due window counted enough.
    assert all(n <= windows and (n >= violations) == due for n, due in verdicts)
