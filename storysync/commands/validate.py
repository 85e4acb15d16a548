"""``storysync validate``: check story files and report every problem."""

from __future__ import annotations

import sys

import click

from storysync.app import App
from storysync.report import FORMATS, plural, write_diagnostics


@click.command("validate")
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--staged", is_flag=True, help="Check the staged (index) versions; with no PATH, the staged story files.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True, help="Output format.")
@click.pass_obj
def command(app: App, paths: tuple[str, ...], staged: bool, fmt: str) -> int:
    """Check story files: the schema, the layout and the cross-file rules.

    With no PATH every story file is checked.  Exit 1 when any file is invalid.
    """
    from storysync.sources import Source, WorkTreeSource
    from storysync.validate import validate_paths

    config = app.config
    source: Source
    wanted: list[str] | None = [app.repo_relative(p) for p in paths] or None
    if staged:
        from storysync.staged import IndexSource, staged_paths

        source = IndexSource(config)
        if wanted is None:
            wanted = staged_paths(config.repo)
    else:
        source = WorkTreeSource(config)
    checked = validate_paths(config, source, wanted)
    write_diagnostics(checked.diagnostics, fmt, extra={"files": checked.files})
    if fmt != "json" and app.verbosity >= 0:
        bad = len({d.path for d in checked.diagnostics})
        if checked.diagnostics:
            sys.stderr.write(
                f"storysync: {plural(len(checked.diagnostics), 'error')} in {plural(bad, 'file')} "
                f"({plural(checked.files, 'file')} checked); fix them and run again\n"
            )
        elif fmt == "text":
            sys.stderr.write(f"storysync: {plural(checked.files, 'story file')} valid\n")
    return 1 if checked.diagnostics else 0
