"""The mirror of a URL, shared by the config and code views of a repository (real Git).

A first clone survives a leftover of an interrupted one (in a container the pid repeats), and the
mirror keeps no copy of the URL, whose credentials must not rest on disk.
"""

from __future__ import annotations

import os
from pathlib import Path

from controller.sources import GitSource
from controller.sources.git import mirror_dir
from tests.helpers import ConfigRepo, git


def test_first_clone_clears_a_leftover_of_an_interrupted_one(tmp_path: Path) -> None:
    origin = ConfigRepo(tmp_path / "origin", envs=())
    url, cache = origin.path.as_uri(), tmp_path / "cache"
    mirror = mirror_dir(cache, url)
    leftover = mirror.with_name(f"{mirror.name}.tmp{os.getpid()}")
    leftover.mkdir(parents=True)
    (leftover / "HEAD").write_text("half a clone")

    source = GitSource(url, cache_dir=cache)
    try:
        assert source.resolve("main").sha == origin.head()
    finally:
        source.close()
    assert sorted(p.name for p in cache.iterdir()) == [mirror.name]


def test_the_mirror_keeps_no_remote_url(tmp_path: Path) -> None:
    origin = ConfigRepo(tmp_path / "origin", envs=())
    url, cache = origin.path.as_uri(), tmp_path / "cache"
    source = GitSource(url, cache_dir=cache)
    try:
        source.resolve("main")
    finally:
        source.close()
    assert "remote." not in git(mirror_dir(cache, url), "config", "--list", "--local")
    origin.commit("second")
    again = GitSource(url, cache_dir=cache)  # a fetch passes the URL itself
    try:
        assert again.resolve("main").sha == origin.head()
    finally:
        again.close()
