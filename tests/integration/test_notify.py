"""Notifications against a real HTTP receiver on loopback: each event once, signed, retried,
and never in the way of the pass that sends it."""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from controller.api.documents import Environment
from controller.kubernetes import metrics
from controller.notify import DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, Notifier, verify
from controller.sources.webhook import verify_signature
from tests.receiver import Receiver

TOKEN = "n0tify-s3cret"
SLACK_SECRET = "T0SECRET/B0SECRET/xyzSECRET"
FAST = {"backoff": 0.05, "max_backoff": 0.2, "timeout": 2.0}


def environment(*endpoints: dict[str, Any]) -> Environment:
    return Environment.model_validate(
        {
            "apiVersion": "mlgitops.io/v1alpha1",
            "kind": "Environment",
            "metadata": {"name": "prod"},
            "spec": {"catalog": "prod", "namespace": "ml-prod", "notifications": list(endpoints)},
        }
    )


def audit(receiver: Receiver, *events: str) -> dict[str, Any]:
    return {
        "name": "audit",
        "url": f"{receiver.url}/audit",
        "tokenEnv": "MLGITOPS_NOTIFY_AUDIT_TOKEN",
        "events": list(events),
    }


def slack(*events: str) -> dict[str, Any]:
    return {
        "name": "team",
        "format": "slack",
        "urlEnv": "MLGITOPS_NOTIFY_SLACK_URL",
        "events": list(events),
    }


def environ(receiver: Receiver) -> dict[str, str]:
    return {
        "MLGITOPS_NOTIFY_AUDIT_TOKEN": TOKEN,
        "MLGITOPS_NOTIFY_SLACK_URL": f"{receiver.url}/services/{SLACK_SECRET}",
    }


def promoted(notifier: Notifier, version: int = 7) -> None:
    notifier.notify(
        "PromotionCommitted",
        f"fraud-detector/champion/v{version}",
        model="fraud-detector",
        message=f"champion v{version - 1} -> v{version}",
        fields={"roc_auc": 0.91, "commit": "abc1234"},
    )


def test_each_event_reaches_each_endpoint_that_lists_it_once(
    receiver: Receiver, tmp_path: Path
) -> None:
    env = environment(
        audit(receiver, "PromotionCommitted", "RollbackDetected"),
        slack("PromotionCommitted", "ValidationFailed"),
    )
    notifier = Notifier.for_environment(env, state_dir=tmp_path, environ=environ(receiver), **FAST)
    assert notifier.problems == ()
    promoted(notifier)
    promoted(notifier)  # the same key: already queued
    notifier.notify("ValidationFailed", "fraud-detector/v8", model="fraud-detector", message="x")
    notifier.notify("RollbackDetected", "fraud-detector/v7", model="fraud-detector", message="y")
    notifier.notify("SyncStalled", "rev-1", message="nobody listens")
    assert notifier.close(5) is True

    assert [r.json()["event"] for r in receiver.on("/audit")] == [
        "PromotionCommitted",
        "RollbackDetected",
    ]
    slack_events = [
        r.json()["text"].split(":")[0] for r in receiver.on(f"/services/{SLACK_SECRET}")
    ]
    assert slack_events == [
        "[prod] PromotionCommitted fraud-detector",
        "[prod] ValidationFailed fraud-detector",
    ]
    assert notifier.counts() == {
        ("audit", "PromotionCommitted", "delivered"): 1,
        ("audit", "RollbackDetected", "delivered"): 1,
        ("team", "PromotionCommitted", "delivered"): 1,
        ("team", "ValidationFailed", "delivered"): 1,
    }


def test_a_restart_on_the_same_state_dir_does_not_send_again(
    receiver: Receiver, tmp_path: Path
) -> None:
    env = environment(audit(receiver, "PromotionCommitted"))
    first = Notifier.for_environment(env, state_dir=tmp_path, environ=environ(receiver), **FAST)
    promoted(first)
    assert first.close(5)
    assert (tmp_path / "envs" / "prod" / "notifications" / "sent.jsonl").is_file()

    second = Notifier.for_environment(env, state_dir=tmp_path, environ=environ(receiver), **FAST)
    promoted(second)  # sent by the first process
    promoted(second, version=8)  # new
    assert second.close(5)
    keys = [r.json()["key"] for r in receiver.on("/audit")]
    assert keys == ["fraud-detector/champion/v7", "fraud-detector/champion/v8"]


