"""`mlgitops monitor` after `mlgitops batch`, run with the very arguments the CronJobs carry.

Real Delta tables, a real MLflow store and real scikit-learn models (the signature names the
features); drift is made by shifting real features of the bundled dataset.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import yaml
from deltalake import DeltaTable, write_deltalake
from typer.testing import CliRunner

from controller.api.documents import ModelDeployment
from controller.cli import app
from controller.planning.children import Owner, RenderContext, job_container, render_children
from examples.models import dataset
from tests.conftest import Ran
from tests.helpers import PROJECT, ConfigRepo, RegistryView, mlgitops_run, wait_for
from tests.integration.test_notify import audit, environ, environment
from tests.receiver import Receiver

FRAUD = "prod.fraud.fraud_detector"


def cronjob_args(role: str) -> list[str]:
    """The args of the example fraud-detector's CronJob ``role``, as the operator renders them."""
    doc = yaml.safe_load((PROJECT / "environments/prod/fraud-detector.yaml").read_text())
    md = ModelDeployment.model_validate(doc)
    ctx = RenderContext("prod", "image", None)
    children = render_children(Owner("fraud-detector", "uid", "ml-prod"), md.spec, FRAUD, ctx)
    [job] = [c for c in children if c["metadata"]["name"] == f"fraud-detector-{role}"]
    return list(job_container(job)["args"])


@pytest.fixture
def lake(tmp_path: Path) -> Path:
    """The data root, holding the baseline the monitor compares with."""
    root = tmp_path / "lake"
    features, _ = dataset("classifier")
    write_deltalake(str(root / "prod/fraud/training_baseline"), features)
    return root


@pytest.fixture
def run(lake: Path, registry: RegistryView) -> Callable[..., Ran]:
    registry.client.set_registered_model_alias(FRAUD, "champion", "2")

    def invoke(*args: str) -> Ran:
        # Explicit: seeding the session's store set $MLFLOW_TRACKING_URI in this process.
        argv = [*args, "--data-root", str(lake), "--tracking-uri", registry.uri]
        result = CliRunner().invoke(app, argv, catch_exceptions=False)
        return Ran(result.exit_code, result.stdout, result.stderr)

    return invoke


def score(run: Callable[..., Ran], lake: Path, batch_id: str, frame: pd.DataFrame) -> None:
    write_deltalake(str(lake / "prod/fraud/transactions_daily"), frame, mode="overwrite")
    ran = run(*cronjob_args("batch"), "--batch-id", batch_id)
    assert ran.code == 0, ran.stderr


