"""``storysync notify``: deliver the change batches the webhook has not acknowledged."""

from __future__ import annotations

import click

from storysync.cli.app import App
from storysync.errors import EXIT_RUNTIME, ConfigError


@click.command("notify")
@click.option(
    "--budget",
    type=click.FloatRange(min=0.1),
    default=60.0,
    show_default=True,
    metavar="SECONDS",
    help="Stop retrying after this long; what is left stays pending.",
)
@click.pass_obj
def command(app: App, budget: float) -> int:
    """POST every pending change batch to webhook_url, retrying with backoff until 2xx.

    Sync runs deliver on their own; this catches up after the server was down.
    Exits 0 when nothing is left pending and 3 when some could not be delivered.
    """
    # local: imported when the command runs: `storysync --help` loads every command module
    from storysync.db import notify

    url = app.config.webhook_url
    if not url:
        raise ConfigError("no webhook_url configured: set webhook_url in storysync.toml or STORYSYNC_WEBHOOK_URL")
    app.db.ensure_schema()
    report = notify.deliver(app.db, url, budget=budget, respect_backoff=False)
    where = notify.display_url(url)
    changes = sum(len(b.changes) for b in report.delivered)
    app.console.print(
        f"storysync: delivered {len(report.delivered)} batch(es), {changes} change(s) to {where}", markup=False
    )
    if report.pending:
        app.console.print(
            f"storysync: {report.pending} change(s) still pending: {report.error or 'out of time'}", markup=False
        )
        return EXIT_RUNTIME
    return 0
