"""Write-back commits against real Git: a bare "remote", clones that push to it meanwhile, a
non-bare repository, and an HTTP remote that asks for credentials (git http-backend).

Every assertion is about what the remote holds afterwards: its branches, commits, messages and
file bytes.
"""

from __future__ import annotations

import base64
import contextlib
import os
import subprocess
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from controller.cli import app
from controller.errors import InvalidInput, SourceUnavailable, WriteBackFailed
from controller.sources import WriteBack
from tests.helpers import ConfigRepo, git

FILE = "environments/prod/fraud-detector.yaml"  # champion "2", challenger "3", policy manual
AUTHOR = "Release Robot <robot@example.com>"


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    """A bare repository holding the example prod and dev environments on main."""
    seed = ConfigRepo(tmp_path / "seed", envs=("prod", "dev"))
    bare = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--bare", str(seed.path), str(bare))
    return bare


def show(remote: Path, rev: str, path: str = FILE) -> bytes:
    return subprocess.run(
        ["git", "show", f"{rev}:{path}"], cwd=remote, check=True, capture_output=True
    ).stdout


def message(remote: Path, rev: str) -> str:
    return git(remote, "log", "-1", "--format=%B", rev)


def trailer_commits(remote: Path, rev: str, trailer: str) -> list[str]:
    out = git(remote, "log", "--format=%H", "--fixed-strings", f"--grep={trailer}", rev)
    return out.split()


class Pusher:
    """Another person: a clone of the remote that commits and pushes between our steps."""

    def __init__(self, remote: Path, where: Path) -> None:
        self.path = where
        git(where.parent, "clone", "-q", str(remote), str(where))
        self.pushed: list[str] = []

    def push(self, rel: str, old: bytes, new: bytes, subject: str) -> str:
        git(self.path, "pull", "-q", "--ff-only")
        target = self.path / rel
        data = target.read_bytes()
        assert old in data, (old, data)
        target.write_bytes(data.replace(old, new, 1))
        git(self.path, "commit", "-q", "-am", subject)
        git(self.path, "push", "-q", "origin", "HEAD:main")
        self.pushed.append(git(self.path, "rev-parse", "HEAD"))
        return self.pushed[-1]


def writer(remote: Path | str, cache: Path, **kwargs: object) -> WriteBack:
    url = remote.as_uri() if isinstance(remote, Path) else remote
    return WriteBack(url, cache_dir=cache, branch="main", author=AUTHOR, **kwargs)  # type: ignore[arg-type]


def test_a_promotion_commit_changes_only_the_pin(remote: Path, tmp_path: Path) -> None:
    before = git(remote, "rev-parse", "main")
    original = show(remote, "main")
    result = writer(remote, tmp_path / "wb").promote(
        env="prod",
        name="fraud-detector",
        path=FILE,
        version="3",
        body="roc_auc 0.91 vs 0.88 (champion)\ncode 1a2b3c4, run 0f9e8d",
    )
    assert result.created
    assert result.branch == "main"
    assert git(remote, "rev-parse", "main") == result.sha
    assert git(remote, "rev-parse", f"{result.sha}^") == before
    assert git(remote, "diff", "--name-only", before, result.sha) == FILE
    assert show(remote, "main") == original.replace(
        b'  champion:\n    version: "2"\n  challenger:\n    version: "3"\n',
        b'  champion:\n    version: "3"\n',
    )
    assert message(remote, "main") == (
        "prod: promote fraud-detector v3 to champion (was v2)\n\n"
        f"{FILE}: spec.champion.version 2 -> 3; spec.challenger (v3) removed.\n\n"
        "roc_auc 0.91 vs 0.88 (champion)\ncode 1a2b3c4, run 0f9e8d\n\n"
        "Mlgitops-Promotion: prod/fraud-detector/champion/v3"
    )
    who = git(remote, "log", "-1", "--format=%an <%ae>|%cn <%ce>", "main")
    assert who == f"{AUTHOR}|{AUTHOR}"


def test_the_trailer_is_searched_first_so_it_is_never_written_twice(
    remote: Path, tmp_path: Path
) -> None:
    first = writer(remote, tmp_path / "wb").promote(
        env="prod", name="fraud-detector", path=FILE, version="5"
    )
    assert first.created
    # Someone edits the pin by hand afterwards: the decision is still the one already written.
    other = Pusher(remote, tmp_path / "other")
    other.push(FILE, b'version: "5"', b'version: "4"', "Pin 4 by hand")
    for cache in (tmp_path / "wb", tmp_path / "fresh"):  # the same clone, and a lost state dir
        again = writer(remote, cache).promote(
            env="prod", name="fraud-detector", path=FILE, version="5"
        )
        assert (again.created, again.sha) == (False, first.sha)
    assert git(remote, "rev-parse", "main") == other.pushed[-1]
    trailer = "Mlgitops-Promotion: prod/fraud-detector/champion/v5"
    assert trailer_commits(remote, "main", trailer) == [first.sha]


