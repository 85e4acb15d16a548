"""``storysync list``: the stories the database holds, filtered and sorted."""

from __future__ import annotations

import sys
from typing import Any

import click

from storysync.cli.app import App
from storysync.cli.listing import FORMAT_OPTION, filter_options, make_filter, print_rows, print_table
from storysync.cli.report import not_a_terminal


@click.command("list")
@filter_options
@click.option("--deleted", is_flag=True, help="List the deleted stories instead of the live ones.")
@click.option(
    "--sort",
    type=click.Choice(["id", "title", "status", "backlog", "priority", "points", "assignee", "epic", "updated"]),
    default="id",
    show_default=True,
    help="Order by this field (ids in number order, statuses in stage order, priority most urgent first).",
)
@click.option("--reverse", is_flag=True, help="Reverse the order.")
@FORMAT_OPTION
@click.pass_obj
def command(app: App, /, deleted: bool, sort: str, reverse: bool, fmt: str, **filters: Any) -> int:
    """List stories from the database, filtered and sorted.

    Options of one kind are alternatives (--status active --status backlog);
    different options must all match; repeated --tag options must all be on the story.
    """
    # local: imported when the command runs: `storysync --help` loads every command module
    from storysync.views import queries

    flt = make_filter(deleted, **filters)
    if fmt == "table" and sort == "id" and not reverse and not_a_terminal(sys.stdout):
        (text,) = queries.read_with(
            app.config.database, lambda: app.db, lambda r, d: (queries.read_table_text(r, d, flt),)
        )
        if text is not None:  # SQLite formatted it (plain_columns would print the same)
            sys.stdout.write(text)
            return 0
    if fmt in ("table", "ids") and sort == "id":
        found = queries.read_with(app.config.database, lambda: app.db, lambda r, d: queries.read_cells(r, d, flt))
        found = found[::-1] if reverse else found
        if fmt == "ids":
            sys.stdout.write("".join(f"{cells[0]}\n" for cells in found))
        else:
            print_table(app, queries.TABLE, found)
        return 0
    rows = queries.read_with(app.config.database, lambda: app.db, lambda r, d: queries.read_stories(r, d, flt))
    print_rows(app, queries.sort_stories(rows, sort, reverse, app.config.stages), fmt)
    return 0
