"""Git, the only source of truth: the config repository (``GitSource``), the code repositories
training reads (``CodeRepo``), and the commits written back to the config repository
(``WriteBack``). The only package that imports git."""

from controller.sources.git import CodeRepo, Commit, GitSource, local_copy
from controller.sources.writeback import (
    PROMOTION_TRAILER,
    ROLLBACK_TRAILER,
    WriteBack,
    WriteBackResult,
    promotion_branch,
    promotion_trailer,
)

__all__ = [
    "PROMOTION_TRAILER",
    "ROLLBACK_TRAILER",
    "CodeRepo",
    "Commit",
    "GitSource",
    "WriteBack",
    "WriteBackResult",
    "local_copy",
    "promotion_branch",
    "promotion_trailer",
]
