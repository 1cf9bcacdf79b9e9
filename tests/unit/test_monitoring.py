"""The monitor's statistics and windows, against reference computations on hand-built tables.

Real Delta tables on disk (deltalake), scipy and scikit-learn as the references.
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake
from scipy import stats
from sklearn import metrics as sk

from controller.jobs.drift import Reference, ks_statistic, ordered, profile
from controller.jobs.monitor import ALL, LabelSource, MonitorSpec, QualityBound, run_monitor
from controller.jobs.quality import LABEL, Labels, infer_model_type, join_labels, metrics

NOW = dt.datetime(2026, 12, 2, 12, 30, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)


def _psi_reference(base: np.ndarray, cur: np.ndarray) -> float:
    """PSI as the definition says: deciles of the baseline, shares floored at 1e-4."""
    edges = np.unique(np.quantile(base, np.linspace(0, 1, 11)[1:-1]))
    bins = np.concatenate([[-np.inf], edges, [np.inf]])
    p = np.maximum(np.histogram(base, bins)[0] / len(base), 1e-4)
    q = np.maximum(np.histogram(cur, bins)[0] / len(cur), 1e-4)
    return float(np.sum((q - p) * np.log(q / p)))


def test_ks_matches_scipy_and_psi_matches_its_definition() -> None:
    rng = np.random.default_rng(3)
    for shift in (0.0, 0.1, 0.7):
        base, cur = rng.normal(0, 1, 4000), rng.normal(shift, 1.2, 3000)
        ref = Reference.of(pa.array(base), "ks")
        assert ref is not None
        expected = stats.ks_2samp(base, cur).statistic
        assert ref.compare(pa.array(cur)) == pytest.approx(expected, abs=1e-12)
        psi = Reference.of(pa.array(base), "psi")
        assert psi is not None
        # Bins are right-closed in the histogram and right-open in searchsorted: equal only
        # with continuous data, which this is.
        assert psi.compare(pa.array(cur)) == pytest.approx(_psi_reference(base, cur), rel=1e-9)
    assert math.isnan(ks_statistic(np.array([]), np.array([1.0])))


@pytest.mark.parametrize("method", ["ks", "psi"])
def test_a_window_sorted_once_gives_the_same_statistics(method: str) -> None:
    """The monitor sorts a window's column once for its profile and its drift: the statistic
    is exactly the one the unsorted values give, with values repeated and on the PSI bin edges
    (counts, a rounded column), and KS is still scipy's."""
    rng = np.random.default_rng(7)
    for base, cur in (
        (rng.poisson(3, 5000), rng.poisson(5, 4000)),
        (np.round(rng.normal(0, 1, 5000), 1), np.round(rng.normal(0.2, 1, 3000), 1)),
        (rng.normal(0, 1, 5000), rng.normal(0.3, 1.1, 2000)),
        (np.array([1.0] * 50), np.array([1.0] * 20 + [2.0] * 5)),
    ):
        ref = Reference.of(pa.array(base), method)
        assert ref is not None
        column = pa.array(cur)
        once = ref.compare(column, ordered(column))
        assert once == ref.compare(column)
        if method == "ks":
            assert once == pytest.approx(stats.ks_2samp(base, cur).statistic, abs=1e-12)
    assert ordered(pa.array(["a"])) is None


def test_categories_nulls_and_what_cannot_be_compared() -> None:
    text = Reference.of(pa.array(["a", "b", None, "a"]), "psi")
    assert text is not None
    assert text.rows == 3
    assert text.compare(pa.array(["a", "b", "a"])) == pytest.approx(0)
    # A category never seen before: p floored at 1e-4 -> a large PSI.
    assert text.compare(pa.array(["c"] * 10)) > 1
    assert Reference.of(pa.array(["a", "b"]), "ks") is None  # KS compares numbers
    assert Reference.of(pa.array([None, None], pa.float64()), "psi") is None
    numeric = Reference.of(pa.array([1.0, 2.0, 3.0]), "psi")
    assert numeric is not None
    assert math.isnan(numeric.compare(pa.array([None], pa.float64())))


