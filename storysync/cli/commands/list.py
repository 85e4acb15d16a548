"""``storysync list``: the stories the database holds, filtered and sorted."""

from __future__ import annotations

from typing import Any

import click

from storysync.cli.app import App
from storysync.cli.listing import FORMAT_OPTION, filter_options, make_filter, print_rows


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
    from storysync.views import queries

    flt = make_filter(deleted, **filters)
    rows = queries.read_with(app.config.database, lambda: app.db, lambda r, d: queries.read_stories(r, d, flt))
    print_rows(app, queries.sort_stories(rows, sort, reverse, app.config.stages), fmt)
    return 0
