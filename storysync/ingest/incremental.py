"""Incremental sync: only the changed story paths are read, checked and written.

A changed-paths run (``SyncOptions(working_tree=True, paths=...)`` from watch, or
the paths of a git range) reads those paths from a source; a path that no
longer exists soft-deletes the row whose ``path`` it is.  Cross-file checks ask
the database for the other live stories (``DbKnown``), so the cost grows with
the number of changed files, not with the size of the repository.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Iterable
from typing import TYPE_CHECKING

from sqlalchemy import Connection, bindparam, select, text

from storysync.check.sources import Entry, Source, directory_entry
from storysync.check.validate import Checked, check_entries, checker_for
from storysync.config import Config
from storysync.db import tables as m
from storysync.db.database import Database
from storysync.ingest import history
from storysync.story.layout import classify
from storysync.story.model import Location

if TYPE_CHECKING:
    from storysync.git.runner import GitRepo
    from storysync.ingest.sync import DbRow, Plan, Provenance, SyncOptions, SyncResult

CHUNK = 500
MovesById = dict[str, list[tuple[str | None, str, "Provenance"]]]
Planner = Callable[[Connection], "Plan"]


# The live stories reachable from :seeds through stored dependencies (a recursive
# walk that stops at rows deleted or missing), each with its own dependencies.
# Plain SQL that SQLite and PostgreSQL both run: as a Core construct it costs
# ~6 ms to compile, in a run (the post-merge hook's) that is all start-up.
_REACH = text(
    """
    WITH RECURSIVE reach(id) AS (
        SELECT s.id FROM stories s WHERE s.id IN :seeds AND s.deleted_at IS NULL
        UNION
        SELECT d.depends_on_id FROM dependencies d
        JOIN reach r ON d.story_id = r.id
        JOIN stories t ON t.id = d.depends_on_id AND t.deleted_at IS NULL
    )
    SELECT s.id, s.path, d.depends_on_id FROM reach
    JOIN stories s ON s.id = reach.id
    LEFT JOIN dependencies d ON d.story_id = s.id
    ORDER BY s.id, d.depends_on_id
    """
).bindparams(bindparam("seeds", expanding=True))


class DbKnown:
    """``Known`` answered by the database's live rows.

    Rows whose path is in ``hidden`` (the paths this run reads) are invisible: the
    run's own files speak for them.  ``exists`` (working-tree runs) hides rows
    whose file is gone from disk, so a move reported by its new path alone is a
    move, not a duplicate id.  ``prefetch`` answers the checks' questions in two
    queries (the dependency walk is one recursive query) instead of one or two
    indexed queries a story.
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
        """Every live story reachable from ``seeds`` through stored dependencies, and its own (one query)."""
        stored: dict[str, list[str]] = {}
        for sid, path, dep in self._conn.execute(_REACH, {"seeds": seeds}):
            if sid not in stored:
                stored[sid] = []
                self._live_rows[sid] = self._found(path)
            if dep is not None:
                stored[sid].append(dep)
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
    from storysync.ingest.sync import DbRow

    s = m.stories.c
    cols = (s.id, s.path, s.content_hash, s.status, s.backlog_id, s.revision, s.synced_revision, s.deleted_at)
    out: dict[str, DbRow] = {}
    for chunk in _chunks(sorted(ids)):
        for r in conn.execute(select(*cols).where(s.id.in_(chunk))):
            out[r.id] = DbRow(*r[:7], r.deleted_at is not None)
    for chunk in _chunks(sorted(paths)):
        for r in conn.execute(select(*cols).where(s.path.in_(chunk), s.deleted_at.is_(None))):
            out[r.id] = DbRow(*r[:7], r.deleted_at is not None)
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


