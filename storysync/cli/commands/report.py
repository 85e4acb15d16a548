"""``storysync report``: flow metrics from the status history, as a table, JSON or an HTML page."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from storysync.cli.app import App
from storysync.cli.listing import print_json, print_table
from storysync.cli.report import plural
from storysync.errors import StorysyncError, UsageError
from storysync.views.flow import Report, Summary


@click.command("report")
@click.option("--backlog", "backlogs", multiple=True, help="Only this backlog (repeat for several; default all).")
@click.option("--since", metavar="DATE", help="Start of the period: a date (2026-04-01) or an ISO 8601 date-time, UTC.")
@click.option("--until", metavar="DATE", help="End of the period, included (default: now); a date means its end.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "html"]),
    default="table",
    show_default=True,
    help="table; json; html (one self-contained page with charts).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the report to this file instead of standard output.",
)
@click.pass_obj
def command(
    app: App, backlogs: tuple[str, ...], since: str | None, until: str | None, fmt: str, output: Path | None
) -> int:
    """Report flow metrics drawn from the status history: lead time, cycle time,
    throughput per week, work in progress per stage over time, and ageing work.

    Lead time runs from a story's first recorded status to its completion, cycle
    time from when it first became active. Run 'storysync sync --full --history'
    first to have the whole git history in the database.
    """
    # local: imported when the command runs: `storysync --help` loads every command module
    from storysync.views import flow, queries

    start = flow.parse_when(since) if since else None
    end = flow.parse_when(until, end_of_day=True) if until else None
    stages = app.config.stages
    report = queries.read_with(
        app.config.database, lambda: app.db, lambda r, _d: flow.read_report(r, stages, backlogs, start, end)
    )
    if fmt == "table" and output is not None:
        raise UsageError("--output takes --format json or html; a table is for the terminal")
    if fmt == "html":
        # local: imported when the command runs: `storysync --help` loads every command module
        from storysync.views import html

        _emit(html.render(report), output)
    elif fmt == "json":
        if output is None:
            print_json(app, report.as_dict())
        else:
            # local: imported when the command runs: `storysync --help` loads every command module
            import json

            _emit(json.dumps(report.as_dict(), indent=2, ensure_ascii=False) + "\n", output)
    else:
        print_report(app, report)
    if output is not None:
        app.console.print(f"storysync: wrote {output}", markup=False)
    return 0


def _emit(text: str, output: Path | None) -> None:
    """``text`` on standard output, or replacing ``output`` atomically."""
    if output is None:
        sys.stdout.write(text)
        return
    # local: imported when the command runs: `storysync --help` loads every command module
    from storysync.export.atomic import atomic_write

    if not output.parent.is_dir():
        raise UsageError(f"{output}: no such folder {str(output.parent)!r}; create it first")
    try:
        atomic_write(output, text.encode("utf-8"))
    except OSError as exc:
        raise StorysyncError(f"{output}: cannot write the report: {exc.strerror}") from exc


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _summary_row(name: str, s: Summary) -> list[str]:
    return [name, str(s.count), *(_figure(v) for v in (s.mean, s.median, s.p85, s.min, s.max))]


def print_report(app: App, report: Report) -> None:
    """The report as tables: durations, throughput, work in progress, ageing, completed."""
    scope = ", ".join(report.backlogs) or "all backlogs"
    span = f"{report.range.since:%Y-%m-%d %H:%M} to {report.range.until:%Y-%m-%d %H:%M} UTC"
    header = ["days", "stories", "mean", "median", "85th", "min", "max"]
    rows = [_summary_row("lead time", report.lead), _summary_row("cycle time", report.cycle)]
    print_table(app, header, rows, f"flow of {scope}, {span}")
    if report.arrived_done:
        arrived = plural(report.arrived_done, "story")
        sys.stdout.write(f"({arrived} arrived already done, with no flow to measure: not counted)\n\n")
    weeks = [[f"{start:%G-W%V}", f"{start:%Y-%m-%d}", str(n)] for start, n in report.throughput]
    print_table(app, ["week", "from", "completed"], weeks, "throughput")
    statuses = report.statuses
    wip = [
        [f"{day:%Y-%m-%d}", *(str(counts.get(s, 0)) for s in statuses)]
        for i, (day, counts) in enumerate(report.wip)
        if day.weekday() == 6 or i == len(report.wip) - 1
    ]
    print_table(app, ["end of", *statuses], wip, "stories per status (end of each week)")
    ageing = [
        [a.story.id, a.status, f"{a.started:%Y-%m-%d}", _figure(a.age_days), a.story.title] for a in report.ageing
    ]
    print_table(app, ["id", "status", "started", "age (days)", "title"], ageing, "ageing work in progress")
    done = [
        [c.story.id, f"{c.completed:%Y-%m-%d}", _figure(c.lead_days), _figure(c.cycle_days), c.story.title]
        for c in report.completed
    ]
    print_table(app, ["id", "completed", "lead (days)", "cycle (days)", "title"], done, "completed")
