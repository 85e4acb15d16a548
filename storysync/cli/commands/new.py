"""``storysync new [ID] --backlog B --title T [--status S]``: a DB-side creation."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from storysync.cli.app import App
from storysync.errors import UsageError

if TYPE_CHECKING:
    from storysync.db.writer import StoryWriter, WriteResult

ATTEMPTS = 5  # another `new` may take the id picked meanwhile: pick again


@click.command("new")
@click.argument("story_id", metavar="[ID]", required=False)
@click.option("--backlog", required=True, help="Backlog id (the backlog directory).")
@click.option("--title", required=True, help="The story's title.")
@click.option("--status", default=None, help="Status (default: backlog).")
@click.option("--prefix", help="Without ID: the id prefix to number from (default: the backlog's).")
@click.pass_obj
def command(app: App, story_id: str | None, backlog: str, title: str, status: str | None, prefix: str | None) -> int:
    """Create a story in the database; `storysync export` writes its new file.

    Without ID the next free id of the backlog's prefix is taken, one above the
    highest used in the database, on any local or remote-tracking branch, or in
    the working tree; the new id is printed on standard output.
    """
    # local: imported when the command runs: `storysync --help` loads every command module
    from storysync.cli.commands.set import git_author
    from storysync.db.writer import StoryWriter

    if story_id is not None and prefix is not None:
        raise UsageError("--prefix is for picking an id; give an ID or --prefix, not both")
    app.db.ensure_schema()
    writer = StoryWriter(app.db, app.config, author=git_author(app))
    if story_id is not None:
        result = writer.create(story_id, backlog, title, status)
    else:
        story_id, result = _create_numbered(app, writer, backlog, title, status, prefix)
        sys.stdout.write(f"{story_id}\n")
    app.console.print(
        f"storysync: {story_id}: created (revision {result.revision}); run 'storysync export' to write its file",
        markup=False,
    )
    return 0


def _create_numbered(
    app: App, writer: StoryWriter, backlog: str, title: str, status: str | None, prefix: str | None
) -> tuple[str, WriteResult]:
    """Create the story under the next free id, picking again if another run took it first."""
    # local: imported when the command runs: `storysync --help` loads every command module
    from storysync.db.ids import next_id

    for attempt in range(ATTEMPTS):
        story_id = next_id(app.config, app.db, app.git, backlog, prefix)
        try:
            return story_id, writer.create(story_id, backlog, title, status)
        except UsageError:
            if attempt == ATTEMPTS - 1 or not _taken(app, story_id):
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def _taken(app: App, story_id: str) -> bool:
    # local: imported when the command runs: `storysync --help` loads every command module
    from storysync.db import queries

    try:
        queries.get_story(app.db, story_id)
    except UsageError:
        return False
    return True
