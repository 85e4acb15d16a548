"""Every branch (issue 16): ``sync --branch NAME`` records the stories a branch changed as an
overlay, so the team database sees work in progress where it happens; the main rows are
never touched, and a merge (or the branch's deletion) drops the overlay.

Real git repositories, real merges, SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select

from storysync.db import tables as m
from storysync.db.branches import furthest, status_rank
from storysync.db.database import Database
from storysync.db.notify import batches_from
from tests.conftest import Repo, story_text
from tests.test_notify import Hook

LOGIN = "backlog/web/WEB-1-login.md"
SIGNUP = "backlog/web/WEB-2-signup.md"


@pytest.fixture
def team(repo: Repo, any_db: str) -> Repo:
    """The main line with two backlog stories, synced into the team database (SQLite, PostgreSQL)."""
    repo.write(LOGIN, story_text("WEB-1", "Login page", priority="high"))
    repo.write(SIGNUP, story_text("WEB-2", "Signup"))
    repo.commit("two stories")
    assert repo.run("-q", "sync") == 0
    return repo


def start_login(repo: Repo, branch: str = "feature/x") -> str:
    """On a new branch, move WEB-1 to active (as a developer starting it would); the tip."""
    repo.git("checkout", "-q", "-b", branch)
    (repo.path / "active/web").mkdir(parents=True, exist_ok=True)
    repo.git("mv", LOGIN, "active/web/WEB-1-login.md")
    return repo.commit("start the login page")


def rows(repo: Repo, table: Any) -> list[dict[str, Any]]:
    db = Database(repo.db_url)
    try:
        with db.read() as conn:
            return [dict(r._mapping) for r in conn.execute(select(table))]
    finally:
        db.dispose()


def overlay(repo: Repo) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["branch"], r["story_id"]): r for r in rows(repo, m.branch_stories)}


def main_rows(repo: Repo) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in rows(repo, m.stories)}


def feed(repo: Repo, *kinds: str) -> list[dict[str, Any]]:
    """The change feed's rows of these kinds, in order."""
    return sorted((r for r in rows(repo, m.changes) if r["kind"] in kinds), key=lambda r: r["seq"])


def out(repo: Repo, capsys: pytest.CaptureFixture[str], *args: str, code: int = 0) -> str:
    capsys.readouterr()
    assert repo.run(*args) == code
    return capsys.readouterr().out


def listed(repo: Repo, capsys: pytest.CaptureFixture[str]) -> dict[str, dict[str, Any]]:
    return {s["id"]: s for s in json.loads(out(repo, capsys, "list", "--format", "json"))}


