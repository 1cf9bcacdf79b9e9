"""One ModelDeployment object in a Kubernetes cluster: aliases, children, prune, one status.

The operator's handlers (create, update, resume, timer) all call ``reconcile_deployment``; it reads
the object as it is now, never the event that woke it. The registry part is the same planner the
Git CLI uses (``planning.plan``) on a one-document desired state; the children are rendered by
pure functions and applied only where the live object differs; children a previous pass created
but the spec no longer asks for are pruned from the inventory kept in status. The status is
returned, not written, so the caller writes it once and only when it changed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import ValidationError

from controller.api.documents import API_VERSION, Environment
from controller.api.loader import load_deployment
from controller.api.status import (
    HistoryEntry,
    InventoryEntry,
    ModelDeploymentStatus,
    ServingStatus,
)
from controller.errors import InvalidInput, MlgitopsError, Unavailable
from controller.planning import AliasChange, AliasEvent, Observed, plan
from controller.planning.children import (
    COMPONENT,
    Owner,
    RenderContext,
    child_name,
    render_children,
)
from controller.reconcile import Outcome, _version_status, now_iso, summarize

Obj = dict[str, Any]
REVISION_ANNOTATION = "mlgitops.io/revision"


class Cluster(Protocol):
    def ensure(self, obj: Obj, live: Obj | None = None) -> tuple[Obj, bool]: ...
    def delete(self, api_version: str, kind: str, namespace: str | None, name: str) -> bool: ...


class ModelRegistry(Protocol):
    display: str

    def observe_model(self, *, model: str, pins: set[str]) -> Observed: ...
    def set_alias(self, *, model: str, event: AliasEvent) -> None: ...


class EnvironmentMissing(Unavailable):
    reason = "EnvironmentNotFound"


@dataclass(frozen=True)
class ObjectView:
    """The parts of a ModelDeployment object a pass reads."""

    name: str
    namespace: str
    uid: str
    generation: int
    spec: Mapping[str, Any]
    status: Mapping[str, Any]
    annotations: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> ObjectView:
        meta = body.get("metadata", {})
        return cls(
            name=meta["name"],
            namespace=meta.get("namespace", ""),
            uid=meta.get("uid", ""),
            generation=int(meta.get("generation", 1)),
            spec=dict(body.get("spec") or {}),
            status=dict(body.get("status") or {}),
            annotations=dict(meta.get("annotations") or {}),
        )

    @property
    def revision(self) -> str:
        """The Git revision that applied this object, or its generation if kubectl did."""
        return self.annotations.get(REVISION_ANNOTATION) or f"generation-{self.generation}"


@dataclass
class DeploymentResult:
    status: Obj
    changed: bool
    changes: list[AliasChange] = field(default_factory=list)
    applied: list[str] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)
    error: MlgitopsError | None = None


def _previous(status: Mapping[str, Any]) -> ModelDeploymentStatus | None:
    known = {k: v for k, v in status.items() if k in _STATUS_KEYS}
    if not known:
        return None
    try:
        return ModelDeploymentStatus.model_validate(known)
    except ValidationError:
        return None  # hand-edited or from an older version: rebuild it


_STATUS_KEYS = {f.alias or n for n, f in ModelDeploymentStatus.model_fields.items()}


def _dump(status: ModelDeploymentStatus) -> Obj:
    return status.model_dump(mode="json", by_alias=True, exclude_none=True)


def _serving(live: Obj | None, namespace: str) -> ServingStatus | None:
    if live is None:
        return None
    spec, st = live.get("spec", {}), live.get("status", {})
    notes = live.get("spec", {}).get("template", {}).get("metadata", {}).get("annotations", {})
    replicas = int(spec.get("replicas", 1))
    ready, updated = int(st.get("readyReplicas", 0)), int(st.get("updatedReplicas", 0))
    current = int(st.get("observedGeneration", 0)) >= int(live["metadata"].get("generation", 1))
    return ServingStatus(
        url=f"http://{live['metadata']['name']}.{namespace}.svc",
        replicas=replicas,
        ready_replicas=ready,
        updated_replicas=updated,
        champion=notes.get("mlgitops.io/champion") or None,
        challenger=notes.get("mlgitops.io/challenger") or None,
        challenger_traffic=int(notes.get("mlgitops.io/challenger-traffic", "0") or 0),
        rolled_out=current and ready == replicas and updated == replicas,
    )


def reconcile_deployment(
    *,
    obj: ObjectView,
    environment: Environment | None,
    registry_for: Callable[[str | None], ModelRegistry],
    cluster: Cluster,
    context: Callable[[Environment], RenderContext],
    now: Callable[[], str] = now_iso,
) -> DeploymentResult:
    previous = _previous(obj.status)
    result = DeploymentResult(status={}, changed=False)
    revision = obj.revision
    stamp = now()
    try:
        if environment is None:
            raise EnvironmentMissing(
                f"no Environment in namespace {obj.namespace!r}: apply one (kind: Environment)"
            )
        source = f"modeldeployment/{obj.name}"
        data = {
            "apiVersion": API_VERSION,
            "kind": "ModelDeployment",
            "metadata": {"name": obj.name},
            "spec": obj.spec,
        }
        desired = load_deployment(data, environment=environment, source=source, revision=revision)
        [d] = desired.deployments
        spec, model = d.doc.spec, d.registered_model
        pins = {p.version for p in (spec.champion, spec.challenger) if p is not None}
        registry = registry_for(environment.spec.registry.tracking_uri)
        observed = registry.observe_model(model=model, pins=pins)
        the_plan = plan(desired, observed)
        if the_plan.problems:
            raise InvalidInput(list(the_plan.problems), revision)
        reason = f"ModelDeployment {obj.namespace}/{obj.name} generation {obj.generation}"
        if REVISION_ANNOTATION in obj.annotations:
            reason = f"revision {revision[:7]} ({reason})"
        for change in the_plan.changes:
            event = AliasEvent(
                alias=change.alias,
                version=change.version,
                previous=change.previous,
                revision=revision,
                reason=reason,
                time=stamp,
            )
            registry.set_alias(model=model, event=event)
            result.changes.append(change)

        owner = Owner(obj.name, obj.uid, obj.namespace)
        children = render_children(owner, spec, model, context(environment))
        serving_live: Obj | None = None
        for child in children:
            live, wrote = cluster.ensure(child)
            ref = f"{child['kind']}/{child['metadata']['name']}"
            if wrote:
                result.applied.append(ref)
            if child["kind"] == "Deployment":
                serving_live = live
        inventory = [
            InventoryEntry(api_version=c["apiVersion"], kind=c["kind"], name=c["metadata"]["name"])
            for c in children
        ]
        for old in previous.inventory if previous else []:
            if old not in inventory:
                cluster.delete(old.api_version, old.kind, obj.namespace, old.name)
                result.pruned.append(f"{old.kind}/{old.name}")

        serving = _serving(serving_live, obj.namespace)
        progressing = None
        if serving is not None and not serving.rolled_out:
            progressing = (
                f"serving {serving.ready_replicas}/{serving.replicas} replicas ready "
                f"with champion {serving.champion}"
            )
        parts = [f"champion {spec.champion.version}" if spec.champion else "no champion"]
        if spec.challenger:
            parts.append(f"challenger {spec.challenger.version}")
        status = summarize(
            previous=previous,
            outcome=Outcome(
                attempted=revision,
                applied=True,
                reason="Reconciled",
                message=f"Applied {revision[:12]}: {', '.join(parts)}; {len(children)} children",
                progressing=progressing,
            ),
            generation=obj.generation,
            registered_model=model,
            champion=_version_status(
                spec.champion.version if spec.champion else None,
                model=model,
                observed=observed,
                previous=previous.champion if previous else None,
            ),
            challenger=_version_status(
                spec.challenger.version if spec.challenger else None,
                model=model,
                observed=observed,
                previous=previous.challenger if previous else None,
            ),
            events=[
                HistoryEntry(
                    alias=c.alias,
                    version=c.version,
                    previous=c.previous,
                    revision=revision,
                    reason=reason,
                    time=stamp,
                )
                for c in result.changes
            ],
            now=stamp,
            serving=serving,
            inventory=inventory,
        )
    except (InvalidInput, Unavailable) as exc:
        result.error = exc
        status = summarize(
            previous=previous,
            outcome=Outcome(
                attempted=revision,
                applied=False,
                reason="InvalidSpec" if isinstance(exc, InvalidInput) else exc.reason,
                message=str(exc),
                stalled=isinstance(exc, InvalidInput),
            ),
            generation=obj.generation if isinstance(exc, InvalidInput) else None,
            now=stamp,
        )
        if isinstance(exc, InvalidInput):
            # Stalled on this generation: observedGeneration says the spec was seen and refused.
            status.observed_generation = obj.generation
    result.status = _dump(status)
    result.changed = result.status != (_dump(previous) if previous else {})
    return result


def serving_name(deployment: str) -> str:
    return child_name(deployment, "serving")


__all__ = ["COMPONENT", "DeploymentResult", "ObjectView", "reconcile_deployment", "serving_name"]
