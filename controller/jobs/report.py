"""The monitoring report: one HTML file a person opens to see what the metric tables say.

The monitor's Delta tables (``<table>_drift``, ``_profile``, ``_quality``) are the record, made
for queries and for the retraining decision; nobody reads them by eye. The report draws them:
a summary per window, drift per feature over the windows (the threshold and the drifted points
marked), the baseline beside the newest window for the features that drifted there, quality
per metric and version, volume and latency.

It is one self-contained file, because it travels: an MLflow artifact of every monitor run, an
attachment, a file opened from a laptop with no network. So the charts are drawn here, as
inline SVG by matplotlib (no JavaScript, no CDN, no fonts to fetch), the styles are inline, a
Content-Security-Policy forbids every fetch, and every piece of text from the tables is
escaped. matplotlib is used through ``Figure`` only (no pyplot), so there is no GUI backend and
no global figure state, and SVGs are made deterministic (fixed id salt, no date).

Two halves: :func:`gather` reads what the report needs (the metric tables whole, the newest
window's rows and the baseline for the drifted features only, only their columns), noting
why a part is missing rather than failing; :func:`render` is a pure function of that data to
one HTML string, which the tests and the monitor call alike.
"""

from __future__ import annotations

import datetime as dt
import html
import io
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]

from controller.errors import JobError
from controller.jobs.drift import categories, is_numeric, numbers
from controller.jobs.monitor import ALL, LabelSource, MonitorSpec, QualityBound, window_rows
from controller.jobs.quality import CLASSIFIER_METRICS, REGRESSOR_METRICS
from controller.lake.tables import open_dataset, read_table, table_uri

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.typing import RcKeyType

    from controller.api.documents import ModelDeploymentSpec

__all__ = [
    "Monitored",
    "ReportData",
    "gather",
    "monitor_spec",
    "monitored_table",
    "newest_drift",
    "render",
]

MAX_WINDOWS = 60  # windows charted (the newest); the tables keep every one
MAX_DRIFT_CHARTS = 12
MAX_DISTRIBUTIONS = 6
MAX_CATEGORIES = 12
HIST_BINS = 30
NO_LATENCY = (
    "no latency: the monitored table has no latency_ms column (a batch output; the model "
    "server's inference table has one)"
)

_BLUE, _GREY, _RED, _INK = "#2563eb", "#9ca3af", "#dc2626", "#111827"
_VERSION_COLORS = ("#2563eb", "#d97706", "#059669", "#7c3aed", "#db2777", "#0891b2")
_RC: dict[RcKeyType, Any] = {
    "svg.fonttype": "none",  # text stays text: small, selectable, no glyph definitions
    "text.parse_math": False,  # a feature called "a$b$" is a name, not TeX
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.fontsize": 8,
    "legend.frameon": False,
}


# --- what is monitored ---------------------------------------------------------------------


@dataclass(frozen=True)
class Monitored:
    """The table a ModelDeployment's monitoring watches, and where its document names it."""

    source: Literal["batch", "inference"]
    table: str | None  # the table name as the document gives it; None: not named
    field: str  # the document field that names it


def monitored_table(spec: ModelDeploymentSpec) -> Monitored:
    """``monitoring.input`` resolved: the batch output (``batchInference.output``) or the
    inference table (``serving.inferenceTable``); omitted, the batch output when there is batch
    inference, else the inference table. The one place that decides it for the report."""
    source, table = spec.monitored()
    field = "spec.batchInference.output" if source == "batch" else "spec.serving.inferenceTable"
    return Monitored(source, table, field)


