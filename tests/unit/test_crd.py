"""The generated CRDs: fresh, accepted by Kubernetes' own schema, structural, and enforcing."""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from pydantic import BaseModel

from controller.api.crd import (
    HEADER,
    KUSTOMIZATION,
    SchemaError,
    main,
    openapi_schema,
    render_crds,
    render_manifests,
    to_jsonschema,
)
from controller.api.documents import ModelDeploymentSpec
from controller.api.status import Condition, HistoryEntry, ModelDeploymentStatus, VersionStatus
from tests.helpers import python_output, reorder_keys

ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = ROOT / "manifests" / "crds"
# The newest Kubernetes release whose schemas kubernetes-validate 1.37.0 ships.
KUBERNETES = "1.37"
MD_FILE = "mlgitops.io_modeldeployments.yaml"
ENV_FILE = "mlgitops.io_environments.yaml"


def _version(crd: dict[str, Any]) -> dict[str, Any]:
    [version] = crd["spec"]["versions"]
    return dict(version)


def _schema(kind_file: str) -> dict[str, Any]:
    return dict(_version(render_crds()[kind_file])["schema"]["openAPIV3Schema"])


def _deployment(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "mlgitops.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "fraud-detector"},
        "spec": {"model": "fraud.fraud_detector", **spec},
    }


# --- checked in and fresh ------------------------------------------------------------------


def test_checked_in_crds_equal_a_fresh_render() -> None:
    expected = render_manifests()
    on_disk = {p.name: p.read_text(encoding="utf-8") for p in sorted(CRD_DIR.glob("*.yaml"))}
    assert sorted(on_disk) == sorted(expected), "manifests/crds is stale: run make manifests"
    for name, text in expected.items():
        assert on_disk[name] == text, f"manifests/crds/{name} is stale: run make manifests"


def test_checked_in_files_parse_back_to_the_rendered_objects() -> None:
    crds = render_crds()
    for name, crd in crds.items():
        text = (CRD_DIR / name).read_text(encoding="utf-8")
        assert text.startswith(HEADER)
        assert yaml.safe_load(text) == crd
    kustomization = yaml.safe_load((CRD_DIR / KUSTOMIZATION).read_text(encoding="utf-8"))
    assert kustomization["kind"] == "Kustomization"
    assert kustomization["resources"] == sorted(crds)


@pytest.mark.parametrize("hash_seed", [0, 123])
def test_render_is_the_same_in_a_fresh_process_with_another_hash_seed(hash_seed: int) -> None:
    code = (
        "import json; from controller.api.crd import render_manifests as r; print(json.dumps(r()))"
    )
    assert json.loads(python_output(code, hash_seed=hash_seed)) == render_manifests()


