"""Shared fixtures: a seeded MLflow store built once per session, copied per test.

Seeding logs real scikit-learn models (bundled datasets) once; each test gets its own copy of the
SQLite file, so tests are isolated yet do not pay MLflow's schema migration and model logging
every time.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ConfigRepo, RegistryView
from tests.receiver import receiver  # noqa: F401 - the fixture, for every test

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("GIT_TERMINAL_PROMPT", "0")

# Under pytest-xdist (`make test` runs the suite on several workers), each worker's embedded
# runtimes allocate serving ports from a range of their own: every test has a state directory of
# its own, and port allocation is coordinated per state directory only, so two workers would both
# take 8600 for their first server. Below the kernel's ephemeral range (32768 up), where no
# client connection takes a port. Without xdist, the default (8600) is what runs.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
if _WORKER.startswith("gw"):
    os.environ["MLGITOPS_FIRST_PORT"] = str(20000 + 200 * int(_WORKER[2:]))

CATALOGS = ("dev", "staging", "prod")


@pytest.fixture(scope="session")
def seeded_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with ``mlflow.db`` holding fraud/churn versions 1..3 in every catalog."""
    from examples.models import seed

    root = tmp_path_factory.mktemp("seeded")
    seed(
        tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
        artifact_dir=root / "artifacts",
        catalogs=CATALOGS,
    )
    return root


@pytest.fixture
def state_dir(tmp_path: Path, seeded_store: Path) -> Path:
    """A fresh state directory whose embedded registry is a copy of the seeded store."""
    state = tmp_path / "state"
    state.mkdir()
    shutil.copy(seeded_store / "mlflow.db", state / "mlflow.db")
    return state


@pytest.fixture
def registry(state_dir: Path) -> RegistryView:
    return RegistryView(f"sqlite:///{state_dir / 'mlflow.db'}")


@pytest.fixture
def repo(tmp_path: Path) -> ConfigRepo:
    return ConfigRepo(tmp_path / "config")


@dataclass
class Ran:
    code: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(state_dir: Path, repo: ConfigRepo) -> Callable[..., Ran]:
    """Run ``mlgitops`` in-process (the real Typer app) against ``repo`` and ``state_dir``."""
    from typer.testing import CliRunner

    from controller.cli import app

    def run(*args: str, repo_arg: str | None = None) -> Ran:
        argv = [*args, "--state-dir", str(state_dir)]
        if args[0] not in ("status",) and "--repo" not in args:
            argv += ["--repo", repo_arg or str(repo.path)]
        result = CliRunner().invoke(app, argv, catch_exceptions=False)
        return Ran(result.exit_code, result.stdout, result.stderr)

    return run


@pytest.fixture
def browser() -> Iterator[Any]:
    """Debian's chromium, driven by Playwright through ``executable_path`` (Playwright's own
    browser downloads are never used). On CI its absence fails; elsewhere it skips."""
    chromium = shutil.which("chromium")
    if chromium is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: .ci/run installs Debian's chromium package")
        pytest.skip("needs Debian's chromium package (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()
