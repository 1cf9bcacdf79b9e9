"""The operator's work queue: bursts coalesce, one pass per key at a time, nothing missed."""

from __future__ import annotations

import threading
import time
from collections import Counter

from controller.kubernetes.queue import WorkQueue
from tests.helpers import wait_for


class Recorder:
    """A ``process`` that records its calls, can be held, and asks for a resync."""

    def __init__(self, resync: float | None = None) -> None:
        self.calls: Counter[str] = Counter()
        self.running: Counter[str] = Counter()
        self.overlaps = 0
        self.gate = threading.Event()
        self.gate.set()
        self.resync = resync
        self.lock = threading.Lock()

    def __call__(self, key: str) -> float | None:
        with self.lock:
            self.running[key] += 1
            if self.running[key] > 1:
                self.overlaps += 1
        self.gate.wait(10)
        with self.lock:
            self.running[key] -= 1
            self.calls[key] += 1
        return self.resync


def test_a_burst_of_requests_is_one_pass() -> None:
    work = Recorder()
    queue: WorkQueue[str] = WorkQueue(work, workers=2)
    for _ in range(50):
        queue.add("a", delay=0.2)
    queue.add("b", delay=0.2)
    queue.start()
    try:
        wait_for("both ran", lambda: work.calls["a"] and work.calls["b"], timeout=5)
        time.sleep(0.4)
        assert work.calls == Counter({"a": 1, "b": 1})
        assert len(queue) == 0  # no resync asked for
    finally:
        queue.stop()


def test_a_request_during_a_pass_runs_once_more_after_it_never_alongside() -> None:
    work = Recorder()
    queue: WorkQueue[str] = WorkQueue(work, workers=4)
    queue.start()
    try:
        work.gate.clear()
        queue.add("a")
        wait_for("a in flight", lambda: work.running["a"] == 1, timeout=5)
        for _ in range(10):
            queue.add("a")  # four workers are free, yet none may take "a" now
        time.sleep(0.3)
        assert work.running["a"] == 1
        work.gate.set()
        wait_for("the second pass", lambda: work.calls["a"] == 2, timeout=5)
        time.sleep(0.3)
        assert work.calls["a"] == 2
        assert work.overlaps == 0
    finally:
        queue.stop()


def test_the_resync_is_a_delayed_request_and_a_sooner_one_wins() -> None:
    work = Recorder(resync=30.0)
    queue: WorkQueue[str] = WorkQueue(work, workers=1)
    queue.start()
    try:
        queue.add("a")
        wait_for("first pass", lambda: work.calls["a"] == 1, timeout=5)
        wait_for("resync queued", lambda: queue.pending("a") is not None, timeout=5)
        assert 29 < (queue.pending("a") or 0) <= 30
        queue.add("a", delay=0.1)  # a change: sooner than the resync
        wait_for("second pass", lambda: work.calls["a"] == 2, timeout=5)
    finally:
        queue.stop()


def test_a_forgotten_key_is_not_run_nor_resynced() -> None:
    work = Recorder(resync=0.05)
    queue: WorkQueue[str] = WorkQueue(work, workers=1)
    queue.add("gone", delay=0.2)
    queue.forget("gone")
    queue.start()
    try:
        work.gate.clear()
        queue.add("a")
        wait_for("a in flight", lambda: work.running["a"] == 1, timeout=5)
        queue.forget("a")  # deleted while its pass runs: that pass ends, no resync follows
        work.gate.set()
        wait_for("a done", lambda: work.calls["a"] == 1, timeout=5)
        time.sleep(0.3)
        assert work.calls == Counter({"a": 1})
        assert queue.pending("a") is None
    finally:
        queue.stop()


def test_a_failing_pass_does_not_kill_its_worker() -> None:
    seen: list[str] = []

    def process(key: str) -> float | None:
        seen.append(key)
        if key == "bad":
            raise RuntimeError("a bug")
        return None

    queue: WorkQueue[str] = WorkQueue(process, workers=1)
    queue.start()
    try:
        queue.add("bad")
        queue.add("good", delay=0.1)
        wait_for("the good key after the bad one", lambda: "good" in seen, timeout=5)
        assert queue.pending("bad") is not None  # retried later
    finally:
        queue.stop()
