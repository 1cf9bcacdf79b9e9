"""The dashboard's data and HTML from hand-built status records: states, locations, filters,
actions, and that no credential in a URI or message reaches a page or the JSON API."""

from __future__ import annotations

import json
from typing import Any

from controller.ui import charts, pages, views
from controller.ui.views import EnvSnapshot

SECRET = "hunter2"


def status(
    champion: str | None = "2",
    challenger: str | None = None,
    *,
    ready: str = "True",
    reason: str = "Reconciled",
    message: str = "",
    stalled: bool = False,
    **extra: Any,
) -> dict[str, Any]:
    conditions = [
        {
            "type": "Ready",
            "status": ready,
            "reason": reason,
            "message": message,
            "lastTransitionTime": "2026-12-01T10:00:00Z",
        }
    ]
    if stalled:
        conditions.append(
            {
                "type": "Stalled",
                "status": "True",
                "reason": reason,
                "message": message,
                "lastTransitionTime": "2026-12-01T10:00:00Z",
            }
        )
    out: dict[str, Any] = {"conditions": conditions, "lastAppliedRevision": "a" * 40, **extra}
    if champion:
        out["champion"] = {"version": champion, "validationStatus": "PASSED"}
    if challenger:
        out["challenger"] = {"version": challenger, "validationStatus": "PENDING"}
    return out


def test_states_come_from_the_conditions() -> None:
    assert views.model_state(status())[0] == "Ready"
    assert views.model_state(status(ready="Unknown", reason="Progressing"))[0] == "Progressing"
    assert views.model_state(status(ready="False", reason="RegistryUnavailable"))[0] == "NotReady"
    stalled = status(
        ready="False",
        reason="InvalidRevision",
        message="environments/prod/fraud.yaml:12: spec.replicaz: unknown field",
        stalled=True,
    )
    assert views.model_state(stalled)[0] == "Stalled"
    assert views.cell(stalled)["location"] == "environments/prod/fraud.yaml:12"
    assert views.model_state({})[0] == "Unknown"


def test_location_is_the_file_and_line_a_problem_starts_with() -> None:
    assert views.location("environments/dev/x.yaml:7: spec.a: bad") == "environments/dev/x.yaml:7"
    assert views.location("environments/dev/environment.yml: no catalog") == (
        "environments/dev/environment.yml"
    )
    assert views.location("registry unreachable: http://x:5000") is None
    assert views.location(None) is None


def test_overview_rows_filters_and_counts() -> None:
    envs = [
        EnvSnapshot("dev", applied="b" * 40, models={"fraud": status("1", "2"), "churn": status()}),
        EnvSnapshot(
            "prod",
            applied="c" * 40,
            attempted="d" * 40,
            problems=["environments/prod/churn.yaml:3: spec.model: required"],
            models={
                "fraud": status("2"),
                "churn": status(stalled=True, ready="False", reason="InvalidRevision"),
            },
        ),
    ]
    data = views.overview(envs)
    assert [m["name"] for m in data["models"]] == ["churn", "fraud"]
    fraud = data["models"][1]["cells"]
    assert (fraud["dev"]["champion"], fraud["dev"]["challenger"]) == ("1", "2")
    assert fraud["dev"]["validation"] == {"1": "PASSED", "2": "PENDING"}
    prod = data["environments"][1]
    assert prod["state"] == "Stalled"
    assert prod["pending"] is True
    assert prod["problems"][0]["location"] == "environments/prod/churn.yaml:3"
    assert data["counts"]["Stalled"] == 1
    assert data["counts"]["Ready"] == 3
    assert [m["name"] for m in views.overview(envs, query="FRA")["models"]] == ["fraud"]
    assert [m["name"] for m in views.overview(envs, state="Stalled")["models"]] == ["churn"]
    assert views.overview(envs, query="nothing")["models"] == []


def test_actions_roll_back_only_the_champion_a_promotion_commit_made() -> None:
    cell = views.cell(status("3", "4", promotion={"awaitingApproval": "mlgitops/promote/x@abc"}))
    made = views.actions("fraud", "prod", cell, {"version": "3", "commit": "f" * 40})
    assert [a["command"] for a in made] == [
        "mlgitops promote fraud --env prod --version 4",
        "git merge --no-ff mlgitops/promote/x",
        "mlgitops rollback fraud --env prod",
        f"git revert --no-edit {'f' * 40}",
    ]
    older = views.actions("fraud", "prod", views.cell(status("2")), {"version": "3", "commit": "f"})
    assert older == []


