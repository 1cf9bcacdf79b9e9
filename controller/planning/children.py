"""Pure rendering of a ModelDeployment's Kubernetes children: same input, same objects, same names.

Names are deterministic (the ModelDeployment's name plus a role, shortened with a hash when a
Kubernetes length limit would be hit; a training Job adds the short code commit), every object
carries the ``managed-by`` and ``model-deployment`` labels and an owner reference, and everything
that should trigger a rollout (the concrete champion and challenger versions and the split) sits
in the serving pod template. Nothing here talks to a cluster; ``runtimes.kubernetes`` applies the
result.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from controller.api.documents import API_VERSION, ModelDeploymentSpec

MANAGED_BY = "app.kubernetes.io/managed-by"
MD_LABEL = "mlgitops.io/model-deployment"
COMPONENT = "app.kubernetes.io/component"
SERVING_PORT = 8000
CRONJOB_NAME_MAX = 52  # CronJob names leave room for the Job suffix the controller adds
NAME_MAX = 63

Obj = dict[str, Any]


@dataclass(frozen=True)
class Owner:
    name: str
    uid: str
    namespace: str


@dataclass(frozen=True)
class RenderContext:
    """Environment-wide settings the children need."""

    environment: str
    image: str
    tracking_uri: str | None
    service_account: str | None = None
    data_root: str | None = None


def child_name(owner: str, role: str, *, limit: int = NAME_MAX) -> str:
    """``<owner>-<role>``; shortened deterministically with a hash when over ``limit``."""
    name = f"{owner}-{role}"
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    keep = limit - len(role) - len(digest) - 2
    return f"{owner[:keep].rstrip('-')}-{digest}-{role}"


def _labels(owner: Owner, component: str) -> dict[str, str]:
    return {
        MANAGED_BY: "mlgitops",
        MD_LABEL: owner.name,
        COMPONENT: component,
        "app.kubernetes.io/name": "mlgitops",
        "app.kubernetes.io/instance": owner.name,
    }


def _meta(owner: Owner, name: str, component: str) -> Obj:
    return {
        "name": name,
        "namespace": owner.namespace,
        "labels": _labels(owner, component),
        "ownerReferences": [
            {
                "apiVersion": API_VERSION,
                "kind": "ModelDeployment",
                "name": owner.name,
                "uid": owner.uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    }


MLFLOW_SECRET = "mlgitops-mlflow"
# MLflow's own variables, each from a key of the Secret (optional: a registry without
# authentication needs none). Never a literal value: a credential never appears in a spec.
_CREDENTIALS = (
    ("MLFLOW_TRACKING_TOKEN", "token"),
    ("MLFLOW_TRACKING_USERNAME", "username"),
    ("MLFLOW_TRACKING_PASSWORD", "password"),
)


def _env(ctx: RenderContext) -> list[Obj]:
    env: list[Obj] = [
        {"name": "MLFLOW_DISABLE_TELEMETRY", "value": "true"},
        *(
            {
                "name": name,
                "valueFrom": {
                    "secretKeyRef": {"name": MLFLOW_SECRET, "key": key, "optional": True}
                },
            }
            for name, key in _CREDENTIALS
        ),
    ]
    if ctx.tracking_uri:
        env.insert(0, {"name": "MLFLOW_TRACKING_URI", "value": ctx.tracking_uri})
    if ctx.data_root:
        env.append({"name": "MLGITOPS_DATA_ROOT", "value": ctx.data_root})
    return env


_SECURITY: Obj = {
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def _pod(
    ctx: RenderContext,
    *,
    args: list[str],
    restart: str | None = None,
    env: list[Obj] | None = None,
    **extra: Any,
) -> Obj:
    container: Obj = {
        "name": "main",
        "image": ctx.image,
        "args": args,
        "env": _env(ctx) + (env or []),
        "securityContext": _SECURITY,
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
        **extra,
    }
    spec: Obj = {"containers": [container], "volumes": [{"name": "tmp", "emptyDir": {}}]}
    if restart:
        spec["restartPolicy"] = restart
    if ctx.service_account:
        spec["serviceAccountName"] = ctx.service_account
    return spec


def model_uri(model: str, version: str) -> str:
    return f"models:/{model}/{version}"


def serving_args(spec: ModelDeploymentSpec) -> list[str]:
    """What a serving replica gets beyond its models, on both runtimes: the inference table, by
    its name; the replica resolves it under ``MLGITOPS_DATA_ROOT`` as the batch job does."""
    table = spec.serving.inference_table
    return ["--inference-log", table] if table else []


def render_serving(
    owner: Owner, spec: ModelDeploymentSpec, model: str, ctx: RenderContext
) -> list[Obj]:
    """The serving Deployment and its Service; none when serving is off or there is no champion."""
    if not spec.serving.enabled or spec.champion is None:
        return []
    name = child_name(owner.name, "serving")
    champion = spec.champion.version
    challenger = spec.challenger.version if spec.challenger else None
    traffic = spec.serving.traffic.challenger if challenger else 0
    # A pod's address, not loopback: the Service and the kubelet's probes reach it there.
    args = ["serve", "--champion", model_uri(model, champion), "--host", "0.0.0.0"]
    args += ["--port", str(SERVING_PORT)]
    if challenger:
        args += ["--challenger", model_uri(model, challenger), "--challenger-traffic", str(traffic)]
    args += serving_args(spec)
    selector = {MD_LABEL: owner.name, COMPONENT: "serving"}
    versions = {
        "mlgitops.io/champion": champion,
        "mlgitops.io/challenger": challenger or "",
        "mlgitops.io/challenger-traffic": str(traffic),
    }
    pod = _pod(
        ctx,
        args=args,
        ports=[{"name": "http", "containerPort": SERVING_PORT}],
        readinessProbe={
            "httpGet": {"path": "/ping", "port": "http"},
            "periodSeconds": 5,
            "failureThreshold": 2,
        },
        livenessProbe={
            "httpGet": {"path": "/health", "port": "http"},
            "initialDelaySeconds": 30,
            "periodSeconds": 10,
        },
        resources={
            "requests": {"cpu": "100m", "memory": "256Mi"},
            "limits": {"cpu": "1", "memory": "1Gi"},
        },
    )
    deployment: Obj = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {**_meta(owner, name, "serving"), "annotations": versions},
        "spec": {
            "replicas": spec.serving.replicas,
            "selector": {"matchLabels": selector},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {
                "metadata": {"labels": _labels(owner, "serving"), "annotations": versions},
                "spec": pod,
            },
        },
    }
    service: Obj = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(owner, name, "serving"),
        "spec": {
            "selector": selector,
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }
    return [deployment, service]


def job_container(cronjob: Obj) -> Obj:
    """The one container of a rendered CronJob's pod template."""
    container: Obj = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    return container


