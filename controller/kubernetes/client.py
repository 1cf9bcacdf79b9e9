"""The Kubernetes API for the controller's own writes: the only module importing the client.

kopf watches and patches ModelDeployments itself; this adapter reads, server-side applies and
deletes the children (and the ModelDeployments a Git sync applies) with the field manager
``mlgitops``. It applies only when the live object differs from the rendered one in a field we
set, so a pass over an unchanged object makes read requests only, never a write.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from controller.errors import ClusterUnavailable
from controller.planning.children import contains

FIELD_MANAGER = "mlgitops"
Obj = dict[str, Any]

# kind -> (plural, namespaced). The controller touches only these.
RESOURCES: Mapping[str, tuple[str, bool]] = {
    "Deployment": ("deployments", True),
    "Service": ("services", True),
    "CronJob": ("cronjobs", True),
    "Job": ("jobs", True),
    "ModelDeployment": ("modeldeployments", True),
    "Environment": ("environments", True),
    "Secret": ("secrets", True),
    "Namespace": ("namespaces", False),
}


def path_for(api_version: str, kind: str, namespace: str | None, name: str | None = None) -> str:
    """The API path of ``kind`` (``name``: one object); a namespaced kind with no namespace is
    the list across every namespace."""
    plural, namespaced = RESOURCES[kind]
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    if namespaced and namespace is not None:
        base += f"/namespaces/{namespace}"
    base += f"/{plural}"
    return f"{base}/{name}" if name else base


@dataclass
class WriteStats:
    reads: int = 0
    writes: int = 0
    by_verb: dict[str, int] = field(default_factory=dict)


class KubeCluster:
    """A cluster reached through the kubeconfig ($KUBECONFIG) or the in-cluster service account."""

    def __init__(self, api_client: Any | None = None, *, pool_size: int = 10) -> None:
        if api_client is None:
            configuration = kubernetes.client.Configuration()
            try:
                kubernetes.config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            except kubernetes.config.ConfigException:
                kubernetes.config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            # One connection per handler thread, or urllib3 discards and reopens them.
            configuration.connection_pool_maxsize = pool_size
            api_client = kubernetes.client.ApiClient(configuration)
        self._api = api_client
        self.stats = WriteStats()

    def _call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
    ) -> Obj | None:
        write = method != "GET"
        self.stats.by_verb[method] = self.stats.by_verb.get(method, 0) + 1
        if write:
            self.stats.writes += 1
        else:
            self.stats.reads += 1
        try:
            verb, url, headers, payload, _ = self._api.param_serialize(
                method=method,
                resource_path=path,
                query_params=query or [],
                header_params={"Content-Type": content_type, "Accept": "application/json"},
                body=body,
                auth_settings=["BearerToken"],
            )
            response = self._api.call_api(
                verb, url, header_params=headers, body=payload, _request_timeout=30
            )
            raw = response.read()
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise ClusterUnavailable(
                f"kubernetes {method} {path}: {exc.status} {exc.reason}"
            ) from exc
        except Exception as exc:  # connection refused, TLS, timeouts
            raise ClusterUnavailable(f"kubernetes {method} {path}: {exc}") from exc
        if response.status == 404:
            return None
        if response.status >= 400:
            detail = raw.decode(errors="replace")[:300] if raw else ""
            raise ClusterUnavailable(f"kubernetes {method} {path}: {response.status} {detail}")
        result: Obj = json.loads(raw) if raw else {}
        return result

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> Obj | None:
        return self._call("GET", path_for(api_version, kind, namespace, name))

    def list_objects(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        *,
        label_selector: str | None = None,
    ) -> list[Obj]:
        """Every ``kind`` in ``namespace`` (None: in every namespace), matching
        ``label_selector``: the items of one list request."""
        path = path_for(api_version, kind, namespace)
        query = [("labelSelector", label_selector)] if label_selector else []
        found = self._call("GET", path, query=query) or {}
        return [dict(item) for item in found.get("items") or []]

    def apply(self, obj: Obj) -> Obj:
        """Server-side apply ``obj`` as ``mlgitops``, taking over fields edited by hand."""
        meta = obj["metadata"]
        path = path_for(obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"])
        result = self._call(
            "PATCH",
            path,
            body=obj,
            query=[("fieldManager", FIELD_MANAGER), ("force", "true")],
            content_type="application/apply-patch+yaml",
        )
        return result or {}

    def ensure(self, obj: Obj, live: Obj | None = None) -> tuple[Obj, bool]:
        """Apply ``obj`` unless the live object already holds every field of it.

        Returns the live object and whether a write was made.
        """
        meta = obj["metadata"]
        if live is None:
            live = self.get(obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"])
        if live is not None and contains(obj, live):
            return live, False
        return self.apply(obj), True

    def patch_status(
        self, api_version: str, kind: str, namespace: str | None, name: str, status: Obj
    ) -> Obj:
        """Merge-patch the ``/status`` subresource."""
        path = path_for(api_version, kind, namespace, name) + "/status"
        found = self._call(
            "PATCH", path, body={"status": status}, content_type="application/merge-patch+json"
        )
        return found or {}

    def annotate(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        name: str,
        annotations: Mapping[str, str | None],
    ) -> Obj | None:
        """Merge-patch ``metadata.annotations`` (None removes one): a mark on an object whose
        spec is not ours to apply again (a finished Job). None when the object is gone."""
        return self._call(
            "PATCH",
            path_for(api_version, kind, namespace, name),
            body={"metadata": {"annotations": dict(annotations)}},
            query=[("fieldManager", FIELD_MANAGER)],
            content_type="application/merge-patch+json",
        )

    def delete(self, api_version: str, kind: str, namespace: str | None, name: str) -> bool:
        """Delete; background propagation so a Deployment's pods go with it. False if absent."""
        body = {"propagationPolicy": "Background"}
        found = self._call("DELETE", path_for(api_version, kind, namespace, name), body=body)
        return found is not None
