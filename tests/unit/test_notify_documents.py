"""Environment.spec.notifications: what a document may say, and the errors when it says it wrong.

Each problem names the file, line and field, through the same loader as every other field.
"""

from __future__ import annotations

import pytest

from controller.api.documents import NOTIFICATION_EVENTS
from controller.api.loader import load_environment
from controller.errors import InvalidInput

ENV = """apiVersion: mlgitops.io/v1alpha1
kind: Environment
metadata: {name: prod}
spec:
  catalog: prod
  namespace: ml-prod
  notifications:
"""
MD = """apiVersion: mlgitops.io/v1alpha1
kind: ModelDeployment
metadata: {name: fraud}
spec:
  model: fraud.detector
"""
JSON = """    - name: audit
      url: https://hooks.example.com/mlgitops
      tokenEnv: MLGITOPS_NOTIFY_AUDIT_TOKEN
      events: [PromotionCommitted, RollbackDetected]
"""
SLACK = """    - name: team
      format: slack
      urlEnv: MLGITOPS_NOTIFY_SLACK_URL
      events: [ValidationFailed, AwaitingApproval]
"""


def problems(endpoints: str) -> list[str]:
    files = {"e/env.yaml": ENV + endpoints, "e/md.yaml": MD}
    try:
        load_environment(files, env_name="prod", revision="r", folder="e")
    except InvalidInput as exc:
        return [str(p) for p in exc.problems]
    return []


def test_endpoints_load_with_camel_case_fields() -> None:
    state = load_environment(
        {"e/env.yaml": ENV + JSON + SLACK, "e/md.yaml": MD},
        env_name="prod",
        revision="r",
        folder="e",
    )
    audit, team = state.environment.spec.notifications
    assert (audit.name, audit.format, audit.url, audit.url_env) == (
        "audit",
        "json",
        "https://hooks.example.com/mlgitops",
        None,
    )
    assert audit.token_env == "MLGITOPS_NOTIFY_AUDIT_TOKEN"
    assert audit.events == ["PromotionCommitted", "RollbackDetected"]
    assert (team.format, team.url, team.url_env) == ("slack", None, "MLGITOPS_NOTIFY_SLACK_URL")


def test_no_notifications_is_the_default() -> None:
    env = ENV.replace("  notifications:\n", "")
    state = load_environment(
        {"e/env.yaml": env, "e/md.yaml": MD}, env_name="prod", revision="r", folder="e"
    )
    assert state.environment.spec.notifications == []


def test_every_event_the_controller_knows_may_be_listed() -> None:
    listed = JSON.replace(
        "[PromotionCommitted, RollbackDetected]", f"[{', '.join(NOTIFICATION_EVENTS)}]"
    )
    assert problems(listed) == []
    assert len(NOTIFICATION_EVENTS) == 10


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("[PromotionCommitted, RollbackDetected]", "[PromotionCommitted, Promoted]"),
            "e/env.yaml:11: spec.notifications.0.events.1: must be 'ValidationFailed', "
            "'ChallengerProposed', ",
        ),
        (
            ("[PromotionCommitted, RollbackDetected]", "[]"),
            "e/env.yaml:11: spec.notifications.0.events: List should have at least 1 item",
        ),
        (
            ("[PromotionCommitted, RollbackDetected]", "[PromotionCommitted, PromotionCommitted]"),
            "e/env.yaml:8: spec.notifications.0: events lists PromotionCommitted more than once",
        ),
        (
            ("      tokenEnv: MLGITOPS_NOTIFY_AUDIT_TOKEN\n", ""),
            "e/env.yaml:8: spec.notifications.0: a json endpoint needs tokenEnv",
        ),
        (
            ("MLGITOPS_NOTIFY_AUDIT_TOKEN", "MLFLOW_TRACKING_TOKEN"),
            "e/env.yaml:10: spec.notifications.0.tokenEnv: String should match pattern "
            "'^MLGITOPS_NOTIFY_",
        ),
        (
            ("      url: https://hooks.example.com/mlgitops\n", ""),
            "e/env.yaml:8: spec.notifications.0: give exactly one of url and urlEnv",
        ),
        (
            ("      url: https://hooks.example.com/mlgitops\n", "      url: hooks.example.com\n"),
            "e/env.yaml:9: spec.notifications.0.url: must be an http:// or https:// URL",
        ),
        (
            ("    - name: audit", "    - name: Audit_Log"),
            "e/env.yaml:8: spec.notifications.0.name: String should match pattern",
        ),
        (
            ("    - name: audit", "    - name: audit\n      colour: red"),
            "e/env.yaml:9: spec.notifications.0.colour: unknown field",
        ),
    ],
)
def test_a_bad_endpoint_names_file_line_and_field(change: tuple[str, str], expected: str) -> None:
    found = problems(JSON.replace(*change))
    assert len(found) == 1, found
    assert found[0].startswith(expected), found


@pytest.mark.parametrize(
    "url",
    [
        "https://alice:s3cret@hooks.example.com/x",
        "https://hooks.example.com/x?token=s3cret",
        "https://hooks.example.com/x?a=1&secret=s3cret",
    ],
)
def test_a_url_with_credentials_is_refused_like_a_tracking_uri(url: str) -> None:
    """Credentials in Git leak to every reader; a URL that needs them comes through urlEnv."""
    [problem] = problems(JSON.replace("https://hooks.example.com/mlgitops", url))
    assert problem.startswith(
        "e/env.yaml:9: spec.notifications.0.url: must not carry credentials"
    ), problem
    assert "urlEnv" in problem
    assert "s3cret" not in problem


def test_a_slack_webhook_url_is_a_credential() -> None:
    slack = SLACK.replace(
        "urlEnv: MLGITOPS_NOTIFY_SLACK_URL", "url: https://hooks.slack.com/services/T0/B0/abc"
    )
    [problem] = problems(slack)
    assert problem.startswith("e/env.yaml:10: spec.notifications.0.url: is a Slack webhook URL")
    assert "urlEnv" in problem


def test_slack_bodies_are_not_signed() -> None:
    slack = SLACK + "      tokenEnv: MLGITOPS_NOTIFY_T\n"
    [problem] = problems(slack)
    assert problem.startswith("e/env.yaml:8: spec.notifications.0: slack bodies are not signed")


def test_endpoint_names_are_unique() -> None:
    [problem] = problems(JSON + JSON)
    assert problem == (
        "e/env.yaml:7: spec.notifications: endpoint names must be unique: audit used more than once"
    )