def _cronjob(
    owner: Owner,
    role: str,
    schedule: str,
    args: list[str],
    ctx: RenderContext,
    env: list[Obj] | None = None,
) -> Obj:
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": _meta(owner, child_name(owner.name, role, limit=CRONJOB_NAME_MAX), role),
        "spec": {
            "schedule": schedule,
            "concurrencyPolicy": "Forbid",
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {
                "metadata": {"labels": _labels(owner, role)},
                "spec": {
                    "backoffLimit": 2,
                    "template": {
                        "metadata": {"labels": _labels(owner, role)},
                        "spec": _pod(ctx, args=args, restart="Never", env=env),
                    },
                },
            },
        },
    }


def render_batch(
    owner: Owner, spec: ModelDeploymentSpec, model: str, ctx: RenderContext
) -> list[Obj]:
    """The batch-inference CronJob; it names ``@champion``, resolved when each run starts."""
    batch = spec.batch_inference
    if batch is None:
        return []
    args = [
        "batch",
        "--model",
        f"models:/{model}@champion",
        "--input",
        batch.input,
        "--output",
        batch.output,
    ]
    # The batch id is the Job's name: a pod Kubernetes retries within one Job replaces that
    # Job's rows instead of adding a second copy (see controller/jobs/batch.py).
    batch_id = {
        "name": "MLGITOPS_BATCH_ID",
        "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['batch.kubernetes.io/job-name']"}},
    }
    return [_cronjob(owner, "batch", batch.schedule, args, ctx, env=[batch_id])]


