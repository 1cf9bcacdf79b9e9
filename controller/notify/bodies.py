"""What a notification looks like on the wire: a signed JSON document, or a Slack message.

Bodies are built once, when the event is queued, and sent byte for byte on every attempt, so a
retried delivery carries the same ``X-Mlgitops-Delivery`` id and the same signature and a
receiver can drop a repeat. The signature is GitHub's webhook scheme (the one the controller
itself verifies on pushes), under a header of our own: ``sha256=`` and the hex HMAC-SHA256 of the
raw body keyed with the endpoint's token.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import controller
from controller.api.documents import API_VERSION
from controller.redact import redact

__all__ = [
    "DELIVERY_HEADER",
    "EVENT_HEADER",
    "SIGNATURE_HEADER",
    "Notification",
    "delivery_id",
    "json_body",
    "json_headers",
    "sign",
    "slack_body",
    "slack_headers",
    "verify",
]

SIGNATURE_HEADER = "X-Mlgitops-Signature-256"
EVENT_HEADER = "X-Mlgitops-Event"
DELIVERY_HEADER = "X-Mlgitops-Delivery"
USER_AGENT = f"mlgitops/{controller.__version__}"

_MAX_MESSAGE = 8000  # a message is a sentence or two; a pasted traceback is cut
# Slack's limits: a section's text 3000 characters, 10 fields of 2000 each.
_SLACK_TEXT = 3000
_SLACK_FIELDS = 10
_SLACK_FIELD = 2000


@dataclass(frozen=True)
class Notification:
    """One occurrence, as the controller reports it; ``key`` identifies it for deduplication."""

    environment: str
    event: str
    key: str
    model: str | None
    message: str
    fields: Mapping[str, Any]
    time: str  # RFC 3339, UTC

    @property
    def id(self) -> str:
        return delivery_id(self.environment, self.event, self.key)


def delivery_id(environment: str, event: str, key: str) -> str:
    """Stable across retries and restarts, so a receiver can deduplicate on it."""
    return hashlib.sha256(f"{environment}\0{event}\0{key}".encode()).hexdigest()[:32]


def sign(token: str, body: bytes) -> str:
    """The ``X-Mlgitops-Signature-256`` value of ``body``: ``sha256=<hex HMAC-SHA256>``."""
    return "sha256=" + hmac.new(token.encode(), body, hashlib.sha256).hexdigest()


def verify(token: str, body: bytes, header: str | None) -> bool:
    """What a receiver does: compare the header with the body's signature in constant time."""
    return header is not None and hmac.compare_digest(sign(token, body), header)


def _clean(value: Any) -> Any:
    # Messages quote errors, and errors quote URLs: no credential leaves in a notification.
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact(str(value))


def json_body(n: Notification) -> bytes:
    """The JSON document, compact, keys sorted (so equal events give equal bytes)."""
    payload = {
        "apiVersion": API_VERSION,
        "kind": "Notification",
        "id": n.id,
        "event": n.event,
        "key": redact(n.key),
        "environment": n.environment,
        "model": n.model,
        "message": redact(n.message)[:_MAX_MESSAGE],
        "fields": _clean(n.fields),
        "time": n.time,
    }
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode()


def json_headers(n: Notification, body: bytes, token: str | None) -> dict[str, str]:
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        EVENT_HEADER: n.event,
        DELIVERY_HEADER: n.id,
    }
    if token is not None:
        headers[SIGNATURE_HEADER] = sign(token, body)
    return headers


def _escape(text: str) -> str:
    # Slack's mrkdwn reserves these three; everything else is literal.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _show(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def slack_body(n: Notification) -> bytes:
    """A Slack incoming-webhook message: ``text`` (what notifications and old clients show) and
    ``blocks`` (the event, the message, the fields, and the key in a footer)."""
    message = redact(n.message)
    where = f"[{n.environment}] {n.event}" + (f" {n.model}" if n.model else "")
    text = _cut(f"{where}: {message}", _SLACK_TEXT)
    title = f"*{_escape(n.event)}* · `{_escape(n.environment)}`"
    if n.model:
        title += f" · *{_escape(n.model)}*"
    blocks: list[dict[str, Any]] = [
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": _cut(f"{title}\n{_escape(message)}", _SLACK_TEXT)},
        }
    ]
    fields = _clean(n.fields)
    if fields:
        blocks.append(
            {
                "type": "section",
                "fields": [
                    {
                        "type": "mrkdwn",
                        "text": _cut(f"*{_escape(name)}*\n{_escape(_show(value))}", _SLACK_FIELD),
                    }
                    for name, value in list(fields.items())[:_SLACK_FIELDS]
                ],
            }
        )
    blocks.append(
        {
            "type": "context",
            "elements": [
                {"type": "mrkdwn", "text": _cut(f"mlgitops · {_escape(redact(n.key))}", 300)}
            ],
        }
    )
    return json.dumps({"text": text, "blocks": blocks}, default=str).encode()


def slack_headers() -> dict[str, str]:
    return {"Content-Type": "application/json", "User-Agent": USER_AGENT}
