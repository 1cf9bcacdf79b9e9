"""How a job process ends: its output flushed, then ``os._exit``, without the interpreter's teardown.

A process that read Delta tables through deltalake and pyarrow sometimes aborts while the
interpreter tears down (SIGABRT, exit 134; delta-io/delta-rs#2184: the native threads and
finalizers of the Rust runtime and Arrow race with the interpreter's own finalization). By then a
job's work is done and durable: every Delta commit is synchronous, and every MLflow call has
returned. So the teardown does nothing for the job, but it can turn a success into a failed Job
that Kubernetes retries, or a run the embedded runtime reports as failed. Leaving with
``os._exit`` once the output is flushed skips it.

Only a program's entry point may leave this way, after its command returned (``controller.cli``
for ``batch``, ``monitor`` and ``report``; the fork server's child, which records its exit code
first through ``on_leave``): a command called in-process, by a test, returns its exit code as
any function does.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable
from typing import NoReturn

__all__ = ["exit_code", "flush", "leave", "on_leave"]

_hooks: list[Callable[[int], None]] = []


def on_leave(hook: Callable[[int], None]) -> None:
    """Call ``hook(code)`` when the process leaves through :func:`leave`, after the flush: an
    ``atexit`` for a process that ``os._exit`` ends."""
    _hooks.append(hook)


def flush() -> None:
    """Write out what the process holds back: every logging handler, then stdout and stderr."""
    logging.shutdown()  # flushes and closes each handler
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # closed, or a reader gone: nothing left to do
            stream.flush()


def leave(code: int) -> NoReturn:
    """End the process now with ``code``, its output flushed and each ``on_leave`` hook run."""
    try:
        flush()
        for hook in _hooks:
            hook(code)
    finally:
        os._exit(code)


def exit_code(exc: SystemExit) -> int:
    """The status the interpreter would exit with for ``exc``: 0 for None, the number, or 1
    for anything else, which it prints to stderr as the interpreter does."""
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    with contextlib.suppress(Exception):
        print(exc.code, file=sys.stderr)
    return 1
