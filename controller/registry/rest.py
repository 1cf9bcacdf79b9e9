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
caller retries the whole pass). Nearly every call is idempotent (setting an alias or a tag to a
value it already has changes nothing; creating an experiment or a registered model that exists
is answered "already exists"), so retrying writes on 429 and 5xx is safe. Creating a run or a
model version is not: a retry after the server acted would make a second one. Those two are
retried only when the connection failed, before the request was sent.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Mapping
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from controller.errors import RegistryUnavailable, one_line
from controller.redact import redact
from controller.registry.transport import (
    LOGGED_MODEL_PAGE_SIZE,
    PAGE_SIZE,
    ExperimentRecord,
    LoggedModelRecord,
    ModelRecord,
    Page,
    RunRecord,
    VersionRecord,
)

_MISSING = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")
_EXISTS = ("RESOURCE_ALREADY_EXISTS",)
_TRUE = ("1", "true", "yes")
# The REST API spells LoggedModelStatus as its proto enum; the records use MLflow's entity names.
_LOGGED_MODEL_STATUS = {
    "LOGGED_MODEL_READY": "READY",
    "LOGGED_MODEL_PENDING": "PENDING",
    "LOGGED_MODEL_UPLOAD_FAILED": "FAILED",
}


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


def _model(body: dict[str, Any]) -> ModelRecord:
    return ModelRecord(
        name=str(body["name"]),
        aliases={str(a["alias"]): str(a["version"]) for a in body.get("aliases") or ()},
        tags={str(t["key"]): str(t.get("value", "")) for t in body.get("tags") or ()},
    )


def _version(body: dict[str, Any]) -> VersionRecord:
    return VersionRecord(
        name=str(body["name"]),
        version=str(body["version"]),
        run_id=body.get("run_id") or None,
        tags=_tags(body.get("tags")),
        source=body.get("source") or None,
        created=_int(body.get("creation_timestamp")),
        updated=_int(body.get("last_updated_timestamp")),
    )


def _tags(items: Any) -> dict[str, str]:
    return {str(t["key"]): str(t.get("value", "")) for t in items or ()}


def _int(value: Any) -> int | None:
    return None if value in (None, "") else int(value)


def _run(body: dict[str, Any]) -> RunRecord:
    info, data = body.get("info") or {}, body.get("data") or {}
    return RunRecord(
        run_id=str(info["run_id"]),
        experiment_id=str(info["experiment_id"]),
        status=str(info.get("status") or "RUNNING"),
        tags=_tags(data.get("tags")),
        start_time=_int(info.get("start_time")),
        end_time=_int(info.get("end_time")),
    )


def _logged_model(body: dict[str, Any]) -> LoggedModelRecord:
    info = body.get("info") or {}
    status = str(info.get("status") or "")
    return LoggedModelRecord(
        model_id=str(info["model_id"]),
        source_run_id=info.get("source_run_id") or None,
        status=_LOGGED_MODEL_STATUS.get(status, "UNSPECIFIED"),
        created=_int(info.get("creation_timestamp_ms")) or 0,
    )


def _key_values(tags: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"key": k, "value": v} for k, v in tags.items()]


def _session(retry: Retry, pool_size: int) -> requests.Session:
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
    return session


def _close(*sessions: requests.Session) -> None:
    for session in sessions:
        session.close()


