"""A work queue of objects to reconcile, as controller-runtime's: deduplicated, delayed, serial.

Every reason to look at a ModelDeployment again (its own change, a change of one of its children,
a change of its Environment, the periodic resync) is the same request: "reconcile this key". The
queue turns a burst of such requests into one pass, never runs two passes of one key at once (a
request that arrives during a pass runs it once more afterwards, so no change is missed), and
keeps each key's next resync as just another delayed request. Passes run on a fixed pool of
worker threads, so a thousand objects cost a thousand heap entries, not a thousand threads.

It knows nothing of Kubernetes: keys are any hashable value, and the ``process`` function returns
when the key wants its next pass (seconds from now, or None for no resync).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
log = logging.getLogger("mlgitops.operator")


class WorkQueue(Generic[K]):
    def __init__(
        self,
        process: Callable[[K], float | None],
        *,
        workers: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._process = process
        self._workers = workers
        self._clock = clock
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, K]] = []
        self._due: dict[K, float] = {}  # the earliest time each waiting key is due
        self._active: set[K] = set()  # keys being processed now
        self._again: dict[K, float] = {}  # keys asked for while being processed: when
        self._gone: set[K] = set()  # keys forgotten while being processed: no resync after
        self._seq = itertools.count()
        self._threads: list[threading.Thread] = []
        self._stopped = False

    # -- requests ----------------------------------------------------------------------------------

    def add(self, key: K, *, delay: float = 0.0) -> None:
        """Reconcile ``key`` in ``delay`` seconds, or sooner if it is already due sooner."""
        with self._cond:
            due = self._clock() + max(0.0, delay)
            self._gone.discard(key)
            if key in self._active:
                self._again[key] = min(due, self._again.get(key, due))
                return
            self._push(key, due)

    def forget(self, key: K) -> None:
        """Drop every pending request for ``key`` (it was deleted); a pass in flight finishes."""
        with self._cond:
            self._due.pop(key, None)
            self._again.pop(key, None)
            if key in self._active:
                self._gone.add(key)

    def pending(self, key: K) -> float | None:
        """Seconds until ``key`` is due, None when nothing is pending (for tests and status)."""
        with self._cond:
            due = self._due.get(key)
            return None if due is None else max(0.0, due - self._clock())

    def __len__(self) -> int:
        with self._cond:
            return len(self._due)

    # -- workers -----------------------------------------------------------------------------------

    def start(self) -> None:
        for n in range(self._workers):
            thread = threading.Thread(target=self._work, name=f"mlgitops-pass-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, *, timeout: float = 30.0) -> None:
        """Stop taking keys; wait for the passes in flight."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        deadline = self._clock() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - self._clock()))

    def _push(self, key: K, due: float) -> None:
        if key in self._due and self._due[key] <= due:
            return
        self._due[key] = due
        heapq.heappush(self._heap, (due, next(self._seq), key))
        self._cond.notify()

    def _take(self) -> K | None:
        """The next due key (blocking until one is), or None once stopped."""
        with self._cond:
            while not self._stopped:
                now = self._clock()
                while self._heap:
                    due, _, key = self._heap[0]
                    if self._due.get(key) != due:  # superseded by an earlier request, or forgotten
                        heapq.heappop(self._heap)
                        continue
                    break
                if self._heap and self._heap[0][0] <= now:
                    _, _, key = heapq.heappop(self._heap)
                    del self._due[key]
                    self._active.add(key)
                    return key
                self._cond.wait(self._heap[0][0] - now if self._heap else None)
            return None

    def _work(self) -> None:
        while (key := self._take()) is not None:
            next_in: float | None = None
            try:
                next_in = self._process(key)
            except Exception:  # a bug in one pass must not kill the worker; retry later
                log.exception("reconcile of %s failed", key)
                next_in = 30.0
            with self._cond:
                self._active.discard(key)
                if key in self._gone:
                    self._gone.discard(key)
                    continue
                again = self._again.pop(key, None)
                if again is not None:
                    self._push(key, again)
                if next_in is not None:
                    self._push(key, self._clock() + next_in)
