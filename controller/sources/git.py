"""Read environment folders from Git at an exact revision, from a local path or a remote URL.

A local repository is read in place, straight from its object database (never its working tree,
so uncommitted edits are never applied). A URL is mirrored into a bare clone under the state
directory and updated with ``git fetch``, which transfers only objects that are new. Either way the
caller gets the files of one commit, so a revision is accepted or rejected as a whole.
"""

from __future__ import annotations

import hashlib
import os
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


def _is_url(repo: str) -> bool:
    return "://" in repo or (repo.count(":") == 1 and "@" in repo.split(":")[0])


class GitSource:
    """One repository. ``repo`` is a local path or a URL (``file://``, ``https://``, ``ssh``)."""

    def __init__(self, repo: str, *, cache_dir: Path) -> None:
        self.repo = repo
        self.display = redact(repo)
        self._remote = _is_url(repo)
        self._cache_dir = cache_dir
        self._repo: git.Repo | None = None

    def _open(self) -> git.Repo:
        if self._repo is not None:
            return self._repo
        try:
            if self._remote:
                self._repo = self._mirror()
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

    def _mirror(self) -> git.Repo:
        key = hashlib.sha256(self.repo.encode()).hexdigest()[:16]
        path = self._cache_dir / key
        env = {"GIT_TERMINAL_PROMPT": "0"}
        try:
            if not (path / "HEAD").exists():
                tmp = path.with_name(f"{key}.tmp{os.getpid()}")
                git.Repo.clone_from(self.repo, tmp, bare=True, env=env)
                tmp.rename(path)  # a clone interrupted half-way never looks complete
                return git.Repo(path)
            mirror = git.Repo(path)
            mirror.git.fetch("--prune", "--quiet", self.repo, "+refs/heads/*:refs/heads/*", env=env)
            return mirror
        except git.GitCommandError as exc:
            detail = redact(
                (exc.stderr or str(exc)).strip().splitlines()[-1] if exc.stderr else str(exc)
            )
            raise SourceUnavailable(f"repository {self.display}: {detail.strip()}") from exc

    def resolve(self, rev: str | None = None) -> Commit:
        """The commit ``rev`` names (branch, tag or sha); by default the branch head."""
        repo = self._open()
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
        repo = self._open()
        try:
            tree = repo.commit(sha).tree / folder
        except KeyError:
            return None
        if tree.type != "tree":
            return None
        return {str(blob.path): blob.data_stream.read() for blob in tree.blobs}

    def list_folders(self, sha: str, root: str) -> list[str]:
        """The names of the folders under ``root`` at ``sha`` (the environments)."""
        repo = self._open()
        try:
            tree = repo.commit(sha).tree / root
        except KeyError:
            return []
        return sorted(t.name for t in tree.trees)

    def close(self) -> None:
        if self._repo is not None:
            self._repo.close()
            self._repo = None
