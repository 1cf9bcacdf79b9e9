"""Drift monitoring and batch scoring at scale (issue 12): ``mlgitops monitor`` against
Evidently's ``DataDriftPreset``, and ``mlgitops batch`` against a bare ``pyfunc.predict``.

Why: the monitoring CronJob compares every scored batch with the training baseline, and the batch
CronJob scores whole tables; both must keep up with a million-row table on a small pod. Evidently
is what a team would reach for otherwise, so the targets are relative to it, measured in the same
run on the same data: ``mlgitops monitor`` at least 2x faster (its wall time <= 0.5 x
Evidently's) with at most half its peak memory, and the per-feature verdicts the same. Batch
scoring must keep at least 0.9x the throughput of a bare ``mlflow.pyfunc`` predict of the rows.

How to run::

    make bench-monitor                  # builds bench/.venv-evidently, then 1,000,000 rows
    .venv/bin/python bench/monitor.py --rows 100000      # smaller (needs bench/.venv-evidently)
    .venv/bin/python bench/monitor.py --rows 20000 --without-evidently   # the smoke test's run

A run at 1,000,000 rows takes a few minutes, most of it Evidently's.

**Evidently runs in a virtualenv of its own**, ``bench/.venv-evidently``, which ``make
bench-monitor`` builds from the exact pins in ``bench/requirements-evidently.txt``: no Evidently
release works with the project's pandas 3 (the newest, 0.7.23, declares ``pandas>=1.3.5`` and so
resolves beside pandas 3.1.1, but its import fails: it imports ``infer_dtype_from_object`` from
``pandas.core.dtypes.common``, gone in pandas 3). That venv has pandas 2.3.3 and otherwise the
project's numpy, scipy, pyarrow and deltalake; Evidently is neither a runtime nor a dev
dependency of mlgitops. Its side runs as ``bench/monitor_evidently.py`` in that venv.

**The data** (setup, timed but not a result): a baseline and a current Delta table (deltalake,
as the monitor reads them), ``--rows`` rows each, 20 features drawn from a seeded numpy
generator: 14 numeric (normal, log-normal, uniform, Poisson counts, exponential, Student's t,
one with 5% nulls) and 6 categorical (strings, 3 to 200 categories). Drift is injected into a
known subset (``FEATURES``): clear shifts, a new category, a Poisson rate change, a variance
change (drift by PSI but not by KS), and two moderate shifts either side of the threshold (a mean
shift of 0.3 and of 0.7 standard deviations: PSI about 0.09 and 0.45, KS about 0.12 and 0.27,
against the threshold 0.2). The current table has no ``batch_id``/``scored_at`` columns, so the
monitor compares it whole (as it does any table that is not a batch output).

**Monitor**, for each method (psi, then ks), each side as a process of its own, measured alike:
wall time from start to exit, and peak RSS from ``os.wait4`` (the kernel's ``ru_maxrss`` of that
very child). Both read the two Delta tables themselves (deltalake; Evidently into pandas, the
monitor into Arrow), so reading counts on both sides, and both pay their imports.

- mlgitops: the real CLI, ``mlgitops monitor --baseline B --current C --method M --threshold
  T`` (the options the monitoring CronJob passes; no ``--model``, so every shared column is
  compared). Its per-feature statistics and verdicts are read afterwards from the drift table it
  writes (``<current>_drift``, its default; the rows covering the whole window), not from its
  output.
- Evidently 0.7.23: ``Report([DataDriftPreset(columns=..., method=M, threshold=T)],
  include_tests=True)`` on ``Dataset.from_pandas`` of the two tables with the column types
  declared; its verdict per feature is its own "Value Drift" test. The targets are against this,
  the issue's baseline. The preset computes every column's drift three times (for its ValueDrift
  metrics, its count of drifted columns, and its table widget), so a second run with only a
  ``ValueDrift(column, method=M, threshold=T)`` per column, the least Evidently does for a
  verdict per feature, is printed too (``(info)`` figures, and its verdicts must agree as well).
  PSI is Evidently's built-in ``psi``. It is not ours, and cannot be configured to be: it cuts
  numeric columns into equal-width bins over the range of both samples (numpy's ``sturges`` rule,
  21 bins at a million rows) where we cut ten bins at the baseline's deciles, it treats a numeric
  column of at most 20 distinct values as categories (we bin it too), its empty bins get 1e-4
  (or a millionth of the smallest share) where ours are floored at 1e-4, and it flags drift at
  ``>=`` the threshold where we flag ``>``. The statistics differ (the variance change ``num_13``:
  about 0.34 ours, 0.68 Evidently's), so the data keeps every feature's PSI well clear of the
  threshold by both definitions; both are printed per feature. On categories they are the same.
  KS: Evidently's built-in ``ks`` thresholds the p-value (drift when p <= threshold), ours the
  statistic (drift when D > threshold), and at a million rows p underflows to 0 for any D above
  about 0.03, so no p-value threshold can mean D > 0.2. Evidently is therefore given a custom
  stat test (its documented extension point), ``ks_statistic``: scipy's ``ks_2samp`` statistic,
  drift when it exceeds the threshold: our definition (the monitor computes the same statistic
  in NumPy; the values printed agree to the last digit), and the same scipy call as Evidently's
  built-in makes, so the cost around it is Evidently's own. KS is compared on the numeric
  features only: ours does not compute KS for text columns, nor does Evidently.
- Also a bare process that only reads the two tables into pandas (the project's venv), a floor
  for Evidently and a yardstick for the monitor (which keeps them in Arrow).

**Batch scoring**: a scikit-learn pipeline (impute, scale, one-hot, logistic regression) trained
on 20,000 baseline rows, logged to a SQLite MLflow store in the work directory, registered as
``bench.drift.classifier`` with alias ``champion``. Then ``mlgitops batch --model
models:/bench.drift.classifier@champion --input <current> --output <scored>`` (scores in chunks
of 100,000 rows and writes each to the output Delta table) against a bare process that loads the
same version with ``mlflow.pyfunc.load_model`` and predicts the same rows in one call. Reading the
table is included in both, so are imports and loading the model; writing the output is ours only
(it is the job: about 2 s of 10 Delta commits at a million rows). Throughput is rows / the
process's wall time, best of 2 rounds per side run alternately (ours, bare, bare, ours): single
rounds on this shared machine varied by 10 to 20%, and the target's margin is about that.

Every figure is printed next to its baseline from this run (``common.figure``), every target as a
``PASS``/``FAIL`` line; a missed target does not change the exit code.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"

from common import figure, verdict, working_directory

ROOT = Path(__file__).resolve().parent.parent
MLGITOPS = str(Path(sys.executable).with_name("mlgitops"))
EVIDENTLY_PYTHON = Path(__file__).resolve().parent / ".venv-evidently" / "bin" / "python"
EVIDENTLY_SIDE = Path(__file__).resolve().parent / "monitor_evidently.py"
THRESHOLD = 0.2  # the monitor's default, for both methods
MODEL = "bench.drift.classifier"
TRAIN_ROWS = 20_000
BATCH_ROUNDS = 2  # per side, alternating; the best counts
SEED = 12


# --- the data -------------------------------------------------------------------------------------

Draw = Callable[[Any, int, bool], Any]  # (numpy Generator, rows, current?) -> values


@dataclass(frozen=True)
class Feature:
    name: str
    kind: str  # "numeric" | "categorical"
    drift: str  # what the current table changes; "" for nothing
    drifted: tuple[str, ...]  # the methods by which it drifts at THRESHOLD
    draw: Draw


def _normal(loc: float, scale: float, *, shift: float = 0.0, widen: float = 1.0) -> Draw:
    def draw(rng: Any, n: int, current: bool) -> Any:
        if not current:
            return rng.normal(loc, scale, n)
        return rng.normal(loc + shift * scale, scale * widen, n)

    return draw


def _lognormal(*, factor: float = 1.0) -> Draw:
    return lambda rng, n, current: rng.lognormal(0.0, 0.5, n) * (factor if current else 1.0)


def _poisson(lam: float, current_lam: float | None = None) -> Draw:
    return lambda rng, n, current: rng.poisson(current_lam if current and current_lam else lam, n)


def _with_nulls(share: float) -> Draw:
    def draw(rng: Any, n: int, current: bool) -> Any:
        values = rng.normal(0.0, 1.0, n)
        values[rng.random(n) < share] = float("nan")
        return values

    return draw


def _categories(
    names: Sequence[str], shares: Sequence[float] | None, current_shares: Sequence[float] | None
) -> Draw:
    import numpy as np

    labels = np.array(list(names), dtype=object)

    def draw(rng: Any, n: int, current: bool) -> Any:
        p = current_shares if current and current_shares is not None else shares
        return labels[rng.choice(len(labels), n, p=None if p is None else np.asarray(p) / sum(p))]

    return draw


def _new_category(names: Sequence[str], share: float) -> Draw:
    import numpy as np

    labels = np.array([*names, "new"], dtype=object)

    def draw(rng: Any, n: int, current: bool) -> Any:
        if not current:
            return labels[rng.integers(0, len(names), n)]
        return labels[np.where(rng.random(n) < share, len(names), rng.integers(0, len(names), n))]

    return draw


def _zipf(count: int) -> list[float]:
    return [1.0 / (i + 1) for i in range(count)]


BOTH = ("psi", "ks")
FEATURES: tuple[Feature, ...] = (
    Feature("num_00", "numeric", "", (), _normal(0, 1)),
    Feature("num_01", "numeric", "mean +1.0 sd", BOTH, _normal(0, 1, shift=1.0)),
    Feature("num_02", "numeric", "", (), _normal(5, 2)),
    Feature("num_03", "numeric", "", (), _lognormal()),
    Feature("num_04", "numeric", "log-normal x2", BOTH, _lognormal(factor=2.0)),
    Feature("num_05", "numeric", "", (), lambda rng, n, cur: rng.uniform(0, 100, n)),
    Feature("num_06", "numeric", "mean +0.3 sd (under)", (), _normal(0, 1, shift=0.3)),
    Feature("num_07", "numeric", "mean +0.7 sd (over)", BOTH, _normal(0, 1, shift=0.7)),
    Feature("num_08", "numeric", "", (), _poisson(3)),
    Feature("num_09", "numeric", "Poisson 3 -> 5", BOTH, _poisson(3, 5)),
    Feature("num_10", "numeric", "", (), _with_nulls(0.05)),
    Feature("num_11", "numeric", "", (), lambda rng, n, cur: rng.exponential(1.0, n)),
    Feature("num_12", "numeric", "", (), lambda rng, n, cur: rng.standard_t(3, n)),
    Feature("num_13", "numeric", "sd x1.75", ("psi",), _normal(0, 1, widen=1.75)),
    Feature("cat_00", "categorical", "", (), _categories("abcde", None, None)),
    Feature(
        "cat_01",
        "categorical",
        "shares reshuffled",
        ("psi",),
        _categories("abcde", [0.4, 0.3, 0.2, 0.05, 0.05], [0.1, 0.2, 0.2, 0.25, 0.25]),
    ),
    Feature(
        "cat_02",
        "categorical",
        "",
        (),
        _categories([f"k{i:02d}" for i in range(50)], _zipf(50), None),
    ),
    Feature("cat_03", "categorical", "new category 10%", ("psi",), _new_category("stuvwxyz", 0.1)),
    Feature(
        "cat_04",
        "categorical",
        "shares nudged (under)",
        (),
        _categories("xyz", [0.5, 0.3, 0.2], [0.45, 0.33, 0.22]),
    ),
    Feature(
        "cat_05", "categorical", "", (), _categories([f"v{i:03d}" for i in range(200)], None, None)
    ),
)
NUMERIC = [f.name for f in FEATURES if f.kind == "numeric"]
CATEGORICAL = [f.name for f in FEATURES if f.kind == "categorical"]


def make_table(rows: int, *, current: bool, seed: int) -> Any:
    """One table of every feature; each feature draws from a stream of its own."""
    import numpy as np
    import pyarrow as pa

    streams = np.random.SeedSequence([seed, int(current)]).spawn(len(FEATURES))
    columns = {}
    for feature, stream in zip(FEATURES, streams, strict=True):
        values = feature.draw(np.random.default_rng(stream), rows, current)
        if feature.kind == "categorical":
            columns[feature.name] = pa.array(values, type=pa.string())
        else:
            columns[feature.name] = pa.array(values, from_pandas=True)  # NaN -> null
    return pa.table(columns)


def write_tables(lake: Path, rows: int) -> tuple[str, str]:
    from deltalake import write_deltalake

    uris = []
    for name, current in (("baseline", False), ("current", True)):
        uri = str(lake / name)
        write_deltalake(uri, make_table(rows, current=current, seed=SEED))
        uris.append(uri)
    return uris[0], uris[1]


# --- measuring a process --------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    wall: float  # seconds, from start to exit
    peak_mib: float  # the process's peak RSS (ru_maxrss from wait4)
    stdout: str


# Linux gives a process the peak RSS of the one that started it: at exec, ``ru_maxrss`` keeps the
# high-water mark of the memory it replaces, which for a child of this script (``fork`` or
# ``vfork``) is this script's, holding million-row tables by then. So each side is started by a
# fresh, small interpreter (about 12 MiB at its peak), which measures its child and reports.
_LAUNCHER = """
import json, os, subprocess, sys, time
start = time.perf_counter()
proc = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(proc.pid, 0)
wall = time.perf_counter() - start
facts = {"wall": wall, "code": os.waitstatus_to_exitcode(status), "maxrss": usage.ru_maxrss}
with open(sys.argv[1], "w") as out:
    json.dump(facts, out)
