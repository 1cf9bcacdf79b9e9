"""Monitoring's metric tables, read from another environment that lists them in readCatalogs.

prod's monitor writes ``<table>_drift``, ``_profile`` and ``_quality`` next to the table it
monitors, in prod's catalog. dev's Environment lists ``readCatalogs: [prod]``, so a dev document
may name them in a field it only reads: here dev validates a drift-triage model (does this
feature's statistic call for a person?) on prod's drift history, ``validation.data`` being
``prod/fraud/scores_daily_drift``. Both Environments name the same ``dataRoot``: one lake whose top
folders are the catalogs.

Everything is real: a Git config repository, prod's batch and monitoring jobs run as the
embedded runtime runs them (processes with the Environment's data root), the Delta tables they
write, dev's sync, and dev's validation job reading prod's rows through its own data root. The
same revision without readCatalogs is refused whole (one line naming file, line and field, exit
2, nothing moved); a field that writes into prod is refused even with readCatalogs.
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from deltalake import DeltaTable, write_deltalake

from controller.engine import load_desired
from controller.local.cron import LocalCron
from controller.sources import GitSource
from examples.models import PIP_REQUIREMENTS, dataset
from tests.conftest import Ran
from tests.helpers import ConfigRepo, RegistryView
from tests.integration.test_monitor import shifted

TRIAGE = "dev.monitoring.drift_triage"
DRIFT = "prod/fraud/scores_daily_drift"
DAY1 = dt.datetime(2026, 11, 27, tzinfo=dt.UTC)

PROD_FRAUD = """\
apiVersion: mlgitops.io/v1alpha1
kind: ModelDeployment
metadata:
  name: fraud-detector
spec:
  model: fraud.fraud_detector
  champion: {version: "2"}
  serving: {enabled: false}
  batchInference:
    schedule: "0 11 * * *"
    input: prod/fraud/transactions_daily
    output: prod/fraud/scores_daily
  monitoring:
    schedule: "0 12 * * *"
    baseline: prod/fraud/training_baseline
"""

DEV_TRIAGE = f"""\
# Which drifted features deserve a person: learnt and validated on prod's drift history.
apiVersion: mlgitops.io/v1alpha1
kind: ModelDeployment
metadata:
  name: drift-triage
spec:
  model: monitoring.drift_triage
  champion: {{version: "1"}}
  serving: {{enabled: false}}
  validation:
    data:
      uri: {DRIFT}
      target: drifted
    thresholds:
      - {{metric: accuracy, min: 0.9}}
"""


def line_of(text: str, needle: str) -> int:
    [line] = [i for i, t in enumerate(text.splitlines(), 1) if needle in t]
    return line


def with_data_root(text: str, root: Path, read_catalogs: str) -> str:
    lines = [t for t in text.splitlines() if not t.lstrip().startswith("readCatalogs:")]
    return "\n".join([*lines, f"  dataRoot: {root}", f"  readCatalogs: {read_catalogs}", ""])


def register_triage(registry: RegistryView, tmp_path: Path) -> None:
    """dev's triage model, version 1, which learnt "drifted when the statistic is above its
    threshold", logged as training logs a model (signature, input example)."""
    import mlflow
    import numpy as np
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = pd.DataFrame(
        {"statistic": rng.uniform(0, 2, 4000), "threshold": rng.choice([0.1, 0.2, 0.3], 4000)}
    )
    fitted = LogisticRegression(C=100.0).fit(x, x.statistic > x.threshold)
    example = x.head(5)
    before = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(registry.uri)
    mlflow.set_registry_uri(registry.uri)
    try:
        experiment = registry.client.create_experiment(
            "triage-training", artifact_location=(tmp_path / "triage").as_uri()
        )
        with warnings.catch_warnings(), mlflow.start_run(experiment_id=experiment):
            warnings.simplefilter("ignore")
            mlflow.sklearn.log_model(
                fitted,
                name="model",
                signature=infer_signature(example, fitted.predict(example)),
                input_example=example,
                pip_requirements=PIP_REQUIREMENTS,
                registered_model_name=TRIAGE,
            )
    finally:
        mlflow.set_tracking_uri(before[0])
        mlflow.set_registry_uri(before[1])
    registry.client.set_model_version_tag(TRIAGE, "1", "model_validation_status", "PENDING")


def run_prod_jobs(repo: ConfigRepo, state_dir: Path, registry: RegistryView) -> None:
    """prod's batch, then its monitor, as `mlgitops run` starts them on their schedules."""
    source = GitSource(str(repo.path), cache_dir=state_dir / "git")
    desired = load_desired(source, env="prod", rev=None)[1]
    source.close()
    cron = LocalCron(env="prod", state_root=state_dir, tracking_uri=registry.uri)
    cron.apply(desired)
    log = state_dir / "envs/prod/jobs"
    try:
        assert cron.tick(DAY1.replace(hour=10, minute=59)) == []  # first sight: no backfill
        for hour, job in ((11, "fraud-detector-batch"), (12, "fraud-detector-monitor")):
            [started] = cron.tick(DAY1.replace(hour=hour, second=5))
            assert started.job == job
            cron.wait(timeout=180)
            assert cron.last(job)["lastRun"]["exitCode"] == 0, (log / f"{job}.log").read_text()
    finally:
        cron.stop_all(timeout=5)


