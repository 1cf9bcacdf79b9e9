"""Real scikit-learn models, trained on datasets scikit-learn ships, for the demo and the tests.

Nothing is downloaded: breast_cancer (a binary classifier standing in for a fraud detector) and
diabetes (a regressor standing in for churn) come with scikit-learn. Each version differs in a
hyperparameter, so versions really predict differently and a champion swap is visible. Models are
logged once and registered into every catalog asked for, pointing at the same artifacts, which is
what a Databricks-style copy between catalogs looks like and keeps seeding fast.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient

from controller.planning.types import VALIDATION_TAG

PIP_REQUIREMENTS = ["scikit-learn==1.9.1"]  # explicit: inferring them costs seconds per model


@dataclass(frozen=True)
class ExampleModel:
    """A model of the example environments: ``<schema>.<model>`` and how its versions differ."""

    model: str
    task: str  # "classifier" | "regressor"
    params: Sequence[float]


EXAMPLES = (
    ExampleModel("fraud.fraud_detector", "classifier", (0.01, 0.1, 1.0)),
    ExampleModel("customers.churn_predictor", "regressor", (10.0, 1.0, 0.1)),
)


def dataset(task: str) -> tuple[Any, Any]:
    """Features (a DataFrame) and target of the bundled dataset for ``task``."""
    from sklearn.datasets import load_breast_cancer, load_diabetes

    loader = load_breast_cancer if task == "classifier" else load_diabetes
    x, y = loader(return_X_y=True, as_frame=True)
    x.columns = [str(c).replace(" ", "_") for c in x.columns]
    return x, y


def transactions() -> Any:
    """The labelled transactions ``examples/fraud_project`` trains on (its own generator, so a
    table of them validates what it trains), as one frame with a ``label`` column."""
    import importlib.util

    path = Path(__file__).parent / "fraud_project" / "train.py"
    spec = importlib.util.spec_from_file_location("fraud_project_train", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    features, label = module.dataset()
    return features.assign(label=label)


def train(task: str, param: float) -> Any:
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = dataset(task)
    estimator = (
        LogisticRegression(C=param, max_iter=1000) if task == "classifier" else Ridge(alpha=param)
    )
    return make_pipeline(StandardScaler(), estimator).fit(x, y)


def seed(
    *,
    tracking_uri: str,
    artifact_dir: Path,
    catalogs: Iterable[str],
    examples: Sequence[ExampleModel] = EXAMPLES,
    validation_status: str = "PASSED",
) -> dict[str, list[str]]:
    """Log every version of every example model once and register it in each catalog.

    Returns registered model name -> versions created. Versions are tagged
    ``model_validation_status`` so they may be aliased.
    """
    catalogs = list(catalogs)
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    artifact_dir.mkdir(parents=True, exist_ok=True)
    experiment = client.get_experiment_by_name("mlgitops-examples")
    experiment_id = (
        experiment.experiment_id
        if experiment
        else client.create_experiment(
            "mlgitops-examples", artifact_location=artifact_dir.resolve().as_uri()
        )
    )
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    created: dict[str, list[str]] = {}
    for example in examples:
        x, _ = dataset(example.task)
        for catalog in catalogs:
            name = f"{catalog}.{example.model}"
            client.create_registered_model(name, tags={"mlgitops.example": "true"})
            created[name] = []
        for param in example.params:
            with (
                warnings.catch_warnings(),
                mlflow.start_run(experiment_id=experiment_id) as run,
            ):
                warnings.simplefilter("ignore")
                mlflow.log_param("param", param)
                info = mlflow.sklearn.log_model(
                    train(example.task, param),
                    name="model",
                    input_example=x.head(3),
                    pip_requirements=PIP_REQUIREMENTS,
                )
            for catalog in catalogs:
                name = f"{catalog}.{example.model}"
                mv = client.create_model_version(
                    name,
                    source=info.model_uri,
                    run_id=run.info.run_id,
                    tags={VALIDATION_TAG: validation_status},
                )
                created[name].append(str(mv.version))
    return created
