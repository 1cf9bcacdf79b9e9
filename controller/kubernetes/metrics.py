"""Prometheus metrics of the controller, in one registry so ``/metrics`` shows exactly these.

Names follow Prometheus conventions (``_seconds``, ``_total``); label values are bounded (reasons,
aliases, object names of one environment), so cardinality stays that of the ModelDeployments.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

REGISTRY = CollectorRegistry(auto_describe=True)

RECONCILE_SECONDS = Histogram(
    "mlgitops_reconcile_duration_seconds",
    "Time of one reconcile pass of a ModelDeployment.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
RECONCILE_ERRORS = Counter(
    "mlgitops_reconcile_errors_total",
    "Reconcile passes that ended in an error, by reason.",
    ["reason"],
    registry=REGISTRY,
)
ALIAS_CHANGES = Counter(
    "mlgitops_alias_changes_total",
    "Registry alias changes made by the controller.",
    ["alias"],
    registry=REGISTRY,
)
READY = Gauge(
    "mlgitops_modeldeployment_ready",
    "1 when the ModelDeployment's Ready condition is True, else 0.",
    ["namespace", "name"],
    registry=REGISTRY,
)
GIT_REVISION = Gauge(
    "mlgitops_git_revision_info",
    "The config revision last applied from Git (value 1, revision in the label).",
    ["environment", "revision"],
    registry=REGISTRY,
)
GIT_LAST_SYNC = Gauge(
    "mlgitops_git_last_sync_timestamp_seconds",
    "Unix time of the last successful Git sync; age is time() minus this.",
    ["environment"],
    registry=REGISTRY,
)
GIT_SYNC_ERRORS = Counter(
    "mlgitops_git_sync_errors_total",
    "Git syncs that applied nothing, by reason.",
    ["environment", "reason"],
    registry=REGISTRY,
)


TRAINING_EVENTS = Counter(
    "mlgitops_training_events_total",
    "Training runs started, succeeded and failed (and sources blocked), by Event reason.",
    ["reason"],
    registry=REGISTRY,
)

PROMOTION_EVENTS = Counter(
    "mlgitops_promotion_events_total",
    "Validations started, passed and failed, and write-backs (challenger proposed, promotion "
    "committed, awaiting approval, failed), by Event reason.",
    ["reason"],
    registry=REGISTRY,
)

NOTIFICATIONS = Counter(
    "mlgitops_notifications_total",
    "Notifications by event, endpoint and result (delivered, failed after retries, dropped).",
    ["event", "endpoint", "result"],
    registry=REGISTRY,
)


def set_revision(environment: str, revision: str) -> None:
    GIT_REVISION.clear()
    GIT_REVISION.labels(environment=environment, revision=revision).set(1)


def render() -> bytes:
    return generate_latest(REGISTRY)


def notification_result(endpoint: str, event: str, result: str) -> None:
    """A ``Notifier``'s ``on_result``: count each delivery's outcome."""
    NOTIFICATIONS.labels(event=event, endpoint=endpoint, result=result).inc()
