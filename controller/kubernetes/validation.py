"""Validations on Kubernetes: one Job per model version, owned by the ModelDeployment.

``JobValidator`` is the operator's ``ports.Validator`` for the shared promotion pass
(``controller.promotion``). The Job's name is derived from the registered model and the version
(``planning.children.validation_job_name``), so a restarted operator, or a second one, finds the
Job of a version instead of making another; ``validate-model`` itself keeps one result per
version in MLflow. The Job runs in the operator's image (as the batch and monitoring CronJobs),
reaches the registry through ``MLFLOW_TRACKING_URI`` with credentials by Secret reference, ends
at its deadline (``activeDeadlineSeconds``) and is never retried by Kubernetes (backoffLimit 0).

A finished Job stays a week for its pod's log (``ttlSecondsAfterFinished``), so its outcome
would be seen on every pass until then. Once the pass has recorded it (an Event for the verdict,
or the reason it ended without one), ``cleanup`` marks the Job with an annotation and ``state``
reports a marked Job as absent: each outcome is recorded once, across restarts too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from controller.errors import InvalidInput, Problem
from controller.kubernetes.training import JOB_API, job_state
from controller.planning.children import (
    Owner,
    RenderContext,
    render_validation_job,
    validation_job_name,
)
from controller.planning.ports import Cluster, RunnerState

RECORDED = "mlgitops.io/validation-recorded"  # on a finished Job whose outcome a pass recorded

Obj = dict[str, Any]


class JobValidator:
    """``ports.Validator`` on Kubernetes; the key is the version of ``model``."""

    def __init__(
        self,
        *,
        cluster: Cluster,
        owner: Owner,
        model: str,
        ctx: RenderContext,
        on_write: Callable[[Obj], None] = lambda _: None,
    ) -> None:
        self.cluster, self.owner, self.model, self.ctx = cluster, owner, model, ctx
        self.on_write = on_write  # told of each write (the object returned), to know its echo

    def _name(self, key: str) -> str:
        return validation_job_name(self.owner.name, self.model, key)

    def _log(self, key: str) -> str:
        return f"kubectl logs -n {self.owner.namespace} job/{self._name(key)}"

    def _get(self, key: str) -> Obj | None:
        return self.cluster.get(JOB_API, "Job", self.owner.namespace, self._name(key))

    def state(self, key: str) -> RunnerState:
        job = self._get(key)
        if job is None or _recorded(job):
            return RunnerState("absent")
        return job_state(job, log=self._log(key), timeout_field="the validation deadline")

    def start(self, key: str, *, args: list[str], env: Mapping[str, str], timeout: float) -> str:
        uri = self.ctx.tracking_uri
        if not uri or not uri.startswith(("http://", "https://")):
            raise InvalidInput(
                [
                    Problem(
                        f"environment/{self.ctx.environment}",
                        None,
                        "spec.registry.trackingUri",
                        "validation on Kubernetes needs an MLflow tracking server its Jobs can "
                        "reach (http:// or https://)",
                    )
                ]
            )
        live = self._get(key)
        if live is None:
            job = render_validation_job(
                self.owner,
                self.ctx,
                model=self.model,
                version=key,
                args=args,
                env=dict(env),
                timeout=timeout,
            )
            self.on_write(self.cluster.apply(job))
        elif _recorded(live):
            # Its outcome was marked recorded, yet the version still waits for one (a crash
            # between the mark and the record): unmark it, and the next pass records it.
            self._annotate(key, None)
        # Otherwise the Job of this version is there already: it is this validation.
        return self._log(key)

    def cleanup(self, key: str) -> None:
        """Mark the finished Job recorded; it stays (with its pod's log) until its TTL."""
        self._annotate(key, "true")

    def _annotate(self, key: str, value: str | None) -> None:
        written = self.cluster.annotate(
            JOB_API, "Job", self.owner.namespace, self._name(key), {RECORDED: value}
        )
        if written is not None:
            self.on_write({**written, "kind": "Job"})


def _recorded(job: Mapping[str, Any]) -> bool:
    return bool(((job.get("metadata") or {}).get("annotations") or {}).get(RECORDED))