"""


def measure(argv: Sequence[str], *, cwd: Path, env: dict[str, str] | None = None) -> Run:
    """Run ``argv`` to its end; its wall time and its own peak RSS, the same way for every side.

    ``os.wait4`` returns the resource usage of that one child (its ``ru_maxrss`` includes any
    children it waited for), unlike ``RUSAGE_CHILDREN``, which keeps the largest child so far;
    the launcher (``_LAUNCHER``) calls it, so this script's own peak is not counted.
    """
    with (
        tempfile.TemporaryFile("w+") as out,
        tempfile.TemporaryFile("w+") as err,
        tempfile.NamedTemporaryFile("r", suffix=".json") as facts,
    ):
        launcher = [sys.executable, "-c", _LAUNCHER, facts.name, *argv]
        subprocess.run(launcher, cwd=cwd, env=env, stdout=out, stderr=err, check=True)
        measured = json.loads(Path(facts.name).read_text())
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if measured["code"] != 0:
        sys.exit(
            f"{' '.join(argv)} exited {measured['code']}\nstdout:\n{stdout}\nstderr:\n{stderr}"
        )
    return Run(measured["wall"], measured["maxrss"] / 1024, stdout)


def job_env(work: Path) -> dict[str, str]:
    return {
        **os.environ,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLGITOPS_STATE_DIR": str(work / "state"),
        "DO_NOT_TRACK": "1",
    }


# --- drift ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdicts:
    run: Run
    features: dict[str, tuple[float, bool]]  # feature -> (statistic, drifted)
    times: dict[str, float] = field(default_factory=dict)  # Evidently's own: import, read, report


# Evidently's configurations: the DataDriftPreset (the target), and the least it can do for
# a verdict per feature, a ValueDrift metric per column (the preset computes every column's drift
# three times: for its ValueDrift metrics, its drifted-columns count and its table widget).
EVIDENTLY = {"preset": "Evidently DataDriftPreset", "columns": "Evidently ValueDrift per column"}


def run_mlgitops_monitor(work: Path, baseline: str, current: str, method: str) -> Verdicts:
    """The real CLI, with the options the monitoring CronJob passes; the verdicts are read from
    the drift table it wrote (its default, ``<current>_drift``), this run's rows."""
    from deltalake import DeltaTable

    argv = [MLGITOPS, "monitor", "--baseline", baseline, "--current", current]
    argv += ["--method", method, "--threshold", str(THRESHOLD)]
    run = measure(argv, cwd=work, env=job_env(work))
    report = DeltaTable(current.rstrip("/") + "_drift").to_pyarrow_table().to_pylist()
    latest = max(r["checked_at"] for r in report)
    rows = [
        r
        for r in report
        if r["checked_at"] == latest
        and r["method"] == method
        and r.get("model_version", "*") == "*"  # the rows covering the whole window
    ]
    return Verdicts(run, {r["feature"]: (float(r["statistic"]), bool(r["drifted"])) for r in rows})


