"""Evidently's side of ``bench/monitor.py``: drift of a current Delta table against a baseline,
by Evidently's ``DataDriftPreset``, with the verdict per feature as JSON on stdout.

It runs in ``bench/.venv-evidently`` (Evidently 0.7.23 on pandas 2.3.3; it does not import on
the project's pandas 3), built by ``make bench-monitor``, and never in the project's venv. It
reads the tables as ``mlgitops monitor`` does (deltalake -> pyarrow -> pandas), so reading
counts on both sides.

    bench/.venv-evidently/bin/python bench/monitor_evidently.py --baseline B --current C \\
        --method psi --threshold 0.2 --numeric num_00,num_01 --categorical cat_00

``--method psi`` is Evidently's built-in PSI; ``--method ks`` is ``ks_statistic``, a stat test
registered here through Evidently's extension point: scipy's two-sample KS statistic, drift when
it exceeds the threshold (Evidently's built-in ``ks`` thresholds the p-value instead; see
``bench/monitor.py`` for why that cannot be made to agree).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

os.environ.setdefault("DO_NOT_TRACK", "1")  # Evidently's usage telemetry

KS_STATISTIC = "ks_statistic"


def register_ks_statistic() -> None:
    from evidently.legacy.calculations.stattests.registry import StatTest, register_stattest
    from evidently.legacy.core import ColumnType
    from scipy.stats import ks_2samp

    def ks_statistic(
        reference_data: Any, current_data: Any, feature_type: Any, threshold: float
    ) -> tuple[float, bool]:
        statistic = float(ks_2samp(reference_data, current_data).statistic)
        return statistic, statistic > threshold

    register_stattest(
        StatTest(
            name=KS_STATISTIC,
            display_name="K-S statistic",
            allowed_feature_types=[ColumnType.Numerical],
            default_threshold=0.2,
        ),
        ks_statistic,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", required=True)
    parser.add_argument("--current", required=True)
    parser.add_argument("--method", choices=("psi", "ks"), required=True)
    parser.add_argument("--threshold", type=float, required=True)
    parser.add_argument(
        "--metrics",
        choices=("preset", "columns"),
        default="preset",
        help="DataDriftPreset, or only a ValueDrift metric per column (the least Evidently does)",
    )
    parser.add_argument("--numeric", default="", help="numeric columns, comma-separated")
    parser.add_argument("--categorical", default="", help="categorical columns, comma-separated")
    args = parser.parse_args()
    numeric = [c for c in args.numeric.split(",") if c]
    categorical = [c for c in args.categorical.split(",") if c]

    times: dict[str, float] = {}
    start = time.perf_counter()
    from deltalake import DeltaTable
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset

    times["import"] = time.perf_counter() - start

    start = time.perf_counter()
    reference = DeltaTable(args.baseline).to_pyarrow_dataset().to_table().to_pandas()
    current = DeltaTable(args.current).to_pyarrow_dataset().to_table().to_pandas()
    times["read"] = time.perf_counter() - start

    start = time.perf_counter()
    method = "psi"
    if args.method == "ks":
        register_ks_statistic()
        method = KS_STATISTIC
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    columns = numeric + categorical
    metrics: list[Any] = (
        [DataDriftPreset(columns=columns, method=method, threshold=args.threshold)]
        if args.metrics == "preset"
        else [ValueDrift(column=c, method=method, threshold=args.threshold) for c in columns]
    )
    report = Report(metrics, include_tests=True)
    snapshot = report.run(
        Dataset.from_pandas(current, data_definition=definition),
        Dataset.from_pandas(reference, data_definition=definition),
    )
    times["report"] = time.perf_counter() - start

    found: dict[str, dict[str, Any]] = {}
    result = snapshot.dict()
    for metric in result["metrics"]:
        config = metric["config"]
        if config.get("type", "").endswith(":ValueDrift"):
            found[config["column"]] = {"statistic": float(metric["value"]), "drifted": None}
    for test in result["tests"]:
        prefix = "Value Drift for column "
        if test["name"].startswith(prefix):
            found[test["name"].removeprefix(prefix)]["drifted"] = test["status"] == "FAIL"
    missing = [c for c in columns if c not in found or found[c]["drifted"] is None]
    if missing:
        raise SystemExit(f"Evidently reported no drift verdict for {', '.join(missing)}")
    print(json.dumps({"features": found, "times": times, "rows": len(current)}))


if __name__ == "__main__":
    main()
