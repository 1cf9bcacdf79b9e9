"""The Notifier: queue an event in microseconds, deliver it on a thread, never fail a pass.

A pass reports what happened (a promotion committed, a validation failed) and goes on; whether a
chat server is slow, down or gone must not change what the controller does or when. So
``notify`` only checks the key, records it and puts a prepared request on a queue; each endpoint
has its own worker thread (one hanging receiver delays nobody else) that posts with a timeout and
retries a timeout, a refused connection, a 5xx, 408 or 429 with exponential backoff, a bounded
number of times. Every outcome is counted and a failure logged in one line that names the
endpoint, never its URL (a Slack webhook URL is a credential) nor a token.

The controller is level-based and will report the same fact on every pass while it holds (a
stalled sync, an approval awaited); the key it passes names the fact (``<model>/v7``, a
revision), and the ledger in the state directory makes each ``(event, key)`` go out once, across
restarts too.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import requests

from controller.api.documents import (
    NOTIFICATION_EVENTS,
    NOTIFY_SECRET,
    Environment,
    NotificationEndpoint,
)
from controller.errors import one_line
from controller.notify import bodies
from controller.notify.ledger import Ledger
from controller.redact import redact
from controller.state import StateDir

__all__ = ["PASS_EVENTS", "Endpoint", "Notifier", "Result", "resolve_endpoints"]

log = logging.getLogger("mlgitops.notify")

Result = Literal["delivered", "failed", "dropped"]
_RETRIED_STATUS = frozenset({408, 425, 429})
# The Events a pass reports (training, validation, promotion) that notifications may subscribe
# to; the others (ValidationStarted, TrainingStarted, ...) are only logged or posted.
PASS_EVENTS = frozenset(
    {
        "TrainingFailed",
        "ValidationFailed",
        "ChallengerProposed",
        "PromotionCommitted",
        "AwaitingApproval",
    }
)
# DriftDetected, QualityBreached and RetrainingDue come from the monitor's alerts
# (``controller.monitoring``), keyed by window: the training pass's RetrainingDue Event is not
# sent again.


@dataclass(frozen=True)
class Endpoint:
    """An endpoint with its secrets resolved; ``repr`` shows neither the URL nor the token."""

    name: str
    url: str = field(repr=False)
    format: Literal["json", "slack"]
    events: frozenset[str]
    token: str | None = field(default=None, repr=False)


def resolve_endpoints(
    specs: Sequence[NotificationEndpoint], environ: Mapping[str, str]
) -> tuple[list[Endpoint], list[str]]:
    """The endpoints ``specs`` describe, their URL and token read from ``environ``.

    An endpoint whose variable is unset or empty (or whose URL from a variable is not http(s)) is
    left out, with a problem that names it and the variable, never the value.
    """
    endpoints: list[Endpoint] = []
    problems: list[str] = []
    for index, spec in enumerate(specs):
        where = f"spec.notifications.{index} ({spec.name})"
        missing = [
            (what, var)
            for what, var in (("urlEnv", spec.url_env), ("tokenEnv", spec.token_env))
            if var is not None and not environ.get(var)
        ]
        if missing:
            problems.extend(
                f"{where}: {what} {var} is not set in the controller's environment (on "
                f"Kubernetes: key {var.removeprefix('MLGITOPS_NOTIFY_')} of the Secret "
                f"{NOTIFY_SECRET}); the endpoint is off"
                for what, var in missing
            )
            continue
        url = spec.url if spec.url is not None else environ[str(spec.url_env)]
        if not url.startswith(("http://", "https://")):
            problems.append(
                f"{where}: urlEnv {spec.url_env} holds no http:// or https:// URL; the endpoint "
                "is off"
            )
            continue
        token = environ[spec.token_env] if spec.token_env is not None else None
        endpoints.append(Endpoint(spec.name, url, spec.format, frozenset(spec.events), token))
    return endpoints, problems


@dataclass(frozen=True)
class _Delivery:
    event: str
    key: str
    body: bytes
    headers: Mapping[str, str]


class _Worker:
    """One endpoint's queue and thread."""

    def __init__(self, endpoint: Endpoint, owner: Notifier) -> None:
        self.endpoint = endpoint
        self._owner = owner
        self._queue: list[_Delivery] = []
        self._cond = threading.Condition()
        self._pending = 0  # queued or in flight
        self._retired = False
        self.abort = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"mlgitops-notify-{endpoint.name}", daemon=True
        )
        self._thread.start()

    def submit(self, delivery: _Delivery) -> bool:
        with self._cond:
            if self._retired or self._pending >= self._owner.queue_size:
                return False
            self._queue.append(delivery)
            self._pending += 1
            self._cond.notify_all()
            return True

    def retire(self) -> None:
        """Take nothing new; deliver what is queued, then end."""
        with self._cond:
            self._retired = True
            self._cond.notify_all()

    def wait_idle(self, deadline: float) -> bool:
        with self._cond:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def drop_queued(self) -> list[_Delivery]:
        with self._cond:
            dropped, self._queue = self._queue, []
            self._pending -= len(dropped)
            self._cond.notify_all()
            return dropped

    def join(self, deadline: float) -> None:
        self._thread.join(max(0.0, deadline - time.monotonic()))

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        session = requests.Session()
        try:
            while True:
                with self._cond:
                    while not self._queue and not self._retired:
                        self._cond.wait()
                    if not self._queue:
                        return
                    delivery = self._queue.pop(0)
                result: Result = "dropped"
                try:
                    if not self.abort.is_set():
                        result = self._deliver(session, delivery)
                except Exception as exc:  # a bug here must not kill the thread silently
                    log.error(
                        "notification %s to %s: %s",
                        delivery.event,
                        self.endpoint.name,
                        redact(one_line(exc)),
                    )
                    result = "failed"
                finally:
                    self._owner._record(self.endpoint.name, delivery.event, result)
                    with self._cond:
                        self._pending -= 1
                        self._cond.notify_all()
        finally:
            session.close()

    def _deliver(self, session: requests.Session, delivery: _Delivery) -> Result:
        owner = self._owner
        reason = ""
        for attempt in range(1, owner.attempts + 1):
            retry_after = 0.0
            try:
                response = session.post(
                    self.endpoint.url,
                    data=delivery.body,
                    headers=delivery.headers,
                    timeout=owner.timeout,
                    allow_redirects=False,  # a redirect must not carry a signed body elsewhere
                    stream=True,  # the answer's body is not read: a receiver cannot flood us
                )
            except requests.Timeout:
                reason = f"no answer within {owner.timeout:g} s"
            except requests.ConnectionError:
                reason = "connection failed"
            except requests.RequestException as exc:
                reason = type(exc).__name__
            else:
                status = response.status_code
                header = response.headers.get("Retry-After", "")
                response.close()
                if 200 <= status < 300:
                    if attempt > 1:
                        log.info(
                            "notification %s %r to %s delivered on attempt %d",
                            delivery.event,
                            redact(delivery.key),
                            self.endpoint.name,
                            attempt,
                        )
                    return "delivered"
                reason = f"HTTP {status}"
                if status not in _RETRIED_STATUS and status < 500:
                    break  # 3xx, 4xx: asking again gets the same answer
                retry_after = float(header) if header.strip().isdigit() else 0.0
            if attempt == owner.attempts:
                break
            delay = min(owner.max_backoff, owner.backoff * 2 ** (attempt - 1))
            delay = max(delay * random.uniform(0.75, 1.0), min(retry_after, owner.max_backoff))
            if self.abort.wait(delay):
                return "dropped"
        log.warning(
            "notification %s %r to %s failed after %d attempt(s): %s",
            delivery.event,
            redact(delivery.key),
            self.endpoint.name,
            attempt,
            reason,
        )
        return "failed"