def monitor_spec(spec: ModelDeploymentSpec, data_root: str) -> MonitorSpec:
    """The :class:`MonitorSpec` the monitoring CronJob of ``spec`` runs with (tables resolved
    under ``data_root``). Raises :class:`JobError` when there is no monitoring or no monitored
    table."""
    mon = spec.monitoring
    if mon is None:
        raise JobError("spec.monitoring: the ModelDeployment has no monitoring section")
    monitored = monitored_table(spec)
    if monitored.table is None:
        raise JobError(
            f"{monitored.field}: not set, so there is no monitored table (monitoring.input "
            f"is {monitored.source})"
        )
    labels = mon.labels
    return MonitorSpec(
        baseline_uri=table_uri(mon.baseline, data_root),
        current_uri=table_uri(monitored.table, data_root),
        method=mon.drift.method,
        threshold=mon.drift.threshold,
        source=monitored.source,
        window_seconds=int(mon.window) if mon.window is not None else None,
        lookback=mon.lookback,
        labels=LabelSource(
            table_uri(labels.table, data_root), tuple(labels.key), labels.target, labels.min_rows
        )
        if labels is not None
        else None,
        model_type=mon.model_type,
        quality=tuple(QualityBound(q.metric, q.min, q.max) for q in mon.quality),
        retrain=(mon.retrain.violations, mon.retrain.windows) if mon.retrain else None,
    )


# --- the data ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReportData:
    """Everything the report shows, read; :func:`render` turns it into HTML with no I/O."""

    title: str
    facts: Sequence[tuple[str, str]] = ()  # (label, value) lines under the title
    drift: Any | None = None  # pyarrow.Table of <table>_drift
    profile: Any | None = None  # <table>_profile
    quality: Any | None = None  # <table>_quality
    baseline: Any | None = None  # the baseline's columns of the features drifted in ``newest``
    current: Any | None = None  # the newest window's rows of those columns
    notes: Mapping[str, str] = field(default_factory=dict)  # section -> why it is empty
    problems: Sequence[str] = ()  # unusable input, shown on top
    retrain_due: str | None = None  # the window the registered model's tag names
    generated_at: dt.datetime | None = None


def newest_drift(drift: Any | None) -> tuple[str, dt.datetime | None, list[str]] | None:
    """(window, its start, the features drifted there, most drifted first) of the newest window
    the drift table holds, judged on the whole window; None when it holds none."""
    if drift is None or drift.num_rows == 0:
        return None
    whole = drift.filter(pc.equal(drift["model_version"], ALL))
    order = _order(whole.select(["window", "window_start"]).to_pylist())
    if not order:
        return None
    window, start = order[-1]
    rows = whole.filter(pc.equal(whole["window"], window)).to_pylist()
    hits = [r for r in rows if r["drifted"]]
    hits.sort(key=lambda r: (-_num(r["statistic"], -math.inf), str(r["feature"])))
    return window, start, [str(r["feature"]) for r in hits]


def gather(
    spec: MonitorSpec,
    *,
    title: str,
    facts: Sequence[tuple[str, str]] = (),
    no_labels: str = "monitoring.labels is not set",
    retrain_due: str | None = None,
    now: dt.datetime | None = None,
) -> ReportData:
    """Read the metric tables of ``spec`` and, for the features drifted in the newest window,
    the baseline's and that window's values. A table not written yet, or a baseline or current
    table missing, is a note in the section it empties; a table that cannot be read is a
    problem. Never raises for the tables' sake."""
    notes: dict[str, str] = {}
    problems: list[str] = []
    options = spec.storage_options

    def metric_table(kind: str, required: tuple[str, ...], missing_note: str = "") -> Any | None:
        uri = spec.table(kind)
        try:
            table = read_table(uri, options)
        except JobError as exc:
            problems.append(str(exc))
            notes[kind] = f"the {kind} table cannot be read: {exc}"
            return None
        if table is None:
            notes[kind] = missing_note or (
                f"no {kind} table yet: {uri} does not exist (the monitor has not run)"
            )
            return None
        missing = [c for c in required if c not in table.column_names]
        if missing:
            problems.append(f"{kind} table {uri} has no column {', '.join(missing)}")
            notes[kind] = f"the {kind} table lacks {', '.join(missing)}"
            return None
        return table

    key = ("window", "window_start", "model_version")
    drift = metric_table("drift", (*key, "feature", "statistic", "threshold", "drifted", "rows"))
    profile = metric_table("profile", (*key, "column", "count", "p50", "p95"))
    quality = None
    if spec.labels is None:
        notes["quality"] = f"no quality table: {no_labels}"
    else:
        quality = metric_table(
            "quality",
            (*key, "role", "metric", "value", "labeled_rows", "rows", "min", "max", "breached"),
            f"no quality yet: {spec.table('quality')} does not exist (no label in "
            f"{spec.labels.uri} has joined a prediction of the windows computed, or the monitor "
            "has not run)",
        )

    baseline = current = None
    newest = newest_drift(drift)
    if newest is None:
        notes.setdefault("distributions", "no drift computed yet: nothing to compare")
    elif not newest[2]:
        notes["distributions"] = f"no feature drifted in the newest window, {newest[0]}"
    else:
        window, start, drifted = newest
        wanted = drifted[:MAX_DISTRIBUTIONS]
        try:
            base_ds = open_dataset(spec.baseline_uri, "baseline", options)
            have = [f for f in wanted if f in base_ds.schema.names]
            baseline = base_ds.to_table(columns=have)
        except JobError as exc:
            notes["distributions"] = f"no distributions: {exc}"
        if baseline is not None:
            try:
                current = window_rows(spec, window, start or dt.datetime.now(dt.UTC), wanted)
            except JobError as exc:
                notes["distributions"] = f"no distributions: {exc}"
                baseline = None
    return ReportData(
        title=title,
        facts=list(facts),
        drift=drift,
        profile=profile,
        quality=quality,
        baseline=baseline,
        current=current,
        notes=notes,
        problems=problems,
        retrain_due=retrain_due,
        generated_at=now or dt.datetime.now(dt.UTC),
    )


