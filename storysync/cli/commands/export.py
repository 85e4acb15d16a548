"""``storysync export``: database → story files."""

from __future__ import annotations

import click

from storysync.cli.app import App
from storysync.cli.report import plural
from storysync.errors import printable
from storysync.export.actions import WRITES, ExportOptions, ExportResult
from storysync.export.run import export


@click.command("export")
@click.option("--commit", "commit", is_flag=True, help="Commit exactly the exported files.")
@click.option("--message", "message", metavar="MSG", help="Subject line of the commit (with --commit).")
@click.option("--dry-run", is_flag=True, help="Show what would be written; write nothing.")
@click.pass_obj
def command(app: App, commit: bool, message: str | None, dry_run: bool) -> int:
    """Write the stories changed in the database back to their files."""
    if message is not None and not commit:
        raise click.UsageError("--message needs --commit")
    result = export(app.config, app.db, app.git, ExportOptions(commit=commit, message=message, dry_run=dry_run))
    for action in result.actions:
        if action.kind != "in-step" or app.verbosity > 0:
            app.out.print(printable(action.describe(dry_run)), markup=False, soft_wrap=True)
    if app.verbosity >= 0:
        app.console.print(summary(result), markup=False, soft_wrap=True)
    return result.exit_code


def summary(result: object) -> str:
    """One line saying what an export did (or would do)."""
    assert isinstance(result, ExportResult)
    written = len(result.of(*WRITES))
    verb = "would write" if result.dry_run else "exported"
    line = f"storysync: {verb} {plural(written, 'story')}"
    if result.commit:
        line += f" in commit {result.commit[:12]}"
    conflicts = len([a for a in result.actions if a.kind == "conflict" or a.conflict_fields])
    refused = len(result.of("refused"))
    if conflicts:
        line += f"; {plural(conflicts, 'conflict')} (the file wins; see 'storysync conflicts')"
    if refused:
        line += f"; {refused} refused"
    return line