def test_dev_validates_on_prods_drift_table_as_its_read_catalogs_allow(
    cli: Callable[..., Ran], registry: RegistryView, state_dir: Path, tmp_path: Path
) -> None:
    lake = tmp_path / "lake"
    features, _ = dataset("classifier")
    write_deltalake(str(lake / "prod/fraud/training_baseline"), features)
    moved = shifted(features.sample(300, random_state=2), ["mean_radius", "worst_area"])
    write_deltalake(str(lake / "prod/fraud/transactions_daily"), moved)

    config = ConfigRepo(tmp_path / "prod-and-dev", envs=("prod", "dev"))
    prod_env, dev_env = "environments/prod/environment.yaml", "environments/dev/environment.yaml"
    config.write(prod_env, with_data_root(config.read(prod_env), lake, "[]"))
    for name in ("fraud-detector.yaml", "churn-predictor.yaml"):
        config.remove(f"environments/prod/{name}")
    config.write("environments/prod/fraud-detector.yaml", PROD_FRAUD)
    dev_text = with_data_root(config.read(dev_env), lake, "[prod]")
    config.write(dev_env, dev_text)
    config.write("environments/dev/drift-triage.yaml", DEV_TRIAGE)
    config.commit("prod monitors the fraud detector; dev triages its drift")

    def mlgitops(*args: str) -> Ran:
        if args[0] == "validate-model":  # else $MLFLOW_TRACKING_URI, the session's seeded store
            args = (*args, "--tracking-uri", registry.uri)
        return cli(*args, repo_arg=str(config.path))

    # prod: aliases from Git, then its jobs write the scores and the metric tables.
    assert mlgitops("sync", "--env", "prod").code == 0
    run_prod_jobs(config, state_dir, registry)
    drift = DeltaTable(str(lake / DRIFT)).to_pandas()
    assert len(drift) == 30  # one window, 30 features
    assert sorted(drift[drift.drifted].feature) == ["mean_radius", "worst_area"]

    # dev reads it: the revision loads and syncs, and the validation job reads prod's rows.
    register_triage(registry, tmp_path)
    checked = mlgitops("validate", "--env", "dev")
    assert (checked.code, checked.stderr) == (0, ""), checked.stderr
    planned = mlgitops("diff", "--env", "dev")
    assert (planned.code, planned.stderr) == (1, ""), planned.stderr
    assert TRIAGE in planned.stdout
    synced = mlgitops("sync", "--env", "dev")
    assert synced.code == 0, synced.stderr
    assert registry.aliases(TRIAGE) == {"champion": "1"}
    validated = mlgitops("validate-model", "drift-triage", "--env", "dev", "--version", "1")
    assert validated.code == 0, validated.stderr
    lines = validated.stdout.splitlines()
    assert lines[0] == f"{TRIAGE} version 1: 30 rows of {DRIFT}, classifier"
    assert "  pass  threshold:accuracy:min: accuracy_score 1 >= 0.9" in lines
    assert registry.tags(TRIAGE, "1")["model_validation_status"] == "PASSED"

    # Without readCatalogs, the same revision is refused whole, naming the file, line and field.
    config.write(dev_env, with_data_root(config.read(dev_env), lake, "[]"))
    config.commit("dev reads no other catalog")
    before = registry.snapshot()
    triage = config.read("environments/dev/drift-triage.yaml")
    refusal = (
        f"error: environments/dev/drift-triage.yaml:{line_of(triage, 'uri: ')}: "
        f"spec.validation.data.uri: table '{DRIFT}' is in catalog 'prod', which environment "
        "'dev' may not read (allowed: dev)"
    )
    for command in (
        ("validate", "--env", "dev"),
        ("sync", "--env", "dev"),
        ("validate-model", "drift-triage", "--env", "dev", "--version", "1"),
    ):
        refused = mlgitops(*command)
        assert refused.code == 2, (command, refused.stdout)
        assert refusal in refused.stderr.splitlines(), (command, refused.stderr)
        # The other dev documents read prod too: each is named, and nothing else is said.
        assert all(e.startswith("error: environments/dev/") for e in refused.stderr.splitlines())
    assert registry.snapshot() == before

    # A field that writes into prod is refused even with readCatalogs: [prod].
    config.write(dev_env, dev_text)
    writes = triage + (
        "  batchInference:\n"
        '    schedule: "0 13 * * *"\n'
        "    input: dev/monitoring/alerts\n"
        "    output: prod/monitoring/triaged\n"
    )
    config.write("environments/dev/drift-triage.yaml", writes)
    config.commit("dev writes its triage into prod")
    written = mlgitops("validate", "--env", "dev")
    assert (written.code, written.stderr) == (
        2,
        f"error: environments/dev/drift-triage.yaml:{line_of(writes, 'output: ')}: "
        "spec.batchInference.output: table 'prod/monitoring/triaged' is in catalog 'prod', "
        "which environment 'dev' may not write (allowed: dev)\n",
    )
    assert registry.snapshot() == before
