"""``new`` without an id (the next free one across the database and every branch) and
``move ID STAGE`` (git mv, the status key, a commit of its own), on SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from storysync.db import tables as m
from tests.conftest import Repo, make_repo
from tests.test_sync_incremental import history_of, stories, table

pytestmark = pytest.mark.usefixtures("any_db")  # STORYSYNC_DATABASE_URL: SQLite, then PostgreSQL


def new(repo: Repo, capsys: pytest.CaptureFixture[str], *args: str, code: int = 0) -> str:
    capsys.readouterr()
    assert repo.run("new", *args) == code
    captured = capsys.readouterr()
    return captured.out.strip() if code == 0 else captured.err


def test_new_takes_the_next_id_no_branch_has_used(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], any_db: str
) -> None:
    upstream = make_repo(tmp_path / "upstream")
    upstream.story("backlog", "web", "WEB-1", title="One")
    upstream.story("backlog", "web", "WEB-2", title="Two")
    upstream.story("backlog", "api", "API-7", title="Api")
    upstream.commit("stories")
    subprocess.run(["git", "clone", "-q", str(upstream.path), str(tmp_path / "clone")], check=True)
    clone = Repo(tmp_path / "clone")
    assert clone.run("-q", "sync") == 0
    assert new(clone, capsys, "--backlog", "web", "--title", "Three") == "WEB-3"  # the database's
    # someone pushed WEB-5 on a branch this clone has only as origin/feature
    upstream.git("checkout", "-q", "-b", "feature")
    upstream.story("active", "web", "WEB-5", title="Five")
    upstream.commit("five")
    upstream.git("checkout", "-q", "main")
    clone.git("fetch", "-q")
    assert new(clone, capsys, "--backlog", "web", "--title", "Six") == "WEB-6"
    # a local branch, not checked out
    clone.git("branch", "local-work")
    clone.git("checkout", "-q", "local-work")
    clone.story("refinements", "web", "WEB-9", title="Nine")
    clone.commit("nine")
    clone.git("checkout", "-q", "main")
    assert new(clone, capsys, "--backlog", "web", "--title", "Ten") == "WEB-10"
    # a file not committed yet, in the working tree
    clone.story("backlog", "web", "WEB-12", title="Twelve")
    assert new(clone, capsys, "--backlog", "web", "--title", "Thirteen") == "WEB-13"
    assert new(clone, capsys, "--backlog", "api", "--title", "Next api") == "API-8"
    rows = stories(any_db)
    assert {k: (v["backlog_id"], v["title"]) for k, v in rows.items() if v["path"] is None} == {
        "WEB-3": ("web", "Three"),
        "WEB-6": ("web", "Six"),
        "WEB-10": ("web", "Ten"),
        "WEB-13": ("web", "Thirteen"),
        "API-8": ("api", "Next api"),
    }


def test_new_prefix_rules(backlog_repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    repo = backlog_repo
    assert repo.run("-q", "sync") == 0
    assert new(repo, capsys, "--backlog", "mobile", "--title", "First") == "MOBILE-1"  # the backlog's name
    assert new(repo, capsys, "--backlog", "mobile", "--title", "Second") == "MOBILE-2"
    assert new(repo, capsys, "--backlog", "web", "--prefix", "UX", "--title", "Design") == "UX-1"
    assert new(repo, capsys, "--backlog", "web", "--title", "Again") == "WEB-3"  # most of web is WEB-
    err = new(repo, capsys, "--backlog", "mobile-team", "--title", "No prefix", code=2)
    assert "backlog 'mobile-team' has no story to take an id prefix from" in err
    assert "--prefix" in new(repo, capsys, "WEB-50", "--backlog", "web", "--prefix", "UX", "--title", "T", code=2)
    assert "must match" in new(repo, capsys, "--backlog", "web", "--prefix", "ux", "--title", "T", code=2)
    # a deleted story's id is not given again
    assert repo.run("set", "WEB-3", "title=Gone soon") == 0
    from storysync.db.database import Database
    from storysync.db.writer import delete_story

    db = Database(repo.db_url)
    try:
        delete_story(db, "WEB-3")
    finally:
        db.dispose()
    assert new(repo, capsys, "--backlog", "web", "--title", "After a deletion") == "WEB-4"


def test_move_does_the_git_mv_and_sync_records_it(backlog_repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    repo = backlog_repo
    assert repo.run("-q", "sync") == 0
    capsys.readouterr()
    assert repo.run("move", "WEB-1", "active") == 0
    assert "moved backlog/web/WEB-1-login.md -> active/web/WEB-1-login.md (staged" in capsys.readouterr().err
    assert repo.git("status", "--porcelain") == "R  backlog/web/WEB-1-login.md -> active/web/WEB-1-login.md"
    repo.git("commit", "-q", "-m", "start WEB-1")
    # a stage by its status, into a folder that does not exist yet, committed on its own
    repo.write("notes.txt", "staged, and not part of the move\n")
    repo.git("add", "notes.txt")
    assert repo.run("move", "API-1", "completed", "--commit", "-m", "API-1 is done") == 0
    assert repo.git("log", "-1", "--format=%s") == "API-1 is done"
    assert repo.git("show", "--name-status", "--format=", "HEAD").split() == [
        "R100",
        "refinements/api/API-1-auth.md",
        "completed/api/API-1-auth.md",
    ]
    assert repo.git("status", "--porcelain") == "A  notes.txt"
    assert repo.run("-q", "sync") == 0
    assert history_of(repo.db_url, "WEB-1")[-1][:2] == ("backlog", "active")
    assert history_of(repo.db_url, "API-1")[-1] == ("refinements", "completed", repo.git("rev-parse", "HEAD"))
    assert stories(repo.db_url)["API-1"]["status"] == "completed"
    assert any(h["author"] == "Ada Author <ada@example.invalid>" for h in table(repo.db_url, m.status_history))


def test_move_changes_a_status_key_and_nothing_else(repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    text = "---\nid: WEB-1\ntitle: One  # a comment\nstatus: backlog   # kept\n---\nBody\r\nkept.\n"
    repo.write("backlog/web/WEB-1-one.md", text)
    repo.commit("one")
    assert repo.run("move", "WEB-1", "active", "--commit") == 0
    moved = (repo.path / "active/web/WEB-1-one.md").read_bytes()
    assert moved == text.replace("status: backlog", "status: active").encode()
    assert repo.git("log", "-1", "--format=%s") == "Move WEB-1 to active"
    assert repo.git("status", "--porcelain") == ""
    assert repo.run("validate") == 0
    assert repo.run("move", "WEB-1", "active") == 0  # already there: nothing to do
    assert "already in active/web/WEB-1-one.md" in capsys.readouterr().err


def test_move_refusals_leave_everything_as_it_was(backlog_repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    repo = backlog_repo
    before = repo.git("status", "--porcelain")
    assert repo.run("move", "WEB-1", "nowhere") == 2
    assert "no stage 'nowhere'" in capsys.readouterr().err
    assert repo.run("move", "NOPE-1", "active") == 2
    assert "NOPE-1: no story file for this id" in capsys.readouterr().err
    assert repo.run("move", "WEB-1", "active", "-m", "no commit") == 2
    repo.story("backlog", "web", "WEB-7", title="Untracked")
    assert repo.run("move", "WEB-7", "active", "--commit") == 2
    assert "git does not track it yet" in capsys.readouterr().err
    assert (repo.path / "backlog/web/WEB-7-story.md").exists()
    (repo.path / "backlog/web/WEB-7-story.md").unlink()
    (repo.path / ".git" / "MERGE_HEAD").write_text(repo.git("rev-parse", "HEAD") + "\n")
    assert repo.run("move", "WEB-1", "active") == 4
    assert "a merge is in progress" in capsys.readouterr().err
    (repo.path / ".git" / "MERGE_HEAD").unlink()
    repo.write("backlog/web/WEB-1-login.md", "---\nid: WEB-1\ntitle: [broken\n---\n")
    assert repo.run("move", "WEB-1", "active") == 2
    assert "fix the file before moving it" in capsys.readouterr().err
    repo.git("checkout", "--", "backlog/web/WEB-1-login.md")
    assert repo.git("status", "--porcelain") == before
