"""``storysync validate``: check story files and report every problem."""

from __future__ import annotations

import click

from storysync.cli.app import App
from storysync.cli.fast import validate
from storysync.cli.report import FORMATS


@click.command("validate")
@click.argument("paths", nargs=-1, type=click.Path())
@click.option(
    "--staged",
    is_flag=True,
    help="Check the staged (index) versions; with no PATH, the whole staged change: the staged story "
    "files and the stories depending on one it deletes or renames.",
)
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True, help="Output format.")
@click.pass_obj
def command(app: App, paths: tuple[str, ...], staged: bool, fmt: str) -> int:
    """Check story files: the schema, the layout and the cross-file rules.

    With no PATH every story file is checked.  Exit 1 when any file is invalid,
    exit 2 when a PATH does not exist; a PATH that is not a story file is skipped
    with a notice.  With --staged, paths missing from the working tree (staged
    deletions) are accepted silently.
    """
    return validate(app, paths, staged, fmt)
