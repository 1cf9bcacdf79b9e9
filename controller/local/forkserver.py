"""Warm starts for the embedded runtime's short jobs: a validation begins in milliseconds.

A validation is ``python -m controller validate-model ...``: a fresh interpreter spends about
three seconds importing MLflow, pandas and scikit-learn before its first line of work, and two
more tearing them down at exit, five of the seconds between a new version and its challenger
commit. So the runtime keeps one process that has imported them already (this module run as
``python -m controller.local.forkserver MODULE...``) and forks it for each run: the child starts
with everything imported, runs ``mlgitops ARGS`` exactly as the command line would, records its
exit code and leaves with ``os._exit`` once its output is flushed (``controller.exits``, which a
job command's own fast exit goes through too, so its code is recorded either way).

The child is what ``local.tracked`` expects of any tracked process, so nothing else changes: a
session of its own (a deadline ends its whole group), its output appended to its log, no stdin,
its exit code written to the exit file (a temporary name, then renamed), and it outlives the
runtime. Only its command line is the server's, so ``Tracked`` tells it from a recycled pid by
its start time instead, and learns that it ended through a pidfd: it is the server's child, not
the runtime's.

Why not ``multiprocessing``'s forkserver: its children belong to the parent, which joins or
terminates them when it exits, and a validation must survive a restart of the runtime to be
adopted, not run twice.

The protocol is one JSON line each way over the server's stdin and stdout: a request
``{"argv", "env", "cwd", "log", "exit_file"}``, a reply ``{"pid"}`` or ``{"error"}``. The server
prints ``{"ready": true}`` once its imports are done and exits when its stdin closes (the runtime
ended), leaving its children running. It forks only from its one thread: it starts none.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import runpy
import signal
import subprocess
import sys
import threading
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from controller import exits

READY_TIMEOUT = 120.0  # a cold import on a busy machine
REPLY_TIMEOUT = 30.0  # a fork, once imported


class ForkServerError(Exception):
    """The server is not there to start a run: the caller starts it the cold way."""


class ForkServer:
    """The runtime's side: start the server once (``warm``), then ``spawn`` runs from it."""

    def __init__(self, preload: Sequence[str], *, log: Path) -> None:
        self.preload = list(preload)
        self.log = log  # the server's own output (an import failing, say)
        self._proc: subprocess.Popen[str] | None = None
        self._ready = False
        self._lock = threading.Lock()

    def warm(self) -> None:
        """Start the server if it is not running; returns at once (it imports meanwhile)."""
        with self._lock:
            self._start()

    def _start(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            return
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as err:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "controller.local.forkserver", *self.preload],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                bufsize=1,
            )
        self._ready = False

    def spawn(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: Path | None,
        log: Path,
        exit_file: Path,
    ) -> int:
        """Fork ``mlgitops <argv>`` from the server; returns its pid. ``env`` is its whole
        environment. Waits for the server's imports the first time. Raises
        :class:`ForkServerError` when the server cannot start it."""
        request = {
            "argv": list(argv),
            "env": dict(env),
            "cwd": str(cwd) if cwd else None,
            "log": str(log),
            "exit_file": str(exit_file),
        }
        with self._lock:
            self._start()
            proc = self._proc
            assert proc is not None
            assert proc.stdin is not None
            assert proc.stdout is not None
            try:
                if not self._ready:
                    ready = _reply(proc.stdout, READY_TIMEOUT)
                    self._ready = ready.get("ready") is True
                    if not self._ready:
                        raise ForkServerError("the fork server did not start")
                proc.stdin.write(json.dumps(request) + "\n")
                proc.stdin.flush()
                reply = _reply(proc.stdout, REPLY_TIMEOUT)
            except (OSError, ValueError) as e:
                self._stop()
                raise ForkServerError(f"the fork server failed: {e}") from e
            if "pid" not in reply:
                raise ForkServerError(str(reply.get("error", "no pid")))
            return int(reply["pid"])

    def close(self) -> None:
        """Stop the server (its runs go on)."""
        with self._lock:
            self._stop()

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(OSError):
            assert proc.stdin is not None
            proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def _reply(out: IO[str], timeout: float) -> dict[str, Any]:
    """The server's next line (it writes one per request, so nothing waits in the buffer)."""
    import select

    readable, _, _ = select.select([out], [], [], timeout)
    if not readable:
        raise OSError(f"the fork server did not answer within {timeout:g} s")
    line = out.readline()
    if not line:
        raise OSError("the fork server exited")
    reply: dict[str, Any] = json.loads(line)
    return reply


def start_time(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot): with the pid, names one process for good."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name, in parentheses, may hold spaces: count the fields after its end.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):  # ended, not yet reaped: not running
        return None
    return int(fields[19])  # field 22 of stat(5); fields[0] here is field 3


def wait_for_exit(pid: int) -> None:
    """Block until ``pid`` (any process, not only a child) has ended."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        import select

        select.select([fd], [], [])
    finally:
        os.close(fd)


# The server, in its own process -------------------------------------------------------------


def serve(preload: Sequence[str]) -> None:
    for name in preload:
        importlib.import_module(name)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the runs: no zombies
    _send({"ready": True})
    for line in sys.stdin:
        try:
            request = json.loads(line)
        except ValueError as e:
            _send({"error": f"not a request: {e}"})
            continue
        sys.stdout.flush()
        sys.stderr.flush()
        settled, told = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(settled)
            _child(request, told)  # never returns
        os.close(told)
        os.read(settled, 1)  # the child is in its own session (or gone): a group to end
        os.close(settled)
        _send({"pid": pid})


def _send(reply: Mapping[str, Any]) -> None:
    sys.stdout.write(json.dumps(reply) + "\n")
    sys.stdout.flush()


def _child(request: Mapping[str, Any], told: int) -> None:
    code = 1
    try:
        # Recorded however the run leaves: below, or in a job command's own fast exit.
        exit_file = Path(request["exit_file"])
        exits.on_leave(lambda left: _record_exit(exit_file, left))
        os.setsid()
        os.close(told)  # the server replies now
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # its own subprocesses are waited for
        signal.signal(signal.SIGINT, signal.default_int_handler)
        out = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.close(out)
        os.close(null)
        sys.stdin = open(os.devnull)  # noqa: SIM115 - the child's for its whole life
        os.environ.clear()
        os.environ.update(request["env"])
        if request.get("cwd"):
            os.chdir(request["cwd"])
        code = _run(request["argv"])
    except BaseException:  # reported in the log, as a cold start's traceback would be
        traceback.print_exc()
    finally:
        exits.leave(code)


def _run(argv: Sequence[str]) -> int:
    """``python -m controller <argv>``, in this process: what a cold start would run."""
    sys.argv = ["mlgitops", *argv]
    try:
        runpy.run_module("controller", run_name="__main__", alter_sys=True)
    except SystemExit as e:
        if e.code is None:
            return 0
        if isinstance(e.code, int):
            return e.code
        print(e.code, file=sys.stderr)
        return 1
    return 0


def _record_exit(exit_file: Path, code: int) -> None:
    temporary = exit_file.with_name(exit_file.name + ".tmp")
    temporary.write_text(f"{code}\n")
    temporary.rename(exit_file)


if __name__ == "__main__":
    serve(sys.argv[1:])