# --- rows ----------------------------------------------------------------------------------


def _order(rows: list[dict[str, Any]]) -> list[tuple[str, dt.datetime | None]]:
    """The windows of ``rows`` (with ``window`` and ``window_start``), oldest first."""
    starts: dict[str, dt.datetime | None] = {}
    for r in rows:
        w, s = str(r["window"]), r.get("window_start")
        if s is not None and s.tzinfo is None:
            s = s.replace(tzinfo=dt.UTC)
        if w not in starts or (s is not None and (starts[w] is None or s < starts[w])):
            starts[w] = s
    epoch = dt.datetime.min.replace(tzinfo=dt.UTC)
    return sorted(starts.items(), key=lambda item: (item[1] or epoch, item[0]))


@dataclass
class _View:
    """The rows of the windows shown, read out of the Arrow tables once."""

    windows: list[str]  # shown, oldest first
    starts: dict[str, dt.datetime | None]
    total: int  # windows the tables hold
    drift: list[dict[str, Any]]
    profile: list[dict[str, Any]]
    quality: list[dict[str, Any]]

    @classmethod
    def of(cls, data: ReportData) -> _View:
        tables = [t for t in (data.drift, data.profile, data.quality) if t is not None]
        keys = [r for t in tables for r in t.select(["window", "window_start"]).to_pylist()]
        every = _order(keys)
        shown = every[-MAX_WINDOWS:]
        ids = pa.array([w for w, _ in shown], pa.string())

        def rows(table: Any | None) -> list[dict[str, Any]]:
            if table is None:
                return []
            return list(table.filter(pc.is_in(table["window"], value_set=ids)).to_pylist())

        return cls(
            windows=[w for w, _ in shown],
            starts=dict(shown),
            total=len(every),
            drift=rows(data.drift),
            profile=rows(data.profile),
            quality=rows(data.quality),
        )

    @property
    def newest(self) -> str | None:
        """The newest window with drift rows (every window with rows has them)."""
        have = {r["window"] for r in self.drift}
        return next((w for w in reversed(self.windows) if w in have), None)


