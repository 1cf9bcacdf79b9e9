"""The statistics of monitoring: drift of one column against its baseline, and a column's profile.

Drift is computed window after window against the same baseline, so the baseline side is
prepared once (``Reference``): its PSI bin edges and shares, or its sorted values for KS, or its
category shares. A window's numeric column is sorted once (``ordered``), and that one sort serves
its profile (distinct values, quantiles) and its drift: PSI counts a bin by where the bin's edges
fall in it, KS reads each CDF at the other's steps; a text column costs a ``value_counts``. The
data stays in Arrow and NumPy arrays (no pandas object columns), which is what keeps a
million-row window fast and small.

- PSI: ten bins cut at the baseline's deciles (fewer when values repeat), each bin's share
  floored at 1e-4 so an empty bin counts as rare rather than infinite; text columns by category.
- KS: the two-sample Kolmogorov-Smirnov statistic, the largest gap between the two empirical
  CDFs (scipy's ``ks_2samp`` statistic, which the tests compare it with); numeric columns only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]

__all__ = [
    "BINS",
    "QUANTILES",
    "Reference",
    "is_numeric",
    "ks_statistic",
    "ordered",
    "profile",
    "psi_of",
]

BINS = 10
EPS = 1e-4  # floor of a bin's share
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def is_numeric(column: Any) -> bool:
    """An Arrow array, chunked array or schema field of numbers (booleans count as 0 and 1)."""
    kind = column.type
    return bool(
        pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)
    )


def numbers(column: Any) -> np.ndarray:
    """The non-null, non-NaN values of a numeric Arrow column as float64."""
    values = pc.drop_null(column)
    if pa.types.is_boolean(values.type):
        values = pc.cast(values, pa.int8())
    array: np.ndarray = np.asarray(values.to_numpy(), dtype=np.float64)
    missing = np.isnan(array)
    return array[~missing] if missing.any() else array


def ordered(column: Any) -> np.ndarray | None:
    """The non-null, non-NaN values of a numeric column, sorted; None for any other column."""
    return np.sort(numbers(column)) if is_numeric(column) else None


def categories(column: Any) -> dict[str, int]:
    """Each non-null value of a column (as text) with its count."""
    counts = pc.value_counts(pc.drop_null(pc.cast(column, pa.string())))
    return dict(
        zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True)
    )


def _shares(values: np.ndarray, edges: np.ndarray, *, is_sorted: bool = False) -> np.ndarray:
    """Each bin's share of ``values``: bin k holds edges[k-1] <= v < edges[k]."""
    if is_sorted:  # a bin's count is where its edges fall: no pass over the values
        cuts = np.searchsorted(values, edges, side="left")
        counts = np.diff(np.concatenate([[0], cuts, [len(values)]]))
    else:
        bins = np.searchsorted(edges, values, side="right")
        counts = np.bincount(bins, minlength=len(edges) + 1)
    return np.maximum(counts / max(len(values), 1), EPS)


def psi_of(p: np.ndarray, q: np.ndarray) -> float:
    """The population stability index of shares ``q`` against baseline shares ``p``."""
    return float(np.sum((q - p) * np.log(q / p)))


