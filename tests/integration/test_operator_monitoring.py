"""Monitoring on Kubernetes: the monitoring CronJob's pod writes the metric tables and leaves its
alerts on the registered model; the operator posts them as Events on the ModelDeployment and
notifies once per window.

The real operator against the API emulator (or, from tests/e2e, a real control plane) and a
real ``mlflow server``. Neither has a CronJob controller that would start pods here, so the test
plays the pod: it runs the CronJob's container (``mlgitops monitor`` with its arguments and
literal environment) as the scheduled Job would, on real Delta tables.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from deltalake import write_deltalake

from tests.helpers import PROJECT, MlflowServer, OperatorProcess, RegistryView, wait_for
from tests.integration.test_monitor import MONITORED
from tests.integration.test_operator import NS, OPERATOR, cluster, get
from tests.integration.test_operator_promotion import play_validation, reasons
from tests.integration.test_operator_training import server
from tests.k8s.fixtures import Cluster
from tests.receiver import Receiver

__all__ = ["cluster", "server"]
FRAUD = "prod.fraud.fraud_detector"


def _tables(root: Path) -> None:
    """The baseline (the training features) and one scored batch whose mean_radius drifted."""
    from examples.models import dataset

    features, _ = dataset("classifier")
    write_deltalake(str(root / "prod/fraud/training_baseline"), features)
    batch = features.sample(300, random_state=3).reset_index(drop=True)
    batch["mean_radius"] += 2 * features["mean_radius"].std()
    batch["prediction"] = np.int64(0)
    batch["model_version"] = "2"
    batch["batch_id"] = "cron-1"
    batch["scored_at"] = dt.datetime.now(dt.UTC)
    write_deltalake(str(root / "prod/fraud/scores_daily"), batch)


def _monitor_cronjob(cluster: Cluster) -> dict[str, Any] | None:
    return get(cluster, "cronjob", "fraud-detector-monitor")


def test_the_monitoring_job_alerts_reach_events_and_notifications_once_per_window(
    cluster: Cluster,
    server: MlflowServer,
    state_dir: Path,
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    tables = tmp_path / "tables"
    _tables(tables)
    env = yaml.safe_load((PROJECT / "environments/prod/environment.yaml").read_text())
    env["spec"].update(registry={"trackingUri": server.url}, namespace=NS, dataRoot=str(tables))
    env["spec"]["notifications"] = [
        {
            "name": "audit",
            "url": f"{receiver.url}/hook",
            "tokenEnv": "MLGITOPS_NOTIFY_AUDIT_TOKEN",
            "events": ["DriftDetected", "QualityBreached", "RetrainingDue"],
        }
    ]
    cluster.kubectl("apply", "--validate=false", "-n", NS, "-f", "-", input=yaml.safe_dump(env))
    cluster.kubectl("apply", "--validate=false", "-n", NS, "-f", "-", input=MONITORED)
    op = OperatorProcess(
        cluster.kubeconfig_for(OPERATOR),
        state_dir,
        tmp_path / "operator.log",
        *("--env", "prod", "--namespace", NS, "--resync-interval", "2"),
        env={"MLGITOPS_NOTIFY_AUDIT_TOKEN": "k3y"},
    )
    try:
        cronjob = wait_for("the monitoring CronJob", lambda: _monitor_cronjob(cluster), timeout=90)
        registry = RegistryView(server.url)
        wait_for("the champion alias", lambda: registry.aliases(FRAUD).get("champion") == "2")
        pod = {"spec": {"template": cronjob["spec"]["jobTemplate"]["spec"]["template"]}}
        ran = play_validation(pod, tmp_path / "pod")  # the scheduled Job's pod, played
        assert ran.returncode == 0, ran.stderr
        assert "1 drifted: mean_radius" in ran.stdout
        assert (tables / "prod/fraud/scores_daily_profile").is_dir()

        wait_for("the drift Event", lambda: "DriftDetected" in reasons(cluster), timeout=60)
        receiver.wait_for("/hook", 2, timeout=30)
        again = play_validation(pod, tmp_path / "pod")  # a retried Job: the same window
        assert again.returncode == 0, again.stderr
        time.sleep(5)  # resync passes
        assert sorted(receiver.events("/hook")) == ["DriftDetected", "RetrainingDue"]
        keys = sorted(r.json()["key"] for r in receiver.on("/hook"))
        assert keys == [f"{FRAUD}/DriftDetected/cron-1", f"{FRAUD}/RetrainingDue/cron-1"]
        assert reasons(cluster).count("DriftDetected") == 1
    finally:
        op.stop()
        print(f"--- operator log, last 100 lines of {op.log} ---\n{op.tail(100)}")
