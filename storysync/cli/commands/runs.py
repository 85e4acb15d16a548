"""``storysync runs``: the audit trail of sync runs, newest first."""

from __future__ import annotations

import json
from typing import Any

import click

from storysync.cli.app import App
from storysync.cli.commands.options import FORMAT_TEXT_JSON

ERRORS_SHOWN = 3


@click.command("runs")
@click.option("-n", "--limit", type=click.IntRange(min=1), default=20, show_default=True, help="How many runs.")
@FORMAT_TEXT_JSON
@click.pass_obj
def command(app: App, limit: int, fmt: str) -> int:
    """Show recent sync runs: trigger, range, outcome, counts and errors."""
    # local: imported when the command runs: `storysync --help` loads every command module
    from storysync.cli.report import rich_safe
    from storysync.db import queries

    app.db.ensure_schema()
    rows = queries.runs(app.db, limit)
    if fmt == "json":
        app.out.print_json(json.dumps(rows, default=str))
        return 0
    for row in rows:
        app.out.print(rich_safe(_line(row)))
        for error in (row["errors"] or [])[:ERRORS_SHOWN]:
            where = f"{error['path']}:{error.get('line', 1)}:{error.get('col', 1)}: " if error.get("path") else ""
            app.out.print(rich_safe(f"    {where}{error.get('message', '')}"))  # no path: a failed run's error
        hidden = len(row["errors"] or []) - ERRORS_SHOWN
        if hidden > 0:
            app.out.print(f"    ... and {hidden} more (--format json shows all)")
    return 0


def _line(row: dict[str, Any]) -> str:
    span = f"{(row['from_commit'] or 'none')[:12]}..{(row['to_commit'] or 'working-tree')[:12]}"
    return (
        f"#{row['id']} {row['started_at']:%Y-%m-%d %H:%M:%S} {row['trigger']} {span} {row['outcome']}: "
        f"{row['files_changed']} file(s) read, {row['upserted']} upserted, {row['deleted']} deleted, "
        f"{len(row['errors'] or [])} error(s)"
    )
