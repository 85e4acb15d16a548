"""files → DB: ``sync()``, the library entry point that the CLI, the hooks and watch call.

A run takes the writer's locks, works out what to read (the paths a two-point git diff
names; every file of the commit when no last synced commit can be trusted; the given
working-tree paths; every file on disk), then checks and plans (``ingest.plan``) and
writes in one transaction (``ingest.apply``).  After the commit it logs the run and
pushes its batch of changes to the webhook (``ingest.runlog``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING

from storysync.check.sources import GitTreeSource, Source, WorkTreeSource
from storysync.config import Config
from storysync.db import worktree
from storysync.db.database import LAST_SYNCED, Database, get_state, set_state, utcnow
from storysync.db.locks import writer_lock
from storysync.db.repositories import REPOSITORY_STATE
from storysync.errors import EXIT_RUNTIME, DatabaseError, RepositoryStateError, StorysyncError
from storysync.git import runner
from storysync.git.runner import as_plain
from storysync.ingest.apply import finish, record_failure
from storysync.ingest.history import HistoryPlan
from storysync.ingest.overlay import Promotion
from storysync.ingest.plan import (
    changed_entries,
    check_entries_against_db,
    check_paths,
    check_tree,
    lost_to_file,
    story_paths,
    with_marked,
)
from storysync.ingest.runlog import after_sync
from storysync.ingest.types import Provenance, SyncOptions, SyncResult

if TYPE_CHECKING:
    import git

    from storysync.git.runner import CommitInfo, GitRepo


def sync(
    config: Config,
    db: Database,
    repo: GitRepo | git.Repo,
    options: SyncOptions | None = None,
    progress: Callable[[int], None] | None = None,
) -> SyncResult:
    """Bring the database in step with the story files (SPEC §6).

    ``repo`` is a plain ``runner.GitRepo`` (no GitPython import, as the CLI passes)
    or a GitPython ``git.Repo``; git is asked through plain processes either way.
    """
    plain = as_plain(repo)
    options = replace(options or SyncOptions(), merge=config.merge)
    started = time.perf_counter()
    with run_locks(db, plain, options.dry_run):
        result = _sync_locked(config, db, plain, options, progress)
    if options.dry_run:
        return result
    # After the commit, outside the lock: the run's log event and its webhook batch (SPEC §10).
    # Bounded in time and never raises: a notification never blocks or fails a sync.
    after_sync(config, db, result, time.perf_counter() - started)
    return result


@contextmanager
def run_locks(db: Database, repo: GitRepo, dry_run: bool) -> Iterator[None]:
    """The schema made current, then, unless a dry run (which writes nothing), the
    repository's writer lock and the database's run lock held for the block: what every
    run that writes (a sync, a branch's overlay) holds from its first read to its commit."""
    db.ensure_schema()
    if dry_run:
        yield
        return
    with writer_lock(repo.common_dir), db.run_lock():
        yield


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
        named = not config.repository or options.dry_run or get_state(conn, REPOSITORY_STATE) == config.repository
    if not named:  # a named repository's first sync says its name (how list --all-repositories shows it)
        with db.write() as conn:
            set_state(conn, REPOSITORY_STATE, config.repository)
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
            return run_paths(config, db, source, provenance, options, result, progress)
    else:
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
    checked, planner = check_tree(config, source, progress)
    return finish(db, checked, planner, provenance, options, result, promotion=Promotion(config.stages))


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
    return finish(db, checked, planner, provenance, options, result, promotion=Promotion(config.stages))


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
    too, whatever the range (``storysync.worktree``), and so are the files of rows
    holding a database version that lost to the file (``plan.lost_to_file``)."""
    head = runner.head_info(repo) if options.to_rev in (None, "HEAD") else None
    to = head.sha if head is not None else runner.resolve(repo, options.to_rev or "HEAD")
    start = runner.resolve(repo, options.from_rev) if options.from_rev else None
    last = result.from_commit
    ancestry = Ancestry(repo, to)
    base, notice = _base(ancestry, last, options, shared=not db.is_sqlite)
    if notice:
        result.notices.append(notice)
    result.from_commit, result.to_commit = start or last, to
    provenance = _provenance(head or runner.commit_info(repo, to))
    source = GitTreeSource(repo, config, to)
    if base is None:
        checked, planner = check_tree(config, source, progress)
        result.full = True
    else:
        paths, entries = changed_entries(config, repo, [base, start], to)
        with db.read() as conn:
            reread = {*marked, *(p for p in lost_to_file(conn).values() if p is not None)}
        if reread:
            paths, entries = with_marked(config, repo, to, reread, paths, entries)
        checked, planner = check_entries_against_db(config, db, source, entries, paths, progress=progress)
        result.full = False
    walk_from = _walk_from(ancestry, start or last, options)
    if options.full and options.history and runner.is_shallow(repo):
        result.notices.append(
            "this is a shallow clone: the status history is rebuilt from the commits it has "
            "(git fetch --unshallow for all of it)"
        )
    moves = HistoryPlan(config, repo, walk_from, to, rebuild=options.full and options.history)
    result.notices.extend(moves.notices)
    promotion = Promotion(config.stages, merged=ancestry.contains)  # a branch whose tip `to` contains is merged
    return finish(db, checked, planner, provenance, options, result, moves, resynced=marked, promotion=promotion)


class Ancestry:
    """Whether commits exist and lead to ``to``, each asked of git once (a run asks twice)."""

    def __init__(self, repo: GitRepo, to: str) -> None:
        self.repo = repo
        self.to = to
        self._contains: dict[str, bool] = {}
        self._exists: dict[str, bool] = {}

    def contains(self, sha: str) -> bool:
        """Whether ``sha`` is ``to`` or one of its ancestors (False for an unknown commit)."""
        if sha not in self._contains:
            self._contains[sha] = runner.is_ancestor(self.repo, sha, self.to)
        return self._contains[sha]

    def behind(self, sha: str) -> bool:
        """Whether ``to`` is one of ``sha``'s ancestors (a sync of ``to`` would go back)."""
        return runner.is_ancestor(self.repo, self.to, sha)

    def exists(self, sha: str) -> bool:
        """Whether ``sha`` is a commit the repository has."""
        if self._contains.get(sha):
            return True
        if sha not in self._exists:
            self._exists[sha] = runner.commit_exists(self.repo, sha)
        return self._exists[sha]


def _base(ancestry: Ancestry, last: str | None, options: SyncOptions, *, shared: bool) -> tuple[str | None, str | None]:
    """The commit the database reflects, if a diff from it can be trusted; else a notice.

    A ``to`` older than the last synced commit (its ancestor), or one whose relation to it
    this clone cannot tell (the last synced commit is not here: another clone synced a
    commit this one has not fetched, or it is beyond a shallow clone's depth, or was
    garbage-collected), would rewind the database.  A ``shared`` database (a server's: the
    team database, which several clones and CI jobs sync into) refuses that unless
    ``allow_rewind``; a local SQLite database follows the checkout, as SPEC §6 says.
    A rewritten history (neither contains the other) is reconciled, as SPEC §6 says.
    """
    to = ancestry.to
    if last is None:
        return None, None if options.full else f"no last synced commit: a full sync of {to[:12]}"
    if ancestry.contains(last):
        return None if options.full else last, None
    if not ancestry.exists(last):
        why = f"last synced commit {last[:12]} is not in this clone: {_missing(ancestry)}"
        return None, _rewind(ancestry, why, "may rewind", options, shared)
    if ancestry.behind(last):
        why = f"{to[:12]} is older than the last synced commit {last[:12]} (one of its ancestors)"
        return None, _rewind(ancestry, why, "would rewind", options, shared)
    if options.full:
        return None, None
    return None, (
        f"last synced commit {last[:12]} is not an ancestor of {to[:12]} "
        f"(history rewritten by a rebase, force-push or reset): a full reconcile of {to[:12]}"
    )


def _missing(ancestry: Ancestry) -> str:
    """What a last synced commit this clone lacks may be."""
    shallow = runner.is_shallow(ancestry.repo)
    return (
        "it may be a commit this clone has not fetched ('git fetch'), "
        + ("or one older than this shallow clone's history ('git fetch --unshallow'), " if shallow else "")
        + "or one garbage-collected here after a history rewrite"
    )


def _rewind(ancestry: Ancestry, why: str, effect: str, options: SyncOptions, shared: bool) -> str:
    """The notice of a rewind of a local database, or one ``--allow-rewind`` asked for;
    else refuse it (exit 4): a shared database is never taken back by a stale clone."""
    to = ancestry.to[:12]
    if options.allow_rewind:
        return f"{why}; a full reconcile of {to} (--allow-rewind)"
    if not shared:
        return f"{why}; a full reconcile of {to}"
    raise RepositoryStateError(
        f"{ancestry.repo.top}: {why}; syncing {to} {effect} the database to older files, so nothing was "
        f"written: fetch and check out the newer commit, or pass --allow-rewind to reconcile it with {to}"
    )


def _walk_from(ancestry: Ancestry, start: str | None, options: SyncOptions) -> tuple[bool, str | None]:
    """Whether to walk commits for history, and from where (None: the whole log)."""
    if options.full and options.history:
        return True, None
    if start is None or not ancestry.exists(start):
        return False, None
    if ancestry.contains(start):
        return True, start
    fork = runner.merge_base(ancestry.repo, start, ancestry.to)  # rewritten history: the moves since the
    return (True, fork) if fork else (False, None)  # fork point; ones already recorded are not recorded again
