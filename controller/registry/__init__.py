"""The MLflow model registry: the only package that imports MLflow's client."""

from controller.registry.mlflow import (
    MlflowRegistry,
    RegistryStats,
    embedded_tracking_uri,
    resolve_model_uri,
)

__all__ = ["MlflowRegistry", "RegistryStats", "embedded_tracking_uri", "resolve_model_uri"]