class Notifier:
    """Delivers one environment's notifications to the endpoints its document lists.

    ``state_dir`` keeps the keys already sent (``<state>/envs/<environment>/notifications/``).
    ``attempts`` per endpoint and event, waiting ``backoff`` seconds, doubled each time up to
    ``max_backoff``, between them; ``timeout`` per request (connect and each read). An endpoint
    holds at most ``queue_size`` undelivered events; more are dropped and counted.
    ``on_result(endpoint, event, result)`` is called after each delivery ends (a metric), on the
    worker's thread. Nothing here raises into the caller.
    """

    def __init__(
        self,
        *,
        environment: str,
        state_dir: StateDir | Path,
        endpoints: Sequence[Endpoint] = (),
        attempts: int = 5,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        timeout: float = 10.0,
        queue_size: int = 1000,
        max_keys: int = 10_000,
        on_result: Callable[[str, str, Result], None] | None = None,
    ) -> None:
        if attempts < 1 or backoff < 0 or max_backoff < 0 or timeout <= 0 or queue_size < 1:
            raise ValueError("attempts, queue_size >= 1; backoff, max_backoff >= 0; timeout > 0")
        self.environment = environment
        self.attempts = attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.timeout = timeout
        self.queue_size = queue_size
        self._on_result = on_result
        state = state_dir if isinstance(state_dir, StateDir) else StateDir(Path(state_dir))
        path = state.env_dir(environment) / "notifications" / "sent.jsonl"
        self._lock = threading.Lock()
        self._ledger = Ledger(path, limit=max_keys)
        self._workers: dict[str, _Worker] = {}
        self._retired: list[_Worker] = []
        self._counts: Counter[tuple[str, str, Result]] = Counter()
        self._problems: tuple[str, ...] = ()
        self._closed = False
        self.set_endpoints(endpoints)

    @classmethod
    def for_environment(
        cls,
        environment: Environment,
        *,
        state_dir: StateDir | Path,
        environ: Mapping[str, str] | None = None,
        **options: Any,
    ) -> Notifier:
        """A Notifier for ``environment``'s ``spec.notifications``, secrets from ``environ``
        (default ``os.environ``); see :meth:`configure` for endpoints it cannot use."""
        notifier = cls(environment=environment.metadata.name, state_dir=state_dir, **options)
        notifier.configure(environment.spec.notifications, environ=environ)
        return notifier

    # --- configuration ----------------------------------------------------------------------

    def configure(
        self, specs: Sequence[NotificationEndpoint], *, environ: Mapping[str, str] | None = None
    ) -> tuple[str, ...]:
        """Use the endpoints ``specs`` describe from now on; cheap when nothing changed, so a
        pass may call it with every revision it loads.

        An endpoint whose variable is unset is off, and named in the problems returned (also in
        :attr:`problems`, and logged once when they change); the others work.
        """
        endpoints, problems = resolve_endpoints(specs, os.environ if environ is None else environ)
        self.set_endpoints(endpoints)
        if tuple(problems) != self._problems:
            for problem in problems:
                log.warning("notifications of %s: %s", self.environment, problem)
        self._problems = tuple(problems)
        return self._problems

    def set_endpoints(self, endpoints: Sequence[Endpoint]) -> None:
        """Replace the endpoints; one that changed (or went) delivers what it queued first."""
        with self._lock:
            if self._closed:
                return
            wanted = {e.name: e for e in endpoints}
            for name, worker in list(self._workers.items()):
                if wanted.get(name) != worker.endpoint:
                    worker.retire()
                    self._retired.append(worker)
                    del self._workers[name]
            for name, endpoint in wanted.items():
                if name not in self._workers:
                    self._workers[name] = _Worker(endpoint, self)
            self._retired = [w for w in self._retired if w.alive]

    @property
    def problems(self) -> tuple[str, ...]:
        """Endpoints the last :meth:`configure` had to leave off, and why."""
        return self._problems

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        with self._lock:
            return tuple(w.endpoint for w in self._workers.values())

    # --- notifying --------------------------------------------------------------------------

    def notify(
        self,
        event: str,
        key: str,
        *,
        model: str | None = None,
        message: str,
        fields: Mapping[str, Any] | None = None,
    ) -> None:
        """Queue ``event`` for every endpoint that lists it, unless ``(event, key)`` was queued
        before (by this process or an earlier one on the same state directory). Returns at once;
        never raises."""
        try:
            self._notify(event, key, model, message, fields or {})
        except Exception as exc:  # a notification must never fail the pass that sends it
            log.error("notification %s: %s", event, redact(one_line(exc)))

    def notify_event(self, reason: str, *, model: str | None, message: str) -> None:
        """An Event a pass reported about ModelDeployment ``model``, if it is one of
        ``PASS_EVENTS``. Its key is made of the model and the message, which name the fact (the
        version, run or commit), so both runtimes report each fact once however many passes
        repeat it."""
        if reason in PASS_EVENTS:
            key = hashlib.sha256(f"{model}|{message}".encode()).hexdigest()[:20]
            self.notify(reason, key, model=model, message=message)

    def _notify(
        self, event: str, key: str, model: str | None, message: str, fields: Mapping[str, Any]
    ) -> None:
        if event not in NOTIFICATION_EVENTS:
            log.error("notification %r: not an event (one of %s)", event, NOTIFICATION_EVENTS)
            return
        now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        n = bodies.Notification(self.environment, event, key, model, message, fields, now)
        dropped: list[str] = []
        with self._lock:
            if self._closed or (event, key) in self._ledger:
                return
            targets = [w for w in self._workers.values() if event in w.endpoint.events]
            if not targets:
                return  # nobody listens: not recorded, so an endpoint added later still hears
            self._ledger.add(event, key, now)
            json_body: bytes | None = None
            for worker in targets:
                endpoint = worker.endpoint
                if endpoint.format == "slack":
                    delivery = _Delivery(event, key, bodies.slack_body(n), bodies.slack_headers())
                else:
                    json_body = json_body or bodies.json_body(n)
                    headers = bodies.json_headers(n, json_body, endpoint.token)
                    delivery = _Delivery(event, key, json_body, headers)
                if not worker.submit(delivery):
                    dropped.append(endpoint.name)
        for name in dropped:
            log.warning(
                "notification %s %r to %s dropped: %d undelivered already",
                event,
                redact(key),
                name,
                self.queue_size,
            )
            self._record(name, event, "dropped")

    def _record(self, endpoint: str, event: str, result: Result) -> None:
        with self._lock:
            self._counts[(endpoint, event, result)] += 1
        if self._on_result is not None:
            try:
                self._on_result(endpoint, event, result)
            except Exception as exc:
                log.error("notifications: on_result: %s", redact(one_line(exc)))

    def counts(self) -> dict[tuple[str, str, Result], int]:
        """Deliveries so far by ``(endpoint, event, result)``."""
        with self._lock:
            return dict(self._counts)

    # --- stopping ---------------------------------------------------------------------------

    def flush(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for every queued event to be delivered or given up."""
        deadline = time.monotonic() + timeout
        with self._lock:
            workers = [*self._workers.values(), *self._retired]
        return all(w.wait_idle(deadline) for w in workers)

    def close(self, timeout: float = 10.0) -> bool:
        """Take no more events, deliver what is queued for up to ``timeout`` seconds, then drop
        the rest (counted) and return; True when nothing was dropped. Idempotent."""
        deadline = time.monotonic() + timeout
        with self._lock:
            self._closed = True
            workers = [*self._workers.values(), *self._retired]
            self._workers.clear()
            self._retired.clear()
        for worker in workers:
            worker.retire()
        flushed = all(w.wait_idle(deadline) for w in workers)
        for worker in workers:
            worker.abort.set()  # an attempt in flight ends at its timeout, on a daemon thread
            for delivery in worker.drop_queued():
                self._record(worker.endpoint.name, delivery.event, "dropped")
        if not flushed:
            log.warning(
                "notifications of %s: closed with deliveries outstanding after %g s",
                self.environment,
                timeout,
            )
        for worker in workers:
            worker.join(deadline)
        return flushed

    def __enter__(self) -> Notifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
