"""A model's history, from what the registry and Git recorded: a pure function of their records.

``mlgitops history`` merges, in time order, what happened to each version of a model:

- **validation**: ``model_validation_status`` PASSED or FAILED, the failed checks and the report
  (``mlgitops.validation.*``), at the end of the validation run;
- **comparison** with the champion: ``mlgitops.comparison`` WON or LOST, the champion compared
  with and the deciding numbers, at the same moment (the same run decides both);
- **proposals**: ``mlgitops.proposed.challenger|champion``, the promotion commit (a sha, or
  ``branch@sha`` for a promotion branch awaiting its merge), at the commit's time in Git;
- **alias changes**: the ``mlgitops.history.*`` events every sync records;
- **rollbacks**: ``mlgitops.rolled_back``, the revision that took the champion pin away without a
  promotion commit, at the sync that applied it (else the revision's commit time).

Where none of those times is known (a run since deleted, a commit Git no longer has), the version's
own MLflow time stands in (``last_updated_timestamp``, else its creation), marked approximate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from controller.pipeline.promotion import TAG_PROPOSED, TAG_ROLLED_BACK
from controller.pipeline.validation import (
    TAG_COMPARISON,
    TAG_COMPARISON_CHAMPION,
    TAG_COMPARISON_DETAIL,
    TAG_FAILED_CHECKS,
    TAG_REPORT,
    TAG_RUN,
)
from controller.planning.types import VALIDATION_TAG, AliasEvent, RegisteredVersion

# Events of one moment are listed in the order they happen.
_RANK = {"validation": 0, "comparison": 1, "proposal": 2, "alias": 3, "rollback": 4}
_LATEST = datetime.max.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Entry:
    """One line of a model's history."""

    kind: str  # validation | comparison | proposal | alias | rollback
    event: str  # what the table's EVENT column says: champion, validation, proposed challenger...
    version: str | None  # the version concerned (an alias change: the new one, or None: removed)
    change: str  # "2 -> 3", "v4 PASSED", "v4 WON vs v3", "v4"
    revision: str  # the config revision or commit (full sha)
    detail: str  # the reason, failed checks and report, deciding numbers...
    time: str | None  # ISO 8601 UTC
    approximate: bool = False  # the version's own time stands in: nothing better was recorded


def iso_from_ms(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _moment(time: str | None) -> datetime:
    if not time:
        return _LATEST
    try:
        parsed = datetime.fromisoformat(time)
    except ValueError:
        return _LATEST
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _sha(value: str) -> str:
    """The commit of a ``mlgitops.proposed.*`` value: ``sha`` or ``branch@sha``."""
    return value.rsplit("@", 1)[-1]


def lookups(versions: Sequence[RegisteredVersion]) -> tuple[set[str], set[str]]:
    """What ``timeline`` needs looked up: the validation runs (for their end time) and the
    commits (for their time) the versions' tags name."""
    runs: set[str] = set()
    commits: set[str] = set()
    for v in versions:
        if v.tags.get(TAG_RUN):
            runs.add(v.tags[TAG_RUN])
        for alias in ("challenger", "champion"):
            if v.tags.get(TAG_PROPOSED + alias):
                commits.add(_sha(v.tags[TAG_PROPOSED + alias]))
        if v.tags.get(TAG_ROLLED_BACK):
            commits.add(v.tags[TAG_ROLLED_BACK])
    return runs, commits


def _number(version: str) -> int:
    return int(version) if version.isdigit() else 0


def _at(time: str | None, fallback: str | None) -> tuple[str | None, bool]:
    """``time``, else the version's own time, marked approximate."""
    return (time, False) if time else (fallback, fallback is not None)


def _version_entries(
    v: RegisteredVersion,
    events: Sequence[AliasEvent],
    run_times: Mapping[str, str | None],
    commit_times: Mapping[str, str | None],
) -> list[Entry]:
    tags, n = v.tags, v.version
    fallback = iso_from_ms(v.updated if v.updated is not None else v.created)
    out: list[Entry] = []
    status = tags.get(VALIDATION_TAG)
    if status in ("PASSED", "FAILED"):
        when, approx = _at(run_times.get(tags.get(TAG_RUN, "")), fallback)
        failed, report = tags.get(TAG_FAILED_CHECKS, ""), tags.get(TAG_REPORT, "")
        parts = (f"failed: {failed}" if failed else "", f"report: {report}" if report else "")
        detail = "; ".join(p for p in parts if p)
        out.append(Entry("validation", "validation", n, f"v{n} {status}", "", detail, when, approx))
        comparison = tags.get(TAG_COMPARISON)
        if comparison:
            champion = tags.get(TAG_COMPARISON_CHAMPION, "")
            change = f"v{n} {comparison} " + (f"vs v{champion}" if champion else "(no champion)")
            detail = tags.get(TAG_COMPARISON_DETAIL, "")
            out.append(Entry("comparison", "comparison", n, change, "", detail, when, approx))
    for alias in ("challenger", "champion"):
        value = tags.get(TAG_PROPOSED + alias)
        if value:
            when, approx = _at(commit_times.get(_sha(value)), fallback)
            detail = f"on branch {value.rsplit('@', 1)[0]}" if "@" in value else ""
            event = f"proposed {alias}"
            out.append(Entry("proposal", event, n, f"v{n}", _sha(value), detail, when, approx))
    revision = tags.get(TAG_ROLLED_BACK)
    if revision:
        synced = next(
            (
                e.time
                for e in events
                if e.revision == revision and e.alias == "champion" and e.previous == n
            ),
            None,
        )
        when, approx = _at(synced or commit_times.get(revision), fallback)
        detail = "lost the champion pin without a promotion commit: never proposed again"
        out.append(Entry("rollback", "rolled back", n, f"v{n}", revision, detail, when, approx))
    return out


def timeline(
    *,
    events: Sequence[AliasEvent],
    versions: Sequence[RegisteredVersion],
    run_times: Mapping[str, str | None],
    commit_times: Mapping[str, str | None],
) -> list[Entry]:
    """Every entry of one model's history, oldest first (unknown times last).

    ``events``: its alias changes (``Registry.history``); ``versions``: its versions with their
    tags; ``run_times``: validation run id -> when it ended; ``commit_times``: sha -> its time.
    """
    out: list[Entry] = []
    for v in sorted(versions, key=lambda v: _number(v.version)):
        out.extend(_version_entries(v, events, run_times, commit_times))
    for e in events:
        change = f"{e.previous or '(none)'} -> {e.version or '(none)'}"
        out.append(Entry("alias", e.alias, e.version, change, e.revision, e.reason, e.time))
    ranked = sorted(enumerate(out), key=lambda p: (_moment(p[1].time), _RANK[p[1].kind], p[0]))
    return [entry for _, entry in ranked]
