"""``mlgitops ui`` against real state: a config repository with dev, staging and prod, a real
MLflow store, real syncs, a real promotion and its rollback, a monitor that ran over scored
batches, and a staging revision that was refused.

The server is the real command, started as a process on a free port; the pages and the JSON API
are read over HTTP, and (tests/integration/test_ui_browser.py) in a real Chromium.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from deltalake import write_deltalake

from examples.models import dataset
from tests.helpers import ConfigRepo, RegistryView, git
from tests.integration.test_report import (
    _batch,
    cronjob_args,
    invoke,
    with_monitoring,
)

FRAUD = "prod.fraud.fraud_detector"
STAGING_FRAUD = "environments/staging/fraud-detector.yaml"
TOKEN = "s3cret-token"


@dataclass
class UiScenario:
    state: Path
    repo: ConfigRepo
    registry: RegistryView
    promotion: str  # the promotion commit of fraud-detector v3 in prod
    revert: str  # the rollback's revert commit
    bad_line: int  # the line of the refused field in the staging document


def mlgitops(state: Path, repo: ConfigRepo, *args: str) -> int:
    ran = invoke(*args, "--state-dir", str(state), "--repo", str(repo.path))
    assert ran.code in (0, 1), f"mlgitops {' '.join(args)}: {ran.stderr}"
    return ran.code


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory, seeded_store: Path) -> UiScenario:
    root = tmp_path_factory.mktemp("ui")
    state = root / "state"
    state.mkdir()
    shutil.copy(seeded_store / "mlflow.db", state / "mlflow.db")
    uri = f"sqlite:///{state / 'mlflow.db'}"
    registry = RegistryView(uri)
    repo = ConfigRepo(root / "config", envs=("dev", "staging", "prod"))
    git(repo.path, "config", "receive.denyCurrentBranch", "updateInstead")

    # prod's fraud-detector is monitored: two scored batches and a monitor run after each.
    text = with_monitoring(repo)
    registry.client.set_registered_model_alias(FRAUD, "champion", "2")
    lake = state / "tables"
    features, target = dataset("classifier")
    write_deltalake(str(lake / "prod/fraud/training_baseline"), features)
    common = ["--data-root", str(lake), "--tracking-uri", uri, "--state-dir", str(state)]
    for i, name in enumerate(["b1", "b2"], start=1):
        frame, labels = _batch(features, target, 200, seed=i, name=name)
        if name == "b2":
            frame["mean_radius"] = frame["mean_radius"] + 1.5 * features["mean_radius"].std()
        write_deltalake(str(lake / "prod/fraud/transactions_daily"), frame, mode="overwrite")
        scored = invoke(*cronjob_args(text, "batch"), "--batch-id", name, *common)
        assert scored.code == 0, scored.stderr
        write_deltalake(str(lake / "prod/fraud/labels"), labels, mode="append")
        monitored = invoke(*cronjob_args(text, "monitor"), *common)
        assert monitored.code == 0, monitored.stderr

    for env in ("dev", "staging", "prod"):
        assert mlgitops(state, repo, "sync", "--env", env) == 0

    # A promotion (policy manual: a branch, merged by hand), then its rollback.
    time.sleep(1.1)  # Git keeps commit times to the second
    assert (
        mlgitops(state, repo, "promote", "fraud-detector", "--env", "prod", "--version", "3") == 0
    )
    branch = "mlgitops/promote/prod/fraud-detector-v3"
    promotion = git(repo.path, "rev-parse", branch)
    registry.client.set_model_version_tag(
        FRAUD, "3", "mlgitops.proposed.champion", f"{branch}@{promotion}"
    )
    git(repo.path, "merge", "-q", "--ff-only", branch)
    time.sleep(1.1)
    assert mlgitops(state, repo, "sync", "--env", "prod") == 0
    assert registry.aliases(FRAUD)["champion"] == "3"
    time.sleep(1.1)
    assert mlgitops(state, repo, "rollback", "fraud-detector", "--env", "prod") == 0
    revert = repo.head()
    assert mlgitops(state, repo, "sync", "--env", "prod") == 0
    assert registry.aliases(FRAUD) == {"champion": "2", "challenger": "3"}

    # staging: a revision with a bad field is refused; the last good state stays.
    staging = repo.read(STAGING_FRAUD)
    repo.write(STAGING_FRAUD, staging.replace("spec:\n", "spec:\n  replicaz: 3\n", 1))
    repo.commit("staging: a typo")
    bad_line = repo.read(STAGING_FRAUD).splitlines().index("  replicaz: 3") + 1
    ran = invoke("sync", "--env", "staging", "--state-dir", str(state), "--repo", str(repo.path))
    assert ran.code == 2, ran.stderr
    return UiScenario(state, repo, registry, promotion, revert, bad_line)


class Server:
    """``mlgitops ui`` as a process on a free port; its URL from the line it prints."""

    def __init__(self, state: Path, *args: str) -> None:
        env = {**os.environ, "MLGITOPS_UI_TOKEN": ""}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "controller",
                "ui",
                "--state-dir",
                str(state),
                "--port",
                "0",
                *args,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 60
        self.url = ""
        lines = []
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            found = re.search(r"mlgitops ui: (http://\S+?)/? ", line)
            if found:
                self.url = found.group(1)
                break
        assert self.url, "".join(lines)
        self.lines = lines  # the rest of its output, drained so the pipe never fills
        self.drain = threading.Thread(target=lambda: self.lines.extend(self.proc.stdout or ()))
        self.drain.start()

    def get(
        self, path: str, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], str]:
        request = urllib.request.Request(self.url + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, dict(response.headers), response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read().decode()

    def json(self, path: str) -> Any:
        code, _, body = self.get(path)
        assert code == 200, body
        return json.loads(body)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.drain.join(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture(scope="module")
def server(scenario: UiScenario) -> Iterator[Server]:
    running = Server(scenario.state, "--repo", str(scenario.repo.path))
    try:
        yield running
    finally:
        running.stop()


def test_overview_lists_every_model_with_the_registry_s_versions(
    scenario: UiScenario, server: Server
) -> None:
    data = server.json("/api/overview")
    assert [e["name"] for e in data["environments"]] == ["dev", "prod", "staging"]
    assert [m["name"] for m in data["models"]] == ["churn-predictor", "fraud-detector"]
    for row in data["models"]:
        for env, cell in row["cells"].items():
            model = f"{env}.{'fraud' if row['name'] == 'fraud-detector' else 'customers'}"
            model += ".fraud_detector" if row["name"] == "fraud-detector" else ".churn_predictor"
            aliases = scenario.registry.aliases(model)
            assert cell["champion"] == aliases.get("champion"), (env, row["name"])
            assert cell["challenger"] == aliases.get("challenger"), (env, row["name"])
            for version in filter(None, (cell["champion"], cell["challenger"])):
                tag = scenario.registry.tags(model, version)["model_validation_status"]
                assert cell["validation"][version] == tag
    prod = next(m for m in data["models"] if m["name"] == "fraud-detector")["cells"]["prod"]
    assert prod["state"] == "Ready"
    assert prod["applied"] == scenario.revert
    assert prod["lastChange"]["revision"] == scenario.revert


def test_a_refused_revision_shows_its_file_and_line(scenario: UiScenario, server: Server) -> None:
    data = server.json("/api/overview")
    staging = next(e for e in data["environments"] if e["name"] == "staging")
    assert staging["state"] == "Stalled"
    assert staging["pending"] is True
    where = f"{STAGING_FRAUD}:{scenario.bad_line}"
    assert [p["location"] for p in staging["problems"]] == [where]
    assert "replicaz" in staging["problems"][0]["text"]
    cell = next(m for m in data["models"] if m["name"] == "fraud-detector")["cells"]["staging"]
    assert cell["state"] == "Stalled"
    assert cell["location"] == where
    # The HTML says it too, with JavaScript or without.
    code, _, page = server.get("/")
    assert code == 200
    assert f'<code class="location">{where}</code>' in page
    # The revision is refused whole: every model of staging stalls on it; dev and prod do not.
    stalled = server.json("/api/overview?state=Stalled")["models"]
    assert [m["name"] for m in stalled] == ["churn-predictor", "fraud-detector"]
    assert {env for m in stalled for env, c in m["cells"].items() if c["state"] == "Stalled"} == {
        "staging"
    }
    env_code, _, env_page = server.get("/environments/staging")
    assert env_code == 200
    assert where in env_page
    assert "not applied" in env_page


def test_the_model_page_shows_the_promotion_and_its_rollback(
    scenario: UiScenario, server: Server
) -> None:
    data = server.json("/api/models/fraud-detector")
    prod = next(e for e in data["environments"] if e["name"] == "prod")
    events = [(e["event"], e["change"], e["revision"]) for e in prod["timeline"]]
    assert ("proposed champion", "v3", scenario.promotion) in events
    assert ("champion", "2 -> 3", scenario.promotion) in events
    assert ("champion", "3 -> 2", scenario.revert) in events
    assert ("rolled back", "v3", scenario.revert) in events
    order = [e[1] for e in events if e[0] == "champion"]
    assert order.index("2 -> 3") < order.index("3 -> 2")
    # The champion serving now came back by a revert: no promotion commit of it to roll back.
    assert [a["command"] for a in prod["actions"]] == [
        "mlgitops promote fraud-detector --env prod --version 3"
    ]
    assert prod["problems"] == []
    # Monitoring: the drift of both windows and the quality per version, from the metric tables.
    monitoring = prod["monitoring"]
    assert len(monitoring["windows"]) == 2
    assert monitoring["drift"]["mean_radius"][monitoring["windows"][1]]["drifted"] is True
    assert monitoring["drift"]["mean_radius"][monitoring["windows"][0]]["drifted"] is False
    accuracy = monitoring["quality"]["accuracy"]["*"]  # every version of the window
    assert sorted(accuracy) == monitoring["windows"]
    assert all(
        0.5 < point["value"] <= 1.0 and point["labeledRows"] == 200 for point in accuracy.values()
    )
    code, _, page = server.get("/models/fraud-detector")
    assert code == 200
    assert page.count("<svg") >= 2  # drift, and at least one quality chart
    assert scenario.revert[:7] in page
    assert scenario.promotion[:7] in page


def test_unknown_names_are_404_and_static_assets_are_served(server: Server) -> None:
    assert server.get("/models/nope")[0] == 404
    assert server.get("/api/models/nope")[0] == 404
    assert server.get("/environments/nope")[0] == 404
    assert server.get("/static/../pyproject.toml")[0] == 404
    code, headers, body = server.get("/static/ui.js")
    assert code == 200
    assert "refresh" in body
    code, headers, _ = server.get("/")
    assert "default-src 'self'" in headers["Content-Security-Policy"]


def test_the_overview_refreshes_as_a_fragment(server: Server) -> None:
    code, headers, body = server.get("/?q=churn", headers={"X-Fragment": "rows"})
    assert code == 200
    assert headers["X-Shown"] == "1 of 2 models"
    assert "<html" not in body
    assert 'data-model="churn-predictor"' in body
    assert 'data-model="fraud-detector"' not in body


def test_a_token_guards_every_page_when_given(scenario: UiScenario) -> None:
    guarded = Server(scenario.state, "--token", TOKEN)
    try:
        assert guarded.get("/api/overview")[0] == 401
        assert guarded.get("/", {"Authorization": "Bearer wrong"})[0] == 401
        assert guarded.get("/api/overview", {"Authorization": f"Bearer {TOKEN}"})[0] == 200
        # ?token= once: a cookie, then the same URL without it.
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
        with opener.open(f"{guarded.url}/environments/prod?token={TOKEN}", timeout=60) as page:
            assert page.status == 200
            assert page.url == f"{guarded.url}/environments/prod"
        with opener.open(f"{guarded.url}/api/overview", timeout=60) as again:
            assert again.status == 200
    finally:
        guarded.stop()


def test_off_loopback_without_a_token_is_refused(scenario: UiScenario) -> None:
    ran = subprocess.run(
        [
            sys.executable,
            "-m",
            "controller",
            "ui",
            "--state-dir",
            str(scenario.state),
            "--host",
            "0.0.0.0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "MLGITOPS_UI_TOKEN": ""},
    )
    assert ran.returncode == 2
    assert ran.stderr.strip() == (
        "error: --host 0.0.0.0: not a loopback address, so a token is required "
        "(--token or $MLGITOPS_UI_TOKEN)"
    )


# --- in a real browser --------------------------------------------------------------------------

ARTIFACTS = Path(
    os.environ.get("MLGITOPS_TEST_ARTIFACTS")
    or Path(__file__).resolve().parents[2] / "build" / "test-artifacts"
)


class Watched:
    """A page whose console errors and failed requests are kept."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.errors: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("requestfailed", lambda r: self.errors.append(f"failed: {r.url}"))
        page.on(
            "response",
            lambda r: self.errors.append(f"{r.status}: {r.url}") if r.status >= 400 else None,
        )

    def shot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        target = ARTIFACTS / f"ui-{name}.png"
        self.page.screenshot(path=str(target), full_page=True)
        print(f"screenshot: {target}")
        return target


