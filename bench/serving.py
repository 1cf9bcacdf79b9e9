"""Model serving: ``mlgitops serve`` against MLflow's own ``mlflow models serve``, same model, same load.

Both servers serve ``models:/bench.fraud.fraud_detector/2`` (a scikit-learn pipeline on the
breast-cancer dataset, from ``examples.models.seed``) with the same number of
workers, on loopback. A load generator in a second process (raw HTTP/1.1 keep-alive on asyncio,
cheap enough not to be the bottleneck) sends the same bounded number of requests with the same
fixed payload at a fixed concurrency. Rounds alternate between the servers, so drift in the
machine's load hits both. Then the champion of ours is swapped back and forth (config file +
SIGHUP) under the same load, and every response is checked: a 200, predictions equal to what
MLflow computes for the version named in X-Model-Version.

    .venv/bin/python bench/serving.py                       # 3 rounds x 2000 requests, 8 at a time
    .venv/bin/python bench/serving.py --requests 500 --rounds 1 --swaps 2   # a quick run
    .venv/bin/python bench/serving.py --inference-log      # and ours writing an inference table

With ``--inference-log`` a second server of ours (same model, same flags) also writes every
request to a Delta inference table, as a ModelDeployment with ``serving.inferenceTable`` does,
and takes its turn in every round: its figures are printed against ours without the log, which
is what logging costs the request path. Its table is counted once it has stopped (and flushed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from common import free_port, verdict

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
MODEL = "bench.fraud.fraud_detector"
CONTENT_TYPES = {".json": "application/json", ".csv": "text/csv"}
PAYLOADS = ("dataframe_split", "dataframe_records", "inputs", "instances", "csv")


# -- the load generator (runs in its own process) ------------------------------------------------


async def _one_connection(
    port: int,
    request: bytes,
    remaining: list[int],
    latencies: list[float],
    outcomes: dict[str, int],
    seen: dict[str, int] | None,
) -> None:
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    while remaining[0] > 0:
        remaining[0] -= 1
        started = time.perf_counter()
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            assert reader is not None
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ", 2)[1])
            headers = {}
            for line in lines[1:]:
                if line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            latencies.append(time.perf_counter() - started)
            outcomes[str(status)] = outcomes.get(str(status), 0) + 1
            if seen is not None:
                key = f"{headers.get('x-model-version', '?')}\n{body.decode()}"
                seen[key] = seen.get(key, 0) + 1
            if headers.get("connection", "").lower() == "close":
                writer.close()
                reader = writer = None
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as exc:
            outcomes[type(exc).__name__] = outcomes.get(type(exc).__name__, 0) + 1
            if writer is not None:
                writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()


async def _load(
    port: int, body: bytes, content_type: str, requests: int, concurrency: int, record: bool
) -> dict[str, Any]:
    request = (
        b"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
        + content_type.encode()
        + b"\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )
    remaining = [requests]
    latencies: list[float] = []
    outcomes: dict[str, int] = {}
    seen: dict[str, int] | None = {} if record else None
    started = time.perf_counter()
    await asyncio.gather(
        *(
            _one_connection(port, request, remaining, latencies, outcomes, seen)
            for _ in range(concurrency)
        )
    )
    return {
        "wall": time.perf_counter() - started,
        "latencies": latencies,
        "outcomes": outcomes,
        "seen": seen,
    }


def loadgen_main(argv: list[str]) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--body-file", type=Path, required=True)
    p.add_argument("--requests", type=int, required=True)
    p.add_argument("--concurrency", type=int, required=True)
    p.add_argument("--record", action="store_true")
    a = p.parse_args(argv)
    result = asyncio.run(
        _load(
            a.port,
            a.body_file.read_bytes(),
            CONTENT_TYPES[a.body_file.suffix],
            a.requests,
            a.concurrency,
            a.record,
        )
    )
    sys.stdout.write(json.dumps(result))


# -- the benchmark -------------------------------------------------------------------------------


def wait_ready(
    port: int, proc: subprocess.Popen[bytes], what: str, started: float, timeout: float = 180
) -> float:
    while time.monotonic() - started < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as r:
                if r.status == 200:
                    return time.monotonic() - started
        except (OSError, urllib.error.HTTPError):
            pass
        time.sleep(0.2)
    raise SystemExit(f"{what} not ready after {timeout:.0f}s")


def loadgen(
    port: int, body_file: Path, requests: int, concurrency: int, *, record: bool = False
) -> list[str]:
    """The command line of the load generator: this script, in a process of its own."""
    cmd = [sys.executable, __file__, "_loadgen", "--port", str(port), "--body-file", str(body_file)]
    cmd += ["--requests", str(requests), "--concurrency", str(concurrency)]
    return [*cmd, "--record"] if record else cmd


def run_load(port: int, body_file: Path, requests: int, concurrency: int) -> dict[str, Any]:
    done = subprocess.run(
        loadgen(port, body_file, requests, concurrency), capture_output=True, check=True
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """A server in a session of its own, its output to ``log``."""
    with log.open("wb") as out:
        return subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def line(name: str, value: float, base: float, unit: str) -> str:
    ratio = value / base if base else float("nan")
    return f"{name}: {value:.2f} {unit}  (mlflow: {base:.2f} {unit}, ratio: {ratio:.2f})"


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--requests", type=int, default=2000, help="requests per round per server")
    p.add_argument("--concurrency", type=int, default=8, help="connections of the load generator")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds per server")
    p.add_argument("--rows", type=int, default=5, help="rows in the fixed payload")
    p.add_argument("--payload", choices=PAYLOADS, default="dataframe_split", help="its format")
    p.add_argument("--workers", type=int, default=1, help="worker processes of each server")
    p.add_argument("--warmup", type=int, default=300, help="unmeasured requests per server")
    p.add_argument("--swaps", type=int, default=6, help="champion swaps during the swap phase")
    p.add_argument("--workdir", type=Path, help="keep the store and logs here (must be empty)")
    p.add_argument(
        "--inference-log",
        action="store_true",
        help="also run ours writing a Delta inference table, against ours without",
    )
    args = p.parse_args()

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    tmp = None
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
        if any(args.workdir.iterdir()):
            raise SystemExit(f"--workdir {args.workdir}: must be empty")
        work = args.workdir.resolve()
    else:
        tmp = tempfile.TemporaryDirectory(prefix="mlgitops-bench-serving-")
        work = Path(tmp.name)

    started = time.monotonic()
    from examples.models import EXAMPLES, dataset, seed

    tracking = f"sqlite:///{work / 'mlflow.db'}"
    seed(
        tracking_uri=tracking,
        artifact_dir=work / "artifacts",
        catalogs=["bench"],
        examples=[e for e in EXAMPLES if e.task == "classifier"],
    )
    import mlflow.pyfunc
    import pandas as pd
    from mlflow.pyfunc import scoring_server

    mlflow.set_tracking_uri(tracking)
    models = {v: mlflow.pyfunc.load_model(f"models:/{MODEL}/{v}") for v in ("2", "3")}
    # A fixed payload on which versions 2 and 3 disagree, so a swap shows in every response.
    x, _ = dataset("classifier")
    differ = x[models["2"].predict(x) != models["3"].predict(x)]
    first = differ.head(min(1, args.rows))
    rest = x.drop(first.index).sample(n=args.rows - len(first), random_state=7)
    rows = pd.concat([first, rest])
    records = json.loads(rows.to_json(orient="records"))
    if args.payload == "csv":
        text = rows.to_csv(index=False)
    elif args.payload == "dataframe_split":
        text = json.dumps({args.payload: json.loads(rows.to_json(orient="split", index=False))})
    elif args.payload == "inputs":
        text = json.dumps({args.payload: {c: rows[c].tolist() for c in rows.columns}})
    else:
        text = json.dumps({args.payload: records})
    body = text.encode()
    body_file = work / ("payload.csv" if args.payload == "csv" else "payload.json")
    body_file.write_bytes(body)
    content_type = CONTENT_TYPES[body_file.suffix]
    # What each version must answer, computed by MLflow's own scoring code.
    expected = {
        v: scoring_server.invocations(body, content_type, m, m.metadata.get_input_schema()).response
        for v, m in models.items()
    }
    if expected["2"] == expected["3"]:
        print("note: versions 2 and 3 predict the same on this payload")

    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": tracking,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    config = work / "serving.json"
    config.write_text(json.dumps({"champion": f"models:/{MODEL}/2"}))
    ours_port, theirs_port = free_port(), free_port()
    launched = time.monotonic()
    mlflow_serve = [str(BIN / "mlflow"), "models", "serve", "-m", f"models:/{MODEL}/2"]
    mlflow_serve += ["--env-manager", "local", "-h", "127.0.0.1", "-p", str(theirs_port)]
    theirs = start([*mlflow_serve, "-w", str(args.workers)], env, work / "mlflow.log")
    serve = [str(BIN / "mlgitops"), "serve", "--config", str(config), "--host", "127.0.0.1"]
    serve += ["--workers", str(args.workers)]
    ours = start([*serve, "--port", str(ours_port)], env, work / "ours.log")
    table = work / "inference"
    logged: subprocess.Popen[bytes] | None = None
    ports = {"ours": ours_port, "mlflow": theirs_port}
    if args.inference_log:
        ports["logged"] = free_port()
        logged = start(
            [*serve, "--port", str(ports["logged"]), "--inference-log", str(table)],
            env,
            work / "logged.log",
        )
    try:
        t_theirs = wait_ready(theirs_port, theirs, "mlflow models serve", launched)
        t_ours = wait_ready(ours_port, ours, "mlgitops serve", launched)
        if logged is not None:
            wait_ready(ports["logged"], logged, "mlgitops serve --inference-log", launched)
        print(
            f"setup: {time.monotonic() - started:.1f}s (ready after launch, both started together: mlgitops "
            f"{t_ours:.1f}s, mlflow {t_theirs:.1f}s); {os.cpu_count()} CPUs; "
            f"{args.workers} worker(s) each; payload {args.payload}, {args.rows} rows x "
            f"{len(rows.columns)} columns ({len(body)} bytes)"
        )
        pids = {"ours": ours.pid, "mlflow": theirs.pid}
        if logged is not None:
            pids["logged"] = logged.pid
        code = measure(args, work, body_file, expected, ours, ports, pids, config)
        if logged is not None:
            stop(logged)  # it flushes the inference log on the way out
            count_logged(table, args.warmup + args.rounds * args.requests, args.rows)
        return code
    finally:
        stop(ours)
        stop(theirs)
        if logged is not None:
            stop(logged)
        if tmp is not None:
            tmp.cleanup()


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process and its descendants so far (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError, IndexError):
            continue
    return total


def count_logged(table: Path, requests: int, rows: int) -> None:
    """What the inference table holds after the run, against what was sent to its server."""
    from deltalake import DeltaTable

    if not (table / "_delta_log").exists():
        print(f"inference table rows: 0  (target: {requests * rows}, one per input row)")
        return
    data = DeltaTable(str(table)).to_pyarrow_table(columns=["request_id"])
    logged = len(set(data.column("request_id").to_pylist()))
    print(
        f"inference table rows: {data.num_rows}  (target: {requests * rows}, one per input row "
        f"of {requests} requests; {logged} requests logged)"
    )


def measure(
    args: argparse.Namespace,
    work: Path,
    body_file: Path,
    expected: dict[str, str],
    ours: subprocess.Popen[bytes],
    ports: dict[str, int],
    pids: dict[str, int],
    config: Path,
) -> int:
    ours_port = ports["ours"]
    for port in ports.values():
        run_load(port, body_file, args.warmup, args.concurrency)
    # CPU time is less sensitive than wall time to what else runs on a shared machine.
    cpu_start = {who: cpu_seconds(pid) for who, pid in pids.items()}
    lat: dict[str, list[float]] = {who: [] for who in ports}
    wall = dict.fromkeys(ports, 0.0)
    failed = dict.fromkeys(ports, 0)
    per_round: dict[str, list[float]] = {who: [] for who in ports}
    names = list(ports)
    for r in range(args.rounds):
        # The servers take turns, the first of one round last in the next.
        order = names[r % len(names) :] + names[: r % len(names)]
        for who in order:
            res = run_load(ports[who], body_file, args.requests, args.concurrency)
            lat[who].extend(res["latencies"])
            wall[who] += res["wall"]
            failed[who] += sum(n for k, n in res["outcomes"].items() if k != "200")
            per_round[who].append(args.requests / res["wall"])
    time.sleep(3)  # what the inference log still had buffered is written meanwhile
    cpu = {who: (cpu_seconds(pid) - cpu_start[who]) / len(lat[who]) for who, pid in pids.items()}
    tput = {who: len(lat[who]) / wall[who] for who in lat}
    p50 = {who: pct(lat[who], 0.50) * 1000 for who in lat}
    p99 = {who: pct(lat[who], 0.99) * 1000 for who in lat}
    print(
        f"load: {args.rounds} round(s) x {args.requests} requests per server, "
        f"concurrency {args.concurrency}, rounds alternate"
    )
    for who in ports:
        rounds = ", ".join(f"{v:.0f}" for v in per_round[who])
        print(f"info: {who} throughput per round (req/s): {rounds}; failed requests {failed[who]}")
    print(line("throughput", tput["ours"], tput["mlflow"], "req/s"))
    print(line("p50 latency", p50["ours"], p50["mlflow"], "ms"))
    print(line("p99 latency", p99["ours"], p99["mlflow"], "ms"))
    print(
        f"info: mean latency {statistics.fmean(lat['ours']) * 1000:.2f} ms "
        f"(mlflow: {statistics.fmean(lat['mlflow']) * 1000:.2f} ms)"
    )
    print(
        f"info: CPU per request {cpu['ours'] * 1000:.3f} ms (mlflow: {cpu['mlflow'] * 1000:.3f} "
        "ms), the server's processes, idle time included"
    )
    if "logged" in ports:
        for name, value, base, unit in (
            ("CPU per request", cpu["logged"] * 1000, cpu["ours"] * 1000, "ms"),
            ("throughput", tput["logged"], tput["ours"], "req/s"),
            ("p50 latency", p50["logged"], p50["ours"], "ms"),
            ("p99 latency", p99["logged"], p99["ours"], "ms"),
        ):
            print(
                f"with inference log, {name}: {value:.2f} {unit}  (without: {base:.2f} {unit}, "
                f"ratio: {value / base:.2f})"
            )

    # Champion swaps under the same load: 2 -> 3 -> 2 ... by config file + SIGHUP.
    swap_requests = max(args.requests, 200 * (args.swaps + 1))
    proc = subprocess.Popen(
        loadgen(ours_port, body_file, swap_requests, args.concurrency, record=True),
        stdout=subprocess.PIPE,
    )
    expected_wall = swap_requests / tput["ours"]
    interval = expected_wall / (args.swaps + 1)
    swapped = 0
    for i in range(args.swaps):
        time.sleep(interval)
        if proc.poll() is not None:
            break
        version = "3" if i % 2 == 0 else "2"
        tmp = config.with_suffix(".tmp")
        tmp.write_text(json.dumps({"champion": f"models:/{MODEL}/{version}"}))
        tmp.replace(config)
        os.kill(ours.pid, signal.SIGHUP)
        swapped += 1
    out, _ = proc.communicate(timeout=600)
    res = json.loads(out)
    outcomes = res["outcomes"]
    swap_failed = sum(n for k, n in outcomes.items() if k != "200")
    by_version: dict[str, int] = {}
    mismatched = 0
    for key, n in res["seen"].items():
        version, _, got = key.partition("\n")
        by_version[version] = by_version.get(version, 0) + n
        if expected.get(version) != got:
            mismatched += n
    served = ", ".join(f"v{v}: {n}" for v, n in sorted(by_version.items()))
    print(
        f"swap: {swapped} champion swaps (config file + SIGHUP) during {swap_requests} requests "
        f"at concurrency {args.concurrency}; answered by {served}; p99 "
        f"{pct(res['latencies'], 0.99) * 1000:.2f} ms"
    )
    print(f"swap failed requests: {swap_failed}  (target: 0; outcomes {outcomes})")
    print(f"swap responses not exactly the named version's predictions: {mismatched}  (target: 0)")

    checks = [
        ("throughput ratio >= 1.0", tput["ours"] / tput["mlflow"] >= 1.0),
        ("p99 ratio <= 1.1", p99["ours"] / p99["mlflow"] <= 1.1),
        ("swap failures == 0", swap_failed == 0 and mismatched == 0 and swapped > 0),
    ]
    for name, ok in checks:
        verdict(ok, name)
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_loadgen":
        loadgen_main(sys.argv[2:])
    else:
        sys.path.insert(0, str(ROOT))
        raise SystemExit(main())
