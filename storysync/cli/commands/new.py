"""``storysync new ID --backlog B --title T [--status S]``: a DB-side creation."""

from __future__ import annotations

import click

from storysync.cli.app import App


@click.command("new")
@click.argument("story_id", metavar="ID")
@click.option("--backlog", required=True, help="Backlog id (the backlog directory).")
@click.option("--title", required=True, help="The story's title.")
@click.option("--status", default=None, help="Status (default: backlog).")
@click.pass_obj
def command(app: App, story_id: str, backlog: str, title: str, status: str | None) -> int:
    """Create a story in the database; `storysync export` writes its new file."""
    from storysync.cli.commands.set import git_author
    from storysync.db.writer import StoryWriter

    app.db.ensure_schema()
    result = StoryWriter(app.db, app.config, author=git_author(app)).create(story_id, backlog, title, status)
    app.console.print(
        f"storysync: {story_id}: created (revision {result.revision}); run 'storysync export' to write its file",
        markup=False,
    )
    return 0
