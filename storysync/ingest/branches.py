"""``sync --branch NAME``: record a branch's work in progress as an overlay (issue 16).

The database mirrors the main line; a story goes ``active`` on a feature branch long
before that is merged.  A branch run finds the stories whose file differs between the
merge base of the branch and the main line (the commit the database last synced, else
HEAD) and the branch tip, checks them as a sync does (the branch's tree is the rest of
the repository), and replaces the branch's rows of ``branch_stories`` in one
transaction.  ``stories`` and ``status_history`` are never written.  A name that no
longer resolves (the branch was deleted) or whose tip the main line contains (merged)
drops the branch's overlay.  Invalid files: as in a sync, nothing is written (only the
audit row) and the exit code is 1; ``--keep-going`` records the valid ones and keeps
the rows of the invalid ones as they were.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection

from storysync.check.rules import name_id
from storysync.check.sources import GitTreeSource
from storysync.check.validate import Checked, SourceKnown, check_entries, checker_for
from storysync.config import Config
from storysync.db.database import LAST_SYNCED, Database, get_state, utcnow
from storysync.errors import Diagnostic, RepositoryStateError
from storysync.git import runner
from storysync.git.runner import as_plain
from storysync.ingest.apply import finish_run, insert_run, record_invalid
from storysync.ingest.overlay import (
    GONE,
    MERGED,
    branch_rows,
    differs,
    drop_branch,
    in_main_line,
    main_rows,
    replace_branch,
)
from storysync.ingest.plan import changed_entries
from storysync.ingest.run import run_locks
from storysync.ingest.runlog import after_sync
from storysync.ingest.types import SyncOptions, SyncResult
from storysync.story.layout import classify
from storysync.story.model import Record

if TYPE_CHECKING:
    import git

    from storysync.git.runner import CommitInfo, GitRepo


@dataclass
class BranchResult:
    """What a branch run did, for the report and the exit code."""

    branch: str
    dry_run: bool = False
    outcome: str = "ok"  # ok | invalid | dropped (merged or gone)
    run_id: int | None = None
    tip: str | None = None
    base: str | None = None  # the merge base with the main line
    main: str | None = None  # the main line's commit
    files: int = 0
    differing: list[str] = field(default_factory=list)  # the story ids in the overlay after the run
    changed: list[str] = field(default_factory=list)  # overlay rows written new or changed
    dropped: list[str] = field(default_factory=list)  # overlay rows dropped
    diagnostics: list[Diagnostic] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    recorded: bool = False  # the overlay was replaced (or would be, for a dry run)

    @property
    def exit_code(self) -> int:
        return 1 if self.diagnostics else 0


def sync_branch(
    config: Config, db: Database, repo: GitRepo | git.Repo, branch: str, options: SyncOptions | None = None
) -> BranchResult:
    """Record the overlay of ``branch`` (a local branch, else ``origin/<branch>``, else any
    commit-ish, recorded under the name given), or drop it when the name no longer
    resolves or the main line contains its tip.  Takes the writer's locks, as a sync does."""
    plain = as_plain(repo)
    options = options or SyncOptions()
    name = branch.removeprefix("refs/heads/")
    started = time.perf_counter()
    with run_locks(db, plain, options.dry_run):
        result = _branch_locked(config, db, plain, name, options)
    if options.dry_run:
        return result
    # after the commit, outside the locks: the run's log event and its webhook batch, as a sync's
    audit = SyncResult(
        outcome="invalid" if result.diagnostics else "ok",
        run_id=result.run_id,
        from_commit=result.base,
        to_commit=result.tip,
        files=result.files,
        diagnostics=result.diagnostics,
    )
    after_sync(config, db, audit, time.perf_counter() - started)
    return result


def resolve_branch(repo: GitRepo, name: str) -> str | None:
    """The commit ``name`` names: ``refs/heads/NAME``, else ``refs/remotes/origin/NAME``, else
    any commit-ish; None when it names none (the branch was deleted)."""
    for candidate in (f"refs/heads/{name}", f"refs/remotes/origin/{name}", name):
        if runner.commit_exists(repo, candidate):
            return runner.resolve(repo, candidate)
    return None


