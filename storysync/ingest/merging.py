"""A sync that meets a story changed in its file and in the database since its last sync
merges them field by field (``merge = "fields"``, issue 15), over the base the row keeps.

The file's values are written as for any update; then, where the merge took a field
from the database, the row gets the merged values and stays pending (``revision >
synced_revision``), so that ``export`` writes the merged story to the file.  A field
both sides changed keeps the file's value and is a conflict record naming it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from storysync.db import tables as m
from storysync.db.conflicts import conflict_row
from storysync.story.merge import Merged, Version, base_version, changed_fields, merge, row_values, version_of
from storysync.story.model import Record


@dataclass(frozen=True)
class SyncMerge:
    """The outcome of one story's merge."""

    story_id: str
    result: Merged
    changed: list[str]  # the fields the merge changed from the base (changes.detail "merged")
    snapshot: dict[str, Any]  # the database's version before the sync (kept by a conflict)
    file_hash: str
    file_body: str

    @property
    def status(self) -> Any:
        return self.result.frontmatter.get("status")


def bases(conn: Connection, story_ids: list[str]) -> dict[str, Any]:
    """``stories.base`` of each of ``story_ids`` that has one."""
    s = m.stories.c
    found: dict[str, Any] = {}
    for start in range(0, len(story_ids), 500):
        query = select(s.id, s.base).where(s.id.in_(story_ids[start : start + 500]), s.base.is_not(None))
        found.update((sid, base) for sid, base in conn.execute(query) if base is not None)
    return found


def file_version(story: Record) -> Version:
    """The story as its file says, in the database's terms (``merge.version_of``)."""
    title, priority, points, epic, assignee, tags, extra = story.columns
    values = {"title": title, "priority": priority, "points": points, "epic": epic, "assignee": assignee}
    values |= {"status": story.status, "backlog_id": story.backlog, "body": story.body}
    values |= {"tags": json.loads(tags), "extra": json.loads(extra)}
    return version_of(values, story.deps)


def merge_story(story: Record, snapshot: dict[str, Any], base: Mapping[str, Any]) -> SyncMerge:
    """Merge the file (which wins a field both changed) and the database's version."""
    ours = file_version(story)
    assert ours.body is not None
    known = base_version(base, ours.body, snapshot["body"] or "")
    result = merge(known, ours, version_of(snapshot, snapshot["depends_on"]))
    return SyncMerge(story.id, result, changed_fields(known, result), snapshot, story.content_hash, ours.body)


def write_merges(conn: Connection, merges: list[SyncMerge], run_id: int, now: datetime) -> None:
    """After the files' values are written: the merged values where the database gave
    some (left pending for export), the conflict records, the change rows' detail."""
    s = m.stories.c
    for done in merges:
        result = done.result
        if result.merged:
            values = row_values(Version(result.frontmatter, result.body))
            depends_on = values.pop("depends_on")
            stmt = m.stories.update().where(s.id == done.story_id)
            if result.body != done.file_body:  # the base (the file) keeps its body: the row's is the merge
                stored = conn.execute(select(s.base).where(s.id == done.story_id)).scalar_one()
                values["base"] = {**stored, "body": done.file_body}
            conn.execute(stmt.values(**values, synced_revision=s.revision - 1))  # pending: export writes it
            conn.execute(m.dependencies.delete().where(m.dependencies.c.story_id == done.story_id))
            rows = [{"story_id": done.story_id, "depends_on_id": d} for d in depends_on]
            if rows:
                conn.execute(m.dependencies.insert(), rows)
        if result.conflicts:
            row = conflict_row(done.story_id, now, done.file_hash, done.snapshot, result.conflicting)
            conn.execute(m.conflicts.insert().values(**row))
        detail = {"merged": done.changed, "conflicts": result.conflicting}
        c = m.changes.c
        conn.execute(m.changes.update().where(c.run_id == run_id, c.story_id == done.story_id).values(detail=detail))
