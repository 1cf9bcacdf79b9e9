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
from typing import Any

from controller.api.documents import API_VERSION, Environment
from controller.api.loader import DeploymentDoc, load_deployment
from controller.api.status import (
    InventoryEntry,
    ModelDeploymentStatus,
    PromotionStatus,
    ServingStatus,
    TrainingStatus,
)
from controller.engine import now_iso
from controller.errors import EnvironmentMissing, InvalidInput, MlgitopsError, Unavailable
from controller.planning import AliasChange, plan
from controller.planning.children import Owner, RenderContext, render_children
from controller.planning.ports import Cluster, RegistryFor
from controller.planning.summarize import applied_status, dump, failed_status, parse

Obj = dict[str, Any]
REVISION_ANNOTATION = "mlgitops.io/revision"


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
    environment: Environment | InvalidInput | None,
    registry_for: RegistryFor,
    cluster: Cluster,
    context: Callable[[Environment], RenderContext],
    now: Callable[[], str] = now_iso,
    on_write: Callable[[Obj], None] = lambda _: None,
    train: Callable[[Environment, Owner, DeploymentDoc], TrainingStatus | None] | None = None,
    promote: Callable[[Environment, Owner, DeploymentDoc], PromotionStatus | None] | None = None,
    watch: Callable[[Environment, Owner, DeploymentDoc], None] | None = None,
) -> DeploymentResult:
    """One pass over ``obj``: aliases, children, prune; the status it should have (not written).

    ``train`` runs the training pass of a ModelDeployment with ``training`` once its children
    are applied; what it returns is the status's ``training``. ``promote`` then runs the
    promotion pass (validate new versions, write their pins back to Git) of one with
    ``validation`` or ``training``; what it returns is the status's ``promotion``.
    ``on_write`` is told of every child this pass wrote (the object the API server returned),
    so the caller can recognize the watch event that echoes it.
    """
    previous = parse(ModelDeploymentStatus, obj.status)
    result = DeploymentResult(status={}, changed=False)
    revision = obj.revision
    stamp = now()
    try:
        if isinstance(environment, InvalidInput):
            raise environment
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
            event = change.event(revision=revision, reason=reason, time=stamp)
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
                on_write(live)
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

        training = train(environment, owner, d) if train and spec.training else None
        if watch and spec.monitoring:
            watch(environment, owner, d)  # the monitor's alerts: Events and notifications
        status = applied_status(
            previous=previous,
            spec=spec,
            model=model,
            observed=observed,
            revision=revision,
            applied=revision[:12],
            reason=reason,
            changes=result.changes,
            generation=obj.generation,
            serving=_serving(serving_live, obj.namespace),
            inventory=inventory,
            detail=f"{len(children)} children",
            training=training,
            promotion=promote(environment, owner, d)
            if promote and (spec.validation or spec.training or spec.promotion.online)
            else None,
            now=stamp,
        )
    except (InvalidInput, Unavailable) as exc:
        result.error = exc
        status = failed_status(
            previous=previous,
            error=exc,
            attempted=revision,
            generation=obj.generation,
            invalid="InvalidSpec",
            now=stamp,
        )
    result.status = dump(status)
    result.changed = result.status != (dump(previous) if previous else {})
    return result


__all__ = ["DeploymentResult", "ObjectView", "reconcile_deployment"]
