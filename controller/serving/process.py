"""Starting ``mlgitops serve``: one server process, or a supervisor of N workers on one socket.

With ``--workers N`` the supervisor binds the port once and starts N worker processes that accept
on the same socket (the kernel spreads connections). It imports no MLflow itself, forwards SIGHUP
to every worker (each reloads on its own, without dropping a request), restarts a worker that
dies, with backoff, and on SIGINT or SIGTERM stops them all, letting in-flight requests finish.
Each worker also polls the config file, so a changed file reaches all of them even without the
signal. Metrics are merged across workers through a shared ``PROMETHEUS_MULTIPROC_DIR``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from types import FrameType

from controller.serving.config import ServeSettings

__all__ = ["WORKER_ENV", "run", "worker_main"]

WORKER_ENV = "MLGITOPS_SERVE_WORKER"
_STOP_TIMEOUT = 40.0
log = logging.getLogger("mlgitops.serving")


def configure_logging() -> None:
    level = os.environ.get("MLGITOPS_SERVE_LOG_LEVEL", "info").upper()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s")
    )
    root = logging.getLogger("mlgitops")
    root.handlers[:] = [handler]
    root.setLevel(level if level in logging.getLevelNamesMapping() else "INFO")
    root.propagate = False


def run(settings: ServeSettings) -> int:
    """Serve until SIGINT or SIGTERM; returns the exit code."""
    # SIGHUP's default action kills; until the server installs its reload handler, a SIGHUP
    # has nothing to reload anyway (the configuration is read when the server starts).
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    configure_logging()
    if settings.workers == 1:
        from controller.serving.app import serve

        log.info(
            "mlgitops serve on http://%s:%d (1 worker)%s",
            settings.host,
            settings.port,
            f", config {settings.config_file}" if settings.config_file else "",
        )
        serve(settings)
        return 0
    return _supervise(settings)


def worker_main() -> None:
    """Entry point of a worker process started by the supervisor."""
    # Started with SIGHUP blocked (see spawn): ignore it until the server handles it.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})
    data = json.loads(os.environ.pop(WORKER_ENV))
    settings = ServeSettings.from_json(data["settings"])
    configure_logging()
    from controller.serving.app import serve

    serve(settings, fd=int(data["fd"]))


def _supervise(settings: ServeSettings) -> int:
    sock = socket.create_server((settings.host, settings.port), backlog=2048)
    sock.set_inheritable(True)
    port = sock.getsockname()[1]
    env = dict(os.environ)
    metrics_dir: str | None = None
    if not env.get("PROMETHEUS_MULTIPROC_DIR"):
        metrics_dir = tempfile.mkdtemp(prefix="mlgitops-serve-metrics-")
        env["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    env[WORKER_ENV] = json.dumps({"settings": settings.to_json(), "fd": sock.fileno()})
    command = [
        sys.executable,
        "-c",
        "from controller.serving.process import worker_main; worker_main()",
    ]

    def spawn() -> subprocess.Popen[bytes]:
        # The child inherits a blocked SIGHUP through exec, so a reload forwarded while it
        # starts cannot kill it with SIGHUP's default action.
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
        try:
            return subprocess.Popen(command, env=env, pass_fds=(sock.fileno(),))
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)

    stopping = threading.Event()
    workers: list[subprocess.Popen[bytes]] = []

    def forward_hup(signum: int, frame: FrameType | None) -> None:
        log.info("SIGHUP: asking %d worker(s) to reload", len(workers))
        for proc in workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGHUP)

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGHUP, forward_hup)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)

    log.info(
        "mlgitops serve on http://%s:%d (%d workers)%s",
        settings.host,
        port,
        settings.workers,
        f", config {settings.config_file}" if settings.config_file else "",
    )
    workers.extend(spawn() for _ in range(settings.workers))
    backoff = [1.0] * settings.workers
    restart_at = [0.0] * settings.workers
    started_at = [time.monotonic()] * settings.workers
    try:
        while not stopping.wait(0.5):
            now = time.monotonic()
            for i, proc in enumerate(workers):
                code = proc.poll()
                if code is None:
                    if now - started_at[i] > 60:
                        backoff[i] = 1.0  # up for a minute: the next crash restarts fast
                    continue
                if restart_at[i] == 0.0:
                    _mark_dead(proc.pid, metrics_dir)
                    restart_at[i] = now + backoff[i]
                    log.error(
                        "worker %d exited with %s; restarting in %.0fs", proc.pid, code, backoff[i]
                    )
                    backoff[i] = min(backoff[i] * 2, 30.0)
                elif now >= restart_at[i]:
                    workers[i] = spawn()
                    started_at[i], restart_at[i] = now, 0.0
    finally:
        for proc in workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + _STOP_TIMEOUT
        for proc in workers:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        sock.close()
        if metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


def _mark_dead(pid: int, metrics_dir: str | None) -> None:
    if metrics_dir:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, metrics_dir)  # type: ignore[no-untyped-call]
