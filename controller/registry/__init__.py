"""The MLflow model registry: the only package that imports MLflow.

``MlflowRegistry`` (``mlflow.py``) picks its transport by URI: MLflow's REST API for a tracking
server (``rest.py``, no ``import mlflow``), ``MlflowClient`` for a local store (``client.py``).
``MlflowTracking`` (``tracking.py``) is what training needs over the same transports:
experiments, runs tagged ``mlgitops.*``, the models a run logged, and registering them.
``models.py`` is what the model server and the jobs do with a registered model (resolve, load,
read its signature, MLflow's scoring protocol). Importing this package never imports mlflow, so
the operator, which only talks to a tracking server, stays small.
"""

import os

# Set before any module of this package imports mlflow, which reads them then. A CLI run must
# fail fast when the registry is down (MLflow's default retries take minutes), and MLflow's INFO
# chatter (store migrations, "active model" notes) is not mlgitops output. Values the user sets
# explicitly win.
for _key, _value in {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "15",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_LOGGING_LEVEL": "WARNING",
}.items():
    os.environ.setdefault(_key, _value)

from controller.registry.mlflow import (  # noqa: E402
    MlflowRegistry,
    RegistryStats,
    embedded_tracking_uri,
)
from controller.registry.tracking import MlflowTracking  # noqa: E402

__all__ = ["MlflowRegistry", "MlflowTracking", "RegistryStats", "embedded_tracking_uri"]
