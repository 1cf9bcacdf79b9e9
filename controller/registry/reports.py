"""One MLflow run per monitor run: its numbers as metrics and its HTML report as an artifact.

The metric tables are the record of monitoring; the run is where people already look (the
MLflow UI, next to the training and validation runs), so each ``mlgitops monitor`` run with a
registered model leaves one there, in the experiment ``mlgitops/monitoring/<registered model>``.
A run is created, filled and finished in a few requests; it is never searched for or reused:
a monitor run repeated is a new look at the same windows, and says so with its own run.

The experiment is made as training makes its own (``MlflowTracking.experiment_id``: the
embedded store keeps artifacts under the state directory, never ``./mlruns``); the artifact
goes through ``MlflowClient``, which knows every artifact store MLflow does (a tracking
server's proxied artifacts, a directory, object stores). Every failure is
:class:`~controller.errors.RegistryUnavailable`, one line, credentials redacted: the monitor
reports it as a warning, since the tables are written already.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Mapping
from pathlib import Path

from controller.errors import RegistryUnavailable
from controller.redact import redact
from controller.registry.tracking import MlflowTracking
from controller.registry.transport import guarded

__all__ = ["MONITORING_EXPERIMENT", "log_monitoring_run"]

MONITORING_EXPERIMENT = "mlgitops/monitoring/{model}"


def log_monitoring_run(
    tracking_uri: str,
    *,
    model: str,
    tags: Mapping[str, str],
    metrics: Mapping[str, float],
    report: str,
    artifact_path: str,
    artifact_root: Path | None = None,
    run_name: str | None = None,
) -> str:
    """Log one finished run for a monitor run of registered model ``model``: ``tags``, the finite
    ``metrics``, and ``report`` as the text artifact ``artifact_path``. Returns the artifact's
    URI. ``artifact_root``: where a new experiment keeps its artifacts; default, for a SQLite
    store, ``artifacts`` beside its file (as the embedded store has them), else the server's
    choice."""
    from mlflow import MlflowClient  # ~1 s: only a monitor run with a registered model gets here
    from mlflow.entities import Metric

    display = redact(tracking_uri)
    if artifact_root is None and tracking_uri.startswith("sqlite:///"):
        artifact_root = Path(tracking_uri.removeprefix("sqlite:///")).parent / "artifacts"
    experiment = MlflowTracking(tracking_uri, artifact_root=artifact_root).experiment_id(
        MONITORING_EXPERIMENT.format(model=model)
    )
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    run = guarded(
        display,
        lambda: client.create_run(experiment, tags=dict(tags), run_name=run_name),
    )
    run_id = run.info.run_id
    try:
        now = int(time.time() * 1000)
        finite = [Metric(k, float(v), now, 0) for k, v in metrics.items() if math.isfinite(v)]
        if finite:
            guarded(display, lambda: client.log_batch(run_id, metrics=finite))
        guarded(display, lambda: client.log_text(run_id, report, artifact_path))
    except RegistryUnavailable:
        with contextlib.suppress(Exception):  # the first failure is the one worth reporting
            client.set_terminated(run_id, "FAILED")
        raise
    guarded(display, lambda: client.set_terminated(run_id, "FINISHED"))
    return f"{str(run.info.artifact_uri).rstrip('/')}/{artifact_path}"
