"""What a validation would otherwise import and set up before its first call to MLflow.

The embedded runtime's warm server (``controller.local.forkserver``) imports this module once,
so each validation forked from it starts with MLflow's SQL stores imported and their ORM mappers
configured (about two seconds of a cold start), and MLflow's evaluation (with scikit-learn's
metrics) ready. Nothing here connects to anything: a database connection must not cross a fork.
"""

from __future__ import annotations

import mlflow.models.evaluation.default_evaluator
import mlflow.store.model_registry.sqlalchemy_store
import mlflow.store.tracking.sqlalchemy_store  # noqa: F401
import sklearn.metrics  # noqa: F401
from sqlalchemy.orm import configure_mappers

import controller.registry.evaluate  # noqa: F401

configure_mappers()
