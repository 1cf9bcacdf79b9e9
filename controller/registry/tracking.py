"""MLflow tracking as training uses it: experiments, runs tagged ``mlgitops.*``, logged models,
and registering them as model versions.

A training run is an MLflow run the controller creates before anything starts, tagged with what
triggered it (``mlgitops.trigger``, ``mlgitops.trigger_key``, ...), and found again by those tags:
the run is the record that makes training happen exactly once. So reads here are searches by tag,
and every write may be repeated after a failure, except creating a run or a model version, which
the caller does only after searching (``search_runs``, ``run_versions``) found none.

Calls travel over the registry's two transports (``transport.py``): MLflow's REST API for a
tracking server, so a controller that only talks to one never imports mlflow, and
``MlflowClient`` for a local store. Errors are :class:`~controller.errors.RegistryUnavailable`, one
line with credentials redacted; something that does not exist is None or an empty list.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TypeVar

from controller.errors import RegistryUnavailable
from controller.planning.types import RegisteredVersion, TrainingRun
from controller.redact import redact
from controller.registry.mlflow import transport_for
from controller.registry.transport import (
    Page,
    RunRecord,
    Transport,
    VersionRecord,
    guarded,
    pages,
)

T = TypeVar("T")
TERMINAL = ("FINISHED", "FAILED", "KILLED")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _literal(value: str) -> str | None:
    """``value`` as a string literal of MLflow's search syntax, or None when it cannot be one.

    MLflow (3.17.2) takes what is between the quotes as is, with no escapes (``'it''s'`` matches
    ``it''s``), so a value holding a single quote is double-quoted instead, and one holding both
    kinds of quote cannot be written at all.
    """
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    return None


def _tags_filter(tags: Mapping[str, str]) -> str:
    """An MLflow filter for runs carrying every tag, as far as the syntax can say it.

    Keys are backquoted (``mlgitops.trigger_key`` has dots). A tag the syntax cannot express (a
    backtick in the key, both quotes in the value) is left out: the search then returns more
    runs, and ``search_runs`` compares every tag itself anyway.
    """
    clauses = []
    for key, value in sorted(tags.items()):
        literal = _literal(value)
        if "`" not in key and literal is not None:
            clauses.append(f"tags.`{key}` = {literal}")
    return " AND ".join(clauses)


def _model_id(source: str) -> str | None:
    """The id in a ``models:/<model_id>`` URI (not ``models:/<name>/<version>`` or ``@alias``)."""
    if not source.startswith("models:/"):
        return None
    rest = source.removeprefix("models:/")
    return rest if rest and "/" not in rest and "@" not in rest else None


def _training_run(run: RunRecord) -> TrainingRun:
    return TrainingRun(
        run_id=run.run_id,
        experiment_id=run.experiment_id,
        status=run.status,
        tags=dict(run.tags),
        start_time=run.start_time,
        end_time=run.end_time,
    )


def _registered(mv: VersionRecord) -> RegisteredVersion:
    return RegisteredVersion(
        name=mv.name,
        version=mv.version,
        run_id=mv.run_id,
        source=mv.source,
        tags=dict(mv.tags),
        created=mv.created,
        updated=mv.updated,
    )


class MlflowTracking:
    """The tracking server (or local store) of one tracking URI, as ``planning.ports.Tracking``."""

    def __init__(
        self,
        tracking_uri: str,
        *,
        transport: Transport | None = None,
        artifact_root: Path | None = None,
    ) -> None:
        """``artifact_root``: where the experiments it creates keep their artifacts (a store
        with no server of its own, the embedded one: else MLflow would pick ``./mlruns`` in
        whatever directory the process happens to run in). A tracking server decides itself."""
        self.tracking_uri = tracking_uri
        self.display = redact(tracking_uri)
        self._t = transport or transport_for(tracking_uri)
        self._artifact_root = artifact_root

    # -- plumbing ------------------------------------------------------------------------------

    def _call(self, fn: Callable[[], T]) -> T:
        return guarded(self.display, fn)

    def _paged(self, search: Callable[[str | None], Page[T]]) -> Iterator[T]:
        return pages(self._call, search)

    def experiment_id(self, name: str) -> str:
        """The id of experiment ``name``, created (default artifact location) when missing.

        Read first, the usual case; a create that finds the name taken lost a race to another
        caller, whose experiment is read back. A deleted experiment still holds its name (until
        purged), and runs cannot be created in it, so it is an error naming the way out.
        """
        found = self._call(lambda: self._t.get_experiment(name))
        if found is None:
            location = None
            if self._artifact_root is not None:
                safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
                location = (self._artifact_root / safe).resolve().as_uri()
            created = self._call(lambda: self._t.create_experiment(name, location))
            if created is not None:
                return created
            found = self._call(lambda: self._t.get_experiment(name))
            if found is None:
                raise RegistryUnavailable(
                    f"registry {self.display}: experiment {name!r} exists but cannot be read"
                )
        if found.deleted:
            raise RegistryUnavailable(
                f"registry {self.display}: experiment {name!r} is deleted; restore it, or "
                "purge it (mlflow gc) so that it can be created again"
            )
        return found.experiment_id

    def search_runs(self, *, experiment_id: str, tags: Mapping[str, str]) -> list[TrainingRun]:
        """Every active run of the experiment whose tags include all of ``tags``, oldest first.

        The server filters on the tags (paginated); each run is checked again here, since the
        filter may leave out a tag MLflow's syntax cannot express.
        """
        query = _tags_filter(tags)
        runs = [
            _training_run(run)
            for run in self._paged(lambda token: self._t.search_runs(experiment_id, query, token))
            if all(run.tags.get(k) == v for k, v in tags.items())
        ]
        return sorted(runs, key=lambda r: r.start_time or 0)

    def create_run(
        self, *, experiment_id: str, tags: Mapping[str, str], name: str | None = None
    ) -> TrainingRun:
        """A new run (status RUNNING, as MLflow creates it) with ``tags``: one request, not
        retried once sent, since a retry could leave two runs for one trigger."""
        start = _now_ms()
        run = self._call(lambda: self._t.create_run(experiment_id, tags, name, start))
        return _training_run(run)

    def get_run(self, run_id: str) -> TrainingRun | None:
        run = self._call(lambda: self._t.get_run(run_id))
        return None if run is None else _training_run(run)

    def set_run_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        for key, value in tags.items():
            self._call(functools.partial(self._t.set_run_tag, run_id, key, value))

    def end_run(self, run_id: str, *, status: str) -> None:
        """Mark the run FINISHED, FAILED or KILLED, ended now."""
        if status not in TERMINAL:
            raise ValueError(f"end_run: status must be one of {', '.join(TERMINAL)}, not {status}")
        end = _now_ms()
        self._call(lambda: self._t.update_run(run_id, status, end))

    # -- models --------------------------------------------------------------------------------

    def logged_models(self, run_id: str) -> list[str]:
        """``models:/<model_id>`` of every model the run logged, oldest first.

        MLflow 3 logs a model as a LoggedModel of the run's experiment whose ``source_run_id`` is
        the run; only READY ones count (PENDING is still uploading, FAILED never finished), so
        what is returned can be registered. An unknown run logged nothing.
        """
        run = self._call(lambda: self._t.get_run(run_id))
        literal = _literal(run_id)
        if run is None or literal is None:
            return []
        query = f"source_run_id = {literal}"
        models = [
            model
            for model in self._paged(
                lambda token: self._t.search_logged_models(run.experiment_id, query, token)
            )
            if model.source_run_id == run_id and model.status == "READY"
        ]
        models.sort(key=lambda m: (m.created, m.model_id))
        return [f"models:/{m.model_id}" for m in models]

    def run_versions(self, run_id: str) -> list[RegisteredVersion]:
        """Every model version, in any registered model, whose run is ``run_id``: what a retried
        registration looks for first, so it does not register twice."""
        literal = _literal(run_id)
        if literal is None:
            return []
        query = f"run_id = {literal}"
        found = [
            _registered(mv)
            for mv in self._paged(lambda token: self._t.search_versions(query, token))
            if mv.run_id == run_id
        ]
        return sorted(
            found, key=lambda v: (v.name, int(v.version) if v.version.isdigit() else 0, v.version)
        )

    def register_version(
        self, *, model: str, source: str, run_id: str, tags: Mapping[str, str]
    ) -> RegisteredVersion:
        """A new version of ``model`` (created when missing; "already exists" from a racing
        caller is fine) from ``source``, a ``models:/<model_id>`` URI, tagged ``tags``.

        The model id goes along with the source: MLflow 3 servers refuse a ``models:/<id>``
        source without it, and link the logged model to the version with it.
        """
        if self._call(lambda: self._t.get_model(model)) is None:
            self._call(lambda: self._t.create_model(model))
        model_id = _model_id(source)
        mv = self._call(lambda: self._t.create_version(model, source, run_id, tags, model_id))
        return _registered(mv)

    def set_version_tags(self, *, model: str, version: str, tags: Mapping[str, str]) -> None:
        for key, value in tags.items():
            self._call(functools.partial(self._t.set_version_tag, model, version, key, value))

    def model_tags(self, model: str) -> dict[str, str]:
        found = self._call(lambda: self._t.get_model(model))
        return {} if found is None else dict(found.tags)

    def set_model_tag(self, *, model: str, key: str, value: str) -> None:
        self._call(functools.partial(self._t.set_model_tag, model, key, value))

    def model_versions(self, model: str) -> list[RegisteredVersion]:
        literal = _literal(model)
        if literal is None:
            return []
        return [
            _registered(mv)
            for mv in self._paged(lambda token: self._t.search_versions(f"name = {literal}", token))
        ]