def run_evidently(
    work: Path, python: Path, baseline: str, current: str, method: str, metrics: str
) -> Verdicts:
    """Evidently in its own venv (``monitor_evidently.py``), ``metrics`` one of ``EVIDENTLY``."""
    categorical = CATEGORICAL if method == "psi" else []
    argv = [str(python), str(EVIDENTLY_SIDE), "--baseline", baseline, "--current", current]
    argv += ["--method", method, "--threshold", str(THRESHOLD), "--metrics", metrics]
    argv += ["--numeric", ",".join(NUMERIC), "--categorical", ",".join(categorical)]
    run = measure(argv, cwd=work, env=job_env(work))
    found = json.loads(run.stdout.strip().splitlines()[-1])
    features = {
        name: (float(v["statistic"]), bool(v["drifted"])) for name, v in found["features"].items()
    }
    return Verdicts(run, features, found["times"])


def read_tables_main(argv: Sequence[str]) -> None:
    """``_read B C``: read both tables into pandas and exit (the floor)."""
    from deltalake import DeltaTable

    for uri in argv:
        DeltaTable(uri).to_pyarrow_dataset().to_table().to_pandas()


def compared(method: str) -> list[Feature]:
    return [f for f in FEATURES if method == "psi" or f.kind == "numeric"]


