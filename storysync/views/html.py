"""The flow report as one self-contained HTML page: inline CSS and SVG, no script, no network.

Charts: a cumulative flow diagram (stories per status at the end of each day,
stacked, done at the bottom), throughput per week as bars, and a cycle-time
scatter (one dot per completed story, with the median and 85th percentile).
Every text from the database is escaped.  Each chart is an ``<svg>`` with an
``id`` (``cfd``, ``throughput``, ``cycle-time``) and each series carries its
status in ``data-status``, so the page can be checked as well as looked at.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import date, datetime
from html import escape

from storysync.views.flow import Report, Summary

DONE_COLOR = "#59a14f"
COLORS = ("#bab0ac", "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#edc948", "#9c755f", "#ff9da7")
DOT_COLOR = "#b07aa1"
BAR_COLOR = "#2f4b7c"
WIDTH, HEIGHT = 880, 320
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 16, 40

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 24px; color: #222;
       background: #fff; max-width: 960px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; }
.sub { color: #666; margin: 0 0 16px; }
.cards { display: flex; gap: 12px; flex-wrap: wrap; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 10px 14px; min-width: 150px; }
.card b { display: block; font-size: 20px; } .card span { color: #666; font-size: 13px; }
table { border-collapse: collapse; font-size: 13px; } th, td { padding: 3px 10px; text-align: left; }
th { border-bottom: 1px solid #bbb; } td.n { text-align: right; } tr:nth-child(even) td { background: #f6f6f6; }
.legend { display: flex; gap: 14px; font-size: 13px; margin: 4px 0; }
.legend i { display: inline-block; width: 12px; height: 12px; margin-right: 4px; vertical-align: -1px; }
svg text { font-size: 11px; fill: #555; } .empty { color: #888; font-style: italic; }
"""


def colors(report: Report) -> dict[str, str]:
    """A color per status: green for done, the others from a fixed palette in stage order."""
    others = [s for s in report.statuses if s != report.done]
    out = {s: COLORS[i % len(COLORS)] for i, s in enumerate(others)}
    out[report.done] = DONE_COLOR
    return out


