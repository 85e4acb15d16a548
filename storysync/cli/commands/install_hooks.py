"""``storysync install-hooks``: the git hooks of SPEC §9, chained with any already there."""

from __future__ import annotations

import click

from storysync.cli.app import App


@click.command("install-hooks")
@click.pass_obj
def command(app: App) -> int:
    """Install the pre-commit, post-merge, post-checkout and post-rewrite hooks,
    and the merge driver for story files.

    Honours core.hooksPath; a hook already installed is kept and runs first
    (renamed to <hook>.local).  The merge driver: '*.md merge=storysync' in
    .gitattributes at the stories root, and merge.storysync.driver in the
    repository's git config.  Running it again changes nothing.
    """
    # local: imported when the command runs: `storysync --help` loads every command module
    from storysync.cli.hooks import install, install_merge_driver

    for done in install(app.top_level):
        app.console.print(f"storysync: {done.describe()}", markup=False)
    for line in install_merge_driver(app.top_level, app.config.root_path):
        app.console.print(f"storysync: {line}", markup=False)
    return 0
