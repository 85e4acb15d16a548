"""Export costs what there is to export: the pending rows come from their own index,
a target path is looked up alone, and only the directories an export writes (or a
killed export was writing) are swept for its temporary files."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import event

from storysync.db.writer import update_story
from storysync.export.run import WRITING_MARKER, plan
from tests.conftest import Repo, run_cli_subprocess
from tests.export_helpers import handles, killed_in_pre_commit, synced


def _statements_of_plan(repo: Repo) -> tuple[int, list[tuple[str, Any]]]:
    """The actions ``plan`` made and the SQL it ran, each with its parameters."""
    ran: list[tuple[str, Any]] = []
    with handles(repo) as h:

        def seen(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
            ran.append((statement, parameters))

        event.listen(h.db.engine, "before_cursor_execute", seen)
        actions = plan(h.config, h.db)
    return len(actions), [(sql, params) for sql, params in ran if sql.lstrip().upper().startswith("SELECT")]


def test_planning_an_export_reads_no_story_row_but_the_pending_ones(backlog_repo: Repo) -> None:
    """No query of the plan walks the stories table: the pending rows through
    ``ix_stories_export_pending``, a target path through the live-path index."""
    synced(backlog_repo)
    with handles(backlog_repo) as h:
        update_story(h.db, "WEB-2", points=13)
    count, statements = _statements_of_plan(backlog_repo)
    assert count == 1
    assert statements
    with sqlite3.connect(backlog_repo.db_path) as conn:
        for sql, params in statements:
            steps = [row[-1] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]
            on_stories = [s for s in steps if " stories" in s]
            assert on_stories, (sql, steps)
            # a lookup (SEARCH) or a walk of the pending rows only, never a walk of every story
            assert all(s.startswith("SEARCH") or "ix_stories_export_pending" in s for s in on_stories), (sql, steps)
    conn.close()


def test_export_leaves_directories_it_does_not_write_alone(backlog_repo: Repo) -> None:
    """A file named like export's temporaries in a backlog no export wrote to is not
    touched (no sweep of the tree), and nothing of the export's own is left behind."""
    synced(backlog_repo)
    stranger = backlog_repo.write("backlog/api/.storysync-not-ours.tmp", "someone else's")
    with handles(backlog_repo) as h:
        update_story(h.db, "WEB-2", points=13)
    assert backlog_repo.run("export") == 0
    assert stranger.read_text() == "someone else's"
    assert not list((backlog_repo.path / "active" / "web").glob(".storysync-*.tmp"))
    assert not (backlog_repo.path / ".git" / WRITING_MARKER).exists()


def test_a_killed_export_is_swept_where_it_was_writing_after_a_sync_recorded_its_files(
    backlog_repo: Repo,
) -> None:
    """Killed in the pre-commit hook of ``export --commit`` with its undo links beside the
    story; a working-tree sync then records the file, so no pending row points there: the
    next export still sweeps that directory, from the record the killed one left."""
    synced(backlog_repo)
    hook = killed_in_pre_commit(backlog_repo)
    leftovers = list(backlog_repo.path.rglob(".storysync-*.tmp"))
    assert leftovers
    assert (backlog_repo.path / ".git" / WRITING_MARKER).exists()
    hook.unlink()
    assert backlog_repo.run("sync", "--working-tree") == 0
    with handles(backlog_repo) as h:
        update_story(h.db, "API-1", points=2)  # pending elsewhere: the export writes another directory
        assert h.count("stories", "revision > synced_revision") == 1
    assert backlog_repo.run("export") == 0
    assert not [p for p in leftovers if p.exists()]
    assert not (backlog_repo.path / ".git" / WRITING_MARKER).exists()


def test_checking_the_exported_tree_reads_git_through_one_process(backlog_repo: Repo, tmp_path: Path) -> None:
    """``export --commit`` checks its files against HEAD's tree, following ``depends_on``
    into files it does not write, one at a time: one ``git cat-file --batch`` answers
    every read, however many rows."""
    for i in range(3, 15):
        backlog_repo.story("backlog", "api", f"API-{i}", f"base{i}", title=f"Base {i}")
        backlog_repo.story("backlog", "web", f"WEB-{i}", f"s{i}", title=f"S{i}", depends_on=[f"API-{i}"])
    backlog_repo.commit("stories and what they depend on")
    synced(backlog_repo)
    with handles(backlog_repo) as h:
        for i in range(3, 15):
            update_story(h.db, f"WEB-{i}", points=5)
    trace = tmp_path / "trace.txt"
    done = run_cli_subprocess(backlog_repo, "export", "--commit", env={"GIT_TRACE": str(trace)})
    assert done.returncode == 0, done.stderr
    lines = trace.read_text().splitlines()
    started = [line.split("trace: built-in: git ", 1)[1] for line in lines if "built-in: git " in line]
    assert sum(1 for command in started if command.startswith("cat-file")) <= 2, started