def test_a_pin_that_already_holds_the_version_needs_no_commit(remote: Path, tmp_path: Path) -> None:
    before = git(remote, "rev-parse", "main")
    result = writer(remote, tmp_path / "wb").promote(
        env="prod", name="fraud-detector", path=FILE, version="2"
    )
    assert (result.created, result.sha, result.branch) == (False, before, "main")
    assert "already pins champion v2" in result.detail
    assert git(remote, "rev-parse", "main") == before


def test_manual_pushes_a_promotion_branch_and_leaves_the_branch(
    remote: Path, tmp_path: Path
) -> None:
    before = git(remote, "rev-parse", "main")
    wb = writer(remote, tmp_path / "wb")
    result = wb.promote(env="prod", name="fraud-detector", path=FILE, version="3", policy="manual")
    branch = "mlgitops/promote/prod/fraud-detector-v3"
    assert (result.created, result.branch) == (True, branch)
    assert git(remote, "rev-parse", "main") == before
    assert git(remote, "rev-parse", branch) == result.sha
    assert git(remote, "rev-parse", f"{branch}^") == before
    again = wb.promote(env="prod", name="fraud-detector", path=FILE, version="3", policy="manual")
    assert (again.created, again.sha, again.branch) == (False, result.sha, branch)

    # Approved: merged into main and the branch deleted. The trailer is found on main.
    reviewer = Pusher(remote, tmp_path / "reviewer")
    git(reviewer.path, "merge", "-q", "--no-ff", "-m", "Merge the promotion", f"origin/{branch}")
    git(reviewer.path, "push", "-q", "origin", "HEAD:main", f":{branch}")
    merged = writer(remote, tmp_path / "fresh").promote(
        env="prod", name="fraud-detector", path=FILE, version="3", policy="manual"
    )
    assert (merged.created, merged.sha, merged.branch) == (False, result.sha, "main")
    assert branch not in git(remote, "branch", "--list")


def test_a_push_between_read_and_push_loses_nothing(remote: Path, tmp_path: Path) -> None:
    other = Pusher(remote, tmp_path / "other")
    attempts: list[int] = []

    def meanwhile(attempt: int) -> None:
        attempts.append(attempt)
        if attempt == 1:  # the same file, another field: the edit is made again on top of it
            other.push(FILE, b"replicas: 2", b"replicas: 3", "Scale fraud-detector")

    result = writer(remote, tmp_path / "wb", before_push=meanwhile).promote(
        env="prod", name="fraud-detector", path=FILE, version="3"
    )
    assert result.created
    assert attempts == [1, 2]
    assert git(remote, "log", "--format=%H", "-2", "main").split() == [
        result.sha,
        other.pushed[0],
    ]
    data = show(remote, "main")
    assert b"replicas: 3" in data
    assert b'version: "3"' in data
    assert b"challenger:\n" not in data


def test_the_same_decision_pushed_meanwhile_by_another_controller(
    remote: Path, tmp_path: Path
) -> None:
    second = writer(remote, tmp_path / "second")
    found: list[str] = []

    def meanwhile(attempt: int) -> None:
        if attempt == 1:
            found.append(
                second.promote(env="prod", name="fraud-detector", path=FILE, version="3").sha
            )

    result = writer(remote, tmp_path / "first", before_push=meanwhile).promote(
        env="prod", name="fraud-detector", path=FILE, version="3"
    )
    assert (result.created, result.sha) == (False, found[0])
    trailer = "Mlgitops-Promotion: prod/fraud-detector/champion/v3"
    assert trailer_commits(remote, "main", trailer) == [found[0]]


def test_retries_are_bounded(remote: Path, tmp_path: Path) -> None:
    other = Pusher(remote, tmp_path / "other")

    def busy(attempt: int) -> None:
        (other.path / "NOTES").write_text(f"{attempt}\n")
        git(other.path, "add", "NOTES")
        git(other.path, "commit", "-q", "-m", f"Note {attempt}")
        git(other.path, "push", "-q", "origin", "HEAD:main")

    with pytest.raises(WriteBackFailed) as caught:
        writer(remote, tmp_path / "wb", attempts=3, before_push=busy).promote(
            env="prod", name="fraud-detector", path=FILE, version="3"
        )
    assert "moved under each of 3 attempts" in str(caught.value)
    assert git(remote, "log", "--format=%s", "-3", "main").split("\n") == [
        "Note 3",
        "Note 2",
        "Note 1",
    ]
    assert not trailer_commits(remote, "main", "Mlgitops-Promotion")


