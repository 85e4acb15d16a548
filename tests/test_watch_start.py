"""A watch start on a local database (HEAD synced, then the files git status names, from
the working tree) writes the rows a working-tree sync of every file writes, and reports
the same invalid files: each case against that reference, run on a copy of the same
database.  Real git, real files, real SQLite.

Where the start does not write the old start's rows, the test says so (``differ``): a story
file invalid or deleted in the working tree leaves HEAD's row (live or deleted), where the
old start kept the database's older row or wrote none; a file git converts on checkout
(eol=crlf) is clean to git status, so its row holds the blob's text, not the file's bytes."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Collection
from pathlib import Path

from storysync.config import load_config
from storysync.db.database import Database
from storysync.git.runner import open_repo
from storysync.ingest.run import sync
from storysync.ingest.types import SyncOptions, SyncResult
from storysync.watch.events import StoryFilter
from storysync.watch.live import LiveSync
from storysync.watch.outcome import Outcome
from tests.conftest import Repo, story_text
from tests.test_watch_idle import stories

WEB1 = "backlog/web/WEB-1-login.md"
WEB2 = "active/web/WEB-2-signup.md"


def old_start(repo: Repo, url: str) -> SyncResult:
    """The start before: a keep-going working-tree sync of every file."""
    config = load_config(repo.path, db_flag=url)
    db = Database(config.database)
    try:
        return sync(config, db, open_repo(repo.path), SyncOptions(working_tree=True, keep_going=True, trigger="watch"))
    finally:
        db.dispose()


def new_start(repo: Repo) -> tuple[Outcome, LiveSync]:
    config = load_config(repo.path)
    db = Database(config.database)
    try:
        watch = LiveSync(config, db, open_repo(repo.path), StoryFilter(config))
        return watch.catch_up(), watch
    finally:
        db.dispose()


def compare(repo: Repo, tmp_path: Path, differ: Collection[str] = ()) -> tuple[Outcome, SyncResult]:
    """The start on the repository's database and the old start on a copy of it: the same
    rows but those of ``differ``, which the start takes from HEAD (see ``head_row``)."""
    reference = tmp_path / "reference.db"
    if repo.db_path.exists():
        shutil.copy(repo.db_path, reference)
    old = old_start(repo, f"sqlite:///{reference}")
    outcome, _ = new_start(repo)
    assert outcome.error is None
    assert outcome.result is not None
    new, before = rows(repo.db_url), rows(f"sqlite:///{reference}")
    assert [r for r in new if r[0] not in differ] == [r for r in before if r[0] not in differ]
    assert extra(repo.db_path, differ) == extra(reference, differ)
    if differ:
        assert {r for r in new if r[0] in differ} != {r for r in before if r[0] in differ}
    return outcome, old


def rows(url: str) -> list[tuple[object, ...]]:
    """``stories`` rows, a deletion as whether the row is deleted (its time is the run's)."""
    return [(*row[:-1], row[-1] is not None) for row in stories(url)]


def extra(db: Path, differ: Collection[str]) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    """Which rows wait for export, and the conflicts (what a start may leave besides the fields)."""
    with sqlite3.connect(db) as conn:
        pending = conn.execute("SELECT id, revision > synced_revision FROM stories ORDER BY id").fetchall()
        conflicts = conn.execute(
            "SELECT story_id, file_hash, resolution, fields FROM conflicts ORDER BY story_id, file_hash"
        ).fetchall()
    conn.close()
    return [p for p in pending if p[0] not in differ], [c for c in conflicts if c[0] not in differ]


def problems(result: SyncResult | None) -> list[str]:
    assert result is not None
    return sorted({d.path for d in result.diagnostics})


def test_staged_then_edited_back(backlog_repo: Repo, tmp_path: Path) -> None:
    assert backlog_repo.run("sync") == 0
    original = (backlog_repo.path / WEB1).read_bytes()
    backlog_repo.write(WEB1, story_text("WEB-1", title="Staged", depends_on=["API-1"]))
    backlog_repo.git("add", WEB1)
    backlog_repo.write(WEB1, original)
    compare(backlog_repo, tmp_path)


def test_git_mv_between_stages(backlog_repo: Repo, tmp_path: Path) -> None:
    assert backlog_repo.run("sync") == 0
    backlog_repo.git("mv", WEB1, "active/web/WEB-1-login.md")
    outcome, old = compare(backlog_repo, tmp_path)
    assert problems(outcome.result) == problems(old) == []


def test_plain_mv_between_stages(backlog_repo: Repo, tmp_path: Path) -> None:
    assert backlog_repo.run("sync") == 0
    (backlog_repo.path / "active/web").mkdir(exist_ok=True)
    (backlog_repo.path / WEB1).rename(backlog_repo.path / "active/web/WEB-1-login.md")
    outcome, old = compare(backlog_repo, tmp_path)
    assert problems(outcome.result) == problems(old) == []


def test_plain_mv_fresh_db(backlog_repo: Repo, tmp_path: Path) -> None:
    (backlog_repo.path / WEB1).rename(backlog_repo.path / "completed/WEB-1-login.md")
    (backlog_repo.path / "completed/web").mkdir(exist_ok=True)
    (backlog_repo.path / "completed/WEB-1-login.md").rename(backlog_repo.path / "completed/web/WEB-1-login.md")
    compare(backlog_repo, tmp_path)


def test_deleted_story(backlog_repo: Repo, tmp_path: Path) -> None:
    assert backlog_repo.run("sync") == 0
    (backlog_repo.path / WEB2).unlink()
    compare(backlog_repo, tmp_path)


def test_deleted_story_fresh(backlog_repo: Repo, tmp_path: Path) -> None:
    """Deviation: HEAD's row, then deleted (the old start wrote no row at all)."""
    (backlog_repo.path / WEB2).unlink()
    compare(backlog_repo, tmp_path, differ={"WEB-2"})
    assert row(backlog_repo, "WEB-2") == ("Signup", True)


def test_deleted_story_db_behind(backlog_repo: Repo, tmp_path: Path) -> None:
    assert backlog_repo.run("sync") == 0
    backlog_repo.write(WEB1, story_text("WEB-1", title="Committed later", depends_on=["API-1"]))
    backlog_repo.commit("later")
    (backlog_repo.path / WEB1).unlink()
    compare(backlog_repo, tmp_path, differ={"WEB-1"})  # deviation: the deleted row holds HEAD's fields
    assert row(backlog_repo, "WEB-1") == ("Committed later", True)


BAD = "---\nid: WEB-1\ntitle: [unclosed\n---\nbody\n"


def test_invalid_in_head_fixed_in_tree(backlog_repo: Repo, tmp_path: Path) -> None:
    backlog_repo.write(WEB1, BAD)
    backlog_repo.commit("broken")
    backlog_repo.write(WEB1, story_text("WEB-1", title="Fixed", depends_on=["API-1"]))
    outcome, old = compare(backlog_repo, tmp_path)
    assert problems(outcome.result) == problems(old) == []
    assert [d.path for d in outcome.problems] == []


def test_invalid_in_head_fixed_in_tree_db_at_old(backlog_repo: Repo, tmp_path: Path) -> None:
    assert backlog_repo.run("sync") == 0
    backlog_repo.write(WEB1, BAD)
    backlog_repo.commit("broken")
    backlog_repo.write(WEB1, story_text("WEB-1", title="Fixed", depends_on=["API-1"]))
    outcome, old = compare(backlog_repo, tmp_path)
    assert problems(outcome.result) == problems(old) == []


def test_valid_in_head_broken_in_tree_fresh(backlog_repo: Repo, tmp_path: Path) -> None:
    backlog_repo.write(WEB1, BAD)
    outcome, old = compare(backlog_repo, tmp_path, differ={"WEB-1"})
    assert problems(outcome.result) == problems(old) == [WEB1]
    assert [d.path for d in outcome.problems] == [WEB1]
    assert row(backlog_repo, "WEB-1") == ("Login page", False)  # deviation: HEAD's row (the old start: none)


def test_valid_in_head_broken_in_tree_db_behind(backlog_repo: Repo, tmp_path: Path) -> None:
    assert backlog_repo.run("sync") == 0
    backlog_repo.write(WEB1, story_text("WEB-1", title="v2", depends_on=["API-1"]))
    backlog_repo.commit("v2")
    backlog_repo.write(WEB1, BAD)
    outcome, old = compare(backlog_repo, tmp_path, differ={"WEB-1"})
    assert problems(outcome.result) == problems(old) == [WEB1]
    assert row(backlog_repo, "WEB-1") == ("v2", False)  # deviation: HEAD's row (the old start: the older one kept)


def test_invalid_in_head_unchanged_db_at_head_other_edit(backlog_repo: Repo, tmp_path: Path) -> None:
    backlog_repo.write(WEB1, BAD)
    backlog_repo.commit("broken")
    assert backlog_repo.run("sync", "--keep-going") in (0, 1, 2)
    backlog_repo.write(WEB2, story_text("WEB-2", title="Edited", points=5))
    outcome, old = compare(backlog_repo, tmp_path)
    assert problems(old) == [WEB1]
    assert problems(outcome.result) == [WEB1]


def test_same_as_head_but_db_row_older(backlog_repo: Repo, tmp_path: Path) -> None:
    assert backlog_repo.run("sync") == 0
    backlog_repo.write(WEB1, story_text("WEB-1", title="v2", depends_on=["API-1"]))
    backlog_repo.commit("v2")
    backlog_repo.write(WEB2, story_text("WEB-2", title="Edited", points=5))
    compare(backlog_repo, tmp_path)


def edit_db(repo: Repo, story_id: str, title: str) -> None:
    with sqlite3.connect(repo.db_path) as conn:
        conn.execute("UPDATE stories SET title = ?, revision = revision + 1 WHERE id = ?", (title, story_id))
    conn.close()


def test_pending_db_edit_clean_tree(backlog_repo: Repo, tmp_path: Path) -> None:
    assert backlog_repo.run("sync") == 0
    edit_db(backlog_repo, "WEB-1", "Edited in the db")
    compare(backlog_repo, tmp_path)


def test_pending_db_edit_other_file_changed(backlog_repo: Repo, tmp_path: Path) -> None:
    assert backlog_repo.run("sync") == 0
    edit_db(backlog_repo, "WEB-1", "Edited in the db")
    backlog_repo.write(WEB2, story_text("WEB-2", title="Edited", points=5))
    compare(backlog_repo, tmp_path)
    assert ("WEB-1", 1) in extra(backlog_repo.db_path, ())[0]  # still waiting for export


def test_pending_db_edit_same_file_changed(backlog_repo: Repo, tmp_path: Path) -> None:
    assert backlog_repo.run("sync") == 0
    edit_db(backlog_repo, "WEB-1", "Edited in the db")
    backlog_repo.write(WEB1, story_text("WEB-1", title="Edited in the file", depends_on=["API-1"]))
    compare(backlog_repo, tmp_path)
    assert [c[0] for c in extra(backlog_repo.db_path, ())[1]] == ["WEB-1"]  # both sides changed the title


def test_pending_db_edit_db_behind(backlog_repo: Repo, tmp_path: Path) -> None:
    assert backlog_repo.run("sync") == 0
    edit_db(backlog_repo, "WEB-1", "Edited in the db")
    backlog_repo.write(WEB1, story_text("WEB-1", title="Committed", depends_on=["API-1"]))
    backlog_repo.commit("c")
    backlog_repo.write(WEB2, story_text("WEB-2", title="Edited", points=5))
    compare(backlog_repo, tmp_path)


def test_db_newer_than_head(backlog_repo: Repo, tmp_path: Path) -> None:
    first = backlog_repo.git("rev-parse", "HEAD")
    backlog_repo.write(WEB1, story_text("WEB-1", title="v2", depends_on=["API-1"]))
    backlog_repo.story("backlog", "web", "WEB-9", "nine", title="Nine")
    backlog_repo.commit("v2")
    assert backlog_repo.run("sync") == 0
    backlog_repo.git("checkout", "-q", first)
    backlog_repo.write(WEB2, story_text("WEB-2", title="Edited", points=5))
    compare(backlog_repo, tmp_path)


def test_unborn(repo: Repo, tmp_path: Path) -> None:
    repo.story("backlog", "web", "WEB-1", "a", title="A")
    repo.story("active", "web", "WEB-2", "b", title="B")
    compare(repo, tmp_path)


def test_merge_in_progress(backlog_repo: Repo, tmp_path: Path) -> None:
    assert backlog_repo.run("sync") == 0
    backlog_repo.git("checkout", "-q", "-b", "other")
    backlog_repo.write(WEB1, story_text("WEB-1", title="Other", depends_on=["API-1"]))
    backlog_repo.commit("other")
    backlog_repo.git("checkout", "-q", "main")
    backlog_repo.write(WEB1, story_text("WEB-1", title="Main", depends_on=["API-1"]))
    backlog_repo.story("backlog", "web", "WEB-5", "five", title="Five")
    backlog_repo.commit("main")
    backlog_repo.git("merge", "other", check=False)
    outcome, old = compare(backlog_repo, tmp_path, differ={"WEB-1"})
    assert problems(outcome.result) == problems(old) == [WEB1]
    assert row(backlog_repo, "WEB-1") == ("Main", False)  # deviation: HEAD's row (the old start: the older one kept)


def test_rebase_in_progress(backlog_repo: Repo, tmp_path: Path) -> None:
    assert backlog_repo.run("sync") == 0
    backlog_repo.git("checkout", "-q", "-b", "topic")
    backlog_repo.write(WEB2, story_text("WEB-2", title="Topic", points=5))
    backlog_repo.story("backlog", "web", "WEB-5", "five", title="Five")
    backlog_repo.commit("topic")
    backlog_repo.git("checkout", "-q", "main")
    backlog_repo.write(WEB2, story_text("WEB-2", title="Main", points=8))
    backlog_repo.commit("main")
    assert backlog_repo.run("sync") == 0
    backlog_repo.git("checkout", "-q", "topic")
    backlog_repo.git("rebase", "main", check=False)  # stops on WEB-2, HEAD detached at main
    assert (backlog_repo.path / ".git" / "rebase-merge").exists()
    outcome, old = compare(backlog_repo, tmp_path)  # the database was at HEAD (main) already
    assert problems(outcome.result) == problems(old) == [WEB2]
    assert row(backlog_repo, "WEB-2") == ("Main", False)


def test_odd_names(backlog_repo: Repo, tmp_path: Path) -> None:
    assert backlog_repo.run("sync") == 0
    backlog_repo.story("backlog", "web", "WEB-3", "with space é", title="Spaced")
    (backlog_repo.path / "backlog/web").joinpath(b"WEB-4-latin\xe9.md".decode("utf-8", "surrogateescape")).write_text(
        story_text("WEB-4", title="Latin-1"), encoding="utf-8"
    )
    outcome, old = compare(backlog_repo, tmp_path)
    assert problems(outcome.result) == problems(old)


def test_odd_names_committed(backlog_repo: Repo, tmp_path: Path) -> None:
    backlog_repo.story("backlog", "web", "WEB-3", "with space é", title="Spaced")
    backlog_repo.commit("odd")
    assert backlog_repo.run("sync") == 0
    backlog_repo.story("backlog", "web", "WEB-3", "with space é", title="Spaced, edited")
    compare(backlog_repo, tmp_path)


def test_ignored_story_files(backlog_repo: Repo, tmp_path: Path) -> None:
    assert backlog_repo.run("sync") == 0
    backlog_repo.write(".gitignore", ".storysync/\nbacklog/web/WEB-6*\nbacklog/secret/\n")
    backlog_repo.commit("ignore")
    assert backlog_repo.run("sync") == 0
    backlog_repo.story("backlog", "web", "WEB-6", "ignored", title="Ignored")
    backlog_repo.story("backlog", "secret", "SEC-1", "hidden", title="Hidden")
    compare(backlog_repo, tmp_path)


def test_ignored_story_file_only(backlog_repo: Repo, tmp_path: Path) -> None:
    backlog_repo.write(".gitignore", ".storysync/\nbacklog/web/WEB-6*\n")
    backlog_repo.commit("ignore")
    assert backlog_repo.run("sync") == 0
    backlog_repo.story("backlog", "web", "WEB-6", "ignored", title="Ignored")
    outcome, _ = compare(backlog_repo, tmp_path)
    assert outcome.result.created == ["WEB-6"]  # type: ignore[union-attr]


def test_stories_root_in_a_subdirectory(repo: Repo, tmp_path: Path) -> None:
    repo.write("storysync.toml", 'root = "docs/stories"\n')
    repo.story("docs/stories/backlog", "web", "WEB-1", "a", title="A")
    repo.story("docs/stories/active", "web", "WEB-2", "b", title="B")
    repo.story("backlog", "web", "OUT-1", "outside", title="Outside the root")
    repo.commit("stories")
    repo.story("docs/stories/backlog", "web", "WEB-1", "a", title="A, edited")
    repo.story("docs/stories/backlog", "web", "WEB-3", "c", title="C")
    repo.story("backlog", "web", "OUT-2", "outside", title="Outside the root too")
    outcome, _ = compare(repo, tmp_path)
    assert outcome.paths == 2  # the two files under the root that differ from HEAD


def test_invalid_in_head_unchanged_fresh_db_other_edit(backlog_repo: Repo, tmp_path: Path) -> None:
    backlog_repo.write(WEB1, BAD)
    backlog_repo.commit("broken")
    backlog_repo.write(WEB2, story_text("WEB-2", title="Edited", points=5))
    outcome, old = compare(backlog_repo, tmp_path)
    assert problems(old) == [WEB1]
    assert problems(outcome.result) == [WEB1]
    assert [d.path for d in outcome.problems] == [WEB1]


def test_pending_db_edit_clean_tree_db_behind(backlog_repo: Repo, tmp_path: Path) -> None:
    assert backlog_repo.run("sync") == 0
    edit_db(backlog_repo, "WEB-1", "Edited in the db")
    backlog_repo.write(WEB2, story_text("WEB-2", title="Committed", points=5))
    backlog_repo.commit("c")
    compare(backlog_repo, tmp_path)


def test_a_file_a_watch_wrote_then_reverted_to_head(backlog_repo: Repo, tmp_path: Path) -> None:
    """The database holds a row from the working tree (recorded), the file is HEAD's again."""
    assert backlog_repo.run("sync") == 0
    backlog_repo.write(WEB1, story_text("WEB-1", title="Saved while watched", depends_on=["API-1"]))
    new_start(backlog_repo)
    backlog_repo.git("checkout", "--", WEB1)
    backlog_repo.write(WEB2, story_text("WEB-2", title="Edited", points=5))
    compare(backlog_repo, tmp_path)
    backlog_repo.git("checkout", "--", WEB2)
    compare(backlog_repo, tmp_path)


def row(repo: Repo, story_id: str) -> tuple[str, bool]:
    with sqlite3.connect(repo.db_path) as conn:
        found, gone = conn.execute("SELECT title, deleted_at FROM stories WHERE id = ?", (story_id,)).fetchone()
    conn.close()
    return str(found), gone is not None


def test_files_git_converts_on_checkout(backlog_repo: Repo, tmp_path: Path) -> None:
    """A file git checks out converted (eol=crlf) is clean to git status, but its bytes on disk
    are not HEAD's blob."""
    backlog_repo.write(".gitattributes", "*.md text eol=crlf\n")
    backlog_repo.commit("crlf")
    for rel in (WEB1, WEB2):
        (backlog_repo.path / rel).unlink()
    backlog_repo.git("checkout", "--", ".")
    assert b"\r\n" in (backlog_repo.path / WEB1).read_bytes()
    backlog_repo.story("backlog", "web", "WEB-7", "new", title="Not committed yet")
    compare(backlog_repo, tmp_path, differ={"WEB-1", "WEB-2"})
    # deviation: the rows hold the blob's text (as a hook's sync), the old start the file's CRLF
    with sqlite3.connect(backlog_repo.db_path) as conn:
        bodies = dict(conn.execute("SELECT id, body FROM stories WHERE id LIKE 'WEB-%'").fetchall())
    conn.close()
    assert bodies == {"WEB-1": "Some words.\n", "WEB-2": "Some words.\n", "WEB-7": "Some words.\n"}


def test_a_file_git_is_told_not_to_look_at(backlog_repo: Repo, tmp_path: Path) -> None:
    """assume-unchanged / skip-worktree: git status does not report the file's edit."""
    assert backlog_repo.run("sync") == 0
    backlog_repo.git("update-index", "--assume-unchanged", WEB1)
    backlog_repo.git("update-index", "--skip-worktree", WEB2)
    backlog_repo.write(WEB1, story_text("WEB-1", title="Edited, git not looking", depends_on=["API-1"]))
    backlog_repo.write(WEB2, story_text("WEB-2", title="Edited, skip-worktree", points=5))
    backlog_repo.story("backlog", "web", "WEB-7", "new", title="Not committed yet")
    compare(backlog_repo, tmp_path)


def test_a_start_in_step_but_for_a_file_git_is_told_not_to_look_at(backlog_repo: Repo) -> None:
    """No other change: the start is not taken for one in step, the edit is synced."""
    assert backlog_repo.run("sync") == 0
    backlog_repo.git("update-index", "--assume-unchanged", WEB1)
    backlog_repo.write(WEB1, story_text("WEB-1", title="Edited, git not looking", depends_on=["API-1"]))
    outcome, watch = new_start(backlog_repo)
    assert outcome.result is not None
    assert outcome.result.updated == ["WEB-1"]
    assert row(backlog_repo, "WEB-1") == ("Edited, git not looking", False)
    assert not watch.in_step()
