"""The status page at ``/``: one server-rendered HTML document, nothing else.

No build step, no script, no external CDN or font: the page is a table per
subject (collectors, datasets, sync jobs) and an inline SVG bar per dataset
showing what of the last 24 hours is covered. It refreshes itself with a meta
refresh. Everything that comes from outside (names, symbols, error texts) goes
through :func:`html.escape`, and the response forbids scripts
(:data:`PAGE_CSP`), so a symbol or an error reading ``<script>`` shows as text.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from typing import Any, Final

from attrs import frozen

from .._intervals import Interval, IntervalSet
from .._time import DAY, format_ms

__all__ = [
    "PAGE_CSP",
    "PAGE_DATASETS",
    "PAGE_REFRESH",
    "PAGE_WINDOW",
    "DatasetCoverage",
    "render_page",
]

#: The span of the coverage bars (ms): the last 24 hours.
PAGE_WINDOW: Final = DAY
#: The page's Content-Security-Policy: inline styles and nothing else, no script at all.
PAGE_CSP: Final = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'"
#: Seconds between the page's reloads.
PAGE_REFRESH: Final = 5
#: Datasets the page lists at most (the rest are counted).
PAGE_DATASETS: Final = 200
#: Width (px) of a coverage bar.
_BAR_WIDTH: Final = 288

_STYLE: Final = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fff}
h1{font-size:20px;margin:0 0 .2em}h2{font-size:16px;margin:1.4em 0 .4em}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:3px 8px;
border-bottom:1px solid #ddd;vertical-align:top}th{background:#f3f3f3}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}.muted{color:#777}
.state-running{color:#176f2c;font-weight:600}.state-failed{color:#b00020;font-weight:600}
.state-backoff{color:#a15c00;font-weight:600}.state-disabled,.state-stopped{color:#777}
.err{color:#b00020;min-width:12em;max-width:30em;overflow-wrap:anywhere}
td.issues,td.last-restart{max-width:22em;overflow-wrap:anywhere}.unhealthy{background:#fff3f3}
"""


@frozen
class DatasetCoverage:
    """What the page shows of one dataset: its key and its coverage within the window."""

    key: str
    covered: IntervalSet


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _clip(text: str, limit: int = 200) -> str:
    """``text`` escaped, cut to ``limit`` characters (the whole in a tooltip)."""
    if len(text) <= limit:
        return _e(text)
    return f'<span title="{_e(text)}">{_e(text[:limit])}&hellip;</span>'


def _num(value: float | None, unit: str = "", digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}{unit}"


def _bar(covered: IntervalSet, lo: int, hi: int) -> tuple[str, float]:
    """An inline SVG bar of ``covered`` within ``[lo, hi)``, and the covered fraction."""
    span = hi - lo
    rects = []
    total = 0
    for iv in covered & Interval(lo, hi):
        total += iv.end - iv.start
        x = (iv.start - lo) / span * _BAR_WIDTH
        w = max((iv.end - iv.start) / span * _BAR_WIDTH, 0.5)
        rects.append(f'<rect x="{x:.2f}" y="0" width="{w:.2f}" height="12" fill="#2e7d32"/>')
    fraction = total / span
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_BAR_WIDTH}" height="12" '
        f'role="img" aria-label="{fraction:.0%} covered">'
        f'<rect width="{_BAR_WIDTH}" height="12" fill="#e0e0e0"/>{"".join(rects)}</svg>'
    )
    return svg, fraction


