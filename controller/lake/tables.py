"""Where a table named in a ModelDeployment lives, and every read and write of a Delta table.

Documents name tables by a short relative name (``prod/fraud/transactions_daily``) so the same
folder works on a laptop and in a cluster; a data root (a directory, or an object-store prefix
such as ``s3://bucket/lake``) turns it into a Delta table URI. A name that is already absolute
(a path, or a URI with a scheme) is used as it is.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import DeltaError, TableNotFoundError

from controller.errors import JobError, one_line

__all__ = [
    "Window",
    "append",
    "arrow_schema",
    "finish_window",
    "open_dataset",
    "read_table",
    "replace_windows",
    "sql_string",
    "table_uri",
    "write_window",
]


def sql_string(value: str) -> str:
    """``value`` as a SQL string literal, for a Delta predicate."""
    return "'" + value.replace("'", "''") + "'"


def table_uri(name: str, data_root: str) -> str:
    """The Delta table URI of ``name``: ``name`` itself when absolute, else under ``data_root``.

    A relative name never leaves the data root: one with a ``..`` segment is refused. (Documents
    name tables as ``<catalog>/<schema>/<table>`` only; an absolute path or URI is for a person
    running a job by hand.)
    """
    if "://" in name or os.path.isabs(name):
        return name
    if ".." in name.replace("\\", "/").split("/"):
        raise JobError(f"table name {name!r} leaves the data root ({data_root})")
    if "://" in data_root:
        return f"{data_root.rstrip('/')}/{name.lstrip('/')}"
    return str(Path(data_root) / name)


def open_dataset(uri: str, what: str, storage_options: dict[str, str] | None = None) -> Any:
    """The Delta table ``uri`` as a pyarrow dataset (read lazily); :class:`JobError` naming the
    table as ``what`` when it is missing or unreadable."""
    try:
        return DeltaTable(uri, storage_options=storage_options).to_pyarrow_dataset()
    except TableNotFoundError:
        raise JobError(f"{what} table {uri} does not exist (no Delta log there)") from None
    except (DeltaError, OSError) as exc:
        raise JobError(f"{what} table {uri}: {one_line(exc)}") from None


@dataclass(frozen=True)
class Window:
    """The rows of one table that one run writes (a batch id, a monitoring window): written
    together and, when the run is repeated, replaced together, so a rerun leaves one copy."""

    uri: str
    what: str  # how errors name the table: "output", "report"
    column: str  # the column that holds the window's id
    value: str  # the window's id
    storage_options: dict[str, str] | None = None

    @property
    def predicate(self) -> str:
        return f"{self.column} = {sql_string(self.value)}"


def write_window(window: Window, data: Any, *, replace: bool = True) -> None:
    """Add ``data`` to the window's table (created when missing), in one commit.

    With ``replace``, the window's earlier rows (an earlier attempt at it) are dropped in the
    same commit. Raises :class:`JobError` naming the table.
    """
    options = window.storage_options
    try:
        if replace and DeltaTable.is_deltatable(window.uri, options):
            write_deltalake(
                window.uri,
                data,
                mode="overwrite",
                predicate=window.predicate,
                storage_options=options,
            )
        else:
            write_deltalake(window.uri, data, mode="append", storage_options=options)
    except (DeltaError, OSError, pa.ArrowInvalid) as exc:
        raise JobError(f"{window.what} table {window.uri}: {one_line(exc)}") from None


def finish_window(window: Window, *, clear: bool) -> int | None:
    """The table's version after the window was written; None when there is no table.

    With ``clear`` (the run wrote no rows), an earlier attempt's rows of the window are
    deleted, so even an empty rerun replaces what came before. Raises :class:`JobError`.
    """
    if not DeltaTable.is_deltatable(window.uri, window.storage_options):
        return None
    try:
        table = DeltaTable(window.uri, storage_options=window.storage_options)
        if clear:
            table.delete(window.predicate)
        return int(table.version())
    except (DeltaError, OSError) as exc:
        raise JobError(f"{window.what} table {window.uri}: {one_line(exc)}") from None


def append(
    uri: str,
    data: Any,
    *,
    storage_options: dict[str, str] | None = None,
    merge_schema: bool = False,
) -> None:
    """Append ``data`` (an Arrow table) to the Delta table ``uri``, created when missing.

    With ``merge_schema``, columns the table lacks are added to it (and columns ``data`` lacks
    are null in its rows) instead of failing the append. Raises deltalake's and the object
    store's own errors: the caller (the inference log) counts and retries them.
    """
    write_deltalake(
        uri,
        data,
        mode="append",
        schema_mode="merge" if merge_schema else None,
        storage_options=storage_options,
    )


def arrow_schema(uri: str, storage_options: dict[str, str] | None = None) -> Any:
    """The Arrow schema of the Delta table ``uri``; None when there is no table there yet.

    Raises deltalake's and the object store's own errors when it cannot be read.
    """
    if not DeltaTable.is_deltatable(uri, storage_options):
        return None
    return pa.schema(DeltaTable(uri, storage_options=storage_options).schema())


def replace_windows(
    uri: str,
    what: str,
    windows: list[str],
    data: Any,
    storage_options: dict[str, str] | None = None,
    column: str = "window",
) -> None:
    """Replace the rows of ``windows`` in the table ``uri`` with ``data``, in one commit (the
    table is created when missing; with no rows, the windows' earlier rows are deleted).
    Raises :class:`JobError` naming the table as ``what``."""
    if not windows:
        return
    predicate = f"{column} IN ({', '.join(sql_string(w) for w in windows)})"
    try:
        if DeltaTable.is_deltatable(uri, storage_options):
            if data.num_rows:
                write_deltalake(
                    uri,
                    data,
                    mode="overwrite",
                    predicate=predicate,
                    storage_options=storage_options,
                )
            else:
                DeltaTable(uri, storage_options=storage_options).delete(predicate)
        elif data.num_rows:
            write_deltalake(uri, data, mode="append", storage_options=storage_options)
    except (DeltaError, OSError, pa.ArrowInvalid) as exc:
        raise JobError(f"{what} table {uri}: {one_line(exc)}") from None


def read_table(
    uri: str,
    storage_options: dict[str, str] | None = None,
    *,
    windows: list[str] | None = None,
    column: str = "window",
) -> Any:
    """The Delta table ``uri`` as an Arrow table (only the rows of ``windows`` when given);
    None when there is no table there yet. Raises :class:`JobError` when it is unreadable."""
    try:
        if not DeltaTable.is_deltatable(uri, storage_options):
            return None
        dataset = DeltaTable(uri, storage_options=storage_options).to_pyarrow_dataset()
    except (DeltaError, OSError) as exc:
        raise JobError(f"table {uri}: {one_line(exc)}") from None
    if windows is None:
        return dataset.to_table()
    import pyarrow.dataset as ds  # type: ignore[import-untyped]

    return dataset.to_table(filter=ds.field(column).isin(windows))