def _cell(found: Verdicts, name: str) -> str:
    if name not in found.features:
        return f"{'(none)':>16}"
    statistic, drifted = found.features[name]
    return f"{statistic:10.4f} {'DRIFT' if drifted else '-':>5}"


def report_drift(
    method: str, ours: Verdicts, evidently: dict[str, Verdicts], floor: Run
) -> list[bool]:
    """The per-feature table, figures and verdicts of one method; returns the verdicts."""
    features = compared(method)
    names = [f.name for f in features]
    print(f"\n== drift by {method}, threshold {THRESHOLD:g}: {len(features)} features ==")
    header = f"{'feature':8} {'injected drift':22} {'mlgitops':>16}"
    header += "".join(f" {'Evidently ' + key:>16}" for key in evidently)
    print(header)
    for f in features:
        line = f"{f.name:8} {f.drift or '-':22} {_cell(ours, f.name)}"
        print(line + "".join(f" {_cell(found, f.name)}" for found in evidently.values()))
    expected = {f.name for f in features if method in f.drifted}
    got = {name for name, (_, drifted) in ours.features.items() if drifted}
    results = [
        verdict(
            got == expected and sorted(ours.features) == sorted(names),
            f"mlgitops monitor {method}: the injected drift, and nothing else, is found "
            f"({len(got)} of {len(ours.features)} drifted)",
        )
    ]
    figure(f"monitor {method} wall vs reading the tables", ours.run.wall, floor.wall, "s")
    figure(
        f"monitor {method} peak RSS vs reading the tables", ours.run.peak_mib, floor.peak_mib, "MiB"
    )
    if not evidently:
        print(f"info: Evidently not run (--without-evidently): no comparison by {method}")
        return results
    for key, found in evidently.items():
        label = EVIDENTLY[key]
        print(
            f"info: {label}, its own times: "
            + ", ".join(f"{k} {v:.3f} s" for k, v in found.times.items())
        )
        both = [n for n in names if n in ours.features and n in found.features]
        differ = [n for n in both if ours.features[n][1] != found.features[n][1]]
        for n in differ:
            print(
                f"verdicts differ: {n}: mlgitops {ours.features[n][1]}, {label} "
                f"{found.features[n][1]}"
            )
        agree = len(both) - len(differ)
        results.append(
            verdict(
                agree == len(names),
                f"{method}: the per-feature verdicts agree with {label} ({agree} of {len(names)})",
            )
        )
    preset = evidently["preset"]
    figure(f"monitor {method} wall", ours.run.wall, preset.run.wall, "s")
    figure(f"monitor {method} peak RSS", ours.run.peak_mib, preset.run.peak_mib, "MiB")
    results.append(
        verdict(
            ours.run.wall <= 0.5 * preset.run.wall,
            f"monitor {method} at least 2x faster than Evidently's DataDriftPreset "
            f"({ours.run.wall:.1f} s vs {preset.run.wall:.1f} s)",
        )
    )
    results.append(
        verdict(
            ours.run.peak_mib <= 0.5 * preset.run.peak_mib,
            f"monitor {method} at most half the peak memory of Evidently's DataDriftPreset "
            f"({ours.run.peak_mib:.0f} MiB vs {preset.run.peak_mib:.0f} MiB)",
        )
    )
    if "columns" in evidently:
        lean = evidently["columns"]
        figure(
            f"monitor {method} wall vs ValueDrift only (info)", ours.run.wall, lean.run.wall, "s"
        )
        figure(
            f"monitor {method} peak RSS vs ValueDrift only (info)",
            ours.run.peak_mib,
            lean.run.peak_mib,
            "MiB",
        )
    return results