def run_paths(
    config: Config,
    db: Database,
    source: Source,
    provenance: Provenance,
    options: SyncOptions,
    result: SyncResult,
    progress: Callable[[int], None] | None = None,
) -> SyncResult:
    """Sync only ``options.paths`` (repository-relative) from ``source``, in one transaction."""
    paths = story_paths(config, options.paths or ())
    exists = (lambda rel: os.path.lexists(config.repo / rel)) if provenance.sha is None else None
    checked, planner = check_paths(config, db, source, paths, exists=exists, progress=progress)
    result.full = False
    return finish(db, checked, planner, provenance, options, result)


def finish(
    db: Database,
    checked: Checked,
    planner: Planner,
    provenance: Provenance,
    options: SyncOptions,
    result: SyncResult,
    moves: HistoryPlan | None = None,
    resynced: Collection[str] = (),
) -> SyncResult:
    """Record an invalid run, or plan and write in one transaction (SPEC §6 rules).

    The one ending of every sync (full, a git range, given paths): invalid input
    without ``keep_going`` writes only the audit row; a dry run describes the
    plan; otherwise the plan is made inside the writer's transaction, from the
    rows as they are once no other writer can change them, and applied there
    (bodies a compacted check dropped are read back batch by batch).  The same
    transaction records the paths a working-tree run wrote, or forgets those of
    ``resynced`` (paths recorded so, read again from a commit) that were valid.
    """
    from storysync.db import worktree
    from storysync.ingest.sync import _describe, apply, record_invalid

    result.files = checked.files
    result.diagnostics = checked.diagnostics
    if checked.diagnostics and not options.keep_going:
        result.outcome = "invalid"
        if not options.dry_run:
            result.run_id = record_invalid(db, options, result)
        return result
    if options.dry_run:
        with db.read() as conn:
            _describe(planner(conn), result)
        return result
    advance = not checked.diagnostics and provenance.sha is not None
    with db.write() as conn:
        plan = planner(conn)
        _describe(plan, result)
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
    if checked.diagnostics:
        result.outcome = "invalid"
    return result


def _chunks(items: list[str]) -> Iterable[list[str]]:
    for i in range(0, len(items), CHUNK):
        yield items[i : i + CHUNK]


# --- a git range -------------------------------------------------------------------------


def run_git(
    config: Config,
    db: Database,
    repo: GitRepo,
    options: SyncOptions,
    result: SyncResult,
    progress: Callable[[int], None] | None = None,
    marked: Collection[str] = (),
) -> SyncResult:
    """Sync the commit ``--to`` (default HEAD): only the paths changed since the last
    synced commit, or every story file when there is no usable last commit.  The
    ``marked`` paths, whose rows came from the working tree, are read from the commit
    too, whatever the range (``storysync.worktree``)."""
    from storysync.check.sources import GitTreeSource
    from storysync.git import runner as gitplain
    from storysync.ingest.sync import _provenance

    head = gitplain.head_info(repo) if options.to_rev in (None, "HEAD") else None
    to = head.sha if head is not None else gitplain.resolve(repo, options.to_rev or "HEAD")
    start = gitplain.resolve(repo, options.from_rev) if options.from_rev else None
    last = result.from_commit
    ancestry = Ancestry(repo, to)
    base, notice = _base(ancestry, last, options)
    if notice:
        result.notices.append(notice)
    result.from_commit, result.to_commit = start or last, to
    provenance = _provenance(head or gitplain.commit_info(repo, to))
    source = GitTreeSource(repo, config, to)
    if base is None:
        checked, planner = check_tree(config, source, progress)
        result.full = True
    else:
        paths, entries = changed_entries(config, repo, [base, start], to)
        if marked:
            paths, entries = with_marked(config, repo, to, marked, paths, entries)
        checked, planner = check_entries_against_db(config, db, source, entries, paths, progress=progress)
        result.full = False
    walk_from = _walk_from(ancestry, start or last, options)
    if options.full and options.history and gitplain.is_shallow(repo):
        result.notices.append(
            "this is a shallow clone: the status history is rebuilt from the commits it has "
            "(git fetch --unshallow for all of it)"
        )
    moves = HistoryPlan(config, repo, walk_from, to, rebuild=options.full and options.history)
    return finish(db, checked, planner, provenance, options, result, moves, resynced=marked)


