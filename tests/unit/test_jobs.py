"""Pure parts of the jobs: where a table name points, and how predictions become columns."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from controller.jobs.batch import BatchError, _prediction_columns, _sql_string
from controller.jobs.tables import table_uri


@pytest.mark.parametrize(
    ("name", "root", "expected"),
    [
        ("prod/fraud/scores", "/lake", "/lake/prod/fraud/scores"),
        ("prod/fraud/scores", "s3://bucket/lake/", "s3://bucket/lake/prod/fraud/scores"),
        ("/abs/table", "/lake", "/abs/table"),
        ("gs://other/table", "/lake", "gs://other/table"),
    ],
)
def test_table_uri(name: str, root: str, expected: str) -> None:
    assert table_uri(name, root) == expected


def test_prediction_columns_by_shape() -> None:
    assert list(_prediction_columns(np.array([1, 0]), 2)) == ["prediction"]
    assert list(_prediction_columns(pd.Series([1.0, 2.0]), 2)) == ["prediction"]
    assert list(_prediction_columns(np.array([[0.1, 0.9], [0.8, 0.2]]), 2)) == [
        "prediction_0",
        "prediction_1",
    ]
    frame = pd.DataFrame({"label": [1, 0], "score": [0.9, 0.2]})
    assert list(_prediction_columns(frame, 2)) == ["prediction_label", "prediction_score"]
    assert list(_prediction_columns(frame[["score"]], 2)) == ["prediction"]
    assert _prediction_columns([3, 4], 2) == {"prediction": [3, 4]}
    with pytest.raises(BatchError, match="returned 1 predictions for 2 rows"):
        _prediction_columns([3], 2)


def test_batch_ids_are_quoted_for_the_delta_predicate() -> None:
    assert _sql_string("cron-2911'x") == "'cron-2911''x'"
