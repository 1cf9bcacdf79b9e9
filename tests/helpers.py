"""Test helpers: real Git repositories and real MLflow registries, never mocks.

``ConfigRepo`` drives the ``git`` command line in a temporary directory, so commits, reverts and
pushes are the real thing. ``RegistryView`` reads an MLflow store with MLflow's own client, so
assertions are about the registry's resulting state.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parents[1]
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test Author",
    "GIT_AUTHOR_EMAIL": "author@example.com",
    "GIT_COMMITTER_NAME": "Test Author",
    "GIT_COMMITTER_EMAIL": "author@example.com",
}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# What a poll may meet while the thing it waits for is not there yet: a server not listening
# yet or a file not written yet (OSError, which covers urllib's errors), a command that fails
# until then. Anything else a check raises (KeyError, TypeError, ...) is a broken check and
# fails the wait at once; a check reading a document that may lack a key yet uses ``.get``.
NOT_YET: tuple[type[BaseException], ...] = (OSError, subprocess.CalledProcessError)


def wait_for(
    what: str,
    check: Callable[[], Any],
    timeout: float = 60,
    *,
    interval: float = 0.3,
    retry: tuple[type[BaseException], ...] = (),
    on_timeout: Callable[[], str] | None = None,
) -> Any:
    """Poll ``check`` until it returns something truthy, and return that.

    ``check`` raising one of ``NOT_YET`` or of ``retry`` (a client library's own connection
    errors) counts as "not yet"; any other exception propagates at once. It runs at least once,
    and once more at the deadline. On timeout, an AssertionError names ``what``, the last result
    or exception, and what ``on_timeout()`` returns (a server's log, say).
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = check()
        except (*NOT_YET, *retry) as exc:
            last = exc
        else:
            if last:
                return last
        if time.monotonic() >= deadline:
            break
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
    more = f"\n{on_timeout()}" if on_timeout is not None else ""
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}; last: {last!r}{more}")


def reorder_keys(rng: random.Random, data: Any) -> Any:
    """``data`` with the keys of every mapping in it inserted in a random order (lists kept)."""
    if isinstance(data, dict):
        items = [(k, reorder_keys(rng, v)) for k, v in data.items()]
        rng.shuffle(items)
        return dict(items)
    if isinstance(data, list):
        return [reorder_keys(rng, v) for v in data]
    return data


def python_output(code: str, *, hash_seed: int) -> str:
    """The stdout of ``python -c code`` in a fresh interpreter with ``PYTHONHASHSEED=hash_seed``,
    run from the project root (so ``tests`` imports): str hashes, and with them the iteration
    order of sets of strings, differ from this process's."""
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=PROJECT,
        env={**os.environ, "PYTHONHASHSEED": str(hash_seed)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def run_bench(script: str, *args: str, timeout: float) -> str:
    """The output of ``python bench/<script> args`` from the project root, which must exit 0."""
    done = subprocess.run(
        [sys.executable, str(PROJECT / "bench" / script), *args],
        cwd=PROJECT,
        env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    return done.stdout


def bench_figure(output: str, name: str) -> float:
    """The value of the line ``name: value  (baseline: ..., ratio: ...)`` of a benchmark."""
    pattern = rf"^{re.escape(name)}: ([\d.]+)(?: [A-Za-z]+)?  \(baseline: "  # a unit may follow
    found = re.findall(pattern, output, flags=re.MULTILINE)
    assert len(found) == 1, f"expected one {name!r} line in:\n{output}"
    return float(found[0])


def assert_pass(output: str, verdict: str) -> None:
    """A benchmark printed ``PASS <verdict>`` (a regular expression, to the end of the line)."""
    assert re.search(rf"^PASS {verdict}$", output, flags=re.MULTILINE), (verdict, output)


def git(cwd: Path, *args: str) -> str:
    import os

    env = {**os.environ, **GIT_ENV}
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    )
    return done.stdout.strip()


class ConfigRepo:
    """A config repository holding a copy of the project's example environments."""

    def __init__(self, path: Path, *, envs: tuple[str, ...] = ("prod",)) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        git(path, "init", "-q", "-b", "main")
        for env in envs:
            shutil.copytree(PROJECT / "environments" / env, path / "environments" / env)
        self.commit("Initial environments")

    def file(self, rel: str) -> Path:
        return self.path / rel

    def write(self, rel: str, text: str) -> None:
        target = self.path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)

    def read(self, rel: str) -> str:
        return (self.path / rel).read_text()

    def remove(self, rel: str) -> None:
        git(self.path, "rm", "-q", "-r", rel)

    def commit(self, message: str) -> str:
        git(self.path, "add", "-A")
        git(self.path, "commit", "-q", "--allow-empty", "-m", message)
        return self.head()

    def head(self) -> str:
        return git(self.path, "rev-parse", "HEAD")

    def revert(self, sha: str) -> str:
        git(self.path, "revert", "--no-edit", sha)
        return self.head()

    def pin(self, rel: str, alias: str, version: str | None) -> None:
        """Set (or with None remove) ``spec.<alias>.version`` in a ModelDeployment file."""
        text = self.read(rel)
        block = re.compile(rf"(?m)^  {alias}:\n    version: .*\n")
        if version is None:
            text = block.sub("", text)
            text = re.sub(r"(?m)^    traffic: \{challenger: \d+\}\n", "", text)
        elif block.search(text):
            text = block.sub(f'  {alias}:\n    version: "{version}"\n', text)
        else:
            text = text.replace("spec:\n", f'spec:\n  {alias}:\n    version: "{version}"\n', 1)
        self.write(rel, text)


