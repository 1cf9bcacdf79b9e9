"""The embedded runtime's loop: ``mlgitops run`` keeps one machine in sync with Git.

Each pass is the engine's environment pass (``controller.engine.reconcile``), the same one
``mlgitops sync`` runs once, with the local runtime's steps plugged in: model servers
(``servers.LocalRuntime``), the batch and monitoring jobs on their schedules
(``cron.LocalCron``), and training from code (``training.LocalTraining``). Between passes it
supervises the servers and ticks the clock once a second, so a crashed server or a due job does
not wait for the next Git poll; ``wake`` (set by the webhook server, ``local.webhook``) starts the
next pass at once. The loop holds the
environment's lock for its whole life, so a second ``mlgitops run`` or ``sync`` of the same
environment is refused rather than racing it, and it stops everything it started on the way out.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping

from controller.api.documents import Environment
from controller.api.loader import DesiredState
from controller.api.status import ServingStatus, TrainingStatus
from controller.engine import SyncResult, load_desired, reconcile
from controller.errors import InvalidInput, MlgitopsError
from controller.local.cron import LocalCron
from controller.local.forkserver import ForkServer
from controller.local.promotion import LocalPromotion
from controller.local.servers import LocalRuntime
from controller.local.training import LocalTraining
from controller.monitoring import AlertWatch
from controller.notify import Notifier
from controller.planning.ports import (
    CodeSource,
    Promoter,
    RegistryFor,
    Source,
    TrackingFor,
)
from controller.promotion import ReadOnlyPromoter
from controller.state import StateDir
from controller.training import Event

TICK_SECONDS = 1.0
# What ``mlgitops validate-model`` imports, loaded once by the warm server it is forked from.
VALIDATION_PRELOAD = ("controller.cli", "controller.jobs.validation", "controller.registry.preload")


def run(
    *,
    env: str,
    source: Source,
    state: StateDir,
    registry_for: RegistryFor,
    tracking_for: TrackingFor,
    code_for: Callable[[str], CodeSource],
    interval: float,
    stop: threading.Event,
    say: Callable[[str], None],
    on_error: Callable[[MlgitopsError], None],
    wake: threading.Event | None = None,
    on_repos: Callable[[set[str]], None] = lambda _: None,
    promoter_for: Callable[[Environment], Promoter] | None = None,
) -> None:
    """Pass every ``interval`` seconds until ``stop`` is set.

    Raises :class:`~controller.errors.MlgitopsError` when the environment cannot be read at
    start (nothing is running then) and :class:`~controller.errors.Busy` when another process
    holds the environment; errors of later passes go to ``on_error`` and the loop goes on with
    the last good state in force. ``promoter_for``: the config repository's write-back (None:
    versions are validated, nothing is proposed to Git). ``wake`` set: the next pass starts now
    (a pass under way when it is set is followed by another). ``on_repos`` hears the
    repositories each pass read (the config repository's location and every code repository),
    for matching pushes.
    """
    wake = wake or threading.Event()
    from controller.registry import embedded_tracking_uri

    _, first = load_desired(source, env=env, rev=None)
    uri = first.environment.spec.registry.tracking_uri or embedded_tracking_uri(state.root)
    runtime = LocalRuntime(env=env, state_root=state.root, tracking_uri=uri)
    cron = LocalCron(
        env=env,
        state_root=state.root,
        tracking_uri=uri,
        on_event=lambda line: say(f"{env}: {line}"),
    )

    trainer = LocalTraining(
        env=env,
        state_root=state.root,
        tracking_uri=uri,
        tracking=tracking_for(first.environment.spec.registry.tracking_uri),
        code_for=code_for,
        data_root=first.environment.spec.data_root or str(state.tables),
        on_event=lambda e: say(f"{env}: {e.reason}: {e.message}"),
        on_exit=wake.set,  # its version is registered at once, not at the next poll
    )
    # Validations start forked from a process that has imported what they need (local.forkserver).
    forks = ForkServer(VALIDATION_PRELOAD, log=state.root / "envs" / env / "forkserver.log")
    promotion = LocalPromotion(
        env=env,
        state_root=state.root,
        tracking_uri=uri,
        tracking=trainer.tracking,
        promoter_for=promoter_for or (lambda _: ReadOnlyPromoter()),
        data_root=trainer.data_root,
        on_event=lambda e: say(f"{env}: {e.reason}: {e.message}"),
        on_exit=wake.set,  # its verdict is acted on at once
        on_written=wake.set,  # a promotion it committed is synced at once
        forks=forks,
    )

    def train(desired: DesiredState) -> Mapping[str, TrainingStatus]:
        code = {d.doc.spec.training.source.repo for d in desired.deployments if d.doc.spec.training}
        on_repos({source.display, *code})
        return trainer.apply(desired)

    def apply(desired: DesiredState) -> Mapping[str, ServingStatus]:
        cron.apply(desired)  # the batch and monitoring CronJobs, on this machine's clock
        return runtime.apply(desired)

    notifier = Notifier.for_environment(first.environment, state_dir=state)
    alerts = AlertWatch()  # the monitor's alerts, reported when they change

    def event(e: Event) -> None:
        say(f"{env}: {e.reason}: {e.message}")
        notifier.notify_event(e.reason, model=e.deployment, message=e.message)

    trainer.on_event = event
    promotion.on_event = event

    try:
        with state.lock(env):
            say(f"mlgitops run: environment {env} from {source.display}; Ctrl-C stops")
            last: str | None = None
            while not stop.is_set():
                wake.clear()
                result = reconcile(
                    env=env,
                    source=source,
                    registry_for=registry_for,
                    store=state,
                    serve=apply,
                    train=train,
                    promote=promotion.apply,
                )
                source.close()  # the next pass sees new commits (and fetches a remote)
                if result.desired is not None:
                    notifier.configure(result.desired.environment.spec.notifications)
                    for d in result.desired.deployments:
                        if d.doc.spec.monitoring is None:
                            continue
                        for alert, key in alerts.check(d.registered_model, trainer.tracking):
                            name = d.doc.metadata.name
                            say(f"{env}: {alert.reason}: {alert.message}")
                            notifier.notify(alert.reason, key, model=name, message=alert.message)
                for model, version in result.rolled_back:
                    revision = result.commit.sha if result.commit else ""
                    notifier.notify(
                        "RollbackDetected",
                        f"{model}/{version}/{revision}",
                        model=model,
                        message=f"{model} version {version} lost the champion pin at "
                        f"{revision[:12]} without a promotion commit: never proposed again",
                    )
                if result.error is not None:
                    on_error(result.error)
                    if isinstance(result.error, InvalidInput):
                        revision = str(result.error.revision or "")
                        notifier.notify(
                            "SyncStalled",
                            revision or str(result.error),
                            message=f"revision {revision[:12]} refused: {result.error}",
                        )
                elif result.commit is not None and (result.applied or result.commit.sha != last):
                    last = result.commit.sha
                    say(f"{env}: {_summary(result)}")
                deadline = time.monotonic() + interval
                while not (stop.is_set() or wake.is_set()) and time.monotonic() < deadline:
                    runtime.supervise()
                    cron.tick()
                    if trainer.needs_pass() or promotion.needs_pass():
                        break  # a run adopted after a restart ended, or one is past its deadline
                    wake.wait(TICK_SECONDS)
    finally:
        forks.close()
        cron.stop_all()
        runtime.stop_all()
        notifier.close(timeout=5.0)


def _summary(result: SyncResult) -> str:
    assert result.commit is not None
    served = ", ".join(
        f"{name} {s.url} (champion {s.champion})" for name, s in sorted(result.serving.items())
    )
    return (
        f"at {result.commit.short}, {len(result.applied)} alias change(s); "
        f"serving {served or 'nothing'}"
    )