def test_profile_of_numbers_and_text() -> None:
    values = [1.0, 2.0, None, 4.0, 4.0]
    got = profile(pa.array(values))
    clean = np.array([1.0, 2.0, 4.0, 4.0])
    assert got["count"] == 4
    assert got["nulls"] == 1
    assert got["distinct"] == 3
    assert got["mean"] == pytest.approx(clean.mean())
    assert got["std"] == pytest.approx(clean.std(ddof=1))
    assert got["p50"] == pytest.approx(np.median(clean))
    assert (got["min"], got["max"]) == (1.0, 4.0)
    words = profile(pa.array(["x", "y", "x", None]))
    assert (words["count"], words["nulls"], words["distinct"], words["mean"]) == (3, 1, 2, None)


def test_quality_metrics_match_scikit_learn() -> None:
    y = np.array([1, 0, 1, 1, 0, 0, 1, 0])
    p = np.array([1, 0, 0, 1, 0, 1, 1, 0])
    score = np.array([0.9, 0.2, 0.4, 0.8, 0.1, 0.6, 0.7, 0.3])
    joined = pa.table({"prediction": p, "score": score, LABEL: y})
    got = metrics(joined, "classifier")
    assert got == pytest.approx(
        {
            "accuracy": sk.accuracy_score(y, p),
            "precision": sk.precision_score(y, p),
            "recall": sk.recall_score(y, p),
            "f1": sk.f1_score(y, p),
            "roc_auc": sk.roc_auc_score(y, score),
        }
    )
    # A label as text against a numeric prediction: compared as "1" and "0".
    mixed = pa.table({"prediction": p.astype(float), LABEL: [str(v) for v in y]})
    assert metrics(mixed, "classifier")["accuracy"] == pytest.approx(sk.accuracy_score(y, p))
    truth = np.array([3.0, 5.0, 2.5, 7.0])
    guess = np.array([2.5, 5.0, 4.0, 8.0])
    reg = metrics(pa.table({"prediction": guess, LABEL: truth}), "regressor")
    assert reg == pytest.approx(
        {
            "mae": sk.mean_absolute_error(truth, guess),
            "rmse": math.sqrt(sk.mean_squared_error(truth, guess)),
            "r2": sk.r2_score(truth, guess),
        }
    )
    assert infer_model_type(pa.array([0, 1, 1])) == "classifier"
    assert infer_model_type(pa.array([0.5, 1.25, 3.0])) == "regressor"
    assert infer_model_type(pa.array(["fraud", "ok"])) == "classifier"


def test_labels_join_by_key_and_a_corrected_label_replaces_the_first() -> None:
    labels = Labels.of(
        pa.table({"request_id": ["a", "b", "a", "z"], "truth": [0, 1, 1, 0]}),
        ["request_id"],
        "truth",
    )
    rows = pa.table({"request_id": ["a", "b", "c"], "prediction": [1, 1, 0]})
    joined = join_labels(rows, labels).sort_by("request_id")
    assert joined["request_id"].to_pylist() == ["a", "b"]
    assert joined[LABEL].to_pylist() == [1, 1]  # "a" corrected from 0 to 1


# --- windows over Delta tables ---------------------------------------------------------------


def _inference_rows(
    rng: np.random.Generator, start: dt.datetime, n: int, *, shift: float = 0.0, version: str = "1"
) -> pd.DataFrame:
    x = rng.normal(shift, 1, n)
    return pd.DataFrame(
        {
            "request_id": [f"{version}-{start:%H}-{i}" for i in range(n)],
            "row": np.zeros(n, dtype=np.int32),
            "timestamp": [start + dt.timedelta(seconds=int(s)) for s in rng.integers(0, 3599, n)],
            "model_version": version,
            "role": "champion" if version == "1" else "challenger",
            "latency_ms": rng.gamma(2, 3, n),
            "status": np.full(n, 200, dtype=np.int32),
            "x": x,
            "kind": rng.choice(["a", "b"], n),
            "prediction": (x > 0).astype(np.int64),
        }
    )


@pytest.fixture
def lake(tmp_path: Path) -> Path:
    rng = np.random.default_rng(11)
    base = pd.DataFrame({"x": rng.normal(0, 1, 5000), "kind": rng.choice(["a", "b"], 5000)})
    base["prediction"] = (base["x"] > 0).astype(np.int64)
    write_deltalake(str(tmp_path / "base"), base)
    hour = NOW.replace(minute=0)
    frames = [
        _inference_rows(rng, hour - 2 * HOUR, 800),  # 10:00: like the baseline
        _inference_rows(rng, hour - HOUR, 800, shift=1.5),  # 11:00: x drifted
        _inference_rows(rng, hour, 600),  # 12:00, version 1
        _inference_rows(rng, hour, 200, version="2"),  # 12:00, version 2 shifted below
    ]
    frames[3]["x"] += 2.0
    failed = _inference_rows(rng, hour, 50)
    failed["status"] = 500
    failed["x"] = 99.0  # would drift everything if counted
    write_deltalake(str(tmp_path / "inference"), pd.concat([*frames, failed]))
    return tmp_path


