"""Batch inference: score a Delta table with the version an alias names when the run starts.

The operator's batch CronJob (and ``mlgitops batch`` on one machine) names ``@champion``, never a
version, so a promotion reaches the next run without touching the CronJob. The alias is resolved
once, at the start, to a concrete version; that version scores every row and every output row
names it, so a promotion in the middle of a run cannot mix two models in one batch.

A run is idempotent per batch id. Its rows carry ``batch_id`` and the first write of a run
replaces every row of that id, so a Job pod retried by Kubernetes (the CronJob passes the Job's
name as the id) or a run repeated by hand leaves one copy of the batch, never two. The input is
read and scored in chunks of ``chunk_rows``, one Delta commit each, so memory stays bounded; a run
that dies between chunks leaves a partial batch until it is run again, which replaces it whole.

The model is resolved and loaded through ``controller.registry.models`` and the tables are read
and written through ``controller.lake``: this module holds only the job's logic.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pandas as pd  # type: ignore[import-untyped]
import pyarrow as pa  # type: ignore[import-untyped]

from controller.errors import JobError, one_line
from controller.lake.tables import Window, finish_window, open_dataset, write_window

__all__ = ["ADDED_COLUMNS", "BatchResult", "run_batch"]

log = logging.getLogger("mlgitops.jobs.batch")

# Columns the output adds to the input's; an input that already has one is refused.
ADDED_COLUMNS = ("prediction", "model_name", "model_version", "batch_id", "scored_at")


@dataclass(frozen=True)
class BatchResult:
    model: str
    version: str
    batch_id: str
    rows: int
    output: str
    output_version: int | None  # the Delta table version after the run; None: no table yet


def _chunks(uri: str, chunk_rows: int, storage: dict[str, str] | None) -> Iterator[pd.DataFrame]:
    for batch in open_dataset(uri, "input", storage).to_batches(batch_size=chunk_rows):
        if batch.num_rows:
            yield batch.to_pandas()


def _prediction_columns(predictions: Any, rows: int) -> dict[str, Any]:
    """A model's output as named columns: ``prediction``, or ``prediction_<name>`` for several."""
    columns: dict[str, Any]
    if isinstance(predictions, pd.DataFrame) and predictions.shape[1] != 1:
        columns = {f"prediction_{c}": predictions[c].to_numpy() for c in predictions.columns}
    elif isinstance(predictions, pd.DataFrame):
        columns = {"prediction": predictions.iloc[:, 0].to_numpy()}
    elif isinstance(predictions, pd.Series):
        columns = {"prediction": predictions.to_numpy()}
    elif getattr(predictions, "ndim", 1) == 2:
        array = pd.DataFrame(predictions)
        columns = (
            {"prediction": array.iloc[:, 0].to_numpy()}
            if array.shape[1] == 1
            else {f"prediction_{i}": array[c].to_numpy() for i, c in enumerate(array.columns)}
        )
    else:
        columns = {"prediction": list(predictions)}
    for values in columns.values():
        if len(values) != rows:
            raise JobError(f"the model returned {len(values)} predictions for {rows} rows")
    return columns


def run_batch(
    *,
    model_uri: str,
    input_uri: str,
    output_uri: str,
    batch_id: str,
    tracking_uri: str | None = None,
    chunk_rows: int = 100_000,
    storage_options: dict[str, str] | None = None,
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
) -> BatchResult:
    """Score ``input_uri`` with ``model_uri`` into ``output_uri`` as batch ``batch_id``.

    The output holds the input's columns, the prediction column(s), and ``model_name``,
    ``model_version``, ``batch_id`` and ``scored_at``. ``tracking_uri`` (else MLflow's default,
    $MLFLOW_TRACKING_URI) becomes the process's MLflow tracking and registry URI, as a job's
    process needs. Raises :class:`JobError`.
    """
    if not batch_id:
        raise JobError("the batch id is empty")
    chunks = _chunks(input_uri, chunk_rows, storage_options)
    first = next(chunks, None)  # a missing input fails before the model is loaded
    from controller.registry import models  # imports mlflow: only once the input is there

    models.use_tracking_uri(tracking_uri)
    try:
        resolved_uri, name, version = models.resolve(model_uri)
    except Exception as exc:  # MLflow's own exceptions; the registry adapter names them
        raise JobError(f"cannot resolve {model_uri}: {one_line(exc)}") from None
    try:
        model = models.load_pyfunc(resolved_uri)
    except Exception as exc:
        raise JobError(f"cannot load {resolved_uri}: {one_line(exc)}") from None
    schema = model.metadata.get_input_schema()
    needed = [n for n in (schema.input_names() if schema is not None else []) if isinstance(n, str)]
    log.info("scoring %s with %s (resolved from %s)", input_uri, resolved_uri, model_uri)
    scored_at = now().astimezone(dt.UTC)
    window = Window(output_uri, "output", "batch_id", batch_id, storage_options)
    rows = 0
    chunk = first
    while chunk is not None:
        clash = [c for c in chunk.columns if c in ADDED_COLUMNS or str(c).startswith("prediction_")]
        if clash:
            raise JobError(
                f"input table {input_uri}: column {clash[0]!r} clashes with a column the output adds"
            )
        missing = [c for c in needed if c not in chunk.columns]
        if missing:
            raise JobError(
                f"input table {input_uri} lacks column(s) {', '.join(map(repr, missing))} that "
                f"{name} version {version} needs (its signature)"
            )
        try:
            predictions = model.predict(chunk)
        except Exception as exc:
            raise JobError(
                f"{name} version {version} refused input table {input_uri}: {one_line(exc)}"
            ) from None
        out = chunk.assign(**_prediction_columns(predictions, len(chunk)))
        out["model_name"], out["model_version"], out["batch_id"] = name, version, batch_id
        # Added in Arrow: pyarrow's pandas conversion of a tz-aware column warns on pandas 3.
        table = pa.Table.from_pandas(out, preserve_index=False).append_column(
            "scored_at", pa.array([scored_at] * len(out), type=pa.timestamp("us", tz="UTC"))
        )
        # The run's first write replaces an earlier attempt at this batch, atomically.
        write_window(window, table, replace=rows == 0)
        rows += len(out)
        chunk = next(chunks, None)
    # An empty input still replaces an earlier attempt at this batch.
    output_version = finish_window(window, clear=rows == 0)
    return BatchResult(name, version, batch_id, rows, output_uri, output_version)
