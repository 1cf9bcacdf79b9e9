"""Promotions written back to the config repository: one commit per decision, never two.

Git is the only source of truth, so the controller never moves an alias itself: it commits the
new pin and lets the normal sync follow. That commit must survive everything a controller meets:

- **Exactly once.** Each commit carries a trailer naming the decision
  (``Mlgitops-Promotion: prod/fraud-detector/champion/v7``). Before writing, the branch is
  fetched and its history searched for that trailer; when it is there (a crash after the push,
  a second controller, a rerun by hand), that commit is the answer and nothing is written.
- **Nobody else's commit lost.** The push is never forced. A push the remote rejects because
  someone pushed meanwhile is followed by a fetch and the whole decision again on the new head
  (the trailer, whether the pin already holds the version, the edit itself), a bounded number of
  times; then a clear error.
- **Nothing but the pin.** The file is edited by ``controller.pipeline.pins``, byte for byte.
- **Never in a user's working tree.** The work happens in a bare clone of our own under the
  state directory (``<state>/writeback/<hash of the repository>``), through Git's plumbing
  (a private index, ``commit-tree``): no checkout to leave dirty, no hook to run. Only a revert
  uses a throwaway worktree, since ``git revert`` is the reference for what a revert is.
- **Credentials nowhere.** The URL, with any ``user:token@``, is passed to each fetch and push
  and never stored; environment credentials reach Git as ``credentials.git_env`` describes; every
  message is scrubbed.

With policy ``manual`` the same commit goes to a new branch ``mlgitops/promote/<env>/<name>-v<N>``
made from the write-back branch, and merging it is the approval. A rollback is ``git revert`` of
the newest promotion commit, pushed to the write-back branch.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import git

from controller.errors import InvalidInput, Problem, SourceUnavailable, WriteBackFailed
from controller.pipeline.pins import edit_pins, read_pins
from controller.pipeline.promotion import PROMOTION_TRAILER as PROMOTION_TRAILER
from controller.redact import redact
from controller.sources.credentials import git_env, scrub
from controller.sources.git import _is_url

ROLLBACK_TRAILER = "Mlgitops-Rollback"
ATTEMPTS = 5

Alias = Literal["champion", "challenger"]
_Pushed = Literal["pushed", "there", "moved"]
Policy = Literal["auto", "manual", "disabled"]

_AUTHOR = re.compile(r"^(?P<name>[^<>]+?) *<(?P<email>[^<>]+)>$")
_VERSION = re.compile(r"^[1-9][0-9]*$")
_FIELD, _RECORD = "\x1f", "\x1e"


def promotion_trailer(*, env: str, name: str, alias: Alias, version: str) -> str:
    """The trailer line that names one decision: ``Mlgitops-Promotion: env/name/alias/vN``."""
    return f"{PROMOTION_TRAILER}: {env}/{name}/{alias}/v{version}"


def promotion_branch(*, env: str, name: str, alias: Alias, version: str) -> str:
    """The branch a ``manual`` write-back is pushed to (a challenger's is told apart)."""
    kind = "" if alias == "champion" else f"{alias}-"
    return f"mlgitops/promote/{env}/{name}-{kind}v{version}"


@dataclass(frozen=True)
class WriteBackResult:
    """What a write-back left in the repository.

    ``sha`` is the commit that carries the change: the one pushed now (``created``), or the one
    found already there; when the file already pinned the version and no commit was needed, the
    head of ``branch``. ``detail`` says which, in one line.
    """

    sha: str
    branch: str
    created: bool
    detail: str


class WriteBack:
    """Write-back commits to one config repository, as one Environment's ``writeBack`` says.

    ``repo`` is a local path or a URL (the CLI's ``--repo``); ``cache_dir`` holds the clone
    (``StateDir.writeback``); ``branch`` and ``author`` are the Environment's
    ``writeBack.branch`` and ``writeBack.author`` (author and committer of every commit).
    ``attempts`` bounds the pushes of one decision. ``before_push`` is called with the attempt
    number after each commit is made and before it is pushed: a seam for tests (a concurrent
    push in between) and for callers that log attempts.

    Safe to use from several processes on one state directory (a file lock serializes them) and
    from several machines (the push decides, and the trailer is searched again after a reject).
    """

    def __init__(
        self,
        repo: str,
        *,
        cache_dir: Path,
        branch: str = "main",
        author: str = "mlgitops <mlgitops@localhost>",
        attempts: int = ATTEMPTS,
        before_push: Callable[[int], None] | None = None,
    ) -> None:
        self.repo = repo
        self.display = redact(repo)
        self.branch = branch
        match = _AUTHOR.match(author.strip())
        if match is None:
            raise InvalidInput(
                [Problem(self.display, None, "writeBack.author", f"not 'Name <email>': {author!r}")]
            )
        self._identity = {
            f"GIT_{who}_{part.upper()}": match[part]
            for who in ("AUTHOR", "COMMITTER")
            for part in ("name", "email")
        }
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.attempts = attempts
        self._cache_dir = cache_dir
        self._before_push = before_push
        self._remote: str | None = None

    # --- the two operations ---------------------------------------------------------------

    def promote(
        self,
        *,
        env: str,
        name: str,
        path: str,
        version: str,
        alias: Alias = "champion",
        policy: Policy = "auto",
        body: str = "",
        force: bool = False,
        check: Callable[[bytes], None] | None = None,
    ) -> WriteBackResult:
        """Pin ``alias`` of ModelDeployment ``name`` (in the file ``path`` of the repository) to
        ``version``, as environment ``env`` decided: one commit, at most once.

        ``champion`` sets ``spec.champion.version`` and, when the challenger pin names that
        same version (the winner), removes it; ``challenger`` sets (or adds)
        ``spec.challenger.version``. Policy ``manual`` pushes the commit to
        ``promotion_branch(...)`` rather than the write-back branch (``auto``; ``disabled``
        means a person writes it by hand, so it is written as ``auto``).

        Nothing is written, and the answer is not ``created``, when the trailer is already on
        the write-back branch (or on the promotion branch for ``manual``), or when the file
        already pins the version. A trailer whose commit was reverted since (a rollback) is not
        written again unless ``force`` (a person's override); otherwise InvalidInput.
        ``body`` (the deciding metrics, the code commit, the run) goes into the message,
        credentials scrubbed. ``check`` sees the edited file before it is committed and may
        raise InvalidInput to stop the write (e.g. the document must still load).

        Raises InvalidInput (no such branch, file or pin; a file the editor refuses),
        SourceUnavailable (the repository cannot be reached) and WriteBackFailed (the branch
        kept moving for every attempt, or the remote refused the push).
        """
        if not _VERSION.match(version):
            raise InvalidInput(
                [Problem(path, None, f"spec.{alias}.version", f"not a version: {version!r}")]
            )
        trailer = promotion_trailer(env=env, name=name, alias=alias, version=version)
        manual = policy == "manual"
        target = (
            promotion_branch(env=env, name=name, alias=alias, version=version)
            if manual
            else self.branch
        )

        def edit(data: bytes) -> bytes:
            if alias == "challenger":
                return edit_pins(data, path=path, name=name, challenger=version)
            pins = read_pins(data, path=path, name=name)
            return edit_pins(
                data,
                path=path,
                name=name,
                champion=version,
                drop_challenger=pins.challenger == version,
            )

        with self._session() as repo:
            for attempt in range(1, self.attempts + 1):
                self._fetch(repo)
                main = self._remote_ref(self.branch)
                head = self._head(repo, main)
                found = self._find(repo, main, trailer)
                if found is not None:
                    reverter = self._reverter(repo, found, main)
                    if reverter is None:
                        return WriteBackResult(
                            found, self.branch, False, f"already committed as {found[:12]}"
                        )
                    if not force:
                        raise InvalidInput(
                            [
                                Problem(
                                    path,
                                    None,
                                    f"spec.{alias}.version",
                                    f"v{version} was written by {found[:12]} and rolled back by "
                                    f"{reverter[:12]}: only --force writes it again",
                                )
                            ]
                        )
                current = self._read(repo, head, path)
                if edit(current) == current:
                    return WriteBackResult(
                        head, self.branch, False, f"{path} already pins {alias} v{version}"
                    )
                parent = head
                if manual:
                    ref = self._remote_ref(target)
                    tip = self._known(repo, ref)
                    if tip is not None:
                        found = self._find(repo, f"{main}..{ref}", trailer)
                        if found is not None:
                            return WriteBackResult(
                                found, target, False, f"already on {target} as {found[:12]}"
                            )
                        parent = tip  # someone's branch of that name: build on it, lose nothing
                old = self._read(repo, parent, path)
                new = edit(old)
                if new == old:
                    return WriteBackResult(
                        parent, target, False, f"{path} already pins {alias} v{version}"
                    )
                if check is not None:
                    check(new)
                before = read_pins(old, path=path, name=name)
                after = read_pins(new, path=path, name=name)
                message = self._promotion_message(
                    env=env,
                    name=name,
                    alias=alias,
                    version=version,
                    was=getattr(before, alias),
                    path=path,
                    dropped=before.challenger is not None and after.challenger is None,
                    body=body,
                    trailer=trailer,
                )
                sha = self._commit(repo, parent, path, new, message)
                pushed = self._push(repo, sha, target, attempt)
                if pushed != "moved":
                    created = pushed == "pushed"
                    done = "committed" if created else "already committed as"
                    return WriteBackResult(sha, target, created, f"{done} {sha[:12]} to {target}")
        raise WriteBackFailed(
            f"repository {self.display}: branch {target} moved under each of {self.attempts} "
            f"attempts to write {trailer}; nothing was written, retry later"
        )

    def revert_last(
        self, *, env: str, name: str, alias: Alias = "champion", body: str = ""
    ) -> WriteBackResult:
        """``git revert`` of the newest commit on the write-back branch carrying a
        ``Mlgitops-Promotion: <env>/<name>/<alias>/...`` trailer, pushed to that branch.

        The revert names what it reverts (``This reverts commit <sha>.``, as ``git revert``
        writes it, and the version the pin returns to) and carries
        ``Mlgitops-Rollback: <env>/<name>/v<N>`` (``<env>/<name>/<alias>/v<N>`` for a challenger).
        A promotion already reverted (by anyone, however) is not reverted twice: the answer is
        that revert, not ``created``; to go further back, promote the version wanted.
        Raises InvalidInput when there is no promotion commit to revert or the revert conflicts
        with later changes to the file; otherwise as ``promote``.
        """
        prefix = f"{PROMOTION_TRAILER}: {env}/{name}/{alias}/v"
        with self._session() as repo:
            for attempt in range(1, self.attempts + 1):
                self._fetch(repo)
                main = self._remote_ref(self.branch)
                head = self._head(repo, main)
                promotion = self._newest(repo, main, prefix)
                if promotion is None:
                    raise InvalidInput(
                        [
                            Problem(
                                f"{env}/{name}",
                                None,
                                None,
                                f"no promotion commit ({prefix}N) on branch {self.branch} of "
                                f"{self.display}: nothing to roll back",
                            )
                        ]
                    )
                sha, version, subject = promotion
                reverter = self._reverter(repo, sha, main)
                if reverter is not None:
                    return WriteBackResult(
                        reverter,
                        self.branch,
                        False,
                        f"{alias} v{version} ({sha[:12]}) already rolled back by {reverter[:12]}",
                    )
                label = f"{env}/{name}" + ("" if alias == "champion" else f"/{alias}")
                tree, restored = self._revert_tree(repo, head, sha, name=name, alias=alias)
                lines = [
                    f'Revert "{subject}"',
                    "",
                    f"This reverts commit {sha}.",
                    "",
                    f"{env}: {name} {alias} v{version} rolled back"
                    + (f"; the pin is v{restored} again." if restored else "."),
                ]
                if body.strip():
                    lines += ["", scrub(body.strip(), self.repo)]
                lines += ["", f"{ROLLBACK_TRAILER}: {label}/v{version}"]
                revert = self._commit_tree(repo, tree, head, "\n".join(lines) + "\n")
                pushed = self._push(repo, revert, self.branch, attempt)
                if pushed != "moved":
                    done = "reverted" if pushed == "pushed" else "already reverted"
                    return WriteBackResult(
                        revert,
                        self.branch,
                        pushed == "pushed",
                        f"{done} {sha[:12]} with {revert[:12]}",
                    )
        raise WriteBackFailed(
            f"repository {self.display}: branch {self.branch} moved under each of "
            f"{self.attempts} attempts to revert the last {env}/{name} promotion; nothing was "
            "written, retry later"
        )

    # --- the clone ------------------------------------------------------------------------

    @contextlib.contextmanager
    def _session(self) -> Iterator[git.Repo]:
        """Our clone, held under a file lock for one operation (other processes wait)."""
        remote = self._resolve_remote()
        clone = self._cache_dir / hashlib.sha256(remote.encode()).hexdigest()[:16]
        self._cache_dir.mkdir(parents=True, exist_ok=True)
        with open(clone.with_name(f"{clone.name}.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                for stale in self._cache_dir.glob(f"{clone.name}.index.*"):
                    stale.unlink(missing_ok=True)  # a private index a crash left behind
                if not (clone / "HEAD").exists():
                    shutil.rmtree(clone, ignore_errors=True)
                    git.Repo.init(clone, bare=True).close()
                repo = git.Repo(clone)
                try:
                    yield repo
                finally:
                    repo.close()
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _resolve_remote(self) -> str:
        """What fetch and push are given: the URL, or the top of a local repository."""
        if self._remote is not None:
            return self._remote
        if _is_url(self.repo):
            self._remote = self.repo
            return self._remote
        path = Path(self.repo).expanduser().resolve()
        try:
            local = git.Repo(path, search_parent_directories=True)
        except (git.InvalidGitRepositoryError, git.NoSuchPathError) as exc:
            raise SourceUnavailable(
                f"repository {self.display}: not a Git repository (or no such directory)"
            ) from exc
        self._remote = str(local.working_tree_dir or local.git_dir)
        local.close()
        return self._remote

    def _remote_ref(self, branch: str) -> str:
        return f"refs/remotes/origin/{branch}"

    def _fetch(self, repo: git.Repo) -> None:
        self._git(
            repo,
            "fetch",
            "--prune",
            "--no-tags",
            "--quiet",
            self._resolve_remote(),
            "+refs/heads/*:refs/remotes/origin/*",
        )

    def _head(self, repo: git.Repo, ref: str) -> str:
        head = self._known(repo, ref)
        if head is None:
            raise InvalidInput(
                [
                    Problem(
                        self.display,
                        None,
                        "writeBack.branch",
                        f"no branch {self.branch!r} in repository {self.display}",
                    )
                ]
            )
        return head

    def _known(self, repo: git.Repo, rev: str) -> str | None:
        status, out, _ = self._run(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
        return (out.decode().strip() or None) if status == 0 else None

    def _read(self, repo: git.Repo, commit: str, path: str) -> bytes:
        status, out, _ = self._run(repo, "cat-file", "blob", f"{commit}:{path}")
        if status != 0:
            raise InvalidInput(
                [Problem(path, None, None, f"no such file at {commit[:12]} of {self.display}")]
            )
        return out

    # --- history --------------------------------------------------------------------------

    def _log(self, repo: git.Repo, *args: str) -> list[tuple[str, str]]:
        out = self._git(repo, "log", f"--format=%H{_FIELD}%B{_RECORD}", *args, "--")
        records = [r.strip("\n") for r in out.decode("utf-8", "replace").split(_RECORD)]
        return [(r.split(_FIELD, 1)[0], r.split(_FIELD, 1)[1]) for r in records if _FIELD in r]

    def _find(self, repo: git.Repo, revs: str, line: str) -> str | None:
        """The newest commit of ``revs`` with ``line`` as a whole line of its message."""
        for sha, message in self._log(repo, "--fixed-strings", f"--grep={line}", revs):
            if line in (part.strip() for part in message.splitlines()):
                return sha
        return None

    def _newest(self, repo: git.Repo, ref: str, prefix: str) -> tuple[str, str, str] | None:
        """The newest commit of ``ref`` with a trailer starting ``prefix``: (sha, version,
        subject)."""
        for sha, message in self._log(repo, "--fixed-strings", f"--grep={prefix}", ref):
            lines = [part.strip() for part in message.splitlines()]
            for part in lines:
                if part.startswith(prefix) and _VERSION.match(part[len(prefix) :]):
                    return sha, part[len(prefix) :], (lines or [""])[0]
        return None

    def _reverter(self, repo: git.Repo, sha: str, ref: str, depth: int = 0) -> str | None:
        """The commit of ``ref`` after ``sha`` that reverts it and is not itself reverted."""
        if depth > 8:
            return None
        line = f"This reverts commit {sha}"
        for revert, _ in self._log(repo, "--fixed-strings", f"--grep={line}", f"{sha}..{ref}"):
            if self._reverter(repo, revert, ref, depth + 1) is None:
                return revert
        return None

    # --- writing --------------------------------------------------------------------------

    def _promotion_message(
        self,
        *,
        env: str,
        name: str,
        alias: Alias,
        version: str,
        was: str | None,
        path: str,
        dropped: bool,
        body: str,
        trailer: str,
    ) -> str:
        before = f"v{was}" if was else "none"
        if alias == "champion":
            subject = f"{env}: promote {name} v{version} to champion (was {before})"
        else:
            subject = f"{env}: propose {name} v{version} as challenger (was {before})"
        change = f"{path}: spec.{alias}.version {was or '(none)'} -> {version}"
        if dropped:
            change += f"; spec.challenger (v{version}) removed"
        lines = [subject, "", change + "."]
        if body.strip():
            lines += ["", scrub(body.strip(), self.repo)]
        lines += ["", trailer]
        return "\n".join(lines) + "\n"

    def _commit(self, repo: git.Repo, parent: str, path: str, data: bytes, message: str) -> str:
        """A commit on ``parent`` whose tree differs only in ``path`` (now ``data``), made with
        a private index so nothing else in the clone changes."""
        base = Path(repo.git_dir)
        scratch = base.with_name(f"{base.name}.index.{os.getpid()}")
        blob_file = scratch.with_name(f"{scratch.name}.blob")
        try:
            blob_file.write_bytes(data)
            blob = self._git(repo, "hash-object", "-w", "--no-filters", str(blob_file))
            listing = self._git(repo, "ls-tree", parent, "--", path).decode().split()
            mode = listing[0] if listing else "100644"
            env = {"GIT_INDEX_FILE": str(scratch)}
            self._git(repo, "read-tree", parent, env=env)
            cacheinfo = f"{mode},{blob.decode().strip()},{path}"
            self._git(repo, "update-index", "--add", "--cacheinfo", cacheinfo, env=env)
            tree = self._git(repo, "write-tree", env=env).decode().strip()
        finally:
            scratch.unlink(missing_ok=True)
            blob_file.unlink(missing_ok=True)
        return self._commit_tree(repo, tree, parent, message)

    def _commit_tree(self, repo: git.Repo, tree: str, parent: str, message: str) -> str:
        out = self._git(repo, "commit-tree", tree, "-p", parent, "-m", message, env=self._identity)
        return out.decode().strip()

    def _revert_tree(
        self, repo: git.Repo, head: str, sha: str, *, name: str, alias: Alias
    ) -> tuple[str, str | None]:
        """The tree of ``git revert sha`` on ``head`` (made in a throwaway worktree), and the
        version the pin returns to (None if it cannot be read)."""
        base = Path(repo.git_dir)
        worktree = base.with_name(f"{base.name}.revert")
        shutil.rmtree(worktree, ignore_errors=True)
        self._run(repo, "worktree", "prune")
        self._git(repo, "worktree", "add", "--quiet", "--detach", str(worktree), head)
        try:
            status, _, _ = self._run(
                repo,
                "-C",
                str(worktree),
                "-c",
                "core.hooksPath=/dev/null",
                "revert",
                "--no-commit",
                sha,
                env=self._identity,
            )
            if status != 0:
                conflicted = (
                    self._git(repo, "-C", str(worktree), "diff", "--name-only", "--diff-filter=U")
                    .decode()
                    .split()
                )
                raise InvalidInput(
                    [
                        Problem(
                            ", ".join(conflicted) or self.display,
                            None,
                            None,
                            f"reverting {sha[:12]} conflicts with later changes on "
                            f"{self.branch}: revert it by hand",
                        )
                    ]
                )
            tree = self._git(repo, "-C", str(worktree), "write-tree").decode().strip()
        finally:
            self._run(repo, "worktree", "remove", "--force", "--force", str(worktree))
            shutil.rmtree(worktree, ignore_errors=True)
        restored = None
        changed = self._git(repo, "diff-tree", "--no-commit-id", "--name-only", "-r", sha)
        for path in changed.decode().split("\n"):
            if not path.endswith((".yaml", ".yml")):
                continue
            with contextlib.suppress(InvalidInput):
                data = self._read(repo, tree, path)
                restored = getattr(read_pins(data, path=path, name=name), alias)
                break
        return tree, restored

    def _push(self, repo: git.Repo, sha: str, branch: str, attempt: int) -> _Pushed:
        """Push ``sha`` to ``branch`` without force: ``pushed``; ``there`` when the branch
        already was at ``sha`` (another writer made the identical commit: same tree, parent,
        message and second); ``moved`` when the branch moved meanwhile (fetch and decide
        again). Any other refusal raises."""
        if self._before_push is not None:
            self._before_push(attempt)
        status, out, err = self._run(
            repo, "push", "--porcelain", self._resolve_remote(), f"{sha}:refs/heads/{branch}"
        )
        lines = out.decode("utf-8", "replace").splitlines()
        if status == 0:
            return "there" if any(line.startswith("=\t") for line in lines) else "pushed"
        rejected = [line for line in lines if line.startswith("!")]
        if not rejected:
            raise SourceUnavailable(f"repository {self.display}: push failed: {self._last(err)}")
        summary = rejected[0].split("\t")[-1].strip()
        moved = ("[rejected]", "failed to update ref", "cannot lock ref", "incorrect old value")
        if any(word in summary for word in moved):
            return "moved"
        if "checked out" in summary:
            raise WriteBackFailed(
                f"repository {self.display}: cannot push to {branch}, it is checked out there; "
                "in that repository run `git config receive.denyCurrentBranch updateInstead` "
                "(or push to a bare repository)"
            )
        raise WriteBackFailed(
            f"repository {self.display}: push to {branch} refused: {scrub(summary, self.repo)}"
        )

    # --- running git ----------------------------------------------------------------------

    def _run(
        self, repo: git.Repo, *args: str, env: dict[str, str] | None = None
    ) -> tuple[int, bytes, str]:
        """``git args`` in ``repo``: (status, raw stdout, stderr); never prompts."""
        status, out, err = repo.git.execute(
            ["git", *args],
            with_extended_output=True,
            with_exceptions=False,
            stdout_as_string=False,
            strip_newline_in_stdout=False,
            env={**git_env(), **(env or {})},
        )
        text = err.decode("utf-8", "replace") if isinstance(err, bytes) else str(err or "")
        return int(status or 0), out if isinstance(out, bytes) else b"", text

    def _git(self, repo: git.Repo, *args: str, env: dict[str, str] | None = None) -> bytes:
        """The output of ``git args``; SourceUnavailable (Git's last word, scrubbed) if it fails."""
        status, out, err = self._run(repo, *args, env=env)
        if status != 0:
            words = list(args)
            while words[0] in ("-C", "-c"):  # global options come in pairs
                words = words[2:]
            raise SourceUnavailable(f"repository {self.display}: git {words[0]}: {self._last(err)}")
        return out

    def _last(self, err: str) -> str:
        """Git's own word on a failure in one line: its first ``fatal:`` or ``error:`` line
        (what follows is advice), else its last line; scrubbed."""
        lines = [line.strip() for line in err.strip().splitlines() if line.strip()]
        fatal = [line for line in lines if line.startswith(("fatal:", "error:"))]
        line = fatal[0].split(":", 1)[1].strip() if fatal else (lines[-1] if lines else "failed")
        return scrub(line, self.repo, self._remote or "")