def _spec(lake: Path, **kw: object) -> MonitorSpec:
    base: dict[str, object] = {
        "baseline_uri": str(lake / "base"),
        "current_uri": str(lake / "inference"),
        "source": "inference",
        "window_seconds": 3600,
        "lookback": 4,
        "features": ["x", "kind", "absent"],
    }
    return MonitorSpec(**{**base, **kw})  # type: ignore[arg-type]


def test_time_windows_drift_per_window_and_per_version(lake: Path) -> None:
    result = run_monitor(_spec(lake), now=lambda: NOW)
    assert [w.window for w in result.windows] == [
        "2026-12-02T09:00:00Z",
        "2026-12-02T10:00:00Z",
        "2026-12-02T11:00:00Z",
        "2026-12-02T12:00:00Z",
    ]
    assert [w.rows for w in result.windows] == [0, 800, 800, 800]  # failed requests not counted
    assert "window 2026-12-02T09:00:00Z: no rows" in result.findings
    assert result.skipped == ["absent (not in the current table)"]
    drifted = {w.window[11:13]: sorted(f.feature for f in w.drifted) for w in result.windows}
    assert drifted == {"09": [], "10": [], "11": ["prediction", "x"], "12": ["x"]}

    table = DeltaTable(str(lake / "inference_drift")).to_pandas()
    noon = table[table.window == "2026-12-02T12:00:00Z"]
    by_version = noon[noon.feature == "x"].set_index("model_version")["drifted"].to_dict()
    assert by_version == {ALL: True, "1": False, "2": True}
    profile_table = DeltaTable(str(lake / "inference_profile")).to_pandas()
    eleven = profile_table[(profile_table.window == "2026-12-02T11:00:00Z")]
    x = eleven[eleven.column == "x"].iloc[0]
    assert x["count"] == 800
    assert 1.3 < x["mean"] < 1.7
    assert set(eleven.column) == {"x", "kind", "prediction", "latency_ms"}
    assert not (lake / "inference_quality").exists()  # no labels: no quality table

    # A rerun of the windows replaces their rows: the tables hold one copy.
    run_monitor(_spec(lake), now=lambda: NOW)
    again = DeltaTable(str(lake / "inference_drift")).to_pandas()
    assert len(again) == len(table)


def test_quality_per_window_and_version_and_breaches_count_toward_retraining(
    lake: Path,
) -> None:
    rows = DeltaTable(str(lake / "inference")).to_pandas()
    answered = rows[rows.status == 200]
    # Truth lands for most requests: the 11:00 model is wrong on every label (truth flipped).
    truth = (answered["x"] > 0).astype(int)
    late = answered["timestamp"] >= NOW.replace(minute=0) - HOUR
    truth[
        late & (answered["model_version"] == "1") & (answered["timestamp"] < NOW.replace(minute=0))
    ] ^= 1
    labels = pd.DataFrame({"request_id": answered["request_id"], "is_fraud": truth})
    write_deltalake(str(lake / "labels"), labels.iloc[: len(labels) - 100])  # some still missing
    spec = _spec(
        lake,
        features=["kind"],  # no drift: only quality can make retraining due
        labels=LabelSource(str(lake / "labels"), ("request_id",), "is_fraud", min_rows=50),
        quality=(QualityBound("accuracy", min=0.8),),
        retrain=(1, 3),
    )
    result = run_monitor(spec, now=lambda: NOW)
    assert result.model_type == "classifier"
    by_window = {w.window[11:13]: w for w in result.windows}
    assert [q.metric for q in by_window["10"].breaches] == []
    [breach] = by_window["11"].breaches
    assert (breach.metric, breach.value) == ("accuracy", 0.0)
    assert result.retrain_due is False  # 12:00 is the newest, after the due 11:00
    assert result.due_window == "2026-12-02T11:00:00Z"
    quality = DeltaTable(str(lake / "inference_quality")).to_pandas()
    noon = quality[(quality.window == "2026-12-02T12:00:00Z") & (quality.metric == "accuracy")]
    assert set(noon.model_version) == {ALL, "1", "2"}
    assert noon.set_index("model_version").loc["2", "role"] == "challenger"
    labeled = noon.set_index("model_version")["labeled_rows"].to_dict()
    assert labeled[ALL] == labeled["1"] + labeled["2"]
    assert labeled[ALL] < 800  # the last 100 labels have not landed
    # Check one value against scikit-learn on the same join.
    ten = answered[answered.timestamp < NOW.replace(minute=0) - HOUR].merge(labels, on="request_id")
    expected = sk.accuracy_score(ten["is_fraud"], ten["prediction"])
    got = quality[(quality.window == "2026-12-02T10:00:00Z") & (quality.metric == "accuracy")]
    assert got[got.model_version == ALL]["value"].iloc[0] == pytest.approx(expected)


