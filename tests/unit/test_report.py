"""The report as a pure function of hand-built metric tables, and what decides its inputs.

The tables have the monitor's own schemas; the HTML is parsed back (Python's HTML parser, and
the SVGs as XML) rather than matched as text where structure matters.
"""

from __future__ import annotations

import datetime as dt
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
import yaml

from controller.api.documents import ModelDeployment
from controller.jobs.monitor import (
    ALL,
    DRIFT_SCHEMA,
    PROFILE_SCHEMA,
    QUALITY_SCHEMA,
    MonitorSpec,
    window_rows,
)
from controller.jobs.report import (
    MAX_DRIFT_CHARTS,
    ReportData,
    monitor_spec,
    monitored_table,
    newest_drift,
    render,
)
from tests.helpers import PROJECT
from tests.unit.test_monitoring import NOW, lake  # noqa: F401 - the fixture

T0 = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
WINDOWS = [(f"w{i}", T0 + dt.timedelta(hours=i)) for i in range(3)]
ODD = 'a$b$ <i>&"'  # not TeX, not markup: a name


def _drift() -> Any:
    rows = []
    features = [f"f{i:02d}" for i in range(14)] + ["kind", ODD]
    for n, (window, start) in enumerate(WINDOWS):
        for feature in features:
            drifted = n == 2 and feature in ("kind", ODD)
            statistic = 0.9 if drifted else 0.01 * (n + 1)
            rows.append(
                {
                    "window": window,
                    "window_start": start,
                    "model_version": ALL,
                    "feature": feature,
                    "method": "psi",
                    "statistic": statistic,
                    "threshold": 0.2,
                    "drifted": drifted,
                    "rows": 100 * (n + 1),
                    "checked_at": start,
                }
            )
        rows.append({**rows[-1], "model_version": "2", "rows": None})  # per version
    return pa.Table.from_pylist(rows, schema=DRIFT_SCHEMA)


def _profile() -> Any:
    rows = [
        {
            "window": window,
            "window_start": start,
            "model_version": ALL,
            "column": "latency_ms",
            "count": 100,
            "nulls": 0,
            "distinct": 90,
            "p50": 4.0 + n,
            "p95": 12.0 + n,
            "checked_at": start,
        }
        for n, (window, start) in enumerate(WINDOWS)
    ]
    return pa.Table.from_pylist(rows, schema=PROFILE_SCHEMA)


def _quality() -> Any:
    rows = []
    for n, (window, start) in enumerate(WINDOWS):
        versions = [(ALL, ""), ("1", "champion"), ("2", "challenger")] if n == 2 else [(ALL, "")]
        for version, role in versions:
            for metric, value in (("accuracy", 0.55 if n == 2 else 0.95), ("f1", 0.9)):
                whole = version == ALL
                bound = 0.8 if whole and metric == "accuracy" else None
                rows.append(
                    {
                        "window": window,
                        "window_start": start,
                        "model_version": version,
                        "role": role,
                        "metric": metric,
                        "value": value,
                        "labeled_rows": 50,
                        "rows": 100,
                        "min": bound,
                        "max": None,
                        "breached": (value < bound) if bound is not None else None,
                        "checked_at": start,
                    }
                )
    return pa.Table.from_pylist(rows, schema=QUALITY_SCHEMA)


def _data(**kw: Any) -> ReportData:
    base: dict[str, Any] = {
        "title": "report <of> fraud & co",
        "facts": [("monitored table", "prod/fraud/<scores>")],
        "drift": _drift(),
        "profile": _profile(),
        "quality": _quality(),
        "baseline": pa.table({"kind": ["a", "b"] * 50, ODD: [float(i) for i in range(100)]}),
        "current": pa.table({"kind": ["c"] * 30, ODD: [50.0 + i for i in range(30)]}),
        "retrain_due": "w2",
        "generated_at": NOW,
    }
    return ReportData(**{**base, **kw})


class _Page(HTMLParser):
    """Tags and text of a page; raises on an end tag that closes nothing open."""

    VOID = frozenset({"meta", "link", "br", "img", "input", "hr", "source", "use", "path"})

    def __init__(self, text: str) -> None:
        super().__init__()
        self.open: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        assert self.open, tag
        assert self.open[-1] == tag, (tag, self.open[-5:])
        self.open.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _figures(page: _Page) -> list[tuple[str, str]]:
    return [
        (str(a["data-chart"]), str(a["data-name"]))
        for tag, a in page.tags
        if tag == "figure" and "data-chart" in a
    ]