def test_revert_restores_the_previous_pin(remote: Path, tmp_path: Path) -> None:
    original = show(remote, "main")
    wb = writer(remote, tmp_path / "wb")
    with pytest.raises(InvalidInput, match="nothing to roll back"):
        wb.revert_last(env="prod", name="fraud-detector")
    promoted = wb.promote(env="prod", name="fraud-detector", path=FILE, version="3")
    other = Pusher(remote, tmp_path / "other")
    other.push(FILE, b"replicas: 2", b"replicas: 4", "Scale fraud-detector")

    result = wb.revert_last(env="prod", name="fraud-detector", body="v3 misbehaves in prod")
    assert result.created
    assert git(remote, "rev-parse", "main") == result.sha
    assert show(remote, "main") == original.replace(b"replicas: 2", b"replicas: 4")
    assert message(remote, "main") == (
        'Revert "prod: promote fraud-detector v3 to champion (was v2)"\n\n'
        f"This reverts commit {promoted.sha}.\n\n"
        "prod: fraud-detector champion v3 rolled back; the pin is v2 again.\n\n"
        "v3 misbehaves in prod\n\n"
        "Mlgitops-Rollback: prod/fraud-detector/v3"
    )
    again = writer(remote, tmp_path / "fresh").revert_last(env="prod", name="fraud-detector")
    assert (again.created, again.sha) == (False, result.sha)
    assert "already rolled back" in again.detail

    # v3 was rolled back: its trailer no longer settles it, and only --force writes it again.
    with pytest.raises(InvalidInput, match="rolled back by"):
        wb.promote(env="prod", name="fraud-detector", path=FILE, version="3")
    forced = wb.promote(env="prod", name="fraud-detector", path=FILE, version="3", force=True)
    assert forced.created
    assert b'version: "3"' in show(remote, "main")


def test_a_revert_is_pushed_with_the_same_retries(remote: Path, tmp_path: Path) -> None:
    writer(remote, tmp_path / "wb").promote(
        env="prod", name="fraud-detector", path=FILE, version="3"
    )
    other = Pusher(remote, tmp_path / "other")

    def meanwhile(attempt: int) -> None:
        if attempt == 1:
            other.push("environments/prod/environment.yaml", b"ml-prod", b"ml-prod2", "NS")

    result = writer(remote, tmp_path / "wb", before_push=meanwhile).revert_last(
        env="prod", name="fraud-detector"
    )
    assert result.created
    assert git(remote, "rev-parse", "main^") == other.pushed[0]
    assert b'version: "2"' in show(remote, "main")


def test_a_revert_that_conflicts_is_refused(remote: Path, tmp_path: Path) -> None:
    writer(remote, tmp_path / "wb").promote(
        env="prod", name="fraud-detector", path=FILE, version="3"
    )
    Pusher(remote, tmp_path / "other").push(FILE, b'version: "3"', b'version: "1"', "Pin 1 by hand")
    before = git(remote, "rev-parse", "main")
    with pytest.raises(InvalidInput, match="conflicts with later changes"):
        writer(remote, tmp_path / "wb").revert_last(env="prod", name="fraud-detector")
    assert git(remote, "rev-parse", "main") == before
    # The throwaway worktree is gone; the next operation works.
    assert (
        writer(remote, tmp_path / "wb")
        .promote(env="prod", name="fraud-detector", path=FILE, version="4")
        .created
    )


def test_a_checked_out_branch_of_a_non_bare_repository(tmp_path: Path) -> None:
    local = ConfigRepo(tmp_path / "config")
    wb = WriteBack(str(local.path), cache_dir=tmp_path / "wb", branch="main", author=AUTHOR)
    with pytest.raises(WriteBackFailed) as caught:
        wb.promote(env="prod", name="fraud-detector", path=FILE, version="3")
    assert "git config receive.denyCurrentBranch updateInstead" in str(caught.value)
    assert "\n" not in str(caught.value)

    git(local.path, "config", "receive.denyCurrentBranch", "updateInstead")
    result = wb.promote(env="prod", name="fraud-detector", path=FILE, version="3")
    assert result.created
    assert local.head() == result.sha
    assert 'version: "3"' in local.read(FILE)  # the working tree follows
    assert git(local.path, "status", "--porcelain") == ""


# --- credentials ------------------------------------------------------------------------------

TOKEN = "s3cr3t-T0ken-4c9f"


