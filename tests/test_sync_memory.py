"""A full sync's memory savings change nothing that is reported or written.

Each story is kept as a small ``Record`` once its file's own checks are done (the
cross-file checks still point at the same line and column), and rows are written
in batches inside the one transaction.
"""

from __future__ import annotations

import json
import sqlite3

import pytest

from storysync.check.rules import check_set
from storysync.check.sources import GitTreeSource
from storysync.check.validate import check_entries, check_one, checker_for
from storysync.config import load_config
from storysync.git.repo import open_repo
from storysync.ingest import apply as sync_module
from tests.conftest import Repo


def _problem_repo(repo: Repo) -> str:
    repo.story("backlog", "web", "WEB-1", "a", title="A", depends_on=["WEB-2"], points=3, tags=["x", "y"])
    repo.story("backlog", "web", "WEB-2", "b", title="B", depends_on=["WEB-1", "NOPE-9"])
    repo.story("active", "api", "WEB-1", "again", title="Duplicate id")
    repo.story("completed", "api", "API-1", "c", title="C", status="active")
    return repo.commit("stories with cross-file problems")


def test_records_keep_every_cross_file_diagnostic(repo: Repo) -> None:
    sha = _problem_repo(repo)
    config = load_config(repo.path)
    source = GitTreeSource(open_repo(repo.path), config, sha)
    checker = checker_for(config)
    compact = check_entries(source, source.entries(), checker, compact=True)
    stories = [story for story, _ in (check_one(source, e, checker) for e in source.entries()) if story is not None]
    assert [str(d) for d in check_set(compact.stories)] == [str(d) for d in check_set(stories)]
    codes = {d.code for d in compact.diagnostics}
    assert {"duplicate-id", "missing-dependency", "dependency-cycle", "status-dir"} <= codes
    record = next(s for s in compact.stories if s.id == "WEB-1" and s.backlog == "web")
    assert {path for path, _ in record.marks} == {(), ("id",), ("depends_on",), ("depends_on", 0)}
    title, _, points, _, _, tags, extra = record.columns
    assert (title, points, json.loads(tags), json.loads(extra)) == ("A", 3, ["x", "y"], {})
    assert record.depends_on == ["WEB-2"]


def test_rows_are_written_in_batches_within_one_run(repo: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sync_module, "WRITE_BATCH", 3)
    for i in range(1, 11):
        repo.story("backlog", "web", f"WEB-{i}", "s", title=f"Story {i}")
    repo.commit("ten stories")
    assert repo.run("sync") == 0
    for i in range(1, 8):
        repo.story("active", "web", f"WEB-{i}", "s", title=f"Story {i} started")
        (repo.path / "backlog" / "web" / f"WEB-{i}-s.md").unlink()
    repo.commit("seven stories start")
    assert repo.run("sync", "--full") == 0
    with sqlite3.connect(repo.db_path) as conn:
        rows = conn.execute("SELECT id, status, title, revision FROM stories ORDER BY id").fetchall()
        runs = conn.execute("SELECT outcome, upserted FROM sync_runs ORDER BY id").fetchall()
    conn.close()
    assert len(rows) == 10
    started = {r[0] for r in rows if r[1] == "active"}
    assert started == {f"WEB-{i}" for i in range(1, 8)}
    assert all(r[3] == 2 for r in rows if r[0] in started)
    assert runs == [("ok", 10), ("ok", 7)]


def _plan(conn: sqlite3.Connection, query: str, *args: str) -> str:
    return " ".join(str(step[3]) for step in conn.execute(f"EXPLAIN QUERY PLAN {query}", args))


def test_status_counts_read_an_index_not_every_row(backlog_repo: Repo) -> None:
    assert backlog_repo.run("sync") == 0
    with sqlite3.connect(backlog_repo.db_path) as conn:
        live = _plan(
            conn,
            "SELECT backlog_id, status, count(*) FROM stories WHERE deleted_at IS NULL GROUP BY backlog_id, status",
        )
        deleted = _plan(conn, "SELECT count(*) FROM stories WHERE deleted_at IS NOT NULL")
        by_id = _plan(conn, "SELECT status FROM stories WHERE id IN (?, ?) AND deleted_at IS NULL", "WEB-1", "API-1")
        by_path = _plan(conn, "SELECT id FROM stories WHERE path IN (?) AND deleted_at IS NULL", "backlog/web/x.md")
    conn.close()
    assert "ix_stories_live_counts" in live
    assert "ix_stories_deleted" in deleted
    assert "sqlite_autoindex_stories_1" in by_id  # the primary key, not a scan of every live row
    assert "uq_stories_live_path" in by_path


def test_a_compacted_check_lets_go_of_the_entries_it_read(repo: Repo) -> None:
    sha = _problem_repo(repo)
    config = load_config(repo.path)
    source = GitTreeSource(open_repo(repo.path), config, sha)
    entries = source.entries()
    count = len(entries)
    full = check_entries(source, list(entries), checker_for(config))
    compact = check_entries(source, entries, checker_for(config), compact=True)
    assert entries == []  # consumed: a full sync does not hold every entry until its end
    assert compact.files == full.files == count
    assert [str(d) for d in compact.diagnostics] == [str(d) for d in full.diagnostics]