def _cell_text(page: Any, model: str, env: str) -> str:
    return str(page.inner_text(f'tr[data-model="{model}"] td[data-env="{env}"]'))


def test_the_overview_in_a_browser(scenario: UiScenario, server: Server, browser: Any) -> None:
    page = Watched(browser.new_page(viewport={"width": 1400, "height": 900}))
    page.page.goto(server.url + "/")
    data = server.json("/api/overview")
    rows = page.page.locator("tbody#rows tr[data-model]")
    assert rows.count() == len(data["models"]) == 2
    for row in data["models"]:
        for env, cell in row["cells"].items():
            text = _cell_text(page.page, row["name"], env)
            assert text.startswith(f"v{cell['champion']}"), text
            if cell["challenger"]:
                assert f"challenger v{cell['challenger']}" in text
            assert cell["state"] in text
    staging = _cell_text(page.page, "fraud-detector", "staging")
    assert f"{STAGING_FRAUD}:{scenario.bad_line}" in staging
    assert page.shot("overview").stat().st_size > 10_000
    assert page.errors == []


def test_the_model_page_in_a_browser(scenario: UiScenario, server: Server, browser: Any) -> None:
    page = Watched(browser.new_page(viewport={"width": 1400, "height": 900}))
    page.page.goto(server.url + "/models/fraud-detector")
    timeline = page.page.inner_text("#env-prod table.timeline")
    assert "proposed champion" in timeline
    assert "rolled back" in timeline
    assert "3 -> 2" in timeline
    assert "2 -> 3" in timeline
    charts = page.page.locator("#env-prod .charts svg")
    assert charts.count() >= 2
    for i in range(charts.count()):
        box = charts.nth(i).bounding_box()
        assert box is not None
        assert box["width"] > 100
        assert box["height"] > 50
        assert charts.nth(i).locator("polyline").count() >= 1
    # A command is copied with a click: the button exists only with JavaScript.
    button = page.page.locator("#env-prod button.copy").first
    assert button.is_visible()
    button.click()
    assert button.inner_text() in ("copied", "selected")
    page.shot("model")
    assert page.errors == []


