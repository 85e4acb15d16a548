"""The branch overlay, write side (issue 16): a branch's rows replaced, a branch dropped,
and the rows a main-line sync promotes dropped, each with its ``changes`` rows.

Only ``branch_stories`` and ``changes`` are written here, always inside the caller's
transaction; the main rows (``stories``, ``status_history``) are only read.  A change
row's ``detail`` is ``{"branch", "status", "furthest_status"}`` (and for a drop its
``reason``): the branch, the story's status there (None: deleted there), and the most
progressed status across the main line and every branch once the write is done.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, select

from storysync.db import tables as m
from storysync.db.branches import KIND_DROP, KIND_SET, SOURCE, furthest, status_rank

CHUNK = 500

# why an overlay row went away (the ``reason`` of its drop)
MERGED = "merged"  # the branch tip is in the main line
PROMOTED = "promoted"  # the main line has the same content (a squash merge, a cherry-pick)
GONE = "gone"  # the branch no longer exists
IN_STEP = "in step"  # the branch's file no longer differs from the main line


@dataclass(frozen=True)
class Promotion:
    """What a main-line sync needs to drop the overlay rows it promotes: the stage order
    (for ``furthest_status``) and whether a branch tip is in the synced commit (None for a
    working-tree run: only rows whose content reached the main line are dropped)."""

    stages: Mapping[str, str]
    merged: Callable[[str], bool] | None = None


def branch_rows(conn: Connection, branch: str) -> dict[str, dict[str, Any]]:
    """The overlay rows of ``branch``, by story id."""
    b = m.branch_stories.c
    return {r.story_id: dict(r._mapping) for r in conn.execute(select(m.branch_stories).where(b.branch == branch))}


def replace_branch(
    conn: Connection,
    branch: str,
    rows: Sequence[dict[str, Any]],
    run_id: int | None,
    now: datetime,
    stages: Mapping[str, str],
) -> tuple[list[str], list[str]]:
    """Make ``rows`` (``branch_stories`` values without ``branch``) the overlay of ``branch``:
    its old rows deleted, these inserted.  A change row for each story whose row is new or
    differs (status, content, kind), and a drop for each row gone; the ids of both."""
    old = branch_rows(conn, branch)
    conn.execute(m.branch_stories.delete().where(m.branch_stories.c.branch == branch))
    if rows:
        conn.execute(m.branch_stories.insert(), [{**row, "branch": branch} for row in rows])
    new = {row["story_id"]: row for row in rows}
    changed = [sid for sid, row in new.items() if differs(old.get(sid), row)]
    gone = [sid for sid in old if sid not in new]
    feed: list[tuple[str, str, str, str | None, str | None]] = []
    feed += [(sid, KIND_SET, branch, new[sid]["status"], None) for sid in changed]
    feed += [(sid, KIND_DROP, branch, old[sid]["status"], IN_STEP) for sid in gone]
    _feed(conn, feed, run_id, now, stages)
    return sorted(changed), sorted(gone)


def differs(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> bool:
    """Whether an overlay row is new, or says something else than the ``old`` one."""
    return old is None or any(old[key] != new[key] for key in ("status", "content_hash", "kind", "path", "title"))


def drop_branch(
    conn: Connection, branch: str, run_id: int | None, now: datetime, stages: Mapping[str, str], reason: str
) -> list[str]:
    """Drop every overlay row of ``branch`` (merged or deleted); the story ids dropped."""
    old = branch_rows(conn, branch)
    if not old:
        return []
    conn.execute(m.branch_stories.delete().where(m.branch_stories.c.branch == branch))
    _feed(conn, [(sid, KIND_DROP, branch, row["status"], reason) for sid, row in old.items()], run_id, now, stages)
    return sorted(old)


def promote(conn: Connection, run_id: int, now: datetime, promotion: Promotion) -> list[tuple[str, str]]:
    """Drop the overlay rows a main-line sync made true, in its transaction: every row of a
    branch whose tip the synced commit contains (merged), and each row whose content the
    main line now has (a squash merge; a story deleted on the branch and in the main line).
    ``(branch, story id)`` of each row dropped.  With no overlay this is one query that
    finds nothing."""
    b = m.branch_stories.c
    rows = conn.execute(select(b.branch, b.story_id, b.status, b.kind, b.content_hash, b.path, b.tip_commit)).all()
    if not rows:
        return []
    merged: set[str] = set()
    if promotion.merged is not None:
        tips = {r.branch: r.tip_commit for r in rows}
        merged = {branch for branch, tip in tips.items() if promotion.merged(tip)}
    main = main_rows(conn, {r.story_id for r in rows if r.branch not in merged})
    dropped: list[tuple[str, str, str | None, str]] = []
    for r in rows:
        if r.branch in merged:
            dropped.append((r.branch, r.story_id, r.status, MERGED))
            continue
        if in_main_line(r.kind, r.content_hash, r.path, main.get(r.story_id)):
            dropped.append((r.branch, r.story_id, r.status, PROMOTED))
    if not dropped:
        return []
    pairs = [(branch, sid) for branch, sid, _, _ in dropped]
    by_branch: dict[str, list[str]] = {}
    for branch, sid in pairs:
        by_branch.setdefault(branch, []).append(sid)
    for branch, ids in by_branch.items():
        if branch in merged:
            conn.execute(m.branch_stories.delete().where(b.branch == branch))
            continue
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            conn.execute(m.branch_stories.delete().where(b.branch == branch, b.story_id.in_(chunk)))
    feed = [(sid, KIND_DROP, branch, status, reason) for branch, sid, status, reason in dropped]
    _feed(conn, feed, run_id, now, promotion.stages)
    return sorted(pairs)


MainRow = tuple[str | None, str | None, bool]  # a stories row's content_hash, path, and whether it is live


def main_rows(conn: Connection, ids: Iterable[str]) -> dict[str, MainRow]:
    """``(content_hash, path, live)`` of the ``stories`` rows with these ids (read, never written)."""
    s = m.stories.c
    wanted = sorted(ids)
    out: dict[str, MainRow] = {}
    for start in range(0, len(wanted), CHUNK):
        query = select(s.id, s.content_hash, s.path, s.deleted_at).where(s.id.in_(wanted[start : start + CHUNK]))
        out.update((r.id, (r.content_hash, r.path, r.deleted_at is None)) for r in conn.execute(query))
    return out


def in_main_line(kind: str, content_hash: str | None, path: str | None, main: MainRow | None) -> bool:
    """Whether the main line has a story as a branch does: live, with the same content at the
    same path (the path is the status); or, for a story the branch deleted, no live row
    (``main``: ``main_rows``' entry, None: no row)."""
    main_hash, main_path, live = main or (None, None, False)
    if kind == "deleted":
        return not live
    return live and main_hash == content_hash and main_path == path


def furthest_statuses(conn: Connection, ids: Iterable[str], stages: Mapping[str, str]) -> dict[str, str | None]:
    """The most progressed status of each story across its live main row and every branch."""
    wanted = sorted(set(ids))
    s, b = m.stories.c, m.branch_stories.c
    main: dict[str, str | None] = {}
    branches: dict[str, list[str | None]] = {}
    for start in range(0, len(wanted), CHUNK):
        chunk = wanted[start : start + CHUNK]
        live = and_(s.id.in_(chunk), s.deleted_at.is_(None))
        main.update((r.id, r.status) for r in conn.execute(select(s.id, s.status).where(live)))
        for r in conn.execute(select(b.story_id, b.status).where(b.story_id.in_(chunk))):
            branches.setdefault(r.story_id, []).append(r.status)
    rank = status_rank(stages)
    return {sid: furthest(main.get(sid), branches.get(sid, ()), rank) for sid in wanted}


def _feed(
    conn: Connection,
    items: Sequence[tuple[str, str, str, str | None, str | None]],
    run_id: int | None,
    now: datetime,
    stages: Mapping[str, str],
) -> None:
    """The ``changes`` rows of overlay writes: (story id, kind, branch, status there, drop reason)."""
    if not items:
        return
    best = furthest_statuses(conn, (sid for sid, *_ in items), stages)
    rows = []
    for sid, kind, branch, status, reason in sorted(items, key=lambda item: (item[2], item[0])):
        detail: dict[str, Any] = {"branch": branch, "status": status, "furthest_status": best[sid]}
        if reason is not None:
            detail["reason"] = reason
        rows.append({"story_id": sid, "kind": kind, "source": SOURCE, "run_id": run_id, "at": now, "detail": detail})
    conn.execute(m.changes.insert(), rows)
