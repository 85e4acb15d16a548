"""One transaction: write a sync's plan (upserts, moves, soft deletes, dependencies, history,
the change feed, the audit row and the last synced commit), or only the audit row of a run
that was invalid or failed (SPEC §6).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, bindparam, select

from storysync.check.validate import Checked
from storysync.db import tables as m
from storysync.db import worktree
from storysync.db.conflicts import conflict_row, db_snapshots
from storysync.db.database import LAST_SYNCED, Database, set_state, utcnow
from storysync.errors import Diagnostic, StorysyncError, utf8_safe
from storysync.ingest.bulk import BulkWriter, Row
from storysync.ingest.merging import SyncMerge, bases, merge_story, write_merges
from storysync.ingest.overlay import Promotion, promote
from storysync.ingest.plan import describe, moved, written_paths
from storysync.ingest.types import DbRow, HistoryWriter, Plan, Planner, Provenance, SyncOptions, SyncResult
from storysync.log import get_logger, redact
from storysync.story.merge import body_sha
from storysync.story.model import Record

if TYPE_CHECKING:
    from storysync.check.validate import Bodies


MAX_RECORDED_ERRORS = 1000


WRITE_BATCH = 2000  # rows per executemany, all in the one transaction


def apply(
    conn: Connection,
    plan: Plan,
    provenance: Provenance,
    options: SyncOptions,
    result: SyncResult,
    *,
    advance: bool,
    history: dict[str, list[tuple[str | None, str, Provenance]]] | None = None,
    bodies: Bodies | None = None,
) -> int:
    """Write ``plan`` on ``conn`` (inside the caller's transaction); the run's id.

    ``history`` gives, per story id, the stage moves a git range made (from, to,
    commit); without them a move is recorded once, with ``provenance``'s commit and
    author, at the commit's time for a new story and at the sync's for a stored one.
    ``bodies`` reads back the bodies a compacted check dropped, one write batch at a
    time; the history and changes rows are written batch by batch too.
    """
    now = utcnow()
    run_id = insert_run(conn, options, result, now)
    ensure_backlogs(conn, plan, now)
    bulk = BulkWriter(conn)
    feed = _Feed(bulk, run_id, bulk.stamp(now))
    writing = _Writing(bulk, provenance, now, feed, history, bodies, options.merge)
    _apply_deletes(bulk, plan.deletes, now, feed.changes)
    _apply_updates(writing, plan)
    _apply_creates(writing, plan)
    feed.flush()
    _write_dependencies(bulk, plan)
    write_merges(conn, writing.merges, run_id, now)
    merged = {done.story_id for done in writing.merges if not done.result.conflicts}
    result.conflicts = [story_id for story_id in result.conflicts if story_id not in merged]  # merged, not kept
    if advance and provenance.sha:
        set_state(conn, LAST_SYNCED, provenance.sha)
    finish_run(conn, run_id, result)
    return run_id


def finish_run(conn: Connection, run_id: int, result: SyncResult) -> None:
    """Close a run's ``sync_runs`` row: its counts, its outcome and the problems it met."""
    conn.execute(
        m.sync_runs.update()
        .where(m.sync_runs.c.id == run_id)
        .values(
            finished_at=utcnow(),
            upserted=result.upserted,
            deleted=len(result.deleted),
            outcome="invalid" if result.diagnostics else "ok",
            errors=_errors_json(result.diagnostics),
        )
    )


def insert_run(conn: Connection, options: SyncOptions, result: SyncResult, now: datetime) -> int:
    inserted = conn.execute(
        m.sync_runs.insert().values(
            trigger=options.trigger,
            from_commit=result.from_commit,
            to_commit=result.to_commit,
            started_at=now,
            outcome="ok",
            files_changed=result.files,
            upserted=0,
            deleted=0,
            errors=[],
        )
    )
    key = inserted.inserted_primary_key
    assert key is not None
    return int(key[0])


def record_invalid(db: Database, options: SyncOptions, result: SyncResult) -> int:
    """The audit row of a run that wrote nothing because input was invalid."""
    now = utcnow()
    with db.write() as conn:
        run_id = insert_run(conn, options, result, now)
        conn.execute(
            m.sync_runs.update()
            .where(m.sync_runs.c.id == run_id)
            .values(finished_at=now, outcome="invalid", errors=_errors_json(result.diagnostics))
        )
    return run_id


def record_failure(db: Database, options: SyncOptions, result: SyncResult, exc: Exception) -> None:
    """The audit row of a run that failed after it started (outcome ``failed``, the error in
    ``errors``), in a transaction of its own: the run's own was rolled back.  Best effort: when
    the database itself is the problem nothing can be recorded, and the error is still raised."""
    message = str(exc) if isinstance(exc, StorysyncError) else f"internal error: {type(exc).__name__}: {exc}"
    error = {"code": type(exc).__name__, "message": utf8_safe(redact(message))}
    try:
        with db.write() as conn:
            run_id = insert_run(conn, options, result, utcnow())
            conn.execute(
                m.sync_runs.update()
                .where(m.sync_runs.c.id == run_id)
                .values(finished_at=utcnow(), outcome="failed", errors=[error])
            )
    except Exception as failure:  # the original failure is what the user must see
        get_logger().debug("could not record the failed run: %s", failure)


def _errors_json(diags: list[Diagnostic]) -> list[dict[str, object]]:
    return [d.as_dict() for d in diags[:MAX_RECORDED_ERRORS]]


def ensure_backlogs(conn: Connection, plan: Plan, now: datetime) -> None:
    wanted = {s.backlog for s in plan.creates}
    wanted |= {s.backlog for s, _ in plan.updates + plan.revives}
    if not wanted:
        return
    existing = set(conn.execute(select(m.backlogs.c.id)).scalars())
    missing = sorted(wanted - existing)
    if missing:
        conn.execute(m.backlogs.insert(), [{"id": b, "created_at": now} for b in missing])


# The stories columns a write sets, in the table's order: the file's, then the sync's.
FILE_KEYS = (
    "backlog_id",
    "status",
    "title",
    "priority",
    "points",
    "epic",
    "assignee",
    "tags",
    "extra",
    "body",
    "path",
    "content_hash",
    "revision",
    "synced_revision",
    "synced_commit",
    "base",
)


CREATE_KEYS = ("id", *FILE_KEYS, "created_at", "updated_at", "deleted_at")


UPDATE_KEYS = (*FILE_KEYS, "updated_at", "deleted_at", "b_id")


DELETE_KEYS = ("revision", "synced_revision", "updated_at", "deleted_at", "b_id")


HISTORY_KEYS = ("story_id", "from_status", "to_status", "changed_at", "commit", "author", "source")


CHANGE_KEYS = ("story_id", "kind", "source", "run_id", "at")


DEPENDENCY_KEYS = ("story_id", "depends_on_id")


INSERT_STORY = m.stories.insert()


_UPDATE_STORY = m.stories.update().where(m.stories.c.id == bindparam("b_id"))


_INSERT_HISTORY = m.status_history.insert()


_INSERT_CHANGE = m.changes.insert()


_INSERT_DEPENDENCY = m.dependencies.insert()


def file_values(bulk: BulkWriter, story: Record, revision: int, commit: str | None) -> Row:
    """The ``FILE_KEYS`` values of ``story``'s row at ``revision``, synced from ``commit``."""
    title, priority, points, epic, assignee, tags, extra = story.columns
    body = story.body
    assert body is not None, f"{story.path}: body not loaded"  # Bodies.load runs before each batch
    return (
        story.backlog,
        story.status,
        title,
        priority,
        points,
        epic,
        assignee,
        bulk.json(tags),
        bulk.json(extra),
        body,
        story.path,
        story.content_hash,
        revision,
        revision,
        commit,
        bulk.json(base_text(story, tags, extra, body)),
    )


def base_text(story: Record, tags: str, extra: str, body: str) -> str:
    """``stories.base`` of a row synced from ``story`` (``merge.base_of``) as JSON text,
    built from the JSON the record already holds (a full sync writes one per story)."""
    title, priority, points, epic, assignee = story.columns[:5]
    head = json.dumps(
        {"title": title, "status": story.status, "priority": priority, "points": points, "epic": epic}
        | {"assignee": assignee, "backlog_id": story.backlog}
    )
    deps = json.dumps(sorted(set(story.deps)))
    return f'{head[:-1]}, "tags": {tags}, "extra": {extra}, "depends_on": {deps}, "body_sha": "{body_sha(body)}"}}'


def _apply_deletes(bulk: BulkWriter, rows: list[DbRow], now: datetime, changes: list[tuple[str, str]]) -> None:
    if not rows:
        return
    conn = bulk.conn
    _record_conflicts(conn, [(None, r) for r in rows if r.revision > r.synced_revision], now)  # deletion wins
    stamp = bulk.stamp(now)
    bulk.run(_UPDATE_STORY, DELETE_KEYS, [(r.revision + 1, r.revision + 1, stamp, stamp, r.id) for r in rows])
    for chunk in _chunks([r.id for r in rows], 500):
        conn.execute(m.dependencies.delete().where(m.dependencies.c.story_id.in_(chunk)))
    changes.extend((r.id, "deleted") for r in rows)


@dataclass
class _Feed:
    """The run's changes and status-history rows not written yet (written a batch at a time)."""

    bulk: BulkWriter
    run_id: int
    at: Any  # the run's time, as a parameter
    changes: list[tuple[str, str]] = field(default_factory=list)  # (story id, kind)
    hist: list[Row] = field(default_factory=list)

    def flush(self) -> None:
        """Insert what has gathered (after the story rows it refers to)."""
        if self.hist:
            self.bulk.run(_INSERT_HISTORY, HISTORY_KEYS, self.hist)
            self.hist = []
        if self.changes:
            run_id, at = self.run_id, self.at
            rows = [(story_id, kind, "file", run_id, at) for story_id, kind in self.changes]
            self.bulk.run(_INSERT_CHANGE, CHANGE_KEYS, rows)
            self.changes = []


@dataclass(frozen=True)
class _Writing:
    """What the story writes of one ``apply`` share."""

    bulk: BulkWriter
    provenance: Provenance
    now: datetime
    feed: _Feed
    history: dict[str, list[tuple[str | None, str, Provenance]]] | None
    bodies: Bodies | None
    merge: str = "fields"  # SyncOptions.merge
    merges: list[SyncMerge] = field(default_factory=list)  # stories changed on both sides, merged

    def batches(self, stories: list[Record]) -> Iterable[tuple[int, int]]:
        """``(start, end)`` of each write batch, with those stories' bodies loaded meanwhile."""
        for start in range(0, len(stories), WRITE_BATCH):
            batch = stories[start : start + WRITE_BATCH]
            if self.bodies is not None:
                self.bodies.load(batch)
            yield start, start + len(batch)
            if self.bodies is not None:
                self.bodies.unload(batch)
            self.feed.flush()


def _apply_updates(w: _Writing, plan: Plan) -> None:
    conn = w.bulk.conn
    # the story API may have written since the rows were read
    pairs = _fresh_revisions(conn, plan.updates) + _fresh_revisions(conn, plan.revives)
    if not pairs:
        return
    pending = [(s, r) for s, r in pairs if r.revision > r.synced_revision]
    # a pending DB-side change the file overrides: merged over its base where one is known
    # ("fields"); else, and for a revive (the database deleted it), the file wins and the
    # database's version is kept as a conflict record, as export keeps it
    mergeable = [r.id for _, r in pending if not r.deleted]
    known = bases(conn, mergeable) if mergeable and w.merge == "fields" else {}
    _keep_conflicts(conn, [(s, r) for s, r in pending if r.id not in known], w.now)
    snapshots = db_snapshots(conn, list(known)) if known else {}
    moving = [(None, r.id) for s, r in pairs if r.path != s.path]
    w.bulk.run(_UPDATE_STORY, ("path", "b_id"), moving)  # free the old paths first: two stories may swap places
    stamp, sha = w.bulk.stamp(w.now), w.provenance.sha
    # A move of a stored story that no walked commit accounts for (a reset to an older
    # commit, a full reconcile, files back at HEAD after a working-tree sync) happened,
    # as far as the database can tell, now: dated at the sync, it follows the story's
    # earlier history rows instead of going back to the commit's older time.
    seen_now = replace(w.provenance, when=w.now)
    for start, end in w.batches([s for s, _ in pairs]):
        params = []
        for story, row in pairs[start:end]:
            params.append((*file_values(w.bulk, story, row.revision + 1, sha), stamp, None, row.id))
            revived = row.deleted
            kind = "created" if revived else "moved" if moved(story, row) else "updated"
            w.feed.changes.append((row.id, kind))
            merged = merge_story(story, snapshots[row.id], known[row.id]) if row.id in snapshots else None
            if merged is not None:
                w.merges.append(merged)
            if revived:
                w.feed.hist.extend(_history_rows(w.bulk, story, None, seen_now, w.history))
            elif merged is not None and merged.status == row.status:
                pass  # the database's status stands (its change is in the history already)
            elif story.status != row.status:
                w.feed.hist.extend(_history_rows(w.bulk, story, row.status, seen_now, w.history))
        w.bulk.run(_UPDATE_STORY, UPDATE_KEYS, params)


def _fresh_revisions(conn: Connection, pairs: list[tuple[Record, DbRow]]) -> list[tuple[Record, DbRow]]:
    """``pairs`` with each row's revisions as they are inside this (the writer's) transaction."""
    if not pairs:
        return pairs
    s = m.stories.c
    fresh: dict[str, tuple[int, int]] = {}
    for chunk in _chunks([r.id for _, r in pairs], 500):
        query = select(s.id, s.revision, s.synced_revision).where(s.id.in_(chunk))
        fresh.update({sid: (rev, synced) for sid, rev, synced in conn.execute(query)})
    return [
        (story, replace(row, revision=fresh[row.id][0], synced_revision=fresh[row.id][1]) if row.id in fresh else row)
        for story, row in pairs
    ]


def _apply_creates(w: _Writing, plan: Plan) -> None:
    creates, bulk, feed = plan.creates, w.bulk, w.feed
    stamp, sha = bulk.stamp(w.now), w.provenance.sha
    for start, end in w.batches(creates):
        rows = []
        for story in creates[start:end]:
            rows.append((story.id, *file_values(bulk, story, 1, sha), stamp, stamp, None))
            feed.changes.append((story.id, "created"))
            feed.hist.extend(_history_rows(bulk, story, None, w.provenance, w.history))
        bulk.run(INSERT_STORY, CREATE_KEYS, rows)


def _history_rows(
    bulk: BulkWriter,
    story: Record,
    old_status: str | None,
    provenance: Provenance,
    history: dict[str, list[tuple[str | None, str, Provenance]]] | None,
) -> list[Row]:
    moves = (history.get(story.id) if history else None) or [(old_status, story.status, provenance)]
    return [(story.id, frm, to, bulk.stamp(p.when), p.sha, p.author, "file") for frm, to, p in moves]


def _keep_conflicts(conn: Connection, pairs: list[tuple[Record, DbRow]], now: datetime) -> None:
    """The file wins; the DB side's unsynced version is kept as a conflict record."""
    _record_conflicts(conn, [(s.content_hash, r) for s, r in pairs], now)


def _record_conflicts(conn: Connection, pairs: list[tuple[str | None, DbRow]], now: datetime) -> None:
    """A conflict record per row, with the file's hash (None: the file was deleted)."""
    if not pairs:
        return
    snapshots = db_snapshots(conn, [r.id for _, r in pairs])
    rows = [conflict_row(r.id, now, file_hash, snapshots.get(r.id)) for file_hash, r in pairs]
    conn.execute(m.conflicts.insert(), rows)


def _write_dependencies(bulk: BulkWriter, plan: Plan) -> None:
    stories = plan.creates + [s for s, _ in plan.updates + plan.revives]
    if not stories:
        return
    ids = [s.id for s, _ in plan.updates + plan.revives]
    for chunk in _chunks(ids, 500):
        bulk.conn.execute(m.dependencies.delete().where(m.dependencies.c.story_id.in_(chunk)))
    rows = [(s.id, d) for s in stories for d in dict.fromkeys(s.deps)]
    bulk.run(_INSERT_DEPENDENCY, DEPENDENCY_KEYS, rows)


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def finish(
    db: Database,
    checked: Checked,
    planner: Planner,
    provenance: Provenance,
    options: SyncOptions,
    result: SyncResult,
    moves: HistoryWriter | None = None,
    resynced: Collection[str] = (),
    promotion: Promotion | None = None,
) -> SyncResult:
    """Record an invalid run, or plan and write in one transaction (SPEC §6 rules).

    The one ending of every sync (full, a git range, given paths): invalid input
    without ``keep_going`` writes only the audit row; a dry run describes the
    plan; otherwise the plan is made inside the writer's transaction, from the
    rows as they are once no other writer can change them, and applied there
    (bodies a compacted check dropped are read back batch by batch).  The same
    transaction records the paths a working-tree run wrote, or forgets those of
    ``resynced`` (paths recorded so, read again from a commit) that were valid, and drops
    the branch overlay rows the run promoted (``promotion``: ``overlay.promote``; a branch
    counts as merged only when the run reflects its commit whole, no file left out).
    """
    result.files = checked.files
    result.diagnostics = checked.diagnostics
    if checked.diagnostics and not options.keep_going:
        result.outcome = "invalid"
        if not options.dry_run:
            result.run_id = record_invalid(db, options, result)
        return result
    if options.dry_run:
        with db.read() as conn:
            describe(planner(conn), result)
        return result
    advance = not checked.diagnostics and provenance.sha is not None
    with db.write() as conn:
        plan = planner(conn)
        describe(plan, result)
        history_moves = moves.for_plan(conn, plan, checked) if moves is not None else None
        if moves is not None:
            moves.before(conn)
        result.run_id = apply(
            conn, plan, provenance, options, result, advance=advance, history=history_moves, bodies=checked.bodies
        )
        if moves is not None:
            moves.after(conn)
        healed = set(resynced) - checked.invalid_paths
        result.worktree_written = sorted(
            worktree.record(conn, written_paths(plan) if provenance.sha is None else None, healed)
        )
        if promotion is not None:
            whole = promotion if advance else replace(promotion, merged=None)
            result.promoted = promote(conn, result.run_id, utcnow(), whole)
            if result.promoted:
                names = ", ".join(sorted({branch for branch, _ in result.promoted}))
                count = len(result.promoted)
                what = "1 story" if count == 1 else f"{count} stories"
                result.notices.append(f"branch overlay: {what} now in the main line, dropped from {names}")
    if checked.diagnostics:
        result.outcome = "invalid"
    return result
