"""The embedded runtime: one ``mlgitops serve`` process per ModelDeployment on this machine.

``apply`` is level-based like the rest: given the desired state of an environment it starts the
servers that should run, tells running ones about a new champion, challenger or split (a config
file rewritten atomically, then SIGHUP: the server loads the new model before switching, so no
request is dropped), and stops the ones Git no longer asks for. ``supervise`` restarts a crashed
server with exponential backoff. What a server takes only at start (its inference table) is on its
command line, as in a serving pod's args: when Git changes it, the server is restarted. Ports are
stable: allocated once per environment and model and remembered under the state directory, so a
URL survives restarts and several environments can run side by side. Pid files let a restarted
runtime adopt the servers it left running instead of starting duplicates.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.api.loader import DesiredState
from controller.api.status import ServingStatus
from controller.local import processes
from controller.planning.children import model_uri, serving_args
from controller.state import StateDir, write_json

FIRST_PORT = 8600  # the first port allocated; $MLGITOPS_FIRST_PORT moves it
BACKOFF_MAX = 60.0


@dataclass
class _Server:
    name: str
    port: int
    config: dict[str, Any]
    args: tuple[str, ...] = ()  # start-time settings: the inference table and its data root
    proc: subprocess.Popen[bytes] | None = None
    pid: int | None = None  # adopted from a previous runtime
    failures: int = 0
    next_start: float = 0.0
    started: float = 0.0

    def alive(self) -> bool:
        if self.proc is not None:
            return self.proc.poll() is None
        if self.pid is not None:
            try:
                os.kill(self.pid, 0)
            except OSError:
                return False
            return True
        return False

    def signal(self, sig: int) -> None:
        pid = self.proc.pid if self.proc is not None else self.pid
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)


@dataclass
class LocalRuntime:
    env: str
    state_root: Path
    tracking_uri: str
    host: str = "127.0.0.1"
    servers: dict[str, _Server] = field(default_factory=dict)

    @property
    def dir(self) -> Path:
        path = self.state_root / "envs" / self.env / "serving"
        path.mkdir(parents=True, exist_ok=True)
        return path

    # -- ports -----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _ports(self) -> Iterator[dict[str, int]]:
        self.state_root.mkdir(parents=True, exist_ok=True)
        with open(self.state_root / "ports.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            path = self.state_root / "ports.json"
            ports: dict[str, int] = json.loads(path.read_text()) if path.exists() else {}
            yield ports
            write_json(path, ports)

    def port_for(self, name: str) -> int:
        key = f"{self.env}/{name}"
        with self._ports() as ports:
            if key in ports:
                return ports[key]
            taken = set(ports.values())
            port = first_port()
            while port in taken or not _free(self.host, port):
                port += 1
            ports[key] = port
            return port

    # -- desired state -> processes --------------------------------------------------------------

    def desired_configs(self, desired: DesiredState) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for d in desired.deployments:
            spec = d.doc.spec
            if not spec.serving.enabled or spec.champion is None or spec.serving.replicas == 0:
                continue
            challenger = spec.challenger.version if spec.challenger else None
            out[d.doc.metadata.name] = {
                "champion": model_uri(d.registered_model, spec.champion.version),
                "challenger": model_uri(d.registered_model, challenger) if challenger else None,
                "challengerTraffic": spec.serving.traffic.challenger if challenger else 0,
            }
        return out

    def desired_args(self, desired: DesiredState) -> dict[str, tuple[str, ...]]:
        """Each server's start-time arguments: its inference table (a name resolved under the
        environment's data root, as the batch job's tables are)."""
        root = desired.environment.spec.data_root or str(StateDir(self.state_root).tables)
        out: dict[str, tuple[str, ...]] = {}
        for d in desired.deployments:
            args = serving_args(d.doc.spec)
            out[d.doc.metadata.name] = (*args, "--data-root", root) if args else ()
        return out

    def apply(self, desired: DesiredState) -> dict[str, ServingStatus]:
        """Start, update and stop servers to match ``desired``; report each one's serving status."""
        configs = self.desired_configs(desired)
        start_args = self.desired_args(desired)
        for name in sorted(set(self.servers) | self._adoptable()):
            if name not in configs:
                self._stop(name)
        for name, config in configs.items():
            args = start_args.get(name, ())
            server = self.servers.get(name) or self._adopt(name)
            if server is not None and server.args != args:
                self._stop(name)  # a start-time setting changed: a new process takes it
                server = None
            if server is None:
                server = _Server(name, self.port_for(name), config, args)
                self.servers[name] = server
                self._write_config(server)
                self._start(server)
            elif server.config != config or not self._config_path(name).exists():
                server.config = config
                self._write_config(server)
                # The server also notices the file within a second; SIGHUP makes it immediate,
                # but only once it is up (before its handler exists, SIGHUP would end it).
                if _ready(f"http://{self.host}:{server.port}/health"):
                    server.signal(signal.SIGHUP)
        self.supervise()
        return {name: self.status(name) for name in configs}

    def supervise(self) -> None:
        """Restart servers that died, with exponential backoff."""
        now = time.monotonic()
        for server in self.servers.values():
            if server.alive():
                if server.failures and now - server.started > BACKOFF_MAX:
                    server.failures = 0
                continue
            if now < server.next_start:
                continue
            server.failures += 1
            server.next_start = now + min(BACKOFF_MAX, 2.0 ** (server.failures - 1))
            self._start(server)

    def status(self, name: str) -> ServingStatus:
        """What the server serves now: rolled out only once it answers with the models and split
        of its configuration (after a swap, not when the new configuration is merely written)."""
        server = self.servers[name]
        served = _served(f"http://{self.host}:{server.port}/version") if server.alive() else None
        ready = served is not None and bool(served.get("ready"))
        config = server.config
        updated = ready and _serves(served or {}, config)
        return ServingStatus(
            url=f"http://{self.host}:{server.port}",
            replicas=1,
            ready_replicas=1 if ready else 0,
            updated_replicas=1 if updated else 0,
            champion=_version(config["champion"]),
            challenger=_version(config["challenger"]) if config.get("challenger") else None,
            challenger_traffic=int(config.get("challengerTraffic", 0)),
            rolled_out=updated,
        )

    def stop_all(self, *, timeout: float = 10.0) -> None:
        for name in list(self.servers):
            self._stop(name, timeout=timeout)

    # -- internals -------------------------------------------------------------------------------

    def _config_path(self, name: str) -> Path:
        return self.dir / f"{name}.json"

    def _write_config(self, server: _Server) -> None:
        write_json(self._config_path(server.name), server.config)

    def _start(self, server: _Server) -> None:
        server.proc = processes.start(
            [
                "serve",
                "--config",
                str(self._config_path(server.name)),
                "--host",
                self.host,
                "--port",
                str(server.port),
                *server.args,
            ],
            log=self.dir / f"{server.name}.log",
            env={
                "MLFLOW_TRACKING_URI": self.tracking_uri,
                "MLFLOW_REGISTRY_URI": self.tracking_uri,
            },
        )
        server.pid = None
        server.started = time.monotonic()
        (self.dir / f"{server.name}.pid").write_text(str(server.proc.pid))

    def _adoptable(self) -> set[str]:
        return {p.stem for p in self.dir.glob("*.pid")}

    def _adopt(self, name: str) -> _Server | None:
        """A server a previous runtime left running (pid file, same command line)."""
        pid_file, config_file = self.dir / f"{name}.pid", self._config_path(name)
        if not pid_file.exists() or not config_file.exists():
            return None
        try:
            pid = int(pid_file.read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
        except (ValueError, OSError):
            return None
        if str(config_file).encode() not in cmdline or b"--port" not in cmdline:
            return None
        args = tuple(a.decode() for a in cmdline[cmdline.index(b"--port") + 2 :])
        port = self.port_for(name)
        server = _Server(name, port, json.loads(config_file.read_text()), args, pid=pid)
        server.started = time.monotonic()
        self.servers[name] = server
        return server

    def _stop(self, name: str, *, timeout: float = 10.0) -> None:
        server = self.servers.pop(name, None) or self._adopt(name)
        if server is not None:
            self.servers.pop(name, None)
            server.signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while server.alive() and time.monotonic() < deadline:
                if server.proc is not None:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        server.proc.wait(timeout=0.1)
                else:
                    time.sleep(0.1)
            if server.alive():
                server.signal(signal.SIGKILL)
                if server.proc is not None:
                    server.proc.wait()
        for suffix in (".pid", ".json"):
            with contextlib.suppress(FileNotFoundError):
                (self.dir / f"{name}{suffix}").unlink()


def first_port() -> int:
    """Where allocation starts: ``$MLGITOPS_FIRST_PORT``, else 8600. Ports are remembered per state
    directory only, so runtimes on separate state directories that start servers at the same
    moment need ranges of their own (the test suite's parallel workers, say)."""
    raw = os.environ.get("MLGITOPS_FIRST_PORT")
    return int(raw) if raw else FIRST_PORT


def _free(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=0.5) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _served(url: str) -> dict[str, Any] | None:
    """The server's ``/version`` document (what it serves now), or None while it is down."""
    try:
        with urllib.request.urlopen(url, timeout=0.5) as response:
            data = json.loads(response.read())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _serves(served: dict[str, Any], config: dict[str, Any]) -> bool:
    """True when the models in service are those ``config`` names, with its split."""
    models = served.get("models") or {}
    champion = models.get("champion") or {}
    challenger = models.get("challenger") or {}
    wanted_traffic = int(config.get("challengerTraffic", 0)) if config.get("challenger") else 0
    return (
        champion.get("uri") == config["champion"]
        and challenger.get("uri") == config.get("challenger")
        and int(models.get("challengerTraffic") or 0) == wanted_traffic
    )


def _version(uri: str | None) -> str | None:
    return uri.rsplit("/", 1)[-1] if uri else None
