"""``storysync status``: what the database holds and how far it is behind HEAD."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import click

from storysync.cli.app import App
from storysync.cli.commands.options import FORMAT_TEXT_JSON
from storysync.cli.listing import ALL_REPOSITORIES_OPTION, each_repository, repository_label
from storysync.cli.report import console_width, plain_stdout, plain_table, plain_text
from storysync.errors import printable

if TYPE_CHECKING:
    from storysync.db.queries import Status

BACKLOG_COLUMN = "backlog id"  # the rows' column; the status columns may include one named 'backlog'


@click.command("status")
@FORMAT_TEXT_JSON
@ALL_REPOSITORIES_OPTION
@click.pass_obj
def command(app: App, fmt: str, all_repositories: bool) -> int:
    """Show the database's stories per backlog and status, and its drift from HEAD.

    With --all-repositories, one line for each repository that shares the database.
    """
    # local: imported when the command runs: `storysync --help` loads every command module
    from storysync.git import runner

    if all_repositories:
        _all_repositories(app, fmt)
        return 0

    st, display = _read(app)
    head = runner.head(app.top_level)
    behind = None
    if st.last_synced_commit and head:
        behind = runner.commits_between(app.top_level, st.last_synced_commit, head)
    if fmt == "json":
        _print_json(
            app,
            {
                "database": display,
                "repository": app.config.repository or None,
                "head": head,
                "last_synced_commit": st.last_synced_commit,
                "commits_behind": behind,
                "stories": st.total,
                "deleted": st.deleted,
                "pending_export": st.pending_export,
                "open_conflicts": st.open_conflicts,
                "working_tree_paths": st.worktree_paths,
                "by_backlog": [{"backlog": b, "status": s, "count": n} for (b, s), n in sorted(st.counts.items())],
            },
        )
        return 0
    _print_table(app, st, display)
    notes = _drift_lines(st, head, behind)
    if st.pending_export:
        notes.append(f"{st.pending_export} DB-side change(s) waiting for 'storysync export'")
    if st.open_conflicts:
        notes.append(f"{st.open_conflicts} open conflict(s): see 'storysync conflicts'")
    _print_lines(app, notes)
    return 0


def _read(app: App) -> tuple[Status, str]:
    """The status and how the database is named: read with sqlite3 when it is a current
    SQLite file, else through SQLAlchemy, which creates or upgrades it first (as every
    command does) and reports a locked, corrupt or foreign one."""
    # local: imported when the command runs: `storysync --help` loads every command module
    from storysync.db import queries
    from storysync.db import sqlite_reader as sqliteread

    fast = sqliteread.read(app.config.database, queries.read_status)
    if fast is not None:
        return fast, app.config.database  # a plain SQLite URL is its own display
    app.db.ensure_schema()
    return queries.status(app.db), app.db.display


def _all_repositories(app: App, fmt: str) -> None:
    """Each repository sharing the database: its stories, pending work and last synced commit."""
    # local: imported when the command runs: `storysync --help` loads every command module
    from storysync.db.database import display_url, parse_url
    from storysync.db.queries import read_status

    found = each_repository(app, lambda reader, _dialect: read_status(reader))
    display = display_url(parse_url(app.config.shared_database))
    if fmt == "json":
        entries = [
            {
                "repository": repository.name or None,
                "current": repository.name == app.config.repository,
                "stories": st.total,
                "deleted": st.deleted,
                "pending_export": st.pending_export,
                "open_conflicts": st.open_conflicts,
                "last_synced_commit": st.last_synced_commit,
            }
            for repository, st in found
        ]
        _print_json(app, {"database": display, "repositories": entries})
        return
    header = ["repository", "stories", "deleted", "pending export", "open conflicts", "last synced"]
    rows = [
        [
            ("* " if repository.name == app.config.repository else "  ") + printable(repository_label(repository.name)),
            str(st.total),
            str(st.deleted),
            str(st.pending_export),
            str(st.open_conflicts),
            (st.last_synced_commit or "never")[:12],
        ]
        for repository, st in found
    ]
    _print_rows(app, f"{len(found)} repositories in {printable(display)} (* this one)", header, rows)


def _print_rows(app: App, title: str, header: list[str], rows: list[list[str]]) -> None:
    text = plain_table(title, header, rows, console_width()) if plain_stdout() else None
    if text is not None:
        sys.stdout.write(text)
        return
    # local: imported when the command runs: `storysync --help` loads every command module
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(title))
    for i, name in enumerate(header):
        table.add_column(escape(name), justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*map(escape, row))
    app.out.print(table)


def _print_json(app: App, payload: dict[str, Any]) -> None:
    """Indented JSON; off a terminal rich prints exactly this, so it is written without it."""
    if plain_stdout():
        sys.stdout.write(json.dumps(payload, default=str, indent=2, ensure_ascii=False) + "\n")
    else:
        app.out.print_json(json.dumps(payload, default=str))


def _print_table(app: App, st: Status, display: str) -> None:
    """Stories per backlog (rows, under ``backlog id``) and status (columns), configured stages first."""
    statuses = list(dict.fromkeys(app.config.stages.values()))
    statuses += sorted({s for _, s in st.counts} - set(statuses))
    header = [BACKLOG_COLUMN, *map(printable, statuses), "total"]  # named apart from the status 'backlog'
    rows = []
    for backlog in sorted({b for b, _ in st.counts}):
        cells = [st.counts.get((backlog, s), 0) for s in statuses]
        rows.append([printable(backlog), *map(str, cells), str(sum(cells))])
    named = f" (repository {app.config.repository})" if app.config.repository else ""
    _print_rows(app, f"{st.total} stories in {printable(display)}{named}", header, rows)


def _print_lines(app: App, lines: list[str]) -> None:
    if plain_stdout() and all(map(plain_text, lines)):
        sys.stdout.write("".join(f"{line}\n" for line in lines))
        return
    for line in lines:
        app.out.print(line, markup=False)


def _drift_lines(st: Status, head: str | None, behind: int | None) -> list[str]:
    """How far the database is from HEAD: behind it, and rows synced from the working tree."""
    last = st.last_synced_commit
    lines = [] if st.worktree_paths and last is not None and head == last else [_drift_line(last, head, behind)]
    if st.worktree_paths:
        lines.append(
            f"{st.worktree_paths} story path(s) synced from the working tree, not from a commit: "
            "run 'storysync sync' to bring them back to HEAD"
        )
    return lines


def _drift_line(last: str | None, head: str | None, behind: int | None) -> str:
    if last is None:
        return "never synced: run 'storysync sync'"
    if head == last:
        return f"in step with HEAD ({last[:12]})"
    if behind is None:
        return (
            f"last synced {last[:12]}, which HEAD no longer contains: run 'storysync sync' (a full reconcile; "
            "a shared database refuses to go back: git fetch, or --allow-rewind)"
        )
    return f"{behind} commit(s) behind HEAD (last synced {last[:12]}): run 'storysync sync'"
