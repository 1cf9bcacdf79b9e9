"""Prometheus metrics of the model server, in a registry of their own (``/metrics`` shows these).

Labels are the served model, its version and its role, so a dashboard compares champion and
challenger side by side; their values are bounded by the versions one process ever serves. With
``--workers N`` the workers share a ``PROMETHEUS_MULTIPROC_DIR`` set by the supervisor, and every
worker answers ``/metrics`` with the sum over all of them.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

REGISTRY = CollectorRegistry(auto_describe=True)

REQUESTS = Counter(
    "mlgitops_serving_requests",
    "Scoring requests answered, by model, version and role (champion or challenger).",
    ["model", "version", "role"],
    registry=REGISTRY,
)
ERRORS = Counter(
    "mlgitops_serving_errors",
    "Scoring requests answered with an error, by model, version, role and HTTP status.",
    ["model", "version", "role", "status"],
    registry=REGISTRY,
)
LATENCY = Histogram(
    "mlgitops_serving_request_duration_seconds",
    "Time from the request's arrival to its response, by model, version and role.",
    ["model", "version", "role"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=REGISTRY,
)
MODEL_LOADS = Counter(
    "mlgitops_serving_model_loads",
    "Model loads, by result (success or error); a failed load keeps the models in service.",
    ["result"],
    registry=REGISTRY,
)
CONFIG_RELOADS = Counter(
    "mlgitops_serving_config_reloads",
    "Serving configuration reloads (SIGHUP or a changed --config file), by result.",
    ["result"],
    registry=REGISTRY,
)
NOT_READY = Counter(
    "mlgitops_serving_not_ready_requests",
    "Scoring requests refused with 503 because no model was loaded yet.",
    registry=REGISTRY,
)
INFERENCE_LOG_FAILURES = Counter(
    "mlgitops_serving_inference_log_failures",
    "Inference records the server could not hand to the inference log (the request still "
    "succeeded).",
    registry=REGISTRY,
)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def render() -> bytes:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        merged = CollectorRegistry()
        MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
        return generate_latest(merged)
    return generate_latest(REGISTRY)