def test_labels_without_their_columns_are_a_problem_after_drift_is_written(lake: Path) -> None:
    write_deltalake(str(lake / "labels"), pd.DataFrame({"id": ["a"], "truth": [1]}))
    spec = _spec(lake, labels=LabelSource(str(lake / "labels"), ("request_id",), "is_fraud"))
    result = run_monitor(spec, now=lambda: NOW)
    [problem] = result.problems
    assert "has no column request_id, is_fraud" in problem
    assert DeltaTable(str(lake / "inference_drift")).to_pandas().shape[0] > 0


def _quality_rows(rows: list[tuple[str, int, str, str, float, int]]) -> pa.Table:
    """(window, hour, version, role, accuracy, labeled rows) -> rows of a _quality table."""
    return pa.table(
        {
            "window": [r[0] for r in rows],
            "window_start": [NOW.replace(hour=r[1], minute=0) for r in rows],
            "model_version": [r[2] for r in rows],
            "role": [r[3] for r in rows],
            "metric": ["accuracy"] * len(rows),
            "value": [r[4] for r in rows],
            "labeled_rows": [r[5] for r in rows],
        }
    )


def test_online_comparison_pools_the_windows_both_served_and_needs_enough_labels() -> None:
    from controller.jobs.quality import online_verdict

    table = _quality_rows(
        [
            ("w1", 9, "3", "champion", 0.80, 900),  # before the challenger: not compared
            ("w2", 10, "3", "champion", 0.80, 300),
            ("w2", 10, "4", "challenger", 0.90, 100),
            ("w2", 10, "*", "", 0.825, 400),
            ("w3", 11, "3", "champion", 0.70, 100),
            ("w3", 11, "4", "challenger", 0.60, 300),
        ]
    )
    won = online_verdict(table, "accuracy", min_change=0.0, min_rows=200)
    assert won is not None
    assert (won.challenger, won.champion, won.windows) == ("4", "3", 2)
    assert won.challenger_value == pytest.approx((0.9 * 100 + 0.6 * 300) / 400)
    assert won.champion_value == pytest.approx((0.8 * 300 + 0.7 * 100) / 400)
    assert (won.challenger_rows, won.champion_rows) == (400, 400)
    assert won.verdict == "LOST"  # 0.675 against 0.775
    assert "needs +0" in won.detail()
    pending = online_verdict(table, "accuracy", min_change=0.0, min_rows=500)
    assert pending is not None
    assert pending.verdict == "PENDING"
    better = online_verdict(
        _quality_rows(
            [("w", 10, "3", "champion", 0.7, 300), ("w", 10, "4", "challenger", 0.75, 300)]
        ),
        "accuracy",
        min_change=0.05,
        min_rows=100,
    )
    assert better is not None
    assert better.verdict == "WON"  # exactly the margin asked
    assert (
        online_verdict(
            _quality_rows([("w", 10, "3", "champion", 0.7, 300)]),
            "accuracy",
            min_change=0,
            min_rows=1,
        )
        is None
    )


def test_online_comparison_of_an_error_metric_wants_it_lower() -> None:
    from controller.jobs.quality import online_verdict

    rows = _quality_rows(
        [("w", 10, "3", "champion", 2.0, 300), ("w", 10, "4", "challenger", 1.5, 300)]
    )
    rmse = rows.set_column(4, "metric", pa.array(["rmse", "rmse"]))
    verdict = online_verdict(rmse, "rmse", min_change=0.2, min_rows=100)
    assert verdict is not None
    assert verdict.verdict == "WON"
    assert "needs -0.2" in verdict.detail()
