"""`mlgitops report`, and the report the monitor logs to MLflow, opened in a real browser.

The tables are made by the real jobs with the arguments the CronJobs carry: `mlgitops batch`
scores four batches with the seeded champion (the second and fourth with two features shifted),
labels land for each (the third batch's flipped, so accuracy breaches its bound), and
`mlgitops monitor` runs after each batch, logging one MLflow run each. Then `mlgitops report`
writes the file, and Debian's chromium, driven by Playwright through ``executable_path`` (no
browser download), opens it: every chart's SVG must be laid out with a size, the console must
stay silent and nothing may be requested but the file itself. A screenshot is kept in the
test's temporary directory.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from deltalake import DeltaTable, write_deltalake
from typer.testing import CliRunner

from controller.api.documents import ModelDeployment
from controller.cli import app
from controller.planning.children import Owner, RenderContext, job_container, render_children
from examples.models import dataset
from tests.conftest import Ran
from tests.helpers import ConfigRepo, RegistryView

FRAUD = "prod.fraud.fraud_detector"
DOC = "environments/prod/fraud-detector.yaml"
EXPERIMENT = f"mlgitops/monitoring/{FRAUD}"
SHIFTED = ["mean_radius", "worst_area"]
MONITORING = """  monitoring:
    schedule: "0 8 * * *"
    baseline: prod/fraud/training_baseline
    drift: {method: psi, threshold: 0.2}
    lookback: 5
    labels: {table: prod/fraud/labels, key: [id], target: label, minRows: 30}
    quality: [{metric: accuracy, min: 0.9}]
    retrain: {violations: 2, windows: 5}
