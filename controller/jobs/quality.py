"""Model quality once labels arrive: the ground truth joined to the predictions it belongs to.

Labels land later than predictions, in their own Delta table, keyed by the request id (and row)
of the inference table or by a business key of the batch output. The join is Arrow's (an inner
join on the key columns); a key labeled twice keeps its last label, so a correction replaces
the first one. Metrics are scikit-learn's:

- classifier: accuracy, and precision, recall and F1 of the positive class (1 or True) when the
  labels are binary, else their macro averages; ROC AUC when the table has a ``score`` column
  (the positive class's probability) and the labels are binary;
- regressor: MAE, RMSE and R².

Each set of metrics carries its counts (rows, labeled rows), so a reader can tell a window
judged on five labels from one judged on five thousand.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]

__all__ = [
    "CLASSIFIER_METRICS",
    "REGRESSOR_METRICS",
    "Labels",
    "OnlineVerdict",
    "infer_model_type",
    "join_labels",
    "metrics",
    "online_verdict",
]

CLASSIFIER_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc")
REGRESSOR_METRICS = ("mae", "rmse", "r2")
CLASSES_MAX = 20  # more distinct whole numbers than this: a regression target
LABEL = "__label"


@dataclass(frozen=True)
class Labels:
    """The labels table's rows (key columns and ``target``), one per key."""

    table: Any  # pyarrow.Table
    key: tuple[str, ...]
    target: str

    @classmethod
    def of(cls, table: Any, key: Sequence[str], target: str) -> Labels:
        """Keep the key columns and the target, the last label of each key."""
        table = table.select([*key, target]).append_column(
            "__order", pa.array(np.arange(table.num_rows))
        )
        last = table.group_by(list(key)).aggregate([("__order", "max")])
        kept = table.filter(pc.is_in(table["__order"], value_set=last["__order_max"]))
        return cls(kept.drop_columns(["__order"]).rename_columns([*key, LABEL]), tuple(key), target)


def join_labels(rows: Any, labels: Labels) -> Any:
    """The rows that have a label, with it in column ``__label`` (an inner join)."""
    if rows.num_rows == 0:
        return rows.append_column(LABEL, pa.nulls(0, labels.table[LABEL].type))
    left = rows
    for name in labels.key:  # the key's types may differ (an id as text in one table)
        if left[name].type != labels.table[name].type:
            left = left.set_column(
                left.schema.get_field_index(name), name, pc.cast(left[name], pa.string())
            )
    right = labels.table
    for name in labels.key:
        if right[name].type != left[name].type:
            right = right.set_column(
                right.schema.get_field_index(name), name, pc.cast(right[name], left[name].type)
            )
    joined = left.join(right, keys=list(labels.key), join_type="inner", use_threads=True)
    return joined.filter(pc.is_valid(joined[LABEL]))


def infer_model_type(target: Any) -> str:
    """``classifier`` when the labels are booleans, text, or few distinct whole numbers."""
    values = pc.drop_null(target)
    kind = values.type
    if pa.types.is_boolean(kind) or pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return "classifier"
    if pa.types.is_integer(kind):
        whole = True
    else:
        array = np.asarray(values.to_numpy(), dtype=float)
        whole = bool(np.all(np.mod(array[~np.isnan(array)], 1) == 0))
    distinct = int(pc.count_distinct(values).as_py())
    return "classifier" if whole and distinct <= CLASSES_MAX else "regressor"


def _binary_positive(truth: np.ndarray) -> Any | None:
    values = set(truth.tolist())
    for positive, negative in ((1, 0), (True, False), ("1", "0"), ("true", "false")):
        if values <= {positive, negative}:
            return positive
    return None


def metrics(joined: Any, model_type: str, prediction: str = "prediction") -> dict[str, float]:
    """The quality metrics of ``joined`` (rows with ``__label``); empty when nothing is labeled."""
    from sklearn import metrics as sk

    if joined.num_rows == 0 or prediction not in joined.column_names:
        return {}
    truth_col, pred_col = joined[LABEL], joined[prediction]
    usable = pc.and_(pc.is_valid(truth_col), pc.is_valid(pred_col))
    table = joined.filter(usable)
    if table.num_rows == 0:
        return {}
    truth_col, pred_col = table[LABEL], table[prediction]
    if model_type == "regressor":
        y = np.asarray(truth_col.to_numpy(), dtype=float)
        p = np.asarray(pred_col.to_numpy(), dtype=float)
        out = {
            "mae": float(sk.mean_absolute_error(y, p)),
            "rmse": float(math.sqrt(sk.mean_squared_error(y, p))),
        }
        if len(y) > 1:
            out["r2"] = float(sk.r2_score(y, p))
        return out
    if truth_col.type != pred_col.type:  # a label 1 against a prediction 1.0, or "1"
        truth_col, pred_col = _comparable(truth_col), _comparable(pred_col)
    y_true = np.asarray(truth_col.to_numpy(zero_copy_only=False))
    y_pred = np.asarray(pred_col.to_numpy(zero_copy_only=False))
    out = {"accuracy": float(sk.accuracy_score(y_true, y_pred))}
    positive = _binary_positive(np.concatenate([y_true, y_pred]))
    if positive is not None:
        scores: dict[str, Any] = {"pos_label": positive, "average": "binary"}
    else:
        scores = {"average": "macro"}
    out["precision"] = float(sk.precision_score(y_true, y_pred, zero_division=0, **scores))
    out["recall"] = float(sk.recall_score(y_true, y_pred, zero_division=0, **scores))
    out["f1"] = float(sk.f1_score(y_true, y_pred, zero_division=0, **scores))
    if positive is not None and "score" in table.column_names and len(set(y_true.tolist())) == 2:
        score = np.asarray(table["score"].to_numpy(zero_copy_only=False), dtype=float)
        out["roc_auc"] = float(sk.roc_auc_score(y_true == positive, score))
    return out


