"""The embedded runtime's CronJobs: real `mlgitops batch`/`monitor` processes on a given clock.

The clock is passed in (a schedule of "0 11 * * *" cannot be waited for); everything else is
real: the example prod folder, the MLflow store with scikit-learn models, Delta tables, processes.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from deltalake import DeltaTable, write_deltalake

from controller.api.loader import DesiredState, load_environment
from controller.local.cron import LocalCron
from examples.models import dataset
from tests.conftest import Ran
from tests.helpers import PROJECT, RegistryView

FRAUD = "prod.fraud.fraud_detector"
BATCH, MONITOR = "fraud-detector-batch", "fraud-detector-monitor"
DAY1 = dt.datetime(2026, 11, 27, tzinfo=dt.UTC)
DAY2 = DAY1 + dt.timedelta(days=1)


def at(day: dt.datetime, hour: int, minute: int = 0, second: int = 0) -> dt.datetime:
    return day.replace(hour=hour, minute=minute, second=second)


def job_name(cronjob: str, scheduled: dt.datetime) -> str:
    return f"{cronjob}-{int(scheduled.timestamp()) // 60}"


def desired(batch_schedule: str | None = None) -> DesiredState:
    folder = PROJECT / "environments/prod"
    files = {  # the fraud detector alone: its jobs are the ones on the clock here
        f"environments/prod/{name}": (folder / name).read_text()
        for name in ("environment.yaml", "fraud-detector.yaml")
    }
    if batch_schedule:
        md = "environments/prod/fraud-detector.yaml"
        assert 'schedule: "0 11 * * *"' in files[md]
        files[md] = files[md].replace('schedule: "0 11 * * *"', f'schedule: "{batch_schedule}"')
    return load_environment(files, env_name="prod", revision="test", folder="environments/prod")


@pytest.fixture
def events() -> list[str]:
    return []


@pytest.fixture
def make_cron(
    state_dir: Path, registry: RegistryView, events: list[str]
) -> Iterator[Callable[..., LocalCron]]:
    registry.client.set_registered_model_alias(FRAUD, "champion", "2")
    features, _ = dataset("classifier")
    tables = state_dir / "tables"
    write_deltalake(
        str(tables / "prod/fraud/transactions_daily"), features.sample(200, random_state=0)
    )
    write_deltalake(str(tables / "prod/fraud/training_baseline"), features)
    made: list[LocalCron] = []

    def make(batch_schedule: str | None = None) -> LocalCron:
        cron = LocalCron(
            env="prod",
            state_root=state_dir,
            tracking_uri=registry.uri,
            on_event=events.append,
        )
        cron.apply(desired(batch_schedule))
        made.append(cron)
        return cron

    yield make
    for cron in made:
        cron.stop_all(timeout=5)


def scores(state_dir: Path) -> dict[str, int]:
    table = DeltaTable(str(state_dir / "tables/prod/fraud/scores_daily")).to_pandas()
    return {str(k): int(v) for k, v in table["batch_id"].value_counts().items()}


def test_jobs_run_on_schedule_once_each_across_restarts(
    make_cron: Callable[..., LocalCron], state_dir: Path, events: list[str], cli: Callable[..., Ran]
) -> None:
    cron = make_cron()
    assert sorted(cron.jobs) == [BATCH, MONITOR]
    assert cron.tick(at(DAY1, 10, 59, 30)) == []  # first sight: a new CronJob does not backfill
    assert cron.last(BATCH) == {"since": at(DAY1, 10, 59).isoformat()}  # nothing scheduled yet
    [run] = cron.tick(at(DAY1, 11, 0, 5))
    first = job_name(BATCH, at(DAY1, 11))
    assert (run.job, run.name) == (BATCH, first)
    assert cron.tick(at(DAY1, 11, 0, 30)) == []  # 11:00 is done; the monitor is due at 08:00
    cron.wait(timeout=120)
    assert cron.last(BATCH)["lastRun"] == {
        "name": first,
        "scheduled": at(DAY1, 11).isoformat(),
        "exitCode": 0,
    }
    assert scores(state_dir) == {first: 200}

    # A restarted runtime remembers what ran: nothing is repeated, the next runs come on time.
    cron.stop_all()
    again = make_cron()
    assert again.tick(at(DAY1, 11, 30)) == []
    [monitor] = again.tick(at(DAY2, 8, 0, 10))
    assert monitor.job == MONITOR
    again.wait(timeout=120)
    assert again.last(MONITOR)["lastRun"]["exitCode"] == 0, (
        state_dir / "envs/prod/jobs/fraud-detector-monitor.log"
    ).read_text()[-2000:]
    report = DeltaTable(str(state_dir / "tables/prod/fraud/scores_daily_drift")).to_pandas()
    assert set(report["window"]) == {first}  # the newest scored batch
    assert len(report) == 30
    assert not report["drifted"].any()

    # `mlgitops status` shows what ran.
    assert cli("sync", "--env", "prod").code == 0
    doc = json.loads(cli("status", "--env", "prod", "-o", "json").stdout)
    jobs = {j["name"]: j for j in doc["jobs"]}
    assert jobs[BATCH]["lastRun"]["name"] == first
    assert jobs[MONITOR]["lastRun"]["exitCode"] == 0
    table = cli("status", "--env", "prod").stdout.splitlines()
    assert [line.split() for line in table if line.startswith(BATCH)] == [
        [BATCH, "2026-11-27T11:00", first, "ok"]
    ]


def test_a_run_cut_short_is_retried_under_its_name(
    make_cron: Callable[..., LocalCron], state_dir: Path, events: list[str]
) -> None:
    cron = make_cron()
    cron.tick(at(DAY1, 10))
    [run] = cron.tick(at(DAY1, 11, 0, 5))
    cron.stop_all(timeout=0)  # the runtime stops mid-run (its runs are killed with it)
    assert cron.last(BATCH)["inFlight"] == {"name": run.name, "scheduled": at(DAY1, 11).isoformat()}

    restarted = make_cron()
    [retry] = restarted.tick(at(DAY1, 11, 5))
    assert (retry.name, retry.scheduled) == (run.name, run.scheduled)
    assert f"{BATCH}: retrying {run.name}, cut short before" in events
    restarted.wait(timeout=120)
    assert restarted.last(BATCH)["inFlight"] is None
    assert restarted.last(BATCH)["lastRun"]["exitCode"] == 0
    assert scores(state_dir) == {run.name: 200}  # one copy, whatever the first attempt wrote
    assert restarted.tick(at(DAY1, 11, 6)) == []


def test_a_run_still_going_skips_the_next_tick(
    make_cron: Callable[..., LocalCron], state_dir: Path, events: list[str]
) -> None:
    cron = make_cron(batch_schedule="* * * * *")
    cron.tick(at(DAY1, 10))
    [run] = cron.tick(at(DAY1, 10, 1, 1))
    # The 10:02 run is due while the 10:01 one still goes (it takes seconds): Forbid skips it.
    assert cron.tick(at(DAY1, 10, 2, 1)) == []
    assert f"{BATCH}: run for {at(DAY1, 10, 2).isoformat()} skipped, previous still going" in events
    cron.wait(timeout=120)
    [later] = cron.tick(at(DAY1, 10, 3, 1))
    assert later.name == job_name(BATCH, at(DAY1, 10, 3))
    cron.wait(timeout=120)
    assert scores(state_dir) == {run.name: 200, later.name: 200}
