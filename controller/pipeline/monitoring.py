"""What a monitoring run tells the controller: its alerts, carried by a registered-model tag.

The monitor runs as a CronJob or a local process, without the Environment's notification
endpoints or their secrets; the controller has both. So ``mlgitops monitor`` puts the alerts of
the windows it computed (a drift, a quality bound breached, retraining due) on the registered
model as one JSON tag, and each controller pass that sees a new value reports them: Events on
the ModelDeployment, and notifications keyed by model, event and window, which the
notifications' ledger sends once per window however often the window is computed again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

__all__ = ["ALERT_EVENTS", "TAG_MONITOR_ALERTS", "Alert", "decode", "encode"]

TAG_MONITOR_ALERTS = "mlgitops.monitor.alerts"
ALERT_EVENTS = ("DriftDetected", "QualityBreached", "RetrainingDue")
MAX_TAG = 4500  # MLflow keeps tag values up to 5000 characters


@dataclass(frozen=True)
class Alert:
    reason: str  # one of ALERT_EVENTS
    window: str
    message: str

    def key(self, model: str) -> str:
        """What a notification of it is deduplicated by: once per model, event and window."""
        return f"{model}/{self.reason}/{self.window}"


def encode(alerts: list[Alert]) -> str:
    """The tag's value: the alerts as JSON, the oldest dropped until it fits."""
    kept = list(alerts)
    while True:
        value = json.dumps(
            [{"reason": a.reason, "window": a.window, "message": a.message} for a in kept]
        )
        if len(value) <= MAX_TAG or not kept:
            return value
        kept.pop(0)


def decode(value: str) -> list[Alert]:
    """The alerts of a tag's value; nothing from a value that is not what ``encode`` writes."""
    try:
        items = json.loads(value)
    except ValueError:
        return []
    if not isinstance(items, list):
        return []
    out = []
    for item in items:
        if (
            isinstance(item, dict)
            and item.get("reason") in ALERT_EVENTS
            and isinstance(item.get("window"), str)
            and isinstance(item.get("message"), str)
        ):
            out.append(Alert(item["reason"], item["window"], item["message"]))
    return out
