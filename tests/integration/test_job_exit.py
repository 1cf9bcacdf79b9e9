"""The job commands end through ``controller.exits``: output flushed, then ``os._exit``.

A process that read Delta tables through deltalake and pyarrow sometimes aborts in the
interpreter's teardown (exit 134, delta-io/delta-rs#2184), after its work was done. The jobs run
here as the CronJobs and the embedded runtime run them, as programs of their own (the console
script, output to pipes), many times over, so a teardown that aborts once in a while fails the
test: every run exits with the code its command chose, its output is all there, and the tables
hold exactly what the runs wrote. In-process callers (CliRunner, the other tests) are untouched:
only the program's entry point leaves early.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable, write_deltalake

from controller.cli import LEAVE_FAST
from examples.models import dataset
from tests.helpers import ConfigRepo, RegistryView
from tests.integration.test_monitor import cronjob_args

FRAUD = "prod.fraud.fraud_detector"
MLGITOPS = str(Path(sys.executable).with_name("mlgitops"))
RUNS = 20


def mlgitops(
    *args: str, state_dir: Path, registry: RegistryView
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MLFLOW_TRACKING_URI": registry.uri}
    return subprocess.run(
        [MLGITOPS, *args, "--state-dir", str(state_dir)],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )


def test_job_commands_exit_with_their_code_every_time(
    registry: RegistryView, state_dir: Path, repo: ConfigRepo, tmp_path: Path
) -> None:
    assert {"batch", "monitor", "report"} == LEAVE_FAST
    lake = tmp_path / "lake"
    features, _ = dataset("classifier")
    write_deltalake(str(lake / "prod/fraud/training_baseline"), features)
    write_deltalake(
        str(lake / "prod/fraud/transactions_daily"),
        features.sample(200, random_state=0).reset_index(drop=True),
    )
    registry.client.set_registered_model_alias(FRAUD, "champion", "2")
    root = ("--data-root", str(lake))

    batch = mlgitops(
        *cronjob_args("batch"), "--batch-id", "b01", *root, state_dir=state_dir, registry=registry
    )
    assert (batch.returncode, batch.stderr) == (0, ""), batch.stderr
    assert batch.stdout.startswith(f"batch b01: scored 200 rows with {FRAUD} version 2 into ")

    # Each round: one more scored batch (written here, as the batch job writes it), then the
    # monitor comparing the newest window with the baseline: Delta tables read and written.
    scores = lake / "prod/fraud/scores_daily"
    template = DeltaTable(str(scores)).to_pyarrow_table()
    first = template["scored_at"][0].as_py()
    spread = pc.stddev(template["mean_radius"]).as_py()

    def rows(window: str, scored_at: dt.datetime, shift: float) -> pa.Table:
        def column(name: str, values: Any) -> tuple[int, str, Any]:
            kind = template.schema.field(name).type
            return template.schema.get_field_index(name), name, pa.array(values, type=kind)

        n = template.num_rows
        table = template.set_column(*column("batch_id", [window] * n))
        table = table.set_column(*column("scored_at", [scored_at] * n))
        return table.set_column(*column("mean_radius", pc.add(template["mean_radius"], shift)))

    monitor = ["monitor", "--baseline", "prod/fraud/training_baseline"]
    monitor += ["--current", "prod/fraud/scores_daily", *root]
    windows = [f"b{i:02d}" for i in range(1, RUNS + 1)]
    for i, window in enumerate(windows):
        if i:  # a drifted batch every other time: mean_radius shifted by 1.5 standard deviations
            shift = 1.5 * spread if i % 2 else 0.0
            batch_rows = rows(window, first + dt.timedelta(hours=i), shift)
            write_deltalake(str(scores), batch_rows, mode="append")
        ran = mlgitops(*monitor, state_dir=state_dir, registry=registry)
        assert (ran.returncode, ran.stderr) == (0, ""), (window, ran.returncode, ran.stderr)
        said, tables = ran.stdout.splitlines()  # all of it: flushed before the process ended
        found = "1 drifted: mean_radius " if i % 2 else "no drift"
        assert said.startswith(
            f"window {window}: 30 features compared by psi (threshold 0.2) on 200 rows; {found}"
        ), said
        assert tables == f"tables: {scores}_drift, {scores}_profile"

    drift = DeltaTable(f"{scores}_drift").to_pandas()
    assert drift.groupby("window").size().to_dict() == dict.fromkeys(windows, 30)
    assert sorted(drift[drift.drifted].window) == windows[1::2]
    assert set(drift[drift.drifted].feature) == {"mean_radius"}
    profile = DeltaTable(f"{scores}_profile").to_pandas()
    assert profile.groupby("window").size().to_dict() == dict.fromkeys(windows, 31)  # + prediction

    # The CronJob's own arguments: the model's signature, alerts and the report in MLflow too.
    cronjob = mlgitops(*cronjob_args("monitor"), *root, state_dir=state_dir, registry=registry)
    assert (cronjob.returncode, cronjob.stderr) == (0, ""), cronjob.stderr
    assert "window b20: 30 features compared by psi" in cronjob.stdout
    assert cronjob.stdout.splitlines()[-1].startswith("report: ")
    experiment = registry.client.get_experiment_by_name(f"mlgitops/monitoring/{FRAUD}")
    assert experiment is not None
    [logged] = registry.client.search_runs([experiment.experiment_id])
    assert logged.data.tags["mlgitops.newest_window"] == "b20"

    # An exit code the command chose is kept: 2 for a missing table, one line on stderr.
    absent = ["--current", "prod/fraud/absent"]
    missing = mlgitops(*monitor, *absent, state_dir=state_dir, registry=registry)
    assert (missing.returncode, missing.stderr) == (
        2,
        f"error: monitor: current table {lake / 'prod/fraud/absent'} does not exist "
        "(no Delta log there)\n",
    )

    # The report, from the tables the runs left.
    html = tmp_path / "fraud-detector-report.html"
    report = ["report", "fraud-detector", "--env", "prod", "--repo", str(repo.path), *root]
    report += ["--output", str(html)]
    reported = mlgitops(*report, state_dir=state_dir, registry=registry)
    assert (reported.returncode, reported.stderr) == (0, ""), reported.stderr
    assert reported.stdout.splitlines()[-1] == f"report: {html}"
    assert "b20" in html.read_text()


def test_leave_flushes_runs_its_hooks_and_exits_with_the_code(tmp_path: Path) -> None:
    """What the fork server's child relies on: buffered output written, the hook given the
    code, the process ended with it (no atexit handler, no teardown)."""
    script = (
        "import atexit, logging, sys\n"
        "from controller import exits\n"
        "logging.basicConfig(stream=sys.stderr, format='%(message)s')\n"
        "atexit.register(lambda: print('atexit ran'))\n"
        f"exits.on_leave(lambda code: open({str(tmp_path / 'code')!r}, 'w').write(str(code)))\n"
        "print('to a pipe', end='')\n"
        "logging.getLogger('x').warning('logged')\n"
        "exits.leave(3)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stdout, done.stderr) == (3, "to a pipe", "logged\n")
    assert (tmp_path / "code").read_text() == "3"


def test_only_the_job_commands_skip_the_interpreters_teardown(
    repo: ConfigRepo, tmp_path: Path
) -> None:
    """``main`` decides: ``monitor`` leaves without the teardown (an atexit handler never runs),
    ``validate`` ends as any program does; both with the code their command chose."""
    features, _ = dataset("classifier")
    write_deltalake(str(tmp_path / "lake/base"), features)

    def main(*args: str) -> subprocess.CompletedProcess[str]:
        script = (
            "import atexit, sys\n"
            "atexit.register(lambda: print('teardown', file=sys.stderr))\n"
            "sys.argv = ['mlgitops', *sys.argv[1:]]\n"
            "from controller.cli import main\n"
            "main()\n"
        )
        return subprocess.run(
            [sys.executable, "-c", script, *args, "--state-dir", str(tmp_path / "state")],
            capture_output=True,
            text=True,
            timeout=120,
        )

    tables = ("--baseline", "base", "--data-root", str(tmp_path / "lake"))
    job = main("monitor", *tables, "--current", "base")
    assert (job.returncode, job.stderr) == (0, ""), job.stderr
    assert job.stdout.splitlines()[-1].startswith("tables: ")
    failed = main("monitor", *tables, "--current", "absent")
    assert failed.returncode == 2
    assert failed.stderr.startswith("error: monitor: current table ")
    assert "teardown" not in failed.stderr
    other = main("validate", "--repo", str(repo.path), "--env", "prod")
    assert (other.returncode, other.stderr) == (0, "teardown\n")
