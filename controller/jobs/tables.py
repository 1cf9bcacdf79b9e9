"""Where a table named in a ModelDeployment lives, and what the jobs share about tables.

Documents name tables by a short relative name (``prod/fraud/transactions_daily``) so the same
folder works on a laptop and in a cluster; a data root (a directory, or an object-store prefix
such as ``s3://bucket/lake``) turns it into a Delta table URI. A name that is already absolute
(a path, or a URI with a scheme) is used as it is.
"""

from __future__ import annotations

import os
from pathlib import Path

from controller.errors import MlgitopsError

__all__ = ["JobError", "one_line", "sql_string", "table_uri"]


class JobError(MlgitopsError):
    """A job cannot run as asked: a missing table or alias, or data the model refuses."""


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message (MLflow's and deltalake's can run to pages)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def sql_string(value: str) -> str:
    """``value`` as a SQL string literal, for a Delta predicate."""
    return "'" + value.replace("'", "''") + "'"


def table_uri(name: str, data_root: str) -> str:
    """The Delta table URI of ``name``: ``name`` itself when absolute, else under ``data_root``."""
    if "://" in name or os.path.isabs(name):
        return name
    if "://" in data_root:
        return f"{data_root.rstrip('/')}/{name.lstrip('/')}"
    return str(Path(data_root) / name)