def test_without_javascript_the_tables_are_all_there(
    scenario: UiScenario, server: Server, browser: Any
) -> None:
    context = browser.new_context(java_script_enabled=False)
    try:
        page = Watched(context.new_page())
        page.page.goto(server.url + "/?q=fraud")
        assert page.page.locator("tbody#rows tr[data-model]").count() == 1
        page.page.goto(server.url + "/models/fraud-detector")
        assert "rolled back" in page.page.inner_text("#env-prod table.timeline")
        assert page.page.locator("button.copy").first.is_hidden()
        page.page.goto(server.url + "/environments/staging")
        assert f"{STAGING_FRAUD}:{scenario.bad_line}" in page.page.inner_text("ul.problems")
        page.shot("environment-nojs")
        assert page.errors == []
    finally:
        context.close()


def test_the_overview_filters_and_refreshes_without_a_reload(
    scenario: UiScenario, server: Server, browser: Any
) -> None:
    """Last in this module: it changes dev (the challenger of churn-predictor is dropped)."""
    from playwright.sync_api import expect

    page = Watched(browser.new_page(viewport={"width": 1400, "height": 900}))
    page.page.goto(server.url + "/")
    page.page.evaluate("window.__loaded = 'once'")
    page.page.fill("input[name=q]", "churn")
    # (the page's Content-Security-Policy forbids eval, so no wait_for_function: expect polls)
    expect(page.page.locator("tbody#rows tr[data-model]")).to_have_count(1)
    assert page.page.url.endswith("/?q=churn")
    assert "challenger v2" in _cell_text(page.page, "churn-predictor", "dev")

    scenario.repo.pin("environments/dev/churn-predictor.yaml", "challenger", None)
    scenario.repo.commit("dev: drop churn-predictor's challenger")
    assert mlgitops(scenario.state, scenario.repo, "sync", "--env", "dev") == 0
    dev = page.page.locator('tr[data-model="churn-predictor"] td[data-env="dev"]')
    expect(dev).not_to_contain_text("challenger v", timeout=20_000)
    assert page.page.evaluate("window.__loaded") == "once"  # the rows changed, not the page
    assert page.page.locator("tbody#rows tr[data-model]").count() == 1
    page.shot("overview-filtered")
    assert page.errors == []
