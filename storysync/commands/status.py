"""``storysync status``: what the database holds and how far it is behind HEAD."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from storysync.app import App
from storysync.commands.options import FORMAT_TEXT_JSON

if TYPE_CHECKING:
    from storysync.queries import Status


@click.command("status")
@FORMAT_TEXT_JSON
@click.pass_obj
def command(app: App, fmt: str) -> int:
    """Show the database's stories per backlog and status, and its drift from HEAD."""
    from rich.table import Table

    from storysync import gitplain

    st, display = _read(app)
    head = gitplain.head(app.top_level)
    behind = None
    if st.last_synced_commit and head:
        behind = gitplain.commits_between(app.top_level, st.last_synced_commit, head)
    if fmt == "json":
        payload = {
            "database": display,
            "head": head,
            "last_synced_commit": st.last_synced_commit,
            "commits_behind": behind,
            "stories": st.total,
            "deleted": st.deleted,
            "pending_export": st.pending_export,
            "open_conflicts": st.open_conflicts,
            "by_backlog": [{"backlog": b, "status": s, "count": n} for (b, s), n in sorted(st.counts.items())],
        }
        app.out.print_json(json.dumps(payload, default=str))
        return 0
    statuses = list(dict.fromkeys(app.config.stages.values()))
    statuses += sorted({s for _, s in st.counts} - set(statuses))
    table = Table(title=f"{st.total} stories in {display}")
    table.add_column("backlog")
    for s in statuses:
        table.add_column(s, justify="right")
    table.add_column("total", justify="right")
    for backlog in sorted({b for b, _ in st.counts}):
        cells = [st.counts.get((backlog, s), 0) for s in statuses]
        table.add_row(backlog, *map(str, cells), str(sum(cells)))
    app.out.print(table)
    app.out.print(_drift_line(st.last_synced_commit, head, behind), markup=False)
    if st.pending_export:
        app.out.print(f"{st.pending_export} DB-side change(s) waiting for 'storysync export'", markup=False)
    if st.open_conflicts:
        app.out.print(f"{st.open_conflicts} open conflict(s): see 'storysync conflicts'", markup=False)
    return 0


def _read(app: App) -> tuple[Status, str]:
    """The status and how the database is named: read with sqlite3 when it is a current
    SQLite file, else through SQLAlchemy, which creates or upgrades it first (as every
    command does) and reports a locked, corrupt or foreign one."""
    from storysync import queries, sqliteread

    fast = sqliteread.read(app.config.database, queries.read_status)
    if fast is not None:
        return fast, app.config.database  # a plain SQLite URL is its own display
    app.db.ensure_schema()
    return queries.status(app.db), app.db.display


def _drift_line(last: str | None, head: str | None, behind: int | None) -> str:
    if last is None:
        return "never synced: run 'storysync sync'"
    if head == last:
        return f"in step with HEAD ({last[:12]})"
    if behind is None:
        return f"last synced {last[:12]}, which HEAD no longer contains: run 'storysync sync' (a full reconcile)"
    return f"{behind} commit(s) behind HEAD (last synced {last[:12]}): run 'storysync sync'"
