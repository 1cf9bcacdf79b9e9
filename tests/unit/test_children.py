"""Rendered children: deterministic, labelled, owned, valid against the official Kubernetes schemas."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from controller.api.documents import ModelDeployment
from controller.pipeline.validation import validation_args
from controller.planning.children import (
    CRONJOB_NAME_MAX,
    MANAGED_BY,
    MD_LABEL,
    Owner,
    RenderContext,
    child_name,
    job_container,
    render_children,
    render_training_job,
    render_validation_job,
    validation_job_name,
)
from tests.helpers import python_output, reorder_keys

PROJECT = Path(__file__).resolve().parents[2]
CTX = RenderContext(
    environment="prod",
    image="ghcr.io/mlgitops/mlgitops:0.1.0",
    tracking_uri="http://mlflow.ml-prod:5000",
)
OWNER = Owner("fraud-detector", "0b9f3c1e-5b7a-4d8e-9c2f-1a2b3c4d5e6f", "ml-prod")


def example(name: str = "fraud-detector") -> ModelDeployment:
    data = yaml.safe_load((PROJECT / "environments/prod" / f"{name}.yaml").read_text())
    return ModelDeployment.model_validate(data)


def render(md: ModelDeployment | None = None) -> list[dict[str, Any]]:
    md = md or example()
    return render_children(OWNER, md.spec, f"prod.{md.spec.model}", CTX)


def test_every_child_validates_against_kubernetes_1_37() -> None:
    objs = render()
    job = training_job(example().spec, "4f2a9c1d3e5b7a9c1d3e5b7a9c1d3e5b7a9c1d3e")
    assert job is not None
    for obj in [*objs, job]:
        kubernetes_validate.validate(obj, "1.37", strict=True)
    assert [o["kind"] for o in objs] == ["Deployment", "Service", "CronJob", "CronJob"]


def examples() -> dict[str, Any]:
    """Every ModelDeployment under environments/, as parsed YAML: ``<env>/<file>`` -> data."""
    found = {}
    for path in sorted(PROJECT.glob("environments/*/*.yaml")):
        data = yaml.safe_load(path.read_text())
        if data["kind"] == "ModelDeployment":
            found[f"{path.parent.name}/{path.stem}"] = data
    return found


def rendered(data: dict[str, Any]) -> str:
    """The children and a training Job of one ModelDeployment, as JSON text (key order too)."""
    spec = ModelDeployment.model_validate(data).spec
    model = f"prod.{spec.model}"
    job = training_job(spec, "4f2a9c1d3e5b" * 3 + "7a9c")
    return json.dumps([*render_children(OWNER, spec, model, CTX), job])


def rendered_examples() -> dict[str, str]:
    return {name: rendered(data) for name, data in examples().items()}


@pytest.mark.parametrize("hash_seed", [0, 123])
def test_rendering_is_the_same_in_a_fresh_process_with_another_hash_seed(hash_seed: int) -> None:
    code = (
        "import json; from tests.unit.test_children import rendered_examples as r; "
        "print(json.dumps(r()))"
    )
    expected = rendered_examples()
    assert len(expected) >= 6
    assert json.loads(python_output(code, hash_seed=hash_seed)) == expected


def test_rendering_ignores_the_key_order_of_the_spec() -> None:
    rng = random.Random(1234)
    for name, data in examples().items():
        expected = rendered(data)
        for run in range(25):
            assert rendered(reorder_keys(rng, data)) == expected, (name, run)


def test_labels_owner_and_names() -> None:
    first = render()
    for obj in first:
        meta = obj["metadata"]
        assert meta["labels"][MANAGED_BY] == "mlgitops"
        assert meta["labels"][MD_LABEL] == "fraud-detector"
        assert meta["namespace"] == "ml-prod"
        [ref] = meta["ownerReferences"]
        assert (ref["kind"], ref["name"], ref["uid"], ref["controller"]) == (
            "ModelDeployment",
            "fraud-detector",
            OWNER.uid,
            True,
        )
    names = [o["metadata"]["name"] for o in first]
    assert names == [
        "fraud-detector-serving",
        "fraud-detector-serving",
        "fraud-detector-batch",
        "fraud-detector-monitor",
    ]


def test_serving_pins_versions_in_the_pod_template_and_never_drops_capacity() -> None:
    deployment = render()[0]
    spec = deployment["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    template = spec["template"]
    notes = template["metadata"]["annotations"]
    assert notes == {
        "mlgitops.io/champion": "2",
        "mlgitops.io/challenger": "3",
        "mlgitops.io/challenger-traffic": "10",
    }
    [container] = template["spec"]["containers"]
    assert container["args"] == [
        "serve",
        "--champion",
        "models:/prod.fraud.fraud_detector/2",
        "--host",
        "0.0.0.0",  # a pod's address: the Service and the probes reach it (default: loopback)
        "--port",
        "8000",
        "--challenger",
        "models:/prod.fraud.fraud_detector/3",
        "--challenger-traffic",
        "10",
    ]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ping"
    assert container["securityContext"]["runAsNonRoot"] is True
    # A champion change changes the pod template, so Kubernetes rolls it out.
    md = example()
    promoted = md.model_copy(
        update={
            "spec": md.spec.model_copy(
                update={
                    "champion": md.spec.challenger,
                    "challenger": None,
                    "serving": md.spec.serving.model_copy(
                        update={
                            "traffic": md.spec.serving.traffic.model_copy(update={"challenger": 0})
                        }
                    ),
                }
            )
        }
    )
    after = render(promoted)[0]["spec"]["template"]
    assert after != template
    assert after["metadata"]["annotations"]["mlgitops.io/champion"] == "3"


def test_serving_replicas_log_to_the_declared_inference_table_under_the_data_root() -> None:
    md = example()
    assert (
        "--inference-log" not in render(md)[0]["spec"]["template"]["spec"]["containers"][0]["args"]
    )
    data = yaml.safe_load((PROJECT / "environments/prod/fraud-detector.yaml").read_text())
    data["spec"]["serving"]["inferenceTable"] = "prod/fraud/inference"
    logged = ModelDeployment.model_validate(data)
    lake = RenderContext("prod", CTX.image, CTX.tracking_uri, data_root="s3://lake/prod")
    deployment = render_children(OWNER, logged.spec, "prod.fraud.fraud_detector", lake)[0]
    kubernetes_validate.validate(deployment, "1.37", strict=True)
    template = deployment["spec"]["template"]
    [container] = template["spec"]["containers"]
    args = container["args"]
    # The name, not a URI: the replica resolves it under MLGITOPS_DATA_ROOT, as the batch job.
    assert args[args.index("--inference-log") + 1] == "prod/fraud/inference"
    assert {"name": "MLGITOPS_DATA_ROOT", "value": "s3://lake/prod"} in container["env"]
    # Declaring (or changing) the table changes the pod template: Kubernetes rolls it out.
    before = render_children(OWNER, md.spec, "prod.fraud.fraud_detector", lake)[0]
    assert before["spec"]["template"] != template


def test_monitor_compares_the_batch_output_with_the_baseline() -> None:
    [monitor] = [o for o in render() if o["metadata"]["name"] == "fraud-detector-monitor"]
    args = job_container(monitor)["args"]
    assert args == [
        "monitor",
        "--model",
        "models:/prod.fraud.fraud_detector@champion",
        "--baseline",
        "prod/fraud/training_baseline",
        "--method",
        "psi",
        "--threshold",
        "0.2",
        "--current",
        "prod/fraud/scores_daily",
        "--lookback",
        "3",
        "--retrain-violations",
        "2",
        "--retrain-windows",
        "5",
    ]
    assert monitor["spec"]["schedule"] == "0 8 * * *"


def _monitor_args(data: dict[str, Any]) -> list[str]:
    """The args of the monitoring CronJob rendered from ModelDeployment ``data``."""
    [monitor] = [
        o
        for o in render(ModelDeployment.model_validate(data))
        if o["metadata"]["name"] == "fraud-detector-monitor"
    ]
    return list(job_container(monitor)["args"])


def test_a_monitor_of_the_inference_table_reads_the_table_the_replicas_write() -> None:
    data = yaml.safe_load((PROJECT / "environments/prod/fraud-detector.yaml").read_text())
    data["spec"]["serving"]["inferenceTable"] = "prod/fraud/inference"
    data["spec"]["monitoring"]["input"] = "inference"
    args = _monitor_args(data)
    assert args[args.index("--current") + 1 : args.index("--current") + 4] == [
        "prod/fraud/inference",
        "--source",
        "inference",
    ]
    # Omitted, the input is the batch output when there is batch inference...
    del data["spec"]["monitoring"]["input"]
    args = _monitor_args(data)
    assert args[args.index("--current") + 1] == "prod/fraud/scores_daily"
    assert "--source" not in args
    # ... else the inference table.
    del data["spec"]["batchInference"]
    args = _monitor_args(data)
    assert args[args.index("--current") + 1 : args.index("--current") + 4] == [
        "prod/fraud/inference",
        "--source",
        "inference",
    ]


def test_batch_loads_champion_at_run_time() -> None:
    batch = render()[2]
    args = job_container(batch)["args"]
    assert args[:3] == ["batch", "--model", "models:/prod.fraud.fraud_detector@champion"]
    assert batch["spec"]["schedule"] == "0 11 * * *"
    assert batch["spec"]["concurrencyPolicy"] == "Forbid"
    env = {e["name"]: e for e in job_container(batch)["env"]}
    # A retried pod of one Job gets the same batch id, so it replaces, not repeats, the batch.
    assert env["MLGITOPS_BATCH_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == (
        "metadata.labels['batch.kubernetes.io/job-name']"
    )
    assert "MLGITOPS_DATA_ROOT" not in env
    lake = RenderContext("prod", CTX.image, CTX.tracking_uri, data_root="s3://lake/prod")
    md = example()
    [with_root] = [
        o
        for o in render_children(OWNER, md.spec, "prod.fraud.fraud_detector", lake)
        if o["metadata"]["name"] == "fraud-detector-batch"
    ]
    env = job_container(with_root)["env"]
    assert {"name": "MLGITOPS_DATA_ROOT", "value": "s3://lake/prod"} in env


def test_optional_children_follow_the_spec() -> None:
    md = example("churn-predictor")
    kinds = [o["kind"] for o in render(md)]
    assert kinds == ["Deployment", "Service", "CronJob", "CronJob"]
    off = md.model_copy(
        update={
            "spec": md.spec.model_copy(
                update={
                    "serving": md.spec.serving.model_copy(update={"enabled": False}),
                    "monitoring": None,
                }
            )
        }
    )
    assert [o["metadata"]["name"] for o in render(off)] == ["fraud-detector-batch"]  # OWNER's name


def training_job(spec: Any, commit: str, *, attempt: int = 1) -> dict[str, Any] | None:
    env = {"MLFLOW_RUN_ID": "r1", "MLGITOPS_CODE_COMMIT": commit, "MLFLOW_TRACKING_URI": "x"}
    return render_training_job(
        OWNER,
        spec,
        CTX,
        trigger="commit",
        key=commit,
        attempt=attempt,
        commit=commit,
        env=env,
        timeout=7200,
    )


def test_training_job_is_named_by_its_key_and_runs_the_commits_image() -> None:
    commit = "4f2a9c1d3e5b7a9c1d3e5b7a9c1d3e5b7a9c1d3e"
    job = training_job(example().spec, commit)
    assert job is not None
    assert job["metadata"]["name"] == training_job(example().spec, commit)["metadata"]["name"]  # type: ignore[index]
    assert job["metadata"]["name"].startswith("fraud-detector-train-")
    again = training_job(example().spec, commit, attempt=2)
    assert again is not None
    assert again["metadata"]["name"] != job["metadata"]["name"]  # an attempt is a Job of its own
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == f"registry.example.com/fraud-train:{commit}"
    assert container["command"] == ["python", "train.py"]
    env = {e["name"]: e for e in container["env"]}
    assert env["MLFLOW_RUN_ID"] == {"name": "MLFLOW_RUN_ID", "value": "r1"}
    assert env["MLFLOW_TRACKING_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "mlgitops-mlflow"
    assert [e["name"] for e in container["env"]].count("MLFLOW_TRACKING_URI") == 1
    assert (job["spec"]["backoffLimit"], job["spec"]["activeDeadlineSeconds"]) == (0, 7200)
    assert job["spec"]["ttlSecondsAfterFinished"] > 0


def validation_job(version: str = "7", model: str = "prod.fraud.fraud_detector") -> dict[str, Any]:
    spec = example().spec.validation
    assert spec is not None
    args = validation_args(
        name="fraud-detector", model=model, version=version, environment="prod", spec=spec
    )
    ctx = RenderContext("prod", CTX.image, CTX.tracking_uri, data_root="s3://lake/prod")
    return render_validation_job(OWNER, ctx, model=model, version=version, args=args, timeout=3600)


def test_validation_job_runs_validate_model_in_the_operators_image_once_per_version() -> None:
    job = validation_job()
    kubernetes_validate.validate(job, "1.37", strict=True)
    name = job["metadata"]["name"]
    assert name == validation_job()["metadata"]["name"]  # a restarted operator finds it
    assert name == validation_job_name("fraud-detector", "prod.fraud.fraud_detector", "7")
    assert name.startswith("fraud-detector-validate-v7-")
    assert validation_job("8")["metadata"]["name"] != name
    assert validation_job(model="prod.fraud.other")["metadata"]["name"] != name
    labels = job["metadata"]["labels"]
    assert (labels[MANAGED_BY], labels[MD_LABEL]) == ("mlgitops", "fraud-detector")
    assert job["metadata"]["ownerReferences"][0]["uid"] == OWNER.uid
    assert job["metadata"]["annotations"]["mlgitops.io/version"] == "7"
    spec = job["spec"]
    assert (spec["backoffLimit"], spec["activeDeadlineSeconds"]) == (0, 3600)
    assert spec["ttlSecondsAfterFinished"] > 0
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    [container] = pod["containers"]
    assert container["image"] == CTX.image
    args = container["args"]
    assert args[:4] == ["validate-model", "fraud-detector", "--version", "7"]
    assert args[args.index("--model") + 1] == "prod.fraud.fraud_detector"
    assert json.loads(args[args.index("--spec-json") + 1])["data"]["target"] == "label"
    assert "--tracking-uri" not in args  # MLFLOW_TRACKING_URI, as every job gets it
    assert "--data-root" not in args  # MLGITOPS_DATA_ROOT
    env = {e["name"]: e for e in container["env"]}
    assert env["MLFLOW_TRACKING_URI"]["value"] == CTX.tracking_uri
    assert env["MLGITOPS_DATA_ROOT"]["value"] == "s3://lake/prod"
    assert "value" not in env["MLFLOW_TRACKING_TOKEN"]
    assert env["MLFLOW_TRACKING_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "mlgitops-mlflow"


@pytest.mark.parametrize("owner", ["a" * 63, "model-" + "x" * 50])
def test_long_names_are_shortened_deterministically(owner: str) -> None:
    name = child_name(owner, "monitor", limit=CRONJOB_NAME_MAX)
    assert len(name) <= CRONJOB_NAME_MAX
    assert name.endswith("-monitor")
    assert name == child_name(owner, "monitor", limit=CRONJOB_NAME_MAX)
    assert name != child_name(owner + "b", "monitor", limit=CRONJOB_NAME_MAX)


def test_pods_get_credentials_only_from_secret_references() -> None:
    for obj in render():
        if obj["kind"] == "Service":
            continue
        spec = obj["spec"]
        pod = spec["template"]["spec"] if "template" in spec else spec["jobTemplate"]["spec"]
        pod = pod if "containers" in pod else pod["template"]["spec"]
        env = {e["name"]: e for e in pod["containers"][0]["env"]}
        for name, key in (
            ("MLFLOW_TRACKING_TOKEN", "token"),
            ("MLFLOW_TRACKING_USERNAME", "username"),
            ("MLFLOW_TRACKING_PASSWORD", "password"),
        ):
            assert "value" not in env[name]
            assert env[name]["valueFrom"]["secretKeyRef"] == {
                "name": "mlgitops-mlflow",
                "key": key,
                "optional": True,
            }
