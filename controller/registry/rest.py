"""The registry transport for an ``http(s)://`` tracking server: MLflow's REST API 2.0 over requests.

This is the operator's path (in a cluster the registry is always a tracking server), and the
reason it exists is memory: ``import mlflow`` pulls in pandas, pyarrow and scipy, ~125 MiB of the
operator's 250 MiB budget, to make seven kinds of HTTP call. The calls and payloads are MLflow's
public, versioned REST API (``/api/2.0/mlflow/...``), the same ones ``MlflowClient``'s RestStore
sends; the contract test runs both transports against one real ``mlflow server``.

Settings follow MLflow's own variables, so an operator configured for MLflow needs nothing new:
``MLFLOW_TRACKING_TOKEN`` (bearer), ``MLFLOW_TRACKING_USERNAME``/``_PASSWORD`` (basic),
``MLFLOW_TRACKING_INSECURE_TLS``, ``MLFLOW_TRACKING_SERVER_CERT_PATH``,
``MLFLOW_TRACKING_CLIENT_CERT_PATH``, ``MLFLOW_HTTP_REQUEST_TIMEOUT`` (default 15 s) and
``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` / ``_BACKOFF_FACTOR`` (default 2 and 1: fail fast, the
caller retries the whole pass). Every call is idempotent (setting an alias or a tag to a value
it already has changes nothing), so retrying writes on 429 and 5xx is safe.
"""

from __future__ import annotations

import os
import weakref
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from controller.errors import RegistryUnavailable, one_line
from controller.redact import redact
from controller.registry.transport import (
    PAGE_SIZE,
    ModelRecord,
    Page,
    VersionRecord,
)

_MISSING = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")
_TRUE = ("1", "true", "yes")


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


def _model(body: dict[str, Any]) -> ModelRecord:
    return ModelRecord(
        name=str(body["name"]),
        aliases={str(a["alias"]): str(a["version"]) for a in body.get("aliases") or ()},
    )


def _version(body: dict[str, Any]) -> VersionRecord:
    return VersionRecord(
        name=str(body["name"]),
        version=str(body["version"]),
        run_id=body.get("run_id") or None,
        tags={str(t["key"]): str(t.get("value", "")) for t in body.get("tags") or ()},
    )


class RestTransport:
    def __init__(self, tracking_uri: str, *, pool_size: int = 32) -> None:
        self.display = redact(tracking_uri)
        self._base = tracking_uri.rstrip("/") + "/api/2.0/mlflow/"
        self._timeout = _env_float("MLFLOW_HTTP_REQUEST_TIMEOUT", 15)
        retry = Retry(
            total=int(_env_float("MLFLOW_HTTP_REQUEST_MAX_RETRIES", 2)),
            backoff_factor=_env_float("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", 1),
            status_forcelist=(429, 500, 502, 503, 504),
            allowed_methods=None,  # every call here is idempotent, writes included
            raise_on_status=False,
        )
        session = requests.Session()
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=retry)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        session.headers["User-Agent"] = "mlgitops"
        if token := os.environ.get("MLFLOW_TRACKING_TOKEN"):
            session.headers["Authorization"] = f"Bearer {token}"
        elif user := os.environ.get("MLFLOW_TRACKING_USERNAME"):
            session.auth = (user, os.environ.get("MLFLOW_TRACKING_PASSWORD", ""))
        if os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() in _TRUE:
            session.verify = False
        elif cert := os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH"):
            session.verify = cert
        if client_cert := os.environ.get("MLFLOW_TRACKING_CLIENT_CERT_PATH"):
            session.cert = client_cert
        self._session = session
        # Pooled keep-alive sockets are closed when the transport goes, or at exit, not leaked.
        self.close = weakref.finalize(self, session.close)

    def _request(
        self, method: str, path: str, body: dict[str, Any], *, missing: bool = False
    ) -> dict[str, Any] | None:
        kwargs: dict[str, Any] = {"params": body} if method == "GET" else {"json": body}
        try:
            response = self._session.request(
                method, self._base + path, timeout=self._timeout, **kwargs
            )
        except requests.RequestException as exc:
            raise RegistryUnavailable(
                f"registry {self.display}: {redact(one_line(exc, lines=2))}"
            ) from exc
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if response.ok and isinstance(payload, dict):
            return payload
        error = payload if isinstance(payload, dict) else {}
        code = str(error.get("error_code", ""))
        if missing and code in _MISSING:
            return None
        detail = str(error.get("message") or response.text[:200] or response.reason)
        raise RegistryUnavailable(
            f"registry {self.display}: HTTP {response.status_code} {path}: "
            f"{code + ': ' if code else ''}{redact(one_line(detail, lines=2))}"
        )

    def get_model(self, name: str) -> ModelRecord | None:
        body = self._request("GET", "registered-models/get", {"name": name}, missing=True)
        return None if body is None else _model(body["registered_model"])

    def search_models(self, filter_string: str, token: str | None) -> Page[ModelRecord]:
        query: dict[str, Any] = {"filter": filter_string, "max_results": PAGE_SIZE}
        if token:
            query["page_token"] = token
        body = self._request("GET", "registered-models/search", query) or {}
        return Page(
            [_model(m) for m in body.get("registered_models") or ()],
            body.get("next_page_token") or None,
        )

    def search_versions(self, filter_string: str, token: str | None) -> Page[VersionRecord]:
        query: dict[str, Any] = {"filter": filter_string, "max_results": PAGE_SIZE}
        if token:
            query["page_token"] = token
        body = self._request("GET", "model-versions/search", query) or {}
        return Page(
            [_version(v) for v in body.get("model_versions") or ()],
            body.get("next_page_token") or None,
        )

    def get_version(self, name: str, version: str) -> VersionRecord | None:
        query = {"name": name, "version": version}
        body = self._request("GET", "model-versions/get", query, missing=True)
        return None if body is None else _version(body["model_version"])

    def set_alias(self, name: str, alias: str, version: str) -> None:
        body = {"name": name, "alias": alias, "version": version}
        self._request("POST", "registered-models/alias", body)

    def delete_alias(self, name: str, alias: str) -> None:
        self._request("DELETE", "registered-models/alias", {"name": name, "alias": alias})

    def set_version_tag(self, name: str, version: str, key: str, value: str) -> None:
        body = {"name": name, "version": version, "key": key, "value": value}
        self._request("POST", "model-versions/set-tag", body)