class RestTransport:
    def __init__(self, tracking_uri: str, *, pool_size: int = 32) -> None:
        self.display = redact(tracking_uri)
        self._base = tracking_uri.rstrip("/") + "/api/2.0/mlflow/"
        self._timeout = _env_float("MLFLOW_HTTP_REQUEST_TIMEOUT", 15)
        retries = int(_env_float("MLFLOW_HTTP_REQUEST_MAX_RETRIES", 2))
        backoff = _env_float("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", 1)
        retry = Retry(
            total=retries,
            backoff_factor=backoff,
            status_forcelist=(429, 500, 502, 503, 504),
            allowed_methods=None,  # idempotent calls, writes included
            raise_on_status=False,
        )
        # For creates: only a refused connection is retried (read=0, no status retries).
        once = Retry(total=retries, read=0, other=0, backoff_factor=backoff, allowed_methods=None)
        self._session = _session(retry, pool_size)
        self._once = _session(once, 2)
        # Pooled keep-alive sockets are closed when the transport goes, or at exit, not leaked.
        self.close = weakref.finalize(self, _close, self._session, self._once)

    def _request(
        self,
        method: str,
        path: str,
        body: dict[str, Any],
        *,
        missing: bool = False,
        exists: bool = False,
        once: bool = False,
    ) -> dict[str, Any] | None:
        """The response body; None for an answer ``missing`` (does not exist) or ``exists``
        (already exists) allows. ``once``: a create, not retried once sent."""
        kwargs: dict[str, Any] = {"params": body} if method == "GET" else {"json": body}
        session = self._once if once else self._session
        try:
            response = session.request(method, self._base + path, timeout=self._timeout, **kwargs)
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
        if (missing and code in _MISSING) or (exists and code in _EXISTS):
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

    def set_model_tag(self, name: str, key: str, value: str) -> None:
        body = {"name": name, "key": key, "value": value}
        self._request("POST", "registered-models/set-tag", body)

    # -- training ------------------------------------------------------------------------------

    def get_experiment(self, name: str) -> ExperimentRecord | None:
        query = {"experiment_name": name}
        body = self._request("GET", "experiments/get-by-name", query, missing=True)
        if body is None:
            return None
        experiment = body["experiment"]
        return ExperimentRecord(
            experiment_id=str(experiment["experiment_id"]),
            name=str(experiment["name"]),
            deleted=experiment.get("lifecycle_stage") == "deleted",
        )

    def create_experiment(self, name: str, artifact_location: str | None = None) -> str | None:
        request = {"name": name}
        if artifact_location is not None:
            request["artifact_location"] = artifact_location
        body = self._request("POST", "experiments/create", request, exists=True)
        return None if body is None else str(body["experiment_id"])

    def create_run(
        self, experiment_id: str, tags: Mapping[str, str], name: str | None, start_time: int
    ) -> RunRecord:
        request: dict[str, Any] = {
            "experiment_id": experiment_id,
            "start_time": start_time,
            "tags": _key_values(tags),
        }
        if name is not None:
            request["run_name"] = name
        body = self._request("POST", "runs/create", request, once=True) or {}
        return _run(body["run"])

    def get_run(self, run_id: str) -> RunRecord | None:
        body = self._request("GET", "runs/get", {"run_id": run_id}, missing=True)
        return None if body is None else _run(body["run"])

    def search_runs(
        self, experiment_id: str, filter_string: str, token: str | None
    ) -> Page[RunRecord]:
        request: dict[str, Any] = {
            "experiment_ids": [experiment_id],
            "filter": filter_string,
            "run_view_type": "ACTIVE_ONLY",
            "max_results": PAGE_SIZE,
            "order_by": ["attributes.start_time ASC"],
        }
        if token:
            request["page_token"] = token
        body = self._request("POST", "runs/search", request) or {}
        return Page([_run(r) for r in body.get("runs") or ()], body.get("next_page_token") or None)

    def set_run_tag(self, run_id: str, key: str, value: str) -> None:
        self._request("POST", "runs/set-tag", {"run_id": run_id, "key": key, "value": value})

    def update_run(self, run_id: str, status: str, end_time: int) -> None:
        body = {"run_id": run_id, "status": status, "end_time": end_time}
        self._request("POST", "runs/update", body)

    def search_logged_models(
        self, experiment_id: str, filter_string: str, token: str | None
    ) -> Page[LoggedModelRecord]:
        request: dict[str, Any] = {
            "experiment_ids": [experiment_id],
            "filter": filter_string,
            "max_results": LOGGED_MODEL_PAGE_SIZE,
            "order_by": [{"field_name": "creation_timestamp", "ascending": True}],
        }
        if token:
            request["page_token"] = token
        body = self._request("POST", "logged-models/search", request) or {}
        return Page(
            [_logged_model(m) for m in body.get("models") or ()],
            body.get("next_page_token") or None,
        )

    def create_model(self, name: str) -> bool:
        body = self._request("POST", "registered-models/create", {"name": name}, exists=True)
        return body is not None

    def create_version(
        self,
        name: str,
        source: str,
        run_id: str,
        tags: Mapping[str, str],
        model_id: str | None,
    ) -> VersionRecord:
        request: dict[str, Any] = {
            "name": name,
            "source": source,
            "run_id": run_id,
            "tags": _key_values(tags),
        }
        if model_id is not None:
            # MLflow 3 servers refuse a ``models:/<id>`` source without the matching model_id.
            request["model_id"] = model_id
        body = self._request("POST", "model-versions/create", request, once=True) or {}
        return _version(body["model_version"])
