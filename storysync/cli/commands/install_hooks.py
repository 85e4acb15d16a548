"""``storysync install-hooks``: the git hooks of SPEC §9, chained with any already there."""

from __future__ import annotations

import click

from storysync.cli.app import App


@click.command("install-hooks")
@click.pass_obj
def command(app: App) -> int:
    """Install the pre-commit, post-merge, post-checkout and post-rewrite hooks.

    Honours core.hooksPath; a hook already installed is kept and runs first
    (renamed to <hook>.local).  Running it again changes nothing.
    """
    from storysync.cli.hooks import install

    for done in install(app.top_level):
        app.console.print(f"storysync: {done.describe()}", markup=False)
    return 0