def test_the_json_body_is_signed_with_the_token(receiver: Receiver, tmp_path: Path) -> None:
    env = environment(audit(receiver, "PromotionCommitted"))
    with Notifier.for_environment(
        env, state_dir=tmp_path, environ=environ(receiver), **FAST
    ) as notifier:
        promoted(notifier)
    [request] = receiver.wait_for("/audit", 1)
    header = request.headers[SIGNATURE_HEADER]
    expected = hmac.new(TOKEN.encode(), request.body, hashlib.sha256).hexdigest()
    assert header == f"sha256={expected}"
    assert verify(TOKEN, request.body, header)
    assert verify_signature(TOKEN, request.body, header)  # the scheme of the push webhook
    assert not verify("another-token", request.body, header)
    assert not verify(TOKEN, request.body + b" ", header)

    body = request.json()
    assert body == {
        "apiVersion": "mlgitops.io/v1alpha1",
        "kind": "Notification",
        "id": body["id"],
        "event": "PromotionCommitted",
        "key": "fraud-detector/champion/v7",
        "environment": "prod",
        "model": "fraud-detector",
        "message": "champion v6 -> v7",
        "fields": {"roc_auc": 0.91, "commit": "abc1234"},
        "time": body["time"],
    }
    assert request.headers[EVENT_HEADER] == "PromotionCommitted"
    assert request.headers[DELIVERY_HEADER] == body["id"]
    assert request.headers["Content-Type"] == "application/json"
    assert TOKEN not in request.body.decode()


def test_the_slack_body_is_an_incoming_webhook_message(receiver: Receiver, tmp_path: Path) -> None:
    env = environment(slack("AwaitingApproval"))
    with Notifier.for_environment(
        env, state_dir=tmp_path, environ=environ(receiver), **FAST
    ) as notifier:
        notifier.notify(
            "AwaitingApproval",
            "fraud-detector/v9",
            model="fraud-detector",
            message="merge mlgitops/promote/prod/fraud-detector-v9 to promote v9 <now>",
            fields={"branch": "mlgitops/promote/prod/fraud-detector-v9", "roc_auc": 0.93},
        )
    [request] = receiver.wait_for(f"/services/{SLACK_SECRET}", 1)
    assert SIGNATURE_HEADER not in request.headers
    body = request.json()
    assert set(body) == {"text", "blocks"}
    assert body["text"] == (
        "[prod] AwaitingApproval fraud-detector: merge mlgitops/promote/prod/fraud-detector-v9 "
        "to promote v9 <now>"
    )
    section, fields, context = body["blocks"]
    assert section["type"] == "section"
    assert section["text"]["type"] == "mrkdwn"
    assert section["text"]["text"].startswith("*AwaitingApproval* · `prod` · *fraud-detector*\n")
    assert "&lt;now&gt;" in section["text"]["text"]  # mrkdwn's reserved characters escaped
    assert [f["text"] for f in fields["fields"]] == [
        "*branch*\nmlgitops/promote/prod/fraud-detector-v9",
        "*roc_auc*\n0.93",
    ]
    assert context["type"] == "context"