# --- batch scoring --------------------------------------------------------------------------------


def register_model(work: Path, baseline: str, tracking_uri: str) -> str:
    """A scikit-learn pipeline over every feature, trained on the first baseline rows, logged and
    registered with alias champion; returns its ``models:/...@champion`` URI."""
    import warnings

    import mlflow
    import numpy as np
    from deltalake import DeltaTable
    from mlflow import MlflowClient
    from mlflow.models import infer_signature
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from examples.models import PIP_REQUIREMENTS

    x = DeltaTable(baseline).to_pyarrow_dataset().head(TRAIN_ROWS).to_pandas()
    noise = np.random.default_rng(SEED).normal(0, 0.5, len(x))
    score = x["num_00"] - x["num_05"] / 50 + x["cat_01"].isin(["a", "b"]) + noise
    y = (score > 0).astype(int)
    model = make_pipeline(
        ColumnTransformer(
            [
                ("num", make_pipeline(SimpleImputer(), StandardScaler()), NUMERIC),
                ("cat", OneHotEncoder(handle_unknown="ignore"), CATEGORICAL),
            ]
        ),
        LogisticRegression(max_iter=500),
    ).fit(x, y)
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    experiment = client.create_experiment("bench", artifact_location=(work / "mlruns").as_uri())
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    with warnings.catch_warnings(), mlflow.start_run(experiment_id=experiment) as run:
        warnings.simplefilter("ignore")
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(x.head(100), model.predict(x.head(100))),
            pip_requirements=PIP_REQUIREMENTS,
            skops_trusted_types=["numpy.dtype"],  # OneHotEncoder's dtype parameter
        )
    client.create_registered_model(MODEL)
    version = client.create_model_version(MODEL, source=info.model_uri, run_id=run.info.run_id)
    client.set_registered_model_alias(MODEL, "champion", str(version.version))
    return f"models:/{MODEL}@champion"


