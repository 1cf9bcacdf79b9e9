"""The example environments are valid twice over: for the API server and for the loader.

Each YAML document is checked against the generated CRD schema (strict, as ``kubectl apply``
validates it), and each folder is loaded the way the controller loads a Git revision. Together
the examples must exercise the whole document: pinned champions, a challenger taking traffic,
training, validation thresholds, batch inference and monitoring.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from controller.api.crd import render_crds, to_jsonschema
from controller.api.loader import DesiredState, load_environment

ROOT = Path(__file__).resolve().parents[2]
ENVIRONMENTS = ROOT / "environments"
ENV_NAMES = sorted(p.name for p in ENVIRONMENTS.iterdir() if p.is_dir())
YAML_FILES = sorted(ENVIRONMENTS.rglob("*.y*ml"))
MODELS = {"fraud.fraud_detector", "customers.churn_predictor"}
# The demo registers versions 1..3 of each model in every catalog.
MAX_VERSION = 3


def _validators() -> dict[str, jsonschema.Draft202012Validator]:
    validators = {}
    for crd in render_crds().values():
        [version] = crd["spec"]["versions"]
        schema = to_jsonschema(version["schema"]["openAPIV3Schema"], strict=True)
        jsonschema.Draft202012Validator.check_schema(schema)
        validators[crd["spec"]["names"]["kind"]] = jsonschema.Draft202012Validator(schema)
    return validators


def _load(env: str) -> DesiredState:
    folder = ENVIRONMENTS / env
    files = {
        p.relative_to(ROOT).as_posix(): p.read_bytes()
        for p in sorted(folder.iterdir())
        if p.is_file()
    }
    return load_environment(files, env_name=env, revision="worktree", folder=f"environments/{env}")


def test_the_three_environments_exist() -> None:
    assert ENV_NAMES == ["dev", "prod", "staging"]


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: p.relative_to(ENVIRONMENTS).as_posix())
def test_every_document_validates_against_the_crd_schema(path: Path) -> None:
    validators = _validators()
    docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]
    assert docs, f"{path} holds no document"
    for doc in docs:
        assert doc.get("kind") in validators, f"{path}: unknown kind {doc.get('kind')!r}"
        errors = [
            f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
            for e in validators[doc["kind"]].iter_errors(doc)
        ]
        assert errors == [], f"{path}: {errors}"


@pytest.mark.parametrize("env", ENV_NAMES)
def test_every_environment_loads(env: str) -> None:
    state = _load(env)
    assert state.env_name == env
    assert state.environment.metadata.name == env
    assert state.catalog == env
    assert len(state.deployments) >= 2
    assert {d.doc.spec.model for d in state.deployments} == MODELS
    for d in state.deployments:
        assert d.registered_model == f"{env}.{d.doc.spec.model}"
        assert d.at.file.startswith(f"environments/{env}/")
        for pin in (d.doc.spec.champion, d.doc.spec.challenger):
            if pin is not None:
                assert 1 <= int(pin.version) <= MAX_VERSION, f"{d.at.file}: version {pin.version}"


def test_dev_may_read_prod() -> None:
    assert _load("dev").environment.spec.read_catalogs == ["prod"]


@pytest.mark.parametrize(
    ("env", "champion", "challenger", "traffic"),
    [("dev", "1", "2", 50), ("staging", "2", "3", 20)],
)
def test_pre_prod_environments_promote_automatically(
    env: str, champion: str, challenger: str, traffic: int
) -> None:
    for d in _load(env).deployments:
        spec = d.doc.spec
        assert spec.promotion.policy == "auto"
        assert spec.champion is not None
        assert spec.champion.version == champion
        assert spec.challenger is not None
        assert spec.challenger.version == challenger
        assert spec.serving.traffic.challenger == traffic


def test_the_examples_cover_the_whole_document() -> None:
    specs = [d.doc.spec for env in ENV_NAMES for d in _load(env).deployments]
    covered: dict[str, Any] = {
        "pinned champion": [s for s in specs if s.champion],
        "challenger with traffic": [
            s for s in specs if s.challenger and s.serving.traffic.challenger > 0
        ],
        "training source": [s for s in specs if s.training and s.training.source.repo],
        "validation thresholds": [s for s in specs if s.validation and s.validation.thresholds],
        "validation slices": [s for s in specs if s.validation and s.validation.slices],
        "batch inference schedule": [s for s in specs if s.batch_inference],
        "monitoring schedule": [s for s in specs if s.monitoring],
        "retraining on drift": [s for s in specs if s.monitoring and s.monitoring.retrain],
        "manual promotion": [s for s in specs if s.promotion.policy == "manual"],
        "auto promotion": [s for s in specs if s.promotion.policy == "auto"],
    }
    missing = [what for what, found in covered.items() if not found]
    assert missing == []
