"""Git, the only source of truth: read a folder at a revision. The only package that imports git."""

from controller.sources.git import Commit, GitSource

__all__ = ["Commit", "GitSource"]