def render_monitor(
    owner: Owner, spec: ModelDeploymentSpec, model: str, ctx: RenderContext
) -> list[Obj]:
    mon = spec.monitoring
    if mon is None:
        return []
    args = [
        "monitor",
        "--model",
        f"models:/{model}@champion",
        "--baseline",
        mon.baseline,
        "--method",
        mon.drift.method,
        "--threshold",
        str(mon.drift.threshold),
    ]
    source, table = spec.monitored()  # the loader refuses monitoring with no table
    if table is not None:
        args += ["--current", table]  # the windows: its scored batches, or its requests by time
        if source == "inference":
            args += ["--source", "inference"]
    if mon.window is not None:
        args += ["--window", f"{mon.window}"]
    args += ["--lookback", str(mon.lookback)]
    if mon.labels is not None:
        args += ["--labels", mon.labels.table, "--label-target", mon.labels.target]
        for column in mon.labels.key:
            args += ["--label-key", column]
        args += ["--label-min-rows", str(mon.labels.min_rows)]
    if mon.model_type is not None:
        args += ["--model-type", mon.model_type]
    for bound in mon.quality:
        for side, value in (("min", bound.min), ("max", bound.max)):
            if value is not None:
                args += ["--quality", f"{bound.metric}:{side}:{value:g}"]
    online = spec.promotion.online
    if online is not None and mon.labels is not None:
        args += ["--online-metric", online.metric, "--online-min-change", f"{online.min_change:g}"]
        args += ["--online-min-labeled-rows", str(online.min_labeled_rows)]
    if mon.retrain is not None:
        args += [
            "--retrain-violations",
            str(mon.retrain.violations),
            "--retrain-windows",
            str(mon.retrain.windows),
        ]
    return [_cronjob(owner, "monitor", mon.schedule, args, ctx)]


JOB_TTL_SECONDS = 7 * 24 * 3600  # a finished Job (and its pod's log) stays a week


def training_job_name(owner: str, trigger: str, key: str, attempt: int) -> str:
    """The Job of one attempt of one training key: the same key always names the same Job, so a
    second operator (or a restarted one) finds it rather than making another."""
    digest = hashlib.sha256(f"{trigger}/{key}/{attempt}".encode()).hexdigest()[:10]
    return child_name(owner, f"train-{digest}")


def render_training_job(
    owner: Owner,
    spec: ModelDeploymentSpec,
    ctx: RenderContext,
    *,
    trigger: str,
    key: str,
    attempt: int,
    commit: str,
    env: dict[str, str],
    timeout: float,
) -> Obj | None:
    """The Job of one training run attempt: ``training.image`` with ``{commit}`` filled in,
    running ``training.command`` with ``env`` (the run's MLflow ids and the rest) beside the
    credentials, by Secret reference. Kubernetes ends it at ``timeout`` (activeDeadlineSeconds);
    it is never retried by Kubernetes (backoffLimit 0: a retry is the next attempt, a run of its
    own); it is deleted a week after it finished."""
    training = spec.training
    if training is None:
        return None
    image = (training.image or ctx.image).replace("{commit}", commit)
    pod = _pod(
        RenderContext(ctx.environment, image, ctx.tracking_uri, ctx.service_account, ctx.data_root),
        args=list(training.command),
        restart="Never",
    )
    container = pod["containers"][0]
    container["command"] = container.pop("args")
    mine = {e["name"] for e in container["env"]}
    container["env"] += [{"name": k, "value": v} for k, v in sorted(env.items()) if k not in mine]
    meta = _meta(owner, training_job_name(owner.name, trigger, key, attempt), "training")
    meta["annotations"] = {
        "mlgitops.io/code-commit": commit,
        "mlgitops.io/trigger": trigger,
        "mlgitops.io/trigger-key": key,
        "mlgitops.io/attempt": str(attempt),
    }
    return _job(owner, "training", meta, pod, timeout)


