"""The seven registry calls mlgitops makes, as a protocol two transports implement.

The registry logic (batched reads, history tags, stats) lives once in ``registry/mlflow.py``; what
differs between an ``http(s)://`` tracking server and a local store is only how a call travels:

- ``rest.py`` speaks MLflow's REST API 2.0 with ``requests``. It never imports ``mlflow``, whose
  import alone (pandas, pyarrow, scipy) costs ~125 MiB and 1-2 s: the operator, which only ever
  talks to a tracking server, stays small.
- ``client.py`` wraps ``MlflowClient`` for every other URI (``sqlite:///``, ``file:``, ``databricks``),
  imported only when such a URI is first used.

A transport returns plain records, ``None`` for a model or version that does not exist, and raises
:class:`~controller.errors.RegistryUnavailable` (one line, credentials redacted) for anything else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class ModelRecord:
    name: str
    aliases: dict[str, str]


@dataclass(frozen=True)
class VersionRecord:
    name: str
    version: str
    run_id: str | None = None
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    token: str | None


class Transport(Protocol):
    def get_model(self, name: str) -> ModelRecord | None: ...
    def search_models(self, filter_string: str, token: str | None) -> Page[ModelRecord]: ...
    def search_versions(self, filter_string: str, token: str | None) -> Page[VersionRecord]: ...
    def get_version(self, name: str, version: str) -> VersionRecord | None: ...
    def set_alias(self, name: str, alias: str, version: str) -> None: ...
    def delete_alias(self, name: str, alias: str) -> None: ...
    def set_version_tag(self, name: str, version: str, key: str, value: str) -> None: ...


PAGE_SIZE = 1000
