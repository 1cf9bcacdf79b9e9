"""``mlgitops run --webhook-port``: a push to the config or a code repository starts a pass now.

Without it the embedded runtime notices new commits at its next poll (``--interval``); with it a
signed push (``POST /webhook``, the operator's protocol: ``X-Hub-Signature-256`` with the token
in ``$MLGITOPS_WEBHOOK_TOKEN``) wakes the loop at once, so a merge to a release branch starts its
training run within a second. The server only wakes the loop; the pass reads Git itself. It is
the standard library's threaded HTTP server: one endpoint, a few requests a day.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from controller.sources.webhook import MAX_BODY, SIGNATURE_HEADER, push_urls, verify_signature

__all__ = ["WebhookServer"]


class WebhookServer:
    """Serves ``POST /webhook`` and ``GET /healthz`` on a thread until :meth:`close`.

    ``on_push(urls)`` runs for each correctly signed push with the repository URLs its payload
    names (empty when it names none) and says whether the push concerns this environment.
    """

    def __init__(
        self, host: str, port: int, token: str, on_push: Callable[[set[str]], bool]
    ) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, status: int, body: dict[str, object]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path == "/healthz":
                    self._answer(200, {"ok": True})
                else:
                    self._answer(404, {"error": "not found"})

            def do_POST(self) -> None:
                if self.path != "/webhook":
                    self._answer(404, {"error": "not found"})
                    return
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY:
                    self._answer(413, {"error": "body too large for a push event"})
                    return
                body = self.rfile.read(length)
                if not verify_signature(outer.token, body, self.headers.get(SIGNATURE_HEADER)):
                    self._answer(401, {"error": f"bad or missing {SIGNATURE_HEADER}"})
                    return
                if outer.on_push(push_urls(body)):
                    self._answer(202, {"accepted": True})
                else:
                    self._answer(
                        202, {"accepted": False, "reason": "not a repository of this environment"}
                    )

            def log_message(self, format: str, *args: object) -> None:
                pass  # requests are not news; the passes they cause are reported

        self.token = token
        self.on_push = on_push
        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="mlgitops-webhook", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/webhook"

    def start(self) -> WebhookServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
