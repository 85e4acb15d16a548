"""Status history from git: one row per stage move, in commit order.

The commits of a range are walked oldest first (``runner.log``); a story is
known by the id its file name starts with, so a rename (``git mv``, an edit and a
move, a new slug) and a delete plus an add of the same id in one commit are one
story.  Merge commits list no changes of their own, so a move made on a branch is
counted once, at the branch's commit; a move already recorded (a cherry-pick of
it, a re-run of the same range) is not recorded again.

A history rebuild (``sync --full --history``) also brings back the stories deleted on the way
(``HistoryPlan``, ``last_versions``)."""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, delete, select

from storysync.check.sources import Entry, GitTreeSource
from storysync.check.validate import Checked, check_data, checker_for, to_record
from storysync.config import Config
from storysync.db import tables as m
from storysync.db.database import utcnow
from storysync.git import runner
from storysync.git.runner import Change, LogCommit
from storysync.ingest.apply import CREATE_KEYS, INSERT_STORY, ensure_backlogs, file_values
from storysync.ingest.bulk import BulkWriter
from storysync.ingest.types import MovesById, Plan, Provenance
from storysync.story.layout import classify
from storysync.story.model import Record

if TYPE_CHECKING:
    from storysync.git.runner import GitRepo


class HistoryPlan:
    """The stage moves a range's commits made, split between what ``apply`` records
    (stories whose row it creates or moves) and the rest (recorded by ``after``)."""

    def __init__(self, config: Config, repo: GitRepo, walk: tuple[bool, str | None], to: str, *, rebuild: bool) -> None:

        self.config = config
        self.rebuild = rebuild
        self.commits = runner.log(repo, walk[1], to, config.root) if walk[0] else []
        self.rest: list[Move] = []
        self.notices: list[str] = []
        self.deleted = last_versions(config, repo, to, self.commits, self.notices) if rebuild else []

    def for_plan(self, conn: Connection, plan: Plan, checked: Checked) -> MovesById:
        """The moves ``apply`` should record for the stories ``plan`` creates or moves."""
        ids = touched_ids(self.config, self.commits)
        if not ids:
            return {}
        skip = {id_of(p) for p in checked.invalid_paths}
        found = self._moves(conn, ids)
        consumed = {s.id for s in plan.creates} | {s.id for s, _ in plan.revives}
        consumed |= {s.id for s, r in plan.updates if s.location.status != r.status}
        out: MovesById = {}
        for mv in found:
            if mv.story_id in skip:
                continue
            if mv.story_id in consumed:
                out.setdefault(mv.story_id, []).append((mv.before, mv.after, Provenance(mv.sha, mv.author, mv.when)))
            else:
                self.rest.append(mv)
        return out

    def _moves(self, conn: Connection, ids: set[str]) -> list[Move]:
        if self.rebuild:
            found = moves(self.config, self.commits, {})
            return without_exported(found, db_side_moves(conn, ids))
        s = m.stories.c
        start: dict[str, str | None] = {}
        for chunk in _chunks(sorted(ids)):
            query = select(s.id, s.status).where(s.id.in_(chunk), s.deleted_at.is_(None))
            start.update((r.id, r.status) for r in conn.execute(query))
        seen = already_recorded(conn, ids)
        found = moves(self.config, self.commits, start)
        return [mv for mv in found if (mv.story_id, mv.sha, mv.after) not in seen]

    def before(self, conn: Connection) -> None:
        """In the run's transaction, before ``apply``: clear the history being rebuilt."""
        if self.rebuild:
            clear_file_history(conn)

    def after(self, conn: Connection) -> None:
        """In the run's transaction, after ``apply``: the rows of the stories deleted before
        the rebuilt commit that the database lacks, then the moves of stories ``apply`` did not move."""
        have = existing_ids(conn, {gone.story_id for gone, _ in self.deleted})
        insert_deleted(conn, [(record, gone) for gone, record in self.deleted if gone.story_id not in have])
        existing = existing_ids(conn, {mv.story_id for mv in self.rest})
        rows = history_rows(mv for mv in self.rest if mv.story_id in existing)
        if rows:
            conn.execute(m.status_history.insert(), rows)


def last_versions(
    config: Config, repo: GitRepo, to: str, commits: list[runner.LogCommit], notices: list[str]
) -> list[tuple[Gone, Record]]:
    """The stories ``commits`` (the whole history up to ``to``) leave deleted, each as its
    last version was (its file at the deleting commit's parent), checked on its own.

    A last version that does not read as a valid story of that id is left out, with a notice.
    """
    found: list[tuple[Gone, Entry]] = []
    by_parent: dict[str, list[Gone]] = {}
    for gone in gone_stories(config, commits):
        by_parent.setdefault(f"{gone.deleted_in}^", []).append(gone)
    for parent, group in by_parent.items():
        tree = {item.path: item for item in runner.tree_entries(repo, parent, [g.path for g in group])}
        for gone in group:
            item, location = tree.get(gone.path), classify(config, gone.path)
            if item is None or location is None or item.mode == runner.SUBMODULE_MODE:
                notices.append(_left_out(gone, "not a file"))
                continue
            found.append((gone, Entry(location, item.sha, item.size, item.mode == runner.SYMLINK_MODE)))
    checker = checker_for(config)
    out: list[tuple[Gone, Record]] = []
    read = GitTreeSource(repo, config, to).read_many([entry for _, entry in found])
    for (gone, _), (entry, data) in zip(found, read, strict=True):
        story, problems = check_data(entry, data, checker)
        if problems or story is None:
            notices.append(_left_out(gone, problems[0].message if problems else "unreadable"))
        elif story.id != gone.story_id:
            notices.append(_left_out(gone, f"its id is {story.id!r}"))
        else:
            out.append((gone, to_record(story)))
    return out


def _left_out(gone: Gone, why: str) -> str:
    return (
        f"{gone.path}: the last version of {gone.story_id} (deleted in {gone.deleted_in[:12]}) is not a valid "
        f"story ({why}); a rebuild into a database without its row leaves it out, with its status history"
    )


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


def gone_stories(config: Config, commits: Iterable[LogCommit]) -> list[Gone]:
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


def insert_deleted(conn: Connection, stories: list[tuple[Record, Gone]]) -> None:
    """Rows for stories deleted before the commit a history rebuild reads, as syncing every
    commit leaves them: soft-deleted at the deleting commit's time (a sync run right after
    it, as a hook runs, would stamp that), created when the id first appeared, holding the
    last version's content and commit, and no dependencies (a deletion removes them)."""
    if not stories:
        return
    ensure_backlogs(conn, Plan(creates=[record for record, _ in stories]), utcnow())
    bulk = BulkWriter(conn)
    rows = []
    for record, gone in stories:
        # revision 2, all synced: as a row one sync created and a later one deleted
        values = file_values(bulk, record, 2, gone.version)
        deleted_at = bulk.stamp(gone.deleted_at)
        rows.append((record.id, *values, bulk.stamp(gone.born), deleted_at, deleted_at))
    bulk.run(INSERT_STORY, CREATE_KEYS, rows)
