"""What the dashboard shows, as plain data: pure functions of what the controller recorded.

Both runtimes record the same status contract (``api.status``): the embedded runtime in its state
directory, the operator on its ModelDeployment and Environment objects. A collector turns either
into :class:`EnvSnapshot` values; everything the pages and the JSON API show is computed here
from those, so the HTML and ``/api/...`` cannot disagree, and the overview of a thousand models
is a loop over dictionaries (no I/O, measured by ``bench/ui.py``).

Every string that came from a URI or an error message is passed through ``redact`` before it is
shown: a tracking URI or Git remote with credentials in it never reaches a page.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from controller.redact import redact

STATES = ("Ready", "Progressing", "Stalled", "NotReady", "Unknown")
# "environments/prod/fraud.yaml:12" at the head of a problem or a Stalled condition's message.
_LOCATION = re.compile(r"^(?P<loc>[^\s:][^:]*\.ya?ml(?::\d+)?)(?::|$)")


@dataclass(frozen=True)
class EnvSnapshot:
    """One environment as the controller last recorded it (state directory or API objects)."""

    name: str
    applied: str | None = None
    attempted: str | None = None
    updated: str | None = None
    problems: Sequence[str] = ()
    source: str | None = None
    registry: str | None = None
    models: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # name -> status
    jobs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # name -> last runs
    conditions: Sequence[Mapping[str, Any]] = ()  # the Environment's own (operator)
    registered: Mapping[str, str] = field(default_factory=dict)  # name -> registered model


def short(sha: str | None) -> str:
    return (sha or "")[:7]


def location(text: str | None) -> str | None:
    """The ``file:line`` a problem or a Stalled message starts with, when it names one."""
    if not text:
        return None
    found = _LOCATION.match(text)
    return found.group("loc") if found else None


def _condition(status: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    return next((c for c in status.get("conditions") or [] if c.get("type") == type_), None)


def model_state(status: Mapping[str, Any]) -> tuple[str, str, str]:
    """(state, reason, message): Stalled when it is, else Ready's status as one word."""
    stalled = _condition(status, "Stalled")
    if stalled is not None and stalled.get("status") == "True":
        return "Stalled", stalled.get("reason", ""), redact(stalled.get("message", ""))
    ready = _condition(status, "Ready")
    if ready is None:
        return "Unknown", "", ""
    reason, message = ready.get("reason", ""), redact(ready.get("message", ""))
    if ready.get("status") == "True":
        return "Ready", reason, message
    if reason == "Progressing" or ready.get("status") == "Unknown":
        return "Progressing", reason, message
    return "NotReady", reason, message


def _serving(status: Mapping[str, Any]) -> dict[str, Any] | None:
    serving = status.get("serving")
    if not serving:
        return None
    share = int(serving.get("challengerTraffic") or 0)
    return {
        "url": redact(serving["url"]) if serving.get("url") else None,
        "rolledOut": bool(serving.get("rolledOut")),
        "replicas": f"{serving.get('readyReplicas', 0)}/{serving.get('replicas', 0)}",
        "champion": serving.get("champion"),
        "challenger": serving.get("challenger"),
        "traffic": {"champion": 100 - share, "challenger": share}
        if serving.get("challenger")
        else {"champion": 100},
    }


def training_summary(status: Mapping[str, Any]) -> str:
    """Training in a few words: running (trigger, key), the last run's result and version, or why
    training cannot proceed (redacted)."""
    training = status.get("training") or {}
    if training.get("inFlight"):
        run = training["inFlight"]
        return f"running {run.get('trigger', '')} {str(run.get('key', ''))[:12]}".rstrip()
    last = training.get("lastRun")
    if last:
        made = f" v{last['version']}" if last.get("version") else ""
        return f"{str(last.get('state', '')).lower()}{made}"
    return redact(training["problem"]) if training.get("problem") else ""


def cell(status: Mapping[str, Any]) -> dict[str, Any]:
    """One model in one environment, as the overview shows it."""
    champ, chall = status.get("champion") or {}, status.get("challenger") or {}
    state, reason, message = model_state(status)
    history = status.get("history") or []
    promotion = status.get("promotion") or {}
    return {
        "champion": champ.get("version"),
        "challenger": chall.get("version"),
        "validation": {v["version"]: v.get("validationStatus") or "-" for v in (champ, chall) if v},
        "state": state,
        "reason": reason,
        "message": message,
        "location": location(message) if state == "Stalled" else None,
        "serving": _serving(status),
        "applied": status.get("lastAppliedRevision"),
        "attempted": status.get("lastAttemptedRevision"),
        "lastChange": dict(history[-1]) if history else None,
        "training": training_summary(status),
        "awaitingApproval": promotion.get("awaitingApproval"),
        "waiting": redact(promotion["waiting"]) if promotion.get("waiting") else None,
    }


