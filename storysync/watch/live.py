"""Batches → database: each watch batch is one keep-going working-tree sync.

``LiveSync`` turns a ``watch.Batch`` into ``sync(SyncOptions(working_tree=True,
paths=...))`` (one transaction; a path gone from disk soft-deletes its row, and
the disk is looked at only now, after the debounce, so an atomic save is an
update).  It remembers the size and mtime of every story file as last synced:
a rescan (the periodic reconcile, a directory event, an inotify overflow) stats
the tree and syncs only what differs, which heals missed events cheaply.  A bad
file is reported once, skipped with its last good row kept, and reported fixed
when it syncs again.
"""

from __future__ import annotations

import os
import time
from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING, NamedTuple

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from storysync.db import worktree
from storysync.db.conflicts import count_open
from storysync.errors import Diagnostic, StorysyncError
from storysync.git.runner import GitRepo, as_plain
from storysync.ingest.run import sync
from storysync.ingest.types import SyncOptions, SyncResult
from storysync.watch.events import Batch, ChangeFilter, ChangeKind
from storysync.watch.outcome import Outcome

if TYPE_CHECKING:
    import git

    from storysync.config import Config
    from storysync.db.database import Database
    from storysync.watch.events import Watcher
    from storysync.watch.metrics import Metrics

Stat = tuple[int, int]  # (size, mtime_ns)


