"""The MLflow calls mlgitops makes, as a protocol two transports implement.

The registry logic (batched reads, history tags, stats) lives once in ``registry/mlflow.py``, the
training logic (experiments, runs, logged models, registration) in ``registry/tracking.py``; what
differs between an ``http(s)://`` tracking server and a local store is only how a call travels:

- ``rest.py`` speaks MLflow's REST API 2.0 with ``requests``. It never imports ``mlflow``, whose
  import alone (pandas, pyarrow, scipy) costs ~125 MiB and 1-2 s: the operator, which only ever
  talks to a tracking server, stays small.
- ``client.py`` wraps ``MlflowClient`` for every other URI (``sqlite:///``, ``file:``, ``databricks``),
  imported only when such a URI is first used.

A transport returns plain records, ``None`` for a model, version, experiment or run that does not
exist (and for a create that finds the name taken), and raises
:class:`~controller.errors.RegistryUnavailable` (one line, credentials redacted) for anything else.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from controller.errors import RegistryUnavailable, one_line
from controller.redact import redact

T = TypeVar("T")


@dataclass(frozen=True)
class ModelRecord:
    name: str
    aliases: dict[str, str]
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class VersionRecord:
    name: str
    version: str
    run_id: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    source: str | None = None
    created: int | None = None  # ms since the epoch
    updated: int | None = None  # last_updated_timestamp (tag writes do not change it)


@dataclass(frozen=True)
class ExperimentRecord:
    experiment_id: str
    name: str
    deleted: bool = False  # lifecycle_stage "deleted": still holds its name until purged


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    experiment_id: str
    status: str
    tags: dict[str, str] = field(default_factory=dict)
    start_time: int | None = None
    end_time: int | None = None


@dataclass(frozen=True)
class LoggedModelRecord:
    """An MLflow 3 LoggedModel: ``models:/<model_id>``, logged by ``source_run_id``."""

    model_id: str
    source_run_id: str | None
    status: str  # READY, PENDING, FAILED or UNSPECIFIED (MLflow's LoggedModelStatus names)
    created: int = 0  # ms since the epoch


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
    def set_model_tag(self, name: str, key: str, value: str) -> None: ...

    # -- training: experiments, runs, logged models, registration ---------------------------------
    def get_experiment(self, name: str) -> ExperimentRecord | None: ...
    def create_experiment(self, name: str, artifact_location: str | None = None) -> str | None:
        """The new experiment's id; None when the name is taken (maybe by a deleted one)."""
        ...

    def create_run(
        self, experiment_id: str, tags: Mapping[str, str], name: str | None, start_time: int
    ) -> RunRecord:
        """Not idempotent: never retried once the request may have reached the server."""
        ...

    def get_run(self, run_id: str) -> RunRecord | None: ...
    def search_runs(
        self, experiment_id: str, filter_string: str, token: str | None
    ) -> Page[RunRecord]:
        """Active runs of one experiment, oldest first."""
        ...

    def set_run_tag(self, run_id: str, key: str, value: str) -> None: ...
    def update_run(self, run_id: str, status: str, end_time: int) -> None: ...
    def search_logged_models(
        self, experiment_id: str, filter_string: str, token: str | None
    ) -> Page[LoggedModelRecord]:
        """Logged models of one experiment, oldest first."""
        ...

    def create_model(self, name: str) -> bool:
        """Create registered model ``name``; False when it already exists."""
        ...

    def create_version(
        self,
        name: str,
        source: str,
        run_id: str,
        tags: Mapping[str, str],
        model_id: str | None,
    ) -> VersionRecord:
        """Not idempotent (each call is a new version): never retried once sent."""
        ...


PAGE_SIZE = 1000
LOGGED_MODEL_PAGE_SIZE = 100  # MLflow's default page for logged models; searches are per run


def guarded(display: str, fn: Callable[[], T]) -> T:
    """``fn()``, with any failure (connection refused, DNS, SQLite locked or missing, ...) as
    :class:`RegistryUnavailable`: one line, credentials redacted, naming the registry."""
    try:
        return fn()
    except RegistryUnavailable:
        raise
    except Exception as exc:
        raise RegistryUnavailable(f"registry {display}: {redact(one_line(exc, lines=2))}") from exc


def pages(
    call: Callable[[Callable[[], Page[T]]], Page[T]], search: Callable[[str | None], Page[T]]
) -> Iterator[T]:
    """Every item of a paginated search, each page fetched through ``call``."""
    token: str | None = None
    while True:
        page = call(functools.partial(search, token))
        yield from page.items
        token = page.token
        if not token:
            return
