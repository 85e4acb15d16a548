"""``storysync history ID``: a story's status changes, oldest first."""

from __future__ import annotations

import json

import click

from storysync.cli.app import App
from storysync.cli.commands.options import FORMAT_TEXT_JSON


@click.command("history")
@click.argument("story_id", metavar="ID")
@FORMAT_TEXT_JSON
@click.pass_obj
def command(app: App, story_id: str, fmt: str) -> int:
    """Show a story's status history: each move, when, by whom, in which commit."""
    # local: imported when the command runs: `storysync --help` loads every command module
    from rich.table import Table

    from storysync.cli.report import rich_safe
    from storysync.db import queries

    app.db.ensure_schema()
    rows = queries.history(app.db, story_id)
    if fmt == "json":
        app.out.print_json(json.dumps(rows, default=str))
        return 0
    table = Table(title=f"status history of {rich_safe(story_id)}")
    for column in ("when", "from", "to", "source", "commit", "author"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["changed_at"].strftime("%Y-%m-%d %H:%M:%S"),
            rich_safe(row["from_status"] or "(created)"),
            rich_safe(row["to_status"]),
            rich_safe(row["source"]),
            rich_safe((row["commit"] or "")[:12]),
            rich_safe(row["author"] or ""),
        )
    app.out.print(table)
    return 0
