"""``storysync conflicts [--resolve ID]``: open conflicts with both versions."""

from __future__ import annotations

import json

import click

from storysync.cli.app import App
from storysync.cli.commands.options import FORMAT_TEXT_JSON
from storysync.errors import printable


@click.command("conflicts")
@click.option("--resolve", "resolve_id", metavar="ID", help="Mark the open conflicts of this story resolved.")
@FORMAT_TEXT_JSON
@click.pass_obj
def command(app: App, resolve_id: str | None, fmt: str) -> int:
    """List open conflicts (file and database side by side); exit 1 while any is open."""
    # local: imported when the command runs: `storysync --help` loads every command module
    from storysync.db import conflicts

    app.db.ensure_schema()
    if resolve_id is not None:
        n = conflicts.resolve(app.db, resolve_id)
        app.console.print(f"storysync: {printable(resolve_id)}: {n} conflict(s) resolved", markup=False, soft_wrap=True)
        return 0
    found = conflicts.open_conflicts(app.config, app.db)
    if fmt == "json":
        payload = [
            {
                "id": c.id,
                "story_id": c.story_id,
                "detected_at": str(c.detected_at),
                "path": c.path,
                "file": c.file,
                "database": c.database,
                "fields": c.fields,
            }
            for c in found
        ]
        app.out.print_json(json.dumps(payload, default=str, ensure_ascii=False))
    else:
        for conflict in found:
            app.out.print(_table(conflict))
    if app.verbosity >= 0:
        app.console.print(f"storysync: {len(found)} open conflict(s)", markup=False, soft_wrap=True)
    return 1 if found else 0


def _table(conflict: object) -> object:
    # local: imported when the command runs: `storysync --help` loads every command module
    from rich.table import Table

    from storysync.cli.report import rich_safe
    from storysync.db.conflicts import OpenConflict

    assert isinstance(conflict, OpenConflict)
    title = f"{conflict.story_id}  {conflict.path or ''}  (detected {conflict.detected_at:%Y-%m-%d %H:%M} UTC)"
    if conflict.fields:
        title += f"  both changed: {', '.join(conflict.fields)}"
    table = Table(title=rich_safe(title), show_lines=False)
    table.add_column("field", style="bold")
    table.add_column("file (kept)")
    table.add_column("database (conflict)")
    for key, file_value, db_value in conflict.rows():
        differs = json.dumps(file_value, default=str) != json.dumps(db_value, default=str)
        style = "yellow" if differs else None
        table.add_row(
            rich_safe(key),
            rich_safe(_show(file_value, conflict.file is None), keep_lines=True),
            rich_safe(_show(db_value), keep_lines=True),
            style=style,
        )
    return table


def _show(value: object, gone: bool = False) -> str:
    if gone:
        return "(file missing or unreadable)"
    if value is None:
        return ""
    text = json.dumps(value, ensure_ascii=False) if isinstance(value, (list, dict)) else str(value)
    text = text.rstrip("\n")
    return text if len(text) <= 400 else text[:400] + "…"