def _job(owner: Owner, component: str, meta: Obj, pod: Obj, timeout: float) -> Obj:
    """A Job that runs once: ended at ``timeout``, never retried by Kubernetes (a retry is the
    controller's decision), deleted a week after it finished, with its pod's log."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta,
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": max(1, int(timeout)),
            "ttlSecondsAfterFinished": JOB_TTL_SECONDS,
            "template": {"metadata": {"labels": _labels(owner, component)}, "spec": pod},
        },
    }


VALIDATION_TIMEOUT_SECONDS = 3600


def validation_job_name(owner: str, model: str, version: str) -> str:
    """The Job that validates ``version`` of registered model ``model``: the same version always
    names the same Job, so a restarted operator (or a second one) finds it rather than making
    another. The model is in the hash because a ModelDeployment may change its model."""
    digest = hashlib.sha256(f"{model}/{version}".encode()).hexdigest()[:8]
    return child_name(owner, f"validate-v{version}-{digest}")


def render_validation_job(
    owner: Owner,
    ctx: RenderContext,
    *,
    model: str,
    version: str,
    args: list[str],
    env: dict[str, str] | None = None,
    timeout: float = VALIDATION_TIMEOUT_SECONDS,
) -> Obj:
    """The Job that runs ``mlgitops <args>`` (``pipeline.validation.validation_args``: the
    validation section travels as JSON) for one version, in the operator's image (as the batch
    and monitoring CronJobs). The registry and the data root reach it as every job's do
    (``MLFLOW_TRACKING_URI``, ``MLGITOPS_DATA_ROOT``), credentials by Secret reference only.
    Kubernetes ends it at ``timeout`` and never retries it (backoffLimit 0: ``validate-model``
    keeps one result per version, and a validation that ended without one is reported, not
    looped); it is deleted a week after it finished, with its pod's log."""
    mine = {e["name"] for e in _env(ctx)}
    extra = [{"name": k, "value": v} for k, v in sorted((env or {}).items()) if k not in mine]
    pod = _pod(ctx, args=list(args), restart="Never", env=extra)
    meta = _meta(owner, validation_job_name(owner.name, model, version), "validation")
    meta["annotations"] = {"mlgitops.io/registered-model": model, "mlgitops.io/version": version}
    return _job(owner, "validation", meta, pod, timeout)


def render_children(
    owner: Owner, spec: ModelDeploymentSpec, model: str, ctx: RenderContext
) -> list[Obj]:
    """Every long-lived child of one ModelDeployment, in apply order."""
    return [
        *render_serving(owner, spec, model, ctx),
        *render_batch(owner, spec, model, ctx),
        *render_monitor(owner, spec, model, ctx),
    ]


def contains(desired: Any, live: Any) -> bool:
    """True when every field of ``desired`` is present with the same value in ``live``.

    The drift check of every apply: the API server adds defaults and other managers' fields,
    which do not count as drift. Lists must match item by item (same length), as server-side
    apply replaces atomic lists.
    """
    if isinstance(desired, dict):
        return isinstance(live, dict) and all(
            k in live and contains(v, live[k]) for k, v in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(live, list)
            and len(desired) == len(live)
            and all(contains(d, x) for d, x in zip(desired, live, strict=True))
        )
    if isinstance(desired, (int, float)) and isinstance(live, str):
        return str(desired) == live
    return bool(desired == live)
