"""``storysync move ID STAGE``: move a story's file to another stage with git mv."""

from __future__ import annotations

import click

from storysync.cli.app import App


@click.command("move")
@click.argument("story_id", metavar="ID")
@click.argument("stage", metavar="STAGE")
@click.option("--commit", is_flag=True, help="Commit the move (only its two paths, nothing else staged).")
@click.option("-m", "--message", default="", help="The commit message (default: 'Move ID to STAGE').")
@click.pass_obj
def command(app: App, story_id: str, stage: str, commit: bool, message: str) -> int:
    """Move a story's file to another stage folder (git mv; the folder is created).

    STAGE is a stage folder or a status. A 'status' key in the file is changed to
    match. The database follows at the next 'storysync sync'.
    """
    # local: imported when the command runs: `storysync --help` loads every command module
    from storysync.export.move import move_story

    if message and not commit:
        raise click.UsageError("--message is the commit message: use it with --commit")
    moved = move_story(app.config, app.git, story_id, stage, commit, message)
    if moved.old == moved.new:
        app.console.print(f"storysync: {story_id}: already in {moved.new}", markup=False)
        return 0
    done = f"committed {moved.commit[:12]}" if moved.commit else "staged; commit it"
    app.console.print(
        f"storysync: {story_id}: moved {moved.old} -> {moved.new} ({done}); "
        "run 'storysync sync' to bring the database up to date",
        markup=False,
    )
    return 0
