"""What the benchmarks share: how figures and verdicts are printed, the work directory, the
registry and Environment they set up, a free port.

The benchmarks run as scripts (``python bench/sync_scale.py``), which puts this directory first on
``sys.path``: they import this module as ``common``. It imports nothing heavy at the top, since
``bench/serving.py`` starts its load generator as a fresh process of itself.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

# The example models (examples/) run from a checkout, not from the installed package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ENV = "bench"
CATALOG = "bench"
NS = "ml-bench"
GROUP_VERSION = "mlgitops.io/v1alpha1"


# --- printing -------------------------------------------------------------------------------------


def _ratio(value: float, baseline: float) -> str:
    return "n/a" if baseline == 0 else f"{value / baseline:.2f}"


def figure(name: str, value: float, baseline: float, unit: str = "", *, digits: int = 6) -> None:
    """One line: ``name: value  (baseline: value, ratio: x.xx)``.

    Seconds (``unit="s"``) with 3 decimals, another unit with 1, a bare number with ``digits``
    significant digits (6 is the ``:g`` default).
    """
    if unit == "s":
        shown, base = f"{value:.3f} s", f"{baseline:.3f} s"
    elif unit:
        shown, base = f"{value:.1f} {unit}", f"{baseline:.1f} {unit}"
    else:
        shown, base = f"{value:.{digits}g}", f"{baseline:.{digits}g}"
    print(f"{name}: {shown}  (baseline: {base}, ratio: {_ratio(value, baseline)})", flush=True)


def verdict(ok: bool, text: str) -> bool:
    """A ``PASS text`` or ``FAIL text`` line; returns ``ok``."""
    print(f"{'PASS' if ok else 'FAIL'} {text}", flush=True)
    return ok


# --- setup ----------------------------------------------------------------------------------------


@contextlib.contextmanager
def working_directory(
    arg: Path | None, parser: argparse.ArgumentParser, *, prefix: str
) -> Iterator[Path]:
    """``--workdir``: that directory, which must be empty and is kept; without it, a temporary
    directory removed at the end."""
    if arg is not None:
        path = arg.resolve()
        path.mkdir(parents=True, exist_ok=True)
        if any(path.iterdir()):
            parser.error(f"--workdir {path} is not empty")
        yield path
        return
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def model_name(i: int) -> str:
    """Model ``i`` within the catalog: ``s<i % 10>.m<i>``, ten schemas."""
    return f"s{i % 10}.m{i}"


def make_registry(tracking_uri: str, *, models: int, versions: int, source: str) -> None:
    """Registered models ``bench.s<i % 10>.m<i>``, each with ``versions`` versions tagged PASSED.

    Created with ``MlflowClient`` straight on the store; a version's source is
    ``<source>/<model>/<version>``, which nothing reads (there are no runs and no artifacts).
    """
    from mlflow import MlflowClient

    from controller.planning import VALIDATION_TAG

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    for i in range(models):
        name = f"{CATALOG}.{model_name(i)}"
        client.create_registered_model(name)
        for v in range(1, versions + 1):
            client.create_model_version(
                name, source=f"{source}/{name}/{v}", tags={VALIDATION_TAG: "PASSED"}
            )


def environment_yaml(tracking_uri: str) -> str:
    """The Environment ``bench``: its own catalog and namespace, the registry at ``tracking_uri``."""
    return f"""\
# Benchmark environment: its own catalog, the registry the benchmark set up.
apiVersion: {GROUP_VERSION}
kind: Environment
metadata:
  name: {ENV}
spec:
  catalog: {CATALOG}
  namespace: {NS}
  registry:
    trackingUri: {json.dumps(tracking_uri)}
  readCatalogs: []
  writeBack:
    branch: main
    author: "mlgitops <mlgitops@localhost>"
"""
