"""One summarizer writes every condition: Ready always, Stalled only while true."""

from __future__ import annotations

from controller.api.status import HISTORY_LIMIT, HistoryEntry, VersionStatus
from controller.planning.summarize import Outcome, summarize
from controller.redact import redact


def ok(previous=None, now="t1", events=()):  # type: ignore[no-untyped-def]
    return summarize(
        previous=previous,
        outcome=Outcome(attempted="r1", applied=True, reason="Reconciled", message="fine"),
        generation=1,
        registered_model="prod.a.b",
        champion=VersionStatus(version="1"),
        challenger=None,
        events=list(events),
        now=now,
    )


def test_ready_true_and_no_stalled() -> None:
    status = ok()
    assert [(c.type, c.status, c.reason) for c in status.conditions] == [
        ("Ready", "True", "Reconciled")
    ]
    assert status.last_applied_revision == status.last_attempted_revision == "r1"
    assert status.observed_generation == 1


def test_rejection_keeps_last_good_state_and_transition_times() -> None:
    good = ok(now="t1")
    bad = summarize(
        previous=good,
        outcome=Outcome(
            attempted="r2",
            applied=False,
            reason="InvalidRevision",
            message="x:1: f: bad",
            stalled=True,
        ),
        generation=None,
        registered_model=None,
        champion=None,
        challenger=None,
        events=[],
        now="t2",
    )
    assert bad.last_applied_revision == "r1"
    assert bad.last_attempted_revision == "r2"
    assert bad.champion == good.champion
    assert bad.observed_generation == 1
    ready, stalled = bad.conditions
    assert (ready.status, ready.last_transition_time) == ("False", "t2")
    assert (stalled.type, stalled.status, stalled.reason) == ("Stalled", "True", "InvalidRevision")
    again = ok(previous=bad, now="t3")
    assert [c.type for c in again.conditions] == ["Ready"]
    assert again.conditions[0].last_transition_time == "t3"
    still = ok(previous=again, now="t4")
    assert still.conditions[0].last_transition_time == "t3"  # unchanged status keeps its time


def test_history_is_bounded() -> None:
    status = None
    for i in range(HISTORY_LIMIT + 5):
        event = HistoryEntry(
            alias="champion",
            version=str(i + 1),
            previous=str(i),
            revision=f"r{i}",
            reason="x",
            time=f"t{i}",
        )
        status = ok(previous=status, events=[event])
    assert status is not None
    assert len(status.history) == HISTORY_LIMIT
    assert status.history[-1].version == str(HISTORY_LIMIT + 5)


def test_redact_hides_credentials() -> None:
    assert (
        redact("https://bob:tok@git.example.com/x.git failed")
        == "https://***@git.example.com/x.git failed"
    )
    assert redact("GET /api?token=abc&x=1") == "GET /api?token=***&x=1"


def test_status_round_trips_through_its_stored_form() -> None:
    removal = HistoryEntry(
        alias="challenger", version=None, previous="3", revision="r2", reason="promoted", time="t2"
    )
    status = ok(events=[removal])
    stored = status.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert "version" not in stored["history"][0]
    assert type(status).model_validate(stored) == status


def test_ready_is_unknown_while_serving_rolls_out() -> None:
    """kstatus: applied but not yet serving is not Ready; it becomes True once rolled out."""
    from controller.api.status import ServingStatus
    from controller.planning.summarize import progressing

    rolling = ServingStatus(replicas=2, ready_replicas=1, champion="3", rolled_out=False)
    message = progressing(rolling)
    assert message == "serving 1/2 replicas ready with champion 3"
    status = summarize(
        previous=ok(now="t1"),
        outcome=Outcome(
            attempted="r2", applied=True, reason="Reconciled", message="m", progressing=message
        ),
        generation=2,
        now="t2",
    )
    assert [(c.type, c.status, c.reason) for c in status.conditions] == [
        ("Ready", "Unknown", "Progressing"),
        ("Reconciling", "True", "Progressing"),
    ]
    assert status.last_applied_revision == "r2"  # applied: only not rolled out yet
    assert progressing(rolling.model_copy(update={"rolled_out": True})) is None
    done = ok(previous=status, now="t3")
    assert [(c.type, c.status, c.last_transition_time) for c in done.conditions] == [
        ("Ready", "True", "t3")
    ]