def test_a_receiver_failing_twice_gets_the_event_once_after_retries(
    receiver: Receiver, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.statuses["/audit"] = [500, 503]
    env = environment(audit(receiver, "PromotionCommitted"))
    labels = {"event": "PromotionCommitted", "endpoint": "audit", "result": "delivered"}

    def delivered() -> float:
        return metrics.REGISTRY.get_sample_value("mlgitops_notifications_total", labels) or 0.0

    before = delivered()
    notifier = Notifier.for_environment(
        env,
        state_dir=tmp_path,
        environ=environ(receiver),
        on_result=metrics.notification_result,  # the operator's metric
        **FAST,
    )
    with caplog.at_level(logging.INFO, logger="mlgitops.notify"):
        promoted(notifier)
        assert notifier.close(5)
    attempts = receiver.on("/audit")
    assert len(attempts) == 3
    assert len({(r.body, r.headers[DELIVERY_HEADER]) for r in attempts}) == 1  # byte for byte
    assert notifier.counts() == {("audit", "PromotionCommitted", "delivered"): 1}
    assert delivered() == before + 1
    assert "delivered on attempt 3" in caplog.text


def test_a_receiver_that_keeps_failing_is_given_up_and_logged_without_secrets(
    receiver: Receiver, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.statuses[f"/services/{SLACK_SECRET}"] = [500] * 10
    env = environment(slack("ValidationFailed"))
    notifier = Notifier.for_environment(
        env, state_dir=tmp_path, environ=environ(receiver), attempts=3, **FAST
    )
    with caplog.at_level(logging.INFO, logger="mlgitops.notify"):
        notifier.notify("ValidationFailed", "m/v3", model="m", message="roc_auc 0.7 < 0.8")
        assert notifier.close(5)
    assert len(receiver.on(f"/services/{SLACK_SECRET}")) == 3
    assert notifier.counts() == {("team", "ValidationFailed", "failed"): 1}
    [line] = [r.getMessage() for r in caplog.records]
    assert (
        line == "notification ValidationFailed 'm/v3' to team failed after 3 attempt(s): HTTP 500"
    )
    assert "SECRET" not in caplog.text


def test_a_client_error_is_not_retried(receiver: Receiver, tmp_path: Path) -> None:
    receiver.statuses["/audit"] = [404]
    env = environment(audit(receiver, "PromotionCommitted"))
    notifier = Notifier.for_environment(env, state_dir=tmp_path, environ=environ(receiver), **FAST)
    promoted(notifier)
    assert notifier.close(5)
    assert len(receiver.on("/audit")) == 1
    assert notifier.counts() == {("audit", "PromotionCommitted", "failed"): 1}


def test_a_receiver_that_hangs_never_blocks_the_caller(receiver: Receiver, tmp_path: Path) -> None:
    receiver.hang.add("/audit")
    env = environment(audit(receiver, "PromotionCommitted"), slack("PromotionCommitted"))
    notifier = Notifier.for_environment(
        env, state_dir=tmp_path, environ=environ(receiver), backoff=0.05, timeout=30
    )
    slowest = 0.0
    for version in range(1, 21):
        started = time.perf_counter()
        promoted(notifier, version=version)
        slowest = max(slowest, time.perf_counter() - started)
    assert slowest < 0.05
    # The hanging endpoint holds up nobody else.
    assert len(receiver.wait_for(f"/services/{SLACK_SECRET}", 20)) == 20

    started = time.monotonic()
    assert notifier.close(timeout=0.5) is False
    assert time.monotonic() - started < 1.5
    counts = notifier.counts()
    assert counts[("team", "PromotionCommitted", "delivered")] == 20
    assert counts[("audit", "PromotionCommitted", "dropped")] >= 19  # one may be in flight
    started = time.perf_counter()
    promoted(notifier, version=99)  # closed: ignored, still at once
    assert time.perf_counter() - started < 0.05


def test_an_unreachable_endpoint_is_retried_then_given_up(tmp_path: Path) -> None:
    env = environment(
        {
            "name": "gone",
            "url": "http://127.0.0.1:9/nothing-listens",
            "tokenEnv": "MLGITOPS_NOTIFY_T",
            "events": ["TrainingFailed"],
        }
    )
    notifier = Notifier.for_environment(
        env, state_dir=tmp_path, environ={"MLGITOPS_NOTIFY_T": "t"}, attempts=2, **FAST
    )
    notifier.notify("TrainingFailed", "m/abc/1", model="m", message="exit 1")
    assert notifier.close(5)
    assert notifier.counts() == {("gone", "TrainingFailed", "failed"): 1}


def test_an_endpoint_whose_variable_is_unset_is_off_and_says_so(
    receiver: Receiver, tmp_path: Path
) -> None:
    env = environment(audit(receiver, "PromotionCommitted"), slack("PromotionCommitted"))
    only_slack = {"MLGITOPS_NOTIFY_SLACK_URL": environ(receiver)["MLGITOPS_NOTIFY_SLACK_URL"]}
    notifier = Notifier.for_environment(env, state_dir=tmp_path, environ=only_slack, **FAST)
    assert notifier.problems == (
        "spec.notifications.0 (audit): tokenEnv MLGITOPS_NOTIFY_AUDIT_TOKEN is not set in the "
        "controller's environment (on Kubernetes: key AUDIT_TOKEN of the Secret "
        "mlgitops-notifications); the endpoint is off",
    )
    assert [e.name for e in notifier.endpoints] == ["team"]
    promoted(notifier)

    # The variable appears (a Secret mounted, the operator restarted): the next configure
    # turns the endpoint on; the event already sent is not sent again.
    assert notifier.configure(env.spec.notifications, environ=environ(receiver)) == ()
    promoted(notifier)
    promoted(notifier, version=8)
    assert notifier.close(5)
    assert [r.json()["key"] for r in receiver.on("/audit")] == ["fraud-detector/champion/v8"]
    assert len(receiver.on(f"/services/{SLACK_SECRET}")) == 2


def test_configure_with_the_same_endpoints_keeps_them(receiver: Receiver, tmp_path: Path) -> None:
    env = environment(audit(receiver, "PromotionCommitted"))
    notifier = Notifier.for_environment(env, state_dir=tmp_path, environ=environ(receiver), **FAST)
    before = notifier.endpoints
    for _ in range(3):
        notifier.configure(env.spec.notifications, environ=environ(receiver))
    assert notifier.endpoints == before
    assert len([t for t in threading.enumerate() if t.name == "mlgitops-notify-audit"]) == 1
    notifier.close(5)
    time.sleep(0.05)
    assert not [t for t in threading.enumerate() if t.name == "mlgitops-notify-audit"]


def test_an_unknown_event_is_logged_not_raised(
    receiver: Receiver, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    env = environment(audit(receiver, "PromotionCommitted"))
    notifier = Notifier.for_environment(env, state_dir=tmp_path, environ=environ(receiver), **FAST)
    notifier.notify("Promoted", "k", message="m")
    assert notifier.close(5)
    assert receiver.on("/audit") == []
    assert "'Promoted': not an event" in caplog.text