def test_render_ignores_the_key_order_of_the_models_json_schemas(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every mapping pydantic hands over, in another order, gives the same files: the translation
    builds no list (``required``, ``enum``, printer columns) in the order of a mapping's keys."""
    expected = render_manifests()
    original = BaseModel.__dict__["model_json_schema"].__func__
    rng = random.Random(77)

    def shuffled(cls: type[BaseModel], *args: Any, **kwargs: Any) -> dict[str, Any]:
        return dict(reorder_keys(rng, original(cls, *args, **kwargs)))

    monkeypatch.setattr(BaseModel, "model_json_schema", classmethod(shuffled))
    for run in range(20):
        assert render_manifests() == expected, run


def test_check_mode_passes_on_fresh_files_and_names_the_stale_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(render_manifests())
    assert main(["--check", str(tmp_path)]) == 0
    capsys.readouterr()

    stale = tmp_path / MD_FILE
    stale.write_text(stale.read_text(encoding="utf-8").replace("mldeploy", "mldep"))
    assert main(["--check", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert f"{stale} is stale" in err
    assert "make manifests" in err
    assert ENV_FILE not in err

    stale.unlink()
    assert main(["--check", str(tmp_path)]) == 1
    assert f"{stale} is missing" in capsys.readouterr().err

    assert main([str(tmp_path)]) == 0
    assert main(["--check", str(tmp_path)]) == 0


def test_write_mode_removes_crds_it_no_longer_generates_but_nothing_else(tmp_path: Path) -> None:
    leftover = tmp_path / "mlgitops.io_oldkinds.yaml"
    leftover.write_text(HEADER + "kind: CustomResourceDefinition\n")
    handwritten = tmp_path / "notes.yaml"
    handwritten.write_text("kind: ConfigMap\n")
    assert main(["--check", str(tmp_path)]) == 1
    assert main([str(tmp_path)]) == 0
    assert not leftover.exists()
    assert handwritten.exists()


# --- accepted by Kubernetes --------------------------------------------------------------------


@pytest.mark.parametrize("name", [ENV_FILE, MD_FILE])
def test_crd_validates_against_the_official_kubernetes_schema(name: str) -> None:
    crd = render_crds()[name]
    assert kubernetes_validate.validate(crd, KUBERNETES, strict=True) == KUBERNETES


def test_official_schema_check_has_teeth() -> None:
    # What pydantic emits but Kubernetes rejects: a numeric exclusiveMinimum and `const`.
    crd = copy.deepcopy(render_crds()[MD_FILE])
    spec = _version(crd)["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec["properties"]["serving"]["properties"]["replicas"]["exclusiveMinimum"] = 0
    with pytest.raises(kubernetes_validate.ValidationError, match="boolean"):
        kubernetes_validate.validate(crd, KUBERNETES, strict=True)

    crd = copy.deepcopy(render_crds()[MD_FILE])
    spec = _version(crd)["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec["properties"]["model"]["const"] = "fraud.fraud_detector"
    with pytest.raises(kubernetes_validate.ValidationError, match="const"):
        kubernetes_validate.validate(crd, KUBERNETES, strict=True)


# --- names, scope, columns ---------------------------------------------------------------------


def test_model_deployment_crd_names_and_columns() -> None:
    crd = render_crds()[MD_FILE]
    assert crd["metadata"]["name"] == "modeldeployments.mlgitops.io"
    spec = crd["spec"]
    assert spec["group"] == "mlgitops.io"
    assert spec["scope"] == "Namespaced"
    names = spec["names"]
    assert (names["kind"], names["plural"], names["singular"]) == (
        "ModelDeployment",
        "modeldeployments",
        "modeldeployment",
    )
    assert names["shortNames"] == ["md", "mld", "mldeploy"]  # kubectl get md
    assert names["categories"] == ["mlgitops"]
    version = _version(crd)
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}
    columns = [(c["name"], c["type"], c["jsonPath"]) for c in version["additionalPrinterColumns"]]
    assert columns == [
        ("Champion", "string", ".spec.champion.version"),
        ("Challenger", "string", ".spec.challenger.version"),
        ("Ready", "string", '.status.conditions[?(@.type=="Ready")].status'),
        ("Revision", "string", ".status.lastAppliedRevision"),
        ("Age", "date", ".metadata.creationTimestamp"),
    ]


def test_environment_crd_names_and_columns() -> None:
    crd = render_crds()[ENV_FILE]
    assert crd["metadata"]["name"] == "environments.mlgitops.io"
    spec = crd["spec"]
    assert spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == "Environment"
    assert spec["names"]["plural"] == "environments"
    assert spec["names"]["shortNames"] == ["mlenv"]
    assert spec["names"]["categories"] == ["mlgitops"]
    version = _version(crd)
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}
    columns = [(c["name"], c["type"], c["jsonPath"]) for c in version["additionalPrinterColumns"]]
    assert columns == [
        ("Catalog", "string", ".spec.catalog"),
        ("Namespace", "string", ".spec.namespace"),
        ("Ready", "string", '.status.conditions[?(@.type=="Ready")].status'),
        ("Age", "date", ".metadata.creationTimestamp"),
    ]
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    assert set(status) == {
        "observedGeneration",
        "conditions",
        "lastAppliedRevision",
        "lastAttemptedRevision",
        "inventory",
    }


# --- structural ----------------------------------------------------------------------------


def _nodes(node: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from _nodes(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from _nodes(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _nodes(node["additionalProperties"], f"{path}.*")


@pytest.mark.parametrize("name", [ENV_FILE, MD_FILE])
def test_schema_is_structural(name: str) -> None:
    root = _schema(name)
    assert root["type"] == "object"
    assert set(root["properties"]) == {"apiVersion", "kind", "metadata", "spec", "status"}
    assert root["properties"]["metadata"] == {"type": "object"}
    assert root["required"] == ["spec"]
    count = 0
    for path, node in _nodes(root, "<root>"):
        count += 1
        assert (
            "type" in node
            or node.get("x-kubernetes-int-or-string")
            or node.get("x-kubernetes-preserve-unknown-fields")
        ), f"{path} has no type"
        forbidden = {"$ref", "$defs", "definitions", "title", "const", "oneOf", "allOf", "not"}
        assert not forbidden & set(node), f"{path} has {forbidden & set(node)}"
        assert "anyOf" not in node, f"{path} has anyOf"
        assert node.get("type") != "null"
        assert not isinstance(node.get("type"), list), f"{path} has a type list"
        assert node.get("additionalProperties") is not False, f"{path} closes its properties"
        assert not ("properties" in node and "additionalProperties" in node), path
        for bound in ("exclusiveMinimum", "exclusiveMaximum"):
            if bound in node:
                assert isinstance(node[bound], bool), f"{path}.{bound} must be a boolean"
        if "default" in node:
            assert node["default"] is not None, f"{path} has a null default"
    assert count > 20


def test_schema_translation_details() -> None:
    spec = _schema(MD_FILE)["properties"]["spec"]
    props = spec["properties"]
    assert spec["required"] == ["model"]
    # anyOf [X, null] becomes X plus nullable, with the $ref inlined.
    assert props["champion"] == {
        "type": "object",
        "nullable": True,
        "properties": {
            "version": {
                "x-kubernetes-int-or-string": True,
                "pattern": "^[1-9][0-9]*$",
                "minimum": 1,
            }
        },
        "required": ["version"],
    }
    # gt=0 becomes an OpenAPI v3.0 exclusive minimum.
    threshold = props["monitoring"]["properties"]["drift"]["properties"]["threshold"]
    assert (threshold["minimum"], threshold["exclusiveMinimum"]) == (0, True)
    # camelCase on the wire, defaults and bounds kept.
    traffic = props["serving"]["properties"]["traffic"]["properties"]["challenger"]
    assert traffic == {
        "type": "integer",
        "minimum": 0,
        "maximum": 100,
        "default": 0,
        "description": "Percent of requests.",
    }
    assert "batchInference" in props
    assert props["promotion"]["properties"]["policy"]["enum"] == ["auto", "manual", "disabled"]
    assert props["promotion"]["properties"]["policy"]["default"] == "manual"


@pytest.mark.parametrize("name", [ENV_FILE, MD_FILE])
def test_conditions_are_a_list_map_keyed_by_type(name: str) -> None:
    conditions = _schema(name)["properties"]["status"]["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert "type" in conditions["items"]["required"]


def test_dicts_keep_their_value_schema_and_untranslatable_schemas_fail_loudly() -> None:
    from pydantic import BaseModel

    class Labels(BaseModel):
        labels: dict[str, str]

    labels = openapi_schema(Labels, mode="validation")["properties"]["labels"]
    assert labels == {"type": "object", "additionalProperties": {"type": "string"}}

    class Either(BaseModel):
        value: int | list[str]

    with pytest.raises(SchemaError, match="value"):
        openapi_schema(Either, mode="validation")


# --- enforcing: the same answers as the pydantic models ------------------------------------


def _md_validator() -> jsonschema.Draft202012Validator:
    schema = to_jsonschema(_schema(MD_FILE), strict=True)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_a_valid_deployment_passes() -> None:
    doc = _deployment(
        champion={"version": "2"},
        challenger={"version": "3"},
        serving={
            "replicas": 2,
            "traffic": {"challenger": 10},
            "inferenceTable": "prod/fraud/requests",
        },
        monitoring={
            "schedule": "0 8 * * *",
            "baseline": "prod/fraud/baseline",
            "window": "1d",
            "drift": {"threshold": 0.2},
            "labels": {"table": "prod/fraud/labels", "key": ["request_id"], "target": "label"},
            "quality": [{"metric": "f1", "min": 0.8}],
        },
        promotion={"online": {"metric": "f1", "minChange": 0.01, "minLabeledRows": 200}},
    )
    ModelDeploymentSpec.model_validate(doc["spec"])
    assert list(_md_validator().iter_errors(doc)) == []


@pytest.mark.parametrize(
    ("spec", "where"),
    [
        pytest.param({"championn": {"version": "3"}}, ["spec"], id="unknown-field"),
        pytest.param(
            {"serving": {"trafic": {"challenger": 10}}}, ["spec", "serving"], id="nested-unknown"
        ),
        pytest.param({"champion": {"version": 0}}, ["spec", "champion", "version"], id="int-pin-0"),
        pytest.param(
            {"champion": {"version": "v3"}}, ["spec", "champion", "version"], id="str-pin"
        ),
        pytest.param({"serving": {"replicas": "two"}}, ["spec", "serving", "replicas"], id="type"),
        pytest.param(
            {"serving": {"traffic": {"challenger": 101}}},
            ["spec", "serving", "traffic", "challenger"],
            id="maximum",
        ),
        pytest.param({"promotion": {"policy": "yolo"}}, ["spec", "promotion", "policy"], id="enum"),
        pytest.param(
            {
                "monitoring": {
                    "schedule": "0 8 * * *",
                    "baseline": "prod/fraud/baseline",
                    "drift": {"threshold": 0},
                }
            },
            ["spec", "monitoring", "drift", "threshold"],
            id="exclusive-minimum",
        ),
        pytest.param({"model": "fraud_detector"}, ["spec", "model"], id="pattern"),
    ],
)
def test_unknown_fields_and_wrong_types_are_rejected(
    spec: dict[str, Any], where: list[str]
) -> None:
    doc = _deployment(**spec)
    errors = list(_md_validator().iter_errors(doc))
    assert where in [list(e.absolute_path) for e in errors], [e.message for e in errors]


@pytest.mark.parametrize(
    ("version", "valid"),
    [
        (3, True),
        ("3", True),
        (12, True),
        (0, False),
        (-1, False),
        ("03", False),
        ("v3", False),
        (2.5, False),
        (True, False),
    ],
)
def test_the_loader_and_the_crd_accept_the_same_version_pins(version: Any, valid: bool) -> None:
    """`mlgitops validate` and `kubectl apply` agree: an int or a numeric string, from 1."""
    doc = _deployment(champion={"version": version})
    crd_ok = not list(_md_validator().iter_errors(doc))
    try:
        ModelDeploymentSpec.model_validate(doc["spec"])
        loader_ok = True
    except ValueError:
        loader_ok = False
    assert (loader_ok, crd_ok) == (valid, valid)


def test_strict_is_what_catches_unknown_fields() -> None:
    doc = _deployment(championn={"version": "3"})
    lenient = jsonschema.Draft202012Validator(to_jsonschema(_schema(MD_FILE)))
    assert lenient.is_valid(doc)
    assert not _md_validator().is_valid(doc)


def test_status_written_by_the_controller_is_accepted() -> None:
    status = ModelDeploymentStatus(
        observed_generation=3,
        conditions=[
            Condition(
                type="Ready",
                status="True",
                reason="Succeeded",
                message="applied",
                last_transition_time="2026-11-02T10:00:00Z",
            )
        ],
        last_applied_revision="a" * 40,
        registered_model="prod.fraud.fraud_detector",
        champion=VersionStatus(version="2", run_id="r1"),
        history=[
            HistoryEntry(
                alias="challenger",
                version=None,
                previous="4",
                revision="b" * 40,
                reason="removed from Git",
                time="2026-11-02T10:00:00Z",
            )
        ],
    )
    doc = _deployment()
    doc["status"] = status.model_dump(mode="json", by_alias=True)  # nulls included
    assert list(_md_validator().iter_errors(doc)) == []
    doc["status"]["conditions"][0]["status"] = "Maybe"
    assert not _md_validator().is_valid(doc)