def _whole(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows covering every version of their window (``model_version`` ``*``)."""
    return [r for r in rows if r.get("model_version") == ALL]


def _num(value: Any, default: float = math.nan) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return default
    return number if math.isfinite(number) else default


def _fmt(value: Any) -> str:
    number = _num(value)
    if math.isnan(number):
        return "-"
    if number == int(number) and abs(number) < 1e9:
        return f"{int(number):,}"
    return f"{number:.3g}" if abs(number) < 1e4 else f"{number:,.0f}"


def _when(start: dt.datetime | None) -> str:
    return "" if start is None else start.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M")


_ISO = re.compile(r"\d{4}-(\d\d)-(\d\d)T(\d\d):(\d\d):\d\dZ")


def _short(window: str) -> str:
    """A window id short enough for an axis label."""
    m = _ISO.fullmatch(window)
    if m:
        return f"{m[1]}-{m[2]} {m[3]}:{m[4]}"
    return window if len(window) <= 14 else "…" + window[-13:]


def _clip(text: str, size: int = 24) -> str:
    return text if len(text) <= size else text[: size - 1] + "…"


# --- charts --------------------------------------------------------------------------------


class _Charts:
    """Numbered inline SVGs: ids inside each are prefixed with its number, so the documents'
    clip paths and markers never collide in one HTML page."""

    def __init__(self) -> None:
        self.count = 0

    def figure(self, *, height: float = 2.3, width: float = 6.2) -> tuple[Figure, Axes]:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(width, height))
        # Fixed margins rather than a layout engine: as good for these charts, half the time.
        fig.subplots_adjust(left=0.11, right=0.98, top=0.95, bottom=0.3)
        return fig, fig.subplots()

    def svg(self, fig: Figure) -> str:
        import matplotlib as mpl

        self.count += 1
        prefix = f"c{self.count}"
        buf = io.StringIO()
        rc = dict(_RC)
        rc["svg.hashsalt"] = prefix
        with mpl.rc_context(rc):
            fig.savefig(buf, format="svg", metadata={"Date": None})
        text = buf.getvalue()
        text = text[text.index("<svg") :]
        text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.S)
        ids = set(re.findall(r'\bid="([^"]+)"', text))
        text = re.sub(r'\bid="([^"]+)"', lambda m: f'id="{prefix}-{m[1]}"', text)
        return re.sub(
            r'(url\(#|href="#)([^")]+)',
            lambda m: f"{m[1]}{prefix}-{m[2]}" if m[2] in ids else m[0],
            text,
        )


@contextmanager
def _style() -> Iterator[None]:
    import matplotlib as mpl

    with mpl.rc_context(_RC):
        yield


def _x_axis(ax: Axes, windows: list[str]) -> None:
    from matplotlib.ticker import MaxNLocator

    step = max(1, math.ceil(len(windows) / 14))
    ticks = list(range(0, len(windows), step))
    ax.set_xticks(ticks, [_short(windows[i]) for i in ticks], rotation=30, ha="right")
    ax.set_xlim(-0.6, len(windows) - 0.4)
    ax.yaxis.set_major_locator(MaxNLocator(5))
    ax.grid(axis="y", color="#e5e7eb", linewidth=0.6)


def _legend(ax: Axes, loc: Literal["best", "upper right"]) -> None:
    """A legend when something is labeled (matplotlib warns about an empty one)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc=loc)


def _figure_html(kind: str, name: str, caption: str, svg: str) -> str:
    return (
        f'<figure class="chart" data-chart="{html.escape(kind)}" data-name="{html.escape(name)}">'
        f"<figcaption>{caption}</figcaption>{svg}</figure>"
    )


# --- sections ------------------------------------------------------------------------------


def _note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


def _summary(data: ReportData, view: _View) -> str:
    drift, quality = _whole(view.drift), _whole(view.quality)
    rows = _rows_per_window(view)
    out = ['<section id="summary"><h2>Windows</h2>']
    if not view.windows:
        why = data.notes.get("drift") or "no windows computed yet"
        return "".join(out) + _note(why) + "</section>"
    out.append(
        '<table class="summary"><thead><tr><th>window</th><th>start (UTC)</th>'
        "<th>rows</th><th>drifted features</th><th>quality breaches</th><th>verdict</th>"
        "</tr></thead><tbody>"
    )
    for window in reversed(view.windows):
        hits = sorted(
            (r for r in drift if r["window"] == window and r["drifted"]),
            key=lambda r: -_num(r["statistic"], -math.inf),
        )
        names = ", ".join(f"{r['feature']} {_fmt(r['statistic'])}" for r in hits[:5])
        if len(hits) > 5:
            names += f" and {len(hits) - 5} more"
        breaches = [r for r in quality if r["window"] == window and r["breached"]]
        said = ", ".join(f"{r['metric']} {_fmt(r['value'])} ({_bound_text(r)})" for r in breaches)
        verdict = "violated" if hits or breaches else "ok"
        due = " · retraining due" if data.retrain_due == window else ""
        out.append(
            f'<tr class="{verdict}"><td>{html.escape(window)}</td>'
            f"<td>{_when(view.starts.get(window))}</td>"
            f'<td class="n">{_fmt(rows.get(window))}</td>'
            f"<td>{len(hits)}{': ' + html.escape(names) if hits else ''}</td>"
            f"<td>{len(breaches)}{': ' + html.escape(said) if breaches else ''}</td>"
            f"<td>{verdict}{html.escape(due)}</td></tr>"
        )
    out.append("</tbody></table></section>")
    return "".join(out)