def predict_main(argv: Sequence[str]) -> None:
    """``_predict MODEL_URI TABLE TRACKING_URI``: a bare pyfunc predict of the whole table; prints
    the number of rows and of positive predictions."""
    model_uri, table, tracking_uri = argv
    import mlflow
    from deltalake import DeltaTable

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    model = mlflow.pyfunc.load_model(model_uri)
    frame = DeltaTable(table).to_pyarrow_dataset().to_table().to_pandas()
    predictions = model.predict(frame)
    print(json.dumps({"rows": len(predictions), "positive": int((predictions == 1).sum())}))


def run_batch(work: Path, baseline: str, current: str, rows: int) -> list[bool]:
    """``mlgitops batch`` and the bare predict, ``BATCH_ROUNDS`` each, alternating (ours, bare,
    bare, ours, ...) so a change in the machine's load hits both; each side's best round counts.
    Every round of ours writes a fresh output table, so none replaces an earlier batch."""
    from deltalake import DeltaTable

    tracking_uri = f"sqlite:///{work / 'mlflow.db'}"
    start = time.perf_counter()
    model_uri = register_model(work, baseline, tracking_uri)
    print(
        f"setup: trained on {TRAIN_ROWS} rows and registered {model_uri} in "
        f"{time.perf_counter() - start:.1f} s"
    )
    bare_argv = [sys.executable, __file__, "_predict", model_uri, current, tracking_uri]
    ours: list[Run] = []
    bare: list[Run] = []
    for i in range(BATCH_ROUNDS):
        output = str(work / "lake" / f"scored_{i}")
        argv = [MLGITOPS, "batch", "--model", model_uri, "--input", current, "--output", output]
        argv += ["--tracking-uri", tracking_uri, "--batch-id", "bench"]
        for side in ("ours", "bare") if i % 2 == 0 else ("bare", "ours"):
            if side == "ours":
                ours.append(measure(argv, cwd=work, env=job_env(work)))
            else:
                bare.append(measure(bare_argv, cwd=work, env=job_env(work)))
    expected = json.loads(bare[0].stdout.strip().splitlines()[-1])
    scored = DeltaTable(str(work / "lake" / "scored_0")).to_pyarrow_dataset()
    predictions = scored.to_table(columns=["prediction"])["prediction"].to_pylist()
    positive = sum(1 for p in predictions if p == 1)
    print(f"\n== batch scoring: {rows} rows, {model_uri}, best of {BATCH_ROUNDS} rounds ==")
    print(
        "info: rounds, wall: mlgitops "
        + ", ".join(f"{r.wall:.3f}" for r in ours)
        + " s; bare "
        + ", ".join(f"{r.wall:.3f}" for r in bare)
        + " s"
    )
    results = [
        verdict(
            len(predictions) == expected["rows"] == rows and positive == expected["positive"],
            f"mlgitops batch scored every row as the bare predict did ({len(predictions)} rows, "
            f"{positive} positive vs {expected['rows']}, {expected['positive']})",
        )
    ]
    best_ours, best_bare = min(r.wall for r in ours), min(r.wall for r in bare)
    ours_rate, bare_rate = rows / best_ours, rows / best_bare
    figure("batch throughput (rows/s)", ours_rate, bare_rate)
    figure("batch wall", best_ours, best_bare, "s")
    figure("batch peak RSS", max(r.peak_mib for r in ours), max(r.peak_mib for r in bare), "MiB")
    results.append(
        verdict(
            ours_rate >= 0.9 * bare_rate,
            f"mlgitops batch throughput at least 0.9x a bare pyfunc predict "
            f"({ours_rate:.0f} vs {bare_rate:.0f} rows/s)",
        )
    )
    return results