def test_a_story_started_on_a_branch_is_seen_before_the_merge_and_promoted_by_it(
    team: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = team
    before = main_rows(repo)
    history = rows(repo, m.status_history)
    tip = start_login(repo)  # the CI job of a push to feature/x has it checked out

    capsys.readouterr()
    assert repo.run("sync", "--branch", "feature/x") == 0
    err = capsys.readouterr().err
    assert "feature/x" in err
    assert "recorded 1 story differing from the main line" in err

    # the main rows are as they were: the database still mirrors the main line
    assert main_rows(repo) == before
    assert rows(repo, m.status_history) == history
    found = overlay(repo)
    assert list(found) == [("feature/x", "WEB-1")]
    row = found[("feature/x", "WEB-1")]
    assert (row["status"], row["kind"], row["path"]) == ("active", "modified", "active/web/WEB-1-login.md")
    assert (row["commit"], row["tip_commit"], row["title"]) == (tip, tip, "Login page")
    assert row["author"].startswith("Ada Author")
    assert row["changed_at"] is not None
    assert row["base_commit"] == repo.git("merge-base", "main", "feature/x")

    # list, show and board: "active on feature/x" next to the main status
    stories = listed(repo, capsys)
    assert stories["WEB-1"]["status"] == "backlog"
    assert stories["WEB-1"]["furthest_status"] == "active"
    assert stories["WEB-1"]["branches"] == [{"branch": "feature/x", "status": "active", "kind": "modified"}]
    assert (stories["WEB-2"]["furthest_status"], stories["WEB-2"]["branches"]) == ("backlog", [])
    table = out(repo, capsys, "list").splitlines()
    assert "WEB-1  backlog (active on feature/x)  web" in table[1]
    assert table[2].split()[:2] == ["WEB-2", "backlog"]
    shown = out(repo, capsys, "show", "WEB-1")
    assert "active on feature/x (modified in " + tip[:12] in shown
    assert json.loads(out(repo, capsys, "show", "WEB-1", "--format", "json"))["furthest_status"] == "active"
    board = out(repo, capsys, "board")
    assert "WEB-1 Login page (high) [active on feature/x]" in board
    backlog_column = json.loads(out(repo, capsys, "board", "--format", "json"))[0]["columns"][1]
    assert backlog_column["status"] == "backlog"
    assert backlog_column["stories"][0]["branches"] == [{"branch": "feature/x", "status": "active", "kind": "modified"}]

    # the change feed says so
    (change,) = feed(repo, "branch")
    assert (change["story_id"], change["source"]) == ("WEB-1", "git")
    assert change["detail"] == {"branch": "feature/x", "status": "active", "furthest_status": "active"}

    # merged (a real merge commit) and synced: the main row is active, the overlay gone
    repo.git("checkout", "-q", "main")
    repo.git("merge", "-q", "--no-ff", "feature/x", "-m", "merge feature/x")
    capsys.readouterr()
    assert repo.run("sync") == 0
    assert "branch overlay: 1 story now in the main line, dropped from feature/x" in capsys.readouterr().err
    assert main_rows(repo)["WEB-1"]["status"] == "active"
    assert overlay(repo) == {}
    (drop,) = feed(repo, "unbranch")
    assert drop["story_id"] == "WEB-1"
    assert drop["detail"] == {
        "branch": "feature/x",
        "status": "active",
        "furthest_status": "active",
        "reason": "merged",
    }
    assert "(active on" not in out(repo, capsys, "list")


def test_a_squash_merge_promotes_the_overlay(team: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    repo = team
    start_login(repo)
    assert repo.run("-q", "sync", "--branch", "feature/x") == 0
    repo.git("checkout", "-q", "main")
    repo.git("merge", "-q", "--squash", "feature/x")
    repo.commit("login page (squashed)")
    assert repo.run("-q", "sync") == 0
    assert main_rows(repo)["WEB-1"]["status"] == "active"
    assert overlay(repo) == {}  # the branch tip is not in main, but its content is
    (drop,) = feed(repo, "unbranch")
    assert drop["detail"]["reason"] == "promoted"


def test_a_deleted_branch_drops_its_overlay(team: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    repo = team
    start_login(repo)
    assert repo.run("-q", "sync", "--branch", "feature/x") == 0
    repo.git("checkout", "-q", "main")
    repo.git("branch", "-q", "-D", "feature/x")  # abandoned, never merged
    capsys.readouterr()
    assert repo.run("sync", "--branch", "feature/x") == 0  # the CI job of the delete event
    err = capsys.readouterr().err
    assert "feature/x: no such branch (deleted?): its overlay is dropped" in err
    assert "feature/x: dropped its overlay (1 story)" in err
    assert overlay(repo) == {}
    assert main_rows(repo)["WEB-1"]["status"] == "backlog"
    (drop,) = feed(repo, "unbranch")
    assert drop["detail"] == {"branch": "feature/x", "status": "active", "furthest_status": "backlog", "reason": "gone"}
    assert repo.run("-q", "sync", "--branch", "feature/x") == 0  # again: nothing left to drop
    assert len(feed(repo, "unbranch")) == 1


def test_a_branch_the_main_line_already_merged_records_nothing(team: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    """The CI job of a push to the branch may run after the one of its merge."""
    repo = team
    start_login(repo)
    repo.git("checkout", "-q", "main")
    repo.git("merge", "-q", "--ff-only", "feature/x")
    assert repo.run("-q", "sync") == 0
    capsys.readouterr()
    assert repo.run("sync", "--branch", "feature/x") == 0
    assert "feature/x: merged into the main line" in capsys.readouterr().err
    assert overlay(repo) == {}
    assert feed(repo, "branch", "unbranch") == []


def test_a_story_only_a_branch_has(team: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    repo = team
    repo.git("checkout", "-q", "-b", "feature/search")
    repo.write("active/web/WEB-3-search.md", story_text("WEB-3", "Search"))
    repo.commit("a new story, started at once")
    assert repo.run("-q", "sync", "--branch", "feature/search") == 0
    assert "WEB-3" not in main_rows(repo)
    row = overlay(repo)[("feature/search", "WEB-3")]
    assert (row["kind"], row["status"], row["title"]) == ("added", "active", "Search")
    shown = out(repo, capsys, "show", "WEB-3")
    assert "not in the main line" in shown
    assert "active on feature/search (added in" in shown
    assert "WEB-3" not in listed(repo, capsys)  # list shows the main rows (each with its branches)


def test_a_story_deleted_on_a_branch(team: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    repo = team
    repo.git("checkout", "-q", "-b", "cleanup")
    repo.git("rm", "-q", SIGNUP)
    repo.commit("drop signup")
    assert repo.run("-q", "sync", "--branch", "cleanup") == 0
    row = overlay(repo)[("cleanup", "WEB-2")]
    assert (row["kind"], row["status"], row["content_hash"], row["path"]) == ("deleted", None, None, SIGNUP)
    assert main_rows(repo)["WEB-2"]["deleted_at"] is None
    stories = listed(repo, capsys)
    assert stories["WEB-2"]["furthest_status"] == "backlog"
    assert stories["WEB-2"]["branches"] == [{"branch": "cleanup", "status": None, "kind": "deleted"}]
    assert "backlog (deleted on cleanup)" in out(repo, capsys, "list")
    repo.git("checkout", "-q", "main")
    repo.git("merge", "-q", "--squash", "cleanup")
    repo.commit("drop signup (squashed)")
    assert repo.run("-q", "sync") == 0
    assert overlay(repo) == {}  # deleted in the main line too


def test_an_invalid_file_on_a_branch_records_nothing(team: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    repo = team
    start_login(repo)
    assert repo.run("-q", "sync", "--branch", "feature/x") == 0
    recorded = overlay(repo)
    repo.write(SIGNUP, "---\nid: WEB-2\ntitle: [unclosed\n---\n")
    repo.commit("break signup")
    capsys.readouterr()
    assert repo.run("sync", "--branch", "feature/x") == 1
    captured = capsys.readouterr()
    assert captured.out.startswith(f"{SIGNUP}:4:1: ")  # path:line:col: message, as validate says it
    assert captured.out == out(repo, capsys, "validate", SIGNUP, code=1)
    assert "nothing recorded; 1 error" in captured.err
    assert "nothing was written" in captured.err
    assert overlay(repo) == recorded  # the overlay stays as it was
    assert rows(repo, m.sync_runs)[-1]["outcome"] == "invalid"
    assert feed(repo, "branch", "unbranch") == feed(repo, "branch")[:1]

    assert repo.run("-q", "sync", "--branch", "feature/x", "--keep-going") == 1
    assert set(overlay(repo)) == {("feature/x", "WEB-1")}  # the valid story recorded, the invalid one not


def test_a_new_commit_on_the_branch_replaces_its_overlay(team: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    repo = team
    start_login(repo)
    repo.write(SIGNUP, story_text("WEB-2", "Signup, reworded"))
    repo.commit("reword signup")
    assert repo.run("-q", "sync", "--branch", "feature/x") == 0
    assert set(overlay(repo)) == {("feature/x", "WEB-1"), ("feature/x", "WEB-2")}
    assert "WEB-2  backlog (edited on feature/x)" in out(repo, capsys, "list")  # the same status, other words

    (repo.path / "completed/web").mkdir(parents=True)
    repo.git("mv", "active/web/WEB-1-login.md", "completed/web/WEB-1-login.md")
    repo.write(SIGNUP, story_text("WEB-2", "Signup"))  # back as the main line has it
    tip = repo.commit("login done; signup as it was")
    assert repo.run("-q", "sync", "--branch", "feature/x") == 0
    found = overlay(repo)
    assert list(found) == [("feature/x", "WEB-1")]
    assert (found[("feature/x", "WEB-1")]["status"], found[("feature/x", "WEB-1")]["tip_commit"]) == ("completed", tip)
    sets = [(c["story_id"], c["detail"]["status"]) for c in feed(repo, "branch")]
    assert sets == [("WEB-1", "active"), ("WEB-2", "backlog"), ("WEB-1", "completed")]
    (drop,) = feed(repo, "unbranch")
    assert (drop["story_id"], drop["detail"]["reason"]) == ("WEB-2", "in step")

    count = len(rows(repo, m.changes))
    assert repo.run("-q", "sync", "--branch", "feature/x") == 0  # nothing new: no change rows
    assert len(rows(repo, m.changes)) == count


def test_branches_are_apart_and_a_main_sync_keeps_the_unmerged_ones(
    team: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = team
    start_login(repo, "feature/x")
    assert repo.run("-q", "sync", "--branch", "feature/x") == 0
    repo.git("checkout", "-q", "main")
    repo.git("checkout", "-q", "-b", "feature/y")
    (repo.path / "completed/web").mkdir(parents=True)
    repo.git("mv", LOGIN, "completed/web/WEB-1-login.md")
    repo.commit("login was done all along")
    assert repo.run("-q", "sync", "--branch", "feature/y") == 0
    repo.git("checkout", "-q", "main")
    repo.write("backlog/web/WEB-4-other.md", story_text("WEB-4", "Other"))
    repo.commit("unrelated work on main")
    assert repo.run("-q", "sync") == 0
    assert set(overlay(repo)) == {("feature/x", "WEB-1"), ("feature/y", "WEB-1")}
    assert listed(repo, capsys)["WEB-1"]["furthest_status"] == "completed"
    assert "backlog (active on feature/x, completed on feature/y)" in out(repo, capsys, "list")
    assert feed(repo, "unbranch") == []


def test_branch_changes_reach_the_webhook(team: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    hook = Hook()
    hook.start()
    try:
        monkeypatch.setenv("STORYSYNC_WEBHOOK_URL", hook.url)
        start_login(team)
        assert team.run("-q", "sync", "--branch", "feature/x") == 0
    finally:
        hook.stop()
    changes = [c for batch in hook.received for c in batch["changes"]]
    assert changes[-1] | {"seq": 0} == {
        "seq": 0,
        "story_id": "WEB-1",
        "kind": "branch",
        "source": "git",
        "branch": "feature/x",
        "status": "active",
        "furthest_status": "active",
    }
    db = Database(team.db_url)
    try:
        with db.read() as conn:
            assert (
                batches_from(conn.execute(select(m.changes).order_by(m.changes.c.seq)))[-1].changes[-1] == changes[-1]
            )
    finally:
        db.dispose()


def test_a_dry_run_records_nothing(team: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    start_login(team)
    runs = len(rows(team, m.sync_runs))
    capsys.readouterr()
    assert team.run("sync", "--branch", "feature/x", "--dry-run") == 0
    assert "would record 1 story differing from the main line (1 new or changed, 0 dropped)" in capsys.readouterr().err
    assert overlay(team) == {}
    assert len(rows(team, m.sync_runs)) == runs


def test_sync_branch_takes_no_range(team: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    assert team.run("sync", "--branch", "feature/x", "--full") == 2
    assert "--branch" in capsys.readouterr().err
    assert overlay(team) == {}


def test_the_most_progressed_status_follows_the_stage_order() -> None:
    rank = status_rank({"refinements": "refinements", "backlog": "backlog", "active": "active", "done": "completed"})
    assert furthest("backlog", ["active", "refinements"], rank) == "active"
    assert furthest("completed", ["active"], rank) == "completed"
    assert furthest("backlog", ["parked"], rank) == "backlog"  # an unknown status ranks lowest
    assert furthest(None, [None, "active"], rank) == "active"  # deleted on one branch, active on another