def _branch_locked(config: Config, db: Database, repo: GitRepo, name: str, options: SyncOptions) -> BranchResult:
    result = BranchResult(name, dry_run=options.dry_run)
    result.tip = resolve_branch(repo, name)
    if result.tip is None:
        result.notices.append(f"{name}: no such branch (deleted?): its overlay is dropped")
        return _drop(config, db, options, result, GONE)
    with db.read() as conn:
        last = get_state(conn, LAST_SYNCED)
    result.main = _main_line(repo, last, result)
    if runner.is_ancestor(repo, result.tip, result.main):
        result.notices.append(
            f"{name}: merged into the main line ({result.tip[:12]} is in {result.main[:12]}): its overlay is dropped"
        )
        return _drop(config, db, options, result, MERGED)
    result.base = runner.merge_base(repo, result.tip, result.main)
    if result.base is None:
        raise RepositoryStateError(
            f"{repo.top}: {name} ({result.tip[:12]}) shares no history with the main line ({result.main[:12]})"
        )
    paths, entries = changed_entries(config, repo, [result.base], result.tip)
    source = GitTreeSource(repo, config, result.tip)
    checker = checker_for(config)
    checked = check_entries(source, entries, checker, SourceKnown(config, source, checker, exclude=set(paths)))
    result.files, result.diagnostics = checked.files, checked.diagnostics
    if checked.diagnostics and not options.keep_going:
        result.outcome = "invalid"
        if not options.dry_run:
            audit = SyncResult(
                from_commit=result.base, to_commit=result.tip, files=checked.files, diagnostics=checked.diagnostics
            )
            result.run_id = record_invalid(db, options, audit)
        return result
    rows = _overlay_rows(repo, config, result, paths, checked)
    if options.dry_run:
        with db.read() as conn:
            old = branch_rows(conn, name)
            wanted = _differing(conn, rows, old, checked.invalid_paths)
        result.differing = sorted(row["story_id"] for row in wanted)
        result.changed = sorted(r["story_id"] for r in wanted if differs(old.get(r["story_id"]), r))
        result.dropped = sorted(set(old) - set(result.differing))
        result.recorded = True
        return result
    with db.write() as conn:
        now = utcnow()
        result.run_id = _start_run(conn, options, result, now)
        wanted = _differing(conn, rows, branch_rows(conn, name), checked.invalid_paths)
        result.changed, result.dropped = replace_branch(conn, name, wanted, result.run_id, now, config.stages)
        result.differing = sorted(row["story_id"] for row in wanted)
        result.recorded = True
        _finish_run(conn, result)
    if checked.diagnostics:
        result.outcome = "invalid"
    return result


def _main_line(repo: GitRepo, last: str | None, result: BranchResult) -> str:
    """The commit the database reflects (the last synced one), else HEAD."""
    if last is None:
        head = runner.head_info(repo).sha
        result.notices.append(f"no last synced commit: the main line is HEAD ({head[:12]})")
        return head
    if not runner.commit_exists(repo, last):
        raise RepositoryStateError(
            f"{repo.top}: the last synced commit {last[:12]} (the main line) is not in this clone, so the "
            f"branch cannot be compared with it; nothing was written: fetch it (a CI checkout needs its history, "
            "e.g. fetch-depth: 0)"
        )
    return last


def _drop(config: Config, db: Database, options: SyncOptions, result: BranchResult, reason: str) -> BranchResult:
    result.outcome = "dropped"
    if options.dry_run:
        with db.read() as conn:
            result.dropped = sorted(branch_rows(conn, result.branch))
        return result
    with db.write() as conn:
        now = utcnow()
        result.run_id = _start_run(conn, options, result, now)
        result.dropped = drop_branch(conn, result.branch, result.run_id, now, config.stages, reason)
        _finish_run(conn, result)
    return result