def _steps(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where the empirical CDF of sorted ``values`` steps (each distinct value) and its value
    there: the share of values at most that one."""
    ends = np.append(np.flatnonzero(values[1:] != values[:-1]), len(values) - 1)
    return values[ends], (ends + 1) / len(values)


def ks_statistic(
    ordered_base: np.ndarray, current: np.ndarray, *, is_sorted: bool = False
) -> float:
    """The largest gap between the empirical CDFs of ``ordered_base`` (sorted) and ``current``.

    Both are step functions, so the gap is largest at a step of one of them: each CDF is read
    at the other's steps (a ``searchsorted`` of the distinct values only), which is scipy's
    ``ks_2samp`` statistic without evaluating both CDFs at every value of both samples."""
    if len(ordered_base) == 0 or len(current) == 0:
        return math.nan
    cur = current if is_sorted else np.sort(current)
    base_x, base_cdf = _steps(ordered_base)  # not kept in the Reference: as big as the baseline
    cur_x, cur_cdf = _steps(cur)
    at_base = base_cdf - np.searchsorted(cur, base_x, side="right") / len(cur)
    at_cur = cur_cdf - np.searchsorted(ordered_base, cur_x, side="right") / len(ordered_base)
    return float(max(np.max(np.abs(at_base)), np.max(np.abs(at_cur))))


@dataclass(frozen=True)
class Reference:
    """One baseline column, prepared for comparing windows with it by ``method``."""

    method: str  # psi | ks
    numeric: bool
    rows: int
    edges: np.ndarray | None = None  # psi, numeric: the inner bin edges
    shares: np.ndarray | None = None  # psi, numeric: the baseline's share per bin
    ordered: np.ndarray | None = None  # ks: the baseline's values, sorted
    counts: dict[str, int] | None = None  # psi, text: the baseline's count per category

    @classmethod
    def of(cls, column: Any, method: str) -> Reference | None:
        """None when the column cannot be compared this way (no values; KS of text)."""
        numeric = is_numeric(column)
        if method == "ks" and not numeric:
            return None
        if numeric:
            values = numbers(column)
            if len(values) == 0:
                return None
            if method == "ks":
                return cls(method, True, len(values), ordered=np.sort(values))
            cuts = np.quantile(values, np.linspace(0, 1, BINS + 1)[1:-1])
            edges = np.unique(cuts)
            return cls(method, True, len(values), edges=edges, shares=_shares(values, edges))
        counts = categories(column)
        if not counts:
            return None
        return cls(method, False, sum(counts.values()), counts=counts)

    def compare(self, column: Any, values: np.ndarray | None = None) -> float:
        """The statistic of a window's column; NaN when the window has no values there.
        ``values``: the column's :func:`ordered` values, when the caller sorted them already."""
        if self.numeric:
            if not is_numeric(column):
                return math.nan
            is_sorted = values is not None
            if values is None:
                values = numbers(column)
            if len(values) == 0:
                return math.nan
            if self.method == "ks":
                assert self.ordered is not None
                return ks_statistic(self.ordered, values, is_sorted=is_sorted)
            assert self.edges is not None
            assert self.shares is not None
            return psi_of(self.shares, _shares(values, self.edges, is_sorted=is_sorted))
        assert self.counts is not None
        current = categories(column)
        total = sum(current.values())
        if total == 0:
            return math.nan
        names = sorted(set(self.counts) | set(current))
        p = np.maximum(np.array([self.counts.get(n, 0) for n in names]) / self.rows, EPS)
        q = np.maximum(np.array([current.get(n, 0) for n in names]) / total, EPS)
        return psi_of(p, q)


def profile(column: Any, values: np.ndarray | None = None) -> dict[str, Any]:
    """Count, nulls, distinct values and, for numbers, mean, std, min, quantiles and max.
    ``values``: the column's :func:`ordered` values, when the caller sorted them already."""
    nulls = int(column.null_count)
    if values is None:
        values = ordered(column)
    if values is not None:  # sorted once: distinct values are where it steps
        distinct = int(np.count_nonzero(np.diff(values))) + 1 if len(values) else 0
    else:
        distinct = int(pc.count_distinct(column, mode="only_valid").as_py())
    out: dict[str, Any] = {
        "count": len(column) - nulls,
        "nulls": nulls,
        "distinct": distinct,
        "mean": None,
        "std": None,
        "min": None,
        "max": None,
        **{_q(q): None for q in QUANTILES},
    }
    if values is not None and len(values):
        qs = np.quantile(values, QUANTILES)
        out.update(
            mean=float(values.mean()),
            std=float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            min=float(values.min()),
            max=float(values.max()),
            **{_q(q): float(v) for q, v in zip(QUANTILES, qs, strict=True)},
        )
    return out


def _q(q: float) -> str:
    return f"p{round(q * 100):02d}"


PROFILE_STATS = ("count", "nulls", "distinct", "mean", "std", "min", *map(_q, QUANTILES), "max")
