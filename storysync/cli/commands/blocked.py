"""``storysync blocked``: the stories waiting on a dependency, and what blocks them."""

from __future__ import annotations

from typing import Any

import click

from storysync.cli.app import App
from storysync.cli.listing import FORMAT_OPTION, filter_options, make_filter, print_rows


@click.command("blocked")
@filter_options
@FORMAT_OPTION
@click.pass_obj
def command(app: App, /, fmt: str, **filters: Any) -> int:
    """List the stories that wait on a dependency not yet completed.

    'blocked by' names a story's own open dependencies; 'via' the stories that
    block those in turn, all the way down.
    """
    # local: imported when the command runs: `storysync --help` loads every command module
    from storysync.views import graph, queries

    flt = make_filter(**filters)
    done = queries.done_status(app.config.stages)
    found = queries.read_with(app.config.database, lambda: app.db, lambda r, d: graph.read_blocked(r, d, flt, done))
    by_id = {b.story.id: b for b in found}
    rows = queries.sort_stories([b.story for b in found], "id")

    def direct(row: queries.StoryRow) -> str:
        return ", ".join(n.id for n in by_id[row.id].blocked_by)

    def via(row: queries.StoryRow) -> str:
        first = {n.id for n in by_id[row.id].blocked_by}
        return ", ".join(n.id for n in by_id[row.id].all_blockers if n.id not in first) or "-"

    print_rows(app, rows, fmt, [("blocked by", direct), ("via", via)], lambda row: by_id[row.id].as_dict())
    return 0