class _GitHttp(BaseHTTPRequestHandler):
    """git http-backend behind HTTP basic authentication (user ``robot``, password TOKEN)."""

    root: Path

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        expected = "Basic " + base64.b64encode(f"robot:{TOKEN}".encode()).decode()
        if self.headers.get("Authorization") != expected:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path, _, query = self.path.partition("?")
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        env = {
            "PATH": os.environ["PATH"],
            "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REMOTE_USER": "robot",
            "REMOTE_ADDR": "127.0.0.1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
            "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
        }
        done = subprocess.run(
            ["git", "http-backend"], input=body, env=env, capture_output=True, check=True
        )
        head, _, payload = done.stdout.partition(b"\r\n\r\n")
        status, headers = 200, []
        for line in head.decode().split("\r\n"):
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def http_remote(remote: Path) -> Iterator[str]:
    handler = type("Handler", (_GitHttp,), {"root": remote.parent})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/{remote.name}"
    finally:
        server.shutdown()
        server.server_close()


def no_file_holds(root: Path, secret: str) -> bool:
    return not [p for p in root.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


def test_credentials_from_the_environment(
    remote: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with http_remote(remote) as url:
        monkeypatch.delenv("MLGITOPS_GIT_PASSWORD", raising=False)
        with pytest.raises(SourceUnavailable) as caught:
            writer(url, tmp_path / "wb").promote(
                env="prod", name="fraud-detector", path=FILE, version="3"
            )
        assert str(caught.value).startswith(f"repository {url}: ")

        monkeypatch.setenv("MLGITOPS_GIT_USERNAME", "robot")
        monkeypatch.setenv("MLGITOPS_GIT_PASSWORD", TOKEN)
        result = writer(url, tmp_path / "wb").promote(
            env="prod",
            name="fraud-detector",
            path=FILE,
            version="3",
            body=f"evaluated from http://robot:{TOKEN}@mlflow.example.com and {TOKEN}",
        )
    assert result.created
    assert git(remote, "rev-parse", "main") == result.sha
    text = message(remote, "main")
    assert TOKEN not in text
    assert "http://***@mlflow.example.com and ***" in text
    assert TOKEN not in result.detail
    assert no_file_holds(tmp_path / "wb", TOKEN)


def test_credentials_in_the_url_never_show(remote: Path, tmp_path: Path) -> None:
    with http_remote(remote) as url:
        good = url.replace("http://", f"http://robot:{TOKEN}@")
        result = writer(good, tmp_path / "wb").promote(
            env="prod", name="fraud-detector", path=FILE, version="3"
        )
        assert result.created
        assert no_file_holds(tmp_path / "wb", TOKEN)

        wrong = url.replace("http://", f"http://robot:{TOKEN}x@")
        with pytest.raises(SourceUnavailable) as caught:
            writer(wrong, tmp_path / "wb").promote(
                env="prod", name="fraud-detector", path=FILE, version="4"
            )
    assert TOKEN not in str(caught.value)
    assert "***@127.0.0.1" in str(caught.value)
    missing = f"file://robot:{TOKEN}@{tmp_path}/nowhere.git"
    with pytest.raises(SourceUnavailable) as caught:
        writer(missing, tmp_path / "wb").promote(
            env="prod", name="fraud-detector", path=FILE, version="3"
        )
    assert TOKEN not in str(caught.value)
    assert "\n" not in str(caught.value)


# --- the CLI ----------------------------------------------------------------------------------


@pytest.fixture
def mlgitops(tmp_path: Path) -> Callable[..., tuple[int, str, str]]:
    def run(*args: str) -> tuple[int, str, str]:
        argv = [*args, "--state-dir", str(tmp_path / "state")]
        result = CliRunner().invoke(app, argv, catch_exceptions=False)
        return result.exit_code, result.stdout, result.stderr

    return run


def test_cli_promote_and_rollback_end_to_end(
    remote: Path, tmp_path: Path, mlgitops: Callable[..., tuple[int, str, str]]
) -> None:
    # Without a traffic split, so the challenger pin may go (a split needs a challenger).
    other = Pusher(remote, tmp_path / "other")
    other.push(FILE, b"    traffic: {challenger: 10}\n", b"", "No split")
    other.push(FILE, b"policy: manual", b"policy: auto", "Auto promotion")
    url = remote.as_uri()
    original = show(remote, "main")

    code, out, err = mlgitops(
        "promote",
        "fraud-detector",
        "--env",
        "prod",
        "--version",
        "3",
        "--repo",
        url,
        "-m",
        "Promoted after the incident review",
    )
    assert (code, err) == (0, ""), err
    promoted = git(remote, "rev-parse", "main")
    assert out.strip() == f"committed {promoted[:12]} to main: prod/fraud-detector champion v3"
    assert "Promoted after the incident review" in message(remote, "main")
    assert show(remote, "main") == original.replace(
        b'"2"\n  challenger:\n    version: "3"\n', b'"3"\n'
    )

    code, out, _ = mlgitops(
        "promote", "fraud-detector", "--env", "prod", "--version", "3", "--repo", url
    )
    assert code == 0
    assert out.startswith("nothing to do: already committed as")

    code, out, err = mlgitops("rollback", "fraud-detector", "--env", "prod", "--repo", url)
    assert (code, err) == (0, ""), err
    assert out.strip() == (
        f"reverted {promoted[:12]} with {git(remote, 'rev-parse', 'main')[:12]}, pushed to main"
    )
    assert show(remote, "main") == original
    code, out, _ = mlgitops("rollback", "fraud-detector", "--env", "prod", "--repo", url)
    assert code == 0
    assert out.startswith("nothing to do: champion v3")

    code, _, err = mlgitops(
        "promote", "fraud-detector", "--env", "prod", "--version", "3", "--repo", url
    )
    assert code == 2
    assert "only --force writes it again" in err
    code, out, _ = mlgitops(
        "promote", "fraud-detector", "--env", "prod", "--version", "3", "--repo", url, "--force"
    )
    assert code == 0
    assert out.startswith("committed ")


def test_cli_promote_under_manual_policy_pushes_a_branch(
    remote: Path, tmp_path: Path, mlgitops: Callable[..., tuple[int, str, str]]
) -> None:
    before = git(remote, "rev-parse", "main")
    code, out, err = mlgitops(
        "promote",
        "fraud-detector",
        "--env",
        "prod",
        "--version",
        "4",
        "--challenger",
        "--repo",
        remote.as_uri(),
    )
    assert (code, err) == (0, ""), err
    branch = "mlgitops/promote/prod/fraud-detector-challenger-v4"
    assert out.strip() == (
        f"pushed {git(remote, 'rev-parse', branch)[:12]} to branch {branch}: merging it into "
        "main pins challenger v4 (promotion.policy is manual)"
    )
    assert git(remote, "rev-parse", "main") == before
    assert b'challenger:\n    version: "4"' in show(remote, branch)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (
            ["--version", "2", "--challenger"],
            "spec.challenger.version: must differ from spec.champion.version",
        ),
        (["--version", "x3"], "not a version"),
        (["--version", "3", "--env", "nowhere"], "no such environment folder"),
    ],
)
def test_cli_promote_refuses_bad_input(
    remote: Path,
    mlgitops: Callable[..., tuple[int, str, str]],
    args: list[str],
    words: str,
) -> None:
    before = git(remote, "for-each-ref")
    env = [] if "--env" in args else ["--env", "prod"]
    code, out, err = mlgitops("promote", "fraud-detector", *env, *args, "--repo", remote.as_uri())
    assert code == 2
    assert out == ""
    assert err.startswith("error: ")
    assert words in err
    assert err.count("\n") == 1
    assert git(remote, "for-each-ref") == before