def _start_run(conn: Connection, options: SyncOptions, result: BranchResult, now: datetime) -> int:
    """The run's ``sync_runs`` row (from the merge base to the tip; no main row written)."""
    audit = SyncResult(from_commit=result.base, to_commit=result.tip, files=result.files)
    return insert_run(conn, options, audit, now)


def _finish_run(conn: Connection, result: BranchResult) -> None:
    assert result.run_id is not None
    finish_run(conn, result.run_id, SyncResult(diagnostics=result.diagnostics))  # no main row written


def _overlay_rows(
    repo: GitRepo, config: Config, result: BranchResult, paths: Sequence[str], checked: Checked
) -> list[dict[str, Any]]:
    """The overlay rows of the stories the branch changed: one per valid story at the tip
    (added or modified) and one per story whose file the branch deleted."""
    assert result.base is not None
    assert result.tip is not None
    at_base: dict[str, str] = {}
    for entry in runner.tree_entries(repo, result.base, list(paths)):
        sid = _file_id(entry.path)
        if sid is not None and classify(config, entry.path) is not None:
            at_base[entry.path] = sid
    base_ids = set(at_base.values())
    last = _last_commits(repo, config, result.base, result.tip)
    tip_info: CommitInfo | None = None

    def made(path: str) -> CommitInfo:
        nonlocal tip_info
        if path in last:
            return last[path]
        if tip_info is None:
            tip_info = runner.commit_info(repo, result.tip or "")
        return tip_info

    now = utcnow()
    common = {"base_commit": result.base, "tip_commit": result.tip, "recorded_at": now}
    rows: list[dict[str, Any]] = []
    for story in checked.valid_stories:
        info = made(story.path)
        kind = "modified" if story.id in base_ids else "added"
        rows.append(_row(story.id, story.path, story, kind, info) | common)
    present = {story.id for story in checked.stories}  # an invalid file is no deletion either
    present.update(sid for sid in map(_file_id, checked.invalid_paths) if sid is not None)
    for path, sid in sorted(at_base.items()):
        if sid not in present and sid not in {r["story_id"] for r in rows}:
            rows.append(_row(sid, path, None, "deleted", made(path)) | common)
    return rows


def _row(sid: str, path: str, story: Record | None, kind: str, info: CommitInfo) -> dict[str, Any]:
    return {
        "story_id": sid,
        "path": path,
        "status": story.status if story is not None else None,
        "title": story.columns[0] if story is not None else None,
        "kind": kind,
        "content_hash": story.content_hash if story is not None else None,
        "commit": info.sha,
        "author": info.author,
        "changed_at": info.when,
    }


def _file_id(path: str) -> str | None:
    """The id a story file's name starts with (``WEB-12-login.md`` → ``WEB-12``; not ``notes-draft.md``)."""
    sid = name_id(path)
    return sid if sid is not None and sid.partition("-")[2].isdigit() else None


def _last_commits(repo: GitRepo, config: Config, base: str, tip: str) -> dict[str, CommitInfo]:
    """The last commit of ``base..tip`` that touched each story path (one ``git log``)."""
    out: dict[str, CommitInfo] = {}
    for commit in runner.log(repo, base, tip, config.root):
        for change in commit.changes:
            out[change.path] = commit.info
    return out


def _differing(
    conn: Connection,
    rows: Sequence[dict[str, Any]],
    old: Mapping[str, dict[str, Any]],
    invalid_paths: set[str],
) -> list[dict[str, Any]]:
    """``rows`` without the stories the main line already has as the branch does (the same
    content; a story deleted in both), plus the old rows of files invalid now (kept as they
    were, as ``--keep-going`` keeps a sync's rows)."""
    main = main_rows(conn, {row["story_id"] for row in rows})
    out = [r for r in rows if not in_main_line(r["kind"], r["content_hash"], r["path"], main.get(r["story_id"]))]
    taken = {row["story_id"] for row in out}
    for sid, row in old.items():
        if row["path"] in invalid_paths and sid not in taken:
            out.append({k: v for k, v in row.items() if k != "branch"})
    return out
