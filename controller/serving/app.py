"""The model server: an ASGI app serving a champion and an optional challenger, swapped live.

Everything a request needs hangs off one immutable :class:`Active` (the models, the split, the
response headers and metric series, all built at load). A request reads ``state.active`` once and
uses only that object, so a swap is a single reference assignment: the new models are loaded
first, in a background thread, while the old ones keep serving; requests already in flight finish
on the model they started with, and the old models are released when the last of them returns.
A load that fails changes nothing but a log line and ``mlgitops_serving_model_loads_total
{result="error"}``.

``/invocations`` is a raw ASGI endpoint rather than a Starlette handler: it bounds the body as it
arrives and sends prebuilt headers, which is most of the server's own per-request cost.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import importlib
import logging
import math
import os
import random
import re
import signal
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from prometheus_client import Counter, Histogram
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import controller
from controller.errors import one_line
from controller.serving import metrics
from controller.serving.config import (
    ConfigError,
    ServeSettings,
    ServingConfig,
    load_config_file,
    routing_bucket,
)
from controller.serving.models import LoadedModel, load, resolve
from controller.serving.protocol import (
    ClientError,
    ModelError,
    error_body,
)

__all__ = ["Active", "InferenceSink", "Served", "ServingState", "create_app"]

log = logging.getLogger("mlgitops.serving")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

CHAMPION, CHALLENGER = "champion", "challenger"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
_DRAIN_LIMIT = 64 * 1024 * 1024  # past this, an oversized body is not read to its end
_RETRY_MAX_SECONDS = 30.0
# A model measured fast at load scores on the event loop (no thread hand-off, which under the
# GIL costs more than it saves); a body larger than this is parsed in a thread all the same.
_INLINE_MAX_BYTES = 256 * 1024


class InferenceSink(Protocol):
    """What the server needs of the inference log: a non-blocking append."""

    def append(self, record: dict[str, Any]) -> Any: ...


@dataclass(frozen=True, eq=False)
class Served:
    """A loaded model in a role, with what its responses and metrics need, built once."""

    model: LoadedModel
    role: str
    headers: tuple[tuple[bytes, bytes], ...]
    requests: Counter
    latency: Histogram

    @classmethod
    def build(cls, model: LoadedModel, role: str) -> Served:
        labels = {"model": model.name, "version": model.version, "role": role}
        return cls(
            model=model,
            role=role,
            headers=(
                (b"content-type", b"application/json"),
                (b"x-model-name", _header(model.name)),
                (b"x-model-version", _header(model.version)),
                (b"x-model-role", role.encode()),
            ),
            requests=metrics.REQUESTS.labels(**labels),
            latency=metrics.LATENCY.labels(**labels),
        )

    def count_error(self, status: int) -> None:
        model = self.model
        metrics.ERRORS.labels(
            model=model.name, version=model.version, role=self.role, status=str(status)
        ).inc()


def _header(value: str) -> bytes:
    return value.encode("latin-1", "replace")


@dataclass(frozen=True, eq=False)
class Active:
    """The models in service and the split between them: replaced whole, never mutated."""

    config: ServingConfig
    champion: Served
    challenger: Served | None
    traffic: int  # percent to the challenger
    since: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat())

    def pick(self, routing_key: str | None) -> Served:
        challenger = self.challenger
        if challenger is None or self.traffic <= 0:
            return self.champion
        if routing_key is not None:
            hit = routing_bucket(routing_key) < self.traffic
        else:
            hit = random.random() * 100.0 < self.traffic
        return challenger if hit else self.champion

    def models(self) -> list[LoadedModel]:
        return [s.model for s in (self.champion, self.challenger) if s is not None]

    def describe(self) -> dict[str, Any]:
        return {
            "champion": self.champion.model.describe(),
            "challenger": self.challenger.model.describe() if self.challenger else None,
            "challengerTraffic": self.traffic,
            "since": self.since,
        }


Loader = Callable[..., LoadedModel]


class ServingState:
    """The models in service, how to swap them, and the thread that reloads the configuration."""

    def __init__(self, settings: ServeSettings, *, loader: Loader = load) -> None:
        self.settings = settings
        self.active: Active | None = None
        self.problem: str | None = "loading the models"
        self.inference_log: InferenceSink | None = None
        self._loader = loader
        self._swap_lock = threading.Lock()
        self._trigger = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._file_seen: tuple[int, int, int] | None = None

    @property
    def ready(self) -> bool:
        return self.active is not None

    # -- swaps -----------------------------------------------------------------------------------

    def swap(self, config: ServingConfig) -> Active:
        """Serve ``config`` from now on: load what is new, then switch in one assignment.

        Models already loaded (same registered version) are reused, so a traffic change or a
        challenger promoted to champion loads nothing. Raises when a model cannot be loaded; the
        models in service are then left untouched. Safe to call from any thread.
        """
        with self._swap_lock:
            old = self.active
            # Registered versions are immutable: reuse them. A path or runs:/ URI is loaded
            # again, so SIGHUP also picks up a model rewritten in place.
            loaded = {
                m.resolved_uri: m
                for m in (old.models() if old else [])
                if m.resolved_uri.startswith("models:/")
            }
            champion = self._obtain(config.champion, loaded)
            challenger = self._obtain(config.challenger, loaded) if config.challenger else None
            new = Active(
                config=config,
                champion=Served.build(champion, CHAMPION),
                challenger=Served.build(challenger, CHALLENGER) if challenger else None,
                traffic=config.challenger_traffic if challenger else 0,
            )
            self.active = new  # the swap: requests from here on use the new models
            self.problem = None
        log.info(
            "serving champion %s (version %s)%s",
            champion.uri,
            champion.version,
            f", challenger {challenger.uri} (version {challenger.version}) at {new.traffic}%"
            if challenger
            else "",
        )
        return new

    def _obtain(self, uri: str, loaded: dict[str, LoadedModel]) -> LoadedModel:
        try:
            resolved = resolve(uri)
            existing = loaded.get(resolved[0])
            if existing is not None:
                if existing.uri == uri:
                    return existing
                return dataclasses.replace(existing, uri=uri)
            model = self._loader(uri, resolved=resolved, inline=self.settings.predict)
        except Exception:
            metrics.MODEL_LOADS.labels(result="error").inc()
            raise
        metrics.MODEL_LOADS.labels(result="success").inc()
        return model

    def desired_config(self) -> ServingConfig:
        path = self.settings.config_file
        if path is None:
            return self.settings.config
        self._file_seen = _file_signature(path)
        return load_config_file(path)

    def reload(self) -> bool:
        """Read the configuration again (the file, if any) and swap to it. False on failure."""
        try:
            config = self.desired_config()
            self.swap(config)
        except ConfigError as exc:
            self._failed(f"invalid serving configuration: {exc}")
            return False
        except Exception as exc:
            self._failed(f"could not load the models: {type(exc).__name__}: {one_line(exc)}")
            return False
        metrics.CONFIG_RELOADS.labels(result="success").inc()
        return True

    def _failed(self, message: str) -> None:
        metrics.CONFIG_RELOADS.labels(result="error").inc()
        self.problem = message
        if self.active is None:
            log.error("%s; not ready, retrying", message)
        else:
            log.error("%s; still serving the previous models, retrying", message)

    def request_reload(self) -> None:
        """Ask the reload thread to re-read the configuration now (what SIGHUP does)."""
        self._trigger.set()

    # -- the reload thread -----------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="mlgitops-serving-reload", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._trigger.set()

    def _run(self) -> None:
        """Load at start, then reload on request or file change; retry failures with backoff."""
        pending, delay, retry_at = True, 1.0, math.inf
        while not self._stop.is_set():
            if pending or time.monotonic() >= retry_at:
                self._trigger.clear()
                pending = False
                if self.reload():
                    delay, retry_at = 1.0, math.inf
                else:
                    retry_at = time.monotonic() + delay
                    delay = min(delay * 2, _RETRY_MAX_SECONDS)
            if self._trigger.wait(1.0):
                pending = not self._stop.is_set()
            elif self._file_changed():
                pending = True

    def _file_changed(self) -> bool:
        path = self.settings.config_file
        return path is not None and _file_signature(path) != self._file_seen


def _file_signature(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


# -- the HTTP surface ----------------------------------------------------------------------------


class Invocations:
    """``POST /invocations``: MLflow's scoring protocol on the model the split picks."""

    def __init__(self, state: ServingState) -> None:
        self.state = state
        self.limit = state.settings.max_request_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        content_type = routing_key = request_id = length = None
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value.decode("latin-1")
            elif name == b"content-length":
                length = value
            elif name == b"x-routing-key":
                routing_key = value.decode("latin-1")
            elif name == b"x-request-id":
                request_id = value.decode("latin-1")
        if request_id is None or not _REQUEST_ID.fullmatch(request_id):
            request_id = uuid.uuid4().hex
        rid = request_id.encode()
        active = self.state.active
        if active is None:
            metrics.NOT_READY.inc()
            message = f"not ready: {self.state.problem or 'loading the models'}"
            await _drain(receive, self.limit)
            await _send(
                send,
                503,
                error_body("TEMPORARILY_UNAVAILABLE", message),
                ((b"content-type", b"application/json"), (b"retry-after", b"1")),
                rid,
            )
            return
        served = active.pick(routing_key)
        body = b""
        status = 200
        inputs: Any = None  # as the model was handed them: the inference log's rows
        try:
            if length is not None and length.isdigit() and int(length) > self.limit:
                await _drain(receive, _DRAIN_LIMIT)
                raise _too_large(self.limit)
            body = await _read_body(receive, self.limit)
            scorer = served.model.scorer
            if served.model.inline and len(body) <= _INLINE_MAX_BYTES:
                out, inputs = scorer.score_inputs(body, content_type)
            else:
                out, inputs = await run_in_threadpool(scorer.score_inputs, body, content_type)
        except ClientError as exc:
            status, out = exc.status, error_body(exc.code, exc.message)
        except ModelError as exc:
            # The model's own failure can quote data, paths or internals: it goes to the log,
            # and the client gets the request id to find it there.
            status, out = 500, _internal_error(request_id)
            log.error("%s %s: %s", served.model.uri, request_id, exc.message)
        except _Disconnected:
            status, out = 499, b""
        except Exception:  # a bug of ours: answer, log, keep serving
            status, out = 500, _internal_error(request_id)
            log.exception("%s %s: unexpected error", served.model.uri, request_id)
        if status != 499:
            await _send(send, status, out, served.headers, rid)
        elapsed = time.perf_counter() - started
        served.requests.inc()
        served.latency.observe(elapsed)
        if status != 200:
            served.count_error(status)
        sink = self.state.inference_log
        if sink is not None:
            _log_inference(
                sink,
                request_id,
                served,
                routing_key,
                elapsed,
                body,
                content_type,
                inputs,
                out,
                status,
            )


