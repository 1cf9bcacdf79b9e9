"""The promotion path's decisions: validate, propose a challenger, promote, or wait."""

from __future__ import annotations

import pytest

from controller.pipeline.promotion import Decision, Proposal, Version, decide, rolled_back


def v(number: int, status: str | None = "PASSED", **tags: str) -> Version:
    base = {"mlgitops.run_id": f"run{number}"}
    if status is not None:
        base["model_validation_status"] = status
    if status in ("PASSED", "FAILED"):
        base["mlgitops.validation.run_id"] = f"validation{number}"
    base.update({k.replace("__", "."): val for k, val in tags.items()})
    return Version(str(number), base)


WON = {"mlgitops__comparison": "WON"}
LOST = {"mlgitops__comparison": "LOST"}


@pytest.mark.parametrize(
    ("versions", "champion", "challenger", "expected"),
    [
        pytest.param([v(1), v(2, "PENDING")], "1", None, Decision(validate="2"), id="validate new"),
        pytest.param(
            [v(1), v(2, "PENDING"), v(3, "PENDING")],
            "1",
            None,
            Decision(validate="3"),
            id="the newest pending only",
        ),
        pytest.param(
            [v(1), v(2)],
            "1",
            None,
            Decision(propose=Proposal("challenger", "2", "version 2 PASSED validation")),
            id="passed -> challenger",
        ),
        pytest.param([v(1), v(2, "FAILED")], "1", None, Decision(), id="failed: nothing"),
        pytest.param(
            [v(1), v(2, **WON)],
            "1",
            "2",
            Decision(propose=Proposal("champion", "2", "challenger 2 WON against champion 1")),
            id="won -> champion",
        ),
        pytest.param(
            [v(1), v(2, **LOST)],
            "1",
            "2",
            Decision(waiting="challenger 2 LOST against champion 1"),
            id="lost: reported",
        ),
        pytest.param(
            [v(1), v(2, mlgitops__rolled_back="abc")],
            "1",
            None,
            Decision(),
            id="rolled back: never proposed again",
        ),
        pytest.param(
            [v(1), v(2, mlgitops__rolled_back="abc"), v(3)],
            "1",
            None,
            Decision(propose=Proposal("challenger", "3", "version 3 PASSED validation")),
            id="a newer one can be",
        ),
        pytest.param(
            [v(1), v(2, **{"mlgitops__proposed__challenger": "sha"})],
            "1",
            None,
            Decision(),
            id="proposed before: not twice",
        ),
        pytest.param(
            [v(1), v(2, **WON, **{"mlgitops__proposed__champion": "sha"})],
            "1",
            "2",
            Decision(),
            id="promoted before: not twice",
        ),
        pytest.param(
            [v(3), v(2)], "3", None, Decision(), id="older than the champion: not proposed"
        ),
        pytest.param(
            [v(1), v(2, **WON), v(3)],
            "1",
            "2",
            Decision(propose=Proposal("challenger", "3", "version 3 PASSED validation")),
            id="a newer passed version replaces the challenger first",
        ),
        pytest.param(
            [v(1), v(2, "PENDING", mlgitops__run_id="")],
            "1",
            None,
            Decision(validate="2"),
            id="trained (the tag's presence counts)",
        ),
    ],
)
def test_decide(
    versions: list[Version], champion: str | None, challenger: str | None, expected: Decision
) -> None:
    got = decide(
        versions, champion=champion, challenger=challenger, validating=False, can_validate=True
    )
    assert got == expected


def test_one_thing_at_a_time_and_no_validation_without_its_section() -> None:
    versions = [v(1), v(2, "PENDING")]
    assert decide(versions, champion="1", challenger=None, validating=True, can_validate=True) == (
        Decision(waiting="validating")
    )
    got = decide(versions, champion="1", challenger=None, validating=False, can_validate=False)
    assert got == Decision(waiting="version 2 is PENDING: there is no validation section")
    # A version registered by hand (no training run) is not the controller's to validate.
    hand = Version("2", {"model_validation_status": "PENDING"})
    assert decide(
        [v(1), hand], champion="1", challenger=None, validating=False, can_validate=True
    ) == (Decision())


def test_rolled_back_is_a_champion_lost_without_a_promotion_commit() -> None:
    # A revert (no promotion trailer for the new champion): the old one rolled back.
    assert rolled_back([("champion", "7", "6")], set()) == ["7"]
    # The promotion commit of the new champion: not a rollback.
    assert rolled_back([("champion", "6", "7")], {("champion", "7")}) == []
    # A hand edit forward is not a promotion commit either.
    assert rolled_back([("champion", "6", "8")], {("champion", "7")}) == ["6"]
    # The first pin, and challenger changes, roll nothing back.
    assert rolled_back([("champion", None, "1"), ("challenger", "3", None)], set()) == []


def test_with_promotion_online_the_online_comparison_decides() -> None:
    def online(*versions: Version, challenger: str = "2") -> Decision:
        return decide(
            list(versions),
            champion="1",
            challenger=challenger,
            validating=False,
            can_validate=True,
            online=True,
        )

    detail = {"mlgitops__online__detail": "f1 0.9 vs 0.8"}
    assert online(v(1), v(2, **LOST, mlgitops__online__comparison="WON", **detail)) == Decision(
        propose=Proposal(
            "champion", "2", "challenger 2 WON online against champion 1: f1 0.9 vs 0.8"
        )
    )
    # The offline WON alone does not promote: the traffic has not spoken yet.
    assert online(v(1), v(2, **WON)) == Decision(
        waiting="challenger 2 awaits its online comparison (no labeled traffic yet)"
    )
    assert online(v(1), v(2, **WON, mlgitops__online__comparison="PENDING", **detail)) == Decision(
        waiting="challenger 2 awaits its online comparison: f1 0.9 vs 0.8"
    )
    assert online(v(1), v(2, mlgitops__online__comparison="LOST", **detail)) == Decision(
        waiting="challenger 2 LOST online against champion 1: f1 0.9 vs 0.8"
    )
    proposed = v(2, mlgitops__online__comparison="WON", mlgitops__proposed__champion="abc")
    assert online(v(1), proposed) == Decision()
