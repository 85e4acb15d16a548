"""``storysync sync``: files → database."""

from __future__ import annotations

import sys
from contextlib import nullcontext

import click

from storysync.cli.app import App
from storysync.cli.report import sync_summary, write_diagnostics
from storysync.errors import printable
from storysync.ingest.types import TRIGGERS, SyncOptions


@click.command("sync")
@click.option("--from", "from_rev", metavar="REV", help="Start of the range (default: the last synced commit).")
@click.option("--to", "to_rev", metavar="REV", help="End of the range (default: HEAD).")
@click.option("--full", is_flag=True, help="Read every story file at --to, not only the changed ones.")
@click.option("--history", is_flag=True, help="With --full: rebuild the status history from the whole git log.")
@click.option("--working-tree", is_flag=True, help="Read the files on disk instead of a commit.")
@click.option("--keep-going", is_flag=True, help="Write the valid files even when some are invalid (exit 1 still).")
@click.option("--dry-run", is_flag=True, help="Show what would change; write nothing.")
@click.option(
    "--allow-rewind",
    is_flag=True,
    help="Sync even a commit older than the last synced one, or one this clone cannot place against it (else exit 4).",
)
@click.option(
    "--trigger", type=click.Choice(TRIGGERS), default="manual", show_default=True, help="Recorded in sync_runs."
)
@click.pass_obj
def command(
    app: App,
    from_rev: str | None,
    to_rev: str | None,
    full: bool,
    history: bool,
    working_tree: bool,
    keep_going: bool,
    dry_run: bool,
    allow_rewind: bool,
    trigger: str,
) -> int:
    """Bring the database in step with the story files."""
    if history and not full:
        raise click.UsageError("--history rebuilds the whole history: use it with --full")
    # local: imported when the command runs: `storysync --help` loads every command module
    from storysync.cli.progress import progress_bar, surely_not_a_terminal
    from storysync.ingest.run import sync

    options = SyncOptions(
        from_rev=from_rev,
        to_rev=to_rev,
        full=full,
        history=history,
        working_tree=working_tree,
        keep_going=keep_going,
        dry_run=dry_run,
        trigger=trigger,
        allow_rewind=allow_rewind,
    )
    bar = nullcontext(None) if surely_not_a_terminal() else progress_bar(app.console, "reading stories")
    with bar as advance:
        result = sync(app.config, app.db, app.git, options, progress=advance)
    write_diagnostics(result.diagnostics, "text")
    for notice in result.notices:
        app.console.print(f"storysync: {printable(notice)}", markup=False)
    if app.verbosity >= 0:
        sys.stderr.write(sync_summary(result) + "\n")
        if result.diagnostics and not keep_going:
            sys.stderr.write("storysync: nothing was written; fix the files above (or use --keep-going)\n")
    return result.exit_code
