"""files → DB: plan what a set of changed story files means for the database, then
apply the plan in one transaction.

``sync()`` is the library entry point the CLI, the hooks and watch call.  A git
run is incremental (``storysync.ingest.incremental``: the paths a two-point diff names,
or every file of the commit when no last synced commit can be trusted); a
working-tree run reads the given paths (watch) or every story file on disk.  The
plan and apply steps here take any set of changed paths.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, bindparam, select

from storysync.check.rules import KnownRows
from storysync.check.sources import Source, WorkTreeSource
from storysync.config import Config
from storysync.db import tables as m
from storysync.db import worktree
from storysync.db.conflicts import db_snapshots
from storysync.db.database import LAST_SYNCED, Database, get_state, set_state, utcnow
from storysync.db.locks import writer_lock
from storysync.errors import EXIT_RUNTIME, DatabaseError, Diagnostic, StorysyncError, utf8_safe
from storysync.ingest.bulk import BulkWriter, Row
from storysync.story.model import Record

if TYPE_CHECKING:
    import git

    from storysync.check.validate import Bodies
    from storysync.git.runner import CommitInfo, GitRepo
    from storysync.ingest.history import Gone

TRIGGERS = ("manual", "hook", "ci", "watch")
MAX_RECORDED_ERRORS = 1000
WRITE_BATCH = 2000  # rows per executemany, all in the one transaction


@dataclass(frozen=True)
class SyncOptions:
    """What a sync run should do (the ``storysync sync`` flags)."""

    from_rev: str | None = None
    to_rev: str | None = None
    full: bool = False
    working_tree: bool = False
    keep_going: bool = False
    dry_run: bool = False
    trigger: str = "manual"
    # With ``working_tree``: sync only these repository-relative paths (watch's
    # batches); a path gone from disk soft-deletes the row stored at that path.
    paths: tuple[str, ...] | None = None
    # With ``full``: rebuild the file-side status history from the whole git log.
    history: bool = False


@dataclass
class SyncResult:
    """What a run did, for the report and the exit code."""

    outcome: str = "ok"  # ok | invalid | failed
    run_id: int | None = None
    from_commit: str | None = None
    to_commit: str | None = None
    full: bool = False
    dry_run: bool = False
    files: int = 0
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    moved: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    unchanged: int = 0
    diagnostics: list[Diagnostic] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    # The story paths a working-tree run wrote, recorded as such (``storysync.worktree``).
    worktree_written: list[str] = field(default_factory=list)

    @property
    def upserted(self) -> int:
        return len(self.created) + len(self.updated)

    @property
    def exit_code(self) -> int:
        return 1 if self.diagnostics else 0


@dataclass(frozen=True)
class DbRow:
    """What the planner needs to know about an existing ``stories`` row."""

    id: str
    path: str | None
    content_hash: str | None
    status: str
    backlog_id: str
    revision: int
    synced_revision: int
    deleted: bool


@dataclass
class Plan:
    """The writes one run will make."""

    creates: list[Record] = field(default_factory=list)
    revives: list[tuple[Record, DbRow]] = field(default_factory=list)
    updates: list[tuple[Record, DbRow]] = field(default_factory=list)
    deletes: list[DbRow] = field(default_factory=list)
    unchanged: int = 0


@dataclass(frozen=True)
class Provenance:
    """The commit a run's content comes from (None for the working tree)."""

    sha: str | None
    author: str | None
    when: datetime


