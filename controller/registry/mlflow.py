"""MLflow registry adapter: observe aliases and versions in few reads, change aliases, keep history.

Reads are batched per catalog (one paginated search for every model's aliases, one for FAILED
versions), so a no-op sync of N models costs O(1) requests rather than O(N); only versions an alias
is about to move to are fetched one by one. Every alias change writes one tag on the version
involved, ``mlgitops.history.<alias>.<time>``, whose JSON value holds the config revision, the
previous version, the time and the reason: one write, so an event is never half recorded, and a
new key per event, so history is never overwritten and survives the controller.

How a call travels is a transport (``transport.py``): MLflow's REST API for a tracking server,
``MlflowClient`` for anything else. Requests are counted here (``stats``), which is what the
benchmark reports.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from controller.planning.types import (
    VALIDATION_TAG,
    AliasEvent,
    Observed,
    ObservedModel,
    VersionInfo,
)
from controller.redact import redact
from controller.registry.transport import (
    ModelRecord,
    Page,
    Transport,
    VersionRecord,
    guarded,
    pages,
)

HISTORY_PREFIX = "mlgitops.history."
CODE_COMMIT_TAGS = ("mlgitops.code_commit", "mlflow.source.git.commit")
T = TypeVar("T")
R = TypeVar("R", ModelRecord, VersionRecord)


def transport_for(tracking_uri: str) -> Transport:
    """REST for ``http(s)://`` (no ``import mlflow``), MlflowClient for every other URI."""
    if tracking_uri.startswith(("http://", "https://")):
        from controller.registry.rest import RestTransport

        return RestTransport(tracking_uri)
    from controller.registry.client import ClientTransport  # imports mlflow: seconds, ~125 MiB

    return ClientTransport(tracking_uri)


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


def _info(mv: VersionRecord) -> VersionInfo:
    return VersionInfo(
        version=mv.version,
        validation_status=mv.tags.get(VALIDATION_TAG),
        run_id=mv.run_id,
        code_commit=next((mv.tags[t] for t in CODE_COMMIT_TAGS if t in mv.tags), None),
    )


def _failed(mv: VersionRecord) -> bool:
    return mv.tags.get(VALIDATION_TAG) == "FAILED"


def _like_prefix(catalog: str) -> str:
    escaped = catalog.replace("'", "''")
    return f"name LIKE '{escaped}.%'"


class MlflowRegistry:
    """The registry of one tracking URI."""

    def __init__(self, tracking_uri: str, *, transport: Transport | None = None) -> None:
        self.tracking_uri = tracking_uri
        self.display = redact(tracking_uri)
        self.stats = RegistryStats()
        self._t = transport or transport_for(tracking_uri)

    # -- plumbing ------------------------------------------------------------------------------

    def _call(self, name: str, fn: Callable[[], T], *, write: bool = False) -> T:
        stats = self.stats
        stats.by_call[name] = stats.by_call.get(name, 0) + 1
        if write:
            stats.writes += 1
        else:
            stats.reads += 1
        return guarded(self.display, fn)

    def _paged(self, name: str, search: Callable[[str | None], Page[R]]) -> Iterator[R]:
        return pages(lambda fetch: self._call(name, fetch), search)

    def _versions(self, filter_string: str) -> Iterable[VersionRecord]:
        return self._paged(
            "search_model_versions", lambda token: self._t.search_versions(filter_string, token)
        )

    # -- reads ---------------------------------------------------------------------------------

    def aliases(self, *, catalog: str) -> dict[str, dict[str, str]]:
        """Every registered model of ``catalog`` with its aliases (model -> alias -> version)."""
        prefix = f"{catalog}."
        query = _like_prefix(catalog)
        return {
            model.name: dict(model.aliases)
            for model in self._paged(
                "search_registered_models", lambda token: self._t.search_models(query, token)
            )
            if model.name.startswith(prefix)
        }

    def failed_versions(self, *, catalog: str) -> frozenset[tuple[str, str]]:
        prefix = f"{catalog}."
        query = f"{_like_prefix(catalog)} AND tags.{VALIDATION_TAG} = 'FAILED'"
        return frozenset(
            (v.name, v.version) for v in self._versions(query) if v.name.startswith(prefix)
        )

    def version(self, *, model: str, version: str) -> VersionInfo | None:
        mv = self._call("get_model_version", lambda: self._t.get_version(model, version))
        return None if mv is None else _info(mv)

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

        For the operator, which reconciles one ModelDeployment at a time: two reads per object,
        whatever the pins. When every pin is already an alias (the steady state) the second read
        is a search for FAILED versions, which is usually empty; when a pin is not (an alias is
        about to move) it is one search of every version of the model, which answers the FAILED
        question and describes the pinned versions at once, instead of one read per pin.
        """
        registered = self._call("get_registered_model", lambda: self._t.get_model(model))
        if registered is None:
            return Observed(models={})
        aliases = dict(registered.aliases)
        wanted = pins - set(aliases.values())
        name = model.replace("'", "''")
        query = f"name = '{name}'"
        if not wanted:
            query += f" AND tags.{VALIDATION_TAG} = 'FAILED'"
        found = list(self._versions(query))
        failed = frozenset((v.name, v.version) for v in found if _failed(v))
        versions = {v.version: _info(v) for v in found if v.version in wanted}
        return Observed(
            models={model: ObservedModel(name=model, aliases=aliases, versions=versions)},
            failed=failed,
        )

    def history(self, *, model: str) -> list[AliasEvent]:
        """Every alias change recorded on any version of ``model``, oldest first."""
        events: list[AliasEvent] = []
        name = model.replace("'", "''")
        for mv in self._versions(f"name = '{name}'"):
            for key, value in mv.tags.items():
                if key.startswith(HISTORY_PREFIX):
                    try:
                        events.append(AliasEvent(**json.loads(value)))
                    except (ValueError, TypeError):
                        continue
        # One pass stamps all its events alike; within it, champion moves first (as applied).
        return sorted(events, key=lambda e: (e.time, e.alias != "champion"))

    # -- writes --------------------------------------------------------------------------------

    def _record(self, *, model: str, version: str, event: AliasEvent) -> None:
        stamp = event.time.replace("-", "").replace(":", "").replace(".", "")
        key = f"{HISTORY_PREFIX}{event.alias}.{stamp}"
        value = json.dumps(event.__dict__, sort_keys=True)
        self.stats.tag_writes += 1
        self._call(
            "set_model_version_tag",
            lambda: self._t.set_version_tag(model, version, key, value),
            write=True,
        )

    def tag_version(self, *, model: str, version: str, key: str, value: str) -> None:
        self.stats.tag_writes += 1
        self._call(
            "set_model_version_tag",
            lambda: self._t.set_version_tag(model, version, key, value),
            write=True,
        )

    def set_alias(self, *, model: str, event: AliasEvent) -> None:
        """Move ``event.alias`` to ``event.version`` (or remove it when None) and record why."""
        if event.version is None:
            if event.previous is None:
                return
            self.stats.alias_writes += 1
            self._call(
                "delete_registered_model_alias",
                lambda: self._t.delete_alias(model, event.alias),
                write=True,
            )
            self._record(model=model, version=event.previous, event=event)
            return
        version = event.version
        self.stats.alias_writes += 1
        self._call(
            "set_registered_model_alias",
            lambda: self._t.set_alias(model, event.alias, version),
            write=True,
        )
        self._record(model=model, version=version, event=event)
