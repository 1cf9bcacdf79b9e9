"""Starting the embedded runtime's children: model servers and job runs, one way.

Every child is ``python -m controller <command>`` with this interpreter (so it runs the same
mlgitops, from the same virtualenv, as the runtime), its output appended to a log file under the
state directory, no stdin, and a session of its own: Ctrl-C in the terminal reaches the runtime
only, which then stops its children in order (servers drain, job runs are recorded as cut short).
The virtualenv's bin is put first on PATH, as MLflow shells out to tools installed beside it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path


def start(
    args: Sequence[str], *, log: Path, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start ``mlgitops <args>`` with ``env`` added to this process's environment."""
    return start_command([sys.executable, "-m", "controller", *args], log=log, env=env)


def start_command(
    argv: Sequence[str],
    *,
    log: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` as the module docstring says (a training script, say, in its checkout)."""
    with open(log, "ab") as out:  # the child keeps its own handle
        return subprocess.Popen(
            list(argv),
            env=environ(env),
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def environ(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """A child's whole environment: this process's, ``env`` added, the virtualenv's bin first."""
    return {
        **os.environ,
        **(env or {}),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