def test_every_section_drawn_escaped_and_self_contained() -> None:
    text = render(_data())
    page = _Page(text)
    assert page.open == []  # every element closed
    figures = _figures(page)
    kinds = [k for k, _ in figures]
    # Drift: the two drifted in the newest window first, then the cap; the rest in text.
    drift = [n for k, n in figures if k == "drift"]
    assert len(drift) == MAX_DRIFT_CHARTS
    assert set(drift[:2]) == {"kind", ODD}
    assert "4 more features not charted, none drifted in the newest window" in "".join(page.text)
    assert sorted(n for k, n in figures if k == "distribution") == sorted(["kind", ODD])
    assert [n for k, n in figures if k == "quality"] == ["accuracy", "f1"]
    assert kinds.count("volume") == kinds.count("latency") == 1

    # Text from the tables is text: escaped in HTML, never TeX in the charts.
    assert ODD not in text
    assert "a$b$ &lt;i&gt;&amp;&quot;" in text
    assert "<i>" not in text
    assert "report &lt;of&gt; fraud &amp; co" in text
    assert "prod/fraud/&lt;scores&gt;" in text

    # One file: no script, nothing that fetches, and a policy that forbids fetching.
    assert not [t for t, _ in page.tags if t in ("script", "img", "iframe", "object")]
    links = [v for _, a in page.tags for k, v in a.items() if k in ("src", "href", "xlink:href")]
    assert links == ["data:,"] + [v for v in links[1:] if str(v).startswith("#")]
    assert "default-src 'none'" in text

    # Each SVG is well-formed XML, and its ids are unique in the page and resolve.
    svgs = re.findall(r"<svg.*?</svg>", text, flags=re.S)
    assert len(svgs) == len(figures)
    for svg in svgs:
        ET.fromstring(svg)
    ids = re.findall(r'\bid="([^"]+)"', text)
    assert len(ids) == len(set(ids))
    for ref in re.findall(r'(?:url\(#|href="#)([^")]+)', text):
        assert ref in ids

    # Pure and deterministic: the same data, the same bytes.
    assert render(_data()) == text


def test_summary_rows_verdicts_and_retraining() -> None:
    text = render(_data())
    rows = re.findall(r"<tr class=\"(\w+)\"><td>(w\d)</td>.*?</tr>", text, flags=re.S)
    assert rows == [("violated", "w2"), ("ok", "w1"), ("ok", "w0")]
    newest = re.search(r'<tr class="violated"><td>w2</td>(.*?)</tr>', text, flags=re.S)
    assert newest is not None
    cells = re.findall(r"<td[^>]*>(.*?)</td>", newest[1])
    assert cells[1] == "300"  # rows of the whole window, not a version's
    assert cells[2].startswith("2: ")
    assert cells[3] == "1: accuracy 0.55 (&gt;= 0.8)"
    assert cells[4] == "violated · retraining due"


def test_empty_sections_say_why() -> None:
    data = ReportData(
        title="nothing yet",
        notes={
            "drift": "no drift table yet: x_drift does not exist",
            "quality": "no quality table: monitoring.labels is not set",
            "distributions": "no drift computed yet: nothing to compare",
        },
    )
    page = _Page(render(data))
    assert _figures(page) == []
    said = "".join(page.text)
    for note in data.notes.values():
        assert note in said
    assert "no latency" in said

    # Drift, but nothing drifted now and no labels: no distributions, a quality note.
    calm = _drift().filter(~pc.field("drifted"))
    text = render(ReportData(title="calm", drift=calm, notes={"quality": "no quality table"}))
    assert "no feature drifted in the newest window" in text
    assert [k for k, _ in _figures(_Page(text))].count("distribution") == 0


def test_newest_drift_is_judged_on_the_whole_window() -> None:
    newest = newest_drift(_drift())
    assert newest is not None
    window, start, drifted = newest
    assert (window, start) == ("w2", WINDOWS[2][1])
    assert set(drifted) == {"kind", ODD}
    assert newest_drift(None) is None


def _doc(name: str) -> Any:
    text = (PROJECT / "environments/prod" / name).read_text()
    return ModelDeployment.model_validate(yaml.safe_load(text)).spec