def shifted(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    out = frame.copy()
    for c in columns:
        out[c] = out[c] + 1.5 * frame[c].std()
    return out


def test_drift_per_window_and_retraining_after_n_of_m(
    run: Callable[..., Ran], lake: Path, registry: RegistryView
) -> None:
    features, _ = dataset("classifier")
    same = features.sample(300, random_state=1)
    drift = shifted(features.sample(300, random_state=2), ["mean_radius", "worst_area"])

    score(run, lake, "b1", same)
    first = run(*cronjob_args("monitor"))
    assert first.code == 0, first.stderr
    assert "window b1: 30 features compared by psi (threshold 0.2) on 300 rows; no drift" in (
        first.stdout
    )
    assert (
        "retraining not due: 0 of the last 1 windows drifted or breached (due at 2)" in first.stdout
    )

    score(run, lake, "b2", drift)
    second = run(*cronjob_args("monitor"))
    assert second.code == 0, second.stderr  # drift is a finding, not a failure
    assert "window b2: 30 features compared by psi" in second.stdout
    assert "2 drifted: mean_radius" in second.stdout
    assert "worst_area" in second.stdout
    assert "retraining not due: 1 of the last 2 windows drifted or breached" in second.stdout

    again = run(*cronjob_args("monitor"))  # a retried Job: the window counts once
    assert "retraining not due: 1 of the last 2 windows drifted or breached" in again.stdout

    score(run, lake, "b3", drift)
    third = run(*cronjob_args("monitor"))
    assert "retraining due: 2 of the last 3 windows drifted or breached (due at 2)" in third.stdout
    # The registered model carries the window; its controller trains once for it.
    assert f"tagged {FRAUD} mlgitops.retrain_due=b3" in third.stdout
    assert registry.client.get_registered_model(FRAUD).tags["mlgitops.retrain_due"] == "b3"

    # Drift outlasting the retraining: due again only after two more drifted windows.
    score(run, lake, "b4", drift)
    fourth = run(*cronjob_args("monitor"))
    assert (
        "retraining not due: 1 of the last 1 windows since b3 drifted or breached" in fourth.stdout
    )
    assert registry.client.get_registered_model(FRAUD).tags["mlgitops.retrain_due"] == "b3"
    score(run, lake, "b5", drift)
    fifth = run(*cronjob_args("monitor"))
    assert "retraining due: 2 of the last 2 windows since b3 drifted or breached" in fifth.stdout
    assert registry.client.get_registered_model(FRAUD).tags["mlgitops.retrain_due"] == "b5"

    report = DeltaTable(str(lake / "prod/fraud/scores_daily_drift")).to_pandas()
    assert report.groupby("window").size().to_dict() == {f"b{i}": 30 for i in range(1, 6)}
    drifted = report[report.drifted]
    assert set(drifted["window"]) == {"b2", "b3", "b4", "b5"}
    assert set(drifted["feature"]) == {"mean_radius", "worst_area"}
    assert (report[report.window == "b1"]["statistic"] < 0.2).all()

    ks = run(*cronjob_args("monitor"), "--method", "ks", "--tables", "prod/fraud/ks")
    assert ks.code == 0, ks.stderr
    assert "features compared by ks (threshold 0.2) on 300 rows; 2 drifted" in ks.stdout


def test_bad_input_is_one_line(run: Callable[..., Ran], lake: Path) -> None:
    args = cronjob_args("monitor")
    no_current = run(*args[: args.index("--current")])
    assert no_current.code == 2
    assert no_current.stderr == (
        "error: --current: required (the monitoring CronJob passes the table monitored)\n"
    )

    missing = run(*args)  # no batch has run: the batch output table does not exist yet
    assert missing.code == 2
    assert missing.stderr == (
        f"error: monitor: current table {lake / 'prod/fraud/scores_daily'} does not exist "
        "(no Delta log there)\n"
    )

    no_alias = run(*args, "--model", f"models:/{FRAUD}@challenger")
    assert no_alias.code == 2
    assert no_alias.stderr.startswith(
        f"error: monitor: cannot read the signature of models:/{FRAUD}@challenger"
    )

    bad = run(*args, "--method", "chi2")
    assert (bad.code, bad.stderr) == (2, "error: --method: must be psi or ks, not 'chi2'\n")


def test_alerts_are_notified_once_per_window(
    run: Callable[..., Ran], lake: Path, registry: RegistryView, receiver: Receiver, tmp_path: Path
) -> None:
    """The monitor leaves its alerts on the registered model; the controller's pass reports a
    new value, and the notifications go out once per event and window (a rerun of a window,
    or a restarted controller, sends nothing twice)."""
    from controller.monitoring import AlertWatch
    from controller.notify import Notifier
    from controller.registry import MlflowTracking

    env = environment(audit(receiver, "DriftDetected", "QualityBreached", "RetrainingDue"))
    tracking = MlflowTracking(registry.uri)

    def controller_pass(watch: AlertWatch) -> list[str]:
        notifier = Notifier.for_environment(
            env, state_dir=tmp_path / "state", environ=environ(receiver)
        )
        reasons = []
        for event, key in watch.check(FRAUD, tracking):
            reasons.append(f"{event.reason} {key}")
            notifier.notify(event.reason, key, model="fraud-detector", message=event.message)
        assert notifier.close(timeout=10)
        return reasons

    watch = AlertWatch()
    features, _ = dataset("classifier")
    drift = shifted(features.sample(300, random_state=2), ["mean_radius"])
    score(run, lake, "b1", features.sample(300, random_state=1))
    assert run(*cronjob_args("monitor")).code == 0
    assert controller_pass(watch) == []  # nothing drifted: no alert
    score(run, lake, "b2", drift)
    assert run(*cronjob_args("monitor")).code == 0
    assert controller_pass(watch) == [f"DriftDetected {FRAUD}/DriftDetected/b2"]
    assert run(*cronjob_args("monitor")).code == 0  # the same windows again
    assert controller_pass(watch) == []  # the tag did not change
    score(run, lake, "b3", drift)
    assert run(*cronjob_args("monitor")).code == 0
    assert controller_pass(AlertWatch()) == [  # a restarted controller: every alert reported
        f"DriftDetected {FRAUD}/DriftDetected/b2",
        f"DriftDetected {FRAUD}/DriftDetected/b3",
        f"RetrainingDue {FRAUD}/RetrainingDue/b3",
    ]
    sent = [r.json() for r in receiver.on("/audit")]
    assert [(s["event"], s["key"]) for s in sent] == [  # ... but notified once each
        ("DriftDetected", f"{FRAUD}/DriftDetected/b2"),
        ("DriftDetected", f"{FRAUD}/DriftDetected/b3"),
        ("RetrainingDue", f"{FRAUD}/RetrainingDue/b3"),
    ]
    assert "mean_radius" in sent[1]["message"]
    assert sent[2]["message"] == f"{FRAUD}: retraining due at window b3"


def test_the_serving_challenger_is_compared_online_and_its_version_tagged(
    run: Callable[..., Ran], lake: Path, registry: RegistryView
) -> None:
    """An inference table where champion v2 and challenger v3 share the traffic, labels landed
    for most requests: the challenger, right more often, WON; the tag is on version 3."""
    import datetime as dt

    import numpy as np

    features, truth = dataset("classifier")
    rng = np.random.default_rng(5)
    n = len(features)
    now = dt.datetime.now(dt.UTC)
    rows = features.copy()
    rows["request_id"] = [f"r{i}" for i in range(n)]
    rows["timestamp"] = [now - dt.timedelta(minutes=int(m)) for m in rng.integers(0, 170, n)]
    challenger = rng.random(n) < 0.3
    rows["model_version"] = np.where(challenger, "3", "2")
    rows["role"] = np.where(challenger, "challenger", "champion")
    rows["status"] = np.int32(200)
    right = rng.random(n) < np.where(challenger, 0.97, 0.8)
    rows["prediction"] = np.where(right, truth, 1 - truth)
    write_deltalake(str(lake / "prod/fraud/requests"), rows)
    labels = pd.DataFrame({"request_id": rows["request_id"], "label": truth}).sample(
        frac=0.9, random_state=0
    )
    write_deltalake(str(lake / "prod/fraud/labels"), labels)

    ran = run(
        "monitor",
        "--model",
        f"models:/{FRAUD}@champion",
        "--baseline",
        "prod/fraud/training_baseline",
        "--current",
        "prod/fraud/requests",
        "--source",
        "inference",
        "--lookback",
        "3",
        "--labels",
        "prod/fraud/labels",
        "--label-key",
        "request_id",
        "--label-target",
        "label",
        "--online-metric",
        "accuracy",
        "--online-min-change",
        "0.05",
        "--online-min-labeled-rows",
        "50",
    )
    assert ran.code == 0, ran.stderr
    assert "online comparison: challenger 3 WON against champion 2: accuracy 0.9" in ran.stdout
    tags = registry.client.get_model_version(FRAUD, "3").tags
    assert tags["mlgitops.online.comparison"] == "WON"
    assert "labeled rows in 3 window(s)" in tags["mlgitops.online.detail"]
    quality = DeltaTable(str(lake / "prod/fraud/requests_quality")).to_pandas()
    assert set(quality[quality.metric == "accuracy"].role) == {"", "champion", "challenger"}


MONITORED = """\
apiVersion: mlgitops.io/v1alpha1
kind: ModelDeployment
metadata:
  name: fraud-detector
spec:
  model: fraud.fraud_detector
  champion: {version: "2"}
  serving: {enabled: false}
  batchInference:
    schedule: "0 11 * * *"
    input: prod/fraud/transactions_daily
    output: prod/fraud/scores_daily
  monitoring:
    schedule: "0 8 * * *"
    baseline: prod/fraud/training_baseline
    retrain: {violations: 1, windows: 2}
"""


def test_mlgitops_run_reports_the_monitor_alerts_once(
    run: Callable[..., Ran],
    lake: Path,
    repo: ConfigRepo,
    state_dir: Path,
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    """The local runtime's side of the alerts: `mlgitops run` prints them and notifies once
    per window, and a restarted `mlgitops run` notifies no one again."""
    env_file = "environments/prod/environment.yaml"
    repo.write(
        env_file,
        repo.read(env_file)
        + f"  dataRoot: {lake}\n"
        + "  notifications:\n"
        + "    - name: audit\n"
        + f"      url: {receiver.url}/hook\n"
        + "      tokenEnv: MLGITOPS_NOTIFY_AUDIT_TOKEN\n"
        + "      events: [DriftDetected, RetrainingDue]\n",
    )
    for name in ("fraud-detector.yaml", "churn-predictor.yaml"):
        repo.remove(f"environments/prod/{name}")
    repo.write("environments/prod/fraud-detector.yaml", MONITORED)
    repo.commit("Monitor the fraud detector; alerts to the audit log")
    features, _ = dataset("classifier")
    drift = shifted(features.sample(300, random_state=2), ["mean_radius"])
    score(run, lake, "b1", drift)
    # What the document's cron job leaves on the model (its retrain rule: due at one window).
    monitored = run(*cronjob_args("monitor"), "--retrain-violations", "1", "--retrain-windows", "2")
    assert monitored.code == 0, monitored.stderr

    def said(log: Path) -> None:
        with mlgitops_run(repo.path, state_dir, log, env={"MLGITOPS_NOTIFY_AUDIT_TOKEN": "k3y"}):
            wait_for(
                "the alerts said",
                lambda: "RetrainingDue" in log.read_text(),
                timeout=120,
                on_timeout=lambda: log.read_text()[-3000:],
            )
            time.sleep(3)  # more passes: nothing said or sent twice

    said(tmp_path / "run.log")
    receiver.wait_for("/hook", 2, timeout=30)
    said(tmp_path / "again.log")  # a restart reports them again, sends nothing
    time.sleep(1)
    text = (tmp_path / "run.log").read_text()
    assert text.count("prod: DriftDetected: ") == 1
    assert f"prod: RetrainingDue: {FRAUD}: retraining due at window b1" in text
    assert receiver.events("/hook") == ["DriftDetected", "RetrainingDue"]
    assert [r.json()["key"] for r in receiver.on("/hook")] == [
        f"{FRAUD}/DriftDetected/b1",
        f"{FRAUD}/RetrainingDue/b1",
    ]
