"""The state directory (``.mlgitops/`` by default): what the embedded runtime keeps between runs.

It holds the embedded MLflow store, the Git mirrors of remote repositories and, per environment,
the last status summary and a lock. Status is written atomically (temp file + rename), so a crash
mid-write leaves the previous summary intact, and two mlgitops processes never reconcile the same
environment at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from controller.errors import Busy

DEFAULT_STATE_DIR = ".mlgitops"


def resolve_state_dir(value: str | os.PathLike[str] | None) -> Path:
    """``--state-dir``, else ``$MLGITOPS_STATE_DIR``, else ``./.mlgitops``."""
    raw = value or os.environ.get("MLGITOPS_STATE_DIR") or DEFAULT_STATE_DIR
    return Path(raw).expanduser().resolve()


class StateDir:
    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def git_cache(self) -> Path:
        return self.root / "git"

    @property
    def writeback(self) -> Path:
        """Our own clones of config repositories, where write-back commits are made."""
        return self.root / "writeback"

    @property
    def tables(self) -> Path:
        """Where relative table names live when neither the Environment nor a flag says."""
        return self.root / "tables"

    def env_dir(self, env: str) -> Path:
        path = self.root / "envs" / env
        path.mkdir(parents=True, exist_ok=True)
        return path

    @contextlib.contextmanager
    def lock(self, env: str) -> Iterator[None]:
        """Hold the environment's lock; raise ``Busy`` at once if another process has it."""
        with open(self.env_dir(env) / "lock", "w") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise Busy(f"environment {env!r} is being reconciled by another process") from exc
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def status_path(self, env: str) -> Path:
        return self.root / "envs" / env / "status.json"

    def load_status(self, env: str) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = json.loads(self.status_path(env).read_text())
        except FileNotFoundError:
            return None
        return data

    def save_status(self, env: str, data: dict[str, Any]) -> None:
        write_json(self.env_dir(env) / "status.json", data)


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` atomically: a temporary file beside it, then a rename.

    A reader, or a crash mid-write, sees the old file or the new one, never half of one. The
    temporary file is hidden and has no ``.json`` suffix, so globs of ``*.json`` never see it.
    """
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
