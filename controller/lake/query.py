"""One version of a Delta table, read whole or by a slice's condition, with a SQL engine.

Validation evaluates a model on a table and on the slices of it that ``where`` conditions
select. Every read of one validation must see the same rows, even if someone appends to the table
meanwhile, so the table is opened once, at one version, and both the whole read and the slices
come from that version. A slice's rows are selected by DataFusion (deltalake's ``QueryBuilder``,
which accepts one statement only), from SQL rendered out of the parsed condition
(``controller.api.where``): the text written in Git never reaches the engine.
"""

from __future__ import annotations

from typing import Any

import pandas as pd  # type: ignore[import-untyped]
import pyarrow as pa  # type: ignore[import-untyped]
from deltalake import DeltaTable, QueryBuilder
from deltalake.exceptions import DeltaError, TableNotFoundError

from controller.api.where import Expr, columns, quote_name, to_sql
from controller.errors import JobError, one_line

__all__ = ["Snapshot"]

_NAME = "validation_data"  # what the table is called in the query


class Snapshot:
    """The Delta table ``uri`` at the version current when it was opened."""

    def __init__(self, uri: str, what: str, storage_options: dict[str, str] | None = None) -> None:
        """Raises :class:`JobError` naming the table as ``what`` when it is missing or
        unreadable."""
        self.uri = uri
        self.what = what
        try:
            self._table = DeltaTable(uri, storage_options=storage_options)
            self.version = int(self._table.version())
            self.columns: list[str] = [f.name for f in self._table.schema().fields]
        except TableNotFoundError:
            raise JobError(f"{what} table {uri} does not exist (no Delta log there)") from None
        except (DeltaError, OSError) as exc:
            raise JobError(f"{what} table {uri}: {one_line(exc)}") from None

    def frame(self) -> pd.DataFrame:
        """Every row."""
        try:
            return self._table.to_pyarrow_dataset().to_table().to_pandas()
        except (DeltaError, OSError, pa.ArrowException) as exc:
            raise JobError(f"{self.what} table {self.uri}: {one_line(exc)}") from None

    def missing(self, where: Expr) -> list[str]:
        """The columns ``where`` names that the table does not have."""
        return [c for c in columns(where) if c not in self.columns]

    def select(self, where: Expr) -> pd.DataFrame:
        """The rows ``where`` selects. :class:`JobError` when it names a column the table lacks
        or the engine refuses it (comparing a number with a string, say)."""
        absent = self.missing(where)
        if absent:
            raise JobError(
                f"{self.what} table {self.uri} has no column {', '.join(map(repr, absent))}"
            )
        sql = f"SELECT * FROM {quote_name(_NAME)} WHERE {to_sql(where)}"
        try:
            reader: Any = QueryBuilder().register(_NAME, self._table).execute(sql)
            return pa.table(reader).to_pandas()
        except (DeltaError, OSError, pa.ArrowException) as exc:
            raise JobError(f"{self.what} table {self.uri}: {one_line(exc)}") from None
