"""``storysync show ID``: one story as the database has it."""

from __future__ import annotations

import json
from typing import Any

import click

from storysync.cli.app import App
from storysync.cli.commands.options import FORMAT_TEXT_JSON
from storysync.db.branches import furthest, status_rank


@click.command("show")
@click.argument("story_id", metavar="ID")
@FORMAT_TEXT_JSON
@click.pass_obj
def command(app: App, story_id: str, fmt: str) -> int:
    """Show one story: its fields, dependencies and body."""
    # local: imported when the command runs: `storysync --help` loads every command module
    from rich.panel import Panel
    from rich.table import Table

    from storysync.cli.report import rich_safe
    from storysync.db import queries

    app.db.ensure_schema()
    story = queries.get_story(app.db, story_id)
    if story["branches"]:
        rank = status_rank(app.config.stages)
        story["furthest_status"] = furthest(story["status"], (b["status"] for b in story["branches"]), rank)
    if fmt == "json":
        app.out.print_json(json.dumps(story, default=str))
        return 0
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    for key in (
        "id",
        "title",
        "backlog_id",
        "status",
        "priority",
        "points",
        "epic",
        "assignee",
        "tags",
        "depends_on",
        "blocks",
        "extra",
        "path",
        "revision",
        "synced_revision",
        "synced_commit",
        "updated_at",
        "deleted_at",
    ):
        value = story.get(key)
        if value in (None, [], {}):
            continue
        table.add_row(
            key, rich_safe(json.dumps(value, ensure_ascii=False) if isinstance(value, (list, dict)) else str(value))
        )
    if story["status"] is None:
        table.add_row("status", "not in the main line")
    for branch in story["branches"]:
        table.add_row("branch", rich_safe(branch_line(branch)))
    if story["branches"]:
        table.add_row("furthest_status", rich_safe(str(story["furthest_status"])))
    app.out.print(table)
    if story.get("body", "").strip():
        app.out.print(Panel(rich_safe(story["body"].rstrip(), keep_lines=True), title="body", expand=False))
    return 0


def branch_line(branch: dict[str, Any]) -> str:
    """``active on feature/x (modified in 1a2b3c4d5e6f by Ada <ada@example.org>, 2026-04-01)``."""
    where = "deleted" if branch["status"] is None else branch["status"]
    commit = (branch["commit"] or "")[:12]
    when = str(branch["changed_at"] or "")[:10]
    return f"{where} on {branch['branch']} ({branch['kind']} in {commit} by {branch['author']}, {when})"
