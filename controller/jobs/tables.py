"""Where a table named in a ModelDeployment lives.

Documents name tables by a short relative name (``prod/fraud/transactions_daily``) so the same
folder works on a laptop and in a cluster; a data root (a directory, or an object-store prefix
such as ``s3://bucket/lake``) turns it into a Delta table URI. A name that is already absolute
(a path, or a URI with a scheme) is used as it is.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["table_uri"]


def table_uri(name: str, data_root: str) -> str:
    """The Delta table URI of ``name``: ``name`` itself when absolute, else under ``data_root``."""
    if "://" in name or os.path.isabs(name):
        return name
    if "://" in data_root:
        return f"{data_root.rstrip('/')}/{name.lstrip('/')}"
    return str(Path(data_root) / name)