def sync(
    config: Config,
    db: Database,
    repo: GitRepo | git.Repo,
    options: SyncOptions | None = None,
    progress: Callable[[int], None] | None = None,
) -> SyncResult:
    """Bring the database in step with the story files (SPEC §6).

    ``repo`` is a plain ``gitplain.GitRepo`` (no GitPython import, as the CLI passes)
    or a GitPython ``git.Repo``; git is asked through plain processes either way.
    """
    from storysync.git.runner import as_plain

    plain = as_plain(repo)
    options = options or SyncOptions()
    started = time.perf_counter()
    db.ensure_schema()
    if options.dry_run:
        return _sync_locked(config, db, plain, options, progress)
    with writer_lock(plain.common_dir), db.run_lock():
        result = _sync_locked(config, db, plain, options, progress)
    # After the commit, outside the lock: the run's log event and its webhook batch (SPEC §10).
    # Bounded in time and never raises: a notification never blocks or fails a sync.
    from storysync.ingest.runlog import after_sync

    after_sync(config, db, result, time.perf_counter() - started)
    return result


def _sync_locked(
    config: Config,
    db: Database,
    repo: GitRepo,
    options: SyncOptions,
    progress: Callable[[int], None] | None,
) -> SyncResult:
    with db.read() as conn:
        last = get_state(conn, LAST_SYNCED)
        marked = set() if options.working_tree else worktree.read(conn)
    result = SyncResult(dry_run=options.dry_run, full=True, from_commit=last)
    try:
        return _run(config, db, repo, options, result, progress, marked)
    except Exception as exc:
        if not options.dry_run and _recordable(exc):
            record_failure(db, options, result, exc)
        raise


def _recordable(exc: Exception) -> bool:
    """Whether ``exc`` failed the run (git, the database refusing a write, an internal error)
    and the database can still take its audit row (not unreachable, not locked)."""
    if isinstance(exc, DatabaseError) and exc.unavailable:
        return False  # trying would fail, or wait out the lock timeout a second time
    return not isinstance(exc, StorysyncError) or exc.exit_code == EXIT_RUNTIME


def _run(
    config: Config,
    db: Database,
    repo: GitRepo,
    options: SyncOptions,
    result: SyncResult,
    progress: Callable[[int], None] | None,
    marked: set[str],
) -> SyncResult:
    if options.working_tree:
        source: Source = WorkTreeSource(config)
        provenance = Provenance(None, None, utcnow())
        result.to_commit = None
        if options.paths is not None:
            from storysync.ingest.incremental import run_paths

            return run_paths(config, db, source, provenance, options, result, progress)
    else:
        from storysync.ingest.incremental import run_git

        return run_git(config, db, repo, options, result, progress, marked)
    return run_full(config, db, source, provenance, options, result, progress)


def _provenance(info: CommitInfo) -> Provenance:
    return Provenance(info.sha, info.author, info.when)


def run_full(
    config: Config,
    db: Database,
    source: Source,
    provenance: Provenance,
    options: SyncOptions,
    result: SyncResult,
    progress: Callable[[int], None] | None = None,
) -> SyncResult:
    """Sync every story file of ``source``; rows whose file is gone are soft-deleted."""
    from storysync.ingest.incremental import check_tree, finish

    checked, planner = check_tree(config, source, progress)
    return finish(db, checked, planner, provenance, options, result)


def load_rows(conn: Connection) -> dict[str, DbRow]:
    """Every story row (live and soft-deleted), by id."""
    s = m.stories.c
    query = select(s.id, s.path, s.content_hash, s.status, s.backlog_id, s.revision, s.synced_revision, s.deleted_at)
    return {
        r.id: DbRow(
            r.id,
            r.path,
            r.content_hash,
            r.status,
            r.backlog_id,
            r.revision,
            r.synced_revision,
            r.deleted_at is not None,
        )
        for r in conn.execute(query)
    }


def known_from_rows(conn: Connection, rows: dict[str, DbRow]) -> KnownRows:
    """The database's live stories as ``Known`` for cross-file checks."""
    deps: dict[str, list[str]] = {}
    for story_id, dep in conn.execute(select(m.dependencies.c.story_id, m.dependencies.c.depends_on_id)):
        deps.setdefault(story_id, []).append(dep)
    return KnownRows({r.id: (r.path or "", deps.get(r.id, [])) for r in rows.values() if not r.deleted})


