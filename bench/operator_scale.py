"""How the kopf operator copes with N ModelDeployments created at once: time, memory, API writes.

Flux's kustomize-controller publishes 1,000 Kustomizations reconciled in 4 min 16 s at 175 MiB;
our targets for the operator are all N=1000 Ready within 60 s, a peak RSS of 250 MiB, and a pass
over an unchanged object that writes nothing. This benchmark runs the real ``mlgitops operator``
subprocess against the Kubernetes API emulator (``tests/k8s``, served from this process) and a
SQLite MLflow registry holding N models with 2 PASSED versions each, then:

1. creates N ModelDeployments as fast as the emulator takes them (concurrent POSTs; champion 1,
   challenger 2 with 10% traffic on every other one, serving, batch inference and monitoring on
   all, so each has 4 children: a Deployment, a Service and 2 CronJobs), and waits until every
   one has shown the condition Ready=True;
2. samples the RSS of the operator's process group every 0.2 s (and reads VmHWM at the end);
3. counts the operator's write requests per ModelDeployment at the emulator, beside the floor of 4
   children + 1 status write, with a breakdown by method, resource and body;
4. waits for the resync timer to pass over every object once more and counts the writes (target
   0) and reads of that window.

How requests are attributed: the emulator keeps every request it served (kmock's request log:
method, path, headers, parsed body). This benchmark sends its own with the User-Agent
``mlgitops-bench``, kubectl sends ``kubectl/...``; everything else came from the operator (kopf's
own client and the ``kubernetes`` client it uses for children). A window is the requests whose
sequence number is past the last one seen when the window opened, so no counter is reset.

The create phase ends when the operator has made no write for 20 s (longer than its 15 s retry
delay, so a failed pass retried later still counts here), at most twice the resync interval plus
30 s. The no-op resync window opens then: the operator's timer runs every ``--resync-interval``
seconds per object (default 30, the first run at a random delay up to the interval), and every
pass GETs the object's serving Deployment first, so the window closes 3 s after every
ModelDeployment's serving Deployment has been read again (a whole pass over every object), or
after twice the interval plus 30 s (then FAIL). Nothing is polled meanwhile: readiness comes from
one watch opened before the creates (``--ready-by list`` polls a list every 0.5 s instead, which
costs the emulator a deep copy and serialization of every object per poll).

The machines are shared and noisy: each figure is printed beside a baseline
(Flux's published figures and our targets are fixed numbers; the request floors are exact), and
the CPU time of the operator and of this process (which serves the emulator) is printed, so a run
limited by the emulator shows as such. It is a benchmark, not a test: a missed target prints FAIL
and exits 0; only a run that breaks (the operator dies, the emulator fails) exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Sequence
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

from controller.planning.children import child_name
from tests.helpers import MlflowServer, OperatorProcess

ROOT = Path(__file__).resolve().parents[1]
MD_PATH = f"/apis/{GROUP_VERSION}/namespaces/{NS}/modeldeployments"
USER_AGENT = "mlgitops-bench"

CHILDREN = 4  # Deployment, Service, 2 CronJobs
WRITE_FLOOR = CHILDREN + 1  # one apply per child, one status write
READY_TARGET_S = 60.0
FLUX_READY_S = 256.0  # 1,000 Kustomizations in 4 min 16 s (Flux's published figure)
RSS_TARGET_MIB = 250.0
FLUX_RSS_MIB = 175.0
POLL_S = 0.5
SAMPLE_S = 0.2
QUIET_S = 20.0  # no operator write for this long ends the create phase (its retry delay is 15 s)
GRACE_S = 3.0  # after the last object's pass was seen, before the resync window closes
CREATE_CONCURRENCY = 32


# --- printing -------------------------------------------------------------------------------------


def say(text: str) -> None:
    print(text, flush=True)


class RunBroke(Exception):
    """The run itself failed (not a missed target): exit 1."""


# --- setup ----------------------------------------------------------------------------------------


def deployment(i: int) -> dict[str, Any]:
    """ModelDeployment ``m<i>``: 4 children, and a challenger on every other one."""
    name, challenger = f"m{i}", i % 2 == 0
    spec: dict[str, Any] = {
        "model": model_name(i),
        "champion": {"version": "1"},
        "serving": {
            "enabled": True,
            "replicas": 1,
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


# --- the operator process -------------------------------------------------------------------------


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


# --- requests at the emulator ---------------------------------------------------------------------


def requests_after(emulator: Any, after: int) -> list[Any]:
    """kmock's request log (every request the emulator served), past sequence number ``after``."""
    return [r for r in list(emulator) if r.id > after]


