"""The MLflow model registry: the only package that talks to MLflow's registry.

``MlflowRegistry`` picks its transport by URI: the REST API for a tracking server (no ``import
mlflow``), ``MlflowClient`` for a local store. Importing this package never imports mlflow.
"""

from controller.registry.mlflow import (
    MlflowRegistry,
    RegistryStats,
    embedded_tracking_uri,
    resolve_model_uri,
)

__all__ = ["MlflowRegistry", "RegistryStats", "embedded_tracking_uri", "resolve_model_uri"]
