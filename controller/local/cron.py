"""The embedded runtime's CronJobs: batch inference and the drift monitor on this machine's clock.

On Kubernetes each ModelDeployment gets a batch and a monitoring CronJob; ``mlgitops run`` must do
the same with no cluster. So the jobs, their schedules and their arguments come from the very
functions that render the CronJobs (``planning.children``), and each run is a local process of
the same command the pod would run, with the same environment: ``MLGITOPS_BATCH_ID`` is named as
Kubernetes names a CronJob's Job (``<cronjob>-<scheduled minute since the epoch>``), so a batch
the runtime retries after a crash replaces its rows instead of adding a copy.

CronJob semantics kept: ``concurrencyPolicy: Forbid`` (a run still going when the next is due
skips that one), and a schedule missed while the runtime was down runs once on start (the newest
missed time), never once per missed tick. The last scheduled time of each job is kept under the
state directory, so a restart neither repeats nor loses a run.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from croniter import croniter

from controller.api.loader import DesiredState
from controller.local import processes
from controller.planning.children import (
    Owner,
    RenderContext,
    job_container,
    render_batch,
    render_monitor,
)
from controller.state import StateDir, write_json

__all__ = ["JobRun", "LocalCron", "read_jobs"]


@dataclass(frozen=True)
class _Job:
    name: str  # the CronJob's name
    schedule: str
    args: tuple[str, ...]
    env: tuple[tuple[str, str], ...]


@dataclass
class JobRun:
    """One local run of a job: the Job Kubernetes would create for one scheduled time."""

    job: str
    name: str  # <cronjob>-<scheduled minute>, the Job's name
    scheduled: str
    proc: subprocess.Popen[bytes] | None = None
    exit_code: int | None = None


def _jobs(desired: DesiredState, data_root: str, tracking_uri: str) -> dict[str, _Job]:
    ctx = RenderContext(
        environment=desired.environment.metadata.name,
        image="local",
        tracking_uri=tracking_uri,
        data_root=data_root,
    )
    out: dict[str, _Job] = {}
    for d in desired.deployments:
        owner = Owner(d.doc.metadata.name, "", desired.environment.spec.namespace)
        spec = d.doc.spec
        model = d.registered_model
        for cronjob in [
            *render_batch(owner, spec, model, ctx),
            *render_monitor(owner, spec, model, ctx),
        ]:
            container = job_container(cronjob)
            env = tuple((e["name"], e["value"]) for e in container["env"] if "value" in e)
            name = cronjob["metadata"]["name"]
            out[name] = _Job(name, cronjob["spec"]["schedule"], tuple(container["args"]), env)
    return out


@dataclass
class LocalCron:
    """Start each job's runs when its schedule says, one at a time per job."""

    env: str
    state_root: Path
    tracking_uri: str
    jobs: dict[str, _Job] = field(default_factory=dict)
    running: dict[str, JobRun] = field(default_factory=dict)
    _records: dict[str, dict[str, Any]] = field(default_factory=dict)  # the files, read once
    on_event: Callable[[str], None] = lambda _: None

    @property
    def dir(self) -> Path:
        path = self.state_root / "envs" / self.env / "jobs"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def apply(self, desired: DesiredState) -> None:
        """Adopt the jobs of ``desired``; a job Git dropped starts no new run."""
        root = desired.environment.spec.data_root or str(StateDir(self.state_root).tables)
        self.jobs = _jobs(desired, root, self.tracking_uri)

    def tick(self, now: dt.datetime | None = None) -> list[JobRun]:
        """Reap finished runs and start the ones due at ``now`` (UTC). Returns the runs started."""
        now = now or dt.datetime.now(dt.UTC)
        self._reap()
        started: list[JobRun] = []
        for job in self.jobs.values():
            interrupted = self.last(job.name).get("inFlight")
            if interrupted and job.name not in self.running:
                # The runtime stopped during this run: run it again under the same name, as the
                # Job controller retries a pod; the batch replaces what the first attempt wrote.
                scheduled = dt.datetime.fromisoformat(interrupted["scheduled"])
                self.on_event(f"{job.name}: retrying {interrupted['name']}, cut short before")
                started.append(self._start(job, scheduled))
                continue
            due = self._due(job, now)
            if due is None:
                continue
            self._record(job.name, lastScheduleTime=due.isoformat())
            if job.name in self.running:  # concurrencyPolicy: Forbid
                self.on_event(
                    f"{job.name}: run for {due.isoformat()} skipped, previous still going"
                )
                continue
            started.append(self._start(job, due))
        return started

    def wait(self, timeout: float | None = None) -> None:
        """Wait for the runs in flight (tests, and a clean stop)."""
        for run in list(self.running.values()):
            if run.proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    run.proc.wait(timeout=timeout)
        self._reap()

    def stop_all(self, *, timeout: float = 10.0) -> None:
        """Stop the runtime's runs: a run that ends by itself meanwhile is recorded; one cut short
        stays in flight in the state directory and is retried, under its name, on the next start."""
        self._reap()
        for run in self.running.values():
            if run.proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(run.proc.pid, signal.SIGTERM)
        for run in self.running.values():
            if run.proc is None:
                continue
            try:
                run.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(run.proc.pid, signal.SIGKILL)
                run.proc.wait()
            self.on_event(f"{run.job}: stopped {run.name}; it runs again on the next start")
        self.running.clear()

    def last(self, job: str) -> dict[str, Any]:
        """What the state directory remembers of ``job``: last scheduled time, last run.

        Read from the file once per process; every change is written through (``_record``).
        """
        if job not in self._records:
            path = self.dir / f"{job}.json"
            self._records[job] = dict(json.loads(path.read_text())) if path.exists() else {}
        return dict(self._records[job])

    # -- internals -------------------------------------------------------------------------------

    def _due(self, job: _Job, now: dt.datetime) -> dt.datetime | None:
        """The newest scheduled time in (last scheduled, now], or None."""
        record = self.last(job.name)
        last = record.get("lastScheduleTime") or record.get("since")
        if last is None:
            # A new job starts from now: a CronJob created at 11:05 does not run the 11:00 batch.
            self._record(job.name, since=now.replace(second=0, microsecond=0).isoformat())
            return None
        newest = croniter(job.schedule, now).get_prev(dt.datetime)
        return newest if newest > dt.datetime.fromisoformat(last) else None

    def _record(self, job: str, **fields: Any) -> None:
        data = self._records[job] = {**self.last(job), **fields}
        write_json(self.dir / f"{job}.json", data)

    def _start(self, job: _Job, scheduled: dt.datetime) -> JobRun:
        name = f"{job.name}-{int(scheduled.timestamp()) // 60}"
        proc = processes.start(
            [*job.args, "--state-dir", str(self.state_root)],
            log=self.dir / f"{job.name}.log",
            env={
                **dict(job.env),
                "MLFLOW_REGISTRY_URI": self.tracking_uri,
                "MLGITOPS_BATCH_ID": name,
            },
        )
        run = JobRun(job.name, name, scheduled.isoformat(), proc=proc)
        self.running[job.name] = run
        self._record(job.name, inFlight={"name": name, "scheduled": scheduled.isoformat()})
        self.on_event(f"{job.name}: started {name}")
        return run

    def _reap(self) -> None:
        for job, run in list(self.running.items()):
            if run.proc is None or run.proc.poll() is None:
                continue
            run.exit_code = run.proc.returncode
            del self.running[job]
            self._record(
                job,
                inFlight=None,
                lastRun={"name": run.name, "scheduled": run.scheduled, "exitCode": run.exit_code},
            )
            outcome = "succeeded" if run.exit_code == 0 else f"failed (exit {run.exit_code})"
            self.on_event(f"{job}: {run.name} {outcome}; log {self.dir / f'{job}.log'}")


def read_jobs(state_root: Path, env: str) -> dict[str, dict[str, Any]]:
    """What ``mlgitops run`` recorded of each job (for status without a running runtime)."""
    folder = state_root / "envs" / env / "jobs"
    if not folder.exists():
        return {}
    return {p.stem: dict(json.loads(p.read_text())) for p in sorted(folder.glob("*.json"))}
