"""The parts of notifications that need no network: bodies, signatures, the ledger of sent
keys, and resolving endpoints from the environment."""

from __future__ import annotations

import json
from pathlib import Path

from controller.api.documents import NotificationEndpoint
from controller.notify import delivery_id, resolve_endpoints, sign, verify
from controller.notify.bodies import Notification, json_body, slack_body
from controller.notify.ledger import Ledger


def notification(**change: object) -> Notification:
    values: dict[str, object] = {
        "environment": "prod",
        "event": "ValidationFailed",
        "key": "fraud-detector/v3",
        "model": "fraud-detector",
        "message": "roc_auc 0.71 < 0.80",
        "fields": {"failed": ["roc_auc"]},
        "time": "2026-11-01T00:00:00.000Z",
    }
    return Notification(**{**values, **change})  # type: ignore[arg-type]


def test_the_delivery_id_is_stable_and_per_environment_event_and_key() -> None:
    assert delivery_id("prod", "E", "k") == delivery_id("prod", "E", "k")
    assert (
        len(
            {
                delivery_id("prod", "E", "k"),
                delivery_id("dev", "E", "k"),
                delivery_id("prod", "F", "k"),
                delivery_id("prod", "E", "k2"),
            }
        )
        == 4
    )


def test_equal_notifications_give_equal_bytes_and_signatures() -> None:
    body = json_body(notification())
    assert body == json_body(notification())
    assert sign("t", body) == sign("t", json_body(notification()))
    assert verify("t", body, sign("t", body))
    assert not verify("t", body, None)
    assert not verify("t", body, "sha1=" + sign("t", body).removeprefix("sha256="))


def test_credentials_in_messages_and_fields_are_redacted() -> None:
    leaky = notification(
        message="push to https://bot:ghp_abc@git.example.com/ml.git failed",
        fields={"uri": "https://h/x?token=abc", "nested": {"u": "http://u:p@h/"}, "n": 3},
    )
    for body in (json_body(leaky), slack_body(leaky)):
        text = body.decode()
        assert "ghp_abc" not in text
        assert "token=abc" not in text
        assert "u:p@" not in text
    assert json.loads(json_body(leaky))["fields"]["n"] == 3


def test_slack_limits_hold_for_long_messages_and_many_fields() -> None:
    big = notification(message="x" * 10_000, fields={f"f{i}": "y" * 5000 for i in range(15)})
    body = json.loads(slack_body(big))
    assert len(body["text"]) <= 3000
    section, fields, _ = body["blocks"]
    assert len(section["text"]["text"]) <= 3000
    assert len(fields["fields"]) == 10
    assert all(len(f["text"]) <= 2000 for f in fields["fields"])


def test_a_notification_without_model_or_fields() -> None:
    body = json.loads(slack_body(notification(model=None, fields={}, event="SyncStalled")))
    assert body["text"] == "[prod] SyncStalled: roc_auc 0.71 < 0.80"
    assert [b["type"] for b in body["blocks"]] == ["section", "context"]


def test_the_ledger_persists_and_stays_bounded(tmp_path: Path) -> None:
    path = tmp_path / "n" / "sent.jsonl"
    ledger = Ledger(path, limit=5)
    for i in range(12):
        ledger.add("E", f"k{i}", "t")
    assert len(path.read_text().splitlines()) <= 10  # rewritten at twice the limit
    again = Ledger(path, limit=5)
    assert len(again) == 5
    assert ("E", "k11") in again
    assert ("E", "k7") in again
    assert ("E", "k6") not in again  # forgotten: the oldest go first
    assert ("F", "k11") not in again  # per event


def test_a_torn_last_line_is_skipped_and_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "sent.jsonl"
    path.write_text('["E", "a", "t"]\n["E", "b"')
    ledger = Ledger(path, limit=10)
    assert ("E", "a") in ledger
    assert len(ledger) == 1
    ledger.add("E", "c", "t")
    assert [json.loads(line)[1] for line in path.read_text().splitlines()] == ["a", "c"]


def test_an_unwritable_ledger_keeps_working_in_memory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    ledger = Ledger(blocker / "sent.jsonl", limit=10)  # its parent is a file
    ledger.add("E", "a", "t")
    assert ("E", "a") in ledger


def test_resolving_endpoints_reads_only_the_named_variables() -> None:
    specs = [
        NotificationEndpoint.model_validate(
            {
                "name": "a",
                "url": "https://r.example.com/",
                "tokenEnv": "MLGITOPS_NOTIFY_A",
                "events": ["SyncStalled"],
            }
        ),
        NotificationEndpoint.model_validate(
            {
                "name": "b",
                "format": "slack",
                "urlEnv": "MLGITOPS_NOTIFY_B",
                "events": ["SyncStalled"],
            }
        ),
    ]
    endpoints, problems = resolve_endpoints(
        specs, {"MLGITOPS_NOTIFY_A": "tok", "MLGITOPS_NOTIFY_B": "ftp://x/secret-path"}
    )
    assert [e.name for e in endpoints] == ["a"]
    assert endpoints[0].token == "tok"
    assert "tok" not in repr(endpoints[0])
    assert "r.example.com" not in repr(endpoints[0])
    assert problems == [
        "spec.notifications.1 (b): urlEnv MLGITOPS_NOTIFY_B holds no http:// or https:// URL; "
        "the endpoint is off"
    ]
    assert "secret-path" not in problems[0]
