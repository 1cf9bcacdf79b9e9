"""``status``: what the controller last did.

``status`` reads only the state directory (no Git, no registry), so it answers at once even while
a dependency is down; ``history`` (``cli/history.py``) reads the registry and Git, the durable
record that outlives the state directory and the controller.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.table import Table

from controller.cli import options
from controller.cli.options import EnvOpt, StateOpt
from controller.ui.views import training_summary


def _last_change(status: dict[str, Any]) -> str:
    history = status.get("history") or []
    if not history:
        return ""
    h = history[-1]
    when = h["time"][:16].replace("T", " ")
    return f"{h['alias']} {options.fmt(h.get('previous'))}->{options.fmt(h.get('version'))} {when} @{h['revision'][:7]}"


def _serving(status: dict[str, Any]) -> str:
    serving = status.get("serving")
    if not serving:
        return ""
    state = "ready" if serving.get("rolledOut") else "starting"
    return f"{serving.get('url', '')} ({state})"


def _ready(status: dict[str, Any]) -> str:
    for c in status.get("conditions", []):
        if c["type"] == "Ready":
            return "True" if c["status"] == "True" else f"{c['status']} ({c['reason']})"
    return "Unknown"


def status(
    env: EnvOpt,
    output: Annotated[
        str, typer.Option("--output", "-o", help="table or json (one JSON document).")
    ] = "table",
    state_dir: StateOpt = None,
) -> None:
    """Show each model's champion, challenger, validation status, revision and last change.

    Reads the status the last sync or run recorded under the state directory; no registry or
    Git access. -o json gives the same as one JSON document for scripts.
    """
    if output not in ("table", "json"):
        options.fail([f"--output: must be table or json, got {output!r}"])
    state = options.state_for(state_dir)
    data = state.load_status(env)
    if data is None:
        options.fail(
            [f"no status for environment {env!r} in {state.root} (run: mlgitops sync --env {env})"]
        )
    from controller.local.cron import read_jobs

    jobs = read_jobs(state.root, env)
    if output == "json":
        doc = {
            "environment": env,
            "lastAppliedRevision": data.get("lastAppliedRevision"),
            "lastAttemptedRevision": data.get("lastAttemptedRevision"),
            "problems": data.get("problems", []),
            "source": data.get("source"),
            "registry": data.get("registry"),
            "updated": data.get("updated"),
            "models": [
                {"name": name, **rec.get("status", {})}
                for name, rec in sorted(data.get("models", {}).items())
            ],
            "jobs": [{"name": name, **rec} for name, rec in jobs.items()],
        }
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for col in (
        "MODEL",
        "REGISTERED MODEL",
        "CHAMPION",
        "CHALLENGER",
        "VALIDATION",
        "READY",
        "REVISION",
        "LAST CHANGE",
        "SERVING",
        "TRAINING",
    ):
        table.add_column(col, overflow="fold")
    for name, rec in sorted(data.get("models", {}).items()):
        st = rec.get("status", {})
        champ, chall = st.get("champion") or {}, st.get("challenger") or {}
        validation = " ".join(
            f"{v['version']}:{v.get('validationStatus') or '-'}" for v in (champ, chall) if v
        )
        table.add_row(
            name,
            st.get("registeredModel", ""),
            champ.get("version", "-"),
            chall.get("version", "-"),
            validation,
            _ready(st),
            (st.get("lastAppliedRevision") or "")[:7],
            _last_change(st),
            _serving(st),
            training_summary(st),
        )
    options.out.print(table)
    applied = (data.get("lastAppliedRevision") or "")[:7] or "none"
    attempted = (data.get("lastAttemptedRevision") or "")[:7] or "none"
    options.out.print(
        f"\nenvironment {env}: applied {applied}, attempted {attempted}, updated {data.get('updated', '?')[:19]}"
    )
    for problem in data.get("problems", []):
        options.out.print(f"  rejected: {problem}", markup=False)
    if jobs:  # recorded by `mlgitops run`, which runs the batch and monitoring jobs
        runs = Table(box=None, header_style="bold", pad_edge=False)
        for col in ("JOB", "LAST SCHEDULED", "LAST RUN", "RESULT"):
            runs.add_column(col, overflow="fold")
        for name, rec in jobs.items():
            last = rec.get("lastRun") or {}
            result = "-" if not last else "ok" if last.get("exitCode") == 0 else "failed"
            if rec.get("inFlight"):
                result = f"in flight: {rec['inFlight']['name']}"
            runs.add_row(
                name, (rec.get("lastScheduleTime") or "-")[:16], last.get("name", "-"), result
            )
        options.out.print()
        options.out.print(runs)
