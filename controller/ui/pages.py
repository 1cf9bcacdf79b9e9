"""The dashboard's HTML: Jinja templates shipped in the package, rendered from ``views`` data.

Templates autoescape everything (a model name or an error message is text, never markup); the
only markup passed through is the charts' SVG, which ``charts`` builds with every text escaped.
Pages link one stylesheet and one script from ``static/`` and nothing else, so the dashboard works
on a machine with no internet and under a Content-Security-Policy of ``'self'``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache
from html import escape
from typing import Any
from urllib.parse import quote

import jinja2
from markupsafe import Markup

from controller.ui.charts import line_chart

MAX_DRIFT_SERIES = 8  # the features drawn: the most drifted first


def _e(value: Any) -> str:
    return escape(str(value))


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
    rows = overview_rows(data, root=root)
    return _render(
        "overview.html",
        data=data,
        rows=Markup(rows),
        **_common(root, envs, data["generated"], source),
    )


# --- the overview's rows ------------------------------------------------------------------------
# Written in Python rather than in the template: this loop runs once per cell of the overview
# (3,000 for 1,000 models in 3 environments), and Jinja's attribute lookups and Markup escaping
# cost about five times what ``html.escape`` and f-strings do (bench/ui.py measures it).


def _version_status(c: Mapping[str, Any], version: str) -> str:
    status = c["validation"].get(version) or "-"
    return f' <span class="vstatus vs-{_e(status.lower())}">{_e(status)}</span>'


def _cell(env: str, c: Mapping[str, Any] | None) -> str:
    if c is None:
        return f'<td data-env="{_e(env)}" class="cell"><span class="muted">—</span></td>'
    state = c["state"]
    parts = [f'<td data-env="{_e(env)}" class="cell state-bg-{state.lower()}">']
    champion, challenger = c["champion"], c["challenger"]
    parts.append(f'<span class="champion">{"v" + _e(champion) if champion else "-"}</span>')
    if champion:
        parts.append(_version_status(c, champion))
    if challenger:
        parts.append(f' <span class="challenger">· challenger v{_e(challenger)}</span>')
        parts.append(_version_status(c, challenger))
    reason = c["reason"]
    small = f" <small>{_e(reason)}</small>" if reason and reason != state else ""
    parts.append(
        f'<br><span class="state state-{state.lower()}" title="{_e(c["message"])}">{state}{small}</span>'
    )
    if c["location"]:
        parts.append(f' <code class="location">{_e(c["location"])}</code>')
    s = c["serving"]
    if s:
        split = (
            f" · {s['traffic']['champion']}/{s['traffic']['challenger']}"
            if "challenger" in s["traffic"]
            else ""
        )
        rolling = "" if s["rolledOut"] else " rolling"
        word = "serving" if s["rolledOut"] else "rolling out"
        parts.append(f'<br><span class="serving{rolling}">{_e(s["replicas"])} {word}{split}</span>')
    else:
        parts.append('<br><span class="muted">not served</span>')
    applied, attempted = c["applied"], c["attempted"]
    parts.append(f"<br><small>rev <code>{_e((applied or '-')[:7])}</code>")
    if attempted and attempted != applied:
        parts.append(f" (attempted <code>{_e(attempted[:7])}</code>)")
    h = c["lastChange"]
    if h:
        when = str(h.get("time") or "")
        parts.append(
            f" · {_e(h.get('alias', ''))} {_e(h.get('previous') or '(none)')} -> {_e(h.get('version') or '(none)')}"
            f' <time datetime="{_e(when)}">{_e(when[:16].replace("T", " "))}</time>'
        )
    parts.append("</small>")
    if c["awaitingApproval"]:
        branch = c["awaitingApproval"].split("@")[0]
        parts.append(f'<br><small class="pending">awaiting merge: {_e(branch)}</small>')
    parts.append("</td>")
    return "".join(parts)


def overview_rows(data: Mapping[str, Any], *, root: str) -> str:
    """The overview's table body alone: what the page's script swaps in on each refresh."""
    envs = [e["name"] for e in data["environments"]]
    out = []
    for row in data["models"]:
        name = row["name"]
        registered = (
            f'<br><small class="muted">{_e(row["registeredModel"])}</small>'
            if row["registeredModel"]
            else ""
        )
        cells = "".join(_cell(env, row["cells"].get(env)) for env in envs)
        out.append(
            f'<tr data-model="{_e(name)}"><th scope="row"><a href="{_e(root)}models/'
            f'{_e(quote(name))}">{_e(name)}</a>{registered}</th>{cells}</tr>\n'
        )
    if not out:
        filtered = " match the filter" if data["filter"]["q"] or data["filter"]["state"] else ""
        out.append(f'<tr><td colspan="{len(envs) + 1}" class="muted">no models{filtered}</td></tr>')
    return "".join(out)


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
