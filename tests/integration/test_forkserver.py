"""Runs forked from the warm server behave as tracked processes do: exit codes, logs, adoption
after a restart, deadlines, and a cold start when the server cannot fork."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.local.forkserver import ForkServer, start_time
from controller.local.tracked import Tracked
from tests.helpers import ConfigRepo, wait_for


@pytest.fixture
def forks(tmp_path: Path) -> Iterator[ForkServer]:
    server = ForkServer(["controller.cli"], log=tmp_path / "forkserver.log")
    yield server
    server.close()


def _stat(pid: int) -> list[str]:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2 :].split()


@pytest.fixture
def stalling_url() -> Iterator[str]:
    """An HTTP "Git server" that accepts connections and never answers: a clone hangs."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/config.git"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    listener.close()


def test_a_forked_run_reports_like_a_cold_one(
    tmp_path: Path, forks: ForkServer, repo: ConfigRepo
) -> None:
    ended = threading.Event()
    tracked = Tracked(tmp_path / "runs", on_exit=ended.set)
    log = tracked.start_mlgitops(
        "good",
        ["validate", "--env", "prod"],
        env={"MLGITOPS_REPO": str(repo.path)},  # the option read from the run's environment
        timeout=120,
        forks=forks,
        header="$ mlgitops validate",
    )
    assert ended.wait(120), "on_exit not called"
    assert tracked.state("good").state == "succeeded"
    text = Path(log).read_text()
    assert text.startswith("$ mlgitops validate\n")
    assert "prod" in text
    assert "no warm start" not in text
    record = json.loads((tmp_path / "runs" / "good.json").read_text())
    assert record["command"] == ["mlgitops", "validate", "--env", "prod"]
    assert isinstance(record["proc_start"], int)

    repo.write("environments/prod/broken.yaml", "kind: ModelDeployment\nspec: [\n")
    repo.commit("broken")
    ended.clear()
    tracked.start_mlgitops(
        "bad",
        ["validate", "--env", "prod", "--repo", str(repo.path)],
        env={},
        timeout=120,
        forks=forks,
    )
    assert ended.wait(120)
    state = tracked.state("bad")
    assert (state.state, state.reason) == ("failed", "exited with code 2")
    assert "broken.yaml" in Path(state.log or "").read_text()


def test_a_forked_job_command_leaving_early_still_records_its_exit_code(
    tmp_path: Path, forks: ForkServer
) -> None:
    """``monitor`` leaves through ``controller.exits`` before the server's child gets its code
    back: the child's hook records it there, and the output reaches the log."""
    ended = threading.Event()
    tracked = Tracked(tmp_path / "runs", on_exit=ended.set)
    args = ["monitor", "--baseline", "base", "--current", "absent"]
    args += ["--data-root", str(tmp_path / "lake"), "--state-dir", str(tmp_path / "state")]
    tracked.start_mlgitops("job", args, env={}, timeout=120, forks=forks)
    assert ended.wait(120), "on_exit not called"
    state = tracked.state("job")
    assert (state.state, state.reason) == ("failed", "exited with code 2")
    text = Path(state.log or "").read_text()
    assert "error: monitor: current table " in text
    assert "no warm start" not in text


def test_a_forked_run_outlives_the_server_and_is_adopted_then_ended_at_its_deadline(
    tmp_path: Path, forks: ForkServer, stalling_url: str
) -> None:
    tracked = Tracked(tmp_path / "runs")
    tracked.start_mlgitops(
        "hangs", ["validate", "--repo", stalling_url], env={}, timeout=600, forks=forks
    )
    record_path = tmp_path / "runs" / "hangs.json"
    pid = json.loads(record_path.read_text())["pid"]
    server = forks._proc
    assert server is not None
    fields = _stat(pid)
    assert int(fields[1]) == server.pid  # forked by the server, not started by this process
    assert int(fields[3]) == pid  # a session of its own: a deadline ends its whole group
    # git, under the run, is in the run's group.
    wait_for("git under the run", lambda: _group(pid) - {pid}, 60)

    forks.close()  # the runtime stopped: its server goes, the run does not
    assert server.poll() is not None
    adopted = Tracked(tmp_path / "runs")  # a restarted runtime
    assert adopted.state("hangs").state == "running"
    assert adopted.ended() == set()

    record = json.loads(record_path.read_text())
    record["deadline"] = time.time() - 1
    record_path.write_text(json.dumps(record))
    state = adopted.state("hangs")
    assert (state.state, state.reason) == ("failed", "timed out after 600 s")
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)  # the run and its git are gone


def test_a_recycled_pid_is_not_taken_for_the_run(tmp_path: Path) -> None:
    tracked = Tracked(tmp_path / "runs")
    (tmp_path / "runs").mkdir()
    me = os.getpid()  # alive, but started at another time than the record says
    (tmp_path / "runs" / "gone.json").write_text(
        json.dumps(
            {
                "pid": me,
                "proc_start": (start_time(me) or 0) + 1,
                "command": ["mlgitops", "validate-model"],
                "started": time.time(),
                "deadline": time.time() + 600,
                "timeout": 600,
            }
        )
    )
    state = tracked.state("gone")
    assert (state.state, state.reason) == (
        "failed",
        "the process ended without an exit code (killed)",
    )
    assert tracked.ended() == {tmp_path / "runs" / "gone.json"}


def test_without_a_working_server_the_run_starts_cold(tmp_path: Path, repo: ConfigRepo) -> None:
    broken = ForkServer(["controller.no_such_module"], log=tmp_path / "forkserver.log")
    ended = threading.Event()
    tracked = Tracked(tmp_path / "runs", on_exit=ended.set)
    try:
        log = tracked.start_mlgitops(
            "cold",
            ["validate", "--env", "prod", "--repo", str(repo.path)],
            env={},
            timeout=120,
            forks=broken,
        )
    finally:
        broken.close()
    assert ended.wait(120)
    assert tracked.state("cold").state == "succeeded"
    assert "no warm start: the fork server failed" in Path(log).read_text()
    assert "controller.no_such_module" in (tmp_path / "forkserver.log").read_text()


def _group(pgid: int) -> set[int]:
    """The processes of group ``pgid``."""
    found = set()
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if int(_stat(int(name))[2]) == pgid:
                    found.add(int(name))
            except (OSError, ValueError, IndexError):
                continue  # ended meanwhile
    return found