def stat_of(path: str) -> Stat | None:
    """``(size, mtime_ns)`` of a file, or None if it is not there."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def scan_tree(config: Config, keep: ChangeFilter) -> dict[str, Stat]:
    """The size and mtime of every story file on disk, by repository-relative path."""
    return TreeScan(config, keep).scan()


class TreeScan:
    """The story files' sizes and mtimes, found with ``scandir`` and ``lstat``.

    Each backlog directory's listing is kept with the directory's mtime: a directory
    whose mtime has not changed since (no file added, removed or renamed there, an
    editor's atomic save included) is not listed or its files stat'ed again; every
    ``FULL_EVERY``-th scan looks at every file, which finds a write in place that no
    event reported.  A directory changed within ``SETTLE_NS`` of a scan is listed again
    next time (its mtime may not yet show a change made in the same tick).  What a sync
    saw of a file after an event (``note``) replaces the file's entry in its directory's
    kept listing: a write in place leaves the directory's mtime alone, so the kept entry
    would otherwise show the file as it was before, and every reconcile until the next
    full one would sync it again.
    """

    FULL_EVERY = 10
    SETTLE_NS = 2_000_000_000

    def __init__(self, config: Config, keep: ChangeFilter) -> None:
        self.config = config
        self.keep = keep
        self._dirs: dict[str, tuple[int, dict[str, Stat]]] = {}
        self._by_prefix: dict[str, str] = {}  # a directory's repository-relative prefix -> its key in _dirs
        self.scans = 0
        self.listed = 0  # directories listed, over all scans
        self.statted = 0  # story files stat'ed, over all scans

    def scan(self) -> dict[str, Stat]:
        """Every story file on disk (a fresh look at the directories that changed)."""
        full = self.scans % self.FULL_EVERY == 0
        self.scans += 1
        settled_before = time.time_ns() - self.SETTLE_NS
        dirs: dict[str, tuple[int, dict[str, Stat]]] = {}
        out: dict[str, Stat] = {}
        root = self.config.root_path
        for stage in self.config.stages:
            for backlog in _subdirs(root / stage):
                try:
                    mtime = os.stat(backlog).st_mtime_ns
                except OSError:
                    continue
                kept = None if full else self._dirs.get(backlog)
                files = kept[1] if kept is not None and kept[0] == mtime else self._list(backlog)
                dirs[backlog] = (mtime if mtime < settled_before else -1, files)
                out.update(files)
        self._dirs = dirs
        return out

    def _list(self, backlog: str) -> dict[str, Stat]:
        self.listed += 1
        prefix = os.path.relpath(backlog, self.config.repo).replace(os.sep, "/") + "/"
        self._by_prefix[prefix] = backlog
        files: dict[str, Stat] = {}
        try:
            entries = [e for e in os.scandir(backlog) if e.name.endswith(".md")]
        except OSError:
            return files
        for entry in entries:
            rel = prefix + entry.name
            if not self.keep(ChangeKind.modified, rel):
                continue
            self.statted += 1
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            files[rel] = (st.st_size, st.st_mtime_ns)
        return files

    def note(self, rel: str, found: Stat | None) -> None:
        """Keep what a sync saw of ``rel`` in its directory's listing (a file it lists)."""
        backlog = self._by_prefix.get(rel.rpartition("/")[0] + "/")
        kept = self._dirs.get(backlog) if backlog is not None else None
        if kept is None or rel not in kept[1]:
            return  # not listed: a new file's directory mtime moved, so it is listed next time
        if found is None:
            del kept[1][rel]
        else:
            kept[1][rel] = found


def _subdirs(path: os.PathLike[str]) -> list[str]:
    """The directories in ``path``; symlinked ones too, so that the sync refuses their stories
    (``check.rules.symlinked_directory``) rather than the watch passing over them in silence."""
    try:
        return [e.path for e in os.scandir(path) if e.is_dir()]
    except OSError:
        return []


def differing(old: dict[str, Stat], new: dict[str, Stat]) -> set[str]:
    """Paths that appeared, vanished, or changed size or mtime between two scans."""
    return {p for p in old.keys() | new.keys() if old.get(p) != new.get(p)}


class LiveSync:
    """Applies watch batches to the database, one keep-going transaction each."""

    def __init__(
        self,
        config: Config,
        db: Database,
        repo: GitRepo | git.Repo,
        keep: ChangeFilter,
        metrics: Metrics | None = None,
    ) -> None:
        self.config = config
        self.db = db
        self.repo = as_plain(repo)
        self.keep = keep
        self.metrics = metrics
        self.synced: dict[str, Stat] = {}  # what the last syncs saw on disk
        self.tree = TreeScan(config, keep)
        self.files_synced = 0  # story files handed to a sync to read, over the whole watch
        self.marked: set[str] = set()  # paths these syncs wrote, recorded as the working tree's
        self.reported: dict[str, tuple[Diagnostic, ...]] = {}
        self.batches = 0
        self.rescans = 0
        self.written = 0
        self.last: Outcome | None = None

    def catch_up(self) -> Outcome:
        """Bring the database in step with every story file on disk (the start of a watch),
        then remember the tree.

        * In step already (``in_step``): nothing is synced.
        * On a local (SQLite) database, when ``git status`` names every story file that
          differs from HEAD (and nothing else under the stages, and no entry there is
          assume-unchanged or skip-worktree): HEAD is synced as the post-checkout hook
          syncs it (unless the database is there already), then those files alone from
          the working tree.  The rows are those a working-tree sync of every file writes
          (every other file is HEAD's), but for a file invalid or deleted on disk, which
          leaves HEAD's row rather than an older one or none, and a file git converts on
          checkout (``eol=crlf``), which has the blob's text.  Only the differing paths
          are recorded as the working tree's (``db.worktree``: a fresh database would
          otherwise record every path, and each batch re-read the list), the history is
          git's and the last synced commit is HEAD.  Not on a server database: a clone's
          local commits must not become the team database's last synced commit.
        * Otherwise, or when the sync of HEAD fails: a working-tree sync of every file.
        """
        before = self.tree.scan()
        state = self._head_state()
        if state.in_step:
            self.synced = before
            return Outcome(paths=0, result=SyncResult(), rescan=True)
        changed = state.changed
        if changed is not None and self.db.is_sqlite and (changed or not state.at_head):
            outcome = self._head_then_files(before, state.at_head, changed)
            if outcome is not None:
                return outcome
        outcome = self._run(None, sorted(before), None, rescan=True)
        if outcome.error is None:
            self.synced = before
        return outcome

    def _head_then_files(self, before: dict[str, Stat], at_head: bool, changed: list[str]) -> Outcome | None:
        """HEAD synced (unless the database is there already), then the working tree's
        ``changed`` files; None when that cannot stand for a working-tree sync of every
        file (git named something that is not a story file, or the sync of HEAD failed)."""
        if not all(self.keep(ChangeKind.modified, p) for p in changed):
            return None
        head = None
        if not at_head:
            head = self._run(None, [], None, rescan=True, options=SyncOptions(keep_going=True, trigger="watch"))
            if head.error is not None:
                return None
        self.synced = before
        if not changed:
            return head
        rest = self._run(tuple(sorted(changed)), sorted(changed), None, rescan=True)
        return rest if head is None else _then(head, rest, changed)

    def apply(self, batch: Batch) -> Outcome | None:
        """Sync the batch's paths (plus whatever a rescan finds); None if nothing changed."""
        paths = {p for p in batch.paths if self.keep(ChangeKind.modified, p)}
        if batch.rescan:
            self.rescans += 1
            paths |= differing(self.synced, self.tree.scan())
            paths |= self._taken_back()
        if not paths:
            return None
        return self._run(tuple(sorted(paths)), sorted(paths), batch.first_event, rescan=batch.rescan)

    def in_step(self) -> bool:
        """Whether a working-tree sync of every file would write nothing (``_head_state``)."""
        return self._head_state().in_step

    def _head_state(self) -> _HeadState:
        """Where the database and the working tree stand against HEAD; asks git and the
        database, reads no story file."""
        # local: the database side of a watch start, off the batch path's import
        from sqlalchemy import func, select

        from storysync.db import tables as m
        from storysync.db.database import LAST_SYNCED, get_state
        from storysync.git import runner

        plain = runner.as_plain(self.repo)
        stages = [self.config.rel_to_repo(stage) for stage in self.config.stages]
        changed = runner.work_tree_changes(plain, stages)
        try:
            self.db.ensure_schema()  # as the sync would: create or migrate
            with self.db.read() as conn:
                last = get_state(conn, LAST_SYNCED)
                marked = worktree.read(conn)
                s = m.stories.c
                pending = conn.execute(select(func.count()).where(s.revision > s.synced_revision)).scalar()
        except StorysyncError:
            return _HeadState(at_head=False, pending=True, changed=None)
        at_head = last is not None and not marked and last == runner.head(plain.top)
        return _HeadState(at_head, bool(pending), changed)

    def _run(
        self,
        paths: tuple[str, ...] | None,
        considered: list[str],
        first: float | None,
        rescan: bool,
        options: SyncOptions | None = None,
    ) -> Outcome:
        """One sync (the working tree's ``paths``, every file for None, or ``options``'),
        recorded in the watch's counters, problems and metrics."""
        self.files_synced += len(considered)
        seen = {p: stat_of(str(self.config.repo / p)) for p in considered}
        started = time.monotonic()
        outcome = Outcome(paths=len(considered), rescan=rescan)
        try:
            outcome.result = sync(self.config, self.db, self.repo, options or self._options(paths))
        except StorysyncError as exc:
            outcome.error = str(exc)
        finished = time.monotonic()
        outcome.duration = finished - started
        outcome.lag = None if first is None else finished - first
        if outcome.result is not None:
            self._remember(seen)
            self.marked.update(outcome.result.worktree_written)
            self._track_problems(outcome, considered)
            self.written += outcome.result.upserted + len(outcome.result.deleted)
        self.batches += 1
        self.last = outcome
        if self.metrics is not None:
            conflicts = self._open_conflicts() if outcome.error is None else None
            self.metrics.record(outcome, invalid_files=self.open_problems, open_conflicts=conflicts)
        return outcome

    def _taken_back(self) -> set[str]:
        """Paths these syncs wrote that a commit-based sync (a hook's, while watch runs) has
        since read back from its commit: the files on disk are what watch shows, so they
        are synced again (and recorded again where they differ)."""
        if not self.marked:
            return set()
        try:
            gone = self.marked - worktree.current(self.db)
        except StorysyncError:
            return set()  # the database cannot say now: the next reconcile asks again
        self.marked -= gone
        return gone

    def _open_conflicts(self) -> int | None:
        """The open-conflicts count for the gauge; None if the database cannot say now."""
        try:
            return count_open(self.db)
        except (SQLAlchemyError, StorysyncError):
            return None

    @staticmethod
    def _options(paths: tuple[str, ...] | None) -> SyncOptions:
        return SyncOptions(working_tree=True, keep_going=True, trigger="watch", paths=paths)

    def _remember(self, seen: dict[str, Stat | None]) -> None:
        for path, found in seen.items():
            self.tree.note(path, found)
            if found is None:
                self.synced.pop(path, None)
            else:
                self.synced[path] = found

    def _track_problems(self, outcome: Outcome, considered: Iterable[str]) -> None:
        assert outcome.result is not None
        now: dict[str, list[Diagnostic]] = {}
        for diag in outcome.result.diagnostics:
            now.setdefault(diag.path, []).append(diag)
        for path, diags in now.items():
            if self.reported.get(path) != tuple(diags):
                outcome.problems.extend(d for d in diags if d not in self.reported.get(path, ()))
                self.reported[path] = tuple(diags)
        for path in considered:
            if path in self.reported and path not in now:
                del self.reported[path]
                if (self.config.repo / path).exists():
                    outcome.fixed.append(path)

    @property
    def open_problems(self) -> int:
        """How many files are currently skipped as invalid."""
        return len(self.reported)


class _HeadState(NamedTuple):
    """What a watch start asks before it syncs anything."""

    at_head: bool  # the database was last synced from HEAD and holds no row from the working tree
    pending: bool  # rows wait for export
    changed: list[str] | None  # what git status reports under the stages (None: git cannot say)

    @property
    def in_step(self) -> bool:
        """A working-tree sync of every file would write nothing."""
        return self.at_head and not self.pending and self.changed == []


def _then(head: Outcome, rest: Outcome, reread: Collection[str]) -> Outcome:
    """A start's two syncs (HEAD, then the ``reread`` files that differ from it) as one
    outcome: what the first said of a file the second read again is the second's to say."""
    if rest.result is None or head.result is None:
        return rest
    first, second = head.result, rest.result
    written = {*second.created, *second.updated}
    deleted = ({*first.deleted} - written) | {*second.deleted}
    created = {*first.created, *second.created} - deleted
    merged = SyncResult(
        outcome=second.outcome if second.outcome != "ok" else first.outcome,
        files=first.files + second.files,
        created=sorted(created),
        updated=sorted({*first.updated, *second.updated} - created - deleted),
        moved=sorted({*first.moved, *second.moved}),
        deleted=sorted(deleted),
        conflicts=sorted({*first.conflicts, *second.conflicts}),
        unchanged=first.unchanged,
        diagnostics=sorted([d for d in first.diagnostics if d.path not in reread] + second.diagnostics),
        notices=first.notices + second.notices,
        worktree_written=second.worktree_written,
    )
    return Outcome(
        paths=head.paths + rest.paths,
        result=merged,
        problems=[d for d in head.problems if d.path not in reread] + rest.problems,
        duration=head.duration + rest.duration,
        rescan=True,
    )


def health(db: Database, watcher: Watcher) -> dict[str, bool]:
    """The /healthz checks: the database answers a query, the observer runs."""
    try:
        with db.read() as conn:
            conn.execute(text("SELECT 1"))
        reachable = True
    except StorysyncError:
        reachable = False
    return {"database": reachable, "observer": watcher.alive}
