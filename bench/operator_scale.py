"""How the operator copes with N ModelDeployments created at once: time, memory, API writes.

Flux's kustomize-controller publishes 1,000 Kustomizations reconciled in 4 min 16 s at 175 MiB;
our targets for the operator are all N=1000 Ready within 60 s, a peak RSS of 250 MiB, and a pass
over an unchanged object that writes nothing. This benchmark runs the real ``mlgitops operator``
subprocess, with a real ``mlflow server`` on a SQLite store holding N models with 2 PASSED
versions each as its registry, against one of two API servers:

- the Kubernetes API emulator (``tests/k8s``, served from this process), the default. It keeps
  every request it served, so the operator's requests are counted exactly, one by one;
- a real API server (``--kubeconfig PATH``, admin credentials), in a namespace of its own
  (``ml-bench``, which must not exist yet and is deleted at the end). Its requests are counted
  from the server's own ``/metrics``.

Then it:

1. creates N ModelDeployments as fast as the API server takes them (concurrent POSTs; champion 1,
   challenger 2 with 10% traffic on every other one, serving, batch inference and monitoring on
   all, so each has 4 children: a Deployment, a Service and 2 CronJobs), and waits until every
   one has shown the condition Ready=True. The operator says Ready=True only once the serving
   Deployment has rolled out (kstatus: until then Ready is Unknown, reason Progressing), which it
   learns from the Deployment's status, written by the deployment controller, and notices through
   its watch on Deployments.

   - The emulator runs no controllers, so the benchmark plays the deployment controller, visibly:
     it watches the serving Deployments and, for every generation of one it has not reported yet,
     patches ``/status`` as the deployment controller does once every pod is ready
     (``observedGeneration`` = ``metadata.generation``; ``replicas``, ``readyReplicas``,
     ``updatedReplicas``, ``availableReplicas`` = ``spec.replicas``), at once, with the
     benchmark's User-Agent, so those writes are the benchmark's, not the operator's. "All Ready"
     then means what it means to a user: served, at the versions Git pins.
   - On a real server the cluster's own deployment controller reports rollouts, but where no
     scheduler or kubelet runs (a bare control plane), pods never run: there the serving
     Deployments ask for ``replicas: 0`` (the schema allows 0), which the deployment controller
     reports rolled out by itself. Pass ``--replicas 1`` on a cluster with nodes.

2. samples the RSS of the operator's process group every 0.2 s (and reads VmHWM at the end);
3. counts the operator's write requests per ModelDeployment, beside the floor of 6: when an
   object is created, one server-side apply per child (4) and one status write (Ready Unknown,
   Progressing), then, once the rollout is reported, one more status write (Ready True). Events
   (one ``AliasChanged`` per alias the operator sets: 1.5 per object here) come on top;
4. waits for the resync to pass over every object once more and counts the writes (target 0) and
   reads of that window.

How requests are attributed. On the emulator: it keeps every request it served (kmock's request
log: method, path, headers, parsed body). This benchmark sends its own with the User-Agent
``mlgitops-bench``, kubectl sends ``kubectl/...``; everything else came from the operator (kopf's
own client and the ``kubernetes`` client it uses for children). A window is the requests whose
sequence number is past the last one seen when the window opened, so no counter is reset. On a
real server: ``apiserver_request_total`` (by ``system_client``, verb, group, resource and
subresource, summed over codes, scopes and versions), read with ``kubectl get --raw /metrics``
through the given kubeconfig when a window opens and when it closes (the server does not count
those reads there). Requests the server labels with a ``system_client``
(``kube-controller-manager``, the API server's own loopback client) are shown apart; from the
rest, the benchmark subtracts its own, which it counts as it sends them (its POSTs, lists and
watches). What is left is counted as the operator's when it is a request the operator makes here
(GET, LIST, WATCH of ModelDeployments, Environments, Deployments, Services, CronJobs, Jobs;
APPLY, PATCH, DELETE of those children; PATCH of a ModelDeployment or its status; POST of an
Event), and as another client's otherwise. That counter is cluster-wide and has no namespace or
user: another client making the operator's kinds of requests anywhere in the cluster meanwhile
would count as the operator's. So other clients' requests of other kinds are printed as a WARNING
that the cluster was shared during the window, the benchmark counts the background for 5 s before
the operator starts, and it names the other namespaces it finds. A watch is counted when it ends.

The create phase ends when the operator has made no write for 20 s (longer than its 15 s retry
delay, so a failed pass retried later still counts here), at most twice the resync interval plus
30 s. The no-op resync window opens then. Every object's next pass is due one resync interval
(``--resync-interval``, jittered by +-10%) after its last pass ended, and every pass GETs the
object, then its serving Deployment. On the emulator the window closes 3 s after every
ModelDeployment's serving Deployment has been read again (a whole pass over every object); a real
server cannot say which objects were read, so there it closes once 1.1 intervals plus 3 s have
passed (every object's resync was due by then) and the operator's own count of passes (its
``mlgitops_reconcile_duration_seconds_count``) has grown by at least N. Either way at most twice
the interval plus 30 s (then FAIL). Nothing is polled meanwhile: readiness comes from one watch
opened before the creates (``--ready-by list`` polls a list every 0.5 s instead, which costs the
emulator a deep copy and serialization of every object per poll).

The machines are shared and noisy: each figure is printed beside a baseline (Flux's published
figures and our targets are fixed numbers; the request floors are exact), and the CPU time of the
operator, of this process (which serves the emulator), of the mlflow server and, where it can be
found, of the control plane is printed, so a run limited by something other than the operator
shows as such. It is a benchmark, not a test: a missed target prints FAIL and exits 0; only a run
that breaks (the operator dies, the API server fails) exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import re
import ssl
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/k8s is not installed
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"

import aiohttp
import yaml
from common import (
    CATALOG,
    ENV,
    GROUP_VERSION,
    NS,
    environment_yaml,
    figure,
    free_port,
    make_registry,
    model_name,
    verdict,
    working_directory,
)

from controller.planning.children import COMPONENT, MANAGED_BY
from tests.helpers import MlflowServer, OperatorProcess

ROOT = Path(__file__).resolve().parents[1]
MD_PATH = f"/apis/{GROUP_VERSION}/namespaces/{NS}/modeldeployments"
DEPLOYMENTS_PATH = f"/apis/apps/v1/namespaces/{NS}/deployments"
SERVING_SELECTOR = f"{MANAGED_BY}=mlgitops,{COMPONENT}=serving"
USER_AGENT = "mlgitops-bench"

CHILDREN = 4  # Deployment, Service, 2 CronJobs
# Per object created: one apply per child and a status write (Ready Unknown, Progressing); once
# the serving Deployment reports its rollout, one more status write (Ready True).
WRITE_FLOOR = CHILDREN + 2
READS_PER_PASS = 1  # a pass GETs its object; the children come from the watch
READY_TARGET_S = 60.0
FLUX_READY_S = 256.0  # 1,000 Kustomizations in 4 min 16 s (Flux's published figure)
RSS_TARGET_MIB = 250.0
FLUX_RSS_MIB = 175.0
POLL_S = 0.5
SAMPLE_S = 0.2
QUIET_S = 20.0  # no operator write for this long ends the create phase (its retry delay is 15 s)
GRACE_S = 3.0  # after the last object's pass was seen, before the resync window closes
JITTER = 1.1  # the operator's resync delay is the interval times uniform(0.9, 1.1)
BACKGROUND_S = 5.0  # real server: how long other clients' requests are counted before the run
CREATE_CONCURRENCY = 32
WRITE_VERBS = frozenset({"POST", "PUT", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION"})
SYSTEM_NAMESPACES = frozenset({"default", "kube-system", "kube-public", "kube-node-lease"})


# --- printing -------------------------------------------------------------------------------------


def say(text: str) -> None:
    print(text, flush=True)


class RunBroke(Exception):
    """The run itself failed (not a missed target): exit 1."""


def breakdown(title: str, labels: Counter[str], per: int) -> None:
    say(f"{title}:")
    for label, count in sorted(labels.items(), key=lambda kv: (-kv[1], kv[0])):
        say(f"  {count:7d}  {count / per:6.2f}/ModelDeployment  {label}")


# --- setup ----------------------------------------------------------------------------------------


def deployment(i: int, *, replicas: int) -> dict[str, Any]:
    """ModelDeployment ``m<i>``: 4 children, and a challenger on every other one."""
    name, challenger = f"m{i}", i % 2 == 0
    spec: dict[str, Any] = {
        "model": model_name(i),
        "champion": {"version": "1"},
        "serving": {
            "enabled": True,
            "replicas": replicas,
            "traffic": {"challenger": 10 if challenger else 0},
        },
        "batchInference": {
            "schedule": f"{i % 60} 11 * * *",
            "input": f"{CATALOG}/s{i % 10}/{name}_daily",
            "output": f"{CATALOG}/s{i % 10}/{name}_scores",
        },
        "monitoring": {
            "schedule": "0 8 * * *",
            "baseline": f"{CATALOG}/s{i % 10}/{name}_baseline",
            "drift": {"method": "psi", "threshold": 0.2},
        },
    }
    if challenger:
        spec["challenger"] = {"version": "2"}
    return {
        "apiVersion": GROUP_VERSION,
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": NS},
        "spec": spec,
    }


# --- processes ------------------------------------------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (state, ppid, pgrp, ...)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw.rsplit(")", 1)[1].split()


def _status_kib(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def group_members(pgid: int) -> list[int]:
    """Every process in the operator's process group (it runs in a session of its own)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat(int(entry))) and int(fields[2]) == pgid:
            found.append(int(entry))
    return found


TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: Sequence[int]) -> float:
    total = 0
    for pid in pids:
        if fields := _stat(pid):
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICK


def control_plane(kubeconfig: Path) -> dict[str, int]:
    """The control plane's processes on this machine, when the kubeconfig is that of a cluster
    started by ``kube-cluster`` (its ``run/pids`` file lies beside it): name -> pid. Only to read
    their CPU time; each pid is checked to still run the program of that name."""
    pids = kubeconfig.resolve().parent / "run" / "pids"
    found: dict[str, int] = {}
    with contextlib.suppress(OSError, ValueError):
        for line in pids.read_text().splitlines():
            name, pid = line.split()
            if Path(f"/proc/{pid}/exe").resolve().name == name:
                found[name] = int(pid)
    return found


@dataclass
class Sampler:
    """Samples the operator group's summed VmRSS every 0.2 s on a thread.

    Group members are listed every 2 s (a /proc scan costs this process CPU the emulator needs):
    a child process that lived less than that may be missed. The operator is one process and
    starts none; the count of members seen is printed.
    """

    pgid: int
    peak_kib: int = 0
    samples: int = 0
    members_seen: set[int] = field(default_factory=set)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        members: list[int] = []
        while not self._stop.is_set():
            if self.samples % 10 == 0:  # a /proc scan every 2 s: it costs this process's CPU
                members = group_members(self.pgid)
                self.members_seen.update(members)
            rss = sum(_status_kib(pid, "VmRSS") for pid in members)
            self.peak_kib = max(self.peak_kib, rss)
            self.samples += 1
            self._stop.wait(SAMPLE_S)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


def start_operator(
    *, kubeconfig: Path, workdir: Path, resync: float, workers: int, log: Path
) -> OperatorProcess:
    return OperatorProcess(
        kubeconfig,
        workdir / "state",
        log,
        "--env",
        ENV,
        "--namespace",
        NS,
        "--resync-interval",
        f"{resync:g}",
        env={"MLGITOPS_WORKERS": str(workers)},
    )


def exited(operator: OperatorProcess) -> RunBroke:
    return RunBroke(f"the operator exited with {operator.proc.returncode}:\n{operator.tail()}")


def operator_passes(operator: OperatorProcess) -> tuple[float, float]:
    """The operator's own count of passes and their summed seconds (from its /metrics)."""
    code, text = operator.get("/metrics")
    if code != 200:
        return 0.0, 0.0
    return (
        _metric(text, "mlgitops_reconcile_duration_seconds_count"),
        _metric(text, "mlgitops_reconcile_duration_seconds_sum"),
    )


def _metric(text: str, name: str) -> float:
    """A sample without labels from a Prometheus text exposition, or 0."""
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, flags=re.MULTILINE)
    return float(found[1]) if found else 0.0


# --- the benchmark's own requests -----------------------------------------------------------------

RESOURCE_PATH = re.compile(
    r"/(?:api|apis/(?P<group>[^/]+))/(?P<version>[^/]+)(?:/namespaces/(?P<namespace>[^/]+))?"
    r"/(?P<plural>[^/]+)(?:/(?P<name>[^/]+))?(?:/(?P<sub>[^/]+))?"
)
# A request as apiserver_request_total labels it: verb, group, resource, subresource (for a
# non-resource request, resource is "" and subresource its path).
ReqKey = tuple[str, str, str, str]


def request_key(method: str, path: str, *, watch: bool = False, content_type: str = "") -> ReqKey:
    """How a kube-apiserver counts a request: WATCH, LIST (a GET of a collection), APPLY (a
    server-side apply PATCH), DELETECOLLECTION, or the HTTP method."""
    path = path.split("?")[0]
    if not (m := RESOURCE_PATH.fullmatch(path)):
        return (method, "", "", path.strip("/"))
    verb = method
    if method == "GET":
        verb = "WATCH" if watch else ("GET" if m["name"] else "LIST")
    elif method == "PATCH" and content_type.startswith("application/apply-patch"):
        verb = "APPLY"
    elif method == "DELETE" and not m["name"]:
        verb = "DELETECOLLECTION"
    return (verb, m["group"] or "", m["plural"], m["sub"] or "")


def key_label(key: ReqKey) -> str:
    verb, group, resource, sub = key
    if not resource:
        return f"{verb} /{sub} (non-resource)"
    return f"{verb} {resource}{'.' + group if group else ''}{'/' + sub if sub else ''}"


