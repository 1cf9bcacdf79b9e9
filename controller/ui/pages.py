"""The dashboard's HTML: Jinja templates shipped in the package, rendered from ``views`` data.

Templates autoescape everything (a model name or an error message is text, never markup); the
only markup passed through is the charts' SVG, which ``charts`` builds with every text escaped.
Pages link one stylesheet and one script from ``static/`` and nothing else, so the dashboard works
on a machine with no internet and under a Content-Security-Policy of ``'self'``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

import jinja2

from controller.ui.charts import line_chart

MAX_DRIFT_SERIES = 8  # the features drawn: the most drifted first


@cache
def _templates() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("controller.ui", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _render(name: str, **context: Any) -> str:
    return _templates().get_template(name).render(**context)


def _common(root: str, envs: Sequence[str], generated: str | None, source: str) -> dict[str, Any]:
    return {"root": root, "nav_envs": envs, "generated": generated or "", "data_source": source}


def overview(data: Mapping[str, Any], *, root: str, source: str) -> str:
    envs = [e["name"] for e in data["environments"]]
    return _render("overview.html", data=data, **_common(root, envs, data["generated"], source))


def overview_rows(data: Mapping[str, Any], *, root: str) -> str:
    """The overview's table body alone: what the page's script swaps in on each refresh."""
    return _render("overview_rows.html", data=data, root=root)


def charts(monitoring: Mapping[str, Any] | None) -> list[dict[str, str]]:
    """Drift per feature (the most drifted first) and each quality metric per version, over the
    newest windows, as SVG."""
    if not monitoring or not monitoring.get("windows"):
        return []
    windows: list[str] = monitoring["windows"]
    out = []
    drift: Mapping[str, Mapping[str, Any]] = monitoring["drift"]
    if drift:

        def worst(feature: str) -> float:
            points = drift[feature].values()
            return max((p["statistic"] or 0.0 for p in points), default=0.0)

        features = sorted(drift, key=lambda f: (-worst(f), f))[:MAX_DRIFT_SERIES]
        series = [
            (
                f,
                [drift[f].get(w, {}).get("statistic") for w in windows],
                [bool(drift[f].get(w, {}).get("drifted")) for w in windows],
            )
            for f in features
        ]
        title = f"Drift ({monitoring['method']}) per feature"
        svg = line_chart(title, windows, series, threshold=monitoring["threshold"])
        if svg:
            out.append({"title": title, "svg": svg})
    for metric, by_version in sorted(monitoring["quality"].items()):
        series = [
            (
                f"v{version}" if version != "*" else "all",
                [by_version[version].get(w, {}).get("value") for w in windows],
                [bool(by_version[version].get(w, {}).get("breached")) for w in windows],
            )
            for version in sorted(by_version)
        ]
        svg = line_chart(f"Quality: {metric}", windows, series)
        if svg:
            out.append({"title": f"Quality: {metric}", "svg": svg})
    return out


def model(data: Mapping[str, Any], *, root: str, envs: Sequence[str], source: str) -> str:
    shown = {
        **data,
        "environments": [
            {**env, "charts": charts(env.get("monitoring"))} for env in data["environments"]
        ],
    }
    return _render("model.html", data=shown, **_common(root, envs, data.get("generated"), source))


def environment(data: Mapping[str, Any], *, root: str, envs: Sequence[str], source: str) -> str:
    return _render(
        "environment.html", data=data, **_common(root, envs, data.get("generated"), source)
    )


def error(status: int, message: str, *, root: str, envs: Sequence[str], source: str) -> str:
    return _render(
        "error.html", status=status, message=message, **_common(root, envs, None, source)
    )
