"""Loading one model for serving: resolve its URI to a registered version, load it, prepare it.

An alias or ``latest`` is resolved to a concrete version first and that version is what gets
loaded, so the version a response names is the version that answered even if the alias moves
meanwhile; re-resolving on SIGHUP is how an alias move reaches a running server (which
``mlflow models serve`` never does).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from controller.serving.protocol import Scorer

__all__ = ["LoadedModel", "load", "resolve"]

log = logging.getLogger("mlgitops.serving")


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A model ready to score. ``name``/``version`` are the registry's, or the URI for others."""

    uri: str  # as configured (may hold an alias)
    resolved_uri: str  # what was loaded: models:/<name>/<version>, or the URI itself
    name: str
    version: str
    scorer: Scorer
    inline: bool  # fast enough to score on the event loop rather than in a thread
    load_seconds: float

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "uri": self.uri,
            "resolvedUri": self.resolved_uri,
            "fastPath": self.scorer.fast_check,
        }


def resolve(uri: str) -> tuple[str, str, str]:
    """``(resolved_uri, name, version)``; ``name`` and ``version`` are the URI off the registry."""
    from controller.registry import models  # the registry adapter owns MLflow

    return models.resolve(uri)


def load(
    uri: str,
    *,
    resolved: tuple[str, str, str] | None = None,
    inline: str = "auto",
    inline_below_ms: float = 10.0,
) -> LoadedModel:
    """Load and prepare ``uri`` (``resolved``: its :func:`resolve`, when already known).

    Raises whatever MLflow raises when the model cannot be found or loaded.
    """
    from controller.registry import models

    started = time.monotonic()
    resolved_uri, name, version = resolved or resolve(uri)
    model = models.load_pyfunc(resolved_uri)
    scorer = Scorer(model)
    # auto: on the event loop only when every format of the input example scored fast; a slow
    # model would stall the loop (and /ping) while it predicts. NaN (no example) is not fast.
    run_inline = scorer.slowest_ms < inline_below_ms if inline == "auto" else inline == "inline"
    elapsed = time.monotonic() - started
    loaded = LoadedModel(uri, resolved_uri, name, version, scorer, run_inline, elapsed)
    log.info(
        "loaded %s (%s version %s) in %.2fs; fast path %s; slowest example %.1f ms; predicting %s",
        uri,
        name,
        version,
        loaded.load_seconds,
        scorer.fast_check,
        scorer.slowest_ms,
        "on the event loop" if run_inline else "in a thread",
    )
    return loaded