class Api:
    """The benchmark's requests to the API server, with its User-Agent, tallied as the API server
    labels them (``ReqKey``), so a real server's counts can be taken net of them."""

    def __init__(
        self, url: str, *, ssl_context: ssl.SSLContext | None = None, token: str | None = None
    ) -> None:
        self.url = url.rstrip("/")
        self.ssl = ssl_context
        self.headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        self._sent: Counter[ReqKey] = Counter()
        self._lock = threading.Lock()

    @classmethod
    def from_kubeconfig(cls, path: Path, workdir: Path) -> Api:
        """The current context of a kubeconfig: a token or a client certificate, and the CA."""
        config = yaml.safe_load(path.read_text())
        base = path.resolve().parent

        def named(section: str, name: str) -> dict[str, Any]:
            found = next((e for e in config.get(section) or [] if e["name"] == name), None)
            if found is None:
                raise RunBroke(f"{path}: no {section[:-1]} named {name!r}")
            return dict(found)

        context = named("contexts", config["current-context"])["context"]
        cluster = named("clusters", context["cluster"])["cluster"]
        user = named("users", context["user"])["user"] if context.get("user") else {}
        if user.get("exec") or user.get("auth-provider"):
            raise RunBroke(f"{path}: exec and auth-provider credentials are not supported here")
        tls: ssl.SSLContext | None = None
        if cluster["server"].startswith("https:"):
            tls = ssl.create_default_context()
            if cluster.get("insecure-skip-tls-verify"):
                tls.check_hostname, tls.verify_mode = False, ssl.CERT_NONE
            elif data := cluster.get("certificate-authority-data"):
                tls.load_verify_locations(cadata=base64.b64decode(data).decode())
            elif ca := cluster.get("certificate-authority"):
                tls.load_verify_locations(cafile=str(base / ca))
            cert, key = user.get("client-certificate"), user.get("client-key")
            if user.get("client-certificate-data"):
                cert, key = workdir / "bench-client.crt", workdir / "bench-client.key"
                for target, data in (
                    (cert, user["client-certificate-data"]),
                    (key, user["client-key-data"]),
                ):
                    target.write_bytes(base64.b64decode(data))
                    target.chmod(0o600)
            if cert:
                tls.load_cert_chain(str(base / cert), str(base / key) if key else None)
        token = user.get("token")
        if not token and user.get("tokenFile"):
            token = (base / user["tokenFile"]).read_text().strip()
        return cls(cluster["server"], ssl_context=tls, token=token)

    def count(self, key: ReqKey, n: int = 1) -> None:
        with self._lock:
            self._sent[key] += n

    def sent(self) -> Counter[ReqKey]:
        with self._lock:
            return Counter(self._sent)

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        timeout: float = 60,
    ) -> Any:
        """One request; its decoded JSON answer. An HTTP error raises urllib's HTTPError."""
        data = None if body is None else json.dumps(body).encode()
        headers = dict(self.headers)
        if data is not None:
            headers["Content-Type"] = content_type
        request = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
        self.count(request_key(method, path, content_type=content_type))
        with urllib.request.urlopen(request, timeout=timeout, context=self.ssl) as r:
            return json.loads(r.read() or b"null")

    @contextlib.contextmanager
    def watch(self, path: str, **query: str) -> Iterator[Any]:
        """A watch stream (``urllib``'s response: iterate it for lines); counted when it ends,
        as the API server counts it."""
        params = urllib.parse.urlencode({**query, "watch": "true"})
        timeout = float(query.get("timeoutSeconds", 1800)) + 60
        request = urllib.request.Request(f"{self.url}{path}?{params}", headers=self.headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout, context=self.ssl) as stream:
                yield stream
        finally:
            self.count(request_key("GET", path, watch=True))

    def get_or_none(self, path: str) -> Any:
        try:
            return self.request("GET", path)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise


async def _post_all(api: Api, bodies: list[dict[str, Any]]) -> list[int]:
    semaphore = asyncio.Semaphore(CREATE_CONCURRENCY)
    headers = {**api.headers, "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=CREATE_CONCURRENCY, ssl=api.ssl or False)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def post(body: dict[str, Any]) -> int:
            async with semaphore:
                api.count(request_key("POST", MD_PATH))
                async with session.post(api.url + MD_PATH, data=json.dumps(body)) as response:
                    await response.read()
                    return response.status

        return await asyncio.gather(*(post(b) for b in bodies))


def is_ready(obj: dict[str, Any]) -> bool:
    return _ready_condition(obj) == "True"


def _ready_condition(obj: dict[str, Any]) -> str | None:
    for c in (obj.get("status") or {}).get("conditions", []):
        if c.get("type") == "Ready":
            return str(c.get("status"))
    return None


def list_ready(api: Api) -> set[str]:
    """Names of the ModelDeployments with Ready=True, from one list request."""
    return {o["metadata"]["name"] for o in api.request("GET", MD_PATH)["items"] if is_ready(o)}


@dataclass
class ReadyWatch:
    """One watch on ModelDeployments, from before the creates: when each first had a status from
    the operator (any Ready condition), when it first showed Ready=True, and whether it went back.

    Costs the emulator one serialization per ModelDeployment change, where a list costs one
    deep copy and serialization of every object per poll. Reopened from the last resourceVersion
    seen when the server ends it.
    """

    api: Api
    since: str
    ready_at: dict[str, float] = field(default_factory=dict)
    status_at: dict[str, float] = field(default_factory=dict)
    regressed: Counter[str] = field(default_factory=Counter)  # Ready=True, then not any more
    events: int = 0
    error: BaseException | None = None
    _stopped: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        threading.Thread(target=self._run, name="ready-watch", daemon=True).start()

    def stop(self) -> None:
        self._stopped.set()

    def _run(self) -> None:
        since = self.since
        try:
            while not self._stopped.is_set():
                with self.api.watch(MD_PATH, resourceVersion=since, timeoutSeconds="1800") as s:
                    for line in s:
                        event = json.loads(line)
                        if event["type"] == "ERROR":
                            raise RunBroke(f"the ready watch ended: {event['object']}")
                        obj = event["object"]
                        since = obj["metadata"]["resourceVersion"]
                        self.events += 1
                        name, now = obj["metadata"]["name"], time.monotonic()
                        if _ready_condition(obj) is not None:
                            self.status_at.setdefault(name, now)
                        if is_ready(obj):
                            self.ready_at.setdefault(name, now)
                        elif name in self.ready_at:
                            self.regressed[name] += 1
        except Exception as exc:  # the emulator's shutdown ends it; anything earlier is a fault
            if not self._stopped.is_set():
                self.error = exc


def _rolled_out(obj: dict[str, Any]) -> bool:
    meta, spec, st = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
    replicas = int(spec.get("replicas", 1))
    return st.get("observedGeneration") == meta.get("generation") and all(
        int(st.get(k, 0)) == replicas
        for k in ("replicas", "readyReplicas", "updatedReplicas", "availableReplicas")
    )


@dataclass
class RolloutPlayer:
    """The deployment controller's part, played by the benchmark on the emulator (it has none).

    Watches the serving Deployments (``app.kubernetes.io/managed-by=mlgitops``,
    ``app.kubernetes.io/component=serving``) and, for each generation not reported yet, merge
    patches ``/status`` as the deployment controller does once every pod of that generation is
    ready: ``observedGeneration`` = ``metadata.generation`` and ``replicas``, ``readyReplicas``,
    ``updatedReplicas``, ``availableReplicas`` = ``spec.replicas``. At once (pods are not
    simulated), in one write, from 4 threads, with the benchmark's User-Agent.
    """

    api: Api
    since: str
    patches: int = 0
    rolled_out: set[str] = field(default_factory=set)
    error: BaseException | None = None
    _reported: dict[str, int] = field(default_factory=dict)  # name -> generation patched
    _stopped: threading.Event = field(default_factory=threading.Event)
    _pool: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(4, thread_name_prefix="rollout")
    )
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        threading.Thread(target=self._run, name="rollout-watch", daemon=True).start()

    def stop(self) -> None:
        self._stopped.set()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _run(self) -> None:
        try:
            query = {"labelSelector": SERVING_SELECTOR, "timeoutSeconds": "86400"}
            with self.api.watch(DEPLOYMENTS_PATH, resourceVersion=self.since, **query) as stream:
                for line in stream:
                    event = json.loads(line)
                    obj = event["object"]
                    if event["type"] not in ("ADDED", "MODIFIED") or _rolled_out(obj):
                        continue
                    name, generation = obj["metadata"]["name"], obj["metadata"]["generation"]
                    if self._reported.get(name) == generation:
                        continue
                    self._reported[name] = generation
                    replicas = int((obj.get("spec") or {}).get("replicas", 1))
                    self._pool.submit(self._patch, name, generation, replicas)
        except Exception as exc:  # ends at the emulator's shutdown; anything earlier is a fault
            if not self._stopped.is_set():
                self.error = exc

    def _patch(self, name: str, generation: int, replicas: int) -> None:
        status = {"observedGeneration": generation}
        status |= dict.fromkeys(
            ("replicas", "readyReplicas", "updatedReplicas", "availableReplicas"), replicas
        )
        try:
            self.api.request(
                "PATCH",
                f"{DEPLOYMENTS_PATH}/{name}/status",
                {"status": status},
                content_type="application/merge-patch+json",
            )
        except Exception as exc:
            if not self._stopped.is_set():
                self.error = exc
            return
        with self._lock:
            self.patches += 1
            self.rolled_out.add(name)


