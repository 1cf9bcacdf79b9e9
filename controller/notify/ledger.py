"""The event keys already sent, kept in the state directory so a restart never sends one twice.

At most once, not at least once: a key is written here *before* its first attempt, so a crash
between the two loses that notification rather than repeating it (a repeated "promoted" is worse
than a missing one; the condition in status still says what happened). The file is append-only
JSON lines, one ``[event, key, time]`` each, so recording a key is one short write that cannot
corrupt the others; when it holds twice ``limit`` lines it is rewritten atomically with the
newest ``limit`` (older keys are forgotten: a controller re-reporting something that old would
send it again). A torn last line, from a crash mid-write, is skipped and rewritten away.
"""

from __future__ import annotations

import json
import logging
import os
from collections import OrderedDict
from pathlib import Path

__all__ = ["Ledger"]

log = logging.getLogger("mlgitops.notify")


class Ledger:
    """A bounded, persistent set of ``(event, key)``; not thread-safe (the Notifier locks)."""

    def __init__(self, path: Path, *, limit: int) -> None:
        self.path = path
        self.limit = limit
        self._keys: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._lines = 0
        self._broken = False  # the file could not be written: keep going in memory
        self._load()

    def _load(self) -> None:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return
        except OSError as exc:
            log.warning("notifications: cannot read %s (%s): keys start empty", self.path, exc)
            return
        torn = bool(text) and not text.endswith("\n")
        for line in text.splitlines():
            try:
                event, key, at = json.loads(line)
            except (ValueError, TypeError):
                torn = True
                continue
            self._remember(str(event), str(key), str(at))
            self._lines += 1
        if torn or self._lines > self.limit:
            self._compact()

    def _remember(self, event: str, key: str, at: str) -> None:
        self._keys[(event, key)] = at
        self._keys.move_to_end((event, key))
        while len(self._keys) > self.limit:
            self._keys.popitem(last=False)

    def __contains__(self, item: tuple[str, str]) -> bool:
        return item in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, event: str, key: str, at: str) -> None:
        """Record ``(event, key)``: in memory always, on disk unless the disk fails (logged)."""
        self._remember(event, key, at)
        if self._broken:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as handle:
                handle.write(json.dumps([event, key, at]) + "\n")
            self._lines += 1
            if self._lines >= 2 * self.limit:
                self._compact()
        except OSError as exc:
            self._broken = True
            log.error(
                "notifications: cannot record sent keys in %s (%s): a restart may send some again",
                self.path,
                exc,
            )

    def _compact(self) -> None:
        tmp = self.path.with_name(f".{self.path.name}.tmp{os.getpid()}")
        try:
            tmp.write_text(
                "".join(json.dumps([e, k, at]) + "\n" for (e, k), at in self._keys.items())
            )
            os.replace(tmp, self.path)
        except OSError as exc:
            log.warning("notifications: cannot rewrite %s (%s)", self.path, exc)
            return
        self._lines = len(self._keys)
