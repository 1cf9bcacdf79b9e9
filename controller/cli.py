"""The ``mlgitops`` command: validate, diff, sync and inspect environments kept in Git.

Exit codes are part of the interface, so scripts and pull-request checks can rely on them:
0 success (``diff``: nothing would change), 1 ``diff`` found changes, 2 invalid input or an
unreachable dependency, with one line per problem naming the file, line and field.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from controller.api.loader import load_environment
from controller.errors import Busy, InvalidInput, MlgitopsError, Problem, Unavailable
from controller.reconcile import ENVIRONMENTS_ROOT, Registry, SyncResult, reconcile
from controller.redact import redact
from controller.sources import GitSource
from controller.state import StateDir, resolve_state_dir

app = typer.Typer(
    name="mlgitops",
    help=(
        "GitOps for ML models. Each folder environments/<env>/ of a Git repository holds an "
        "Environment document and one ModelDeployment per model; mlgitops makes the MLflow "
        "registry match it (aliases champion and challenger in the environment's catalog)."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, highlight=False, soft_wrap=True)

RepoOpt = Annotated[
    str,
    typer.Option(
        "--repo",
        "-r",
        help="Config repository: a local path or a Git URL (file://, https://, ssh). "
        "URLs are mirrored under the state directory and fetched incrementally.",
        envvar="MLGITOPS_REPO",
    ),
]
RevOpt = Annotated[
    str | None,
    typer.Option(
        "--rev",
        help="Branch, tag or commit to read. Default: the branch head (HEAD). "
        "Only committed files are read, never uncommitted edits.",
    ),
]
EnvOpt = Annotated[
    str,
    typer.Option("--env", "-e", help="Environment: the folder name under environments/."),
]
StateOpt = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        help="Where mlgitops keeps its state: the embedded MLflow store (used when the "
        "Environment sets no registry.trackingUri), Git mirrors and the last status. "
        "Default: $MLGITOPS_STATE_DIR or ./.mlgitops",
        show_default=False,
    ),
]


DataRootOpt = Annotated[
    str | None,
    typer.Option(
        "--data-root",
        help="Where table names that are not absolute live: a directory or an object-store "
        "prefix (s3://bucket/lake). Default: $MLGITOPS_DATA_ROOT, else <state dir>/tables.",
        envvar="MLGITOPS_DATA_ROOT",
        show_default=False,
    ),
]
TrackingUriOpt = Annotated[
    str | None,
    typer.Option(
        "--tracking-uri",
        help="MLflow tracking/registry URI models are resolved against. Default: "
        "$MLFLOW_TRACKING_URI, else the embedded store in the state directory.",
        envvar="MLFLOW_TRACKING_URI",
        show_default=False,
    ),
]


def _fail(problems: list[str], code: int = 2) -> NoReturn:
    for line in problems:
        err.print(f"error: {line}", markup=False)
    raise typer.Exit(code)


def _problems(error: MlgitopsError) -> list[str]:
    if isinstance(error, InvalidInput):
        return [str(p) for p in error.problems] or [str(error)]
    return [str(error)]


def _tracking_uri(given: str | None, state: StateDir) -> str:
    """``given``, else the embedded store in the state directory (created on first use)."""
    if given is not None:
        return given
    from controller.registry import embedded_tracking_uri  # slow import

    return embedded_tracking_uri(state.root)


def _registry_factory(state: StateDir) -> Callable[[str | None], Registry]:
    def factory(tracking_uri: str | None) -> Registry:
        from controller.registry import MlflowRegistry, embedded_tracking_uri  # slow import

        return MlflowRegistry(tracking_uri or embedded_tracking_uri(state.root))

    return factory


def _source(repo: str, state: StateDir) -> GitSource:
    return GitSource(repo, cache_dir=state.git_cache)


@app.command()
def validate(
    repo: RepoOpt = ".",
    rev: RevOpt = None,
    env: Annotated[
        list[str] | None, typer.Option("--env", "-e", help="Only these environments.")
    ] = None,
    state_dir: StateOpt = None,
) -> None:
    """Lint every environment folder at a revision. Exit 0 when all are valid, 2 otherwise.

    Checks YAML syntax, the document schemas (unknown fields, types, schedules), one Environment
    per folder, one ModelDeployment per model, and that every model is in the environment's own
    catalog. It reads no registry, so it is fit for a pull-request check.
    """
    state = StateDir(resolve_state_dir(state_dir))
    source = _source(repo, state)
    try:
        commit = source.resolve(rev)
        names = env or source.list_folders(commit.sha, ENVIRONMENTS_ROOT)
        if not names:
            _fail(
                [
                    f"{source.display}: no environment folders under {ENVIRONMENTS_ROOT}/ at {commit.short}"
                ]
            )
        problems: list[str] = []
        for name in names:
            folder = f"{ENVIRONMENTS_ROOT}/{name}"
            files = source.read_folder(commit.sha, folder)
            if files is None:
                problems.append(
                    str(
                        Problem(folder, None, None, f"no such environment folder at {commit.short}")
                    )
                )
                continue
            try:
                desired = load_environment(files, env_name=name, revision=commit.sha, folder=folder)
            except InvalidInput as exc:
                problems.extend(str(p) for p in exc.problems)
                continue
            out.print(
                f"ok   {folder} ({len(desired.deployments)} ModelDeployments, catalog {desired.catalog})"
            )
    except MlgitopsError as exc:
        _fail(_problems(exc))
    if problems:
        _fail(problems)
    out.print(f"valid: {len(names)} environment(s) at {commit.short}")


def _fmt(version: str | None) -> str:
    return version if version is not None else "(none)"


def _run(
    env: str, repo: str, rev: str | None, state_dir: Path | None, *, dry_run: bool
) -> SyncResult:
    state = StateDir(resolve_state_dir(state_dir))
    source = _source(repo, state)
    # diff writes nothing, so it needs no lock and works while `mlgitops run` holds it.
    lock = contextlib.nullcontext() if dry_run else state.lock(env)
    try:
        with lock:
            return reconcile(
                env=env,
                source=source,
                registry_for=_registry_factory(state),
                store=state if not dry_run else _ReadOnly(state),
                rev=rev,
                dry_run=dry_run,
            )
    except Busy as exc:
        _fail([str(exc)])
    finally:
        source.close()


class _ReadOnly:
    """A store that reads the real status but never writes: ``diff`` changes nothing."""

    def __init__(self, state: StateDir) -> None:
        self._state = state

    def load_status(self, env: str) -> dict[str, Any] | None:
        return self._state.load_status(env)

    def save_status(self, env: str, data: dict[str, Any]) -> None:
        return None


@app.command()
def diff(
    env: EnvOpt,
    repo: RepoOpt = ".",
    rev: RevOpt = None,
    state_dir: StateOpt = None,
) -> None:
    """Show what a sync would change, model by model (before -> after). Changes nothing.

    Exit 0 when nothing would change, 1 when something would, 2 on invalid input or an
    unreachable repository or registry.
    """
    result = _run(env, repo, rev, state_dir, dry_run=True)
    if result.error is not None:
        _fail(_problems(result.error))
    assert result.plan is not None
    assert result.commit is not None
    changed = [m for m in result.plan.models if m.changes]
    for model in changed:
        out.print(f"~ {model.model} ({model.deployment})")
        for change in model.changes:
            out.print(f"    {change.alias:<10} {_fmt(change.previous)} -> {_fmt(change.version)}")
    total = len(result.plan.changes)
    if not total:
        out.print(f"{env}: in sync with {result.commit.short} ({len(result.plan.models)} models)")
        raise typer.Exit(0)
    out.print(
        f"{env}: {total} alias change(s) in {len(changed)} model(s) to reach {result.commit.short}"
    )
    raise typer.Exit(1)


@app.command()
def sync(
    env: EnvOpt,
    repo: RepoOpt = ".",
    rev: RevOpt = None,
    state_dir: StateOpt = None,
) -> None:
    """Run one reconcile pass: move the registry aliases to what Git pins at the revision.

    A revision with any invalid document, unknown model or version, or a version whose
    validation FAILED is rejected whole: nothing is changed and the last good revision stays in
    force. Every alias change is recorded as a tag on the model version. Exit 0 or 2.
    """
    result = _run(env, repo, rev, state_dir, dry_run=False)
    if result.error is not None:
        _fail(_problems(result.error))
    assert result.commit is not None
    assert result.plan is not None
    for change in result.applied:
        out.print(
            f"  {change.model}: {change.alias} {_fmt(change.previous)} -> {_fmt(change.version)}"
        )
    n = len(result.applied)
    what = f"{n} alias change(s)" if n else "no changes"
    out.print(f"{env}: synced to {result.commit.short} ({len(result.plan.models)} models, {what})")


def _last_change(status: dict[str, Any]) -> str:
    history = status.get("history") or []
    if not history:
        return ""
    h = history[-1]
    when = h["time"][:16].replace("T", " ")
    return f"{h['alias']} {_fmt(h.get('previous'))}->{_fmt(h.get('version'))} {when} @{h['revision'][:7]}"


def _serving(status: dict[str, Any]) -> str:
    serving = status.get("serving")
    if not serving:
        return ""
    state = "ready" if serving.get("rolledOut") else "starting"
    return f"{serving.get('url', '')} ({state})"


def _ready(status: dict[str, Any]) -> str:
    for c in status.get("conditions", []):
        if c["type"] == "Ready":
            return "True" if c["status"] == "True" else f"False ({c['reason']})"
    return "Unknown"


@app.command()
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
        _fail([f"--output: must be table or json, got {output!r}"])
    state = StateDir(resolve_state_dir(state_dir))
    data = state.load_status(env)
    if data is None:
        _fail(
            [f"no status for environment {env!r} in {state.root} (run: mlgitops sync --env {env})"]
        )
    from controller.runtimes.cron import read_jobs

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
        )
    out.print(table)
    applied = (data.get("lastAppliedRevision") or "")[:7] or "none"
    attempted = (data.get("lastAttemptedRevision") or "")[:7] or "none"
    out.print(
        f"\nenvironment {env}: applied {applied}, attempted {attempted}, updated {data.get('updated', '?')[:19]}"
    )
    for problem in data.get("problems", []):
        out.print(f"  rejected: {problem}", markup=False)
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
        out.print()
        out.print(runs)


@app.command()
def history(
    env: EnvOpt,
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Only this ModelDeployment (metadata.name).")
    ] = None,
    repo: RepoOpt = ".",
    rev: RevOpt = None,
    state_dir: StateOpt = None,
) -> None:
    """Show every alias change recorded in the registry (tags on the model versions).

    This is the durable record: it survives the loss of the state directory or the controller.
    """
    from controller.reconcile import load_desired
    from controller.registry import MlflowRegistry, embedded_tracking_uri

    state = StateDir(resolve_state_dir(state_dir))
    source = _source(repo, state)
    try:
        _, desired = load_desired(source, env=env, rev=rev)
        uri = desired.environment.spec.registry.tracking_uri or embedded_tracking_uri(state.root)
        registry = MlflowRegistry(uri)
        table = Table(box=None, header_style="bold", pad_edge=False)
        for col in ("TIME", "MODEL", "ALIAS", "CHANGE", "REVISION", "REASON"):
            table.add_column(col, overflow="fold")
        shown = 0
        for d in desired.deployments:
            if model and d.doc.metadata.name != model:
                continue
            for e in registry.history(model=d.registered_model):
                shown += 1
                table.add_row(
                    e.time[:19].replace("T", " "),
                    d.registered_model,
                    e.alias,
                    f"{_fmt(e.previous)} -> {_fmt(e.version)}",
                    e.revision[:7],
                    e.reason,
                )
    except (InvalidInput, Unavailable) as exc:
        _fail(_problems(exc))
    finally:
        source.close()
    if model and not any(d.doc.metadata.name == model for d in desired.deployments):
        _fail([f"--model: no ModelDeployment named {model!r} in environment {env!r}"])
    out.print(table if shown else "no alias changes recorded")


@app.command()
def run(
    env: EnvOpt,
    repo: RepoOpt = ".",
    interval: Annotated[
        float, typer.Option("--interval", help="Seconds between passes (Git poll + reconcile).")
    ] = 10.0,
    state_dir: StateOpt = None,
) -> None:
    """Run the controller continuously on this machine (the embedded runtime), until Ctrl-C.

    Every pass reads the branch head, moves the registry aliases, and starts, updates or stops
    one model server (mlgitops serve) per ModelDeployment on a stable local port; a champion or
    split change reaches the running server without dropping a request, and a crashed server is
    restarted with backoff. It also runs each ModelDeployment's batch and monitoring jobs
    (mlgitops batch / monitor) on their cron schedules, one run at a time per job; logs are under
    <state dir>/envs/<env>/jobs/. `mlgitops status -o json` shows each model's URL and versions.
    SIGINT or SIGTERM stops every server and job it started (a job cut short runs again on the
    next start).
    """
    import signal
    import threading

    from controller.api.loader import DesiredState
    from controller.api.status import ServingStatus
    from controller.reconcile import load_desired
    from controller.registry import embedded_tracking_uri
    from controller.runtimes.cron import LocalCron
    from controller.runtimes.local import LocalRuntime

    state = StateDir(resolve_state_dir(state_dir))
    source = _source(repo, state)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        _, first = load_desired(source, env=env, rev=None)
    except MlgitopsError as exc:
        _fail(_problems(exc))
    uri = first.environment.spec.registry.tracking_uri or embedded_tracking_uri(state.root)
    runtime = LocalRuntime(env=env, state_root=state.root, tracking_uri=uri)
    cron = LocalCron(
        env=env,
        state_root=state.root,
        tracking_uri=uri,
        on_event=lambda line: out.print(f"{env}: {line}", markup=False),
    )

    def apply(desired: DesiredState) -> Mapping[str, ServingStatus]:
        cron.apply(desired)  # the batch and monitoring CronJobs, on this machine's clock
        return runtime.apply(desired)

    try:
        with state.lock(env):
            out.print(f"mlgitops run: environment {env} from {source.display}; Ctrl-C stops")
            last: str | None = None
            while not stop.is_set():
                result = reconcile(
                    env=env,
                    source=source,
                    registry_for=_registry_factory(state),
                    store=state,
                    serve=apply,
                )
                source.close()  # the next pass sees new commits (and fetches a remote)
                if result.error is not None:
                    for line in _problems(result.error):
                        err.print(f"error: {line}", markup=False)
                elif result.commit is not None and (result.applied or result.commit.sha != last):
                    last = result.commit.sha
                    served = ", ".join(
                        f"{name} {s.url} (champion {s.champion})"
                        for name, s in sorted(result.serving.items())
                    )
                    out.print(
                        f"{env}: at {result.commit.short}, {len(result.applied)} alias "
                        f"change(s); serving {served or 'nothing'}"
                    )
                deadline = time.monotonic() + interval
                while not stop.is_set() and time.monotonic() < deadline:
                    runtime.supervise()
                    cron.tick()
                    stop.wait(1.0)
    except Busy as exc:
        _fail([str(exc)])
    finally:
        cron.stop_all()
        runtime.stop_all()
        out.print(f"mlgitops run: stopped {env}")


@app.command()
def operator(
    env: EnvOpt,
    namespace: Annotated[
        str | None,
        typer.Option(
            "--namespace",
            "-n",
            help="Namespace to watch. Default: the Environment's spec.namespace from --repo.",
            envvar="MLGITOPS_NAMESPACE",
        ),
    ] = None,
    all_namespaces: Annotated[
        bool, typer.Option("--all-namespaces", "-A", help="Watch every namespace.")
    ] = False,
    repo: Annotated[
        str | None,
        typer.Option(
            "--repo",
            "-r",
            help="Config repository to sync ModelDeployments from (polled, and on webhook). "
            "Without it, ModelDeployments come from kubectl apply alone.",
            envvar="MLGITOPS_REPO",
        ),
    ] = None,
    poll_interval: Annotated[
        float, typer.Option("--poll-interval", help="Seconds between Git polls.")
    ] = 30.0,
    resync_interval: Annotated[
        float,
        typer.Option(
            "--resync-interval",
            help="Seconds between periodic passes per object (a pass that ran less than half "
            "an interval ago, on a create or an update, stands in for one).",
        ),
    ] = 300.0,
    http_port: Annotated[
        int, typer.Option("--http-port", help="Port of /metrics, /healthz, /readyz, /webhook.")
    ] = 8080,
    image: Annotated[
        str,
        typer.Option(
            "--image",
            help="Image of the serving, batch and monitoring pods.",
            envvar="MLGITOPS_IMAGE",
        ),
    ] = "ghcr.io/mlgitops/mlgitops:0.1.0",
    state_dir: StateOpt = None,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            "-v",
            help="Log kopf's debug lines too: every watch event, patch and handler outcome.",
            envvar="MLGITOPS_VERBOSE",
        ),
    ] = False,
) -> None:
    """Run the Kubernetes operator (kopf) for one environment until SIGINT or SIGTERM.

    Reconciles every ModelDeployment of the namespace into registry aliases, a serving
    Deployment and Service, and batch and monitoring CronJobs, and writes its status. With
    --repo it also applies the environment folder from Git (Git wins over manual edits) and
    prunes what Git dropped. The webhook checks a GitHub-style X-Hub-Signature-256 with the
    token in $MLGITOPS_WEBHOOK_TOKEN.
    """
    import os

    state = StateDir(resolve_state_dir(state_dir))
    if namespace is None and not all_namespaces:
        if repo is None:
            _fail(["--namespace: required without --repo (or use --all-namespaces)"])
        from controller.reconcile import load_desired

        source = _source(repo, state)
        try:
            _, desired = load_desired(source, env=env, rev=None)
        except MlgitopsError as exc:
            _fail(_problems(exc))
        finally:
            source.close()
        namespace = desired.environment.spec.namespace
    os.environ.update(
        MLGITOPS_ENV=env,
        MLGITOPS_NAMESPACE=namespace or "",
        MLGITOPS_REPO=repo or "",
        MLGITOPS_POLL_SECONDS=str(poll_interval),
        MLGITOPS_RESYNC_SECONDS=str(resync_interval),
        MLGITOPS_HTTP_PORT=str(http_port),
        MLGITOPS_IMAGE=image,
        MLGITOPS_STATE_DIR=str(state.root),
    )
    from controller.operator import run  # reads the settings above at import

    err.print(
        f"mlgitops operator: environment {env}, namespace "
        f"{'(all)' if all_namespaces else namespace}, repo {repo or '(none: kubectl apply)'}"
    )
    run(
        namespaces=[] if all_namespaces else [namespace or ""],
        clusterwide=all_namespaces,
        verbose=verbose,
    )


@app.command()
def batch(
    model: Annotated[
        str,
        typer.Option(
            "--model",
            help="Model URI to score with, e.g. models:/prod.fraud.fraud_detector@champion. An "
            "alias is resolved once, when the run starts; that version scores every row.",
            show_default=False,
        ),
    ],
    input: Annotated[
        str,
        typer.Option(
            "--input", help="Delta table to score (a name under --data-root, a path or a URI)."
        ),
    ],
    output: Annotated[
        str,
        typer.Option(
            "--output",
            help="Delta table the scored rows are added to (created when missing): the input's "
            "columns, prediction, model_name, model_version, batch_id and scored_at.",
        ),
    ],
    data_root: DataRootOpt = None,
    batch_id: Annotated[
        str | None,
        typer.Option(
            "--batch-id",
            help="Id of this batch. A run replaces the rows an earlier run of the same id wrote, "
            "so a retried Job leaves one copy. The CronJob passes its Job's name. Default: the "
            "start time, UTC (YYYYMMDDTHHMMSSZ).",
            envvar="MLGITOPS_BATCH_ID",
            show_default=False,
        ),
    ] = None,
    tracking_uri: TrackingUriOpt = None,
    chunk_rows: Annotated[
        int,
        typer.Option("--chunk-rows", min=1, help="Rows scored and written per Delta commit."),
    ] = 100_000,
    state_dir: StateOpt = None,
) -> None:
    """Score a Delta table with the model an alias names now, and add the rows to another table.

    The batch CronJob of every ModelDeployment runs this with @champion, so the next run after a
    promotion scores with the new champion. Exit 0 when the batch was written, 2 when a table or
    the alias is missing, the model refuses the input, or the registry cannot be read.
    """
    import datetime as dt

    from controller.jobs.tables import table_uri

    state = StateDir(resolve_state_dir(state_dir))
    tracking_uri = _tracking_uri(tracking_uri, state)
    root = data_root or str(state.tables)
    started = dt.datetime.now(dt.UTC)
    batch_id = batch_id or started.strftime("%Y%m%dT%H%M%SZ")
    from controller.jobs.batch import run_batch
    from controller.jobs.tables import JobError

    try:
        result = run_batch(
            model_uri=model,
            input_uri=table_uri(input, root),
            output_uri=table_uri(output, root),
            batch_id=batch_id,
            tracking_uri=tracking_uri,
            chunk_rows=chunk_rows,
        )
    except JobError as exc:
        _fail([f"batch: {redact(str(exc))}"])
    out.print(
        f"batch {result.batch_id}: scored {result.rows} rows with {result.model} version "
        f"{result.version} into {result.output}"
        + (
            f" (table version {result.output_version})" if result.output_version is not None else ""
        ),
        markup=False,
    )


@app.command()
def monitor(
    baseline: Annotated[
        str,
        typer.Option(
            "--baseline", help="Delta table of the reference data (e.g. the training features)."
        ),
    ],
    current: Annotated[
        str | None,
        typer.Option(
            "--current",
            help="Delta table of recent data: a batch output table, whose newest batch is the "
            "window compared, or any table, compared whole. The monitoring CronJob passes the "
            "ModelDeployment's batchInference.output.",
            show_default=False,
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="Model URI whose signature names the features to compare (e.g. "
            "models:/<name>@champion). Default: every column the two tables share.",
            show_default=False,
        ),
    ] = None,
    method: Annotated[
        str, typer.Option("--method", help="psi (population stability index) or ks.")
    ] = "psi",
    threshold: Annotated[
        float,
        typer.Option(
            "--threshold", min=0, help="A feature drifts when its PSI or KS statistic exceeds it."
        ),
    ] = 0.2,
    report: Annotated[
        str | None,
        typer.Option(
            "--report",
            help="Delta table the findings are added to, a row per feature per window (a rerun "
            "of a window replaces its rows). Default: the current table's name + _drift.",
            show_default=False,
        ),
    ] = None,
    retrain_violations: Annotated[
        int | None,
        typer.Option(
            "--retrain-violations",
            min=1,
            help="Retraining is due when this many of the last --retrain-windows windows drifted.",
            show_default=False,
        ),
    ] = None,
    retrain_windows: Annotated[
        int, typer.Option("--retrain-windows", min=1, help="Windows --retrain-violations counts.")
    ] = 5,
    window: Annotated[
        str | None,
        typer.Option(
            "--window",
            help="Id of the window. Default: the newest batch id of --current, else the time.",
            show_default=False,
        ),
    ] = None,
    data_root: DataRootOpt = None,
    tracking_uri: TrackingUriOpt = None,
    state_dir: StateOpt = None,
) -> None:
    """Compare the newest scored batch with a baseline, feature by feature, and record drift.

    Each feature gets a PSI (ten bins at the baseline's deciles) or Kolmogorov-Smirnov
    statistic; above --threshold it has drifted. The findings are added to the report table, and
    with --retrain-violations the run says whether retraining is due. Drift is a finding: exit 0
    either way; 2 when a table or the model is missing or nothing can be compared.
    """
    from controller.jobs.monitor import run_monitor, signature_features
    from controller.jobs.tables import JobError, table_uri

    if method not in ("psi", "ks"):
        _fail([f"--method: must be psi or ks, not {method!r}"])
    if current is None:
        _fail(["--current: required (the monitoring CronJob passes batchInference.output)"])
    if retrain_violations is not None and retrain_violations > retrain_windows:
        _fail(["--retrain-violations: cannot exceed --retrain-windows"])
    state = StateDir(resolve_state_dir(state_dir))
    root = data_root or str(state.tables)
    try:
        features = None
        if model is not None:
            features = signature_features(model, _tracking_uri(tracking_uri, state))
        current_uri = table_uri(current, root)
        result = run_monitor(
            baseline_uri=table_uri(baseline, root),
            current_uri=current_uri,
            report_uri=table_uri(report, root) if report else current_uri.rstrip("/") + "_drift",
            method=method,
            threshold=threshold,
            features=features,
            window=window,
            retrain=(retrain_violations, retrain_windows) if retrain_violations else None,
        )
    except JobError as exc:
        _fail([f"monitor: {redact(str(exc))}"])
    drifted = ", ".join(f"{f.feature} {f.statistic:.3f}" for f in result.drifted)
    out.print(
        f"window {result.window}: {len(result.features)} features compared by {result.method} "
        f"(threshold {result.threshold:g}) on {result.rows} rows; "
        + (f"{len(result.drifted)} drifted: {drifted}" if drifted else "no drift"),
        markup=False,
    )
    if result.skipped:
        out.print(f"not compared: {', '.join(result.skipped)}", markup=False)
    if retrain_violations:
        out.print(
            f"retraining {'due' if result.retrain_due else 'not due'}: {result.drifted_windows} "
            f"of the last {result.windows} windows drifted (due at {retrain_violations})",
            markup=False,
        )
    out.print(f"report: {result.report}", markup=False)


@app.command()
def serve(
    champion: Annotated[
        str | None,
        typer.Option(
            "--champion",
            help="Model URI of the champion: models:/<name>/<version>, models:/<name>@<alias> "
            "(resolved at load and on SIGHUP), runs:/..., or a local path. Resolved against "
            "$MLFLOW_TRACKING_URI. Required unless --config is given.",
            envvar="MLGITOPS_SERVE_CHAMPION",
            show_default=False,
        ),
    ] = None,
    challenger: Annotated[
        str | None,
        typer.Option(
            "--challenger",
            help="Model URI of the challenger (optional).",
            envvar="MLGITOPS_SERVE_CHALLENGER",
            show_default=False,
        ),
    ] = None,
    challenger_traffic: Annotated[
        int,
        typer.Option(
            "--challenger-traffic",
            help="Percent of requests (0-100) sent to the challenger. A request with an "
            "X-Routing-Key header always goes to the same model for the same key.",
            envvar="MLGITOPS_SERVE_CHALLENGER_TRAFFIC",
        ),
    ] = 0,
    host: Annotated[
        str,
        typer.Option("--host", help="Address to listen on.", envvar="MLGITOPS_SERVE_HOST"),
    ] = "0.0.0.0",
    port: Annotated[
        int, typer.Option("--port", help="Port to listen on.", envvar="MLGITOPS_SERVE_PORT")
    ] = 8000,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            help="Server processes sharing the port (each loads the models).",
            envvar="MLGITOPS_SERVE_WORKERS",
        ),
    ] = 1,
    inference_log: Annotated[
        str | None,
        typer.Option(
            "--inference-log",
            help="Delta table (local path or object-store URI) to append every request and "
            "response to, in batches; never blocks or fails a prediction.",
            envvar="MLGITOPS_SERVE_INFERENCE_LOG",
            show_default=False,
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help='JSON file {"champion": URI, "challenger": URI or null, "challengerTraffic": '
            "PERCENT} that overrides the model flags. Re-read on SIGHUP and when its mtime "
            "changes (checked every second): the new models are loaded, then swapped in without "
            "failing a request; a bad file or a failed load keeps the models in service.",
            envvar="MLGITOPS_SERVE_CONFIG",
            show_default=False,
        ),
    ] = None,
    max_request_bytes: Annotated[
        int,
        typer.Option(
            "--max-request-bytes",
            help="Largest request body accepted; larger ones get 413.",
            envvar="MLGITOPS_SERVE_MAX_REQUEST_BYTES",
        ),
    ] = 10 * 1024 * 1024,
    predict: Annotated[
        str,
        typer.Option(
            "--predict",
            help="Where predictions run: auto (on the event loop for models measured fast at "
            "load, else in a thread pool), inline, or thread.",
            envvar="MLGITOPS_SERVE_PREDICT",
        ),
    ] = "auto",
) -> None:
    """Serve a champion (and optionally a challenger) over MLflow's scoring protocol.

    POST /invocations takes what `mlflow models serve` takes (JSON dataframe_split,
    dataframe_records, instances, inputs, with params; CSV) and answers the same
    {"predictions": ...}. Every response names the model that answered in X-Model-Version and
    X-Model-Role, and carries X-Request-Id. GET /ping is 200 once every model is loaded (503
    before), /health is liveness, /version lists the models served, /metrics is Prometheus.
    SIGHUP re-reads the configuration and swaps models with zero failed requests.
    """
    from controller.serving.config import (
        ConfigError,
        ServeSettings,
        ServingConfig,
        load_config_file,
    )

    try:
        if config is not None:
            initial = load_config_file(config)
            if champion is not None:
                err.print(f"note: --config {config} overrides --champion and --challenger")
        elif champion is None:
            _fail(["--champion: required (or --config FILE)"])
        else:
            initial = ServingConfig(
                champion=champion,
                challenger=challenger,
                challenger_traffic=challenger_traffic,
            )
        settings = ServeSettings(
            config=initial,
            config_file=config.resolve() if config is not None else None,
            host=host,
            port=port,
            workers=workers,
            inference_log=inference_log,
            max_request_bytes=max_request_bytes,
            predict=predict,
        )
    except ConfigError as exc:
        message = str(exc)
        if config is None:  # name the flags, not the config file's keys
            for key, flag in (
                ("challengerTraffic", "--challenger-traffic"),
                ("challenger:", "--challenger:"),
                ("champion:", "--champion:"),
            ):
                message = message.replace(key, flag, 1) if message.startswith(key) else message
        _fail([message])
    from controller.serving.process import run as run_server

    raise typer.Exit(run_server(settings))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