def _collectors(status: dict[str, Any] | None) -> str:
    if status is None:
        return (
            '<p class="muted" id="no-collectors">This service runs no collectors; start it '
            "with <code>mdcollect serve --collect CONFIG.toml</code> to run some here.</p>"
        )
    rows = []
    for name, c in status["collectors"].items():
        healthy = c["is_healthy"]
        error = c["last_error"] or ""
        issues = "; ".join(c["issues"])
        rows.append(
            f'<tr data-collector="{_e(name)}" data-state="{_e(c["state"])}"'
            f"{'' if healthy else ' class=unhealthy'}>"
            f"<td>{_e(name)}</td>"
            f'<td class="state state-{_e(c["state"])}">{_e(c["state"])}</td>'
            f'<td class="num rate">{_num(c["rows_per_second"])}</td>'
            f'<td class="num lag">{_num(c["lag_seconds"], " s")}</td>'
            f'<td class="num rows">{c["rows_stored"]}</td>'
            f'<td class="num restarts">{c["restarts"]}</td>'
            f'<td class="num reconnects">{c["reconnects"]}</td>'
            f'<td class="last-restart">{_clip(c["last_restart_reason"] or "-")}</td>'
            f'<td class="err last-error">{_clip(error) or "-"}</td>'
            f'<td class="issues">{_clip(issues) if issues else "healthy"}</td></tr>'
        )
    proc = status.get("process") or {}
    verdict = "healthy" if status["is_healthy"] else "UNHEALTHY"
    head = (
        "<tr><th>Collector</th><th>State</th><th>Rows/s</th><th>Lag</th><th>Rows stored</th>"
        "<th>Restarts</th><th>Reconnects</th><th>Last restart</th><th>Last error</th>"
        "<th>Health</th></tr>"
    )
    summary = (
        f'<p id="collection">Collection <b>{verdict}</b>'
        + (
            f", process {proc['rss_bytes'] / 2**20:.0f} MiB resident, "
            f"{proc['cpu_seconds']:.1f} s CPU"
            if proc
            else ""
        )
        + "</p>"
    )
    body = "".join(rows) or '<tr><td colspan="10" class="muted">no collectors</td></tr>'
    return f'{summary}<table id="collectors">{head}{body}</table>'


def _datasets(datasets: Sequence[DatasetCoverage], more: int, now: int) -> str:
    if not datasets:
        return '<p class="muted" id="no-datasets">No datasets stored yet.</p>'
    lo = now - PAGE_WINDOW
    rows = []
    for d in datasets:
        svg, fraction = _bar(d.covered, lo, now)
        rows.append(
            f'<tr data-dataset="{_e(d.key)}"><td>{_e(d.key)}</td><td>{svg}</td>'
            f'<td class="num covered">{fraction:.1%}</td></tr>'
        )
    extra = f'<p class="muted">and {more} more datasets</p>' if more else ""
    return (
        '<table id="datasets"><tr><th>Dataset</th>'
        f"<th>Last 24 h ({_e(format_ms(lo))} to {_e(format_ms(now))} UTC)</th>"
        f"<th>Covered</th></tr>{''.join(rows)}</table>{extra}"
    )


def _jobs(jobs: Iterable[dict[str, Any]]) -> str:
    rows = []
    for j in jobs:
        req = j["request"]
        what = (
            f"{req.get('exchange')} {', '.join(req.get('symbols', []))} "
            f"{req.get('timeframe')} {req.get('start_date')}..{req.get('end_date')}"
        )
        rows.append(
            f'<tr data-job="{_e(j["job_id"])}"><td><code>{_e(j["job_id"])}</code></td>'
            f'<td class="state state-{_e(j["status"])}">{_e(j["status"])}</td>'
            f'<td>{_e(what)}</td><td class="err">{_e(j["error"] or "-")}</td></tr>'
        )
    if not rows:
        return '<p class="muted" id="no-jobs">No sync jobs.</p>'
    return (
        '<table id="jobs"><tr><th>Job</th><th>Status</th><th>Request</th><th>Error</th></tr>'
        f"{''.join(rows)}</table>"
    )


def render_page(
    *,
    version: str,
    storage: str,
    collectors: dict[str, Any] | None,
    datasets: Sequence[DatasetCoverage],
    more_datasets: int,
    jobs: Iterable[dict[str, Any]],
    now: int,
    refresh: int,
) -> str:
    """The status page: ``collectors`` is ``DataCollector.status()`` (``None``: this
    service runs none), ``datasets`` their coverage within the last 24 h before ``now``
    (ms), ``jobs`` the sync jobs' dicts; it reloads itself every ``refresh`` seconds.

    >>> page = render_page(version="1", storage="memory://", collectors=None, datasets=[],
    ...                    more_datasets=0, jobs=[], now=0, refresh=5)
    >>> "runs no collectors" in page
    True
    """
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="refresh" content="{int(refresh)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>mdcollect status</title><style>{_STYLE}</style></head><body>"
        f"<h1>mdcollect status</h1><p class=muted>version {_e(version)}, storage "
        f"<code>{_e(storage)}</code>, at {_e(format_ms(now))} UTC; this page reloads every "
        f"{int(refresh)} s</p>"
        f"<h2>Collectors</h2>{_collectors(collectors)}"
        f"<h2>Datasets</h2>{_datasets(datasets, more_datasets, now)}"
        f"<h2>Sync jobs</h2>{_jobs(jobs)}</body></html>"
    )