def _bound_text(row: Mapping[str, Any]) -> str:
    return " and ".join(
        f"{op} {_fmt(row[k])}" for op, k in ((">=", "min"), ("<=", "max")) if row.get(k) is not None
    )


def _rows_per_window(view: _View) -> dict[str, float]:
    out: dict[str, float] = {}
    for r in _whole(view.drift):
        if r.get("rows") is not None:
            out[str(r["window"])] = float(r["rows"])
    if not out:  # no drift table: the largest column count the profile has
        for r in _whole(view.profile):
            total = _num(r.get("count"), 0) + _num(r.get("nulls"), 0)
            out[str(r["window"])] = max(out.get(str(r["window"]), 0.0), total)
    return out


def _drift_section(data: ReportData, view: _View, charts: _Charts) -> str:
    out = ['<section id="drift"><h2>Drift per feature</h2>']
    rows = _whole(view.drift)
    newest = view.newest
    if not rows or newest is None:
        why = data.notes.get("drift") or "no drift rows for these windows"
        return "".join(out) + _note(why) + "</section>"
    windows = view.windows
    by: dict[str, dict[str, dict[str, Any]]] = {}
    for r in rows:
        by.setdefault(str(r["feature"]), {})[str(r["window"])] = r
    method = str(rows[-1].get("method") or "statistic")
    drifted_now = [f for f, w in by.items() if newest in w and w[newest]["drifted"]]
    drifted_now.sort(key=lambda f: (-_num(by[f][newest]["statistic"], -math.inf), f))
    rest = [f for f in by if f not in drifted_now]
    rest.sort(key=lambda f: (-max(_num(r["statistic"], -math.inf) for r in by[f].values()), f))
    ordered = drifted_now + rest
    shown, hidden = ordered[:MAX_DRIFT_CHARTS], ordered[MAX_DRIFT_CHARTS:]
    out.append(
        f"<p>{html.escape(method.upper())} of each feature against the baseline, per window "
        "(the whole window, every version); the dashed line is the threshold, red points "
        f"drifted. {len(drifted_now)} of {len(by)} features drifted in the newest window, "
        f"{html.escape(newest)}; they come first.</p>"
    )
    out.append('<div class="grid">')
    x = np.arange(len(windows))
    for feature in shown:
        cells = by[feature]
        stat = np.array([_num(cells[w]["statistic"]) if w in cells else math.nan for w in windows])
        limit = np.array([_num(cells[w]["threshold"]) if w in cells else math.nan for w in windows])
        hit = np.array([bool(cells[w]["drifted"]) if w in cells else False for w in windows])
        fig, ax = charts.figure()
        ax.plot(x, stat, color=_BLUE, marker="o", markersize=3, linewidth=1.4, label=method)
        ax.step(x, limit, where="mid", color=_GREY, linestyle="--", linewidth=1, label="threshold")
        if hit.any():
            ax.plot(x[hit], stat[hit], "o", color=_RED, markersize=5, label="drifted")
        ax.set_ylim(bottom=0)
        _x_axis(ax, windows)
        last = cells.get(newest)
        caption = f"<b>{html.escape(feature)}</b>"
        if last is not None:
            verdict = '<span class="bad">drifted</span>' if last["drifted"] else "no drift"
            caption += f" newest {_fmt(last['statistic'])}, {verdict}"
        out.append(_figure_html("drift", feature, caption, charts.svg(fig)))
    out.append("</div>")
    if hidden:
        listed = ", ".join(
            f"{f} {_fmt(by[f][newest]['statistic']) if newest in by[f] else '-'}" for f in hidden
        )
        also = sum(f in drifted_now for f in hidden)
        said = f"{also} of them drifted" if also else "none drifted"
        out.append(
            f"<p>{len(hidden)} more features not charted, {said} in the newest window (their "
            f"newest statistic): {html.escape(listed)}</p>"
        )
    return "".join(out) + "</section>"


