"""The registry transport for every non-HTTP tracking URI (SQLite, file, databricks): MlflowClient.

Imported only when such a URI is first used (``import mlflow`` costs ~125 MiB and 1-2 s); an
``http(s)://`` tracking server goes through ``rest.py`` instead. Also resolves ``models:/`` URIs for
the model server, which loads the model with MLflow anyway.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

from controller.errors import RegistryUnavailable, one_line
from controller.redact import redact
from controller.registry.transport import (
    PAGE_SIZE,
    ModelRecord,
    Page,
    VersionRecord,
)

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

T = TypeVar("T")
_MISSING = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")


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
    )


def _model(model: Any) -> ModelRecord:
    return ModelRecord(
        name=str(model.name), aliases={str(k): str(v) for k, v in (model.aliases or {}).items()}
    )


class ClientTransport:
    def __init__(self, tracking_uri: str) -> None:
        self.display = redact(tracking_uri)
        self._client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        # Writes go to the registry client directly: MlflowClient re-reads the whole registered
        # model before every alias or tag write to refuse prompts, which was a third of the
        # operator's CPU at 1,000 ModelDeployments (py-spy). We write only to models a pass has
        # just read as registered models, so that check adds nothing here.
        self._writer = self._client._get_registry_client()  # type: ignore[no-untyped-call]

    def _run(self, fn: Callable[[], T], *, missing: bool = False) -> T | None:
        try:
            return fn()
        except MlflowException as exc:
            if missing and getattr(exc, "error_code", "") in _MISSING:
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
