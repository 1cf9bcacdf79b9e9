"""The registry transport for every non-HTTP tracking URI (SQLite, file, databricks): MlflowClient.

Imported only when such a URI is first used (``import mlflow`` costs ~125 MiB and 1-2 s); an
``http(s)://`` tracking server goes through ``rest.py`` instead. Also resolves ``models:/`` URIs for
the model server, which loads the model with MLflow anyway.

Registering a ``models:/<model_id>`` source needs one workaround: MLflow 3's SQL registry store
looks the logged model up through ``MlflowClient()``, i.e. the process-wide tracking URI, not the
store it belongs to (see ``_global_tracking_uri``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

from mlflow import MlflowClient
from mlflow.entities import ViewType
from mlflow.exceptions import MlflowException
from mlflow.tracking._tracking_service import utils as _tracking_utils

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

T = TypeVar("T")
_MISSING = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")
_EXISTS = ("RESOURCE_ALREADY_EXISTS",)
_MODEL_VERSIONS_TAG = "mlflow.modelVersions"  # on a logged model: the versions made from it
_GLOBAL_URI_LOCK = threading.Lock()


@contextmanager
def _global_tracking_uri(uri: str) -> Iterator[None]:
    """Point MLflow's process-wide tracking URI at ``uri`` for one call, then restore it exactly.

    ``SqlAlchemyStore.create_model_version`` resolves a ``models:/<model_id>`` source with a bare
    ``MlflowClient()`` (MLflow 3.17.2), so against a store that is not the process default it
    fails ("Logged model ... not found") and creates ``./mlflow.db`` on the way. Only the module
    variable is swapped: ``mlflow.set_tracking_uri`` would also rewrite (and on restore, unset)
    ``$MLFLOW_TRACKING_URI`` and reset the tracer. Serialised, as the variable is shared.
    """
    with _GLOBAL_URI_LOCK:
        previous = _tracking_utils._tracking_uri
        _tracking_utils._tracking_uri = uri  # type: ignore[assignment]  # typed as its default, None
        try:
            yield
        finally:
            _tracking_utils._tracking_uri = previous


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


def _version(mv: Any) -> VersionRecord:
    return VersionRecord(
        name=str(mv.name),
        version=str(mv.version),
        run_id=mv.run_id or None,
        tags={str(k): str(v) for k, v in (mv.tags or {}).items()},
        source=mv.source or None,
        created=None if mv.creation_timestamp is None else int(mv.creation_timestamp),
        updated=None if mv.last_updated_timestamp is None else int(mv.last_updated_timestamp),
    )


def _run_record(run: Any) -> RunRecord:
    info = run.info
    return RunRecord(
        run_id=str(info.run_id),
        experiment_id=str(info.experiment_id),
        status=str(info.status),
        tags={str(k): str(v) for k, v in (run.data.tags or {}).items()},
        start_time=None if info.start_time is None else int(info.start_time),
        end_time=None if info.end_time is None else int(info.end_time),
    )


def _logged_model(model: Any) -> LoggedModelRecord:
    status = getattr(model.status, "value", model.status)  # LoggedModelStatus, a str Enum
    return LoggedModelRecord(
        model_id=str(model.model_id),
        source_run_id=model.source_run_id or None,
        status=str(status or "UNSPECIFIED"),
        created=int(model.creation_timestamp or 0),
    )


def _model(model: Any) -> ModelRecord:
    return ModelRecord(
        name=str(model.name),
        aliases={str(k): str(v) for k, v in (model.aliases or {}).items()},
        tags={str(k): str(v) for k, v in (model.tags or {}).items()},
    )


class ClientTransport:
    def __init__(self, tracking_uri: str) -> None:
        self.display = redact(tracking_uri)
        self._uri = tracking_uri
        self._client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        # Writes go to the registry client directly: MlflowClient re-reads the whole registered
        # model before every alias or tag write to refuse prompts, which was a third of the
        # operator's CPU at 1,000 ModelDeployments (py-spy). We write only to models a pass has
        # just read as registered models, so that check adds nothing here.
        self._writer = self._client._get_registry_client()  # type: ignore[no-untyped-call]

    def _run(self, fn: Callable[[], T], *, missing: bool = False, exists: bool = False) -> T | None:
        try:
            return fn()
        except MlflowException as exc:
            code = getattr(exc, "error_code", "")
            if (missing and code in _MISSING) or (exists and code in _EXISTS):
                return None
            raise RegistryUnavailable(
                f"registry {self.display}: {redact(one_line(exc, lines=2))}"
            ) from exc

    def get_model(self, name: str) -> ModelRecord | None:
        found = self._run(lambda: self._client.get_registered_model(name), missing=True)
        return None if found is None else _model(found)

    def search_models(self, filter_string: str, token: str | None) -> Page[ModelRecord]:
        page = self._run(
            lambda: self._client.search_registered_models(
                filter_string=filter_string, max_results=PAGE_SIZE, page_token=token
            )
        )
        assert page is not None
        return Page([_model(m) for m in page], page.token or None)

    def search_versions(self, filter_string: str, token: str | None) -> Page[VersionRecord]:
        page = self._run(
            lambda: self._client.search_model_versions(
                filter_string=filter_string, max_results=PAGE_SIZE, page_token=token
            )
        )
        assert page is not None
        return Page([_version(v) for v in page], page.token or None)

    def get_version(self, name: str, version: str) -> VersionRecord | None:
        found = self._run(lambda: self._client.get_model_version(name, version), missing=True)
        return None if found is None else _version(found)

    def set_alias(self, name: str, alias: str, version: str) -> None:
        self._run(lambda: self._writer.set_registered_model_alias(name, alias, version))

    def delete_alias(self, name: str, alias: str) -> None:
        self._run(lambda: self._writer.delete_registered_model_alias(name, alias))

    def set_version_tag(self, name: str, version: str, key: str, value: str) -> None:
        self._run(lambda: self._writer.set_model_version_tag(name, version, key, value))

    def set_model_tag(self, name: str, key: str, value: str) -> None:
        self._run(lambda: self._writer.set_registered_model_tag(name, key, value))

    # -- training ------------------------------------------------------------------------------

    def get_experiment(self, name: str) -> ExperimentRecord | None:
        found = self._run(lambda: self._client.get_experiment_by_name(name), missing=True)
        if found is None:
            return None
        return ExperimentRecord(
            experiment_id=str(found.experiment_id),
            name=str(found.name),
            deleted=found.lifecycle_stage == "deleted",
        )

    def create_experiment(self, name: str, artifact_location: str | None = None) -> str | None:
        created = self._run(
            lambda: self._client.create_experiment(name, artifact_location=artifact_location),
            exists=True,
        )
        return None if created is None else str(created)

    def create_run(
        self, experiment_id: str, tags: Mapping[str, str], name: str | None, start_time: int
    ) -> RunRecord:
        run = self._run(
            lambda: self._client.create_run(
                experiment_id, start_time=start_time, tags=dict(tags), run_name=name
            )
        )
        return _run_record(run)

    def get_run(self, run_id: str) -> RunRecord | None:
        run = self._run(lambda: self._client.get_run(run_id), missing=True)
        return None if run is None else _run_record(run)

    def search_runs(
        self, experiment_id: str, filter_string: str, token: str | None
    ) -> Page[RunRecord]:
        page = self._run(
            lambda: self._client.search_runs(
                [experiment_id],
                filter_string=filter_string,
                run_view_type=ViewType.ACTIVE_ONLY,
                max_results=PAGE_SIZE,
                order_by=["attributes.start_time ASC"],
                page_token=token,
            )
        )
        assert page is not None
        return Page([_run_record(r) for r in page], page.token or None)

    def set_run_tag(self, run_id: str, key: str, value: str) -> None:
        self._run(lambda: self._client.set_tag(run_id, key, value))

    def update_run(self, run_id: str, status: str, end_time: int) -> None:
        self._run(lambda: self._client.set_terminated(run_id, status=status, end_time=end_time))

    def search_logged_models(
        self, experiment_id: str, filter_string: str, token: str | None
    ) -> Page[LoggedModelRecord]:
        page = self._run(
            lambda: self._client.search_logged_models(
                experiment_ids=[experiment_id],
                filter_string=filter_string,
                max_results=LOGGED_MODEL_PAGE_SIZE,
                order_by=[{"field_name": "creation_timestamp", "ascending": True}],
                page_token=token,
            )
        )
        assert page is not None
        return Page([_logged_model(m) for m in page], page.token or None)

    def create_model(self, name: str) -> bool:
        created = self._run(lambda: self._client.create_registered_model(name), exists=True)
        return created is not None

    def create_version(
        self,
        name: str,
        source: str,
        run_id: str,
        tags: Mapping[str, str],
        model_id: str | None,
    ) -> VersionRecord:
        def create() -> Any:
            with _global_tracking_uri(self._uri):
                return self._client.create_model_version(
                    name,
                    source,
                    run_id=run_id,
                    tags=dict(tags),
                    model_id=model_id,
                    await_creation_for=0,  # as over REST: local stores create versions READY
                )

        mv = _version(self._run(create))
        if model_id is not None:
            self._run(lambda: self._link(model_id, mv))
        return mv

    def _link(self, model_id: str, mv: VersionRecord) -> None:
        """Record the version on its logged model, as a tracking server does when it registers
        one (and ``mlflow.register_model`` does), so MLflow's UI shows the two linked."""
        model = self._client.get_logged_model(model_id)
        linked = json.loads(model.tags.get(_MODEL_VERSIONS_TAG) or "[]")
        entry = {"name": mv.name, "version": int(mv.version)}  # as the server writes it
        if entry not in linked:
            value = json.dumps([*linked, entry])
            self._client.set_logged_model_tags(model_id, {_MODEL_VERSIONS_TAG: value})
