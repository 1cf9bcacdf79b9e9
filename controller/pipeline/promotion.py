"""From a new version to champion, for one ModelDeployment: a pure function of Git and MLflow.

The controller never moves an alias Git does not pin. What it decides here is which Git change to
propose next, and what to validate; the proposal is written back to Git (``sources.WriteBack``)
and the aliases follow by the normal sync, so Git stays the one record of what runs where.

The steps, in order, each one at a time:

1. **validate** the newest PENDING version that a training run produced (older PENDING ones are
   superseded: a newer model of the same code line exists);
2. **propose it as challenger**: the newest version mlgitops validated and found PASSED, newer
   than the champion and than the challenger pinned now, not rolled back, not proposed before;
3. **promote** the challenger Git pins (and the registry's alias already follows) when its
   comparison with the champion was WON, it is not rolled back and was not promoted before;
   a LOST challenger stays where it is, reported, until a person removes it or a newer version
   replaces it.

"Proposed before" is read from the version's tags (``mlgitops.proposed.<alias>``, the commit or
branch written): the registry outlives the controller's state directory, and the write-back
itself also searches the branch for its trailer, so a crash between the two never writes twice.
A version tagged ``mlgitops.rolled_back`` (it lost the champion pin through a Git change that was
not a promotion commit: a revert, a hand edit) is never proposed again; a newer one can be.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from controller.pipeline.validation import TAG_COMPARISON, TAG_COMPARISON_DETAIL
from controller.pipeline.validation import TAG_RUN as TAG_VALIDATION_RUN
from controller.planning.types import VALIDATION_TAG

TAG_ROLLED_BACK = "mlgitops.rolled_back"  # the config revision that took the champion pin away
TAG_PROPOSED = "mlgitops.proposed."  # + alias: the commit (or branch) that proposed it
TAG_TRAINING_RUN = "mlgitops.run_id"  # set when a training run produced the version
# The monitor's comparison of a serving challenger with the champion on labeled traffic:
# WON, LOST or PENDING (not enough labels yet), and the numbers that decided it.
TAG_ONLINE = "mlgitops.online.comparison"
TAG_ONLINE_DETAIL = "mlgitops.online.detail"
POLICIES = ("auto", "manual", "disabled")
PROMOTION_TRAILER = "Mlgitops-Promotion"  # value: <env>/<name>/<alias>/v<N>


@dataclass(frozen=True)
class Version:
    """A registered version, as far as the promotion path cares (from its tags)."""

    version: str
    tags: Mapping[str, str]

    @property
    def number(self) -> int:
        return int(self.version)

    @property
    def status(self) -> str | None:
        return self.tags.get(VALIDATION_TAG)

    @property
    def comparison(self) -> str | None:
        return self.tags.get(TAG_COMPARISON)

    @property
    def online(self) -> str | None:
        return self.tags.get(TAG_ONLINE)

    @property
    def rolled_back(self) -> bool:
        return TAG_ROLLED_BACK in self.tags

    def proposed(self, alias: str) -> bool:
        return TAG_PROPOSED + alias in self.tags

    @property
    def trained(self) -> bool:
        return TAG_TRAINING_RUN in self.tags

    @property
    def validated(self) -> bool:
        """Validated by mlgitops (a version registered and tagged PASSED by hand is not the
        controller's to propose)."""
        return TAG_VALIDATION_RUN in self.tags


@dataclass(frozen=True)
class Proposal:
    """A Git change to write: pin ``version`` as ``alias`` (champion also drops the challenger)."""

    alias: str
    version: str
    reason: str


@dataclass(frozen=True)
class Decision:
    validate: str | None = None  # the version to validate now
    propose: Proposal | None = None
    waiting: str | None = None  # why nothing moves (a LOST challenger, a policy, ...)


def _num(pin: str | None) -> int:
    return int(pin) if pin is not None and pin.isdigit() else 0


def decide(
    versions: Sequence[Version],
    *,
    champion: str | None,
    challenger: str | None,
    validating: bool,
    can_validate: bool,
    online: bool = False,
) -> Decision:
    """What to do next for one ModelDeployment.

    ``champion``/``challenger``: the pins in force (Git's, which the aliases follow).
    ``validating``: a validation is in flight (nothing else is started meanwhile).
    ``can_validate``: the document has a ``validation`` section.
    ``online``: ``promotion.online`` is set: the challenger's online comparison, not its offline
    one, decides its promotion.
    """
    by_number = sorted(versions, key=lambda v: v.number)
    pending = [v for v in by_number if v.status == "PENDING" and v.trained]
    if validating:
        return Decision(waiting="validating")
    newest_pending = pending[-1] if pending else None
    floor = max(_num(champion), _num(challenger))
    if newest_pending is not None and newest_pending.number > floor:
        if can_validate:
            return Decision(validate=newest_pending.version)
        waiting = f"version {newest_pending.version} is PENDING: there is no validation section"
    else:
        waiting = None

    pinned = {p for p in (champion, challenger) if p is not None}
    candidates = [
        v
        for v in by_number
        if v.status == "PASSED"
        and v.validated
        and v.number > floor
        and v.version not in pinned
        and not v.rolled_back
        and not v.proposed("challenger")
    ]
    if candidates:
        best = candidates[-1]
        return Decision(
            propose=Proposal(
                "challenger", best.version, f"version {best.version} PASSED validation"
            )
        )

    current = next((v for v in by_number if v.version == challenger), None)
    if current is not None:
        if current.rolled_back:
            return Decision(waiting=f"challenger {challenger} was rolled back")
        if online:
            return _online(current, champion)
        if current.comparison == "WON" and not current.proposed("champion"):
            detail = current.tags.get(TAG_COMPARISON_DETAIL, "")
            return Decision(
                propose=Proposal(
                    "champion",
                    current.version,
                    f"challenger {current.version} WON against champion {champion or 'none'}"
                    + (f": {detail}" if detail else ""),
                )
            )
        if current.comparison == "LOST":
            return Decision(waiting=f"challenger {challenger} LOST against champion {champion}")
    return Decision(waiting=waiting)


def _online(current: Version, champion: str | None) -> Decision:
    detail = current.tags.get(TAG_ONLINE_DETAIL, "")
    suffix = f": {detail}" if detail else ""
    if current.online == "WON":
        if current.proposed("champion"):
            return Decision()
        return Decision(
            propose=Proposal(
                "champion",
                current.version,
                f"challenger {current.version} WON online against champion "
                f"{champion or 'none'}{suffix}",
            )
        )
    if current.online == "LOST":
        return Decision(
            waiting=f"challenger {current.version} LOST online against champion {champion}{suffix}"
        )
    return Decision(
        waiting=f"challenger {current.version} awaits its online comparison{suffix or ' (no labeled traffic yet)'}"
    )


def rolled_back(
    changes: Sequence[tuple[str, str | None, str | None]], promoted: set[tuple[str, str]]
) -> list[str]:
    """The versions that lost the champion pin through a change that was not a promotion commit.

    ``changes``: (alias, previous, new) of one ModelDeployment in one sync; ``promoted``:
    (alias, version) of the promotion trailers in the commits the sync covers.
    """
    return [
        previous
        for alias, previous, new in changes
        if alias == "champion"
        and previous is not None
        and not (new is not None and ("champion", new) in promoted)
    ]
