"""`mlgitops batch`: real Delta tables, a real MLflow store with real scikit-learn models.

The CLI runs in-process (the real Typer app); the model scores are checked against the same
registered version loaded straight from MLflow.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import mlflow.pyfunc
import pandas as pd
import pytest
from deltalake import DeltaTable, write_deltalake
from typer.testing import CliRunner

from controller.cli import app
from examples.models import dataset
from tests.conftest import Ran
from tests.helpers import MlflowServer, RegistryView, free_port

FRAUD = "prod.fraud.fraud_detector"
INPUT, OUTPUT = "prod/fraud/transactions_daily", "prod/fraud/scores_daily"


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    root = tmp_path / "lake"
    features, _ = dataset("classifier")
    write_deltalake(str(root / INPUT), features.head(100))
    return root


@pytest.fixture
def batch(registry: RegistryView, data_root: Path) -> Callable[..., Ran]:
    def run(*args: str) -> Ran:
        # Explicit: seeding the session's store set $MLFLOW_TRACKING_URI in this process.
        argv = ["batch", "--tracking-uri", registry.uri, "--data-root", str(data_root), *args]
        result = CliRunner().invoke(app, argv, catch_exceptions=False)
        return Ran(result.exit_code, result.stdout, result.stderr)

    return run


def champion(registry: RegistryView, version: str) -> None:
    registry.client.set_registered_model_alias(FRAUD, "champion", version)


def score_first_batch(batch: Callable[..., Ran], registry: RegistryView) -> str:
    """Batch b1 scored by version 2 as champion; returns the model URI used."""
    model = f"models:/{FRAUD}@champion"
    champion(registry, "2")
    ran = batch("--model", model, "--input", INPUT, "--output", OUTPUT, "--batch-id", "b1")
    assert ran.code == 0, ran.stderr
    return model


def scores(data_root: Path) -> pd.DataFrame:
    return DeltaTable(str(data_root / OUTPUT)).to_pandas()


def test_scores_with_the_champion_of_the_moment_once_per_batch_id(
    batch: Callable[..., Ran], registry: RegistryView, data_root: Path
) -> None:
    model = f"models:/{FRAUD}@champion"
    champion(registry, "2")
    ran = batch("--model", model, "--input", INPUT, "--output", OUTPUT, "--batch-id", "b1")
    assert ran.code == 0, ran.stderr
    assert "scored 100 rows with prod.fraud.fraud_detector version 2" in ran.stdout
    out = scores(data_root)
    assert len(out) == 100
    assert set(out["model_version"]) == {"2"}
    assert set(out["model_name"]) == {FRAUD}
    assert set(out["batch_id"]) == {"b1"}
    assert str(out["scored_at"].dtype) == "datetime64[us, UTC]"
    features, _ = dataset("classifier")
    expected = mlflow.pyfunc.load_model(f"models:/{FRAUD}/2").predict(features.head(100))
    assert list(out.sort_values("mean_radius")["prediction"]) == list(
        pd.Series(expected, index=features.head(100).index).loc[
            features.head(100).sort_values("mean_radius").index
        ]
    )
    assert list(out.columns[: features.shape[1]]) == list(features.columns)

    # The same batch again (a retried Job): still one copy of it.
    b1 = sorted(scores(data_root)["prediction"])
    again = batch("--model", model, "--input", INPUT, "--output", OUTPUT, "--batch-id", "b1")
    assert again.code == 0, again.stderr
    assert len(scores(data_root)) == 100

    # A promotion reaches the next run with no change to the command; chunks change nothing.
    champion(registry, "3")
    args = ("--model", model, "--input", INPUT, "--output", OUTPUT, "--batch-id", "b2")
    nxt = batch(*args, "--chunk-rows", "30")
    assert nxt.code == 0, nxt.stderr
    out = scores(data_root)
    assert out.groupby("batch_id")["model_version"].agg(set).to_dict() == {
        "b1": {"2"},
        "b2": {"3"},
    }
    assert out["batch_id"].value_counts().to_dict() == {"b1": 100, "b2": 100}
    assert sorted(out[out.batch_id == "b1"]["prediction"]) == b1  # b2 left b1's rows alone


def test_bad_input_is_one_line_and_changes_nothing(
    batch: Callable[..., Ran], registry: RegistryView, data_root: Path
) -> None:
    model = score_first_batch(batch, registry)
    before = DeltaTable(str(data_root / OUTPUT)).version()

    missing = batch("--model", model, "--input", "prod/fraud/nope", "--output", OUTPUT)
    assert missing.code == 2
    assert missing.stderr.strip().count("\n") == 0
    assert f"input table {data_root / 'prod/fraud/nope'} does not exist" in missing.stderr

    no_alias = batch("--model", f"models:/{FRAUD}@challenger", "--input", INPUT, "--output", OUTPUT)
    assert no_alias.code == 2
    assert no_alias.stderr.startswith(f"error: batch: cannot resolve models:/{FRAUD}@challenger")
    assert no_alias.stderr.strip().count("\n") == 0

    features, _ = dataset("classifier")
    write_deltalake(
        str(data_root / "prod/fraud/partial"), features.head(5).drop(columns="mean_radius")
    )
    refused = batch("--model", model, "--input", "prod/fraud/partial", "--output", OUTPUT)
    assert refused.code == 2
    assert refused.stderr == (
        f"error: batch: input table {data_root / 'prod/fraud/partial'} lacks column(s) "
        f"'mean_radius' that {FRAUD} version 2 needs (its signature)\n"
    )

    clash = features.head(5).assign(prediction=1)
    write_deltalake(str(data_root / "prod/fraud/clash"), clash)
    clashed = batch("--model", model, "--input", "prod/fraud/clash", "--output", OUTPUT)
    assert clashed.code == 2
    assert "column 'prediction' clashes with a column the output adds" in clashed.stderr

    assert DeltaTable(str(data_root / OUTPUT)).version() == before
    assert len(scores(data_root)) == 100


def test_an_empty_input_replaces_an_earlier_attempt(
    batch: Callable[..., Ran], registry: RegistryView, data_root: Path
) -> None:
    model = score_first_batch(batch, registry)
    features, _ = dataset("classifier")
    write_deltalake(str(data_root / INPUT), features.head(0), mode="overwrite")
    ran = batch("--model", model, "--input", INPUT, "--output", OUTPUT, "--batch-id", "b1")
    assert ran.code == 0, ran.stderr
    assert "scored 0 rows" in ran.stdout
    assert len(scores(data_root)) == 0


def test_as_the_cronjob_runs_it_against_a_tracking_server(
    state_dir: Path, registry: RegistryView, data_root: Path, tmp_path: Path
) -> None:
    """The pod's command line and environment: the rendered args, a tracking server over HTTP,
    the data root and the Job's name as the batch id, in a process of its own."""
    champion(registry, "2")
    server = MlflowServer(state_dir / "mlflow.db", tmp_path / "server-artifacts", free_port())
    server.start()
    try:
        env = {
            **os.environ,
            "MLFLOW_TRACKING_URI": server.url,
            "MLGITOPS_DATA_ROOT": str(data_root),
            "MLGITOPS_BATCH_ID": "fraud-detector-batch-29929620",
            "MLGITOPS_STATE_DIR": str(tmp_path / "pod-state"),
        }
        env.pop("MLFLOW_REGISTRY_URI", None)
        args = ["batch", "--model", f"models:/{FRAUD}@champion", "--input", INPUT]
        done = subprocess.run(
            [str(Path(sys.executable).with_name("mlgitops")), *args, "--output", OUTPUT],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        server.stop()
    assert done.returncode == 0, done.stderr[-2000:]
    assert "batch fraud-detector-batch-29929620: scored 100 rows" in done.stdout
    out = scores(data_root)
    assert set(out["batch_id"]) == {"fraud-detector-batch-29929620"}
    assert set(out["model_version"]) == {"2"}
    assert not (tmp_path / "pod-state").exists()  # a pod's read-only root: nothing written there
