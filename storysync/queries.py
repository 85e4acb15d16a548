"""Read-only questions about the database: status, one story, history, runs.

The CLI's ``status``, ``show``, ``history`` and ``runs`` and any Python caller use
these; they read the database only, never the files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select

from storysync import models as m
from storysync.db import LAST_SYNCED, Database, get_state
from storysync.errors import UsageError


@dataclass
class Status:
    """What the database holds, per backlog and status."""

    last_synced_commit: str | None
    counts: dict[tuple[str, str], int] = field(default_factory=dict)
    total: int = 0
    deleted: int = 0
    pending_export: int = 0
    open_conflicts: int = 0
    last_run: dict[str, Any] | None = None


def status(db: Database) -> Status:
    """Counts and sync state; a handful of aggregate queries."""
    s = m.stories.c
    with db.read() as conn:
        result = Status(last_synced_commit=get_state(conn, LAST_SYNCED))
        live = s.deleted_at.is_(None)
        for backlog, st, n in conn.execute(
            select(s.backlog_id, s.status, func.count()).where(live).group_by(s.backlog_id, s.status)
        ):
            result.counts[(backlog, st)] = n
        result.total = sum(result.counts.values())
        result.deleted = conn.execute(
            select(func.count()).select_from(m.stories).where(s.deleted_at.is_not(None))
        ).scalar_one()
        result.pending_export = conn.execute(
            select(func.count()).select_from(m.stories).where(s.revision > s.synced_revision)
        ).scalar_one()
        result.open_conflicts = conn.execute(
            select(func.count()).select_from(m.conflicts).where(m.conflicts.c.resolved_at.is_(None))
        ).scalar_one()
        run = conn.execute(select(m.sync_runs).order_by(m.sync_runs.c.id.desc()).limit(1)).first()
        result.last_run = dict(run._mapping) if run else None
    return result


def get_story(db: Database, story_id: str) -> dict[str, Any]:
    """One story row with its dependencies and dependents; ``UsageError`` if unknown."""
    with db.read() as conn:
        row = conn.execute(select(m.stories).where(m.stories.c.id == story_id)).first()
        if row is None:
            raise UsageError(f"no story with id {story_id!r} in the database")
        story = dict(row._mapping)
        d = m.dependencies.c
        story["depends_on"] = list(
            conn.execute(select(d.depends_on_id).where(d.story_id == story_id).order_by(d.depends_on_id)).scalars()
        )
        story["blocks"] = list(
            conn.execute(select(d.story_id).where(d.depends_on_id == story_id).order_by(d.story_id)).scalars()
        )
    return story


def history(db: Database, story_id: str) -> list[dict[str, Any]]:
    """A story's status changes, oldest first; ``UsageError`` if unknown."""
    get_story(db, story_id)
    h = m.status_history.c
    with db.read() as conn:
        rows = conn.execute(select(m.status_history).where(h.story_id == story_id).order_by(h.changed_at, h.id))
        return [dict(r._mapping) for r in rows]


def runs(db: Database, limit: int = 20) -> list[dict[str, Any]]:
    """The most recent sync runs, newest first."""
    with db.read() as conn:
        rows = conn.execute(select(m.sync_runs).order_by(m.sync_runs.c.id.desc()).limit(limit))
        return [dict(r._mapping) for r in rows]
