"""``storysync doctor``: one line per check, each failure with its fix."""

from __future__ import annotations

import json

import click

from storysync.cli.app import App
from storysync.cli.commands.options import FORMAT_TEXT_JSON
from storysync.errors import printable


@click.command("doctor")
@FORMAT_TEXT_JSON
@click.pass_obj
def command(app: App, fmt: str) -> int:
    """Check the setup; print the fix for each problem found.

    Checks git, the repository's state, the config, the stories root and each
    story file's permissions, the database (reachable, initialised, schema
    current, writable), how far it is behind HEAD, the hooks, the inotify watch
    limit, open conflicts and webhook delivery.  Exits 0 when every check passes,
    1 when any fails, and 2 when the configuration or database URL is invalid.
    """
    # local: imported when the command runs: `storysync --help` loads every command module
    from pathlib import Path

    from storysync.cli.doctor import Context, diagnose, exit_code

    ctx = Context(start=app.repo_arg or Path.cwd(), config_file=app.config_file, db_flag=app.db_flag)
    results = diagnose(ctx)
    code = exit_code(results)
    if fmt == "json":
        payload = {"ok": code == 0, "checks": [r.as_dict() for r in results]}
        app.out.print_json(json.dumps(payload))
        return code
    for r in results:
        line = f"{r.status.upper():4}  {r.name}: {r.message}"
        if r.fix:
            line += f"; fix: {r.fix}"
        app.out.print(printable(line), markup=False, highlight=False)
    failed = sum(r.status == "fail" for r in results)
    app.out.print("all checks passed" if not failed else f"{failed} check(s) failed", markup=False)
    return code
