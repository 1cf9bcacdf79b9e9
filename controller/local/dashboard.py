"""The dashboard's data on one machine: the state directory ``mlgitops sync`` and ``run`` write.

The overview reads only the recorded status and job runs (files; it answers while MLflow or Git
is down). A model's page reads its record too: the environment's documents at the revision last
applied (from ``--repo``, else the source the status names), then the registry, the training runs
and the metric tables they point at.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from controller.engine import load_desired
from controller.errors import MlgitopsError
from controller.local.cron import read_jobs
from controller.redact import redact
from controller.sources import GitSource
from controller.ui.detail import model_detail
from controller.ui.views import EnvSnapshot

if TYPE_CHECKING:
    from controller.planning.ports import Registry, Tracking
    from controller.state import StateDir


class LocalCollector:
    """Environments ``envs`` (all those with a recorded status when empty) of ``state``."""

    def __init__(
        self,
        state: StateDir,
        *,
        envs: Sequence[str] = (),
        repo: str | None = None,
        registry_for: Callable[[str | None], Registry],
        tracking_for: Callable[[str | None], Tracking],
    ) -> None:
        self.state = state
        self.envs = tuple(envs)
        self.repo = repo
        self.registry_for = registry_for
        self.tracking_for = tracking_for

    @property
    def label(self) -> str:
        return f"state directory {self.state.root}"

    def names(self) -> list[str]:
        if self.envs:
            return list(self.envs)
        root = self.state.root / "envs"
        if not root.is_dir():
            return []
        return sorted(p.name for p in root.iterdir() if (p / "status.json").is_file())

    def snapshots(self) -> list[EnvSnapshot]:
        return [self._snapshot(env) for env in self.names()]

    def _snapshot(self, env: str) -> EnvSnapshot:
        data = self.state.load_status(env)
        if data is None:
            return EnvSnapshot(
                name=env,
                problems=[
                    f"no status recorded in {self.state.root} (run: mlgitops sync --env {env})"
                ],
            )
        models = {name: rec.get("status") or {} for name, rec in data.get("models", {}).items()}
        return EnvSnapshot(
            name=env,
            applied=data.get("lastAppliedRevision"),
            attempted=data.get("lastAttemptedRevision"),
            updated=data.get("updated"),
            problems=list(data.get("problems") or []),
            source=data.get("source"),
            registry=data.get("registry"),
            models=models,
            jobs=read_jobs(self.state.root, env),
            registered={
                n: s["registeredModel"] for n, s in models.items() if s.get("registeredModel")
            },
        )

    def detail(self, env: str, name: str) -> dict[str, Any] | None:
        data = self.state.load_status(env) or {}
        repo = self.repo or data.get("source")
        if not repo:
            return {"problems": [f"no config repository recorded for {env}: pass --repo"]}
        try:
            source = GitSource(repo, cache_dir=self.state.git_cache)
        except MlgitopsError as exc:
            return {"problems": [redact(f"config repository: {exc}")]}
        try:
            _, desired = load_desired(source, env=env, rev=data.get("lastAppliedRevision"))
            doc = next((d for d in desired.deployments if d.doc.metadata.name == name), None)
            if doc is None:
                return None
            spec = desired.environment.spec
            uri = spec.registry.tracking_uri
            return model_detail(
                doc,
                env=env,
                registry=self.registry_for(uri),
                tracking=self.tracking_for(uri),
                source=source,
                data_root=spec.data_root or str(self.state.tables),
            )
        except MlgitopsError as exc:
            return {"problems": [redact(f"{env}: {exc}".splitlines()[0])]}
        finally:
            source.close()
