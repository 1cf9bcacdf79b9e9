"""Git, the only source of truth: the config repository (``GitSource``) and the code repositories
training reads (``CodeRepo``). The only package that imports git."""

from controller.sources.git import CodeRepo, Commit, GitSource

__all__ = ["CodeRepo", "Commit", "GitSource"]