"""


def with_monitoring(repo: ConfigRepo, block: str = MONITORING) -> str:
    """Replace fraud-detector's monitoring section with ``block``; the document's text."""
    text = repo.read(DOC)
    text = text[: text.index("  monitoring:\n")] + block
    repo.write(DOC, text)
    repo.commit("Monitoring with labels and a quality bound")
    return text


def cronjob_args(text: str, role: str) -> list[str]:
    """The args of the CronJob ``role`` rendered from the ModelDeployment ``text``."""
    md = ModelDeployment.model_validate(yaml.safe_load(text))
    children = render_children(
        Owner("fraud-detector", "uid", "ml-prod"), md.spec, FRAUD, RenderContext("prod", "i", None)
    )
    [job] = [c for c in children if c["metadata"]["name"] == f"fraud-detector-{role}"]
    return list(job_container(job)["args"])


def invoke(*argv: str) -> Ran:
    result = CliRunner().invoke(app, list(argv), catch_exceptions=False)
    return Ran(result.exit_code, result.stdout, result.stderr)


@dataclass
class Scenario:
    state: Path
    lake: Path
    repo: ConfigRepo
    tracking_uri: str
    monitored: list[Ran] = field(default_factory=list)  # each monitor run, in order

    def report(self, *args: str, lake: Path | None = None, repo: str | None = None) -> Ran:
        return invoke(
            "report",
            *args,
            "--repo",
            repo or str(self.repo.path),
            "--state-dir",
            str(self.state),
            "--data-root",
            str(lake or self.lake),
        )


def _batch(features: pd.DataFrame, target: pd.Series, n: int, seed: int, name: str) -> Any:
    rows = features.sample(n, random_state=seed)
    frame = rows.copy()
    frame.insert(0, "id", [f"{name}-{i}" for i in range(n)])
    return frame, pd.DataFrame({"id": frame["id"], "label": target.loc[rows.index].to_numpy()})


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory, seeded_store: Path) -> Scenario:
    """Four scored batches, labels, and a monitor run after each batch, as the CronJobs do."""
    root = tmp_path_factory.mktemp("report")
    state = root / "state"
    state.mkdir()
    shutil.copy(seeded_store / "mlflow.db", state / "mlflow.db")
    uri = f"sqlite:///{state / 'mlflow.db'}"
    RegistryView(uri).client.set_registered_model_alias(FRAUD, "champion", "2")
    lake = root / "lake"
    features, target = dataset("classifier")
    write_deltalake(str(lake / "prod/fraud/training_baseline"), features)
    repo = ConfigRepo(root / "config")
    text = with_monitoring(repo)
    scenario = Scenario(state, lake, repo, uri)
    common = ["--data-root", str(lake), "--tracking-uri", uri, "--state-dir", str(state)]
    for i, name in enumerate(["b1", "b2", "b3", "b4"], start=1):
        frame, labels = _batch(features, target, 300, seed=i, name=name)
        if name in ("b2", "b4"):
            for column in SHIFTED:
                frame[column] = frame[column] + 1.5 * features[column].std()
        if name == "b3":
            labels["label"] = 1 - labels["label"]  # the model is wrong on every row
        write_deltalake(str(lake / "prod/fraud/transactions_daily"), frame, mode="overwrite")
        scored = invoke(*cronjob_args(text, "batch"), "--batch-id", name, *common)
        assert scored.code == 0, scored.stderr
        write_deltalake(str(lake / "prod/fraud/labels"), labels, mode="append")
        monitored = invoke(*cronjob_args(text, "monitor"), *common)
        assert monitored.code == 0, monitored.stderr
        scenario.monitored.append(monitored)
    return scenario


def _charts(page_html: str) -> list[tuple[str, str]]:
    return re.findall(r'<figure class="chart" data-chart="(\w+)" data-name="([^"]*)">', page_html)


# What each chart drew: the SVG's laid-out size and its marks (paths and markers with a box).
CHARTS_JS = """figures => figures.map(f => {
  const svg = f.querySelector('svg');
  const box = svg.getBoundingClientRect();
  const marks = [...svg.querySelectorAll('path, use')].filter(e => {
    const b = e.getBoundingClientRect(); return b.width > 0 || b.height > 0; }).length;
  return {kind: f.dataset.chart, name: f.dataset.name, width: box.width, height: box.height,
          marks: marks};
})"""


def test_report_renders_in_a_real_browser(scenario: Scenario, browser: Any, tmp_path: Path) -> None:
    target = tmp_path / "fraud-report.html"
    ran = scenario.report("fraud-detector", "--env", "prod", "--output", str(target))
    assert ran.code == 0, ran.stderr
    assert ran.stdout.splitlines()[-1] == f"report: {target}"
    text = target.read_text()
    assert text.startswith("<!DOCTYPE html>")
    assert "<script" not in text
    assert not re.search(r'(?:src|href)="(?!data:|#)', text)  # nothing to fetch

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    console: list[str] = []
    errors: list[str] = []
    failed: list[str] = []
    requested: list[str] = []
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("requestfailed", lambda r: failed.append(r.url))
    page.on("request", lambda r: requested.append(r.url))
    page.goto(target.as_uri())
    charts = page.eval_on_selector_all("figure.chart", CHARTS_JS)
    summary = page.eval_on_selector_all(
        "table.summary tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.innerText))"
    )
    body = page.inner_text("body")
    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot: {shot}")

    assert console == []
    assert errors == []
    assert failed == []
    assert requested == [target.as_uri()]
    kinds: dict[str, list[str]] = {}
    for chart in charts:
        kinds.setdefault(chart["kind"], []).append(chart["name"])
        assert chart["width"] > 200, chart
        assert chart["height"] > 80, chart
        assert chart["marks"] > 5, chart
    # Drift: the features drifted in the newest window first, 12 of 30 charted.
    assert kinds["drift"][:2] == SHIFTED or kinds["drift"][:2] == SHIFTED[::-1]
    assert len(kinds["drift"]) == 12
    assert "18 more features not charted, none drifted in the newest window" in body
    assert sorted(kinds["distribution"]) == sorted(SHIFTED)
    assert set(kinds["quality"]) == {"accuracy", "precision", "recall", "f1"}
    assert kinds["volume"] == ["rows"]
    assert "latency" not in kinds  # a batch output has none, and the report says so
    assert "no latency: the monitored table has no latency_ms column" in body
    # The summary: newest window first, its rows, what drifted and what breached.
    assert [row[0] for row in summary] == ["b4", "b3", "b2", "b1"]
    assert [row[2] for row in summary] == ["300"] * 4
    assert summary[0][3].startswith("2: ")
    assert summary[1][4].startswith("1: accuracy")
    assert "retraining due" in summary[1][5]
    assert "at window b3 (mlgitops.retrain_due)" in body
    assert shot.stat().st_size > 50_000


def test_the_monitor_logs_the_report_to_mlflow(scenario: Scenario, tmp_path: Path) -> None:
    import mlflow.artifacts

    client = RegistryView(scenario.tracking_uri).client
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])
    assert len(runs) == len(scenario.monitored) == 4  # one run per monitor run
    for ran, run in zip(scenario.monitored, runs, strict=True):
        [line] = [x for x in ran.stdout.splitlines() if x.startswith("report: ")]
        assert line == f"report: {run.info.artifact_uri}/monitoring/report.html"
        assert run.info.status == "FINISHED"
        assert run.data.tags["mlgitops.model"] == FRAUD
    assert [r.data.tags["mlgitops.windows"] for r in runs] == [
        "b1",
        "b1,b2",
        "b1,b2,b3",
        "b1,b2,b3,b4",
    ]
    newest = runs[-1]
    assert newest.data.tags["mlgitops.newest_window"] == "b4"
    assert newest.data.metrics["drifted_features"] == 2.0
    assert newest.data.metrics["rows"] == 300.0
    assert 0.8 < newest.data.metrics["quality.accuracy"] <= 1.0
    assert runs[2].data.metrics["quality.accuracy"] < 0.2  # b3: every label flipped

    logged = mlflow.artifacts.load_text(f"{newest.info.artifact_uri}/monitoring/report.html")
    assert logged.startswith("<!DOCTYPE html>")
    assert f"<title>Monitoring report: {FRAUD}</title>" in logged
    # The same report `mlgitops report` writes from the same tables: the same charts.
    target = tmp_path / "now.html"
    assert scenario.report("fraud-detector", "--env", "prod", "-o", str(target)).code == 0
    assert _charts(logged) == _charts(target.read_text())
    assert len(_charts(logged)) == 12 + 2 + 4 + 1


# --- bad input ------------------------------------------------------------------------------


def test_bad_input_is_one_line_and_exit_2(scenario: Scenario, tmp_path: Path) -> None:
    unknown = scenario.report("nope", "--env", "prod", "-o", str(tmp_path / "x.html"))
    assert (unknown.code, unknown.stderr) == (
        2,
        "error: NAME: no ModelDeployment named 'nope' in environment 'prod'\n",
    )

    repo = ConfigRepo(tmp_path / "config")
    churn = repo.read("environments/prod/churn-predictor.yaml")
    repo.write("environments/prod/churn-predictor.yaml", churn[: churn.index("  monitoring:\n")])
    repo.commit("No monitoring for churn")
    none = scenario.report("churn-predictor", "--env", "prod", repo=str(repo.path))
    assert (none.code, none.stderr) == (
        2,
        "error: environments/prod/churn-predictor.yaml: spec.monitoring: 'churn-predictor' "
        "has no monitoring section\n",
    )

    # Monitoring the inference table, which the document does not name: refused at load.
    with_monitoring(repo, MONITORING.replace("    lookback: 5\n", "    input: inference\n"))
    no_table = scenario.report("fraud-detector", "--env", "prod", repo=str(repo.path))
    assert no_table.code == 2
    [line] = no_table.stderr.splitlines()
    assert line.startswith("error: environments/prod/fraud-detector.yaml:")
    assert "spec.monitoring: input inference monitors serving.inferenceTable" in line
    assert not list(tmp_path.glob("*.html"))


def test_tables_not_written_yet_are_findings(scenario: Scenario, tmp_path: Path) -> None:
    """Before any monitor run: the report says what is missing, section by section, exit 0."""
    target = tmp_path / "empty.html"
    ran = scenario.report("fraud-detector", "--env", "prod", "-o", str(target), lake=tmp_path)
    assert ran.code == 0, ran.stderr
    drift = tmp_path / "prod/fraud/scores_daily_drift"
    assert ran.stdout.splitlines() == [
        f"no drift table yet: {drift} does not exist (the monitor has not run)",
        f"no profile table yet: {tmp_path / 'prod/fraud/scores_daily_profile'} does not exist "
        "(the monitor has not run)",
        f"no quality yet: {tmp_path / 'prod/fraud/scores_daily_quality'} does not exist (no "
        f"label in {tmp_path / 'prod/fraud/labels'} has joined a prediction of the windows "
        "computed, or the monitor has not run)",
        "no drift computed yet: nothing to compare",
        f"report: {target}",
    ]
    text = target.read_text()
    assert _charts(text) == []
    for section in ("summary", "drift", "distributions", "quality", "volume"):
        assert f'<section id="{section}">' in text
    assert f"no drift table yet: {drift} does not exist" in text


def test_a_missing_baseline_leaves_the_other_sections(scenario: Scenario, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    shutil.copytree(scenario.lake, lake)
    shutil.rmtree(lake / "prod/fraud/training_baseline")
    target = tmp_path / "r.html"
    ran = scenario.report("fraud-detector", "--env", "prod", "-o", str(target), lake=lake)
    assert ran.code == 0, ran.stderr
    baseline = lake / "prod/fraud/training_baseline"
    assert ran.stdout.splitlines() == [
        f"no distributions: baseline table {baseline} does not exist (no Delta log there)",
        f"report: {target}",
    ]
    kinds = {kind for kind, _ in _charts(target.read_text())}
    assert kinds == {"drift", "quality", "volume"}


def test_an_unreadable_table_writes_the_rest_and_exits_2(
    scenario: Scenario, tmp_path: Path
) -> None:
    lake = tmp_path / "lake"
    shutil.copytree(scenario.lake, lake)
    quality = lake / "prod/fraud/scores_daily_quality"
    for log in (quality / "_delta_log").glob("*.json"):
        log.write_text("{this is not a Delta log")
    target = tmp_path / "r.html"
    ran = scenario.report("fraud-detector", "--env", "prod", "-o", str(target), lake=lake)
    assert ran.code == 2
    assert ran.stdout.splitlines()[-1] == f"report: {target}"
    [error] = ran.stderr.splitlines()
    assert error.startswith(f"error: report: table {quality}: ")
    text = target.read_text()
    assert "Problems" in text
    assert {kind for kind, _ in _charts(text)} == {"drift", "distribution", "volume"}


def test_a_report_that_cannot_be_logged_is_a_warning(
    registry: RegistryView, tmp_path: Path
) -> None:
    """The tables are the record: the monitor run succeeds, and says the report was not logged."""
    features, _ = dataset("classifier")
    lake = tmp_path / "lake"
    write_deltalake(str(lake / "base"), features)
    scored = features.sample(200, random_state=3).assign(
        prediction=0,
        model_version="2",
        batch_id="b1",
        scored_at=pd.Timestamp("2026-12-01T11:00:00Z"),
    )
    write_deltalake(str(lake / "scores"), scored)
    client = registry.client
    client.delete_experiment(client.create_experiment(EXPERIMENT))
    ran = invoke(
        "monitor",
        "--model",
        f"models:/{FRAUD}/2",
        "--baseline",
        "base",
        "--current",
        "scores",
        "--data-root",
        str(lake),
        "--tracking-uri",
        registry.uri,
        "--state-dir",
        str(tmp_path / "state"),
    )
    assert ran.code == 0, ran.stderr
    assert "window b1: 30 features compared by psi" in ran.stdout
    assert "report: " not in ran.stdout
    assert ran.stderr.startswith(
        f"warning: monitor: report not logged: registry {registry.uri}: experiment "
        f"'{EXPERIMENT}' is deleted"
    )
    assert DeltaTable(str(lake / "scores_drift")).to_pandas().shape[0] == 30