def test_cli_unknown_model_and_unreachable_repository(
    tmp_path: Path, remote: Path, mlgitops: Callable[..., tuple[int, str, str]]
) -> None:
    code, _, err = mlgitops("rollback", "nobody", "--env", "prod", "--repo", remote.as_uri())
    assert code == 2
    assert "no ModelDeployment named 'nobody'" in err
    missing = f"file://robot:{TOKEN}@{tmp_path}/nowhere.git"
    code, _, err = mlgitops("rollback", "fraud-detector", "--env", "prod", "--repo", missing)
    assert code == 2
    assert TOKEN not in err
    assert err.count("\n") == 1


def test_cli_over_http_with_credentials_from_the_environment(
    remote: Path,
    tmp_path: Path,
    mlgitops: Callable[..., tuple[int, str, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLGITOPS_GIT_USERNAME", "robot")
    monkeypatch.setenv("MLGITOPS_GIT_PASSWORD", TOKEN)
    dev = "environments/dev/fraud-detector.yaml"  # policy auto, challenger "2"
    with http_remote(remote) as url:
        code, out, err = mlgitops(
            "promote",
            "fraud-detector",
            "--env",
            "dev",
            "--version",
            "4",
            "--challenger",
            "--repo",
            url,
        )
    assert (code, err) == (0, ""), err
    assert out.startswith("committed ")
    assert b'  challenger:\n    version: "4"\n' in show(remote, "main", dev)
    assert no_file_holds(tmp_path / "state", TOKEN)
