"""Train the example fraud detector: what a team's training code looks like under mlgitops.

mlgitops runs this script in a clean checkout of the commit it trains, with the MLflow run it
created for that commit in ``MLFLOW_RUN_ID``: ``mlflow.start_run()`` resumes that run, so the
parameters, metrics and model below land on it. The script logs the model (with a signature and
an input example, which validation requires); it does not register it: the controller registers
it as a new version of ``MLGITOPS_REGISTERED_MODEL`` and marks it PENDING for validation.

The data is generated (scikit-learn's ``make_classification``, fixed seed) with named columns
such as ``amount``, so the script needs nothing downloaded. ``params.json`` holds the
hyperparameters: changing it is a code change that trains a new version.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import mlflow
import mlflow.sklearn
import numpy as np
import pandas as pd
from mlflow.models import infer_signature
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

COLUMNS = ["amount", "merchant_risk", "hour", "distance_km", "account_age_days", "velocity"]


def dataset(rows: int = 2000, seed: int = 7) -> tuple[pd.DataFrame, pd.Series]:
    """Transactions with a fraud label: six named numeric features."""
    x, y = make_classification(
        n_samples=rows, n_features=len(COLUMNS), n_informative=4, weights=[0.9], random_state=seed
    )
    frame = pd.DataFrame(x, columns=COLUMNS)
    frame["amount"] = np.round(np.exp(frame["amount"] + 5.0), 2)  # positive, long-tailed
    frame["hour"] = (np.abs(frame["hour"]) * 6).clip(0, 23).round()
    return frame, pd.Series(y, name="label")


def main() -> None:
    params = json.loads((Path(__file__).parent / "params.json").read_text())
    features, label = dataset()
    x_train, x_test, y_train, y_test = train_test_split(
        features, label, test_size=0.25, random_state=0, stratify=label
    )
    model = make_pipeline(StandardScaler(), LogisticRegression(C=params["C"], max_iter=1000))
    with mlflow.start_run():  # the run mlgitops created (MLFLOW_RUN_ID), else a new one
        mlflow.log_params(params)
        mlflow.set_tag("mlgitops.example", "fraud_project")
        mlflow.set_tag("owner", "fraud-team")  # validation.requiredTags asks for it
        model.fit(x_train, y_train)
        scores = model.predict_proba(x_test)[:, 1]
        mlflow.log_metrics(
            {
                "roc_auc": float(roc_auc_score(y_test, scores)),
                "accuracy": float(accuracy_score(y_test, model.predict(x_test))),
            }
        )
        example = x_test.head(5)
        mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(example, model.predict(example)),
            input_example=example,
            pip_requirements=["scikit-learn"],
        )
    print(f"trained for {os.environ.get('MLGITOPS_REGISTERED_MODEL', 'a local run')}")


if __name__ == "__main__":
    main()
