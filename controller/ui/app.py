"""The dashboard's HTTP side: read-only pages and the JSON API behind them, on aiohttp.

``mlgitops ui`` serves these routes alone; the operator adds them to its own HTTP port (metrics,
probes, webhook) with ``--ui``. Where the data comes from is a :class:`Collector`: the state
directory on one machine (``local.dashboard``), the API objects in a cluster
(``kubernetes.dashboard``). Collectors block (files, the Kubernetes API, MLflow), so they run
in a worker thread; a model's record (registry, Git, metric tables) is kept for a few seconds,
since the registry, not the page, is the slow part.

Only GET exists: nothing here changes anything. Bound to loopback, no token is needed; bound
elsewhere, ``serve`` refuses to start without one, and every UI route then wants it (as
``Authorization: Bearer``, or once as ``?token=``, which sets an HttpOnly cookie).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hmac
import importlib.resources
import ipaddress
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol
from urllib.parse import urlencode

from aiohttp import web

from controller.ui import pages, views
from controller.ui.views import EnvSnapshot

COOKIE = "mlgitops_ui_token"
DETAIL_TTL = 10.0  # seconds a model's record (registry, Git, metric tables) is reused
STATIC = {"ui.css": "text/css", "ui.js": "text/javascript"}
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "style-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Collector(Protocol):
    """Where the dashboard's data comes from."""

    @property
    def label(self) -> str:
        """What the footer says the data is (a state directory, a namespace)."""
        ...

    def snapshots(self) -> list[EnvSnapshot]:
        """Every environment shown, as last recorded. Cheap: no registry or Git."""
        ...

    def detail(self, env: str, name: str) -> dict[str, Any] | None:
        """``detail.model_detail`` of ModelDeployment ``name`` in ``env`` (None: not there)."""
        ...


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Dashboard:
    """The routes, bound to one collector and (maybe) one token."""

    def __init__(self, collector: Collector, *, token: str | None = None) -> None:
        self.collector = collector
        self.token = token or None
        self._details: dict[tuple[str, str], tuple[float, dict[str, Any] | None]] = {}
        static = importlib.resources.files("controller.ui") / "static"
        self._static = {name: (static / name).read_bytes() for name in STATIC}

    def routes(self) -> list[web.RouteDef]:
        guard = self._guarded
        return [
            web.get("/", guard(self.overview_page)),
            web.get("/models/{name}", guard(self.model_page)),
            web.get("/environments/{env}", guard(self.environment_page)),
            web.get("/api/overview", guard(self.overview_api)),
            web.get("/api/models/{name}", guard(self.model_api)),
            web.get("/api/environments/{env}", guard(self.environment_api)),
            web.get("/static/{file}", self.static),
        ]

    def app(self) -> web.Application:
        app = web.Application()
        app.add_routes(self.routes())
        return app

    # --- access ---------------------------------------------------------------------------

    def _allowed(self, request: web.Request) -> bool:
        if self.token is None:
            return True
        offered = request.cookies.get(COOKIE, "")
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            offered = auth.removeprefix("Bearer ").strip()
        return hmac.compare_digest(offered.encode(), self.token.encode())

    def _guarded(self, handler: Handler) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            given = request.query.get("token")
            if self.token is not None and given is not None:
                if not hmac.compare_digest(given.encode(), self.token.encode()):
                    return self._text(401, "wrong token")
                rest = {k: v for k, v in request.query.items() if k != "token"}
                target = request.path + (f"?{urlencode(rest)}" if rest else "")
                moved = web.HTTPSeeOther(target)
                moved.set_cookie(COOKIE, self.token, httponly=True, samesite="Strict")
                return moved
            if not self._allowed(request):
                return self._text(
                    401, "a token is required: Authorization: Bearer <token>, or ?token=<token>"
                )
            response = await handler(request)
            response.headers.update(HEADERS)
            response.enable_compression()  # when the client accepts it: 1.7 MB -> 33 KiB
            return response

        return guarded

    # --- data -----------------------------------------------------------------------------

    async def _snapshots(self) -> list[EnvSnapshot]:
        return await asyncio.to_thread(self.collector.snapshots)

    async def _model(self, name: str) -> tuple[list[EnvSnapshot], dict[str, Any] | None]:
        snaps = await self._snapshots()
        details = {}
        for env in snaps:
            if name in env.models:
                details[env.name] = await self._detail(env.name, name)
        data = views.model(
            name, snaps, {k: v for k, v in details.items() if v is not None}, now=_now()
        )
        return snaps, data

    async def _detail(self, env: str, name: str) -> dict[str, Any] | None:
        key = (env, name)
        kept = self._details.get(key)
        if kept is not None and time.monotonic() - kept[0] < DETAIL_TTL:
            return kept[1]
        found = await asyncio.to_thread(self.collector.detail, env, name)
        self._details[key] = (time.monotonic(), found)
        return found

    # --- pages ----------------------------------------------------------------------------

    def _html(self, body: str, status: int = 200) -> web.Response:
        return web.Response(text=body, status=status, content_type="text/html", charset="utf-8")

    def _text(self, status: int, message: str) -> web.Response:
        response = web.json_response({"error": message}, status=status)
        response.headers.update(HEADERS)
        return response

    def _not_found(self, message: str, snaps: list[EnvSnapshot]) -> web.Response:
        envs = [e.name for e in snaps]
        body = pages.error(404, message, root="/", envs=envs, source=self.collector.label)
        return self._html(body, status=404)

    async def _overview(self, request: web.Request) -> dict[str, Any]:
        """The overview, filtered by ``?q=`` (name) and ``?state=``."""
        return views.overview(
            await self._snapshots(),
            query=request.query.get("q", ""),
            state=request.query.get("state", ""),
            now=_now(),
        )

    async def overview_page(self, request: web.Request) -> web.Response:
        data = await self._overview(request)
        if request.headers.get("X-Fragment") == "rows":
            response = self._html(pages.overview_rows(data, root="/"))
            response.headers["X-Shown"] = f"{len(data['models'])} of {data['total']} models"
            response.headers["X-Generated"] = data["generated"] or ""
            return response
        return self._html(pages.overview(data, root="/", source=self.collector.label))

    async def model_page(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        snaps, data = await self._model(name)
        if data is None:
            return self._not_found(f"no ModelDeployment named {name!r} in any environment", snaps)
        envs = [e.name for e in snaps]
        return self._html(pages.model(data, root="/", envs=envs, source=self.collector.label))

    async def environment_page(self, request: web.Request) -> web.Response:
        name = request.match_info["env"]
        snaps = await self._snapshots()
        env = next((e for e in snaps if e.name == name), None)
        if env is None:
            return self._not_found(f"no environment named {name!r}", snaps)
        data = {**views.environment(env), "generated": _now()}
        envs = [e.name for e in snaps]
        return self._html(pages.environment(data, root="/", envs=envs, source=self.collector.label))

    # --- JSON -----------------------------------------------------------------------------

    async def overview_api(self, request: web.Request) -> web.Response:
        return web.json_response(await self._overview(request))

    async def model_api(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        _, data = await self._model(name)
        if data is None:
            return self._text(404, f"no ModelDeployment named {name!r} in any environment")
        return web.json_response(data)

    async def environment_api(self, request: web.Request) -> web.Response:
        name = request.match_info["env"]
        env = next((e for e in await self._snapshots() if e.name == name), None)
        if env is None:
            return self._text(404, f"no environment named {name!r}")
        return web.json_response({**views.environment(env), "generated": _now()})

    async def static(self, request: web.Request) -> web.Response:
        name = request.match_info["file"]
        if name not in self._static:
            return self._text(404, f"no static file {name!r}")
        response = web.Response(body=self._static[name], content_type=STATIC[name])
        response.headers.update(HEADERS)
        response.headers["Cache-Control"] = "max-age=300"
        return response


def check_binding(host: str, token: str | None) -> str | None:
    """Why serving on ``host`` with ``token`` is refused; None when it is allowed."""
    if not is_loopback(host) and not token:
        return (
            f"--host {host}: not a loopback address, so a token is required "
            "(--token or $MLGITOPS_UI_TOKEN)"
        )
    return None