def count_children(api: Api) -> dict[str, int]:
    paths = {
        "Deployment": DEPLOYMENTS_PATH,
        "Service": f"/api/v1/namespaces/{NS}/services",
        "CronJob": f"/apis/batch/v1/namespaces/{NS}/cronjobs",
    }
    return {kind: len(api.request("GET", path)["items"]) for kind, path in paths.items()}


# --- requests at the emulator ---------------------------------------------------------------------


def origin(request: Any) -> str:
    agent = request.headers.get("User-Agent", "")
    if agent.startswith(USER_AGENT):
        return "bench"
    if agent.startswith("kubectl"):
        return "kubectl"
    return "operator"


def is_write(request: Any) -> bool:
    return request.method.value in ("POST", "PUT", "PATCH", "DELETE")


def is_watch(request: Any) -> bool:
    return request.params.get("watch") in ("true", "1")


def _paths(data: Any, depth: int = 2, prefix: str = "") -> list[str]:
    if not isinstance(data, dict) or depth == 0:
        return [prefix] if prefix else []
    found: list[str] = []
    for key in sorted(data):
        found += _paths(data[key], depth - 1, f"{prefix}.{key}" if prefix else key)
    return found


def describe(request: Any) -> str:
    """What a write was, from its method, resource, content type and body."""
    method = request.method.value
    res = request.resource
    what = res.plural if res is not None else request.url.path
    if request.subresource:
        what += f"/{request.subresource}"
    ctype = request.headers.get("Content-Type", "").split(";")[0].strip()
    data = request.data
    if method == "POST" and res is not None and res.plural == "events":
        return f"POST events (reason {data.get('reason') if isinstance(data, dict) else '?'})"
    if ctype == "application/apply-patch+yaml":
        return f"server-side apply {what}"
    if ctype == "application/json-patch+json" and isinstance(data, list):
        ops = sorted(
            {str(op.get("path", "")).split("/")[2] for op in data if op.get("op") != "test"}
        )
        return f"{method} {what} json-patch [{', '.join('/metadata/' + o for o in ops)}]"
    if ctype.endswith("merge-patch+json"):
        fields = _paths(data)
        notes = ((data or {}).get("metadata") or {}).get("annotations")
        if isinstance(notes, dict):  # which of kopf's annotations: progress, diff base
            fields.remove("metadata.annotations")
            fields += [
                f"annotations[{k}{'=null' if v is None else ''}]" for k, v in sorted(notes.items())
            ]
        return f"{method} {what} merge-patch {{{', '.join(fields)}}}"
    return f"{method} {what} {ctype}".strip()


def read_kind(request: Any) -> str:
    res = request.resource
    what = res.plural if res is not None else request.url.path
    if is_watch(request):
        return f"watch {what}"
    return f"{'get' if request.name else 'list'} {what}"


@dataclass
class Tally:
    """The operator's requests of one window, by label, and what else is worth saying."""

    writes: Counter[str]
    reads: Counter[str]
    notes: list[str] = field(default_factory=list)


class EmulatorRequests:
    """The operator's requests, one by one from the emulator's request log (see the docstring)."""

    def __init__(self, emulator: Any) -> None:
        self.emulator = emulator

    def after(self, mark: int) -> list[Any]:
        """kmock's request log (every request the emulator served), past sequence number ``mark``."""
        return [r for r in list(self.emulator) if r.id > mark]

    def mark(self) -> int:
        found = list(self.emulator)
        return found[-1].id if found else -1

    def operator_writes(self, mark: int) -> tuple[int, int]:
        """The operator's writes past ``mark``, and the mark to ask from next time."""
        new = self.after(mark)
        if not new:
            return 0, mark
        return sum(1 for r in new if origin(r) == "operator" and is_write(r)), new[-1].id

    def tally(self, mark: int) -> Tally:
        mine = [r for r in self.after(mark) if origin(r) == "operator"]
        return Tally(
            writes=Counter(describe(r) for r in mine if is_write(r)),
            reads=Counter(read_kind(r) for r in mine if not is_write(r)),
        )

    def watching(self, operator: OperatorProcess, timeout: float) -> float:
        """Until the operator has started its watch on ModelDeployments; returns seconds waited."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if not operator.alive():
                raise exited(operator)
            for r in list(self.emulator):
                if origin(r) == "operator" and is_watch(r) and r.url.path == MD_PATH:
                    return time.monotonic() - start
            time.sleep(0.2)
        raise RunBroke(
            f"the operator did not watch ModelDeployments in {timeout:g} s:\n{operator.tail()}"
        )


# --- requests at a real API server ----------------------------------------------------------------

Sample = tuple[str, str, str, str, str]  # system_client, verb, group, resource, subresource
_LABELS = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
CHILD_RESOURCES = frozenset(
    {("apps", "deployments"), ("", "services"), ("batch", "cronjobs"), ("batch", "jobs")}
)
OWN_RESOURCES = frozenset({("mlgitops.io", "modeldeployments"), ("mlgitops.io", "environments")})


def operator_may(key: ReqKey) -> bool:
    """A request the operator makes in this benchmark (no Git sync): reads of its own resources
    and of the children; applies, patches and deletes of children; patches of a
    ModelDeployment's status (and of its metadata, to drop an old finalizer); Events posted."""
    verb, group, resource, sub = key
    if verb in ("GET", "LIST", "WATCH"):
        return (group, resource) in CHILD_RESOURCES | OWN_RESOURCES and not sub
    if (group, resource) in CHILD_RESOURCES:
        return verb in ("APPLY", "PATCH", "DELETE") and not sub
    if (group, resource) == ("mlgitops.io", "modeldeployments"):
        return verb == "PATCH"
    return (verb, group, resource, sub) == ("POST", "", "events", "")


@dataclass(frozen=True)
class Scrape:
    """One read of the API server's /metrics, and what the benchmark had sent by then."""

    requests: Counter[Sample]  # apiserver_request_total, summed over code, scope, version, ...
    watches: Counter[str]  # apiserver_longrunning_requests with verb WATCH, by resource
    bench: Counter[ReqKey]
    at: float  # time.monotonic()


@dataclass
class Split:
    """The requests between two reads of /metrics, by who made them."""

    operator: Counter[ReqKey]  # by clients without system_client, of a kind the operator makes
    others: Counter[ReqKey]  # by clients without system_client, of any other kind
    system: dict[str, Counter[ReqKey]]  # by system_client
    uncounted: Counter[ReqKey]  # the benchmark sent more than the server counted (open watches)
    seconds: float


