"""Conflicts between the files and the database: list the open ones, resolve one.

A conflict is recorded when both sides changed a story (SPEC §7): the file won,
and the database's version was kept as ``db_snapshot``.  It stays open until
someone resolves it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, select

from storysync.config import Config
from storysync.db import tables as m
from storysync.db.database import Database, utcnow
from storysync.errors import UsageError
from storysync.story.layout import classify
from storysync.story.parse import parse_story

FIELD_ORDER = ("id", "title", "status", "backlog", "priority", "points", "epic", "assignee", "tags", "depends_on")


@dataclass(frozen=True)
class OpenConflict:
    """One open conflict with both versions of the story, field by field."""

    id: int
    story_id: str
    detected_at: Any
    path: str | None
    file: dict[str, Any] | None  # None: the file is gone or does not parse
    database: dict[str, Any]
    fields: list[str] | None = None  # the fields both sides changed (a merge); None: the whole story

    def rows(self) -> list[tuple[str, Any, Any]]:
        """``(field, file value, database value)`` for every field either side has."""
        file = self.file or {}
        keys = [k for k in FIELD_ORDER if k in file or k in self.database]
        keys += [k for k in [*file, *self.database] if k not in keys and k != "body"]
        keys = [*dict.fromkeys(keys), "body"]
        return [(k, file.get(k), self.database.get(k)) for k in keys]


def db_snapshot(row: Mapping[str, Any], depends_on: Iterable[str]) -> dict[str, Any]:
    """The database's version of a story as a conflict keeps it: every ``stories``
    column, JSON-safe, and its ``depends_on`` from the ``dependencies`` table."""
    snapshot: dict[str, Any] = json.loads(json.dumps(dict(row), default=str))
    snapshot.pop("base", None)  # the last synced version, not the database's
    snapshot["depends_on"] = sorted(depends_on)
    return snapshot


def db_snapshots(conn: Connection, story_ids: list[str]) -> dict[str, dict[str, Any]]:
    """``db_snapshot`` of each of ``story_ids`` as it is on ``conn`` now, by id."""
    s, d = m.stories.c, m.dependencies.c
    deps: dict[str, list[str]] = {}
    rows: dict[str, dict[str, Any]] = {}
    for start in range(0, len(story_ids), 500):
        chunk = story_ids[start : start + 500]
        rows.update((r.id, dict(r._mapping)) for r in conn.execute(select(m.stories).where(s.id.in_(chunk))))
        for story_id, dep in conn.execute(select(d.story_id, d.depends_on_id).where(d.story_id.in_(chunk))):
            deps.setdefault(story_id, []).append(dep)
    return {story_id: db_snapshot(row, deps.get(story_id, [])) for story_id, row in rows.items()}


def conflict_row(
    story_id: str,
    detected_at: Any,
    file_hash: str | None,
    snapshot: dict[str, Any] | None,
    fields: list[str] | None = None,
) -> dict[str, Any]:
    """One open ``conflicts`` row: the file won (its hash; None when the file was deleted) and
    the database's version is kept whole (``db_snapshot``); ``fields`` names the fields both
    sides changed when a field merge met them (None: the whole story)."""
    row = {
        "story_id": story_id,
        "detected_at": detected_at,
        "file_hash": file_hash,
        "db_snapshot": snapshot,
        "resolution": "file_wins",
        "resolved_at": None,
    }
    if fields:  # else the column's SQL NULL (not a JSON null): the whole story
        row["fields"] = fields
    return row


def open_conflicts(config: Config, db: Database) -> list[OpenConflict]:
    """Every unresolved conflict, oldest first, with the file as it is on disk now."""
    c, s = m.conflicts.c, m.stories.c
    query = (
        select(c.id, c.story_id, c.detected_at, c.db_snapshot, c.fields, s.path)
        .join(m.stories, s.id == c.story_id)
        .where(c.resolved_at.is_(None))
        .order_by(c.detected_at, c.id)
    )
    with db.read() as conn:
        found = list(conn.execute(query))
    return [
        OpenConflict(
            r.id, r.story_id, r.detected_at, r.path, _file_version(config, r.path), _db_version(r.db_snapshot), r.fields
        )
        for r in found
    ]


def count_open(db: Database) -> int:
    """How many conflicts are unresolved (one cheap COUNT query)."""
    c = m.conflicts.c
    with db.read() as conn:
        return int(conn.execute(select(func.count()).where(c.resolved_at.is_(None))).scalar_one())


def resolve(db: Database, story_id: str) -> int:
    """Mark the open conflicts of ``story_id`` resolved; how many there were."""
    c = m.conflicts.c
    with db.write() as conn:
        done = conn.execute(
            m.conflicts.update().where(c.story_id == story_id, c.resolved_at.is_(None)).values(resolved_at=utcnow())
        ).rowcount
    if not done:
        raise UsageError(f"{story_id}: no open conflict to resolve")
    return int(done)


def _db_version(snapshot: Any) -> dict[str, Any]:
    snap = dict(snapshot or {})
    out = {k: snap.get(k) for k in FIELD_ORDER if k != "backlog"}
    out["backlog"] = snap.get("backlog_id")
    out.update(snap.get("extra") or {})
    out["body"] = snap.get("body")
    return {k: v for k, v in out.items() if v not in (None, [])}


def _file_version(config: Config, path: str | None) -> dict[str, Any] | None:
    location = classify(config, path) if path else None
    if location is None:
        return None
    try:
        data = (config.repo / location.path).read_bytes()
    except OSError:
        return None
    story = parse_story(location, data)
    if isinstance(story, list):
        return None
    out = dict(story.frontmatter)
    out.setdefault("status", location.status)
    out.setdefault("backlog", location.backlog)
    out["body"] = story.body
    return {k: v for k, v in out.items() if v not in (None, [])}