class RegistryView:
    """Read-only questions about an MLflow registry, answered by MLflow's client."""

    def __init__(self, uri: str) -> None:
        from mlflow import MlflowClient  # here: `python -c` importing the helpers stays quick

        self.uri = uri
        self.client = MlflowClient(tracking_uri=uri, registry_uri=uri)

    def aliases(self, name: str) -> dict[str, str]:
        return {k: str(v) for k, v in self.client.get_registered_model(name).aliases.items()}

    def tags(self, name: str, version: str) -> dict[str, str]:
        return dict(self.client.get_model_version(name, version).tags)

    def history_tags(self, name: str, version: str) -> list[dict[str, Any]]:
        import json

        return [
            json.loads(v)
            for k, v in sorted(self.tags(name, version).items())
            if k.startswith("mlgitops.history.")
        ]

    def snapshot(self) -> dict[str, Any]:
        """Every model's aliases and every version's tags: equal snapshots mean no change."""
        out: dict[str, Any] = {}
        for model in self.client.search_registered_models(max_results=1000):
            versions = self.client.search_model_versions(
                filter_string=f"name = '{model.name}'", max_results=1000
            )
            out[model.name] = {
                "aliases": {k: str(v) for k, v in model.aliases.items()},
                "versions": {str(v.version): dict(v.tags) for v in versions},
            }
        return out


class MlflowServer:
    """A real ``mlflow server`` process on a SQLite store."""

    def __init__(
        self, db: Path, artifacts: Path, port: int, *, workers: int = 1, args: Sequence[str] = ()
    ) -> None:
        self.db, self.artifacts, self.port, self.workers = db, artifacts, port, workers
        self.args = list(args)  # more `mlflow server` options, e.g. --gunicorn-opts
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        mlflow = Path(sys.executable).with_name("mlflow")
        self.proc = proc = subprocess.Popen(
            [
                str(mlflow),
                "server",
                "--backend-store-uri",
                f"sqlite:///{self.db}",
                "--artifacts-destination",
                str(self.artifacts),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                str(self.workers),
                *self.args,
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

        def healthy() -> bool:
            assert proc.poll() is None, "mlflow server exited"
            with urllib.request.urlopen(f"{self.url}/health", timeout=1) as r:
                return bool(r.status == 200)

        wait_for(f"mlflow server {self.url}/health", healthy, 60)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            self.proc.wait(timeout=30)
        self.proc = None


class OperatorProcess:
    """The real ``mlgitops operator`` in a session of its own, against ``kubeconfig``.

    Its output goes to ``log``; ``get``/``post`` reach its metrics, health and webhook port.
    The operator tests and ``bench/operator_scale.py`` both run it through this.
    """

    def __init__(
        self, kubeconfig: Path, state: Path, log: Path, *args: str, env: dict[str, str]
    ) -> None:
        self.port = free_port()
        self.log = log
        self._out = log.open("w")
        self.proc = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("mlgitops")),
                "operator",
                "--http-port",
                str(self.port),
                "--state-dir",
                str(state),
                *args,
            ],
            env={
                **os.environ,
                "KUBECONFIG": str(kubeconfig),
                "MLGITOPS_HTTP_HOST": "127.0.0.1",
                **env,
            },
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def get(self, path: str) -> tuple[int, str]:
        """(status, body); (0, "") while nothing listens."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return int(r.status), r.read().decode()
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read().decode()
        except OSError:
            return 0, ""

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> int:
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", data=body, headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return int(r.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)

    def healthy(self) -> bool:
        return self.get("/healthz")[0] == 200

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> float:
        """SIGTERM, then SIGKILL after 20 s. Returns the seconds it took."""
        start = time.monotonic()
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._out.close()
        return time.monotonic() - start


@contextlib.contextmanager
def mlgitops_run(
    repo: Path, state_dir: Path, log: Path, *, env: Mapping[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """``mlgitops run --env prod --interval 1`` as a process writing ``log``; SIGTERM at the end
    (its own session: what it started stays out of the test's process group)."""
    argv = [str(Path(sys.executable).with_name("mlgitops")), "run", "--env", "prod"]
    argv += ["--repo", str(repo), "--state-dir", str(state_dir), "--interval", "1"]
    with log.open("w") as out:
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
        try:
            yield proc
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
