"""Status history from git: one row per stage move, in commit order.

The commits of a range are walked oldest first (``gitplain.log``); a story is
known by the id its file name starts with, so a rename (``git mv``, an edit and a
move, a new slug) and a delete plus an add of the same id in one commit are one
story.  Merge commits list no changes of their own, so a move made on a branch is
counted once, at the branch's commit; a move already recorded (a cherry-pick of
it, a re-run of the same range) is not recorded again.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, select

from storysync.config import Config
from storysync.db import tables as m
from storysync.git.runner import Change, LogCommit
from storysync.story.layout import classify

ID_PREFIX = re.compile(r"^([A-Z][A-Z0-9]*-[0-9]+)(?:-.*)?\.md$", re.DOTALL)
CHUNK = 500


@dataclass(frozen=True)
class Move:
    """A story's status changed (``before`` None: it appeared) in one commit."""

    story_id: str
    before: str | None
    after: str
    sha: str
    author: str
    when: datetime


def id_of(path: str) -> str | None:
    """The story id a file name starts with (``WEB-1-login.md`` → ``WEB-1``)."""
    match = ID_PREFIX.match(path.rsplit("/", 1)[-1])
    return match.group(1) if match else None


def _sides(config: Config, change: Change) -> tuple[tuple[str, str] | None, tuple[str, str] | None]:
    """(id, status) before and after one change, None where it is not a story."""
    before_path = change.old if change.status in "RC" else None if change.status == "A" else change.path
    after_path = None if change.status == "D" else change.path
    if change.status == "C":
        before_path = None  # a copy leaves its source where it was
    return _story(config, before_path), _story(config, after_path)


def _story(config: Config, path: str | None) -> tuple[str, str] | None:
    if path is None:
        return None
    location = classify(config, path)
    story_id = id_of(path)
    return None if location is None or story_id is None else (story_id, location.status)


def commit_effects(config: Config, commit: LogCommit) -> dict[str, str | None]:
    """What one commit did to each story: its status afterwards (None: deleted)."""
    gone: set[str] = set()
    now: dict[str, str] = {}
    for change in commit.changes:
        before, after = _sides(config, change)
        if before is not None:
            gone.add(before[0])
        if after is not None:
            now[after[0]] = after[1]
    effects: dict[str, str | None] = dict.fromkeys(gone - set(now))
    effects.update(now)
    return effects


def moves(
    config: Config,
    commits: Iterable[LogCommit],
    start: Mapping[str, str | None],
) -> list[Move]:
    """The stage moves of ``commits`` (oldest first), given each story's status before them."""
    current = dict(start)
    out: list[Move] = []
    for commit in commits:
        info = commit.info
        for story_id, status in sorted(commit_effects(config, commit).items()):
            before = current.get(story_id)
            current[story_id] = status
            if status is not None and status != before:
                out.append(Move(story_id, before, status, info.sha, info.author, info.when))
    return out


@dataclass(frozen=True)
class Gone:
    """A story the last commit of a range no longer has, and where its last version is."""

    story_id: str
    path: str  # where its file was when it was deleted
    deleted_in: str  # the commit that deleted it (its first parent holds the last version)
    deleted_at: datetime  # that commit's time, as ``Move.when``
    version: str | None  # the last commit that changed the file (None: before the range)
    born: datetime  # when the id first appeared in the range


def gone(config: Config, commits: Iterable[LogCommit]) -> list[Gone]:
    """The stories ``commits`` (oldest first, the whole history) leave deleted, by id."""
    changed: dict[str, str] = {}
    born: dict[str, datetime] = {}
    out: dict[str, Gone] = {}
    for commit in commits:
        info = commit.info
        before_paths: dict[str, str] = {}
        for change in commit.changes:
            before, _ = _sides(config, change)
            if before is not None:
                before_paths.setdefault(before[0], change.old if change.old is not None else change.path)
        for story_id, status in commit_effects(config, commit).items():
            born.setdefault(story_id, info.when)
            if status is not None:
                changed[story_id] = info.sha
                out.pop(story_id, None)
                continue
            version = changed.pop(story_id, None)
            out[story_id] = Gone(story_id, before_paths[story_id], info.sha, info.when, version, born[story_id])
    return [out[sid] for sid in sorted(out)]


def touched_ids(config: Config, commits: Iterable[LogCommit]) -> set[str]:
    """Every story id the commits changed."""
    return {sid for c in commits for sid in commit_effects(config, c)}


def already_recorded(conn: Connection, ids: Collection[str]) -> set[tuple[str, str | None, str]]:
    """(story, commit, to_status) of the file-side history rows the database has."""
    h = m.status_history.c
    out: set[tuple[str, str | None, str]] = set()
    for chunk in _chunks(sorted(ids)):
        query = select(h.story_id, h.commit, h.to_status).where(h.story_id.in_(chunk), h.source == "file")
        out.update((r.story_id, r.commit, r.to_status) for r in conn.execute(query))
    return out


def db_side_moves(conn: Connection, ids: Collection[str]) -> dict[str, list[tuple[str | None, str, datetime]]]:
    """The DB-side status changes (source ``db``) of ``ids``, oldest first."""
    h = m.status_history.c
    out: dict[str, list[tuple[str | None, str, datetime]]] = {}
    for chunk in _chunks(sorted(ids)):
        query = (
            select(h.story_id, h.from_status, h.to_status, h.changed_at)
            .where(h.story_id.in_(chunk), h.source == "db")
            .order_by(h.changed_at, h.id)
        )
        for r in conn.execute(query):
            out.setdefault(r.story_id, []).append((r.from_status, r.to_status, r.changed_at))
    return out


def without_exported(found: list[Move], db_moves: dict[str, list[tuple[str | None, str, datetime]]]) -> list[Move]:
    """Drop the moves that are an export's commit of a DB-side change already recorded."""
    pending = {sid: list(rows) for sid, rows in db_moves.items()}
    out = []
    for move in found:
        rows = pending.get(move.story_id, [])
        match = next((r for r in rows if r[1] == move.after and _not_after(r[2], move.when)), None)
        if match is not None:
            rows.remove(match)
            continue
        out.append(move)
    return out


def _not_after(db_when: datetime, commit_when: datetime) -> bool:
    if db_when.tzinfo is None:  # SQLite hands back naive UTC
        commit_when = commit_when.replace(tzinfo=None)
    return db_when <= commit_when


def clear_file_history(conn: Connection) -> None:
    """Remove every file-side history row (before rebuilding them from the log)."""
    conn.execute(delete(m.status_history).where(m.status_history.c.source == "file"))


def existing_ids(conn: Connection, ids: Collection[str]) -> set[str]:
    """The ids among ``ids`` that have a ``stories`` row (live or deleted)."""
    out: set[str] = set()
    for chunk in _chunks(sorted(ids)):
        out.update(conn.execute(select(m.stories.c.id).where(m.stories.c.id.in_(chunk))).scalars())
    return out


def history_rows(found: Iterable[Move]) -> list[dict[str, Any]]:
    """``status_history`` insert parameters for ``found``."""
    return [
        {
            "story_id": mv.story_id,
            "from_status": mv.before,
            "to_status": mv.after,
            "changed_at": mv.when,
            "commit": mv.sha,
            "author": mv.author,
            "source": "file",
        }
        for mv in found
    ]


def _chunks(items: list[str]) -> Iterable[list[str]]:
    for i in range(0, len(items), CHUNK):
        yield items[i : i + CHUNK]
