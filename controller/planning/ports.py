"""Every port in one place: the narrow interfaces the engines receive instead of the real things.

The engines (``controller.engine``, ``controller.kubernetes``, ``controller.local``) never import
GitPython, MLflow or the Kubernetes client; they are handed objects that satisfy these protocols,
built by the entry points from the one adapter package of each dependency (``sources``,
``registry``, ``kubernetes.client``). Tests hand them the same real adapters, pointed at real Git
repositories, a real MLflow store and an API server, so a port is a seam for layering, not for
mocks. Keeping them together shows at a glance everything the controller asks of the world.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from controller.planning.types import AliasEvent, Observed

Obj = dict[str, Any]


class Commit(Protocol):
    """One revision of a Git repository."""

    @property
    def sha(self) -> str: ...
    @property
    def short(self) -> str: ...
    @property
    def subject(self) -> str: ...


class Source(Protocol):
    """A Git repository, read at a revision (``controller.sources.GitSource``)."""

    display: str  # the location with credentials redacted

    def resolve(self, rev: str | None = None) -> Commit: ...
    def read_folder(self, sha: str, folder: str) -> dict[str, bytes] | None: ...
    def list_folders(self, sha: str, root: str) -> list[str]: ...
    def close(self) -> None: ...


class Registry(Protocol):
    """The MLflow model registry of one tracking URI (``controller.registry.MlflowRegistry``).

    ``observe`` reads a whole catalog in a few batched requests (an environment pass);
    ``observe_model`` reads one model in two (the operator's per-object pass).
    """

    display: str

    def observe(
        self, *, catalog: str, inspect: Callable[[dict[str, dict[str, str]]], set[tuple[str, str]]]
    ) -> Observed: ...
    def observe_model(self, *, model: str, pins: set[str]) -> Observed: ...
    def set_alias(self, *, model: str, event: AliasEvent) -> None: ...
    def history(self, *, model: str) -> list[AliasEvent]: ...


RegistryFor = Callable[[str | None], Registry]
"""The registry of an Environment's ``registry.trackingUri`` (None: the embedded store)."""


class Store(Protocol):
    """Where the local runtime keeps the last status of an environment (the state directory)."""

    def load_status(self, env: str) -> dict[str, Any] | None: ...
    def save_status(self, env: str, data: dict[str, Any]) -> None: ...


class Cluster(Protocol):
    """The Kubernetes API, for the controller's own reads and writes (``kubernetes.client``).

    ``ensure`` server-side applies only when the live object lacks a field of the rendered one,
    so a pass over an unchanged object writes nothing.
    """

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> Obj | None: ...
    def apply(self, obj: Obj) -> Obj: ...
    def ensure(self, obj: Obj, live: Obj | None = None) -> tuple[Obj, bool]: ...
    def delete(self, api_version: str, kind: str, namespace: str | None, name: str) -> bool: ...
    def patch_status(
        self, api_version: str, kind: str, namespace: str | None, name: str, status: Obj
    ) -> Obj: ...
