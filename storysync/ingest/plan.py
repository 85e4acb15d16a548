"""Check → plan: read the changed story files, check them against the rest of the repository
(the run's own files and, for everything else, the database's live rows), and plan the writes.

A changed-paths run (watch's batches, the paths of a git range) reads those paths from a
source; a path that no longer exists deletes the row stored at it.  Cross-file checks ask
the database for the other live stories (``DbKnown``), so the cost grows with the number
of changed files, not with the size of the repository.  A full run reads every story file
and plans against every row.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from typing import TYPE_CHECKING

from sqlalchemy import Connection, bindparam, select, text

from storysync.check.sources import Entry, Source, directory_entry
from storysync.check.validate import Checked, check_entries, checker_for
from storysync.config import Config
from storysync.db import tables as m
from storysync.db.database import Database
from storysync.errors import utf8_safe
from storysync.git import runner
from storysync.ingest.types import DbRow, Plan, Planner, SyncResult
from storysync.story.layout import classify
from storysync.story.model import Location, Record

if TYPE_CHECKING:
    from storysync.git.runner import GitRepo


def load_rows(conn: Connection) -> dict[str, DbRow]:
    """Every story row (live and soft-deleted), by id."""
    s = m.stories.c
    query = select(s.id, s.path, s.content_hash, s.status, s.backlog_id, s.revision, s.synced_revision, s.deleted_at)
    lost = lost_to_file(conn)
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
            r.id in lost,
        )
        for r in conn.execute(query)
    }


def lost_to_file(conn: Connection) -> dict[str, str | None]:
    """The rows (id → path) that hold a database version which lost to the file.

    An export that met an edited file keeps the row's version in ``conflicts`` and marks
    the row exported, its values the database's and its ``content_hash`` the file's last
    synced one (SPEC §7: the file wins).  Until a sync reads the file into the row again,
    that conflict's ``db_snapshot`` is at or past the row's ``synced_revision`` (a
    conflict a sync records is older than the revision the sync then writes), open or
    resolved; so such a row is read from its file even when the file is as last synced
    (the edit was thrown away: ``git checkout -- FILE``), and the file's values win.
    """
    c, s = m.conflicts.c, m.stories.c
    query = (
        select(s.id, s.path)
        .join(m.conflicts, c.story_id == s.id)
        .where(c.db_snapshot["revision"].as_integer() >= s.synced_revision)
        .distinct()
    )
    return {r.id: r.path for r in conn.execute(query)}


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
        elif row.content_hash != story.content_hash or row.path != story.path or row.lost:
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


def describe(plan: Plan, result: SyncResult) -> None:
    result.created = sorted([s.id for s in plan.creates] + [s.id for s, _ in plan.revives])
    result.updated = sorted(s.id for s, _ in plan.updates)
    result.moved = sorted(s.id for s, r in plan.updates if moved(s, r))
    result.deleted = sorted(r.id for r in plan.deletes)
    result.unchanged = plan.unchanged
    # rows with DB-side changes (a deletion included) the file overrides
    pending = [r for _, r in plan.updates + plan.revives] + plan.deletes
    result.conflicts = sorted(r.id for r in pending if r.revision > r.synced_revision)


def moved(story: Record, row: DbRow) -> bool:
    return story.status != row.status or story.backlog != row.backlog_id


CHUNK = 500


# One level of the dependency walk: the live stories among :ids, each with its own stored
# dependencies.  The walk asks level by level (ingest.plan.DbKnown._reach) rather than in
# one recursive query: PostgreSQL cannot estimate a recursive CTE's size, so it joined the
# result to a seq scan of every story (400 MB of rows at 100k stories); each level is two
# primary-key lookups on both databases.  Plain SQL that SQLite and PostgreSQL both run:
# as a Core construct it costs ~6 ms to compile, in a run (the post-merge hook's) that is
# all start-up.
_LEVEL = text(
    """
    SELECT s.id, s.path, d.depends_on_id FROM stories s
    LEFT JOIN dependencies d ON d.story_id = s.id
    WHERE s.id IN :ids AND s.deleted_at IS NULL
    ORDER BY s.id, d.depends_on_id
    """
).bindparams(bindparam("ids", expanding=True))


class DbKnown:
    """``Known`` answered by the database's live rows.

    Rows whose path is in ``hidden`` (the paths this run reads) are invisible: the
    run's own files speak for them.  ``exists`` (working-tree runs) hides rows
    whose file is gone from disk, so a move reported by its new path alone is a
    move, not a duplicate id.  ``prefetch`` answers the checks' questions in one
    query for the lookups and one a level of the dependency walk, instead of one or
    two indexed queries a story.
    """

    def __init__(
        self,
        conn: Connection,
        hidden: Collection[str] = (),
        exists: Callable[[str], bool] | None = None,
    ) -> None:
        self._conn = conn
        self._hidden = set(hidden)
        self._exists = exists
        self._live_rows: dict[str, tuple[bool, str | None]] = {}
        self._deps: dict[str, list[str] | None] = {}

    def _found(self, path: str | None) -> tuple[bool, str | None]:
        return (False, None) if path is not None and path in self._hidden else (True, path)

    def _live(self, story_id: str) -> tuple[bool, str | None]:
        """Whether a live row has this id (and is not one this run reads), and its path."""
        if story_id not in self._live_rows:
            s = m.stories.c
            row = self._conn.execute(select(s.path).where(s.id == story_id, s.deleted_at.is_(None))).first()
            self._live_rows[story_id] = (False, None) if row is None else self._found(row.path)
        return self._live_rows[story_id]

    def lookup(self, folded: str) -> tuple[str, str] | None:
        """``(id, path)`` of the live row whose id folds to ``folded`` and whose file is there."""
        if not folded.isascii():
            return None  # stored ids are ASCII (the id pattern), so they fold to lower case
        story_id = folded.upper()
        found, path = self._live(story_id)
        if not found or path is None:  # a DB-created story not exported yet: the file claims the row
            return None
        if self._exists is not None and not self._exists(path):
            return None
        return story_id, path

    def deps(self, story_id: str) -> list[str] | None:
        """The stored ``depends_on`` of a live story (one this run leaves live), None if none."""
        if story_id not in self._deps:
            found, _ = self._live(story_id)
            if not found:
                self._deps[story_id] = None
            else:
                d = m.dependencies.c
                query = select(d.depends_on_id).where(d.story_id == story_id).order_by(d.depends_on_id)
                self._deps[story_id] = list(self._conn.execute(query).scalars())
        return self._deps[story_id]

    def prefetch(self, folded: Iterable[str], ids: Iterable[str]) -> None:
        """Fetch at once what ``lookup`` of ``folded`` and ``deps`` of ``ids`` and of every
        story their stored dependencies reach will be asked."""
        lookups = sorted({f.upper() for f in folded if f.isascii()} - self._live_rows.keys())
        s = m.stories.c
        for chunk in _chunks(lookups):
            query = select(s.id, s.path).where(s.id.in_(chunk), s.deleted_at.is_(None))
            rows: dict[str, str | None] = {r.id: r.path for r in self._conn.execute(query)}
            self._live_rows.update((sid, self._found(rows[sid]) if sid in rows else (False, None)) for sid in chunk)
        for chunk in _chunks(sorted(set(ids) - self._deps.keys())):
            self._reach(chunk)

    def _reach(self, seeds: list[str]) -> None:
        """Every live story reachable from ``seeds`` through stored dependencies, and its own
        (one query a level of the walk)."""
        stored: dict[str, list[str]] = {}
        asked: set[str] = set()
        level = set(seeds)
        while level:
            asked |= level
            for chunk in _chunks(sorted(level)):
                for sid, path, dep in self._conn.execute(_LEVEL, {"ids": chunk}):
                    if sid not in stored:
                        stored[sid] = []
                        self._live_rows[sid] = self._found(path)
                    if dep is not None:
                        stored[sid].append(dep)
            level = {dep for sid in level if sid in stored for dep in stored[sid]} - asked - self._deps.keys()
        for sid, deps in stored.items():
            self._deps[sid] = deps if self._live_rows[sid][0] else None
        for sid in {*seeds, *(dep for deps in stored.values() for dep in deps)} - stored.keys():
            self._live_rows[sid] = (False, None)  # no live row: a missing or deleted story
            self._deps[sid] = None


def story_paths(config: Config, paths: Iterable[str]) -> list[str]:
    """The paths among ``paths`` that are story paths, sorted, without repeats."""
    return sorted({p for p in paths if classify(config, p) is not None})


def rows_for(conn: Connection, ids: Collection[str], paths: Collection[str]) -> dict[str, DbRow]:
    """The rows (live or deleted) with one of ``ids``, or live at one of ``paths``."""
    s = m.stories.c
    cols = (s.id, s.path, s.content_hash, s.status, s.backlog_id, s.revision, s.synced_revision, s.deleted_at)
    out: dict[str, DbRow] = {}
    lost = lost_to_file(conn)
    for chunk in _chunks(sorted(ids)):
        for r in conn.execute(select(*cols).where(s.id.in_(chunk))):
            out[r.id] = DbRow(*r[:7], r.deleted_at is not None, r.id in lost)
    stored = sorted(p for p in paths if utf8_safe(p) == p)  # a name that is not UTF-8 is refused, never stored
    for chunk in _chunks(stored):
        for r in conn.execute(select(*cols).where(s.path.in_(chunk), s.deleted_at.is_(None))):
            out[r.id] = DbRow(*r[:7], r.deleted_at is not None, r.id in lost)
    return out


def check_paths(
    config: Config,
    db: Database,
    source: Source,
    paths: list[str],
    *,
    exists: Callable[[str], bool] | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[Checked, Planner]:
    """Read and check the story files at ``paths``, and how to plan their writes.

    A path missing from ``source`` deletes the live row stored at that path.
    """
    return check_entries_against_db(config, db, source, source.entries(paths), paths, exists, progress)


def _chunks(items: list[str]) -> Iterable[list[str]]:
    for i in range(0, len(items), CHUNK):
        yield items[i : i + CHUNK]


def with_marked(
    config: Config, repo: GitRepo, to: str, marked: Collection[str], paths: list[str], entries: list[Entry]
) -> tuple[list[str], list[Entry]]:
    """``paths`` and ``entries`` of a range, with the ``marked`` story paths it lacks and
    their entries at ``to`` (a path missing there deletes the row stored at it)."""
    extra = story_paths(config, set(marked) - set(paths))
    if not extra:
        return paths, entries
    found = list(entries)
    for item in runner.tree_entries(repo, to, extra):
        location = classify(config, item.path)
        if location is not None and item.mode != runner.SUBMODULE_MODE:
            found.append(Entry(location, item.sha, item.size, item.mode == runner.SYMLINK_MODE))
    return sorted({*paths, *extra}), found


def changed_entries(config: Config, repo: GitRepo, bases: list[str | None], to: str) -> tuple[list[str], list[Entry]]:
    """The story paths that differ between any of ``bases`` and ``to``, and the entries
    (blob, mode, size at ``to``) of those that exist at ``to``; a symlink added in the
    place of a stage or backlog directory is one too (it reads as its refusal)."""
    paths: set[str] = set()
    present: dict[str, runner.Change] = {}
    for base in dict.fromkeys(b for b in bases if b is not None):
        for change in runner.diff(repo, base, to, config.root):
            paths.update(p for p in (change.path, change.old) if p is not None)
            if change.sha is not None and change.mode != runner.SUBMODULE_MODE:
                present[change.path] = change
    wanted = story_paths(config, paths)
    found: list[tuple[Location, runner.Change]] = []
    for path in wanted:
        location = classify(config, path)
        if path in present and location is not None:
            found.append((location, present[path]))
    sizes = runner.blob_sizes(repo, [change.sha for _, change in found if change.sha is not None])
    entries = [
        Entry(location, change.sha, sizes[change.sha], change.mode == runner.SYMLINK_MODE)
        for location, change in found
        if change.sha is not None
    ]
    for path, change in present.items():
        linked = directory_entry(config, path, change.sha or "") if change.mode == runner.SYMLINK_MODE else None
        if linked is not None:
            entries.append(linked)
            wanted.append(path)
    return wanted, entries


def check_entries_against_db(
    config: Config,
    db: Database,
    source: Source,
    entries: list[Entry],
    paths: list[str],
    exists: Callable[[str], bool] | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[Checked, Planner]:
    """Check ``entries`` (the ones of ``paths`` that exist) with the database's other
    rows as the rest of the repository; the planner writes them (missing paths delete).

    A story these paths take away (deleted, renamed to another id, moved out of the
    layout, no longer parsing) leaves its dependents' ``depends_on`` dangling: those
    files are checked too, so the run is refused at their entries as a full sync is.
    """
    with db.read() as conn:
        known = DbKnown(conn, hidden=paths, exists=exists)

        def dependents(checked: Checked) -> list[Entry]:
            found = dependent_paths(conn, paths, {s.id for s in checked.stories})
            return source.entries(found) if found else []  # (no paths: a source may list everything)

        checked = check_entries(source, entries, checker_for(config), known=known, progress=progress, more=dependents)
    ids = {s.id for s in checked.stories}

    def planner(conn: Connection) -> Plan:
        rows = rows_for(conn, ids, paths)
        return make_plan(
            checked.valid_stories, rows, skip_paths=checked.invalid_paths, skip_ids=ids, deleted_paths=set(paths)
        )

    return checked, planner


def dependent_paths(conn: Connection, paths: Collection[str], present: Collection[str]) -> list[str]:
    """The stored paths, outside ``paths``, of the stories depending on a story whose row
    is live at one of ``paths`` and whose id is not among ``present`` (the ids the run's
    files still have): the stories the run would leave with a dangling ``depends_on``.

    A row deleted in the database whose file is still there (the export removes it)
    counts as well: a full sync reads that file too.
    """
    s, d = m.stories.c, m.dependencies.c
    gone: set[str] = set()
    for chunk in _chunks(sorted(p for p in paths if utf8_safe(p) == p)):  # no row has a name that is not UTF-8
        gone.update(conn.execute(select(s.id).where(s.path.in_(chunk), s.deleted_at.is_(None))).scalars())
    gone.difference_update(present)
    found: set[str] = set()
    for chunk in _chunks(sorted(gone)):
        query = select(s.path).join(m.dependencies, d.story_id == s.id).where(d.depends_on_id.in_(chunk))
        found.update(p for p in conn.execute(query.where(s.path.is_not(None))).scalars())
    return sorted(found.difference(paths))


def check_tree(config: Config, source: Source, progress: Callable[[int], None] | None) -> tuple[Checked, Planner]:
    """Every story file of ``source`` against every row: a full reconcile."""
    checked = check_entries(source, source.entries(), checker_for(config), progress=progress, compact=True)
    ids = {s.id for s in checked.stories}

    def planner(conn: Connection) -> Plan:
        return make_plan(checked.valid_stories, load_rows(conn), skip_paths=checked.invalid_paths, skip_ids=ids)

    return checked, planner


def written_paths(plan: Plan) -> set[str]:
    """The story paths whose rows ``plan`` writes: created, revived, updated (old and new
    path) and deleted ones."""
    paths = {s.path for s in plan.creates}
    for story, row in plan.updates + plan.revives:
        paths.add(story.path)
        if row.path is not None:
            paths.add(row.path)
    paths.update(r.path for r in plan.deletes if r.path is not None)
    return paths
