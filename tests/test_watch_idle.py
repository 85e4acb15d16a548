"""A watch that has nothing to do does nothing: its start on a repository the database
is in step with reads no story file, and a reconcile of a tree that did not change lists
no directory and stats no story file.  Real trees, real git, real SQLite; the counts
come from ``LiveSync``'s own counters."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import text

from storysync.config import load_config
from storysync.db.database import LAST_SYNCED, Database, get_state
from storysync.git.runner import open_repo
from storysync.watch.events import Batch, ChangeKind, StoryFilter
from storysync.watch.live import LiveSync
from tests.conftest import Repo, story_text

WEB1 = "backlog/web/WEB-1-login.md"


@contextmanager
def live(repo: Repo) -> Iterator[LiveSync]:
    config = load_config(repo.path)
    db = Database(config.database)
    try:
        yield LiveSync(config, db, open_repo(repo.path), StoryFilter(config))
    finally:
        db.dispose()


def runs(repo: Repo) -> int:
    with sqlite3.connect(repo.db_path) as conn:
        (count,) = conn.execute("SELECT count(*) FROM sync_runs").fetchone()
    conn.close()
    return int(count)


def title(repo: Repo, story_id: str) -> str:
    with sqlite3.connect(repo.db_path) as conn:
        (found,) = conn.execute("SELECT title FROM stories WHERE id = ?", (story_id,)).fetchone()
    conn.close()
    return str(found)


def settle(repo: Repo) -> None:
    """Age every directory of the tree by a minute, as a tree nobody touched lately is."""
    past = time.time() - 60
    for top, dirs, _ in os.walk(repo.path):
        dirs[:] = [d for d in dirs if d != ".git"]
        os.utime(top, (past, past))


def write_in_place(path: Path) -> None:
    """Append a line to a story file in place: its directory's mtime stays as it was."""
    mtime = os.stat(path.parent).st_mtime_ns
    with path.open("a", encoding="utf-8") as story:
        story.write("A line written in place.\n")
    assert os.stat(path.parent).st_mtime_ns == mtime


def test_a_watch_start_on_a_repository_in_step_reads_no_story_file(backlog_repo: Repo) -> None:
    assert backlog_repo.run("sync") == 0
    before = runs(backlog_repo)
    with live(backlog_repo) as watch:
        outcome = watch.catch_up()
        assert outcome.error is None
        assert watch.files_synced == 0  # no story file handed to a sync to read
        assert runs(backlog_repo) == before
        assert len(watch.synced) == 4  # but the tree's stats are known, for the reconciles
        backlog_repo.write(WEB1, story_text("WEB-1", title="Saved while watched", depends_on=["API-1"]))
        saved = watch.apply(Batch(frozenset({(ChangeKind.modified, WEB1)})))
        assert saved is not None
        assert saved.result is not None
        assert saved.result.updated == ["WEB-1"]
    assert title(backlog_repo, "WEB-1") == "Saved while watched"


def test_a_watch_start_with_work_the_database_has_not_seen_syncs_the_tree(backlog_repo: Repo) -> None:
    """An uncommitted edit, a new untracked story, a commit the database is behind:
    each is synced at the start; on a local database only the files that differ from
    HEAD are read from the working tree (git status names them)."""
    assert backlog_repo.run("sync") == 0
    backlog_repo.write(WEB1, story_text("WEB-1", title="Edited before the watch", depends_on=["API-1"]))
    synced_runs = runs(backlog_repo)
    with live(backlog_repo) as watch:
        outcome = watch.catch_up()
        assert watch.files_synced == 1
        assert outcome.result is not None
        assert outcome.result.updated == ["WEB-1"]
        assert runs(backlog_repo) == synced_runs + 1  # the database was at HEAD: one transaction
    assert backlog_repo.run("sync") == 0  # reads WEB-1 back from HEAD
    backlog_repo.story("backlog", "web", "WEB-7", "new", title="Not committed yet")
    with live(backlog_repo) as watch:
        outcome = watch.catch_up()
        assert outcome.result is not None
        assert outcome.result.created == ["WEB-7"]
    (backlog_repo.path / "backlog/web/WEB-7-new.md").unlink()
    assert backlog_repo.run("sync") == 0
    backlog_repo.story("backlog", "web", "WEB-8", "later", title="Committed after the sync")
    backlog_repo.commit("one more")
    with live(backlog_repo) as watch:
        outcome = watch.catch_up()
        assert outcome.result is not None
        assert outcome.result.created == ["WEB-8"]


def test_a_reconcile_of_an_unchanged_tree_lists_no_directory_and_stats_no_story(backlog_repo: Repo) -> None:
    assert backlog_repo.run("sync") == 0
    settle(backlog_repo)
    with live(backlog_repo) as watch:
        watch.catch_up()
        listed, statted, synced = watch.tree.listed, watch.tree.statted, watch.files_synced
        assert (listed, statted) == (4, 4)  # the start looks at every backlog directory once
        assert watch.apply(Batch(frozenset(), rescan=True)) is None
        assert watch.apply(Batch(frozenset(), rescan=True)) is None
        assert (watch.tree.listed, watch.tree.statted, watch.files_synced) == (listed, statted, synced)

        # an event missed: an atomic save renames into its directory, whose mtime moves
        temp = backlog_repo.path / "backlog/web/.WEB-1.swp"
        temp.write_text(story_text("WEB-1", title="Saved, event lost", depends_on=["API-1"]), encoding="utf-8")
        os.replace(temp, backlog_repo.path / WEB1)
        healed = watch.apply(Batch(frozenset(), rescan=True))
        assert healed is not None
        assert healed.result is not None
        assert healed.result.updated == ["WEB-1"]
        assert watch.tree.listed == listed + 1  # that directory alone
        assert watch.files_synced == synced + 1
    assert title(backlog_repo, "WEB-1") == "Saved, event lost"


