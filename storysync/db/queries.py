"""Read-only questions about the database: status, one story, history, runs.

The CLI's ``status``, ``show``, ``history`` and ``runs`` and any Python caller use
these; they read the database only, never the files.  ``status`` is written once,
as SQL texts with named ``:param`` placeholders run through a ``Reader``: a
SQLAlchemy connection (any database) or, for the ``status`` command on a SQLite
file, the standard library's sqlite3 (``storysync.db.sqlite_reader``), which saves
importing SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from storysync.db import worktree
from storysync.db.migrations import LAST_SYNCED, WORKTREE_PATHS
from storysync.errors import UsageError

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from storysync.db.database import Database


class Reader(Protocol):
    """Runs one SQL text with its named parameters bound."""

    def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> Sequence[Sequence[Any]]:
        """Every row of ``sql``."""
        ...


class ConnectionReader:
    """A ``Reader`` over an open SQLAlchemy connection (its transaction is the caller's)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> Sequence[Sequence[Any]]:
        """Every row of ``sql`` with ``params`` bound."""
        # local: SQLAlchemy only on the server path; status on SQLite reads through sqlite3 (~130 ms)
        from sqlalchemy import text

        return self._conn.execute(text(sql), dict(params or {})).all()


STATE = "SELECT value FROM sync_state WHERE key = :key"
COUNTS = "SELECT backlog_id, status, count(*) FROM stories WHERE deleted_at IS NULL GROUP BY backlog_id, status"
DELETED = "SELECT count(*) FROM stories WHERE deleted_at IS NOT NULL"
PENDING_EXPORT = "SELECT count(*) FROM stories WHERE revision > synced_revision"
OPEN_CONFLICTS = "SELECT count(*) FROM conflicts WHERE resolved_at IS NULL"


@dataclass
class Status:
    """What the database holds, per backlog and status."""

    last_synced_commit: str | None
    counts: dict[tuple[str, str], int] = field(default_factory=dict)
    total: int = 0
    deleted: int = 0
    pending_export: int = 0
    open_conflicts: int = 0
    worktree_paths: int = 0  # story paths whose rows came from the working tree (storysync.worktree)


def status(db: Database) -> Status:
    """Counts and sync state, read in one transaction; a handful of aggregate queries."""
    with db.read() as conn:
        return read_status(ConnectionReader(conn))


def read_status(reader: Reader) -> Status:
    """``status`` through ``reader``, whose transaction makes the counts one snapshot."""
    state = reader.rows(STATE, {"key": LAST_SYNCED})
    result = Status(last_synced_commit=state[0][0] if state else None)
    for backlog, st, n in reader.rows(COUNTS):
        result.counts[(backlog, st)] = n
    result.total = sum(result.counts.values())
    result.deleted = _count(reader, DELETED)
    result.pending_export = _count(reader, PENDING_EXPORT)
    result.open_conflicts = _count(reader, OPEN_CONFLICTS)
    marked = reader.rows(STATE, {"key": WORKTREE_PATHS})
    result.worktree_paths = len(worktree.parse(marked[0][0] if marked else None))
    return result


def _count(reader: Reader, sql: str) -> int:
    [(n,)] = reader.rows(sql)
    return int(n)


def get_story(db: Database, story_id: str) -> dict[str, Any]:
    """One story row with its dependencies, dependents and ``branches`` (the branch overlay's
    rows: the branches where its file differs, ``storysync.db.branches``); a story only a
    branch has is its id, ``branches`` and the title there (``status`` None); ``UsageError``
    if unknown."""
    # local: SQLAlchemy only on the server path; status on SQLite reads through sqlite3 (~130 ms)
    from sqlalchemy import select

    from storysync.db import tables as m

    with db.read() as conn:
        row = conn.execute(select(m.stories).where(m.stories.c.id == story_id)).first()
        branches = story_branches(ConnectionReader(conn), story_id)
        if row is None and branches:
            title = next((b["title"] for b in branches if b["title"] is not None), None)
            return {
                "id": story_id,
                "title": title,
                "status": None,
                "depends_on": [],
                "blocks": [],
                "branches": branches,
            }
        if row is None:
            raise UsageError(f"no story with id {story_id!r} in the database")
        story = dict(row._mapping)
        story["branches"] = branches
        d = m.dependencies.c
        story["depends_on"] = list(
            conn.execute(select(d.depends_on_id).where(d.story_id == story_id).order_by(d.depends_on_id)).scalars()
        )
        story["blocks"] = list(
            conn.execute(select(d.story_id).where(d.depends_on_id == story_id).order_by(d.story_id)).scalars()
        )
    return story


STORY_FIELDS = (
    "branch",
    "status",
    "kind",
    "path",
    "title",
    "content_hash",
    "commit",
    "author",
    "changed_at",
    "base_commit",
    "tip_commit",
    "recorded_at",
)
OF_STORY = (
    'SELECT branch, status, kind, path, title, content_hash, "commit", author, changed_at, '
    "base_commit, tip_commit, recorded_at FROM branch_stories WHERE story_id = :story_id"
)


def story_branches(reader: Reader, story_id: str) -> list[dict[str, Any]]:
    """The overlay rows of one story, each as a dict, by branch name."""
    rows = [dict(zip(STORY_FIELDS, row, strict=True)) for row in reader.rows(OF_STORY, {"story_id": story_id})]
    return sorted(rows, key=lambda row: str(row["branch"]))


def history(db: Database, story_id: str) -> list[dict[str, Any]]:
    """A story's status changes, oldest first; ``UsageError`` if unknown."""
    # local: SQLAlchemy only on the server path; status on SQLite reads through sqlite3 (~130 ms)
    from sqlalchemy import select

    from storysync.db import tables as m

    get_story(db, story_id)
    h = m.status_history.c
    with db.read() as conn:
        rows = conn.execute(select(m.status_history).where(h.story_id == story_id).order_by(h.changed_at, h.id))
        return [dict(r._mapping) for r in rows]


def runs(db: Database, limit: int = 20) -> list[dict[str, Any]]:
    """The most recent sync runs, newest first."""
    # local: SQLAlchemy only on the server path; status on SQLite reads through sqlite3 (~130 ms)
    from sqlalchemy import select

    from storysync.db import tables as m

    with db.read() as conn:
        rows = conn.execute(select(m.sync_runs).order_by(m.sync_runs.c.id.desc()).limit(limit))
        return [dict(r._mapping) for r in rows]
