"""``storysync sync``: files → database."""

from __future__ import annotations

import sys
from contextlib import nullcontext

import click

from storysync.cli.app import App
from storysync.cli.report import branch_summary, sync_summary, write_diagnostics
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
    "--branch",
    metavar="NAME",
    help="Record the stories branch NAME changed since it left the main line as its overlay, "
    "never touching the main rows; a deleted or merged branch drops its overlay.",
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
    branch: str | None,
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
    if branch is not None:
        return _sync_branch(app, branch, options, from_rev, to_rev, full, working_tree, allow_rewind)
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


def _sync_branch(
    app: App,
    branch: str,
    options: SyncOptions,
    from_rev: str | None,
    to_rev: str | None,
    full: bool,
    working_tree: bool,
    allow_rewind: bool,
) -> int:
    """``sync --branch NAME``: the branch's overlay recorded, or dropped (merged, deleted)."""
    given = [flag for flag, on in (("--from", from_rev), ("--to", to_rev), ("--full", full)) if on]
    given += [flag for flag, on in (("--working-tree", working_tree), ("--allow-rewind", allow_rewind)) if on]
    if given:
        raise click.UsageError(f"--branch compares the branch with the main line: it takes no {', '.join(given)}")
    if not branch.strip():
        raise click.UsageError("--branch needs a branch name")
    # local: imported when the command runs: `storysync --help` loads every command module
    from storysync.ingest.branches import sync_branch

    result = sync_branch(app.config, app.db, app.git, branch, options)
    write_diagnostics(result.diagnostics, "text")
    for notice in result.notices:
        app.console.print(f"storysync: {printable(notice)}", markup=False)
    if app.verbosity >= 0:
        sys.stderr.write(branch_summary(result) + "\n")
        if result.diagnostics and not options.keep_going:
            sys.stderr.write("storysync: nothing was written; fix the files above (or use --keep-going)\n")
    return result.exit_code