def make_plan(
    stories: Iterable[Record],
    rows: dict[str, DbRow],
    *,
    skip_paths: set[str] = frozenset(),  # type: ignore[assignment]
    skip_ids: set[str] = frozenset(),  # type: ignore[assignment]
    deleted_paths: set[str] | None = None,
) -> Plan:
    """Compare stories with rows.  ``deleted_paths`` None means: the stories are the
    whole tree, so every live row not among them is deleted."""
    plan = Plan()
    seen: set[str] = set()
    for story in stories:
        seen.add(story.id)
        row = rows.get(story.id)
        if row is None:
            plan.creates.append(story)
        elif row.deleted and _unchanged_since_db_delete(story, row):
            plan.unchanged += 1  # deleted DB-side, file untouched: export removes it
        elif row.deleted:
            plan.revives.append((story, row))
        elif row.content_hash != story.content_hash or row.path != story.path:
            plan.updates.append((story, row))
        else:
            plan.unchanged += 1
    for row in rows.values():
        if row.deleted or row.id in seen or row.id in skip_ids or row.path in skip_paths:
            continue
        if row.path is None:  # created DB-side and not exported yet: there is no file to miss
            continue
        if deleted_paths is None or row.path in deleted_paths:
            plan.deletes.append(row)
    return plan


def _unchanged_since_db_delete(story: Record, row: DbRow) -> bool:
    """A row deleted DB-side (not exported yet) whose file is as last synced."""
    pending = row.revision > row.synced_revision
    return pending and row.content_hash == story.content_hash and row.path == story.path


def _describe(plan: Plan, result: SyncResult) -> None:
    result.created = sorted([s.id for s in plan.creates] + [s.id for s, _ in plan.revives])
    result.updated = sorted(s.id for s, _ in plan.updates)
    result.moved = sorted(s.id for s, r in plan.updates if _moved(s, r))
    result.deleted = sorted(r.id for r in plan.deletes)
    result.unchanged = plan.unchanged
    pending = [r for _, r in plan.updates] + plan.deletes  # rows with DB-side changes the file overrides
    result.conflicts = sorted(r.id for r in pending if r.revision > r.synced_revision)