def _comparable(column: Any) -> Any:
    """Labels as text, whole numbers without a decimal point (1.0 is "1")."""
    if pa.types.is_floating(column.type):
        array = np.asarray(column.to_numpy(zero_copy_only=False), dtype=float)
        if np.all(np.mod(array, 1) == 0):
            return pa.array(array.astype(np.int64)).cast(pa.string())
    if pa.types.is_boolean(column.type):
        return pc.cast(pc.cast(column, pa.int8()), pa.string())
    return pc.cast(column, pa.string())


LOWER_IS_BETTER = frozenset({"mae", "rmse"})


@dataclass(frozen=True)
class OnlineVerdict:
    """A serving challenger against the champion on the windows where both had labels."""

    challenger: str
    champion: str
    metric: str
    verdict: str  # WON | LOST | PENDING (fewer labeled rows than asked on a side)
    challenger_value: float | None
    champion_value: float | None
    challenger_rows: int
    champion_rows: int
    windows: int
    min_change: float
    min_rows: int

    def detail(self) -> str:
        if self.challenger_value is None or self.champion_value is None:
            return f"{self.metric}: no window with labels for both yet"
        delta = self.challenger_value - self.champion_value
        needs = -self.min_change if self.metric in LOWER_IS_BETTER else self.min_change
        return (
            f"{self.metric} {self.challenger_value:.4g} vs {self.champion_value:.4g} "
            f"({delta:+.4g}, needs {needs:+.4g}) on {self.challenger_rows} and "
            f"{self.champion_rows} labeled rows in {self.windows} window(s)"
            + (f" (judged from {self.min_rows} each)" if self.verdict == "PENDING" else "")
        )


def online_verdict(
    quality: Any, metric: str, *, min_change: float, min_rows: int
) -> OnlineVerdict | None:
    """Compare the newest challenger with the champion in ``quality`` (the ``_quality`` table's
    rows): on each window where both served labeled rows, the metric weighted by labeled rows.
    None when no challenger served (no row with role ``challenger``)."""
    if quality is None or quality.num_rows == 0 or "role" not in quality.column_names:
        return None
    rows = quality.filter(pc.equal(quality["metric"], metric)).to_pylist()
    serving = [r for r in rows if r["role"] == "challenger" and r["model_version"] != "*"]
    if not serving:
        return None
    newest = max(serving, key=lambda r: r["window_start"])
    challenger = str(newest["model_version"])
    mine = {r["window"]: r for r in serving if r["model_version"] == challenger}
    champions = [
        r for r in rows if r["role"] == "champion" and r["window"] in mine and r["labeled_rows"]
    ]
    champion = max(champions, key=lambda r: r["window_start"])["model_version"] if champions else ""
    theirs = {r["window"]: r for r in champions if r["model_version"] == champion}
    common = [w for w in mine if w in theirs and mine[w]["labeled_rows"]]

    def pooled(side: dict[str, Any]) -> tuple[float | None, int]:
        n = sum(int(side[w]["labeled_rows"]) for w in common)
        if n == 0:
            return None, 0
        return sum(float(side[w]["value"]) * int(side[w]["labeled_rows"]) for w in common) / n, n

    ch_value, ch_rows = pooled(mine)
    champ_value, champ_rows = pooled(theirs)
    if ch_value is None or champ_value is None or min(ch_rows, champ_rows) < min_rows:
        verdict = "PENDING"
    else:
        gain = champ_value - ch_value if metric in LOWER_IS_BETTER else ch_value - champ_value
        verdict = "WON" if gain >= min_change - 1e-12 else "LOST"
    return OnlineVerdict(
        challenger=challenger,
        champion=str(champion),
        metric=metric,
        verdict=verdict,
        challenger_value=ch_value,
        champion_value=champ_value,
        challenger_rows=ch_rows,
        champion_rows=champ_rows,
        windows=len(common),
        min_change=min_change,
        min_rows=min_rows,
    )