def environment_row(env: EnvSnapshot) -> dict[str, Any]:
    problems = [redact(p) for p in env.problems]
    state = "Stalled" if problems else "Ready" if env.applied else "Unknown"
    if env.conditions:  # the operator's Environment says it itself: Git unreachable is
        state = model_state({"conditions": env.conditions})[0]  # NotReady, not Stalled
    return {
        "name": env.name,
        "state": state,
        "applied": env.applied,
        "attempted": env.attempted,
        "pending": bool(env.attempted and env.attempted != env.applied),
        "updated": env.updated,
        "problems": [{"text": p, "location": location(p)} for p in problems],
        "source": redact(env.source) if env.source else None,
        "registry": redact(env.registry) if env.registry else None,
        "models": len(env.models),
    }


def overview(
    envs: Iterable[EnvSnapshot], *, query: str = "", state: str = "", now: str | None = None
) -> dict[str, Any]:
    """One row per model name, one cell per environment; ``query`` filters names (substring,
    any case), ``state`` keeps the rows where some environment is in that state."""
    snaps = list(envs)
    names = sorted({name for env in snaps for name in env.models})
    needle = query.strip().lower()
    rows = []
    for name in names:
        if needle and needle not in name.lower():
            continue
        cells = {env.name: cell(env.models[name]) for env in snaps if name in env.models}
        if state and not any(c["state"] == state for c in cells.values()):
            continue
        registered = next((env.registered[name] for env in snaps if name in env.registered), None)
        rows.append({"name": name, "registeredModel": registered, "cells": cells})
    counts: dict[str, int] = dict.fromkeys(STATES, 0)
    for env in snaps:
        for status in env.models.values():
            counts[model_state(status)[0]] += 1
    return {
        "generated": now,
        "environments": [environment_row(env) for env in snaps],
        "models": rows,
        "total": len(names),
        "counts": counts,
        "filter": {"q": query, "state": state},
    }


def environment(env: EnvSnapshot) -> dict[str, Any]:
    """An environment's page: its revision, problems, models and jobs."""
    jobs = []
    for name, rec in sorted(env.jobs.items()):
        last = rec.get("lastRun") or {}
        code = last.get("exitCode")
        jobs.append(
            {
                "name": name,
                "lastScheduleTime": rec.get("lastScheduleTime"),
                "lastRun": last.get("name"),
                "result": "running"
                if rec.get("inFlight")
                else "-"
                if not last
                else "succeeded"
                if code == 0
                else "failed",
                "exitCode": code,
                "finished": last.get("finished"),
            }
        )
    models = [{"name": name, **cell(status)} for name, status in sorted(env.models.items())]
    return {**environment_row(env), "modelStates": models, "jobs": jobs}


def actions(
    name: str, env: str, c: Mapping[str, Any], promotion: Mapping[str, Any] | None
) -> list[dict[str, str]]:
    """The commands a person would type next, to copy: promote the challenger, approve a pending
    proposal, roll back the promotion commit of the champion serving now (not an older one)."""
    found = []
    if c.get("challenger"):
        found.append(
            {
                "what": f"promote challenger v{c['challenger']} to champion",
                "command": f"mlgitops promote {name} --env {env} --version {c['challenger']}",
            }
        )
    if c.get("awaitingApproval"):
        branch = c["awaitingApproval"].split("@", 1)[0]
        found.append(
            {"what": "approve the pending proposal", "command": f"git merge --no-ff {branch}"}
        )
    if promotion and promotion.get("version") == c.get("champion"):
        found.append(
            {
                "what": "roll back the last promotion (the champion goes back)",
                "command": f"mlgitops rollback {name} --env {env}",
            }
        )
        found.append(
            {"what": "the same, by hand", "command": f"git revert --no-edit {promotion['commit']}"}
        )
    return found


def model(
    name: str,
    envs: Iterable[EnvSnapshot],
    details: Mapping[str, Mapping[str, Any]],
    *,
    now: str | None = None,
) -> dict[str, Any] | None:
    """A model's page: per environment it is in, its cell, its record (``details[env]``, from
    ``detail.model_detail``) and the commands to act on it. None: in no environment."""
    sections = []
    for env in envs:
        if name not in env.models:
            continue
        c = cell(env.models[name])
        record = details.get(env.name) or {}
        sections.append(
            {
                "name": env.name,
                "cell": c,
                "registeredModel": record.get("registeredModel") or env.registered.get(name),
                "file": record.get("file"),
                "timeline": list(record.get("timeline") or []),
                "trainingRuns": list(record.get("trainingRuns") or []),
                "monitoring": record.get("monitoring"),
                "problems": list(record.get("problems") or []),
                "actions": actions(name, env.name, c, record.get("promotion")),
            }
        )
    if not sections:
        return None
    return {"name": name, "generated": now, "environments": sections}