def _moved(story: Record, row: DbRow) -> bool:
    return story.status != row.status or story.backlog != row.backlog_id


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
    commit); without it a move is recorded once, at ``provenance``.  ``bodies``
    reads back the bodies a compacted check dropped, one write batch at a time;
    the history and changes rows are written batch by batch too.
    """
    now = utcnow()
    run_id = _insert_run(conn, options, result, now)
    _ensure_backlogs(conn, plan, now)
    bulk = BulkWriter(conn)
    feed = _Feed(bulk, run_id, bulk.stamp(now))
    writing = _Writing(bulk, provenance, now, feed, history, bodies)
    _apply_deletes(bulk, plan.deletes, now, feed.changes)
    _apply_updates(writing, plan)
    _apply_creates(writing, plan)
    feed.flush()
    _write_dependencies(bulk, plan)
    if advance and provenance.sha:
        set_state(conn, LAST_SYNCED, provenance.sha)
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
    return run_id


def _insert_run(conn: Connection, options: SyncOptions, result: SyncResult, now: datetime) -> int:
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
        run_id = _insert_run(conn, options, result, now)
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
    from storysync.log import get_logger, redact

    message = str(exc) if isinstance(exc, StorysyncError) else f"internal error: {type(exc).__name__}: {exc}"
    error = {"code": type(exc).__name__, "message": utf8_safe(redact(message))}
    try:
        with db.write() as conn:
            run_id = _insert_run(conn, options, result, utcnow())
            conn.execute(
                m.sync_runs.update()
                .where(m.sync_runs.c.id == run_id)
                .values(finished_at=utcnow(), outcome="failed", errors=[error])
            )
    except Exception as failure:  # the original failure is what the user must see
        get_logger().debug("could not record the failed run: %s", failure)


def _errors_json(diags: list[Diagnostic]) -> list[dict[str, object]]:
    return [d.as_dict() for d in diags[:MAX_RECORDED_ERRORS]]


def _ensure_backlogs(conn: Connection, plan: Plan, now: datetime) -> None:
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
)
CREATE_KEYS = ("id", *FILE_KEYS, "created_at", "updated_at", "deleted_at")
UPDATE_KEYS = (*FILE_KEYS, "updated_at", "deleted_at", "b_id")
DELETE_KEYS = ("revision", "synced_revision", "updated_at", "deleted_at", "b_id")
HISTORY_KEYS = ("story_id", "from_status", "to_status", "changed_at", "commit", "author", "source")
CHANGE_KEYS = ("story_id", "kind", "source", "run_id", "at")
DEPENDENCY_KEYS = ("story_id", "depends_on_id")
_INSERT_STORY = m.stories.insert()
_UPDATE_STORY = m.stories.update().where(m.stories.c.id == bindparam("b_id"))
_INSERT_HISTORY = m.status_history.insert()
_INSERT_CHANGE = m.changes.insert()
_INSERT_DEPENDENCY = m.dependencies.insert()


def _file_values(bulk: BulkWriter, story: Record, revision: int, commit: str | None) -> Row:
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
    )


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
    updates = _fresh_revisions(conn, plan.updates)  # the story API may have written since the rows were read
    pairs = updates + plan.revives
    if not pairs:
        return
    _keep_conflicts(conn, [(s, r) for s, r in updates if r.revision > r.synced_revision], w.now)
    moving = [(None, r.id) for s, r in pairs if r.path != s.path]
    w.bulk.run(_UPDATE_STORY, ("path", "b_id"), moving)  # free the old paths first: two stories may swap places
    stamp, sha = w.bulk.stamp(w.now), w.provenance.sha
    for start, end in w.batches([s for s, _ in pairs]):
        params = []
        for story, row in pairs[start:end]:
            params.append((*_file_values(w.bulk, story, row.revision + 1, sha), stamp, None, row.id))
            revived = row.deleted
            kind = "created" if revived else "moved" if _moved(story, row) else "updated"
            w.feed.changes.append((row.id, kind))
            if revived:
                w.feed.hist.extend(_history_rows(w.bulk, story, None, w.provenance, w.history))
            elif story.status != row.status:
                w.feed.hist.extend(_history_rows(w.bulk, story, row.status, w.provenance, w.history))
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
            rows.append((story.id, *_file_values(bulk, story, 1, sha), stamp, stamp, None))
            feed.changes.append((story.id, "created"))
            feed.hist.extend(_history_rows(bulk, story, None, w.provenance, w.history))
        bulk.run(_INSERT_STORY, CREATE_KEYS, rows)


def insert_deleted(conn: Connection, stories: list[tuple[Record, Gone]]) -> None:
    """Rows for stories deleted before the commit a history rebuild reads, as syncing every
    commit leaves them: soft-deleted at the deleting commit's time (a sync run right after
    it, as a hook runs, would stamp that), created when the id first appeared, holding the
    last version's content and commit, and no dependencies (a deletion removes them)."""
    if not stories:
        return
    _ensure_backlogs(conn, Plan(creates=[record for record, _ in stories]), utcnow())
    bulk = BulkWriter(conn)
    rows = []
    for record, gone in stories:
        # revision 2, all synced: as a row one sync created and a later one deleted
        values = _file_values(bulk, record, 2, gone.version)
        deleted_at = bulk.stamp(gone.deleted_at)
        rows.append((record.id, *values, bulk.stamp(gone.born), deleted_at, deleted_at))
    bulk.run(_INSERT_STORY, CREATE_KEYS, rows)


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
    conn.execute(
        m.conflicts.insert(),
        [
            {
                "story_id": r.id,
                "detected_at": now,
                "file_hash": file_hash,
                "db_snapshot": snapshots.get(r.id),
                "resolution": "file_wins",
                "resolved_at": None,
            }
            for file_hash, r in pairs
        ],
    )


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
