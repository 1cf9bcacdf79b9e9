"""The history's merge: each record at the time it was decided, in order, stand-ins marked."""

from __future__ import annotations

from controller.pipeline.history import iso_from_ms, lookups, timeline
from controller.planning.types import AliasEvent, RegisteredVersion

MODEL = "prod.fraud.fraud_detector"
T0 = 1_780_000_000_000  # ms


def version(n: str, tags: dict[str, str], created: int = T0) -> RegisteredVersion:
    return RegisteredVersion(name=MODEL, version=n, tags=tags, created=created, updated=created)


def at(seconds: float) -> str:
    time = iso_from_ms(T0 + int(seconds * 1000))
    assert time is not None
    return time


def test_records_are_merged_in_time_order_with_their_own_times() -> None:
    v4 = version(
        "4",
        {
            "model_validation_status": "PASSED",
            "mlgitops.validation.run_id": "r4",
            "mlgitops.comparison": "LOST",
            "mlgitops.comparison.champion": "3",
            "mlgitops.comparison.detail": "roc_auc 0.90 vs 0.93",
            "mlgitops.proposed.challenger": "c" * 40,
            "mlgitops.rolled_back": "d" * 40,
        },
    )
    events = [
        AliasEvent("challenger", "4", None, "c" * 40, "revision ccccccc: challenger v4", at(30)),
        AliasEvent("champion", "3", "4", "d" * 40, "revision ddddddd: Revert", at(50)),
    ]
    assert lookups([v4]) == ({"r4"}, {"c" * 40, "d" * 40})
    entries = timeline(
        events=events,
        versions=[v4],
        run_times={"r4": at(10)},
        commit_times={"c" * 40: at(20), "d" * 40: at(40)},
    )
    assert [(e.event, e.change, e.time) for e in entries] == [
        ("validation", "v4 PASSED", at(10)),
        ("comparison", "v4 LOST vs v3", at(10)),
        ("proposed challenger", "v4", at(20)),
        ("challenger", "(none) -> 4", at(30)),
        ("champion", "4 -> 3", at(50)),
        # At the sync that took the pin away (the revert's own commit time is earlier).
        ("rolled back", "v4", at(50)),
    ]
    assert entries[1].detail == "roc_auc 0.90 vs 0.93"
    assert not any(e.approximate for e in entries)


def test_the_versions_own_time_stands_in_marked_and_a_branch_is_named() -> None:
    v2 = version(
        "2", {"model_validation_status": "FAILED", "mlgitops.validation.failed_checks": "signature"}
    )
    v3 = version(
        "3",
        {"mlgitops.proposed.champion": "mlgitops/promote/prod/fraud-detector-v3@" + "e" * 40},
        created=T0 + 5000,
    )
    entries = timeline(events=[], versions=[v3, v2], run_times={}, commit_times={})
    assert [(e.event, e.version, e.time, e.approximate) for e in entries] == [
        ("validation", "2", at(0), True),
        ("proposed champion", "3", at(5), True),
    ]
    assert entries[0].detail == "failed: signature"
    assert entries[1].revision == "e" * 40
    assert entries[1].detail == "on branch mlgitops/promote/prod/fraud-detector-v3"


def test_pending_versions_have_no_verdict_and_one_pass_keeps_its_order() -> None:
    pending = version("5", {"model_validation_status": "PENDING"})
    same = at(1)
    events = [
        AliasEvent("champion", "5", "4", "f" * 40, "r", same),
        AliasEvent("challenger", None, "5", "f" * 40, "r", same),
    ]
    entries = timeline(events=events, versions=[pending], run_times={}, commit_times={})
    assert [(e.event, e.change) for e in entries] == [
        ("champion", "4 -> 5"),
        ("challenger", "5 -> (none)"),
    ]