def with_marked(
    config: Config, repo: GitRepo, to: str, marked: Collection[str], paths: list[str], entries: list[Entry]
) -> tuple[list[str], list[Entry]]:
    """``paths`` and ``entries`` of a range, with the ``marked`` story paths it lacks and
    their entries at ``to`` (a path missing there deletes the row stored at it)."""
    from storysync.git import runner as gitplain

    extra = story_paths(config, set(marked) - set(paths))
    if not extra:
        return paths, entries
    found = list(entries)
    for item in gitplain.tree_entries(repo, to, extra):
        location = classify(config, item.path)
        if location is not None and item.mode != gitplain.SUBMODULE_MODE:
            found.append(Entry(location, item.sha, item.size, item.mode == gitplain.SYMLINK_MODE))
    return sorted({*paths, *extra}), found


class Ancestry:
    """Whether commits exist and lead to ``to``, each asked of git once (a run asks twice)."""

    def __init__(self, repo: GitRepo, to: str) -> None:
        self.repo = repo
        self.to = to
        self._contains: dict[str, bool] = {}
        self._exists: dict[str, bool] = {}

    def contains(self, sha: str) -> bool:
        """Whether ``sha`` is ``to`` or one of its ancestors (False for an unknown commit)."""
        from storysync.git import runner as gitplain

        if sha not in self._contains:
            self._contains[sha] = gitplain.is_ancestor(self.repo, sha, self.to)
        return self._contains[sha]

    def exists(self, sha: str) -> bool:
        """Whether ``sha`` is a commit the repository has."""
        from storysync.git import runner as gitplain

        if self._contains.get(sha):
            return True
        if sha not in self._exists:
            self._exists[sha] = gitplain.commit_exists(self.repo, sha)
        return self._exists[sha]


def _base(ancestry: Ancestry, last: str | None, options: SyncOptions) -> tuple[str | None, str | None]:
    """The commit the database reflects, if a diff from it can be trusted; else a notice."""
    from storysync.git import runner as gitplain

    to = ancestry.to
    if options.full:
        return None, None
    if last is None:
        return None, f"no last synced commit: a full sync of {to[:12]}"
    if ancestry.contains(last):
        return last, None
    if not ancestry.exists(last):
        why = "this is a shallow clone" if gitplain.is_shallow(ancestry.repo) else "it was garbage-collected"
        return None, f"last synced commit {last[:12]} is not in the repository ({why}): a full reconcile of {to[:12]}"
    return None, (
        f"last synced commit {last[:12]} is not an ancestor of {to[:12]} "
        f"(history rewritten by a rebase, force-push or reset): a full reconcile of {to[:12]}"
    )


def _walk_from(ancestry: Ancestry, start: str | None, options: SyncOptions) -> tuple[bool, str | None]:
    """Whether to walk commits for history, and from where (None: the whole log)."""
    from storysync.git import runner as gitplain

    if options.full and options.history:
        return True, None
    if start is None or not ancestry.exists(start):
        return False, None
    if ancestry.contains(start):
        return True, start
    fork = gitplain.merge_base(ancestry.repo, start, ancestry.to)  # rewritten history: the moves since the
    return (True, fork) if fork else (False, None)  # fork point; ones already recorded are not recorded again