class ServerRequests:
    """The operator's requests at a real API server, from its ``apiserver_request_total``.

    Each mark reads ``/metrics`` with ``kubectl get --raw /metrics`` through the kubeconfig (a
    request the server does not count there). A window's requests are the difference of two
    reads. Those with a ``system_client`` label are the control plane's. Of the others, the
    benchmark's own (``Api.sent``) are subtracted; what is left is the operator's when it is a
    request the operator makes here (``operator_may``), and another client's otherwise: the
    counter is cluster-wide, and such requests say the cluster was shared meanwhile, so a client
    making the operator's kinds of requests elsewhere would count as the operator.
    """

    def __init__(self, kubeconfig: Path, api: Api) -> None:
        self.kubeconfig, self.api = kubeconfig, api

    def mark(self) -> Scrape:
        from tests.k8s.fixtures import run_kubectl

        # Not counted by the benchmark: the server does not count its /metrics in
        # apiserver_request_total (measured: 0 per read).
        text = run_kubectl(self.kubeconfig, "get", "--raw", "/metrics", timeout=60).stdout
        at = time.monotonic()
        requests: Counter[Sample] = Counter()
        watches: Counter[str] = Counter()
        for line in text.splitlines():
            name, _, rest = line.partition("{")
            if name not in ("apiserver_request_total", "apiserver_longrunning_requests"):
                continue
            body, _, value = rest.rpartition("} ")
            labels = dict(_LABELS.findall(body))
            if name == "apiserver_longrunning_requests":
                if labels.get("verb") == "WATCH":
                    watches[labels.get("resource", "")] += int(float(value))
                continue
            resource, sub = labels.get("resource", ""), labels.get("subresource", "")
            key = (
                labels.get("system_client", ""),
                labels.get("verb", ""),
                labels.get("group", ""),
                resource,
                sub if resource else sub.strip("/"),
            )
            requests[key] += int(float(value))
        return Scrape(requests, watches, self.api.sent(), at)

    @staticmethod
    def split(start: Scrape, end: Scrape) -> Split:
        clients: Counter[ReqKey] = Counter()
        system: dict[str, Counter[ReqKey]] = {}
        for sample, value in end.requests.items():
            if n := value - start.requests.get(sample, 0):
                client, key = sample[0], sample[1:]
                if client:
                    system.setdefault(client, Counter())[key] += n
                else:
                    clients[key] += n
        bench = end.bench - start.bench
        net = Counter({k: n - bench[k] for k, n in clients.items() if n > bench[k]})
        return Split(
            operator=Counter({k: n for k, n in net.items() if operator_may(k)}),
            others=Counter({k: n for k, n in net.items() if not operator_may(k)}),
            system=system,
            uncounted=Counter({k: n - clients[k] for k, n in bench.items() if n > clients[k]}),
            seconds=end.at - start.at,
        )

    def operator_writes(self, mark: Scrape) -> tuple[int, Scrape]:
        now = self.mark()
        found = self.split(mark, now).operator
        return sum(n for k, n in found.items() if k[0] in WRITE_VERBS), now

    def tally(self, mark: Scrape, end: Scrape | None = None) -> Tally:
        found = self.split(mark, end or self.mark())
        notes = []
        if found.uncounted:
            notes.append(
                "sent by the benchmark, not counted by the server yet (a watch still open): "
                + ", ".join(f"{key_label(k)} {n}" for k, n in sorted(found.uncounted.items()))
            )
        if found.others:
            writes = sum(n for k, n in found.others.items() if k[0] in WRITE_VERBS)
            top = ", ".join(f"{key_label(k)} {n}" for k, n in found.others.most_common(8))
            notes.append(
                f"WARNING: the cluster was shared: other clients made {writes} writes and "
                f"{sum(found.others.values()) - writes} reads of kinds the operator does not make "
                f"here ({top}); any of the operator's kinds they made count as the operator's"
            )
        for client, counts in sorted(found.system.items()):
            writes = sum(n for k, n in counts.items() if k[0] in WRITE_VERBS)
            top = ", ".join(
                f"{key_label(k)} {n}"
                for k, n in counts.most_common()
                if k[0] in WRITE_VERBS and n >= 10
            )
            notes.append(
                f"{client} (system_client, not counted): {writes} writes "
                f"({writes / max(found.seconds, 1e-9):.1f}/s over {found.seconds:.0f} s), "
                f"{sum(counts.values()) - writes} reads" + (f"; writes: {top}" if top else "")
            )
        mine = found.operator
        return Tally(
            writes=Counter({key_label(k): n for k, n in mine.items() if k[0] in WRITE_VERBS}),
            reads=Counter({key_label(k): n for k, n in mine.items() if k[0] not in WRITE_VERBS}),
            notes=notes,
        )

    def watching(self, operator: OperatorProcess, before: Scrape, timeout: float) -> float:
        """Until one more watch on ModelDeployments is open than before the operator started."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if not operator.alive():
                raise exited(operator)
            if self.mark().watches["modeldeployments"] > before.watches["modeldeployments"]:
                return time.monotonic() - start
            time.sleep(0.5)
        raise RunBroke(
            f"no new watch on ModelDeployments at the server in {timeout:g} s:\n{operator.tail()}"
        )


# --- phases ---------------------------------------------------------------------------------------


@dataclass
class Target:
    """Where the operator runs, and how its requests are counted there."""

    api: Api
    kubeconfig: Path
    requests: EmulatorRequests | ServerRequests
    replicas: int
    control_plane: dict[str, int] = field(default_factory=dict)  # real server: name -> pid
    player: RolloutPlayer | None = None  # emulator: the benchmark's deployment controller

    @property
    def emulated(self) -> bool:
        return isinstance(self.requests, EmulatorRequests)


@dataclass
class Outcome:
    ok: bool = True
    all_ready: bool = False


def wait_quiet(
    target: Target, operator: OperatorProcess, *, mark: Any, cap: float
) -> tuple[float, bool]:
    """Until the operator has made no write for QUIET_S (at most ``cap`` s): (seconds, quiet)."""
    start = last_change = time.monotonic()
    while time.monotonic() - start < cap:
        if not operator.alive():
            raise exited(operator)
        fresh, mark = target.requests.operator_writes(mark)
        if fresh:
            last_change = time.monotonic()
        if time.monotonic() - last_change >= QUIET_S:
            return time.monotonic() - start, True
        time.sleep(0.5 if target.emulated else 2.0)  # a /metrics read is 4 MB on a real server
    return time.monotonic() - start, False


def run(
    workdir: Path,
    *,
    models: int,
    workers: int,
    timeout: float,
    resync: float,
    ready_by: str,
    registry: str,
    server_workers: int,
    server_app: str,
    kubeconfig: Path | None,
    replicas: int | None,
) -> bool:
    outcome = Outcome()
    db = (workdir / "mlflow.db").resolve()
    tracking_uri = f"sqlite:///{db}"

    start = time.perf_counter()
    make_registry(tracking_uri, models=models, versions=2, source="bench://models")
    reg_s = time.perf_counter() - start
    say(f"setup: MLflow registry with {models} models x 2 versions in {reg_s:.2f} s")
    server: MlflowServer | None = None
    with contextlib.ExitStack() as stack:
        if registry == "server":
            start = time.perf_counter()
            server = MlflowServer(
                db,
                workdir / "artifacts",
                free_port(),
                workers=server_workers,
                # gunicorn (Flask alone) costs half the server CPU per request of the default
                # uvicorn app on these machines (~5 vs ~10 ms, bench/README.md).
                args=["--gunicorn-opts", "--log-level warning"] if server_app == "gunicorn" else [],
            )
            stack.callback(server.stop)
            server.start()
            tracking_uri = server.url
            say(
                f"setup: mlflow server ({server_app}, {server_workers} worker(s)) on that SQLite "
                f"store at {server.url} in {time.perf_counter() - start:.2f} s; the operator "
                "speaks REST to it"
            )
        else:
            say("setup: the operator opens the SQLite store itself (MlflowClient: imports mlflow)")
        start = time.perf_counter()
        if kubeconfig is None:
            target = _emulator(
                stack, workdir, tracking_uri, replicas=1 if replicas is None else replicas
            )
        else:
            target = _real_server(
                stack,
                workdir,
                kubeconfig,
                tracking_uri,
                replicas=0 if replicas is None else replicas,
            )
        say(f"setup: API server ready in {time.perf_counter() - start:.2f} s")

        operator = start_operator(
            kubeconfig=target.kubeconfig,
            workdir=workdir,
            resync=resync,
            workers=workers,
            log=workdir / "operator.log",
        )
        sampler = Sampler(pgid=operator.proc.pid)
        sampler.start()
        try:
            outcome = _measure(
                target,
                operator,
                sampler,
                server_pid=server.proc.pid if server is not None and server.proc else None,
                models=models,
                workers=workers,
                timeout=timeout,
                resync=resync,
                ready_by=ready_by,
            )
        finally:
            sampler.stop()
            if target.player is not None:
                target.player.stop()
            stop_s = operator.stop()
            say(f"operator: stopped in {stop_s:.1f} s (exit code {operator.proc.returncode})")
            _log_summary(operator.log)
    return outcome.ok


def _emulator(
    stack: contextlib.ExitStack, workdir: Path, tracking_uri: str, *, replicas: int
) -> Target:
    """The emulator in this process, the CRDs, the namespace, the Environment, the rollout player."""
    from tests.k8s.fixtures import start_emulator

    k8s = stack.enter_context(start_emulator(directory=workdir))
    for crd in sorted((ROOT / "manifests/crds").glob("mlgitops.io_*.yaml")):
        k8s.emulator.add_crd(yaml.safe_load(crd.read_text()))
    namespace = f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {NS}}}\n"
    k8s.kubectl("apply", "--validate=false", "-f", "-", input=namespace)
    k8s.kubectl(
        "apply", "--validate=false", "-n", NS, "-f", "-", input=environment_yaml(tracking_uri)
    )
    api = Api(k8s.url)
    since = api.request("GET", DEPLOYMENTS_PATH)["metadata"]["resourceVersion"]
    player = RolloutPlayer(api, since)
    player.start()
    say(
        f"setup: emulator at {k8s.url}, CRDs, namespace {NS}, Environment {ENV}; serving "
        f"replicas {replicas}; the benchmark plays the deployment controller (reports each "
        "serving Deployment generation rolled out, with its own User-Agent)"
    )
    return Target(api, k8s.kubeconfig, EmulatorRequests(k8s.emulator), replicas, player=player)


def _real_server(
    stack: contextlib.ExitStack,
    workdir: Path,
    kubeconfig: Path,
    tracking_uri: str,
    *,
    replicas: int,
) -> Target:
    """A real API server: the CRDs (kubectl apply -k), namespace ``ml-bench`` (deleted at the
    end), the Environment. Refuses a namespace that already exists: another run may be using it."""
    from tests.k8s.fixtures import run_kubectl

    kubeconfig = kubeconfig.resolve()
    api = Api.from_kubeconfig(kubeconfig, workdir)
    version = api.request("GET", "/version")
    say(f"setup: API server {api.url}, {version.get('gitVersion')}")
    if (found := api.get_or_none(f"/api/v1/namespaces/{NS}")) is not None:
        phase = (found.get("status") or {}).get("phase")
        raise RunBroke(f"namespace {NS} already exists ({phase}): another run? delete it first")

    def kubectl(*args: str, input: str | None = None, timeout: float = 60) -> str:
        return run_kubectl(kubeconfig, *args, input=input, timeout=timeout).stdout

    kubectl("apply", "-k", str(ROOT / "manifests/crds"))
    kubectl(
        "wait",
        "--for=condition=Established",
        "crd/modeldeployments.mlgitops.io",
        "crd/environments.mlgitops.io",
        "--timeout=60s",
    )
    kubectl("create", "namespace", NS)

    def delete_namespace() -> None:
        start = time.monotonic()
        done = run_kubectl(
            kubeconfig, "delete", "namespace", NS, "--timeout=600s", check=False, timeout=660
        )
        say(
            f"cleanup: namespace {NS} deleted in {time.monotonic() - start:.1f} s"
            if done.returncode == 0
            else f"cleanup: deleting namespace {NS} failed: {done.stderr.strip()}"
        )

    stack.callback(delete_namespace)
    kubectl("apply", "-n", NS, "-f", "-", input=environment_yaml(tracking_uri))
    namespaces = api.request("GET", "/api/v1/namespaces")["items"]
    others = sorted(
        n["metadata"]["name"]
        for n in namespaces
        if n["metadata"]["name"] not in SYSTEM_NAMESPACES | {NS}
    )
    say(
        f"setup: CRDs applied (kubectl apply -k manifests/crds), namespace {NS}, Environment "
        f"{ENV}; serving replicas {replicas} (the cluster's deployment controller reports "
        f"rollouts); other namespaces in the cluster: {', '.join(others) or 'none'}"
    )
    requests = ServerRequests(kubeconfig, api)
    start = requests.mark()
    time.sleep(BACKGROUND_S)
    background = requests.tally(start)
    say(
        f"setup: background before the operator starts, {BACKGROUND_S:g} s: other clients "
        f"{sum(background.writes.values())} writes, {sum(background.reads.values())} reads "
        "(these would count as the operator's)"
        + (f": {dict(background.writes)}" if background.writes else "")
    )
    for note in background.notes:
        say(f"  {note}")
    return Target(api, kubeconfig, requests, replicas, control_plane=control_plane(kubeconfig))


def _measure(
    target: Target,
    operator: OperatorProcess,
    sampler: Sampler,
    *,
    server_pid: int | None,
    models: int,
    workers: int,
    timeout: float,
    resync: float,
    ready_by: str,
) -> Outcome:
    outcome = Outcome()
    api, requests = target.api, target.requests
    before_operator = requests.mark() if isinstance(requests, ServerRequests) else None
    start = time.monotonic()
    while not operator.healthy():
        if not operator.alive():
            raise exited(operator)
        if time.monotonic() - start > 60:
            raise RunBroke(f"no /healthz in 60 s:\n{operator.tail()}")
        time.sleep(0.2)
    healthy_s = time.monotonic() - start
    if isinstance(requests, ServerRequests):
        assert before_operator is not None
        watching_s = requests.watching(operator, before_operator, 60)
    else:
        watching_s = requests.watching(operator, 60)
    say(
        f"setup: operator pid {operator.proc.pid} healthy in {healthy_s:.2f} s, "
        f"watching ModelDeployments {watching_s:.2f} s later"
    )
    rss_idle_mib = sum(_status_kib(p, "VmRSS") for p in group_members(operator.proc.pid)) / 1024

    # 1. create N at once, until all Ready ----------------------------------------------------
    bodies = [deployment(i, replicas=target.replicas) for i in range(models)]
    watch: ReadyWatch | None = None
    if ready_by == "watch":
        watch = ReadyWatch(api, api.request("GET", MD_PATH)["metadata"]["resourceVersion"])
        watch.start()
    before_create = requests.mark()
    passes0, _ = operator_passes(operator)
    plane = target.control_plane
    cpu_op0, cpu_me0 = cpu_seconds(group_members(operator.proc.pid)), time.process_time()
    cpu_srv0 = cpu_seconds(group_members(server_pid)) if server_pid else 0.0
    cpu_plane0 = {name: cpu_seconds([pid]) for name, pid in plane.items()}
    t0 = time.monotonic()
    statuses = asyncio.run(_post_all(api, bodies))
    posted_s = time.monotonic() - t0
    if bad := [s for s in statuses if s != 201]:
        raise RunBroke(f"{len(bad)} ModelDeployment POSTs failed: {Counter(bad)}")
    say(f"create: {models} ModelDeployments POSTed in {posted_s:.2f} s ({models / posted_s:.0f}/s)")

    ready_at: dict[str, float] = watch.ready_at if watch is not None else {}
    polls: list[float] = []
    next_progress = 5.0
    while len(ready_at) < models and time.monotonic() - t0 <= timeout:
        if not operator.alive():
            raise exited(operator)
        if target.player is not None and target.player.error is not None:
            raise RunBroke(f"the benchmark's rollout player failed: {target.player.error!r}")
        if watch is not None:
            if watch.error is not None:
                raise RunBroke(f"the ready watch failed: {watch.error!r}")
        else:
            poll_start = time.monotonic()
            for name in list_ready(api):
                ready_at.setdefault(name, time.monotonic())
            polls.append(time.monotonic() - poll_start)
        elapsed = time.monotonic() - t0
        if elapsed >= next_progress and len(ready_at) < models:
            applied = f", {len(watch.status_at)} with a status" if watch is not None else ""
            say(f"progress: {elapsed:6.1f} s  {len(ready_at)}/{models} Ready{applied}")
            next_progress += 5.0
        time.sleep(POLL_S)
    waited_s = time.monotonic() - t0
    cpu_op = cpu_seconds(group_members(operator.proc.pid)) - cpu_op0
    cpu_me = time.process_time() - cpu_me0
    cpu_srv = cpu_seconds(group_members(server_pid)) - cpu_srv0 if server_pid else 0.0
    cpu_plane = {name: cpu_seconds([pid]) - cpu_plane0[name] for name, pid in plane.items()}
    ready = len(ready_at)
    outcome.all_ready = ready >= models
    times = sorted(t - t0 for t in ready_at.values())
    ready_s = times[-1] if outcome.all_ready else waited_s
    say(f"ready: {ready}/{models} ModelDeployments Ready after {ready_s:.1f} s")

    def spread(found: list[float]) -> str:
        return (
            ", ".join(
                f"p{p} {found[min(len(found) - 1, len(found) * p // 100)]:.1f} s"
                for p in (10, 50, 90)
            )
            + f", max {found[-1]:.1f} s"
        )

    if times:
        say(f"info: time to Ready per ModelDeployment: {spread(times)}")
    if watch is not None:
        if applied_times := sorted(t - t0 for t in watch.status_at.values()):
            say(
                f"info: time to the operator's first status (children applied, Ready Unknown "
                f"until the rollout is reported) per ModelDeployment: {spread(applied_times)} "
                f"({len(applied_times)}/{models})"
            )
        say(f"info: readiness from one watch ({watch.events} events), no polling")
    elif polls:
        say(
            f"info: readiness from {len(polls)} list polls of ~{sum(polls) / len(polls) * 1000:.0f}"
            f" ms each (max {max(polls) * 1000:.0f} ms, {sum(polls):.1f} s in all) that the "
            "emulator served meanwhile"
        )
    if target.player is not None:
        say(
            f"rollout: the benchmark, as the deployment controller, reported "
            f"{len(target.player.rolled_out)}/{models} serving Deployments rolled out "
            f"({target.player.patches} status patches so far, not counted as the operator's)"
        )
    me = "emulator + bench" if target.emulated else "bench"
    line = (
        f"info: CPU over those {waited_s:.1f} s: operator {cpu_op:.1f} s "
        f"({cpu_op / waited_s:.0%} of one core), this process ({me}) {cpu_me:.1f} s "
        f"({cpu_me / waited_s:.0%}), mlflow server {cpu_srv:.1f} s ({cpu_srv / waited_s:.0%})"
    )
    for name, spent in cpu_plane.items():
        line += f", {name} {spent:.1f} s ({spent / waited_s:.0%})"
    say(f"{line}; the machine has {os.cpu_count()} cores")
    passes, spent = operator_passes(operator)
    if passes:
        say(
            f"info: operator passes so far: {passes:g} for {models} objects "
            f"({passes - passes0:g} since the creates), {spent / passes * 1000:.0f} ms each on "
            f"average ({spent:.1f} s in all, on {workers} worker threads)"
        )
    figure("all Ready vs Flux 1,000 Kustomizations", ready_s, FLUX_READY_S, "s")
    figure("all Ready vs target", ready_s, READY_TARGET_S, "s")

    # 2. requests of the create phase (until the operator stops writing) ------------------------
    cap = max(60.0, 2 * resync + 30)
    quiet_s, quiet = wait_quiet(target, operator, mark=before_create, cap=cap)
    create = requests.tally(before_create)
    listed = list_ready(api)  # cross-check the watch with one list, once all is quiet
    regressed = dict(watch.regressed) if watch is not None else {}
    state = f"no operator write for {QUIET_S:g} s" if quiet else "the operator still writing"
    say(f"settled: {state} {quiet_s:.1f} s after all Ready; {len(listed)}/{models} Ready in a list")
    if regressed:
        names = ", ".join(sorted(regressed)[:10])
        say(f"info: {len(regressed)} went from Ready=True back to not Ready meanwhile: {names}")
    crashed = len(re.findall(r"reconcile of .* failed", operator.log.read_text(errors="replace")))
    if crashed:
        say(f"info: {crashed} passes raised (retried 30 s later; see the operator log summary)")
    outcome.ok &= verdict(
        outcome.all_ready and ready_s <= READY_TARGET_S and len(listed) == models,
        f"all {models} Ready <= {READY_TARGET_S:g} s "
        f"({ready}/{models} Ready after {ready_s:.1f} s, {len(listed)} still Ready when settled)",
    )
    writes, reads = sum(create.writes.values()), sum(create.reads.values())
    how = (
        "at the emulator, the benchmark's own POSTs, watches, lists and rollout reports "
        "excluded by User-Agent"
        if target.emulated
        else "at the API server's apiserver_request_total, net of the benchmark's own and of "
        "the control plane's (system_client)"
    )
    say(
        f"create phase: operator requests from the first POST until it settled: "
        f"{writes} writes, {reads} reads ({how})"
    )
    figure("create writes per ModelDeployment", writes / models, WRITE_FLOOR, digits=4)
    breakdown("create writes by request", create.writes, models)
    breakdown("create reads by request", create.reads, models)
    for note in create.notes:
        say(f"info: create phase: {note}")
    if target.player is not None:
        say(
            f"rollout: {target.player.patches} Deployment status patches by the benchmark in all, "
            f"{len(target.player.rolled_out)} Deployments"
        )
    children = count_children(api)
    say(
        f"children: {children['Deployment']} Deployments, {children['Service']} Services, "
        f"{children['CronJob']} CronJobs (expected {models}, {models}, {2 * models})"
    )
    if not target.emulated:
        _events_summary(api)

    # 3. a full no-op resync ---------------------------------------------------------------------
    noop_ok, noop_writes = False, 0
    if not outcome.all_ready or not quiet:
        say(
            "no-op resync: skipped ("
            + ("not all Ready" if not outcome.all_ready else "the operator never stopped writing")
            + ")"
        )
    elif isinstance(requests, EmulatorRequests):
        noop_ok, noop_writes = _noop_emulator(requests, operator, bodies, resync=resync)
    else:
        noop_ok, noop_writes = _noop_server(requests, operator, models=models, resync=resync)
    hwm_mib = max((_status_kib(p, "VmHWM") for p in sampler.members_seen), default=0) / 1024

    # 4. memory ----------------------------------------------------------------------------------
    peak_mib = max(sampler.peak_kib / 1024, hwm_mib)
    say(
        f"info: operator RSS idle before the creates {rss_idle_mib:.1f} MiB; peak of "
        f"{sampler.samples} samples {sampler.peak_kib / 1024:.1f} MiB; VmHWM {hwm_mib:.1f} MiB; "
        f"processes in its group: {len(sampler.members_seen)}"
    )
    figure("peak RSS vs Flux", peak_mib, FLUX_RSS_MIB, "MiB")
    figure("peak RSS vs target", peak_mib, RSS_TARGET_MIB, "MiB")

    outcome.ok &= verdict(
        peak_mib <= RSS_TARGET_MIB, f"peak RSS <= {RSS_TARGET_MIB:g} MiB ({peak_mib:.1f} MiB)"
    )
    outcome.ok &= verdict(
        noop_ok,
        "no-op resync writes == 0 over a pass of every object"
        + (f" ({noop_writes} writes)" if outcome.all_ready and quiet else " (not measured)"),
    )
    if watch is not None:
        watch.stop()
    return outcome


def _noop_emulator(
    requests: EmulatorRequests,
    operator: OperatorProcess,
    bodies: list[dict[str, Any]],
    *,
    resync: float,
) -> tuple[bool, int]:
    """The no-op window on the emulator: until every ModelDeployment was read again (a pass
    reads its object first; its children come from the operator's watch)."""
    models = len(bodies)
    opened = requests.mark()
    passes0, _ = operator_passes(operator)
    window_start = time.monotonic()
    deadline = window_start + 2 * resync + 30
    serving = {b["metadata"]["name"] for b in bodies}

    def serving_get(r: Any) -> bool:
        return (
            origin(r) == "operator"
            and r.method.value == "GET"
            and r.name in serving
            and r.resource is not None
            and r.resource.plural == "modeldeployments"
        )

    seen: set[str] = set()
    cursor = opened
    done_at: float | None = None
    while time.monotonic() < deadline:
        if not operator.alive():
            raise exited(operator)
        new = requests.after(cursor)
        if new:
            cursor = new[-1].id
        seen.update(r.name for r in new if serving_get(r))
        if len(seen) == len(serving) and done_at is None:
            done_at = time.monotonic()
        if done_at is not None and time.monotonic() - done_at >= GRACE_S:
            break
        time.sleep(0.5)
    window_s = time.monotonic() - window_start
    window = [r for r in requests.after(opened) if origin(r) == "operator"]
    writes = [r for r in window if is_write(r)]
    reads = [r for r in window if not is_write(r)]
    passes = sum(1 for r in reads if serving_get(r))
    counted = operator_passes(operator)[0] - passes0
    say(
        f"no-op resync: window of {window_s:.1f} s (resync interval {resync:g} s), "
        f"{len(seen)}/{models} ModelDeployments passed over (read again), {passes} passes in "
        f"all ({counted:g} by the operator's own count)"
    )
    figure("no-op resync writes", len(writes), 0, digits=4)
    figure("no-op resync reads per pass", len(reads) / max(1, passes), READS_PER_PASS, digits=4)
    say(f"no-op resync reads: {len(reads)} in all")
    if writes:
        breakdown("no-op resync writes by request", Counter(map(describe, writes)), models)
        for r in writes[:5]:
            say(f"  {r.method.value} {r.url.path} {json.dumps(r.data)[:400]}")
    breakdown("no-op resync reads by request", Counter(map(read_kind, reads)), models)
    if len(seen) < models:
        say(f"no-op resync: only {len(seen)}/{models} passed over before the deadline")
    return not writes and len(seen) == models, len(writes)


def _noop_server(
    requests: ServerRequests, operator: OperatorProcess, *, models: int, resync: float
) -> tuple[bool, int]:
    """The no-op window on a real server: which object was read cannot be seen there, so it
    lasts until every object's resync was due (1.1 intervals + 3 s) and the operator has
    counted at least N passes."""
    opened = requests.mark()
    passes0, _ = operator_passes(operator)
    window_start = time.monotonic()
    least, deadline = JITTER * resync + GRACE_S, 2 * resync + 30
    passes = 0.0
    while time.monotonic() - window_start < deadline:
        if not operator.alive():
            raise exited(operator)
        passes = operator_passes(operator)[0] - passes0
        if time.monotonic() - window_start >= least and passes >= models:
            break
        time.sleep(1.0)
    window_s = time.monotonic() - window_start
    tally = requests.tally(opened)
    writes, reads = sum(tally.writes.values()), sum(tally.reads.values())
    covered = window_s >= least and passes >= models
    say(
        f"no-op resync: window of {window_s:.1f} s (resync interval {resync:g} s; every object's "
        f"resync due within {least:.0f} s), {passes:g} passes by the operator's own count for "
        f"{models} objects (which objects were passed over cannot be seen at a real server)"
    )
    figure("no-op resync writes", writes, 0, digits=4)
    figure("no-op resync reads per pass", reads / max(1.0, passes), READS_PER_PASS, digits=4)
    say(f"no-op resync reads: {reads} in all")
    if writes:
        breakdown("no-op resync writes by request", tally.writes, models)
    breakdown("no-op resync reads by request", tally.reads, models)
    for note in tally.notes:
        say(f"info: no-op resync: {note}")
    if not covered:
        say(f"no-op resync: only {passes:g} passes for {models} objects before the deadline")
    return not writes and covered, writes


def _events_summary(api: Api) -> None:
    """Events in the namespace by reporting component and reason (one list)."""
    found = api.request("GET", f"/api/v1/namespaces/{NS}/events")["items"]
    by = Counter(
        f"{e.get('reportingComponent') or (e.get('source') or {}).get('component') or '?'} "
        f"{e.get('reason')}"
        for e in found
    )
    say(
        f"info: Events in {NS}: {len(found)}, by reporting component and reason: "
        + ", ".join(f"{label} {n}" for label, n in by.most_common())
    )


def _log_summary(log: Path) -> None:
    """Counts of the operator's warnings and errors, and the most frequent messages."""
    lines = log.read_text(errors="replace").splitlines()
    levels = Counter(
        m[1] for line in lines if (m := re.search(r"\[\s*(DEBUG|INFO|WARNING|ERROR)\s*\]", line))
    )
    say(f"operator log: {len(lines)} lines, by level {dict(sorted(levels.items()))}")
    problems = Counter(
        re.sub(r"\d+", "N", line.split("]", 2)[-1].strip())[:160]
        for line in lines
        if "WARNING" in line or "ERROR" in line
    )
    for message, count in problems.most_common(5):
        say(f"  {count:6d}x {message}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--models", type=int, default=1000, help="N ModelDeployments (1000)")
    parser.add_argument(
        "--workers", type=int, default=16, help="the operator's MLGITOPS_WORKERS (16)"
    )
    parser.add_argument(
        "--timeout", type=float, default=600, help="seconds to wait for all Ready (600)"
    )
    parser.add_argument(
        "--resync-interval",
        type=float,
        default=30,
        help="the operator's --resync-interval; the no-op window lasts about this long (30)",
    )
    parser.add_argument(
        "--ready-by",
        choices=("watch", "list"),
        default="watch",
        help="how readiness is seen: one watch (default), or a list request every 0.5 s, "
        "which costs the emulator a copy of every object per poll",
    )
    parser.add_argument(
        "--registry",
        choices=("server", "sqlite"),
        default="server",
        help="server (default): a real `mlflow server` on the SQLite store, as in a cluster, "
        "reached over MLflow's REST API; sqlite: the operator opens the store itself",
    )
    parser.add_argument(
        "--server-workers",
        type=int,
        default=1,
        help="the mlflow server's --workers (1: on SQLite, a second worker contends for its lock)",
    )
    parser.add_argument(
        "--server-app",
        choices=("gunicorn", "uvicorn"),
        default="gunicorn",
        help="how the mlflow server runs: gunicorn (default; --gunicorn-opts, MLflow 2's default) "
        "or uvicorn (MLflow 3's default, about twice the CPU per request here)",
    )
    parser.add_argument(
        "--kubeconfig",
        type=Path,
        default=None,
        help="run against the real API server of this kubeconfig (admin: it applies the CRDs, "
        f"creates and deletes namespace {NS}) instead of the emulator",
    )
    parser.add_argument(
        "--replicas",
        type=int,
        default=None,
        help="the serving Deployments' replicas (default 1 on the emulator, 0 on a real server, "
        "where pods need a scheduler and a kubelet to become ready)",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="empty directory to work in, kept afterwards with operator.log "
        "(default: a temp dir, removed)",
    )
    args = parser.parse_args(argv)
    if args.models < 1 or args.workers < 1 or args.resync_interval <= 0:
        parser.error("need --models >= 1, --workers >= 1, --resync-interval > 0")
    if args.replicas is not None and args.replicas < 0:
        parser.error("need --replicas >= 0")
    with working_directory(args.workdir, parser, prefix="mlgitops-opbench-") as work:
        say(
            f"operator_scale: {args.models} models, {args.workers} workers, resync "
            f"{args.resync_interval:g} s, timeout {args.timeout:g} s, registry {args.registry}, "
            f"API server {args.kubeconfig or 'the emulator'}, workdir {work}"
        )
        try:
            ok = run(
                work,
                models=args.models,
                workers=args.workers,
                timeout=args.timeout,
                resync=args.resync_interval,
                ready_by=args.ready_by,
                registry=args.registry,
                server_workers=args.server_workers,
                server_app=args.server_app,
                kubeconfig=args.kubeconfig,
                replicas=args.replicas,
            )
        except (RunBroke, AssertionError, OSError) as exc:
            print(f"ERROR {exc}", file=sys.stderr, flush=True)
            return 1
        say(f"targets: {'all met' if ok else 'some missed (see FAIL lines)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
