"""Read environment folders from Git at an exact revision, from a local path or a remote URL.

A local repository is read in place, straight from its object database (never its working tree,
so uncommitted edits are never applied). A URL is mirrored into a bare clone under the state
directory and updated with ``git fetch``, which transfers only objects that are new. Either way the
caller gets the files of one commit, so a revision is accepted or rejected as a whole.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import git

from controller.errors import InvalidInput, Problem, SourceUnavailable
from controller.redact import redact


@dataclass(frozen=True)
class Commit:
    sha: str
    subject: str
    author: str

    @property
    def short(self) -> str:
        return self.sha[:7]


_ENV = {"GIT_TERMINAL_PROMPT": "0"}  # fail rather than wait for a password nobody types


def mirror_dir(cache_dir: Path, url: str) -> Path:
    """Where ``url`` is mirrored: one bare clone per URL, named by a hash (the URL may hold a
    password, the directory name must not)."""
    return cache_dir / hashlib.sha256(url.encode()).hexdigest()[:16]


def _is_url(repo: str) -> bool:
    return "://" in repo or (repo.count(":") == 1 and "@" in repo.split(":")[0])


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
            clone = git.Repo.clone_from(self.repo, tmp, bare=True, env=_ENV)
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
        mirror.git.fetch("--prune", "--quiet", self.repo, "+refs/heads/*:refs/heads/*", env=_ENV)

    def _unavailable(self, exc: git.GitCommandError) -> SourceUnavailable:
        """Git's own last word on the failure, credentials redacted (Git echoes the URL)."""
        detail = redact(
            (exc.stderr or str(exc)).strip().splitlines()[-1] if exc.stderr else str(exc)
        )
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
