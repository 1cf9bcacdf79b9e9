"""Monitoring alerts in the controller's pass, for both runtimes.

``mlgitops monitor`` leaves its alerts on the registered model (``pipeline.monitoring``); each
pass over a ModelDeployment with ``monitoring`` reads that tag, and when its value changed since
this process last saw it, returns the alerts as Events with their notification keys. The
runtime posts or prints the Events and sends the notifications, which the notifications' ledger
delivers once per key: a restarted controller reports the last alerts again, but notifies no one
twice.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from controller.errors import Unavailable
from controller.pipeline.monitoring import TAG_MONITOR_ALERTS, decode
from controller.planning.ports import Tracking
from controller.training import Event

__all__ = ["AlertWatch"]


@dataclass
class AlertWatch:
    """The alert tag values this process has reported, per registered model."""

    seen: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def check(self, registered_model: str, tracking: Tracking) -> list[tuple[Event, str]]:
        """(Event, notification key) of each alert of a new tag value; none when MLflow cannot
        be read (the next pass tries again) or nothing changed."""
        try:
            value = tracking.model_tags(registered_model).get(TAG_MONITOR_ALERTS)
        except Unavailable:
            return []
        with self._lock:
            if value is None or self.seen.get(registered_model) == value:
                return []
            self.seen[registered_model] = value
        return [
            (Event("Warning", a.reason, a.message), a.key(registered_model)) for a in decode(value)
        ]
