"""MLflow registry adapter: observe aliases and versions in few reads, change aliases, keep history.

Reads are batched per catalog (one paginated search for every model's aliases, one for FAILED
versions), so a no-op sync of N models costs O(1) requests rather than O(N); only versions an alias
is about to move to are fetched one by one. Every alias change writes one tag on the version
involved, ``mlgitops.history.<alias>.<time>``, whose JSON value holds the config revision, the
previous version, the time and the reason: one write, so an event is never half recorded, and a
new key per event, so history is never overwritten and survives the controller.

Requests are counted here (``stats``), which is what the benchmark reports.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from controller.errors import RegistryUnavailable
from controller.planning.types import (
    VALIDATION_TAG,
    AliasEvent,
    Observed,
    ObservedModel,
    VersionInfo,
)
from controller.redact import redact

HISTORY_PREFIX = "mlgitops.history."
CODE_COMMIT_TAGS = ("mlgitops.code_commit", "mlflow.source.git.commit")
_PAGE = 1000
T = TypeVar("T")

# A CLI run must fail fast when the registry is down (MLflow's default retries take minutes);
# values the user sets explicitly win.
for _key, _value in {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "15",
    "MLFLOW_DISABLE_TELEMETRY": "true",
}.items():
    os.environ.setdefault(_key, _value)

from mlflow import MlflowClient  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402


def resolve_model_uri(uri: str) -> tuple[str, str, str]:
    """``models:/name@alias`` or ``models:/name/version`` -> (``models:/name/version``, name, version).

    Against $MLFLOW_TRACKING_URI / $MLFLOW_REGISTRY_URI, as the model server runs; a logged-model
    URI (``models:/<id>``) is returned unchanged.
    """
    from mlflow.store.artifact.utils.models import get_model_name_and_version

    resolved = get_model_name_and_version(MlflowClient(), uri)  # type: ignore[no-untyped-call]
    if len(resolved) != 2:
        return uri, uri, uri
    name, version = str(resolved[0]), str(resolved[1])
    return f"models:/{name}/{version}", name, version


def embedded_tracking_uri(state_dir: Path) -> str:
    """The SQLite store an Environment without ``registry.trackingUri`` uses."""
    state_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(state_dir / 'mlflow.db').resolve()}"


@dataclass
class RegistryStats:
    reads: int = 0
    writes: int = 0
    alias_writes: int = 0
    tag_writes: int = 0
    by_call: dict[str, int] = field(default_factory=dict)


def _like_prefix(catalog: str) -> str:
    escaped = catalog.replace("'", "''")
    return f"name LIKE '{escaped}.%'"


def _not_found(exc: MlflowException) -> bool:
    return getattr(exc, "error_code", "") == "RESOURCE_DOES_NOT_EXIST"


class MlflowRegistry:
    """The registry of one tracking URI."""

    def __init__(self, tracking_uri: str) -> None:
        self.tracking_uri = tracking_uri
        self.display = redact(tracking_uri)
        self.stats = RegistryStats()
        self._client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        # Writes go to the registry client directly: MlflowClient re-reads the whole registered
        # model before every alias or tag write to refuse prompts, which was a third of the
        # operator's CPU at 1,000 ModelDeployments (py-spy). We write only to models a pass has
        # just read as registered models, so that check adds nothing here.
        self._writer = self._client._get_registry_client()  # type: ignore[no-untyped-call]

    # -- plumbing ------------------------------------------------------------------------------

    def _call(self, name: str, fn: Callable[[], T], *, write: bool = False) -> T:
        stats = self.stats
        stats.by_call[name] = stats.by_call.get(name, 0) + 1
        if write:
            stats.writes += 1
        else:
            stats.reads += 1
        try:
            return fn()
        except MlflowException:
            raise
        except Exception as exc:  # connection refused, DNS, SQLite locked or missing, ...
            raise RegistryUnavailable(f"registry {self.display}: {redact(_one_line(exc))}") from exc

    def _paged(self, name: str, search: Callable[[str | None], Any]) -> Iterable[Any]:
        token: str | None = None
        while True:
            page = self._call(name, functools.partial(search, token))
            yield from page
            token = page.token
            if not token:
                return

    # -- reads ---------------------------------------------------------------------------------

    def aliases(self, *, catalog: str) -> dict[str, dict[str, str]]:
        """Every registered model of ``catalog`` with its aliases (model -> alias -> version)."""
        prefix = f"{catalog}."
        out: dict[str, dict[str, str]] = {}
        try:
            for model in self._paged(
                "search_registered_models",
                lambda token: self._client.search_registered_models(
                    filter_string=_like_prefix(catalog), max_results=_PAGE, page_token=token
                ),
            ):
                if model.name.startswith(prefix):
                    out[model.name] = {k: str(v) for k, v in (model.aliases or {}).items()}
        except MlflowException as exc:
            raise RegistryUnavailable(f"registry {self.display}: {redact(_one_line(exc))}") from exc
        return out

    def failed_versions(self, *, catalog: str) -> frozenset[tuple[str, str]]:
        prefix = f"{catalog}."
        query = f"{_like_prefix(catalog)} AND tags.{VALIDATION_TAG} = 'FAILED'"
        try:
            return frozenset(
                (v.name, str(v.version))
                for v in self._paged(
                    "search_model_versions",
                    lambda token: self._client.search_model_versions(
                        filter_string=query, max_results=_PAGE, page_token=token
                    ),
                )
                if v.name.startswith(prefix)
            )
        except MlflowException as exc:
            raise RegistryUnavailable(f"registry {self.display}: {redact(_one_line(exc))}") from exc

    def version(self, *, model: str, version: str) -> VersionInfo | None:
        try:
            mv = self._call(
                "get_model_version", lambda: self._client.get_model_version(model, version)
            )
        except MlflowException as exc:
            if _not_found(exc) or getattr(exc, "error_code", "") == "INVALID_PARAMETER_VALUE":
                return None
            raise RegistryUnavailable(f"registry {self.display}: {redact(_one_line(exc))}") from exc
        tags = dict(mv.tags or {})
        return VersionInfo(
            version=str(mv.version),
            validation_status=tags.get(VALIDATION_TAG),
            run_id=mv.run_id or None,
            code_commit=next((tags[t] for t in CODE_COMMIT_TAGS if t in tags), None),
        )

    def observe(
        self, *, catalog: str, inspect: Callable[[dict[str, dict[str, str]]], set[tuple[str, str]]]
    ) -> Observed:
        """Aliases of the whole catalog, FAILED versions, and the versions ``inspect`` asks for."""
        aliases = self.aliases(catalog=catalog)
        failed = self.failed_versions(catalog=catalog)
        versions: dict[str, dict[str, VersionInfo]] = {}
        for model, version in sorted(inspect(aliases)):
            if model not in aliases:
                continue
            info = self.version(model=model, version=version)
            if info is not None:
                versions.setdefault(model, {})[version] = info
        return Observed(
            models={
                name: ObservedModel(name=name, aliases=a, versions=versions.get(name, {}))
                for name, a in aliases.items()
            },
            failed=failed,
        )

    def observe_model(self, *, model: str, pins: set[str]) -> Observed:
        """One model: its aliases, its FAILED versions, and pinned versions no alias points at.

        For the operator, which reconciles one ModelDeployment at a time: O(1) requests per
        object instead of a catalog-wide search per object.
        """
        try:
            registered = self._call(
                "get_registered_model", lambda: self._client.get_registered_model(model)
            )
        except MlflowException as exc:
            if _not_found(exc):
                return Observed(models={})
            raise RegistryUnavailable(f"registry {self.display}: {redact(_one_line(exc))}") from exc
        aliases = {k: str(v) for k, v in (registered.aliases or {}).items()}
        name = model.replace("'", "''")
        query = f"name = '{name}' AND tags.{VALIDATION_TAG} = 'FAILED'"
        try:
            failed = frozenset(
                (v.name, str(v.version))
                for v in self._paged(
                    "search_model_versions",
                    lambda token: self._client.search_model_versions(
                        filter_string=query, max_results=_PAGE, page_token=token
                    ),
                )
            )
        except MlflowException as exc:
            raise RegistryUnavailable(f"registry {self.display}: {redact(_one_line(exc))}") from exc
        versions: dict[str, VersionInfo] = {}
        for version in sorted(pins - set(aliases.values())):
            info = self.version(model=model, version=version)
            if info is not None:
                versions[version] = info
        return Observed(
            models={model: ObservedModel(name=model, aliases=aliases, versions=versions)},
            failed=failed,
        )

    def history(self, *, model: str) -> list[AliasEvent]:
        """Every alias change recorded on any version of ``model``, oldest first."""
        events: list[AliasEvent] = []
        name = model.replace("'", "''")
        try:
            for mv in self._paged(
                "search_model_versions",
                lambda token: self._client.search_model_versions(
                    filter_string=f"name = '{name}'", max_results=_PAGE, page_token=token
                ),
            ):
                for key, value in (mv.tags or {}).items():
                    if key.startswith(HISTORY_PREFIX):
                        try:
                            events.append(AliasEvent(**json.loads(value)))
                        except (ValueError, TypeError):
                            continue
        except MlflowException as exc:
            raise RegistryUnavailable(f"registry {self.display}: {redact(_one_line(exc))}") from exc
        # One pass stamps all its events alike; within it, champion moves first (as applied).
        return sorted(events, key=lambda e: (e.time, e.alias != "champion"))

    # -- writes --------------------------------------------------------------------------------

    def _record(self, *, model: str, version: str, event: AliasEvent) -> None:
        stamp = event.time.replace("-", "").replace(":", "").replace(".", "")
        key = f"{HISTORY_PREFIX}{event.alias}.{stamp}"
        value = json.dumps(event.__dict__, sort_keys=True)
        self.stats.tag_writes += 1
        self._write(
            "set_model_version_tag",
            lambda: self._writer.set_model_version_tag(model, version, key, value),
        )

    def _write(self, name: str, fn: Callable[[], None]) -> None:
        try:
            self._call(name, fn, write=True)
        except MlflowException as exc:
            raise RegistryUnavailable(f"registry {self.display}: {redact(_one_line(exc))}") from exc

    def set_alias(self, *, model: str, event: AliasEvent) -> None:
        """Move ``event.alias`` to ``event.version`` (or remove it when None) and record why."""
        if event.version is None:
            if event.previous is None:
                return
            self.stats.alias_writes += 1
            self._write(
                "delete_registered_model_alias",
                lambda: self._writer.delete_registered_model_alias(model, event.alias),
            )
            self._record(model=model, version=event.previous, event=event)
            return
        version = event.version
        self.stats.alias_writes += 1
        self._write(
            "set_registered_model_alias",
            lambda: self._writer.set_registered_model_alias(model, event.alias, version),
        )
        self._record(model=model, version=version, event=event)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if len(lines) == 1 else " ".join(lines[:2])[:300]