def _distribution_section(data: ReportData, charts: _Charts) -> str:
    out = ['<section id="distributions"><h2>Baseline and newest window</h2>']
    newest = newest_drift(data.drift)
    if newest is None or not newest[2] or data.baseline is None or data.current is None:
        why = data.notes.get("distributions") or "no feature drifted in the newest window"
        return "".join(out) + _note(why) + "</section>"
    window, _, drifted = newest
    out.append(
        f"<p>The features that drifted in window {html.escape(window)}: the baseline's "
        "distribution (grey) and the window's (blue), each as shares of its own rows; values "
        "beyond the 0.5th and 99.5th percentiles fall in the outer bins.</p>"
    )
    missing: list[str] = []
    out.append('<div class="grid">')
    for feature in drifted[:MAX_DISTRIBUTIONS]:
        if feature not in data.baseline.column_names or feature not in data.current.column_names:
            missing.append(feature)
            continue
        base, cur = data.baseline[feature], data.current[feature]
        fig, ax = charts.figure()
        if is_numeric(base) and is_numeric(cur):
            counts = _histogram(ax, numbers(base), numbers(cur))
        else:
            counts = _bars(ax, categories(base), categories(cur))
        _legend(ax, "upper right")
        caption = (
            f"<b>{html.escape(feature)}</b> baseline {counts[0]:,} values, window "
            f"{counts[1]:,} values"
        )
        out.append(_figure_html("distribution", feature, caption, charts.svg(fig)))
    out.append("</div>")
    if missing:
        out.append(_note(f"not in both tables, so not drawn: {', '.join(missing)}"))
    if len(drifted) > MAX_DISTRIBUTIONS:
        rest = ", ".join(drifted[MAX_DISTRIBUTIONS:])
        out.append(_note(f"{len(drifted) - MAX_DISTRIBUTIONS} more drifted, not drawn: {rest}"))
    return "".join(out) + "</section>"


def _histogram(ax: Axes, base: np.ndarray, cur: np.ndarray) -> tuple[int, int]:
    both = np.concatenate([base, cur])
    if len(both) == 0:
        ax.text(0.5, 0.5, "no values", transform=ax.transAxes, ha="center")
        return len(base), len(cur)
    lo, hi = (float(v) for v in np.quantile(both, [0.005, 0.995]))
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, HIST_BINS + 1)
    for values, label in ((base, "baseline"), (cur, "window")):
        if len(values) == 0:
            continue
        counts, _ = np.histogram(np.clip(values, lo, hi), bins=edges)  # tails in the end bins
        shares = counts / len(values)
        if label == "baseline":
            ax.stairs(shares, edges, fill=True, color=_GREY, alpha=0.5, label=label)
        else:
            ax.stairs(shares, edges, color=_BLUE, linewidth=1.6, label=label)
    ax.set_ylabel("share")
    ax.grid(axis="y", color="#e5e7eb", linewidth=0.6)
    return len(base), len(cur)


def _bars(ax: Axes, base: dict[str, int], cur: dict[str, int]) -> tuple[int, int]:
    nb, nc = sum(base.values()), sum(cur.values())
    share_b = {k: v / nb for k, v in base.items()} if nb else {}
    share_c = {k: v / nc for k, v in cur.items()} if nc else {}
    names = sorted(
        set(share_b) | set(share_c),
        key=lambda k: (-max(share_b.get(k, 0.0), share_c.get(k, 0.0)), k),
    )
    shown, rest = names[:MAX_CATEGORIES], names[MAX_CATEGORIES:]
    labels = [_clip(str(n), 16) for n in shown]
    b = [share_b.get(n, 0.0) for n in shown]
    c = [share_c.get(n, 0.0) for n in shown]
    if rest:
        labels.append("(other)")
        b.append(sum(share_b.get(n, 0.0) for n in rest))
        c.append(sum(share_c.get(n, 0.0) for n in rest))
    x = np.arange(len(labels))
    ax.bar(x - 0.2, b, width=0.4, color=_GREY, label="baseline")
    ax.bar(x + 0.2, c, width=0.4, color=_BLUE, label="window")
    ax.set_xticks(x, labels, rotation=30, ha="right")
    ax.set_ylabel("share")
    ax.grid(axis="y", color="#e5e7eb", linewidth=0.6)
    return nb, nc


