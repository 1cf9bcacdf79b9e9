"""The MLflow model registry: the only package that imports MLflow.

``MlflowRegistry`` (``mlflow.py``) picks its transport by URI: MLflow's REST API for a tracking
server (``rest.py``, no ``import mlflow``), ``MlflowClient`` for a local store (``client.py``).
``MlflowTracking`` (``tracking.py``) is what training needs over the same transports:
experiments, runs tagged ``mlgitops.*``, the models a run logged, and registering them.
``models.py`` is what the model server and the jobs do with a registered model (resolve, load,
read its signature, MLflow's scoring protocol). Importing this package never imports mlflow, so
the operator, which only talks to a tracking server, stays small.
"""

from controller.registry.mlflow import MlflowRegistry, RegistryStats, embedded_tracking_uri
from controller.registry.tracking import MlflowTracking

__all__ = ["MlflowRegistry", "MlflowTracking", "RegistryStats", "embedded_tracking_uri"]
