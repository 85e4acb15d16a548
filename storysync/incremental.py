"""Incremental sync: only the changed story paths are read, checked and written.

A changed-paths run (``SyncOptions(working_tree=True, paths=...)`` from watch, or
the paths of a git range) reads those paths from a source; a path that no
longer exists soft-deletes the row whose ``path`` it is.  Cross-file checks ask
the database for the other live stories (``DbKnown``), so the cost grows with
the number of changed files, not with the size of the repository.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from typing import TYPE_CHECKING

from sqlalchemy import Connection, select

from storysync import models as m
from storysync.config import Config
from storysync.db import Database
from storysync.layout import classify
from storysync.sources import Source
from storysync.validate import Checked, check_entries, checker_for

if TYPE_CHECKING:
    from storysync.sync import DbRow, Plan, Provenance, SyncOptions, SyncResult

CHUNK = 500


class DbKnown:
    """``Known`` answered by the database's live rows, one indexed query at a time.

    Rows whose path is in ``hidden`` (the paths this run reads) are invisible: the
    run's own files speak for them.  ``exists`` (working-tree runs) hides rows
    whose file is gone from disk, so a move reported by its new path alone is a
    move, not a duplicate id.
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
        self._deps: dict[str, list[str] | None] = {}

    def _live_path(self, story_id: str) -> str | None:
        s = m.stories.c
        path = self._conn.execute(select(s.path).where(s.id == story_id, s.deleted_at.is_(None))).scalar_one_or_none()
        if path is None or path in self._hidden:
            return None
        if self._exists is not None and not self._exists(path):
            return None
        return str(path)

    def lookup(self, folded: str) -> tuple[str, str] | None:
        """``(id, path)`` of the live row whose id folds to ``folded``."""
        if not folded.isascii():
            return None  # stored ids are ASCII (the id pattern), so they fold to lower case
        story_id = folded.upper()
        path = self._live_path(story_id)
        return None if path is None else (story_id, path)

    def deps(self, story_id: str) -> list[str] | None:
        """The stored ``depends_on`` of a live story, None if there is none."""
        if story_id not in self._deps:
            if self._live_path(story_id) is None:
                self._deps[story_id] = None
            else:
                d = m.dependencies.c
                query = select(d.depends_on_id).where(d.story_id == story_id).order_by(d.depends_on_id)
                self._deps[story_id] = list(self._conn.execute(query).scalars())
        return self._deps[story_id]


def story_paths(config: Config, paths: Iterable[str]) -> list[str]:
    """The paths among ``paths`` that are story paths, sorted, without repeats."""
    return sorted({p for p in paths if classify(config, p) is not None})


def rows_for(conn: Connection, ids: Collection[str], paths: Collection[str]) -> dict[str, DbRow]:
    """The rows (live or deleted) with one of ``ids``, or live at one of ``paths``."""
    from storysync.sync import DbRow

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
) -> tuple[Checked, Plan]:
    """Read and check the story files at ``paths``; plan their writes against the DB.

    A path missing from ``source`` deletes the live row stored at that path.
    """
    from storysync.sync import make_plan

    entries = source.entries(paths)
    with db.read() as conn:
        known = DbKnown(conn, hidden=paths, exists=exists)
        checked = check_entries(source, entries, checker_for(config), known=known, progress=progress)
        rows = rows_for(conn, {s.id for s in checked.stories}, paths)
    plan = make_plan(
        checked.valid_stories,
        rows,
        skip_paths=checked.invalid_paths,
        skip_ids={s.id for s in checked.stories},
        deleted_paths=set(paths),
    )
    return checked, plan


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
    exists = (lambda rel: (config.repo / rel).exists()) if provenance.sha is None else None
    checked, plan = check_paths(config, db, source, paths, exists=exists, progress=progress)
    result.full = False
    return finish(db, checked, plan, provenance, options, result)


def finish(
    db: Database,
    checked: Checked,
    plan: Plan,
    provenance: Provenance,
    options: SyncOptions,
    result: SyncResult,
    history: dict[str, list[tuple[str | None, str, Provenance]]] | None = None,
    after: Callable[[Connection], None] | None = None,
) -> SyncResult:
    """Record an invalid run, or write the plan in one transaction (SPEC §6 rules)."""
    from storysync.sync import _describe, apply, record_invalid

    result.files = checked.files
    result.diagnostics = checked.diagnostics
    if checked.diagnostics and not options.keep_going:
        result.outcome = "invalid"
        if not options.dry_run:
            result.run_id = record_invalid(db, options, result)
        return result
    _describe(plan, result)
    if options.dry_run:
        return result
    advance = not checked.diagnostics and provenance.sha is not None
    with db.write() as conn:
        result.run_id = apply(conn, plan, provenance, options, result, advance=advance, history=history)
        if after is not None:
            after(conn)
    if checked.diagnostics:
        result.outcome = "invalid"
    return result


def _chunks(items: list[str]) -> Iterable[list[str]]:
    for i in range(0, len(items), CHUNK):
        yield items[i : i + CHUNK]
