"""Notifications: tell people and systems what the controller did, over HTTP, without waiting.

The engine and the runtimes decide when something is worth telling (a validation failed, a
promotion was committed, a sync stalled); this package only delivers: to the endpoints the
Environment's ``spec.notifications`` lists, as Slack messages or signed JSON, on background
threads, at most once per event key, never blocking or failing the pass that reports it. It sits
with the adapters (it talks to the outside over HTTP and keeps its keys in the state directory),
so the engine and both runtimes can use it and the pure layers cannot.

Build one per environment with ``Notifier.for_environment(env_doc, state_dir=...)``, call
``notify(event, key, model=..., message=..., fields=...)``, and ``close(timeout)`` on the way out.
"""

from controller.notify.bodies import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    delivery_id,
    sign,
    verify,
)
from controller.notify.notifier import PASS_EVENTS, Endpoint, Notifier, Result, resolve_endpoints

__all__ = [
    "DELIVERY_HEADER",
    "EVENT_HEADER",
    "PASS_EVENTS",
    "SIGNATURE_HEADER",
    "Endpoint",
    "Notifier",
    "Result",
    "delivery_id",
    "resolve_endpoints",
    "sign",
    "verify",
]
