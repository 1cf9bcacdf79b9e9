"""The promotion pass of one ModelDeployment: validate new versions, then propose them to Git.

Shared by both runtimes, like ``controller.training``: they hand in where validations run (a
local process or a Kubernetes Job: ``ports.Validator``) and how Git is written
(``ports.Promoter``, the config repository's ``WriteBack``), and get back a status and Events.

What to do comes from ``pipeline.promotion.decide`` on the versions' tags, read fresh from the
registry on every pass (level-based: no memory of earlier passes is needed). Each step is
idempotent on its own: a validation is keyed by the version (``validate-model`` itself keeps one
result per version), and every write-back carries a trailer the branch is searched for first, so
a crash between any two steps converges on the next pass, with one result and one commit.

After a write-back the version is tagged ``mlgitops.proposed.<alias>`` with what was written (a
commit, or a promotion branch awaiting its merge), so later passes need not fetch the config
repository again to learn it. The alias itself moves only when the sync applies the new pin.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from controller.api.documents import Environment
from controller.api.loader import DeploymentDoc
from controller.api.status import PromotionStatus
from controller.errors import InvalidInput, MlgitopsError, Problem, Unavailable
from controller.pipeline.promotion import TAG_PROPOSED, Proposal, Version, decide
from controller.pipeline.validation import (
    TAG_COMPARISON_DETAIL,
    TAG_FAILED_CHECKS,
    TAG_REPORT,
    validation_args,
)
from controller.planning.ports import Promoter, Tracking, Validator, Written
from controller.planning.types import VALIDATION_TAG
from controller.redact import redact
from controller.training import Event

TAG_VALIDATION_ERROR = "mlgitops.validation.error"  # validate-model could not run (bad input)
VALIDATION_TIMEOUT = 3600.0
RECENT = 10  # the newest trained versions whose validation process is looked at


@dataclass
class PromotionResult:
    status: PromotionStatus
    events: list[Event] = field(default_factory=list)
    error: MlgitopsError | None = None


class ReadOnlyPromoter:
    """A ``Promoter`` with nowhere to write (no config repository): every write-back is refused
    with ``reason``, one line, which the pass reports as its problem. Versions are still
    validated; a person commits the pin."""

    def __init__(self, reason: str = "no config repository to write to") -> None:
        self.reason = reason

    def promote(self, **_: object) -> Written:
        raise InvalidInput([Problem("writeBack", None, None, self.reason)])


def promotion_pass(
    *,
    environment: Environment,
    deployment: DeploymentDoc,
    tracking: Tracking,
    validator: Validator,
    promoter: Promoter,
    tracking_uri: str | None,
    data_root: str | None,
    check: Callable[[bytes], None] | None = None,
) -> PromotionResult:
    """One pass over ``deployment``'s promotion path. Raises nothing for domain errors.

    ``tracking_uri`` and ``data_root`` are passed to ``validate-model`` as options; None leaves
    them to the validator's environment (a Kubernetes Job's ``MLFLOW_TRACKING_URI`` and
    ``MLGITOPS_DATA_ROOT``, as every job gets them)."""
    model = deployment.registered_model
    spec = deployment.doc.spec
    events: list[Event] = []
    try:
        records = tracking.model_versions(model)
    except Unavailable as exc:
        return PromotionResult(PromotionStatus(problem=str(exc)), error=exc)
    versions = [Version(r.version, dict(r.tags)) for r in records if r.version.isdigit()]

    validating: str | None = None
    problem: str | None = None
    trained = sorted((v for v in versions if v.trained), key=lambda v: v.number)
    for v in trained[-RECENT:]:  # validations finish in order; older ones were cleaned up
        state = validator.state(v.version)
        if state.state == "running":
            validating = v.version
            continue
        if state.state == "absent":
            continue
        validator.cleanup(v.version)
        now = next((r for r in tracking.model_versions(model) if r.version == v.version), None)
        verdict = now.tags.get(VALIDATION_TAG) if now is not None else None
        if verdict in ("PASSED", "FAILED"):
            assert now is not None
            failed = now.tags.get(TAG_FAILED_CHECKS, "")
            events.append(
                Event(
                    "Warning" if verdict == "FAILED" else "Normal",
                    "ValidationFailed" if verdict == "FAILED" else "ValidationPassed",
                    f"version {v.version}: {verdict}" + (f" ({failed})" if failed else ""),
                )
            )
        elif now is not None:
            # It ended without a verdict: unusable input (exit 2) or a crash. Recorded, not
            # retried in a loop; `mlgitops validate-model` by hand runs it again.
            reason = redact(state.reason or "ended without a verdict")[:300]
            tracking.set_version_tags(
                model=model, version=v.version, tags={TAG_VALIDATION_ERROR: reason}
            )
            events.append(
                Event(
                    "Warning",
                    "ValidationFailed",
                    f"version {v.version}: could not validate: {reason} (log: {state.log})",
                )
            )
            problem = f"validation of version {v.version} could not run: {reason}"
    if events:  # verdicts just landed: decide on them
        versions = [
            Version(r.version, dict(r.tags))
            for r in tracking.model_versions(model)
            if r.version.isdigit()
        ]
    unusable = [v for v in versions if TAG_VALIDATION_ERROR in v.tags and v.status == "PENDING"]
    newest = max(unusable, key=lambda v: v.number) if unusable else None
    if newest is not None and problem is None and trained and newest.version == trained[-1].version:
        # Said on every pass while it is the newest trained version, not only the first.
        reason = newest.tags[TAG_VALIDATION_ERROR]
        problem = f"validation of version {newest.version} could not run: {reason}"
    versions = [v for v in versions if v not in unusable]

    champion = spec.champion.version if spec.champion else None
    challenger = spec.challenger.version if spec.challenger else None
    decision = decide(
        versions,
        champion=champion,
        challenger=challenger,
        validating=validating is not None,
        can_validate=spec.validation is not None,
        online=spec.promotion.online is not None,
    )
    status = PromotionStatus(validating=validating, waiting=decision.waiting, problem=problem)
    status.awaiting_approval, status.last_proposal = _awaiting(versions, champion, challenger)
    status.last_proposal = status.last_proposal or _last_proposal(versions)
    if decision.validate is not None:
        assert spec.validation is not None  # decide() validates only then
        args = validation_args(
            name=deployment.doc.metadata.name,
            model=model,
            version=decision.validate,
            environment=environment.metadata.name,
            spec=spec.validation,
        )
        if tracking_uri:
            args += ["--tracking-uri", tracking_uri]
        if data_root:
            args += ["--data-root", data_root]
        try:
            log = validator.start(decision.validate, args=args, env={}, timeout=VALIDATION_TIMEOUT)
        except (InvalidInput, Unavailable) as exc:
            status.problem = f"could not start the validation of {decision.validate}: {exc}"
            return PromotionResult(status, events, exc)
        status.validating = decision.validate
        events.append(
            Event("Normal", "ValidationStarted", f"version {decision.validate} (log: {log})")
        )
    if decision.propose is not None:
        return _propose(
            decision.propose,
            environment,
            deployment,
            versions,
            promoter,
            tracking,
            check,
            status,
            events,
        )
    return PromotionResult(status, events)


def _propose(
    proposal: Proposal,
    environment: Environment,
    deployment: DeploymentDoc,
    versions: list[Version],
    promoter: Promoter,
    tracking: Tracking,
    check: Callable[[bytes], None] | None,
    status: PromotionStatus,
    events: list[Event],
) -> PromotionResult:
    spec = deployment.doc.spec
    policy = spec.promotion.policy
    name = deployment.doc.metadata.name
    env = environment.metadata.name
    if policy == "disabled":
        status.waiting = f"would pin {proposal.alias} {proposal.version} ({proposal.reason}); promotion.policy is disabled"
        return PromotionResult(status, events)
    tags: Mapping[str, str] = next((v.tags for v in versions if v.version == proposal.version), {})
    old = spec.champion if proposal.alias == "champion" else spec.challenger
    body = _body(proposal, old.version if old else None, tags)
    alias: str = proposal.alias
    try:
        written = promoter.promote(
            env=env,
            name=name,
            path=deployment.at.file,
            version=proposal.version,
            alias="champion" if alias == "champion" else "challenger",
            policy=policy,
            body=body,
            check=check,
        )
    except (InvalidInput, Unavailable) as exc:
        status.problem = f"write-back of {proposal.alias} {proposal.version}: {redact(str(exc))}"
        events.append(Event("Warning", "WriteBackFailed", status.problem))
        return PromotionResult(status, events, exc)
    value = written.sha if policy == "auto" else f"{written.branch}@{written.sha}"
    tracking.set_version_tags(
        model=deployment.registered_model,
        version=proposal.version,
        tags={TAG_PROPOSED + proposal.alias: value},
    )
    if policy == "manual":
        status.awaiting_approval = written.branch
        events.append(
            Event(
                "Normal",
                "AwaitingApproval",
                f"{proposal.alias} {proposal.version}: merge branch {written.branch} to approve",
            )
        )
    else:
        reason = "PromotionCommitted" if proposal.alias == "champion" else "ChallengerProposed"
        events.append(
            Event(
                "Normal",
                reason,
                f"{proposal.alias} {proposal.version}: commit {written.sha[:12]} ({written.detail})",
            )
        )
    status.last_proposal = f"{proposal.alias} v{proposal.version}: {value}"
    return PromotionResult(status, events)


def _awaiting(
    versions: list[Version], champion: str | None, challenger: str | None
) -> tuple[str | None, str | None]:
    """The newest promotion branch not merged yet (its pin is not in force), and its proposal."""

    def num(pin: str | None) -> int:
        return int(pin) if pin and pin.isdigit() else 0

    # A proposal is still open while its version is newer than what the pins hold now.
    above = {"champion": num(champion), "challenger": max(num(champion), num(challenger))}
    found: tuple[str | None, str | None] = (None, None)
    for v in sorted(versions, key=lambda v: v.number):
        for alias, floor in above.items():
            value = v.tags.get(TAG_PROPOSED + alias, "")
            if "@" in value and v.number > floor and not v.rolled_back:
                found = (value.split("@", 1)[0], f"{alias} v{v.version}: {value}")
    return found


def _last_proposal(versions: list[Version]) -> str | None:
    """The newest pin written back, from the versions' tags (so status keeps saying it on the
    passes after): ``<alias> v<N>: <commit, or branch@commit>``."""
    found: str | None = None
    for v in sorted(versions, key=lambda v: v.number):
        for alias in ("challenger", "champion"):  # a version's champion commit comes after
            value = v.tags.get(TAG_PROPOSED + alias)
            if value:
                found = f"{alias} v{v.version}: {value}"
    return found


def _body(proposal: Proposal, old: str | None, tags: Mapping[str, str]) -> str:
    get = tags.get
    lines = [f"{proposal.alias}: {old or 'none'} -> {proposal.version}", proposal.reason]
    detail = get(TAG_COMPARISON_DETAIL)
    if detail and proposal.alias == "challenger":
        lines.append(f"comparison: {detail}")
    commit, run = get("mlgitops.code_commit"), get("mlgitops.run_id")
    if commit:
        lines.append(f"code commit: {commit}")
    if run:
        lines.append(f"training run: {run}")
    report = get(TAG_REPORT)
    if report:
        lines.append(f"validation report: {report}")
    return "\n".join(lines)
