"""``storysync runs``: the audit trail of sync runs, newest first."""

from __future__ import annotations

import json

import click

from storysync.app import App


@click.command("runs")
@click.option("-n", "--limit", type=click.IntRange(min=1), default=20, show_default=True, help="How many runs.")
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True, help="Output format."
)
@click.pass_obj
def command(app: App, limit: int, fmt: str) -> int:
    """Show recent sync runs: trigger, range, outcome, counts and errors."""
    from rich.markup import escape
    from rich.table import Table

    from storysync import queries

    app.db.ensure_schema()
    rows = queries.runs(app.db, limit)
    if fmt == "json":
        app.out.print_json(json.dumps(rows, default=str))
        return 0
    table = Table(title=f"last {len(rows)} sync run(s)")
    for column in ("id", "started", "trigger", "range", "outcome", "files", "upserted", "deleted", "errors"):
        table.add_column(column)
    for row in rows:
        span = f"{(row['from_commit'] or '')[:8]}..{(row['to_commit'] or 'working tree')[:12]}"
        errors = row["errors"] or []
        first = f"{len(errors)}: {errors[0].get('path', '')}: {errors[0].get('message', '')}" if errors else ""
        table.add_row(
            str(row["id"]),
            row["started_at"].strftime("%Y-%m-%d %H:%M:%S"),
            row["trigger"],
            span,
            row["outcome"],
            str(row["files_changed"]),
            str(row["upserted"]),
            str(row["deleted"]),
            escape(first),
        )
    app.out.print(table)
    return 0
