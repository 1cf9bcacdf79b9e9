"""The operator's HTTP port: Prometheus metrics, the probes, the Git webhook, and the dashboard.

Separate from the kopf handlers so it can be read (and tested) without kopf: it knows nothing of
ModelDeployments, only how to answer. What "ready" means and what a push does are passed in by
the operator that starts it, and so are the dashboard's routes (``--ui``), which guard
themselves with their token: the metrics, probes and webhook never ask for it (Prometheus and
the kubelet have none; the webhook has its signature).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from aiohttp import web

from controller.kubernetes import metrics
from controller.sources.webhook import MAX_BODY, SIGNATURE_HEADER, verify_signature

log = logging.getLogger("mlgitops.operator")


async def start(
    *,
    host: str,
    port: int,
    readiness: Callable[[], tuple[bool, Mapping[str, Any]]],
    webhook_token: str | None,
    on_push: Callable[[bytes], None] | None,
    routes: Sequence[web.RouteDef] = (),
) -> web.AppRunner:
    """Serve ``/metrics``, ``/healthz``, ``/readyz`` and ``POST /webhook`` until the runner stops.

    ``readiness()`` says whether the operator is ready and what to show; ``on_push`` runs for a
    correctly signed webhook, with its body (None, or no token: the webhook answers 404).
    ``routes`` are served beside them (the dashboard's).
    """

    async def metrics_page(_: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), content_type="text/plain", charset="utf-8")

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        ready, detail = readiness()
        return web.json_response(dict(detail), status=200 if ready else 503)

    async def webhook(request: web.Request) -> web.Response:
        if not webhook_token or on_push is None:
            return web.json_response(
                {"error": "webhook disabled: no token ($MLGITOPS_WEBHOOK_TOKEN)"}, status=404
            )
        body = await request.read()
        if not verify_signature(webhook_token, body, request.headers.get(SIGNATURE_HEADER)):
            return web.json_response({"error": "bad signature"}, status=401)
        on_push(body)
        return web.json_response({"status": "sync triggered"}, status=202)

    app = web.Application(client_max_size=MAX_BODY)
    app.add_routes(
        [
            web.get("/metrics", metrics_page),
            web.get("/healthz", healthz),
            web.get("/readyz", readyz),
            web.post("/webhook", webhook),
            *routes,
        ]
    )
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info(
        "metrics, health and webhook%s on %s:%d", " and the dashboard" if routes else "", host, port
    )
    return runner