def last_id(emulator: Any) -> int:
    found = list(emulator)
    return found[-1].id if found else -1


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


def breakdown(title: str, labels: Counter[str], per: int) -> None:
    say(f"{title}:")
    for label, count in sorted(labels.items(), key=lambda kv: (-kv[1], kv[0])):
        say(f"  {count:7d}  {count / per:6.2f}/ModelDeployment  {label}")


# --- phases ---------------------------------------------------------------------------------------


async def _post_all(url: str, bodies: list[dict[str, Any]]) -> list[int]:
    semaphore = asyncio.Semaphore(CREATE_CONCURRENCY)
    headers = {"User-Agent": USER_AGENT, "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=CREATE_CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def post(body: dict[str, Any]) -> int:
            async with semaphore, session.post(url + MD_PATH, data=json.dumps(body)) as response:
                await response.read()
                return response.status

        return await asyncio.gather(*(post(b) for b in bodies))


def is_ready(obj: dict[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (obj.get("status") or {}).get("conditions", [])
    )


def list_mds(url: str) -> dict[str, Any]:
    request = urllib.request.Request(url + MD_PATH, headers={"User-Agent": USER_AGENT})
    with urllib.request.urlopen(request, timeout=60) as r:
        found: dict[str, Any] = json.loads(r.read())
    return found


def list_ready(url: str) -> set[str]:
    """Names of the ModelDeployments with Ready=True, from one list request."""
    return {o["metadata"]["name"] for o in list_mds(url)["items"] if is_ready(o)}


@dataclass
class ReadyWatch:
    """One watch on ModelDeployments, from before the creates: when each first became Ready.

    Costs the emulator one serialization per ModelDeployment change, where a list costs one
    deep copy and serialization of every object per poll.
    """

    url: str
    since: str
    ready_at: dict[str, float] = field(default_factory=dict)
    regressed: Counter[str] = field(default_factory=Counter)  # Ready=True, then not any more
    events: int = 0
    error: BaseException | None = None

    def start(self) -> None:
        threading.Thread(target=self._run, name="ready-watch", daemon=True).start()

    def _run(self) -> None:
        query = f"?watch=true&resourceVersion={self.since}&timeoutSeconds=86400"
        request = urllib.request.Request(
            self.url + MD_PATH + query, headers={"User-Agent": USER_AGENT}
        )
        try:
            with urllib.request.urlopen(request, timeout=86400) as stream:
                for line in stream:
                    event = json.loads(line)
                    self.events += 1
                    obj = event["object"]
                    name = obj["metadata"]["name"]
                    if is_ready(obj):
                        self.ready_at.setdefault(name, time.monotonic())
                    elif name in self.ready_at:
                        self.regressed[name] += 1
        except Exception as exc:  # ends at the emulator's shutdown; anything earlier is a fault
            self.error = exc


def count_children(url: str) -> dict[str, int]:
    paths = {
        "Deployment": f"/apis/apps/v1/namespaces/{NS}/deployments",
        "Service": f"/api/v1/namespaces/{NS}/services",
        "CronJob": f"/apis/batch/v1/namespaces/{NS}/cronjobs",
    }
    found = {}
    for kind, path in paths.items():
        request = urllib.request.Request(url + path, headers={"User-Agent": USER_AGENT})
        with urllib.request.urlopen(request, timeout=60) as r:
            found[kind] = len(json.loads(r.read())["items"])
    return found


@dataclass
class Outcome:
    ok: bool = True
    all_ready: bool = False


def wait_watching(emulator: Any, operator: OperatorProcess, timeout: float) -> float:
    """Until the operator has started its watch on ModelDeployments; returns seconds waited."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if not operator.alive():
            raise exited(operator)
        for r in list(emulator):
            if origin(r) == "operator" and is_watch(r) and r.url.path == MD_PATH:
                return time.monotonic() - start
        time.sleep(0.2)
    raise RunBroke(
        f"the operator did not watch ModelDeployments in {timeout:g} s:\n{operator.tail()}"
    )


def wait_quiet(
    emulator: Any, operator: OperatorProcess, *, after: int, cap: float
) -> tuple[float, bool]:
    """Until the operator has made no write for QUIET_S (at most ``cap`` s): (seconds, quiet)."""
    start = last_change = time.monotonic()
    cursor, writes = after, 0
    while time.monotonic() - start < cap:
        if not operator.alive():
            raise exited(operator)
        new = requests_after(emulator, cursor)
        if new:
            cursor = new[-1].id
        if fresh := sum(1 for r in new if origin(r) == "operator" and is_write(r)):
            writes += fresh
            last_change = time.monotonic()
        if time.monotonic() - last_change >= QUIET_S:
            return time.monotonic() - start, True
        time.sleep(0.5)
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
) -> bool:
    from tests.k8s.fixtures import start_emulator

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
                f"setup: mlflow server ({server_app}, {server_workers} worker(s)) on that SQLite store at "
                f"{server.url} in {time.perf_counter() - start:.2f} s; the operator speaks "
                "REST to it"
            )
        else:
            say("setup: the operator opens the SQLite store itself (MlflowClient: imports mlflow)")
        k8s = stack.enter_context(start_emulator(directory=workdir))
        start = time.perf_counter()
        for crd in sorted((ROOT / "manifests/crds").glob("mlgitops.io_*.yaml")):
            k8s.emulator.add_crd(yaml.safe_load(crd.read_text()))
        namespace = f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {NS}}}\n"
        k8s.kubectl("apply", "--validate=false", "-f", "-", input=namespace)
        k8s.kubectl(
            "apply", "--validate=false", "-n", NS, "-f", "-", input=environment_yaml(tracking_uri)
        )
        say(
            f"setup: emulator at {k8s.url}, CRDs, namespace {NS}, Environment {ENV} "
            f"in {time.perf_counter() - start:.2f} s"
        )

        operator = start_operator(
            kubeconfig=k8s.kubeconfig,
            workdir=workdir,
            resync=resync,
            workers=workers,
            log=workdir / "operator.log",
        )
        sampler = Sampler(pgid=operator.proc.pid)
        sampler.start()
        try:
            outcome = _measure(
                k8s,
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
            stop_s = operator.stop()
            say(f"operator: stopped in {stop_s:.1f} s (exit code {operator.proc.returncode})")
            _log_summary(operator.log)
    return outcome.ok


def _measure(
    k8s: Any,
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
    emulator, url = k8s.emulator, k8s.url
    start = time.monotonic()
    while not operator.healthy():
        if not operator.alive():
            raise exited(operator)
        if time.monotonic() - start > 60:
            raise RunBroke(f"no /healthz in 60 s:\n{operator.tail()}")
        time.sleep(0.2)
    healthy_s = time.monotonic() - start
    watching_s = wait_watching(emulator, operator, 60)
    say(
        f"setup: operator pid {operator.proc.pid} healthy in {healthy_s:.2f} s, "
        f"watching ModelDeployments {watching_s:.2f} s later"
    )
    rss_idle_mib = sum(_status_kib(p, "VmRSS") for p in group_members(operator.proc.pid)) / 1024

    # 1. create N at once, poll until all Ready -----------------------------------------------
    bodies = [deployment(i) for i in range(models)]
    watch: ReadyWatch | None = None
    if ready_by == "watch":
        watch = ReadyWatch(url, list_mds(url)["metadata"]["resourceVersion"])
        watch.start()
    before_create = last_id(emulator)
    cpu_op0, cpu_me0 = cpu_seconds(group_members(operator.proc.pid)), time.process_time()
    cpu_srv0 = cpu_seconds(group_members(server_pid)) if server_pid else 0.0
    t0 = time.monotonic()
    statuses = asyncio.run(_post_all(url, bodies))
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
        if watch is not None:
            if watch.error is not None:
                raise RunBroke(f"the ready watch failed: {watch.error!r}")
        else:
            poll_start = time.monotonic()
            for name in list_ready(url):
                ready_at.setdefault(name, time.monotonic())
            polls.append(time.monotonic() - poll_start)
        elapsed = time.monotonic() - t0
        if elapsed >= next_progress and len(ready_at) < models:
            say(f"progress: {elapsed:6.1f} s  {len(ready_at)}/{models} Ready")
            next_progress += 5.0
        time.sleep(POLL_S)
    waited_s = time.monotonic() - t0
    cpu_op = cpu_seconds(group_members(operator.proc.pid)) - cpu_op0
    cpu_me = time.process_time() - cpu_me0
    cpu_srv = cpu_seconds(group_members(server_pid)) - cpu_srv0 if server_pid else 0.0
    ready = len(ready_at)
    outcome.all_ready = ready >= models
    times = sorted(t - t0 for t in ready_at.values())
    ready_s = times[-1] if outcome.all_ready else waited_s
    say(f"ready: {ready}/{models} ModelDeployments Ready after {ready_s:.1f} s")
    if times:
        say(
            "info: time to Ready per ModelDeployment: "
            + ", ".join(
                f"p{p} {times[min(len(times) - 1, len(times) * p // 100)]:.1f} s"
                for p in (10, 50, 90)
            )
            + f", max {times[-1]:.1f} s"
        )
    if watch is not None:
        say(f"info: readiness from one watch ({watch.events} events), no polling")
    elif polls:
        say(
            f"info: readiness from {len(polls)} list polls of ~{sum(polls) / len(polls) * 1000:.0f}"
            f" ms each (max {max(polls) * 1000:.0f} ms, {sum(polls):.1f} s in all) that the "
            "emulator served meanwhile"
        )
    say(
        f"info: CPU over those {waited_s:.1f} s: operator {cpu_op:.1f} s "
        f"({cpu_op / waited_s:.0%} of one core), this process (emulator + bench) {cpu_me:.1f} s "
        f"({cpu_me / waited_s:.0%}), mlflow server {cpu_srv:.1f} s ({cpu_srv / waited_s:.0%}); "
        f"the machine has {os.cpu_count()} cores"
    )
    code, text = operator.get("/metrics")
    if code == 200 and (passes := _metric(text, "mlgitops_reconcile_duration_seconds_count")):
        spent = _metric(text, "mlgitops_reconcile_duration_seconds_sum")
        say(
            f"info: operator passes so far (create, update, resume, timer, retries): "
            f"{passes:g} for {models} objects, {spent / passes * 1000:.0f} ms each on average "
            f"({spent:.1f} s in all, on {workers} worker threads)"
        )
    figure("all Ready vs Flux 1,000 Kustomizations", ready_s, FLUX_READY_S, "s")
    figure("all Ready vs target", ready_s, READY_TARGET_S, "s")

    # 2. requests of the create phase (until the operator stops writing) ------------------------
    cap = max(60.0, 2 * resync + 30)
    quiet_s, quiet = wait_quiet(emulator, operator, after=before_create, cap=cap)
    create_reqs = [r for r in requests_after(emulator, before_create) if origin(r) == "operator"]
    listed = list_ready(url)  # cross-check the watch with one list, once all is quiet
    regressed = dict(watch.regressed) if watch is not None else {}
    state = f"no operator write for {QUIET_S:g} s" if quiet else "the operator still writing"
    say(f"settled: {state} {quiet_s:.1f} s after all Ready; {len(listed)}/{models} Ready in a list")
    if regressed:
        names = ", ".join(sorted(regressed)[:10])
        say(f"info: {len(regressed)} went from Ready=True back to not Ready meanwhile: {names}")
    retries = operator.log.read_text(errors="replace").count("failed temporarily")
    if retries:
        say(f"info: {retries} handler runs failed temporarily (see the operator log summary)")
    outcome.ok &= verdict(
        outcome.all_ready and ready_s <= READY_TARGET_S and len(listed) == models,
        f"all {models} Ready <= {READY_TARGET_S:g} s "
        f"({ready}/{models} Ready after {ready_s:.1f} s, {len(listed)} still Ready when settled)",
    )
    writes = [r for r in create_reqs if is_write(r)]
    reads = [r for r in create_reqs if not is_write(r)]
    say(
        f"create phase: operator requests from the first POST until it settled: "
        f"{len(writes)} writes, {len(reads)} reads (the benchmark's own "
        f"{models} POSTs, watch and lists excluded by User-Agent)"
    )
    figure("create writes per ModelDeployment", len(writes) / models, WRITE_FLOOR, digits=4)
    breakdown("create writes by request", Counter(describe(r) for r in writes), models)
    breakdown("create reads by request", Counter(read_kind(r) for r in reads), models)
    children = count_children(url)
    say(
        f"children: {children['Deployment']} Deployments, {children['Service']} Services, "
        f"{children['CronJob']} CronJobs (expected {models}, {models}, {2 * models})"
    )

    # 3. a full no-op resync ---------------------------------------------------------------------
    noop_ok = False
    if not outcome.all_ready or not quiet:
        say(
            "no-op resync: skipped ("
            + ("not all Ready" if not outcome.all_ready else "the operator never stopped writing")
            + ")"
        )
    else:
        opened = last_id(emulator)
        window_start = time.monotonic()
        deadline = window_start + 2 * resync + 30
        serving = {child_name(b["metadata"]["name"], "serving"): b for b in bodies}
        seen: set[str] = set()
        cursor = opened
        done_at: float | None = None
        while time.monotonic() < deadline:
            if not operator.alive():
                raise exited(operator)
            new = requests_after(emulator, cursor)
            if new:
                cursor = new[-1].id
            for r in new:
                if (
                    origin(r) == "operator"
                    and r.method.value == "GET"
                    and r.name in serving
                    and r.resource is not None
                    and r.resource.plural == "deployments"
                ):
                    seen.add(r.name)
            if len(seen) == len(serving) and done_at is None:
                done_at = time.monotonic()
            if done_at is not None and time.monotonic() - done_at >= GRACE_S:
                break
            time.sleep(0.5)
        window_s = time.monotonic() - window_start
        window = [r for r in requests_after(emulator, opened) if origin(r) == "operator"]
        noop_writes = [r for r in window if is_write(r)]
        noop_reads = [r for r in window if not is_write(r)]
        passes = sum(
            1
            for r in noop_reads
            if r.method.value == "GET"
            and r.name in serving
            and r.resource is not None
            and r.resource.plural == "deployments"
        )
        say(
            f"no-op resync: window of {window_s:.1f} s (resync interval {resync:g} s), "
            f"{len(seen)}/{models} ModelDeployments passed over, {passes} passes in all"
        )
        figure("no-op resync writes", len(noop_writes), 0, digits=4)
        figure("no-op resync reads per pass", len(noop_reads) / max(1, passes), CHILDREN, digits=4)
        say(f"no-op resync reads: {len(noop_reads)} in all")
        if noop_writes:
            breakdown("no-op resync writes by request", Counter(map(describe, noop_writes)), models)
            for r in noop_writes[:5]:
                say(f"  {r.method.value} {r.url.path} {json.dumps(r.data)[:400]}")
        breakdown("no-op resync reads by request", Counter(map(read_kind, noop_reads)), models)
        noop_ok = not noop_writes and len(seen) == models
        if len(seen) < models:
            say(f"no-op resync: only {len(seen)}/{models} passed over before the deadline")
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
        + (f" ({len(noop_writes)} writes)" if outcome.all_ready else " (not measured)"),
    )
    return outcome


def _metric(text: str, name: str) -> float:
    """A sample without labels from a Prometheus text exposition, or 0."""
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, flags=re.MULTILINE)
    return float(found[1]) if found else 0.0


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
        "--workdir",
        type=Path,
        default=None,
        help="empty directory to work in, kept afterwards with operator.log "
        "(default: a temp dir, removed)",
    )
    args = parser.parse_args(argv)
    if args.models < 1 or args.workers < 1 or args.resync_interval <= 0:
        parser.error("need --models >= 1, --workers >= 1, --resync-interval > 0")
    with working_directory(args.workdir, parser, prefix="mlgitops-opbench-") as work:
        say(
            f"operator_scale: {args.models} models, {args.workers} workers, resync "
            f"{args.resync_interval:g} s, timeout {args.timeout:g} s, registry {args.registry}, "
            f"workdir {work}"
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
            )
        except (RunBroke, AssertionError) as exc:
            print(f"ERROR {exc}", file=sys.stderr, flush=True)
            return 1
        say(f"targets: {'all met' if ok else 'some missed (see FAIL lines)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
