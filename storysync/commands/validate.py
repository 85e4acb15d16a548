"""``storysync validate``: check story files and report every problem."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from storysync.app import App
from storysync.errors import EXIT_USAGE
from storysync.report import FORMATS, plural, write_diagnostics


@click.command("validate")
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--staged", is_flag=True, help="Check the staged (index) versions; with no PATH, the staged story files.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True, help="Output format.")
@click.pass_obj
def command(app: App, paths: tuple[str, ...], staged: bool, fmt: str) -> int:
    """Check story files: the schema, the layout and the cross-file rules.

    With no PATH every story file is checked.  Exit 1 when any file is invalid,
    exit 2 when a PATH does not exist; a PATH that is not a story file is skipped
    with a notice.  With --staged, paths missing from the working tree (staged
    deletions) are accepted silently.
    """
    from storysync.layout import classify
    from storysync.sources import Source, WorkTreeSource
    from storysync.validate import validate_paths

    config = app.config
    source: Source
    wanted: list[str] | None = [app.repo_relative(p) for p in paths] or None
    if staged:
        from storysync.staged import IndexSource, validate_index

        index = IndexSource(config)
        try:
            diagnostics, files = validate_index(config, index, index.staged() if wanted is None else wanted)
        finally:
            index.close()
    else:
        source = WorkTreeSource(config)
        top = app.top_level
        missing = [p for p, rel in zip(paths, wanted or [], strict=True) if not _exists(p, top / rel)]
        if missing:
            for path in missing:
                sys.stderr.write(f"{path}: no such file\n")
            return EXIT_USAGE
        if app.verbosity >= 0:
            for path, rel in zip(paths, wanted or [], strict=True):
                if classify(config, rel) is None:
                    sys.stderr.write(f"storysync: {path}: not a story file, skipped\n")
        checked = validate_paths(config, source, wanted)
        diagnostics, files = checked.diagnostics, checked.files
    write_diagnostics(diagnostics, fmt, extra={"files": files})
    if fmt != "json" and app.verbosity >= 0:
        bad = len({d.path for d in diagnostics})
        if diagnostics:
            sys.stderr.write(
                f"storysync: {plural(len(diagnostics), 'error')} in {plural(bad, 'file')} "
                f"({plural(files, 'file')} checked); fix them and run again\n"
            )
        elif fmt == "text":
            sys.stderr.write(f"storysync: {plural(files, 'story file')} valid\n")
    return 1 if diagnostics else 0


def _exists(given: str, in_repo: Path) -> bool:
    """Whether a PATH names a file, relative to the cwd or (as a fallback) the repository."""
    return os.path.lexists(given) or os.path.lexists(in_repo)