def render(report: Report) -> str:
    """The whole page."""
    scope = ", ".join(report.backlogs) if report.backlogs else "all backlogs"
    period = f"{report.range.since:%Y-%m-%d %H:%M} to {report.range.until:%Y-%m-%d %H:%M} UTC"
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Flow report: {escape(scope)}</title><style>{STYLE}</style></head><body>",
        "<h1>Flow report</h1>",
        f'<p class="sub">{escape(scope)} &middot; {escape(period)} &middot; done = {escape(report.done)}</p>',
        _cards(report),
        "<h2>Cumulative flow</h2>",
        _legend(report),
        cumulative_flow(report),
        "<h2>Throughput per week</h2>",
        throughput(report),
        "<h2>Cycle time</h2>",
        cycle_scatter(report),
        "<h2>Ageing work in progress</h2>",
        _ageing_table(report),
        "<h2>Completed</h2>",
        _completed_table(report),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _number(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def _cards(report: Report) -> str:
    lead, cycle = report.lead, report.cycle
    wip = sum(report.wip[-1][1].get(s, 0) for s in report.in_progress) if report.wip else 0
    cards = [
        (str(lead.count), "completed"),
        (_number(lead.median), f"median lead time (days), 85th: {_number(lead.p85)}"),
        (_number(cycle.median), f"median cycle time (days), 85th: {_number(cycle.p85)}"),
        (str(wip), "in progress at the end"),
    ]
    inner = "".join(f'<div class="card"><b>{escape(v)}</b><span>{escape(t)}</span></div>' for v, t in cards)
    return f'<div class="cards">{inner}</div>'


def _legend(report: Report) -> str:
    palette = colors(report)
    items = "".join(f'<span><i style="background:{palette[s]}"></i>{escape(s)}</span>' for s in report.statuses)
    return f'<div class="legend">{items}</div>'


# --------------------------------------------------------------------------- charts


def _svg(chart_id: str, label: str, body: Sequence[str]) -> str:
    return (
        f'<svg id="{chart_id}" role="img" aria-label="{escape(label)}" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}">' + "".join(body) + "</svg>"
    )


def _scale(value: float) -> tuple[float, float]:
    """An axis for values up to ``value``: a round step (1, 2 or 5 times a power of ten)
    giving at most six intervals, and the top (a multiple of the step)."""
    value = max(value, 1.0)
    magnitude = 10 ** math.floor(math.log10(value / 6)) if value > 6 else 1
    step = next(m * magnitude for m in (1, 2, 5, 10) if value / (m * magnitude) <= 6)
    return float(step), float(step * math.ceil(value / step))


def _y_axis(value: float, plot_h: float, unit: str = "") -> tuple[float, list[str]]:
    """The axis's top and its grid lines with their labels."""
    step, top = _scale(value)
    out = []
    for i in range(round(top / step) + 1):
        y = TOP + plot_h - plot_h * i * step / top
        out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e4e4e4"/>')
        text = f"{i * step:g}{unit}"
        out.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{escape(text)}</text>')
    return top, out


def _x_labels(labels: Sequence[tuple[float, str]]) -> list[str]:
    step = max(1, len(labels) // 8)
    y = HEIGHT - BOTTOM + 16
    return [f'<text x="{x:.1f}" y="{y}" text-anchor="middle">{escape(text)}</text>' for x, text in labels[::step]]


def cumulative_flow(report: Report) -> str:
    """Stacked areas of stories per status per day, done at the bottom."""
    days = report.wip
    if not days:
        return '<p class="empty">No history in this range.</p>'
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    top, body = _y_axis(max(sum(counts.values()) for _, counts in days), plot_h)
    xs = [LEFT + (plot_w * i / (len(days) - 1) if len(days) > 1 else plot_w / 2) for i in range(len(days))]

    def y(value: float) -> float:
        return TOP + plot_h - plot_h * value / top

    palette = colors(report)
    below = [0] * len(days)
    for status in reversed(report.statuses):  # done first, at the bottom
        above = [b + counts.get(status, 0) for b, (_, counts) in zip(below, days, strict=True)]
        upper: list[tuple[float, float]]
        lower: list[tuple[float, float]]
        if len(days) == 1:  # one day: a bar as wide as the plot
            upper = [(LEFT, y(above[0])), (LEFT + plot_w, y(above[0]))]
            lower = [(LEFT + plot_w, y(below[0])), (LEFT, y(below[0]))]
        else:
            upper = [(x, y(v)) for x, v in zip(xs, above, strict=True)]
            lower = [(x, y(v)) for x, v in zip(reversed(xs), reversed(below), strict=True)]
        points = " ".join(f"{px:.1f},{py:.1f}" for px, py in upper + lower)
        body.append(
            f'<polygon data-status="{escape(status)}" points="{points}" fill="{palette[status]}">'
            f"<title>{escape(status)}</title></polygon>"
        )
        below = above
    body += _x_labels([(x, f"{day:%m-%d}") for x, (day, _) in zip(xs, days, strict=True)])
    return _svg("cfd", "Cumulative flow: stories per status at the end of each day", body)


def throughput(report: Report) -> str:
    """Completed stories per week, as bars."""
    weeks = report.throughput
    if not weeks:
        return '<p class="empty">No weeks in this range.</p>'
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    top, body = _y_axis(max(n for _, n in weeks), plot_h)
    slot = plot_w / len(weeks)
    labels = []
    for i, (start, n) in enumerate(weeks):
        height = plot_h * n / top
        x = LEFT + slot * i + slot * 0.15
        body.append(
            f'<rect data-week="{start.isoformat()}" x="{x:.1f}" y="{TOP + plot_h - height:.1f}" '
            f'width="{slot * 0.7:.1f}" height="{height:.1f}" fill="{BAR_COLOR}">'
            f"<title>week of {start.isoformat()}: {n} completed</title></rect>"
        )
        labels.append((LEFT + slot * (i + 0.5), f"{start:%m-%d}"))
    body += _x_labels(labels)
    return _svg("throughput", "Throughput: stories completed per week", body)


def cycle_scatter(report: Report) -> str:
    """One dot per completed story: when it was completed, and its cycle time in days."""
    done = [c for c in report.completed if c.cycle_days is not None]
    if not done:
        return '<p class="empty">No story with a cycle time in this range.</p>'
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    start, end = report.range.since, report.range.until
    span = max((end - start).total_seconds(), 1.0)
    top, body = _y_axis(max(c.cycle_days or 0 for c in done), plot_h, "d")

    def x(moment: datetime) -> float:
        return LEFT + plot_w * (moment - start).total_seconds() / span

    def y(days: float) -> float:
        return TOP + plot_h - plot_h * days / top

    body += _percentile_lines(report.cycle, y)
    for c in done:
        body.append(
            f'<circle data-story="{escape(c.story.id)}" cx="{x(c.completed):.1f}" cy="{y(c.cycle_days or 0):.1f}" '
            f'r="6" fill="{DOT_COLOR}"><title>{escape(c.story.id)}: {c.cycle_days:.1f} days</title></circle>'
        )
    ticks = [start + (end - start) * i / 6 for i in range(7)]
    body += _x_labels([(x(t), f"{t:%m-%d}") for t in ticks])
    return _svg("cycle-time", "Cycle time of each completed story, in days, by completion date", body)


def _percentile_lines(summary: Summary, y: Callable[[float], float]) -> list[str]:
    out = []
    for name, value in (("median", summary.median), ("85th", summary.p85)):
        if value is None:
            continue
        py = y(value)
        out.append(
            f'<line data-line="{name}" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{py:.1f}" y2="{py:.1f}" '
            f'stroke="#888" stroke-dasharray="4 3"/>'
            f'<text x="{WIDTH - RIGHT - 4}" y="{py - 4:.1f}" text-anchor="end">{name} {value:.1f}d</text>'
        )
    return out


# --------------------------------------------------------------------------- tables


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], numeric: set[int]) -> str:
    if not rows:
        return '<p class="empty">None.</p>'
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(f"<td{' class=n' if i in numeric else ''}>{escape(cell)}</td>" for i, cell in enumerate(row))
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _when(moment: datetime | date | None) -> str:
    return "" if moment is None else f"{moment:%Y-%m-%d %H:%M}" if isinstance(moment, datetime) else str(moment)


def _ageing_table(report: Report) -> str:
    rows = [
        [a.story.id, a.story.title, a.story.backlog, a.status, _when(a.started), f"{a.age_days:.1f}"]
        for a in report.ageing
    ]
    return _table(["id", "title", "backlog", "status", "started", "age (days)"], rows, {5})


def _completed_table(report: Report) -> str:
    rows = [
        [
            c.story.id,
            c.story.title,
            c.story.backlog,
            _when(c.completed),
            f"{c.lead_days:.1f}",
            "" if c.cycle_days is None else f"{c.cycle_days:.1f}",
            c.author or "",
        ]
        for c in report.completed
    ]
    return _table(["id", "title", "backlog", "completed", "lead (days)", "cycle (days)", "by"], rows, {4, 5})
