"""``storysync run-hook NAME [ARGS]``: what a post-merge/post-checkout/post-rewrite hook runs."""

from __future__ import annotations

import click

from storysync.cli.app import App


@click.command("run-hook", context_settings={"ignore_unknown_options": True})
@click.argument("name", metavar="HOOK")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def command(app: App, name: str, args: tuple[str, ...]) -> int:
    """Sync after a git hook (HOOK is post-merge, post-checkout, post-rewrite, or sync).

    Skips file checkouts and merges or rebases in progress; always exits 0, so
    that it never fails the git command; reports problems on stderr.
    """
    # local: imported when the command runs: `storysync --help` loads every command module
    from storysync.cli.hooks import run_post_hook

    return run_post_hook(app, name, args)
