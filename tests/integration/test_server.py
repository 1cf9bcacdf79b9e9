"""Against a real ``mlflow server`` process: the registry over HTTP, and the registry going away.

The server is started on a free loopback port with job execution off and one worker (about 6 s
and 560 MB, against 15 processes and 3.6 GB with MLflow's defaults) and stopped at the end. Stopping it mid-test is how we prove an
unreachable registry gives exit 2 with the cause, changes nothing, and that a retry later works.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import Ran
from tests.helpers import ConfigRepo, MlflowServer, RegistryView, free_port

pytestmark = pytest.mark.server
FRAUD = "prod.fraud.fraud_detector"
ENV_FILE = "environments/prod/environment.yaml"


@pytest.fixture
def server(tmp_path: Path, seeded_store: Path) -> Iterator[MlflowServer]:
    db = tmp_path / "server.db"
    shutil.copy(seeded_store / "mlflow.db", db)
    srv = MlflowServer(db, tmp_path / "server-artifacts", free_port())
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def point_at(repo: ConfigRepo, url: str) -> None:
    text = repo.read(ENV_FILE).replace(
        "  # registry: {trackingUri", f"  registry: {{trackingUri: {url}}}\n  # was: {{trackingUri"
    )
    repo.write(ENV_FILE, text)
    repo.commit(f"Use the registry at {url}")


def test_sync_over_http_and_registry_outage(
    server: MlflowServer, cli: Callable[..., Ran], repo: ConfigRepo
) -> None:
    point_at(repo, server.url)
    remote = RegistryView(server.url)
    ran = cli("sync", "--env", "prod")
    assert ran.code == 0, ran.stderr
    assert remote.aliases(FRAUD) == {"champion": "2", "challenger": "3"}

    repo.pin("environments/prod/fraud-detector.yaml", "champion", "1")
    repo.commit("Champion v1")
    server.stop()
    started = time.monotonic()
    down = cli("sync", "--env", "prod")
    assert down.code == 2
    [line] = down.stderr.strip().splitlines()
    assert line.startswith(f"error: registry {server.url}")
    assert time.monotonic() - started < 60, "an outage must fail fast, not hang"
    status = json.loads(cli("status", "--env", "prod", "-o", "json").stdout)
    fraud = next(m for m in status["models"] if m["name"] == "fraud-detector")
    ready = fraud["conditions"][0]
    assert (ready["status"], ready["reason"]) == ("False", "RegistryUnavailable")
    assert fraud["champion"]["version"] == "2"  # the last good state is what status reports

    server.start()
    assert remote.aliases(FRAUD)["champion"] == "2"  # nothing was half-applied
    again = cli("sync", "--env", "prod")
    assert again.code == 0, again.stderr
    assert remote.aliases(FRAUD)["champion"] == "1"


def test_credentials_never_printed(cli: Callable[..., Ran], repo: ConfigRepo) -> None:
    url = f"http://alice:s3cr3t-token@127.0.0.1:{free_port()}"
    point_at(repo, url)
    ran = cli("sync", "--env", "prod")
    assert ran.code == 2
    assert "s3cr3t-token" not in ran.stderr + ran.stdout
    # Refused where it is written: a credential in Git is read by everyone who reads the repo.
    assert ran.stderr.startswith(
        "error: environments/prod/environment.yaml:9: spec.registry.trackingUri: must not carry "
        "credentials"
    )
    status = cli("status", "--env", "prod", "-o", "json").stdout
    assert "s3cr3t-token" not in status


def test_unreachable_repository_then_retry(
    cli: Callable[..., Ran], repo: ConfigRepo, tmp_path: Path, registry: RegistryView
) -> None:
    url = (tmp_path / "later.git").as_uri()
    ran = cli("sync", "--env", "prod", "--repo", url)
    assert ran.code == 2
    [line] = ran.stderr.strip().splitlines()
    assert line.startswith(f"error: repository {url}")
    subprocess.run(
        ["git", "clone", "-q", "--bare", str(repo.path), str(tmp_path / "later.git")], check=True
    )
    again = cli("sync", "--env", "prod", "--repo", url)
    assert again.code == 0, again.stderr
    assert registry.aliases(FRAUD)["champion"] == "2"


def test_console_script_exit_codes_and_help(repo: ConfigRepo, state_dir: Path) -> None:
    exe = Path(sys.executable).with_name("mlgitops")
    for command in ("validate", "diff", "sync", "status", "history"):
        shown = subprocess.run([str(exe), command, "--help"], capture_output=True, text=True)
        assert shown.returncode == 0
        assert "--state-dir" in shown.stdout
    args = ["--repo", str(repo.path), "--state-dir", str(state_dir)]
    diff = subprocess.run(
        [str(exe), "diff", "--env", "prod", *args], capture_output=True, text=True
    )
    assert diff.returncode == 1, diff.stderr
    sync = subprocess.run(
        [str(exe), "sync", "--env", "prod", *args], capture_output=True, text=True
    )
    assert sync.returncode == 0, sync.stderr
    diff = subprocess.run(
        [str(exe), "diff", "--env", "prod", *args], capture_output=True, text=True
    )
    assert diff.returncode == 0