def test_every_tenth_reconcile_looks_at_every_file_for_a_write_in_place(backlog_repo: Repo) -> None:
    assert backlog_repo.run("sync") == 0
    settle(backlog_repo)
    with live(backlog_repo) as watch:
        watch.catch_up()
        write_in_place(backlog_repo.path / WEB1)
        found = None
        for _ in range(watch.tree.FULL_EVERY):
            found = watch.apply(Batch(frozenset(), rescan=True)) or found
        assert found is not None
        assert found.result is not None
        assert found.result.updated == ["WEB-1"]


def test_files_saved_in_place_and_synced_are_not_synced_again_by_the_reconciles(backlog_repo: Repo) -> None:
    """Saves reported by events are synced once: the reconciles after them (the cheap ones,
    which keep an unchanged directory's listing) do not take them for changes again."""
    assert backlog_repo.run("sync") == 0
    settle(backlog_repo)
    with live(backlog_repo) as watch:
        watch.catch_up()
        write_in_place(backlog_repo.path / WEB1)
        saved = watch.apply(Batch(frozenset({(ChangeKind.modified, WEB1)})))
        assert saved is not None
        assert saved.result is not None
        assert saved.result.updated == ["WEB-1"]
        synced = watch.files_synced
        for _ in range(watch.tree.FULL_EVERY + 1):  # the cheap reconciles and a full one
            assert watch.apply(Batch(frozenset(), rescan=True)) is None
        assert watch.files_synced == synced


STORY_ROWS = text(
    "SELECT id, backlog_id, status, title, priority, points, tags, extra, body, path, content_hash, deleted_at"
    " FROM stories ORDER BY id"
)


def stories(url: str) -> list[tuple[object, ...]]:
    """Every row of ``stories`` (the columns a file sets), by id."""
    db = Database(url)
    try:
        with db.read() as conn:
            return [tuple(r) for r in conn.execute(STORY_ROWS)]
    finally:
        db.dispose()


def test_a_watch_start_on_a_fresh_database_syncs_head_then_the_files_that_differ(
    backlog_repo: Repo, tmp_path: Path
) -> None:
    """The first watch of a clone: the rows are those a working-tree sync writes, but the
    database is at HEAD (with git's history) and only the edited and the new file are
    recorded as the working tree's, so the next hook has two files to read back, not all."""
    backlog_repo.write(WEB1, story_text("WEB-1", title="Edited before the watch", depends_on=["API-1"]))
    new = backlog_repo.story("backlog", "web", "WEB-7", "new", title="Not committed yet")
    reference = f"sqlite:///{tmp_path / 'reference.db'}"
    assert backlog_repo.run("--db", reference, "sync", "--working-tree") == 0
    with live(backlog_repo) as watch:
        outcome = watch.catch_up()
        assert outcome.error is None
        assert outcome.result is not None
        assert (outcome.result.created, outcome.result.diagnostics) == (
            ["API-1", "API-2", "WEB-1", "WEB-2", "WEB-7"],
            [],
        )
        assert watch.files_synced == 2
    assert stories(backlog_repo.db_url) == stories(reference)
    with sqlite3.connect(backlog_repo.db_path) as conn:
        state = dict(conn.execute("SELECT key, value FROM sync_state").fetchall())
        moves = conn.execute('SELECT count(*) FROM status_history WHERE "commit" IS NOT NULL').fetchone()[0]
    conn.close()
    assert state["last_synced_commit"] == backlog_repo.git("rev-parse", "HEAD")
    assert json.loads(state["worktree_paths"]) == sorted([WEB1, new])
    assert moves == 4  # each committed story's status, from git


def test_a_watch_start_on_a_server_database_does_not_move_its_last_synced_commit(
    backlog_repo: Repo, pg_url: str
) -> None:
    """A clone's local commits must not become the team database's last synced commit:
    on PostgreSQL the start is a working-tree sync of every file, as before."""
    backlog_repo.write(WEB1, story_text("WEB-1", title="Edited before the watch", depends_on=["API-1"]))
    config = load_config(backlog_repo.path, db_flag=pg_url)
    db = Database(config.database)
    try:
        watch = LiveSync(config, db, open_repo(backlog_repo.path), StoryFilter(config))
        outcome = watch.catch_up()
        assert outcome.result is not None
        assert outcome.result.created == ["API-1", "API-2", "WEB-1", "WEB-2"]
        assert watch.files_synced == 4
        with db.read() as conn:
            assert get_state(conn, LAST_SYNCED) is None
    finally:
        db.dispose()
