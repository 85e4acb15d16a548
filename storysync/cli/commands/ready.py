"""``storysync ready``: the stories whose dependencies are all completed."""

from __future__ import annotations

from typing import Any

import click

from storysync.cli.app import App
from storysync.cli.listing import FORMAT_OPTION, filter_options, make_filter, print_rows


@click.command("ready")
@filter_options
@FORMAT_OPTION
@click.pass_obj
def command(app: App, /, fmt: str, **filters: Any) -> int:
    """List the stories that can start: not completed, every dependency completed."""
    # local: imported when the command runs: `storysync --help` loads every command module
    from storysync.views import graph, queries

    flt = make_filter(**filters)
    done = queries.done_status(app.config.stages)
    rows = queries.read_with(app.config.database, lambda: app.db, lambda r, d: graph.read_ready(r, d, flt, done))
    print_rows(app, queries.sort_stories(rows, "id"), fmt)
    return 0
