"""Training runs on Kubernetes: one Job per attempt of a training key, owned by the ModelDeployment.

``JobRunner`` is the operator's ``Runner``. The Job's name is derived from the run's trigger, key
and attempt (``planning.children.training_job_name``), so a restarted operator, or a second one,
finds the Job of a run instead of making another, and the MLflow run (created first) and the Job
name together make a key run once. Kubernetes itself ends a Job at ``training.timeout``
(``activeDeadlineSeconds``) and never retries it (``backoffLimit: 0``: a retry is the next
attempt, with its own MLflow run); a finished Job stays a week for its pod's log
(``ttlSecondsAfterFinished``). Its pod reads credentials by Secret reference only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from controller.api.documents import ModelDeploymentSpec
from controller.errors import InvalidInput, Problem
from controller.pipeline.training import TAG_ATTEMPT, TAG_KEY, TAG_TRIGGER
from controller.planning.children import (
    Owner,
    RenderContext,
    render_training_job,
    training_job_name,
)
from controller.planning.ports import Cluster, RunnerState
from controller.planning.types import TrainingRun

JOB_API = "batch/v1"


class JobRunner:
    def __init__(
        self, *, cluster: Cluster, owner: Owner, spec: ModelDeploymentSpec, ctx: RenderContext
    ) -> None:
        self.cluster, self.owner, self.spec, self.ctx = cluster, owner, spec, ctx

    def _name(self, run: TrainingRun) -> str:
        return training_job_name(
            self.owner.name,
            run.tags.get(TAG_TRIGGER, ""),
            run.tags.get(TAG_KEY, ""),
            int(run.tags.get(TAG_ATTEMPT, "1") or 1),
        )

    def start(
        self,
        run: TrainingRun,
        *,
        commit: str,
        command: list[str],
        env: Mapping[str, str],
        timeout: float,
    ) -> str:
        training = self.spec.training
        if training is None or not training.image or "{commit}" not in training.image:
            raise InvalidInput(
                [
                    Problem(
                        f"modeldeployment/{self.owner.name}",
                        None,
                        "spec.training.image",
                        "required on Kubernetes, with {commit} in it (e.g. "
                        "registry.example.com/fraud-train:{commit}): the Job runs the code of "
                        "the commit it trains",
                    )
                ]
            )
        job = render_training_job(
            self.owner,
            self.spec,
            self.ctx,
            trigger=run.tags.get(TAG_TRIGGER, ""),
            key=run.tags.get(TAG_KEY, ""),
            attempt=int(run.tags.get(TAG_ATTEMPT, "1") or 1),
            commit=commit,
            env=dict(env),
            timeout=timeout,
        )
        assert job is not None
        self.cluster.ensure(job)  # an existing Job of this name is this run's: left as it is
        return self.log(run) or ""

    def state(self, run: TrainingRun) -> RunnerState:
        name = self._name(run)
        job = self.cluster.get(JOB_API, "Job", self.owner.namespace, name)
        if job is None:
            return RunnerState("absent")
        log = f"kubectl logs -n {self.owner.namespace} job/{name}"
        return job_state(job, log=log, timeout_field="training.timeout")

    def cleanup(self, run: TrainingRun) -> None:
        """Nothing: the finished Job keeps its pod's log until its TTL removes both."""

    def log(self, run: TrainingRun) -> str | None:
        return f"kubectl logs -n {self.owner.namespace} job/{self._name(run)}"


def job_state(job: Mapping[str, Any], *, log: str, timeout_field: str) -> RunnerState:
    """Where a Job is, from its status as the Job controller writes it: succeeded, failed (why:
    its deadline, named by ``timeout_field``, or its pod) or still running (pending included)."""
    name = (job.get("metadata") or {}).get("name", "")
    status: Mapping[str, Any] = job.get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    if int(status.get("succeeded") or 0) > 0 or _true(conditions.get("Complete")):
        return RunnerState("succeeded", log=log)
    failed = conditions.get("Failed")
    if _true(failed) or int(status.get("failed") or 0) > 0:
        reason = (failed or {}).get("reason")
        if reason == "DeadlineExceeded":
            seconds = (job.get("spec") or {}).get("activeDeadlineSeconds")
            return RunnerState("failed", f"timed out after {seconds} s ({timeout_field})", log)
        message = (failed or {}).get("message") or "its pod failed"
        return RunnerState("failed", f"Job {name} failed: {message}", log)
    return RunnerState("running", log=log)


def _true(condition: Mapping[str, Any] | None) -> bool:
    return condition is not None and condition.get("status") == "True"