def changed_entries(config: Config, repo: GitRepo, bases: list[str | None], to: str) -> tuple[list[str], list[Entry]]:
    """The story paths that differ between any of ``bases`` and ``to``, and the entries
    (blob, mode, size at ``to``) of those that exist at ``to``; a symlink added in the
    place of a stage or backlog directory is one too (it reads as its refusal)."""
    from storysync.git import runner as gitplain

    paths: set[str] = set()
    present: dict[str, gitplain.Change] = {}
    for base in dict.fromkeys(b for b in bases if b is not None):
        for change in gitplain.diff(repo, base, to, config.root):
            paths.update(p for p in (change.path, change.old) if p is not None)
            if change.sha is not None and change.mode != gitplain.SUBMODULE_MODE:
                present[change.path] = change
    wanted = story_paths(config, paths)
    found: list[tuple[Location, gitplain.Change]] = []
    for path in wanted:
        location = classify(config, path)
        if path in present and location is not None:
            found.append((location, present[path]))
    sizes = gitplain.blob_sizes(repo, [change.sha for _, change in found if change.sha is not None])
    entries = [
        Entry(location, change.sha, sizes[change.sha], change.mode == gitplain.SYMLINK_MODE)
        for location, change in found
        if change.sha is not None
    ]
    for path, change in present.items():
        linked = directory_entry(config, path, change.sha or "") if change.mode == gitplain.SYMLINK_MODE else None
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
    rows as the rest of the repository; the planner writes them (missing paths delete)."""
    from storysync.ingest.sync import make_plan

    with db.read() as conn:
        known = DbKnown(conn, hidden=paths, exists=exists)
        checked = check_entries(source, entries, checker_for(config), known=known, progress=progress)
    ids = {s.id for s in checked.stories}

    def planner(conn: Connection) -> Plan:
        rows = rows_for(conn, ids, paths)
        return make_plan(
            checked.valid_stories, rows, skip_paths=checked.invalid_paths, skip_ids=ids, deleted_paths=set(paths)
        )

    return checked, planner


def check_tree(config: Config, source: Source, progress: Callable[[int], None] | None) -> tuple[Checked, Planner]:
    """Every story file of ``source`` against every row: a full reconcile."""
    from storysync.ingest.sync import load_rows, make_plan

    checked = check_entries(source, source.entries(), checker_for(config), progress=progress, compact=True)
    ids = {s.id for s in checked.stories}

    def planner(conn: Connection) -> Plan:
        return make_plan(checked.valid_stories, load_rows(conn), skip_paths=checked.invalid_paths, skip_ids=ids)

    return checked, planner


class HistoryPlan:
    """The stage moves a range's commits made, split between what ``apply`` records
    (stories whose row it creates or moves) and the rest (recorded by ``after``)."""

    def __init__(self, config: Config, repo: GitRepo, walk: tuple[bool, str | None], to: str, *, rebuild: bool) -> None:
        from storysync.git import runner as gitplain

        self.config = config
        self.rebuild = rebuild
        self.commits = gitplain.log(repo, walk[1], to, config.root) if walk[0] else []
        self.rest: list[history.Move] = []

    def for_plan(self, conn: Connection, plan: Plan, checked: Checked) -> MovesById:
        """The moves ``apply`` should record for the stories ``plan`` creates or moves."""
        from storysync.ingest.sync import Provenance

        ids = history.touched_ids(self.config, self.commits)
        if not ids:
            return {}
        skip = {history.id_of(p) for p in checked.invalid_paths}
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

    def _moves(self, conn: Connection, ids: set[str]) -> list[history.Move]:
        if self.rebuild:
            found = history.moves(self.config, self.commits, {})
            return history.without_exported(found, history.db_side_moves(conn, ids))
        s = m.stories.c
        start: dict[str, str | None] = {}
        for chunk in _chunks(sorted(ids)):
            query = select(s.id, s.status).where(s.id.in_(chunk), s.deleted_at.is_(None))
            start.update((r.id, r.status) for r in conn.execute(query))
        seen = history.already_recorded(conn, ids)
        found = history.moves(self.config, self.commits, start)
        return [mv for mv in found if (mv.story_id, mv.sha, mv.after) not in seen]

    def before(self, conn: Connection) -> None:
        """In the run's transaction, before ``apply``: clear the history being rebuilt."""
        if self.rebuild:
            history.clear_file_history(conn)

    def after(self, conn: Connection) -> None:
        """In the run's transaction, after ``apply``: the moves of stories it did not move."""
        existing = history.existing_ids(conn, {mv.story_id for mv in self.rest})
        rows = history.history_rows(mv for mv in self.rest if mv.story_id in existing)
        if rows:
            conn.execute(m.status_history.insert(), rows)


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
