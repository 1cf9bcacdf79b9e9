"""Read Git repositories at exact revisions, from a local path or a remote URL.

Two views share one way of reaching a repository: ``GitSource`` reads environment folders of the
config repository, ``CodeRepo`` answers the training pipeline's questions about a code repository
(branch heads, new commits, changed paths, checkouts). A local repository is read in place,
straight from its object database (never its working tree, so uncommitted edits are never
applied). A URL is mirrored into a bare clone under the state directory and updated with
``git fetch``, which transfers only objects that are new. Either way the caller gets the files of
one commit, so a revision is accepted or rejected as a whole.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import git

from controller.errors import InvalidInput, Problem, SourceUnavailable
from controller.redact import redact
from controller.sources.credentials import git_env, scrub

if TYPE_CHECKING:
    from controller.planning import ports
    from controller.planning.ports import CodeSource


@dataclass(frozen=True)
class Commit:
    sha: str
    subject: str
    author: str

    @property
    def short(self) -> str:
        return self.sha[:7]


def mirror_dir(cache_dir: Path, url: str) -> Path:
    """Where ``url`` is mirrored: one bare clone per URL, named by a hash (the URL may hold a
    password, the directory name must not)."""
    return cache_dir / hashlib.sha256(url.encode()).hexdigest()[:16]


def _is_url(repo: str) -> bool:
    return "://" in repo or (repo.count(":") == 1 and "@" in repo.split(":")[0])


def local_copy(repo: str, *, cache_dir: Path) -> str:
    """Where ``repo``'s objects are on this machine: the path itself, or the mirror that a
    ``GitSource`` of the URL keeps under ``cache_dir``. A ``GitSource`` of that path reads what
    was last fetched without fetching (a reader beside the one that syncs), and never holds the
    URL or its credentials."""
    return str(mirror_dir(cache_dir, repo)) if _is_url(repo) else repo


class _Repository:
    """Where one repository's objects are read, shared by every view of a repository.

    ``repo`` is a local path or a URL (``file://``, ``https://``, ``ssh``). A local path is opened
    in place; a URL is mirrored into a bare clone under ``cache_dir`` keyed by a hash of the URL,
    so every view of the same URL (config or code) shares one mirror and one fetch brings only
    the objects that are new. Every message names the repository by ``display`` (credentials
    redacted), never by ``repo``.
    """

    def __init__(self, repo: str, *, cache_dir: Path) -> None:
        self.repo = repo
        self.display = redact(repo)
        self._remote = _is_url(repo)
        self._cache_dir = cache_dir
        self._repo: git.Repo | None = None

    def _open(self, *, update: bool) -> git.Repo:
        """The repository, opened once; a mirror is cloned when missing, fetched if ``update``."""
        if self._repo is not None:
            return self._repo
        try:
            if self._remote:
                self._repo = self._mirror(update=update)
            else:
                path = Path(self.repo).expanduser()
                if not path.exists():
                    raise SourceUnavailable(f"repository {self.display}: no such directory")
                self._repo = git.Repo(path, search_parent_directories=True)
        except git.InvalidGitRepositoryError as exc:
            raise SourceUnavailable(f"repository {self.display}: not a Git repository") from exc
        except git.NoSuchPathError as exc:
            raise SourceUnavailable(f"repository {self.display}: no such directory") from exc
        return self._repo

    def _mirror(self, *, update: bool) -> git.Repo:
        path = mirror_dir(self._cache_dir, self.repo)
        try:
            if not (path / "HEAD").exists():
                return self._clone(path)
            mirror = git.Repo(path)
            if update:
                self._fetch_into(mirror)
            return mirror
        except git.GitCommandError as exc:
            raise self._unavailable(exc) from exc

    def _clone(self, path: Path) -> git.Repo:
        """A first bare clone at ``path``, made aside and renamed into place.

        A clone interrupted half-way never looks complete. Its leftover is cleared first: in a
        container the process is pid 1 every time, so the next start would meet it. When another
        process wins the race to ``path``, its clone is used. The clone keeps no remote: the
        URL, credentials and all, is not written to disk (each fetch passes it again).
        """
        tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            clone = git.Repo.clone_from(self.repo, tmp, bare=True, env=git_env())
            clone.git.remote("remove", "origin")
            clone.close()
            try:
                tmp.rename(path)
            except OSError:
                if not (path / "HEAD").exists():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return git.Repo(path)

    def _fetch_into(self, mirror: git.Repo) -> None:
        """Every branch of the URL into the mirror: new objects only, deleted branches pruned.

        The URL is passed on each fetch rather than stored as a remote, so changing the
        credentials in the URL takes effect at the next fetch.
        """
        mirror.git.fetch(
            "--prune", "--quiet", self.repo, "+refs/heads/*:refs/heads/*", env=git_env()
        )

    def _unavailable(self, exc: git.GitCommandError) -> SourceUnavailable:
        """Git's own last word on the failure, credentials redacted (Git echoes the URL)."""
        # GitPython quotes Git's stderr ("  stderr: 'fatal: ...\n'"): its last real line.
        lines = [
            line.strip().removeprefix("stderr:").strip().strip("'").strip()
            for line in str(exc.stderr or exc).splitlines()
        ]
        detail = scrub(next((line for line in reversed(lines) if line), str(exc)), self.repo)
        return SourceUnavailable(f"repository {self.display}: {detail.strip()}")

    def close(self) -> None:
        if self._repo is not None:
            self._repo.close()
            self._repo = None


class GitSource(_Repository):
    """The config repository, read at a revision. A mirror is fetched when first opened."""

    def resolve(self, rev: str | None = None) -> Commit:
        """The commit ``rev`` names (branch, tag or sha); by default the branch head."""
        repo = self._open(update=True)
        try:
            commit = repo.commit(rev or "HEAD")
        except (git.BadName, ValueError, git.GitCommandError) as exc:
            name = rev or "HEAD"
            raise InvalidInput(
                [Problem(self.display, None, "--rev", f"unknown revision {name!r}")]
            ) from exc
        message = commit.message if isinstance(commit.message, str) else commit.message.decode()
        return Commit(
            sha=commit.hexsha,
            subject=(message.strip().splitlines() or [""])[0],
            author=f"{commit.author.name} <{commit.author.email}>",
        )

    def commit_time(self, sha: str) -> str | None:
        """When ``sha`` was committed (its committer date, ISO 8601 in UTC, ``...Z``); None when
        the repository does not have it."""
        repo = self._open(update=True)
        try:
            seconds = repo.commit(sha).committed_date  # a full sha is looked up only here
        except (git.BadName, ValueError, git.GitCommandError):
            return None
        return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def read_folder(self, sha: str, folder: str) -> dict[str, bytes] | None:
        """Every file directly in ``folder`` at ``sha`` (path -> content); None if no such folder."""
        repo = self._open(update=True)
        try:
            tree = repo.commit(sha).tree / folder
        except KeyError:
            return None
        if tree.type != "tree":
            return None
        return {str(blob.path): blob.data_stream.read() for blob in tree.blobs}

    def list_folders(self, sha: str, root: str) -> list[str]:
        """The names of the folders under ``root`` at ``sha`` (the environments)."""
        repo = self._open(update=True)
        try:
            tree = repo.commit(sha).tree / root
        except KeyError:
            return []
        return sorted(t.name for t in tree.trees)

    def trailers(self, base: str, head: str, key: str) -> list[str] | None:
        """The values of trailer ``key`` in the commits ``head`` has and ``base`` has not (merged
        branches included), oldest first; None when ``base`` is unknown here (a force push)."""
        repo = self._open(update=True)
        try:
            repo.commit(base)
            out = repo.git.log(
                "--reverse", f"--format=%(trailers:key={key},valueonly)", f"{base}..{head}", "--"
            )
        except (git.BadName, ValueError, git.GitCommandError):
            return None
        return [line.strip() for line in str(out).splitlines() if line.strip()]


_FIELD = "\x1f"  # between the fields of one `git log` record
_RECORD = "\x1e"  # after each record


class CodeRepo(_Repository):
    """The code repository a ModelDeployment trains from, as the training pipeline reads it.

    Unlike ``GitSource`` a mirror is fetched only by ``fetch()``, so one pass reads one snapshot
    of every branch however many questions it asks. Revisions are given as shas (a branch head
    from ``head``, or a commit an earlier training run recorded); every question goes to the
    ``git`` command line, whose answers (first-parent walks, tree diffs, worktrees) are the
    reference ones. A local repository is read from its object database and refs, never its
    working tree: uncommitted edits are invisible, and a checkout is made beside it.
    """

    def fetch(self) -> None:
        """Bring the mirror up to date (a no-op for a local path). Raises SourceUnavailable."""
        if not self._remote:
            return
        if self._repo is None:
            self._open(update=True)  # clones when missing, which is as fresh as a fetch
            return
        try:
            self._fetch_into(self._repo)
        except git.GitCommandError as exc:
            raise self._unavailable(exc) from exc

    def head(self, branch: str) -> Commit:
        """The head commit of ``branch``.

        InvalidInput when there is no such branch: the ModelDeployment names it, so retrying
        will not help. Its ``Problem`` is located at this repository (``display``), field
        ``training.source.branch``; a caller that knows the document may relocate it, the
        message stands alone. SourceUnavailable when the repository cannot be read.
        """
        repo = self._open(update=False)
        try:
            # show-ref --verify takes a full ref name literally: no prefix matching, no
            # revision syntax, and a name starting with "-" is not an option.
            sha = self._git(repo, "show-ref", "--verify", "--hash", f"refs/heads/{branch}")
        except git.GitCommandError as exc:
            message = f"no branch {branch!r} in repository {self.display}"
            problem = Problem(self.display, None, "training.source.branch", message)
            raise InvalidInput([problem]) from exc
        return self._log(repo, "--no-walk", sha.strip())[0]

    def commits(self, base: str | None, head: str) -> list[ports.Commit]:
        """The first-parent commits after ``base`` up to ``head``, oldest first.

        That is ``git rev-list --first-parent --reverse base..head``: walking ``head``'s first
        parents, stopping at commits ``base`` reaches. With ``base`` None, or a ``base`` this
        repository does not have, every commit of that walk down to the root.

        A ``base`` that is not an ancestor of ``head`` (the branch was force-pushed after
        ``base`` was trained) does not fail: the answer is the commits of ``head`` after the
        point where the two histories fork, i.e. the rewritten ones. If ``head`` is an ancestor
        of ``base`` (the branch was moved back), nothing is after ``base``: an empty list. A
        commit a force-push orphaned stays readable until Git prunes it; after that it is
        unknown here and the answer is the whole history, as for None.
        """
        repo = self._open(update=False)
        tip = self._commit(repo, head)
        since = self._known(repo, base) if base else None
        walk = self._log(
            repo, "--first-parent", "--reverse", tip, *([f"^{since}"] if since else [])
        )
        return list(walk)  # the port's list of Commit protocols (a list is invariant)

    def changed(self, base: str | None, head: str) -> list[str]:
        """The paths that differ between the trees of ``base`` and ``head``, sorted.

        A tree diff (``git diff-tree -r --no-renames``), not a walk of the commits between, so
        it is right whatever the history: after a force-push it is what changed since the code
        ``base`` trained on. Renames are not detected, so a renamed file counts under its old
        and its new path; a submodule counts under its path. With ``base`` None, or a ``base``
        this repository does not have (see ``commits``), every path at ``head``.
        """
        repo = self._open(update=False)
        tip = self._commit(repo, head)
        since = self._known(repo, base) if base else None
        if since is None:
            out = self._git(repo, "ls-tree", "-r", "-z", "--name-only", tip)
        else:
            out = self._git(
                repo, "diff-tree", "-r", "-z", "--name-only", "--no-renames", since, tip
            )
        return sorted({path for path in out.split("\0") if path})

    def checkout(self, sha: str, path: Path) -> None:
        """A clean checkout of ``sha`` at ``path``: a detached ``git worktree`` of the mirror or
        the local repository, so it shares their objects and costs only the files written.

        It holds exactly the tree of ``sha`` (never the local repository's uncommitted edits),
        and ``git`` works inside it (a training script may ask for its commit). The repository's
        hooks do not run: a checkout is the commit's tree, nothing else. Whatever is at ``path``
        first (the stale checkout of a run that crashed, even one Git still has registered) is
        removed, and ``path``'s parent is created.
        """
        repo = self._open(update=False)
        commit = self._commit(repo, sha)
        path = path.resolve()
        self._discard(repo, path)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._git(
                repo,
                "-c",
                "core.hooksPath=/dev/null",
                "worktree",
                "add",
                "--quiet",
                "--detach",
                str(path),
                commit,
            )
        except git.GitCommandError as exc:
            raise self._unavailable(exc) from exc

    def remove_checkout(self, path: Path) -> None:
        """Remove the checkout at ``path`` and Git's record of it; nothing to do if gone.

        Needs no network: when a mirror was never cloned, no checkout can have come from it.
        """
        path = path.resolve()
        repo = self._open(update=False) if self._readable_offline() else None
        if repo is not None:
            self._discard(repo, path)
        else:
            shutil.rmtree(path, ignore_errors=True)

    def _readable_offline(self) -> bool:
        return not self._remote or self._repo is not None or (self._mirror_path() / "HEAD").exists()

    def _mirror_path(self) -> Path:
        return mirror_dir(self._cache_dir, self.repo)

    def _discard(self, repo: git.Repo, path: Path) -> None:
        """No checkout at ``path`` any more: neither its directory nor Git's record of it.

        The directory goes first, whatever its state (a worktree, half of one, anything), then
        ``git worktree remove`` of the now missing path drops Git's record if it has one (twice
        forced: a crash during ``worktree add`` leaves it locked). The mirror, which is ours, is
        also pruned of records of checkouts deleted by hand; a local repository is the user's,
        so only the record of ``path`` is touched there, never their own worktrees.
        """
        if path.is_symlink() or path.is_file():
            path.unlink()
        else:
            shutil.rmtree(path, ignore_errors=True)
        with contextlib.suppress(git.GitCommandError):  # Git had no record of it
            self._git(repo, "worktree", "remove", "--force", "--force", str(path))
        if self._remote:
            with contextlib.suppress(git.GitCommandError):
                self._git(repo, "worktree", "prune")

    def _commit(self, repo: git.Repo, rev: str) -> str:
        """The full sha of commit ``rev``; SourceUnavailable when the repository lacks it."""
        found = self._known(repo, rev)
        if found is None:
            raise SourceUnavailable(f"repository {self.display}: no commit {rev!r}")
        return found

    def _known(self, repo: git.Repo, rev: str) -> str | None:
        if rev.startswith("-"):
            return None  # never an option to git
        try:
            out = self._git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
        except git.GitCommandError:
            return None
        return out.strip() or None

    def _log(self, repo: git.Repo, *args: str) -> list[Commit]:
        fields = _FIELD.join(("%H", "%s", "%an <%ae>"))
        out = self._git(repo, "log", f"--format={fields}{_RECORD}", *args, "--")
        records = [r.strip("\n") for r in out.split(_RECORD)]
        return [Commit(*r.split(_FIELD)) for r in records if r]

    def _git(self, repo: git.Repo, *args: str) -> str:
        """The output of ``git args`` in ``repo``, decoded leniently (paths and messages need
        not be UTF-8), with no prompt for credentials."""
        raw = repo.git.execute(["git", *args], stdout_as_string=False, env=git_env())
        assert isinstance(raw, bytes)
        return raw.decode("utf-8", "replace")


if TYPE_CHECKING:  # mypy holds CodeRepo to its port until the training pipeline uses it

    def _as_port(repo: CodeRepo) -> CodeSource:
        return repo
