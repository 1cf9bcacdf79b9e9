"""Every port in one place: the narrow interfaces the engines receive instead of the real things.

The engines (``controller.engine``, ``controller.kubernetes``, ``controller.local``) never import
GitPython, MLflow or the Kubernetes client; they are handed objects that satisfy these protocols,
built by the entry points from the one adapter package of each dependency (``sources``,
``registry``, ``kubernetes.client``). Tests hand them the same real adapters, pointed at real Git
repositories, a real MLflow store and an API server, so a port is a seam for layering, not for
mocks. Keeping them together shows at a glance everything the controller asks of the world.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from controller.planning.types import AliasEvent, Observed, RegisteredVersion, TrainingRun

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
    def trailers(self, base: str, head: str, key: str) -> list[str] | None:
        """Values of trailer ``key`` in the commits after ``base`` up to ``head`` (None: base
        unknown)."""
        ...

    def close(self) -> None: ...


class CommitTimes(Protocol):
    """When the config repository's commits were made (``controller.sources.GitSource``): a
    model's history dates its promotion commits with it."""

    def commit_time(self, sha: str) -> str | None:
        """``sha``'s committer date (ISO 8601, UTC); None when the repository lacks it."""
        ...


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
    def tag_version(self, *, model: str, version: str, key: str, value: str) -> None: ...


RegistryFor = Callable[[str | None], Registry]


class Tracking(Protocol):
    """MLflow tracking as training needs it: experiments, runs, logged models, registration.

    Implemented by ``controller.registry.MlflowTracking`` over the same two transports as the
    registry (REST for a tracking server, ``MlflowClient`` for a local store).
    """

    display: str

    def experiment_id(self, name: str) -> str:
        """The id of experiment ``name``, created (with the default artifact location) when
        missing. Idempotent: two callers racing get the same id."""
        ...

    def search_runs(self, *, experiment_id: str, tags: Mapping[str, str]) -> list[TrainingRun]:
        """Every run of the experiment whose tags include all of ``tags``, oldest first."""
        ...

    def create_run(
        self, *, experiment_id: str, tags: Mapping[str, str], name: str | None = None
    ) -> TrainingRun:
        """A new run (status RUNNING, as MLflow creates it) with ``tags``."""
        ...

    def get_run(self, run_id: str) -> TrainingRun | None: ...
    def set_run_tags(self, run_id: str, tags: Mapping[str, str]) -> None: ...
    def end_run(self, run_id: str, *, status: str) -> None:
        """Mark the run FINISHED, FAILED or KILLED (with an end time)."""
        ...

    def logged_models(self, run_id: str) -> list[str]:
        """``models:/<model_id>`` of every model the run logged (MLflow 3 LoggedModels whose
        source run is ``run_id``), oldest first."""
        ...

    def run_versions(self, run_id: str) -> list[RegisteredVersion]:
        """Every model version, in any registered model, whose run is ``run_id``."""
        ...

    def register_version(
        self, *, model: str, source: str, run_id: str, tags: Mapping[str, str]
    ) -> RegisteredVersion:
        """A new version of registered model ``model`` (created when missing) from ``source``
        (a ``models:/<model_id>`` URI), tagged ``tags``."""
        ...

    def set_version_tags(self, *, model: str, version: str, tags: Mapping[str, str]) -> None: ...
    def model_versions(self, model: str) -> list[RegisteredVersion]:
        """Every version of registered model ``model``, with its tags ([] when it does not
        exist)."""
        ...

    def model_tags(self, model: str) -> dict[str, str]:
        """The tags of registered model ``model`` ({} when it does not exist)."""
        ...

    def set_model_tag(self, *, model: str, key: str, value: str) -> None: ...


TrackingFor = Callable[[str | None], Tracking]
"""The tracking server of an Environment's ``registry.trackingUri`` (None: the embedded store)."""


@dataclass(frozen=True)
class RunnerState:
    """What a runtime knows of one training run's process or Job."""

    state: Literal["running", "succeeded", "failed", "absent"]  # absent: never started here
    reason: str | None = None  # why it failed (exit code, timeout, ...)
    log: str | None = None  # where its output is (a file, or the pod)


class Runner(Protocol):
    """Where training runs execute: a local process (``local.training``) or a Kubernetes Job."""

    def state(self, run: TrainingRun) -> RunnerState: ...
    def start(
        self,
        run: TrainingRun,
        *,
        commit: str,
        command: list[str],
        env: Mapping[str, str],
        timeout: float,
    ) -> str:
        """Start the run's script at ``commit``; returns where its log is kept."""
        ...

    def cleanup(self, run: TrainingRun) -> None:
        """Release what the run held (a checkout); its log stays."""
        ...

    def log(self, run: TrainingRun) -> str | None:
        """Where the run's output is kept, if anywhere."""
        ...


class Validator(Protocol):
    """Where validations run (``mlgitops validate-model``): a local process or a Kubernetes Job,
    one per model version (the key), started once and watched like a training run."""

    def state(self, key: str) -> RunnerState: ...
    def start(self, key: str, *, args: list[str], env: Mapping[str, str], timeout: float) -> str:
        """Start ``mlgitops <args>`` for ``key``; returns where its output goes."""
        ...

    def cleanup(self, key: str) -> None: ...


class Written(Protocol):
    """What a write-back left in the config repository (``sources.WriteBackResult``)."""

    @property
    def sha(self) -> str: ...
    @property
    def branch(self) -> str: ...
    @property
    def created(self) -> bool: ...
    @property
    def detail(self) -> str: ...


class Promoter(Protocol):
    """Writes a pin to the config repository, once (``sources.WriteBack``)."""

    def promote(
        self,
        *,
        env: str,
        name: str,
        path: str,
        version: str,
        alias: Literal["champion", "challenger"] = "champion",
        policy: Literal["auto", "manual", "disabled"] = "auto",
        body: str = "",
        force: bool = False,
        check: Callable[[bytes], None] | None = None,
    ) -> Written: ...


class CodeSource(Protocol):
    """The code repository a ModelDeployment trains from (``controller.sources.CodeRepo``).

    A local path is read in place (its object database, never its working tree); a URL is
    mirrored under the state directory and fetched incrementally, credentials redacted.
    """

    display: str

    def fetch(self) -> None:
        """Bring the mirror up to date (a no-op for a local path). Raises SourceUnavailable."""
        ...

    def head(self, branch: str) -> Commit:
        """The head of ``branch``. InvalidInput (naming ``training.source.branch``) when the
        branch does not exist; SourceUnavailable when the repository cannot be read."""
        ...

    def commits(self, base: str | None, head: str) -> list[Commit]:
        """The commits after ``base`` up to ``head`` (first parent), oldest first; every commit
        reachable from ``head`` when ``base`` is None."""
        ...

    def changed(self, base: str | None, head: str) -> list[str]:
        """Paths that differ between ``base`` and ``head`` (every path at ``head`` when None)."""
        ...

    def checkout(self, sha: str, path: Path) -> None:
        """A clean checkout of ``sha`` at ``path`` (a detached git worktree)."""
        ...

    def remove_checkout(self, path: Path) -> None: ...
    def close(self) -> None: ...


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
    def annotate(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        name: str,
        annotations: Mapping[str, str | None],
    ) -> Obj | None:
        """Merge ``annotations`` into the object's (None removes one); None when it is gone."""
        ...