def test_the_monitored_table_and_the_cronjobs_spec() -> None:
    spec = _doc("fraud-detector.yaml")
    monitored = monitored_table(spec)
    assert (monitored.source, monitored.table) == ("batch", "prod/fraud/scores_daily")
    mon = monitor_spec(spec, "/lake")
    assert (mon.current_uri, mon.baseline_uri) == (
        "/lake/prod/fraud/scores_daily",
        "/lake/prod/fraud/training_baseline",
    )
    assert mon.table("drift") == "/lake/prod/fraud/scores_daily_drift"
    assert (mon.method, mon.threshold, mon.retrain) == ("psi", 0.2, (2, 5))
    # Inference input: the table serving.inferenceTable names (None while it names none).
    assert spec.monitoring is not None
    inference = spec.model_copy(
        update={"monitoring": spec.monitoring.model_copy(update={"input": "inference"})}
    )
    found = monitored_table(inference)
    assert (found.source, found.field) == ("inference", "spec.serving.inferenceTable")
    assert found.table == getattr(spec.serving, "inference_table", None)


def test_window_rows_are_the_rows_the_monitor_read(lake: Path) -> None:  # noqa: F811
    spec = MonitorSpec(
        baseline_uri=str(lake / "base"),
        current_uri=str(lake / "inference"),
        source="inference",
        window_seconds=3600,
    )
    noon = NOW.replace(minute=0)
    rows = window_rows(spec, "2026-12-02T12:00:00Z", noon, ["x", "model_version", "absent"])
    assert rows.column_names == ["x", "model_version"]
    assert rows.num_rows == 800  # both versions, not the 50 failed requests
    assert max(rows["x"].to_pylist()) < 99
    eleven = window_rows(spec, "2026-12-02T11:00:00Z", noon - dt.timedelta(hours=1), ["x"])
    assert eleven.num_rows == 800


def test_a_window_of_a_batch_is_its_batch_id(tmp_path: Path) -> None:
    from deltalake import write_deltalake

    at = dt.datetime(2026, 12, 1, 11, tzinfo=dt.UTC)
    write_deltalake(
        str(tmp_path / "scores"),
        pa.table(
            {
                "x": [1.0, 2.0, 3.0],
                "batch_id": ["b1", "b2", "b2"],
                "scored_at": pa.array([at, at, at], pa.timestamp("us", tz="UTC")),
            }
        ),
    )
    spec = MonitorSpec(baseline_uri="unused", current_uri=str(tmp_path / "scores"))
    assert window_rows(spec, "b2", at, ["x"])["x"].to_pylist() == [2.0, 3.0]


@pytest.mark.parametrize("window", ["2026-12-02T11:00:00Z", "fraud-detector-monitor-29412345"])
def test_long_window_ids_are_shortened_on_axes(window: str) -> None:
    from controller.jobs.report import _short

    assert len(_short(window)) <= 14


def test_edge_cases_draw_without_a_warning() -> None:
    """One window, statistics that are NaN, columns with no values, more drifted features than
    charts: drawn (warnings are errors here), and said."""
    window, start = WINDOWS[0]
    features = [f"f{i:02d}" for i in range(15)] + ["empty"]
    drift = pa.Table.from_pylist(
        [
            {
                "window": window,
                "window_start": start,
                "model_version": ALL,
                "feature": f,
                "method": "ks",
                "statistic": float("nan") if f == "empty" else 0.5,
                "threshold": 0.1,
                "drifted": f != "empty",
                "rows": 10,
                "checked_at": start,
            }
            for f in features
        ],
        schema=DRIFT_SCHEMA,
    )
    nothing = pa.array([None] * 10, pa.float64())
    quality = _quality().filter(pc.field("window") == "w0")
    quality = quality.set_column(
        quality.schema.get_field_index("value"), "value", pa.array([None] * quality.num_rows)
    )
    text = render(
        ReportData(
            title="edges",
            drift=drift,
            quality=quality,
            baseline=pa.table({"f00": nothing, "f01": pa.array(["x"] * 10)}),
            current=pa.table({"f00": nothing, "f01": pa.array([None] * 10, pa.string())}),
        )
    )
    figures = _figures(_Page(text))
    assert [k for k, _ in figures].count("drift") == MAX_DRIFT_CHARTS
    assert "4 more features not charted, 3 of them drifted in the newest window" in text
    assert "empty -" in text  # a NaN statistic is shown as none
    assert [n for k, n in figures if k == "distribution"] == ["f00", "f01"]
    assert "not in both tables, so not drawn: f02, f03, f04, f05" in text
    assert "9 more drifted, not drawn" in text

    # Only a profile (the drift table lost): volume from its counts, a note for the rest.
    profile_only = render(ReportData(title="p", profile=_profile(), notes={"drift": "no drift"}))
    assert [k for k, _ in _figures(_Page(profile_only))] == ["volume", "latency"]