def test_no_credential_reaches_a_page_or_the_api() -> None:
    leaky = f"https://bob:{SECRET}@mlflow.example.com"
    env = EnvSnapshot(
        "prod",
        applied="a" * 40,
        source=f"https://ci:{SECRET}@git.example.com/config.git",
        registry=leaky,
        problems=[f"registry {leaky} unreachable"],
        models={
            "fraud": status(
                ready="False",
                reason="RegistryUnavailable",
                message=f"cannot reach {leaky}",
                serving={"url": f"http://u:{SECRET}@10.0.0.1:8080", "replicas": 1},
                training={"problem": f"repository https://x:{SECRET}@git.example.com: denied"},
            )
        },
    )
    data = views.overview([env])
    page = pages.overview(data, root="/", source="test")
    detail = {"timeline": [], "problems": [], "registeredModel": "prod.fraud.fraud"}
    model = views.model("fraud", [env], {"prod": detail})
    assert model is not None
    model_page = pages.model(model, root="/", envs=["prod"], source="test")
    env_page = pages.environment(views.environment(env), root="/", envs=["prod"], source="t")
    for text in (json.dumps(data), page, json.dumps(model), model_page, env_page):
        assert SECRET not in text
    assert "mlflow.example.com" in page  # redacted, not dropped


def test_text_is_escaped_never_markup() -> None:
    evil = "<script>alert(1)</script>"
    env = EnvSnapshot(
        "prod",
        problems=[f"environments/prod/x.yaml:1: {evil}"],
        models={evil: status(message=evil)},
    )
    page = pages.overview(views.overview([env]), root="/", source=evil)
    assert "<script>alert" not in page
    assert "&lt;script&gt;" in page
    svg = charts.line_chart(evil, ["w1", "w2"], [(evil, [0.1, 0.3], [False, True])], threshold=0.2)
    assert "<script>" not in svg
    assert svg.count("<polyline") == 1
    assert svg.count('stroke="#dc2626"') >= 1  # the marked point


def test_charts_draw_drift_and_quality_from_the_metric_tables_data() -> None:
    monitoring = {
        "method": "psi",
        "threshold": 0.2,
        "windows": ["w1", "w2", "w3"],
        "drift": {
            "a": {
                "w1": {"statistic": 0.1, "drifted": False},
                "w3": {"statistic": 0.5, "drifted": True},
            },
            "b": {"w2": {"statistic": 0.01, "drifted": False}},
        },
        "quality": {
            "accuracy": {
                "2": {"w1": {"value": 0.9, "breached": False}},
                "3": {"w2": {"value": 0.7, "breached": True}},
            }
        },
    }
    drawn = pages.charts(monitoring)
    assert [c["title"] for c in drawn] == ["Drift (psi) per feature", "Quality: accuracy"]
    assert drawn[0]["svg"].count("<polyline") == 2
    assert drawn[1]["svg"].count("<polyline") == 2
    assert pages.charts({"windows": []}) == []
    assert pages.charts(None) == []


def test_the_environment_page_lists_the_jobs_last_runs() -> None:
    env = EnvSnapshot(
        "prod",
        applied="a" * 40,
        models={"fraud": status()},
        jobs={
            "fraud-detector-batch": {
                "lastScheduleTime": "2026-12-01T11:00:00Z",
                "lastRun": {"name": "fraud-detector-batch-1", "exitCode": 0},
            },
            "fraud-detector-monitor": {
                "lastScheduleTime": "2026-12-01T08:00:00Z",
                "lastRun": {"name": "fraud-detector-monitor-1", "exitCode": 2},
                "inFlight": {"name": "fraud-detector-monitor-2"},
            },
            "churn-predictor-batch": {"lastScheduleTime": None},
        },
    )
    data = views.environment(env)
    assert [(j["name"], j["result"]) for j in data["jobs"]] == [
        ("churn-predictor-batch", "-"),
        ("fraud-detector-batch", "succeeded"),
        ("fraud-detector-monitor", "running"),
    ]
    page = pages.environment(data, root="/", envs=["prod"], source="t")
    assert "fraud-detector-batch-1" in page
    assert 'class="result-succeeded"' in page
