"""Small line charts for the dashboard, drawn on the server as inline SVG.

The model page shows drift and quality over the newest windows. Drawing them on the server means
they show with JavaScript off and fetch nothing; a line chart of a few series over at most 30
windows is a handful of ``<polyline>`` elements, so it is written out here rather than pulling
matplotlib (a second of import, hundreds of milliseconds a figure: ``mlgitops report`` uses it
for the full report, which is drawn once per monitor run, not on every page view).
Every text is escaped; colours come from a fixed palette, so a chart is the same bytes for the
same data.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4b5563", "#db2777")
WIDTH, HEIGHT = 560, 180
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 10, 34


def _fmt(value: float) -> str:
    return f"{value:.3g}"


def line_chart(
    title: str,
    windows: Sequence[str],
    series: Sequence[tuple[str, Sequence[float | None], Sequence[bool]]],
    *,
    threshold: float | None = None,
) -> str:
    """An SVG of ``series`` (label, one value per window or None, a mark per window) over
    ``windows``; a dashed line at ``threshold``; marked points drawn as red rings."""
    values = [v for _, ys, _ in series for v in ys if v is not None]
    if threshold is not None:
        values.append(threshold)
    if not windows or not values:
        return ""
    low, high = min(0.0, *values), max(values)
    if high == low:
        high = low + 1.0
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step = plot_w / max(len(windows) - 1, 1)

    def x(i: int) -> float:
        return LEFT + (i * step if len(windows) > 1 else plot_w / 2)

    def y(v: float) -> float:
        return TOP + plot_h - (v - low) / (high - low) * plot_h

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH - RIGHT}" y2="{TOP + plot_h}" stroke="#9ca3af"/>',
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + plot_h}" stroke="#9ca3af"/>',
        f'<text x="{LEFT - 4}" y="{TOP + 4}" text-anchor="end" font-size="10">{_fmt(high)}</text>',
        f'<text x="{LEFT - 4}" y="{TOP + plot_h}" text-anchor="end" font-size="10">{_fmt(low)}</text>',
    ]
    shown = {0, len(windows) - 1, len(windows) // 2}
    for i in sorted(shown):
        label = escape(windows[i][-16:])
        parts.append(
            f'<text x="{x(i):.1f}" y="{HEIGHT - BOTTOM + 14}" text-anchor="middle" '
            f'font-size="10">{label}</text>'
        )
    if threshold is not None:
        parts.append(
            f'<line x1="{LEFT}" y1="{y(threshold):.1f}" x2="{WIDTH - RIGHT}" '
            f'y2="{y(threshold):.1f}" stroke="#6b7280" stroke-dasharray="4 3"/>'
        )
    for n, (label, ys, marks) in enumerate(series):
        colour = PALETTE[n % len(PALETTE)]
        points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(ys) if v is not None)
        parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{points}">'
            f"<title>{escape(label)}</title></polyline>"
        )
        for i, v in enumerate(ys):
            if v is None:
                continue
            ring = i < len(marks) and marks[i]
            parts.append(
                f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="{4 if ring else 2}" '
                f'fill="{"none" if ring else colour}" stroke="{"#dc2626" if ring else colour}">'
                f"<title>{escape(label)} {escape(windows[i])}: {_fmt(v)}</title></circle>"
            )
    legend_y = HEIGHT - 6
    cursor = LEFT
    for n, (label, _, _) in enumerate(series[:8]):
        colour = PALETTE[n % len(PALETTE)]
        text = escape(label[:18])
        if cursor + 11 + 6 * len(label[:18]) > WIDTH:
            break  # the legend is one line: what does not fit is in each line's tooltip
        parts.append(
            f'<rect x="{cursor}" y="{legend_y - 8}" width="8" height="8" fill="{colour}"/>'
            f'<text x="{cursor + 11}" y="{legend_y}" font-size="10">{text}</text>'
        )
        cursor += 16 + 6 * len(label[:18])
    parts.append("</svg>")
    return "".join(parts)