# --- main -----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of each table")
    parser.add_argument(
        "--evidently-python",
        type=Path,
        default=EVIDENTLY_PYTHON,
        help="the Python of Evidently's venv (make bench-monitor builds the default)",
    )
    parser.add_argument(
        "--without-evidently",
        action="store_true",
        help="run only the mlgitops sides (no comparison with Evidently, no Evidently verdict)",
    )
    parser.add_argument("--workdir", type=Path, help="keep the tables, store and reports here")
    args = parser.parse_args()
    if args.rows < 1000:
        parser.error("--rows: at least 1000")
    python: Path | None = None
    if not args.without_evidently:
        python = args.evidently_python.absolute()  # not resolve(): a venv's python is a symlink
        if not python.exists():
            parser.error(
                f"{python} does not exist: `make bench-monitor` builds Evidently's venv "
                "(or pass --without-evidently)"
            )
    with working_directory(args.workdir, parser, prefix="mlgitops-bench-monitor-") as work:
        start = time.perf_counter()
        baseline, current = write_tables(work / "lake", args.rows)
        print(
            f"setup: baseline and current tables, {args.rows} rows x {len(FEATURES)} features "
            f"({len(NUMERIC)} numeric, {len(CATEGORICAL)} categorical) in "
            f"{time.perf_counter() - start:.1f} s",
            flush=True,
        )
        floor = measure([sys.executable, __file__, "_read", baseline, current], cwd=work)
        results: list[bool] = []
        for method in ("psi", "ks"):
            ours = run_mlgitops_monitor(work, baseline, current, method)
            evidently: dict[str, Verdicts] = {}
            if python is not None:
                for metrics in EVIDENTLY:
                    evidently[metrics] = run_evidently(
                        work, python, baseline, current, method, metrics
                    )
            results += report_drift(method, ours, evidently, floor)
        results += run_batch(work, baseline, current, args.rows)
        print(f"\n{sum(results)} of {len(results)} verdicts PASS")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_read":
        read_tables_main(sys.argv[2:])
    elif len(sys.argv) > 1 and sys.argv[1] == "_predict":
        predict_main(sys.argv[2:])
    else:
        main()
        # This process only drives the others (whose exit codes are checked). Its interpreter's
        # teardown, with deltalake's pyarrow datasets and MLflow loaded, aborts now and then
        # ("terminate called without an active exception", exit 134, after every line was
        # printed; the same abort as delta-io/delta-rs#2184), so it skips the teardown.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
