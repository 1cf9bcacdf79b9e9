"""Custom resources against their CRD's schema: pruning, defaulting and 422s, as kube-apiserver.

The expected messages are the API server's own (v1.36); ``test_conformance.py`` checks a sample of
them against a real one.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import yaml

from tests.k8s import structural
from tests.k8s.fixtures import Cluster
from tests.k8s.test_emulator import APPLY, CRD_DIR, JSON_PATCH, MERGE_PATCH, Api

DEPLOYMENTS = "/apis/mlgitops.io/v1alpha1/namespaces/default/modeldeployments"
INVALID = 'ModelDeployment.mlgitops.io "{name}" is invalid: {errors}'


@pytest.fixture
async def api(k8s: Cluster) -> AsyncIterator[Api]:
    for path in sorted(CRD_DIR.glob("mlgitops.io_*.yaml")):
        k8s.emulator.add_crd(yaml.safe_load(path.read_text()))
    async with aiohttp.ClientSession(base_url=k8s.url) as session:
        yield Api(session)


def deployment(name: str = "d", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "mlgitops.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {"model": "fraud.detector", **spec},
    }


@pytest.mark.parametrize(
    ("spec", "field", "reason", "error"),
    [
        (
            {"serving": {"replicas": "two"}},
            "spec.serving.replicas",
            "FieldValueTypeInvalid",
            'Invalid value: "string": spec.serving.replicas in body must be of type integer:'
            ' "string"',
        ),
        (
            {"promotion": {"policy": "sometimes"}},
            "spec.promotion.policy",
            "FieldValueNotSupported",
            'Unsupported value: "sometimes": supported values: "auto", "manual", "disabled"',
        ),
        (
            {"model": "nodot"},
            "spec.model",
            "FieldValueInvalid",
            'Invalid value: "nodot": spec.model in body should match \'^[A-Za-z0-9_\\-]+\\.'
            "[A-Za-z0-9_\\-]+(\\.[A-Za-z0-9_\\-]+)?$'",
        ),
        (
            {"serving": {"replicas": -1}},
            "spec.serving.replicas",
            "FieldValueInvalid",
            "Invalid value: -1: spec.serving.replicas in body should be greater than or equal to 0",
        ),
        (
            {"serving": {"replicas": 101}},
            "spec.serving.replicas",
            "FieldValueInvalid",
            "Invalid value: 101: spec.serving.replicas in body should be less than or equal to 100",
        ),
        ({"champion": {}}, "spec.champion.version", "FieldValueRequired", "Required value"),
        (
            {"champion": {"version": "v2"}},  # int-or-string: the pattern applies to strings
            "spec.champion.version",
            "FieldValueInvalid",
            "Invalid value: \"v2\": spec.champion.version in body should match '^[1-9][0-9]*$'",
        ),
        (
            {"champion": {"version": 0}},  # ... and minimum to integers
            "spec.champion.version",
            "FieldValueInvalid",
            "Invalid value: 0: spec.champion.version in body should be greater than or equal to 1",
        ),
        (
            {"champion": {"version": 1.5}},
            "spec.champion.version",
            "FieldValueTypeInvalid",
            'Invalid value: "number": spec.champion.version in body must be of type'
            ' integer,string: "number"',
        ),
        (
            {"validation": {"data": {"uri": "prod/f/holdout", "target": ""}}},
            "spec.validation.data.target",
            "FieldValueInvalid",
            'Invalid value: "": spec.validation.data.target in body should be at least 1 chars'
            " long",
        ),
        (
            {"training": {"source": {"repo": "r"}, "command": []}},
            "spec.training.command",
            "FieldValueInvalid",
            "Invalid value: 0: spec.training.command in body should have at least 1 items",
        ),
        (
            {
                "monitoring": {
                    "schedule": "@daily",
                    "baseline": "prod/f/base",
                    "drift": {"threshold": 0},
                }
            },
            "spec.monitoring.drift.threshold",
            "FieldValueInvalid",
            "Invalid value: 0: spec.monitoring.drift.threshold in body should be greater than 0",
        ),
    ],
)
async def test_a_schema_violation_is_a_422_naming_the_field(
    api: Api, spec: dict[str, Any], field: str, reason: str, error: str
) -> None:
    status, body = await api("POST", DEPLOYMENTS, deployment(**spec))
    assert (status, body["reason"]) == (422, "Invalid")
    assert body["message"] == INVALID.format(name="d", errors=f"{field}: {error}")
    assert body["details"] == {
        "name": "d",
        "group": "mlgitops.io",
        "kind": "ModelDeployment",
        "causes": [{"reason": reason, "message": error, "field": field}],
    }


async def test_every_write_is_validated(api: Api) -> None:
    """Create, update, merge and JSON patches, apply, the status: each error names its field."""
    status, body = await api("POST", DEPLOYMENTS, {**deployment(), "spec": {}})
    assert body["message"] == INVALID.format(name="d", errors="spec.model: Required value")
    many = deployment(serving={"replicas": "x", "enabled": "y"})
    status, body = await api("POST", DEPLOYMENTS, many)
    fields = sorted(c["field"] for c in body["details"]["causes"])
    assert fields == ["spec.serving.enabled", "spec.serving.replicas"]
    assert body["message"].startswith('ModelDeployment.mlgitops.io "d" is invalid: [spec.serving.')

    created = await api.ok("POST", DEPLOYMENTS, deployment(champion={"version": 3}))
    replicas = "spec.serving.replicas: Invalid value: 500: spec.serving.replicas in body should"
    bad = {"spec": {"serving": {"replicas": 500}}}
    for method, body_, ctype, params in [
        (
            "PUT",
            {**created, **bad, "spec": {**created["spec"], **bad["spec"]}},
            "application/json",
            {},
        ),
        ("PATCH", bad, MERGE_PATCH, {}),
        (
            "PATCH",
            [{"op": "add", "path": "/spec/serving", "value": {"replicas": 500}}],
            JSON_PATCH,
            {},
        ),
        ("PATCH", deployment(serving={"replicas": 500}), APPLY, {"fieldManager": "t"}),
    ]:
        status, body = await api(method, f"{DEPLOYMENTS}/d", body_, ctype=ctype, **params)
        assert (status, body["reason"]) == (422, "Invalid"), (method, ctype)
        assert replicas in body["message"]

    # The status subresource validates the status alone; its messages name the path inside it.
    condition = {"type": "Ready", "status": "Maybe", "reason": "A", "lastTransitionTime": "t"}
    status, body = await api(
        "PATCH",
        f"{DEPLOYMENTS}/d/status",
        {"status": {"conditions": [condition]}},
        ctype=MERGE_PATCH,
    )
    assert body["details"]["causes"] == [
        {
            "reason": "FieldValueNotSupported",
            "message": 'Unsupported value: "Maybe": supported values: "True", "False", "Unknown"',
            "field": "status.conditions[0].status",
        }
    ]
    twice = [{**condition, "status": "True"}, {**condition, "status": "True", "reason": "B"}]
    status, body = await api(
        "PATCH", f"{DEPLOYMENTS}/d/status", {"status": {"conditions": twice}}, ctype=MERGE_PATCH
    )
    assert body["message"] == INVALID.format(
        name="d", errors='status.conditions[1]: Duplicate value: {"type":"Ready"}'
    )
    assert (await api.ok("GET", f"{DEPLOYMENTS}/d"))["metadata"]["resourceVersion"] == (
        created["metadata"]["resourceVersion"]
    )


async def test_unknown_fields_are_pruned_warned_or_refused(api: Api) -> None:
    extra = {**deployment("w", bogus=1), "extra": 1}
    async with api.session.post(DEPLOYMENTS, json=extra) as response:  # fieldValidation=Warn
        assert response.status == 201
        created = await response.json()
        assert response.headers.getall("Warning") == [
            '299 - "unknown field \\"extra\\""',
            '299 - "unknown field \\"spec.bogus\\""',
        ]
    assert created["spec"] == {"model": "fraud.detector"}
    assert "extra" not in created
    ignored = await api.ok("POST", DEPLOYMENTS, deployment("i", bogus=1), fieldValidation="Ignore")
    assert ignored["spec"] == {"model": "fraud.detector"}

    strict = deployment("s", bogus=1, serving={"nope": 1})
    status, body = await api("POST", DEPLOYMENTS, strict, fieldValidation="Strict")
    assert (status, body["reason"]) == (400, "BadRequest")
    assert body["message"] == (
        'ModelDeployment in version "v1alpha1" cannot be handled as a ModelDeployment: strict'
        ' decoding error: unknown field "spec.bogus", unknown field "spec.serving.nope"'
    )
    status, body = await api(
        "PATCH",
        f"{DEPLOYMENTS}/w",
        {"spec": {"bogus": 2}},
        ctype=MERGE_PATCH,
        fieldValidation="Strict",
    )
    assert (status, body["reason"], body["details"]["causes"][0]["field"]) == (
        422,
        "Invalid",
        "patch",
    )
    assert body["message"].startswith(' "" is invalid: patch: Invalid value: "{')
    assert '\\"bogus\\":2' in body["message"]  # the patched object, as it was sent
    assert body["message"].endswith('": strict decoding error: unknown field "spec.bogus"')
    # Server-side apply refuses an undeclared field outright, whatever fieldValidation says.
    status, body = await api(
        "PATCH", f"{DEPLOYMENTS}/w", deployment("w", bogus=1), ctype=APPLY, fieldManager="t"
    )
    assert status == 500
    assert body["message"] == (
        "failed to create typed patch object (/w; mlgitops.io/v1alpha1, Kind=ModelDeployment):"
        " .spec.bogus: field not declared in schema"
    )


async def test_defaults_and_nulls_as_the_api_server_stores_them(api: Api) -> None:
    spec = {
        "serving": {"replicas": None},  # a non-nullable null with a default: the default
        "champion": None,  # nullable: kept
        "monitoring": {"schedule": "@daily", "baseline": "prod/f/base", "drift": {}},
    }
    created = await api.ok("POST", DEPLOYMENTS, deployment(**spec))
    assert created["spec"] == {
        "model": "fraud.detector",
        "serving": {"replicas": 1, "enabled": True},
        "champion": None,
        "monitoring": {
            "schedule": "@daily",
            "baseline": "prod/f/base",
            "lookback": 3,
            "drift": {"method": "psi", "threshold": 0.2},
        },
    }
    floats = await api.ok("POST", DEPLOYMENTS, deployment("f", serving={"replicas": 3.0}))
    assert json.dumps(floats["spec"]["serving"]["replicas"]) == "3"  # as Go writes it back


async def test_an_update_may_keep_what_a_newer_schema_refuses(k8s: Cluster, api: Api) -> None:
    """Ratcheting: only what an update changes is validated again."""
    await api.ok("POST", DEPLOYMENTS, deployment(serving={"replicas": 50}))
    crd = yaml.safe_load((CRD_DIR / "mlgitops.io_modeldeployments.yaml").read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    schema["properties"]["spec"]["properties"]["serving"]["properties"]["replicas"]["maximum"] = 10
    k8s.emulator.add_crd(crd)
    labelled = {"metadata": {"labels": {"a": "b"}}}
    await api.ok("PATCH", f"{DEPLOYMENTS}/d", labelled, ctype=MERGE_PATCH)
    status, _ = await api(
        "PATCH", f"{DEPLOYMENTS}/d", {"spec": {"serving": {"replicas": 60}}}, ctype=MERGE_PATCH
    )
    assert status == 422


def test_go_formats_values_as_the_api_server_prints_them() -> None:
    cases = [(0.5, "0.5"), (100.0, "100"), (1e6, "1e+06"), (123456.0, "123456"), (1e-5, "1e-05")]
    assert [structural.go_float(v) for v, _ in cases] == [text for _, text in cases]
    assert structural.go_value('a"b') == '"a\\"b"'
    assert structural.go_value({"b": 1, "a": "<"}) == '{"a":"\\u003c","b":1}'


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        (
            {"serving": {"replicas": "two"}},
            ".spec.serving.replicas: expected numeric (int or float), got string",
        ),
        ({"serving": {"enabled": "y"}}, ".spec.serving.enabled: expected boolean, got &{y}"),
        ({"training": {"command": "x"}}, ".spec.training.command: expected list, got &{x}"),
        ({"serving": "x"}, ".spec.serving: expected map, got &{x}"),
        ({"model": 5}, ".spec.model: expected string, got &value.valueUnstructured{Value:5}"),
        (
            {"serving": {"enabled": {"a": [1, "x"]}}},
            ".spec.serving.enabled: expected boolean, got &{map[a:[1 x]]}",
        ),
        (
            {"model": {"a": 1}},
            ".spec.model: expected string, got"
            ' &value.valueUnstructured{Value:map[string]interface {}{"a":1}}',
        ),
        (
            {"serving": {"replicas": "x", "enabled": "y"}},
            "errors:\n  .spec.serving.enabled: expected boolean, got &{y}\n"
            "  .spec.serving.replicas: expected numeric (int or float), got string",
        ),
    ],
)
async def test_server_side_apply_checks_types_first(
    api: Api, spec: dict[str, Any], error: str
) -> None:
    """structured-merge-diff refuses an apply configuration of the wrong shape with a 500."""
    status, body = await api(
        "PATCH", f"{DEPLOYMENTS}/d", deployment(**spec), ctype=APPLY, fieldManager="t"
    )
    assert (status, "reason" in body) == (500, False)
    prefix = "failed to create typed patch object (/d; mlgitops.io/v1alpha1, Kind=ModelDeployment)"
    assert body["message"] == f"{prefix}: {error}"