class _Disconnected(Exception):
    pass


def _internal_error(request_id: str) -> bytes:
    return error_body(
        "INTERNAL_ERROR",
        f"the model failed to predict; the server log has the details under request id "
        f"{request_id}",
    )


def _too_large(limit: int) -> ClientError:
    return ClientError(
        f"request body larger than the limit of {limit} bytes (--max-request-bytes)",
        status=413,
        code="REQUEST_LIMIT_EXCEEDED",
    )


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            if message.get("more_body", False):
                await _drain(receive, _DRAIN_LIMIT)
            raise _too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _drain(receive: Receive, limit: int) -> None:
    """Read and drop the rest of a request body, so the client gets to read our answer."""
    size = 0
    while size <= limit:
        message = await receive()
        if message["type"] != "http.request":
            return
        size += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


async def _send(
    send: Send, status: int, body: bytes, headers: tuple[tuple[bytes, bytes], ...], rid: bytes
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                *headers,
                (b"content-length", str(len(body)).encode()),
                (b"x-request-id", rid),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _log_inference(
    sink: InferenceSink,
    request_id: str,
    served: Served,
    routing_key: str | None,
    elapsed: float,
    body: bytes,
    content_type: str | None,
    inputs: Any,
    out: bytes,
    status: int,
) -> None:
    """Hand one record to the inference log; never raises, never blocks the response.

    Only references change hands: the body, the response and the inputs already parsed for the
    prediction are turned into rows on the log's thread (``inference_rows``), which reads a
    failed request's body with the served model's parser (``reader``) there.
    """
    try:
        sink.append(
            {
                "request_id": request_id,
                "timestamp": time.time() - elapsed,  # the request's start
                "model": served.model.name,
                "model_version": served.model.version,
                "role": served.role,
                "routing_key": routing_key,
                "latency_ms": elapsed * 1000.0,
                "status": status,
                "inputs": inputs,
                "body": body,
                "content_type": content_type,
                "response": out,
                "reader": served.model.scorer,
            }
        )
    except Exception:
        metrics.INFERENCE_LOG_FAILURES.inc()


def _open_inference_log(table_uri: str) -> Any:
    """``controller.serving.inference_log.InferenceLog``, imported only when it is asked for."""
    module = importlib.import_module("controller.serving.inference_log")
    cls = module.InferenceLog
    try:
        sink = cls(table_uri, registry=metrics.REGISTRY)
    except TypeError:  # an InferenceLog without a registry parameter
        sink = cls(table_uri)
    sink.start()
    return sink


def create_app(settings: ServeSettings, *, state: ServingState | None = None) -> Starlette:
    """The ASGI app. Its lifespan starts the load/reload thread and the inference log.

    The state is ``app.state.serving`` (a :class:`ServingState`), whose ``swap(config)`` swaps
    models from Python as SIGHUP does from outside.
    """
    state = state or ServingState(settings)

    async def ping(request: Request) -> Response:
        if state.active is None:
            return JSONResponse(
                {"status": "loading", "message": state.problem or "loading the models"},
                status_code=503,
                headers={"retry-after": "1"},
            )
        return JSONResponse({"status": "ready"})

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "alive"})

    async def version(request: Request) -> Response:
        from controller.registry.models import MLFLOW_VERSION

        active = state.active
        return JSONResponse(
            {
                "mlgitops": controller.__version__,
                "mlflow": MLFLOW_VERSION,
                "ready": active is not None,
                "models": active.describe() if active else None,
                "configFile": str(settings.config_file) if settings.config_file else None,
                "problem": state.problem,
            }
        )

    async def prometheus(request: Request) -> Response:
        return Response(metrics.render(), media_type=metrics.CONTENT_TYPE)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        loop = asyncio.get_running_loop()
        hup = False
        try:
            loop.add_signal_handler(signal.SIGHUP, state.request_reload)
            hup = True
        except (RuntimeError, ValueError, NotImplementedError):  # not the main thread
            log.debug("SIGHUP handler not installed (not in the main thread)")
        if settings.inference_log and state.inference_log is None:
            state.inference_log = await run_in_threadpool(
                _open_inference_log, settings.inference_log
            )
        state.start()
        try:
            yield
        finally:
            state.stop()
            if hup:
                loop.remove_signal_handler(signal.SIGHUP)
                signal.signal(signal.SIGHUP, signal.SIG_IGN)  # not SIG_DFL: it would kill us
            sink = state.inference_log
            close = getattr(sink, "close", None)
            if callable(close):
                await run_in_threadpool(close)

    app = Starlette(
        routes=[
            Route("/invocations", Invocations(state), methods=["POST"]),
            Route("/ping", ping, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
            Route("/version", version, methods=["GET"]),
            Route("/metrics", prometheus, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.serving = state
    return app


def serve(settings: ServeSettings, *, fd: int | None = None) -> None:
    """Run one server process until SIGINT or SIGTERM (in-flight requests finish first)."""
    import socket

    import uvicorn

    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=os.environ.get("MLGITOPS_SERVE_LOG_LEVEL", "warning").lower(),
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=30,
        server_header=False,
    )
    server = uvicorn.Server(config)
    if fd is None:
        server.run()
    else:
        server.run(sockets=[socket.socket(fileno=fd)])
