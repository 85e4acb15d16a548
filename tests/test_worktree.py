"""Rows synced from the working tree are drift until a commit-based sync (SPEC §6).

watch and ``sync --working-tree`` write what is on disk, uncommitted edits
included.  When those files then go back to HEAD while nothing watches
(``git checkout -- FILE``, ``rm`` of a new file), no git range names them: the
database must still know which rows came from the working tree, ``status`` and
``doctor`` must show the drift, and the next ``sync`` must bring those rows back
to HEAD.  Real git repositories, real SQLite files and a real PostgreSQL server.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from storysync.db import tables as m
from storysync.db.database import Database
from tests.conftest import Repo, story_text
from tests.test_watch import TIMEOUT, Session, start_session, wait_until

WEB1 = "backlog/web/WEB-1-login.md"
WEB2 = "active/web/WEB-2-signup.md"
WEB2_MOVED = "completed/web/WEB-2-signup.md"
NEW = "backlog/web/WEB-5-draft.md"


def live_rows(url: str) -> dict[str, tuple[Any, ...]]:
    """Every live story of the database, as what a reader of it would see."""
    db = Database(url)
    s = m.stories.c
    try:
        with db.read() as conn:
            rows = conn.execute(
                select(s.id, s.path, s.status, s.backlog_id, s.title, s.body, s.content_hash).where(
                    s.deleted_at.is_(None)
                )
            )
            deps = sorted(conn.execute(select(m.dependencies.c.story_id, m.dependencies.c.depends_on_id)).all())
            live = {r.id: tuple(r) for r in rows}
    finally:
        db.dispose()
    return {**live, "(dependencies)": tuple(d for d in deps if d[0] in live)}


def head_rows(repo: Repo, tmp_path: Path) -> dict[str, tuple[Any, ...]]:
    """What a database holds after a full sync of HEAD into a new file: the oracle."""
    url = f"sqlite:///{tmp_path / 'oracle.db'}"
    assert repo.run("-q", "--db", url, "sync", "--full") == 0
    return live_rows(url)


def status_json(repo: Repo, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    capsys.readouterr()
    assert repo.run("status", "--format", "json") == 0
    data: dict[str, Any] = json.loads(capsys.readouterr().out)
    return data


def status_text(repo: Repo, capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    assert repo.run("status") == 0
    return capsys.readouterr().out


def last_sync_check(repo: Repo, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()
    code = repo.run("doctor", "--format", "json")
    checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)["checks"]}
    return code, checks["last sync"]


def edit_add_remove_move(repo: Repo) -> None:
    """Uncommitted work: an edited story, a new one, a deleted one, a moved one."""
    repo.write(WEB1, story_text("WEB-1", title="Login page, edited", priority="high", depends_on=["API-1"]))
    repo.write(NEW, story_text("WEB-5", title="Not committed yet", depends_on=["WEB-1"]))
    (repo.path / "completed" / "api" / "API-2-health.md").unlink()
    (repo.path / WEB2_MOVED).parent.mkdir(parents=True, exist_ok=True)
    (repo.path / WEB2).rename(repo.path / WEB2_MOVED)


def back_to_head(repo: Repo) -> None:
    """The work is thrown away while nothing watches: no event, no hook, no git range."""
    repo.git("checkout", "--", WEB1, WEB2, "completed/api/API-2-health.md")
    (repo.path / NEW).unlink()
    (repo.path / WEB2_MOVED).unlink()
    assert repo.git("status", "--porcelain") == ""


def test_working_tree_rows_are_drift_that_the_next_sync_heals(
    backlog_repo: Repo, any_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = backlog_repo
    assert repo.run("-q", "sync") == 0
    head = head_rows(repo, tmp_path)
    assert live_rows(any_db) == head
    edit_add_remove_move(repo)
    assert repo.run("-q", "sync", "--working-tree") == 0
    synced = live_rows(any_db)
    assert synced["WEB-1"][4] == "Login page, edited"
    assert synced["WEB-5"][1] == NEW
    assert synced["WEB-2"][1] == WEB2_MOVED
    assert "API-2" not in synced

    back_to_head(repo)
    data = status_json(repo, capsys)
    assert data["last_synced_commit"] == data["head"]
    assert data["working_tree_paths"] == 5  # the edit, the new file, the deleted one, both ends of the move
    text = status_text(repo, capsys)
    assert "in step" not in text
    assert text.splitlines()[-1] == (
        "5 story path(s) synced from the working tree, not from a commit: "
        "run 'storysync sync' to bring them back to HEAD"
    )
    code, check = last_sync_check(repo, capsys)
    assert code == 1
    assert check["status"] == "fail"
    assert check["message"].startswith("5 story path(s) synced from the working tree")
    assert check["fix"] == "storysync sync"

    capsys.readouterr()
    assert repo.run("sync") == 0
    assert "1 created, 2 updated, 1 moved, 1 deleted" in capsys.readouterr().err
    assert live_rows(any_db) == head
    assert status_json(repo, capsys)["working_tree_paths"] == 0
    assert "in step with HEAD" in status_text(repo, capsys)
    assert last_sync_check(repo, capsys)[1]["status"] == "pass"
    runs = _count(any_db, m.changes)
    assert repo.run("-q", "sync") == 0  # healed: the next sync reads and writes nothing
    assert _count(any_db, m.changes) == runs


def test_a_sync_with_commits_to_read_heals_the_working_tree_rows_too(
    backlog_repo: Repo, any_db: str, tmp_path: Path
) -> None:
    repo = backlog_repo
    assert repo.run("-q", "sync") == 0
    edit_add_remove_move(repo)
    assert repo.run("-q", "sync", "--working-tree") == 0
    back_to_head(repo)
    repo.story("refinements", "api", "API-3", "rate", title="Rate limits")
    repo.commit("one more story")
    assert repo.run("-q", "sync") == 0
    assert live_rows(any_db) == head_rows(repo, tmp_path)


def test_a_dry_run_shows_the_heal_and_keeps_the_drift(
    backlog_repo: Repo, any_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = backlog_repo
    assert repo.run("-q", "sync") == 0
    repo.write(WEB1, story_text("WEB-1", title="Login page, edited", priority="high", depends_on=["API-1"]))
    assert repo.run("-q", "sync", "--working-tree") == 0
    repo.git("checkout", "--", WEB1)
    capsys.readouterr()
    assert repo.run("sync", "--dry-run") == 0
    assert "1 updated" in capsys.readouterr().err
    assert live_rows(any_db)["WEB-1"][4] == "Login page, edited"
    assert status_json(repo, capsys)["working_tree_paths"] == 1


def test_an_invalid_head_version_keeps_its_row_marked_with_keep_going(
    backlog_repo: Repo, any_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = backlog_repo
    repo.write(WEB2, story_text("WEB-2", title="Signup", points="many"))  # invalid at HEAD
    repo.commit("a bad value")
    assert repo.run("-q", "sync", "--keep-going") == 1
    repo.write(WEB2, story_text("WEB-2", title="Signup, fixed on disk", points=3))
    repo.write(WEB1, story_text("WEB-1", title="Login page, edited", priority="high", depends_on=["API-1"]))
    assert repo.run("-q", "sync", "--working-tree") == 0
    repo.git("checkout", "--", WEB1, WEB2)
    assert repo.run("-q", "sync", "--keep-going") == 1  # WEB-2 is still invalid at HEAD: its row is kept
    rows = live_rows(any_db)
    assert rows["WEB-1"][4] == "Login page"
    assert rows["WEB-2"][4] == "Signup, fixed on disk"
    assert status_json(repo, capsys)["working_tree_paths"] == 1  # and still known as the working tree's


def _count(url: str, table: Any) -> int:
    db = Database(url)
    try:
        with db.read() as conn:
            return len(conn.execute(select(table)).all())
    finally:
        db.dispose()


# --- watch ---------------------------------------------------------------------------------


def _stop(session: Session, thread: threading.Thread, db: Database) -> None:
    session.watcher.stop()
    thread.join(TIMEOUT)
    db.dispose()
    assert not thread.is_alive()
    assert not session.failure, session.failure


def _watch_the_work(repo: Repo, url: str) -> None:
    """A watch session syncs the uncommitted work as it is saved, then stops."""
    session, thread, db = start_session(repo)
    try:
        edit_add_remove_move(repo)
        wait_until(
            lambda: (rows := live_rows(url)).get("WEB-5") and rows["WEB-1"][4] == "Login page, edited",
            what="the edit and the new story",
        )
        wait_until(lambda: "API-2" not in live_rows(url), what="the deleted story")
        wait_until(lambda: live_rows(url)["WEB-2"][1] == WEB2_MOVED, what="the moved story")
    finally:
        _stop(session, thread, db)


def test_what_watch_synced_is_drift_after_a_checkout_and_sync_heals_it(
    backlog_repo: Repo, any_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = backlog_repo
    assert repo.run("-q", "sync") == 0
    _watch_the_work(repo, any_db)
    back_to_head(repo)
    assert status_json(repo, capsys)["working_tree_paths"] == 5
    assert "in step" not in status_text(repo, capsys)
    assert last_sync_check(repo, capsys)[0] == 1
    assert repo.run("-q", "sync") == 0
    assert live_rows(any_db) == head_rows(repo, tmp_path)
    assert "in step with HEAD" in status_text(repo, capsys)


def test_a_watch_start_reconciles_the_rows_with_the_files(
    backlog_repo: Repo, any_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = backlog_repo
    assert repo.run("-q", "sync") == 0
    _watch_the_work(repo, any_db)
    back_to_head(repo)
    session, thread, db = start_session(repo)
    _stop(session, thread, db)
    assert live_rows(any_db) == head_rows(repo, tmp_path)  # the files are HEAD's again
    assert repo.run("-q", "sync") == 0
    assert status_json(repo, capsys)["working_tree_paths"] == 0


def test_a_running_watch_takes_its_files_back_after_a_commit_sync(
    backlog_repo: Repo, any_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A hook's sync while watch runs (a branch switch with uncommitted edits) brings the
    rows back to HEAD; the files on disk are what watch shows, so its reconcile takes them back."""
    repo = backlog_repo
    assert repo.run("-q", "sync") == 0
    session, thread, db = start_session(repo, rescan_interval=0.3)
    try:
        repo.write(WEB1, story_text("WEB-1", title="Still being edited", depends_on=["API-1"]))
        wait_until(lambda: live_rows(any_db)["WEB-1"][4] == "Still being edited", what="the edit")
        capsys.readouterr()
        assert repo.run("sync") == 0
        assert "1 updated" in capsys.readouterr().err  # back to HEAD
        # the next reconcile takes it back: while watch runs, the file is what counts
        wait_until(lambda: live_rows(any_db)["WEB-1"][4] == "Still being edited", what="watch taking it back")
    finally:
        _stop(session, thread, db)
