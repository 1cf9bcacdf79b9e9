"""Processes that outlive the controller that started them: training runs and validations.

A model server or a cron job run is the runtime's child and dies with it; a training run or a
validation may take an hour and must not run twice, so the embedded runtime tracks each one by
files rather than by memory. For a key (a run id, a model version) under a root directory:

- ``<key>.json``, the record: the pid, the command, its deadline;
- ``<key>.exit``, written by a small shell wrapper around the command when it ends, holding its
  exit code (written to a temporary name and renamed: never half a number);
- ``<key>.log``, its output.

So a restarted runtime adopts a process still going (its pid, checked against the wrapper's
command line, or against its start time for a run forked from the warm server of
``local.forkserver``, so a recycled pid is not mistaken for it) and learns how one that ended
while it was down went. A process past its deadline is ended, its whole process group. A thread per
process this runtime started reaps it when it ends and calls ``on_exit``, so the loop can act on
the result at once rather than at its next poll.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from controller.local import processes
from controller.local.forkserver import ForkServer, ForkServerError, start_time, wait_for_exit
from controller.planning.ports import RunnerState
from controller.state import write_json

# Runs the command, then records its exit code: "$@" is the command, $0 the exit-code file.
_WRAPPER = '"$@"; code=$?; echo $code > "$0.tmp" && mv "$0.tmp" "$0"; exit $code'
COMMAND_NOT_FOUND = 127
KILL_GRACE = 10.0
# The processes this runtime started, kept to reap them when they end (no zombies).
_STARTED: dict[Path, subprocess.Popen[bytes]] = {}


class Tracked:
    """The tracked processes under ``root``, one per key."""

    def __init__(self, root: Path, on_exit: Callable[[], None] = lambda: None) -> None:
        self.root = root
        self.on_exit = on_exit

    def paths(self, key: str) -> tuple[Path, Path, Path]:
        """(record, exit file, log) of ``key``."""
        base = self.root / key
        return base.with_suffix(".json"), base.with_suffix(".exit"), base.with_suffix(".log")

    def start(
        self,
        key: str,
        command: list[str],
        *,
        env: Mapping[str, str],
        timeout: float,
        cwd: Path | None = None,
        header: str | None = None,
    ) -> str:
        """Start ``command`` for ``key``; returns the log's path. ``header``: a first log line."""
        record, exit_file, log = self.paths(key)
        self.root.mkdir(parents=True, exist_ok=True)
        exit_file.unlink(missing_ok=True)
        if header:
            with open(log, "ab") as out:
                out.write(f"{header}\n".encode())
        proc = processes.start_command(
            ["/bin/sh", "-c", _WRAPPER, str(exit_file), *command], log=log, env=env, cwd=cwd
        )
        _STARTED[record] = proc
        now = time.time()
        write_json(
            record,
            {
                "pid": proc.pid,
                "command": command,
                "started": now,
                "deadline": now + timeout,
                "timeout": timeout,
            },
        )
        on_exit = self.on_exit

        def watch() -> None:
            proc.wait()
            on_exit()

        threading.Thread(target=watch, name=f"tracked-{key[:12]}", daemon=True).start()
        return str(log)

    def start_mlgitops(
        self,
        key: str,
        args: list[str],
        *,
        env: Mapping[str, str],
        timeout: float,
        forks: ForkServer | None,
        header: str | None = None,
    ) -> str:
        """Start ``mlgitops <args>`` for ``key``: forked from the warm server ``forks`` when
        there is one that answers, else as a fresh ``python -m controller``."""
        if forks is None:
            return self.start(
                key,
                [sys.executable, "-m", "controller", *args],
                env=env,
                timeout=timeout,
                header=header,
            )
        record, exit_file, log = self.paths(key)
        self.root.mkdir(parents=True, exist_ok=True)
        exit_file.unlink(missing_ok=True)
        if header:
            with open(log, "ab") as out:
                out.write(f"{header}\n".encode())
        try:
            pid = forks.spawn(
                args, env=processes.environ(env), cwd=None, log=log, exit_file=exit_file
            )
        except ForkServerError as e:
            with open(log, "ab") as out:
                out.write(f"(no warm start: {e})\n".encode())
            return self.start(
                key, [sys.executable, "-m", "controller", *args], env=env, timeout=timeout
            )
        now = time.time()
        write_json(
            record,
            {
                "pid": pid,
                "proc_start": start_time(pid),
                "command": ["mlgitops", *args],
                "started": now,
                "deadline": now + timeout,
                "timeout": timeout,
            },
        )
        on_exit = self.on_exit

        def watch() -> None:
            wait_for_exit(pid)
            on_exit()

        threading.Thread(target=watch, name=f"tracked-{key[:12]}", daemon=True).start()
        return str(log)

    def state(self, key: str) -> RunnerState:
        record_path, exit_file, log = self.paths(key)
        child = _STARTED.get(record_path)
        if child is not None and child.poll() is not None:
            del _STARTED[record_path]  # reaped; its exit code is in the exit file
        try:
            record: dict[str, Any] = json.loads(record_path.read_text())
        except (OSError, ValueError):
            return RunnerState("absent", log=str(log) if log.exists() else None)
        if exit_file.exists():
            try:
                code = int(exit_file.read_text().strip())
            except ValueError:
                code = -1
            if code == 0:
                return RunnerState("succeeded", log=str(log))
            return RunnerState("failed", _exit_reason(code, record), str(log))
        pid = int(record["pid"])
        if _alive(record, exit_file):
            if time.time() > float(record["deadline"]):
                _end_group(pid)
                return RunnerState("failed", f"timed out after {record['timeout']:g} s", str(log))
            return RunnerState("running", log=str(log))
        return RunnerState("failed", "the process ended without an exit code (killed)", str(log))

    def log(self, key: str) -> str | None:
        path = self.paths(key)[2]
        return str(path) if path.exists() else None

    def forget(self, key: str) -> None:
        """Drop the record and exit file of a finished process (its log stays)."""
        record, exit_file, _ = self.paths(key)
        record.unlink(missing_ok=True)
        exit_file.unlink(missing_ok=True)

    def ended(self) -> set[Path]:
        """The records of processes that ended, or are past their deadline, and are not yet
        forgotten (read from the files, so processes adopted after a restart count too)."""
        found: set[Path] = set()
        if not self.root.is_dir():
            return found
        for record in self.root.glob("*.json"):
            exit_file = record.with_suffix(".exit")
            try:
                data = json.loads(record.read_text())
                over = time.time() > float(data["deadline"])
                if exit_file.exists() or over or not _alive(data, exit_file):
                    found.add(record)
            except (OSError, ValueError, KeyError, TypeError):
                continue
        return found


def _exit_reason(code: int, record: Mapping[str, Any]) -> str:
    if code == COMMAND_NOT_FOUND:
        return f"command not found: {record['command'][0]}"
    return f"exited with code {code}"


def _alive(record: Mapping[str, Any], exit_file: Path) -> bool:
    """The process still runs: the wrapper shell whose command line names the exit file, or
    the forked run that started when the record says (its pid not recycled)."""
    pid = int(record["pid"])
    if "proc_start" in record:
        return record["proc_start"] is not None and start_time(pid) == record["proc_start"]
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return str(exit_file).encode() in cmdline


def _end_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + KILL_GRACE
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