def _metric_order(metric: str) -> tuple[int, str]:
    known = (*CLASSIFIER_METRICS, *REGRESSOR_METRICS)
    return (known.index(metric) if metric in known else len(known), metric)


def _quality_section(data: ReportData, view: _View, charts: _Charts) -> str:
    out = ['<section id="quality"><h2>Quality per version</h2>']
    rows = view.quality
    if not rows:
        why = data.notes.get("quality") or "no labeled rows in these windows"
        return "".join(out) + _note(why) + "</section>"
    out.append(
        "<p>Each metric per window on the rows whose labels have landed: all versions together "
        "(black) and each version when several served in a window; dashed lines are the "
        "monitoring.quality bounds, red crosses the windows that breached one.</p>"
    )
    out.append('<div class="grid">')
    windows = view.windows
    x = np.arange(len(windows))
    for metric in sorted({str(r["metric"]) for r in rows}, key=_metric_order):
        mine = [r for r in rows if r["metric"] == metric]
        versions = sorted({str(r["model_version"]) for r in mine}, key=lambda v: (v != ALL, v))
        roles = {str(r["model_version"]): str(r.get("role") or "") for r in mine}
        fig, ax = charts.figure()
        for i, version in enumerate(versions):
            cells = {str(r["window"]): r for r in mine if r["model_version"] == version}
            y = np.array([_num(cells[w]["value"]) if w in cells else math.nan for w in windows])
            if version == ALL:
                ax.plot(x, y, color=_INK, marker="o", markersize=3, linewidth=1.8, label="all")
                hit = np.array(
                    [bool(cells[w]["breached"]) if w in cells else False for w in windows]
                )
                if hit.any():
                    ax.plot(x[hit], y[hit], "x", color=_RED, markersize=7, mew=2, label="breached")
                continue
            role = f" ({roles[version]})" if roles.get(version) else ""
            color = _VERSION_COLORS[i % len(_VERSION_COLORS)]
            label = _clip(f"v{version}{role}", 22)
            ax.plot(x, y, color=color, marker="o", markersize=3, linewidth=1.1, label=label)
        whole = [r for r in mine if r["model_version"] == ALL]
        bounds = []
        for side in ("min", "max"):
            value = next((r[side] for r in reversed(whole) if r.get(side) is not None), None)
            if value is not None:
                ax.axhline(float(value), color=_RED, linestyle="--", linewidth=0.9, alpha=0.8)
                bounds.append(f"{'>=' if side == 'min' else '<='} {_fmt(value)}")
        _x_axis(ax, windows)
        _legend(ax, "best")
        last = next((r for r in whole if r["window"] == windows[-1]), None)
        caption = f"<b>{html.escape(metric)}</b>"
        if bounds:
            caption += f" bound {html.escape(' and '.join(bounds))}"
        if last is not None:
            caption += (
                f"; newest {_fmt(last['value'])} on {_fmt(last['labeled_rows'])} labeled of "
                f"{_fmt(last['rows'])} rows"
            )
        out.append(_figure_html("quality", metric, caption, charts.svg(fig)))
    out.append("</div>")
    return "".join(out) + "</section>"


