"""The planner is pure: table-driven cases of (pins, observed registry) -> alias changes or problems."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from controller.api.loader import load_environment
from controller.planning import Observed, ObservedModel, VersionInfo, plan, versions_to_inspect

ENV = """apiVersion: mlgitops.io/v1alpha1
kind: Environment
metadata: {name: prod}
spec: {catalog: prod, namespace: ml-prod}
"""


def desired(champion: str | None, challenger: str | None = None):  # type: ignore[no-untyped-def]
    pins = ""
    if champion:
        pins += f"  champion: {{version: '{champion}'}}\n"
    if challenger:
        pins += f"  challenger: {{version: '{challenger}'}}\n"
    md = (
        "apiVersion: mlgitops.io/v1alpha1\nkind: ModelDeployment\nmetadata: {name: fraud}\n"
        f"spec:\n  model: fraud.detector\n{pins}"
    )
    files = {"environments/prod/env.yaml": ENV, "environments/prod/fraud.yaml": md}
    return load_environment(files, env_name="prod", revision="r1", folder="environments/prod")


M = "prod.fraud.detector"


@dataclass
class Case:
    name: str
    champion: str | None
    challenger: str | None
    aliases: dict[str, str]
    versions: tuple[str, ...] = ("1", "2", "3")
    failed: frozenset[tuple[str, str]] = frozenset()
    changes: list[tuple[str, str | None, str | None]] = field(default_factory=list)
    problem: str | None = None


CASES = [
    Case(
        "fresh model gets both aliases",
        "1",
        "2",
        {},
        changes=[("champion", None, "1"), ("challenger", None, "2")],
    ),
    Case("in sync: nothing to do", "1", "2", {"champion": "1", "challenger": "2"}),
    Case(
        "promotion moves champion, drops challenger",
        "2",
        None,
        {"champion": "1", "challenger": "2"},
        changes=[("champion", "1", "2"), ("challenger", "2", None)],
    ),
    Case(
        "rollback moves champion back",
        "1",
        None,
        {"champion": "2"},
        changes=[("champion", "2", "1")],
    ),
    Case(
        "no pins removes what Git dropped",
        None,
        None,
        {"champion": "1"},
        changes=[("champion", "1", None)],
    ),
    Case("other aliases are left alone", "1", None, {"champion": "1", "shadow": "3"}),
    Case(
        "missing version is a problem",
        "9",
        None,
        {"champion": "1"},
        problem="spec.champion.version: version 9 of prod.fraud.detector does not exist",
    ),
    Case(
        "failed version is a problem",
        "1",
        "3",
        {"champion": "1"},
        failed=frozenset({(M, "3")}),
        problem="spec.challenger.version: version 3 of prod.fraud.detector failed validation",
    ),
    Case(
        "a version marked FAILED after it was aliased stalls the revision",
        "1",
        "3",
        {"champion": "1", "challenger": "3"},
        failed=frozenset({(M, "3")}),
        problem="spec.challenger.version: version 3 of prod.fraud.detector failed validation",
    ),
    Case(
        "a version already aliased needs no lookup",
        "2",
        None,
        {"champion": "1", "challenger": "2"},
        versions=(),
        changes=[("champion", "1", "2"), ("challenger", "2", None)],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_plan(case: Case) -> None:
    want = desired(case.champion, case.challenger)
    observed = Observed(
        models={M: ObservedModel(M, case.aliases, {v: VersionInfo(v) for v in case.versions})},
        failed=case.failed,
    )
    result = plan(want, observed)
    if case.problem:
        assert result.models == ()
        assert result.changes == ()
        [problem] = result.problems
        assert f"{problem.field}: {problem.message}".startswith(case.problem)
        assert problem.file == "environments/prod/fraud.yaml"
        assert problem.line == (6 if "champion" in case.problem else 7)
        return
    assert result.problems == ()
    assert [(c.alias, c.previous, c.version) for c in result.changes] == case.changes


def test_unknown_model_is_a_problem() -> None:
    result = plan(desired("1"), Observed(models={}))
    [problem] = result.problems
    assert (problem.field, problem.line) == ("spec.model", 5)
    assert "registered model prod.fraud.detector does not exist" in problem.message


def test_versions_to_inspect_skips_versions_already_aliased() -> None:
    want = desired("2", "3")
    assert versions_to_inspect(want, {M: {"champion": "2", "challenger": "3"}}) == set()
    assert versions_to_inspect(want, {M: {"champion": "1", "challenger": "2"}}) == {(M, "3")}


def test_plan_is_deterministic_and_pure() -> None:
    want = desired("2", "3")
    observed = Observed(
        models={
            M: ObservedModel(M, {"champion": "1"}, {"2": VersionInfo("2"), "3": VersionInfo("3")})
        }
    )
    assert plan(want, observed) == plan(want, observed)