def _volume_section(data: ReportData, view: _View, charts: _Charts) -> str:
    out = ['<section id="volume"><h2>Volume and latency</h2><div class="grid">']
    windows = view.windows
    rows = _rows_per_window(view)
    x = np.arange(len(windows))
    if rows:
        fig, ax = charts.figure()
        ax.bar(x, [rows.get(w, 0.0) for w in windows], color=_BLUE, width=0.7)
        _x_axis(ax, windows)
        total = sum(rows.get(w, 0.0) for w in windows)
        caption = f"<b>rows</b> {_fmt(total)} in {len(windows)} windows"
        out.append(_figure_html("volume", "rows", caption, charts.svg(fig)))
    latency = {str(r["window"]): r for r in _whole(view.profile) if r.get("column") == "latency_ms"}
    if latency:
        fig, ax = charts.figure()
        for stat, color, style in (("p50", _BLUE, "-"), ("p95", _RED, "--")):
            y = np.array([_num(latency[w][stat]) if w in latency else math.nan for w in windows])
            ax.plot(x, y, color=color, linestyle=style, marker="o", markersize=3, label=stat)
        ax.set_ylim(bottom=0)
        ax.set_ylabel("ms")
        _x_axis(ax, windows)
        _legend(ax, "best")
        caption = "<b>latency</b> p50 and p95 of answered requests"
        newest = latency.get(windows[-1])
        if newest is not None:
            caption += f"; newest p50 {_fmt(newest['p50'])} ms, p95 {_fmt(newest['p95'])} ms"
        out.append(_figure_html("latency", "latency_ms", caption, charts.svg(fig)))
    out.append("</div>")
    if not rows:
        out.append(_note(data.notes.get("drift") or "no windows computed yet"))
    if not latency:
        no_profile = data.notes.get("profile")
        out.append(_note(no_profile if data.profile is None and no_profile else NO_LATENCY))
    return "".join(out) + "</section>"


# --- the page ------------------------------------------------------------------------------

_CSS = """
:root { color-scheme: light; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #111827;
  margin: 0 auto; max-width: 1180px; padding: 24px; background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px;
  border-bottom: 1px solid #e5e7eb; padding-bottom: 4px; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px; margin: 8px 0;
  color: #374151; } dl.facts dt { font-weight: 600; } dl.facts dd { margin: 0; }
.problems { background: #fef2f2; border: 1px solid #fecaca; padding: 8px 12px; }
.note { color: #6b7280; font-style: italic; }
table.summary { border-collapse: collapse; width: 100%; font-size: 13px; }
table.summary th, table.summary td { text-align: left; padding: 4px 8px;
  border-bottom: 1px solid #f3f4f6; vertical-align: top; }
table.summary td.n { text-align: right; font-variant-numeric: tabular-nums; }
tr.violated td:last-child, .bad { color: #dc2626; font-weight: 600; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(480px, 1fr)); gap: 12px; }
figure.chart { margin: 0; border: 1px solid #f3f4f6; padding: 6px; }
figure.chart figcaption { font-size: 12px; color: #374151; margin-bottom: 2px; }
figure.chart svg { display: block; width: 100%; height: auto; }
footer { margin-top: 32px; color: #9ca3af; font-size: 12px; }
"""


def render(data: ReportData) -> str:
    """The report as one self-contained HTML document (pure: reads nothing, writes nothing)."""
    view = _View.of(data)
    charts = _Charts()
    with _style():
        body = [
            _summary(data, view),
            _drift_section(data, view, charts),
            _distribution_section(data, charts),
            _quality_section(data, view, charts),
            _volume_section(data, view, charts),
        ]
    facts = list(data.facts)
    if view.total > len(view.windows):
        facts.append(("windows", f"the newest {len(view.windows)} of {view.total} are shown"))
    elif view.windows:
        facts.append(("windows", f"{view.total}, {view.windows[0]} to {view.windows[-1]}"))
    if data.retrain_due:
        facts.append(("retraining due", f"at window {data.retrain_due} (mlgitops.retrain_due)"))
    head = [f"<h1>{html.escape(data.title)}</h1>"]
    if facts:
        items = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in facts)
        head.append(f'<dl class="facts">{items}</dl>')
    if data.problems:
        items = "".join(f"<li>{html.escape(p)}</li>" for p in data.problems)
        head.append(f'<div class="problems"><b>Problems</b><ul>{items}</ul></div>')
    when = ""
    if data.generated_at is not None:
        when = ", generated " + data.generated_at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        # No fetch of any kind: the file must work offline, and a report never calls home.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; img-src data:\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'
        f"<title>{html.escape(data.title)}</title><style>{_CSS}</style></head><body>"
        f"<header>{''.join(head)}</header><main>{''.join(body)}</main>"
        f"<footer>mlgitops monitoring report{when}: one file, no scripts, nothing fetched."
        "</footer></body></html>\n"
    )
