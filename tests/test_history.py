"""Status history from git (one row per stage move, in commit order) and the history/runs commands."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pytest

from storysync.db import tables as m
from tests.conftest import Repo, make_repo
from tests.test_sync_incremental import commit_as, do_sync, git_mv, history_of, table

pytestmark = pytest.mark.usefixtures("any_db")


def test_fast_forward_merge_records_the_branch_commit(backlog_repo: Repo) -> None:
    repo = backlog_repo
    do_sync(repo)
    repo.git("checkout", "-q", "-b", "feature")
    git_mv(repo, "backlog/web/WEB-1-login.md", "active/web/WEB-1-login.md")
    moved = repo.commit("start WEB-1")
    repo.git("checkout", "-q", "main")
    repo.git("merge", "-q", "--ff-only", "feature")
    do_sync(repo)
    assert history_of(repo.db_url, "WEB-1")[1:] == [("backlog", "active", moved)]


def test_no_ff_merge_counts_a_branch_move_once(backlog_repo: Repo) -> None:
    repo = backlog_repo
    do_sync(repo)
    repo.git("checkout", "-q", "-b", "feature")
    git_mv(repo, "backlog/web/WEB-1-login.md", "active/web/WEB-1-login.md")
    first = commit_as(repo, "start WEB-1", when="2026-04-01T09:00:00Z")
    git_mv(repo, "active/web/WEB-1-login.md", "completed/web/WEB-1-login.md")
    second = commit_as(repo, "finish WEB-1", when="2026-04-02T09:00:00Z")
    repo.git("checkout", "-q", "main")
    repo.story("backlog", "api", "API-3", title="Meanwhile")
    commit_as(repo, "meanwhile", when="2026-04-01T12:00:00Z")
    repo.git("merge", "-q", "--no-ff", "-m", "merge feature", "feature")
    result = do_sync(repo)
    assert result.moved == ["WEB-1"]
    assert history_of(repo.db_url, "WEB-1")[1:] == [("backlog", "active", first), ("active", "completed", second)]


def test_cherry_picked_move_is_not_counted_twice(backlog_repo: Repo) -> None:
    repo = backlog_repo
    do_sync(repo)
    repo.git("checkout", "-q", "-b", "feature")
    git_mv(repo, "backlog/web/WEB-1-login.md", "active/web/WEB-1-login.md")
    original = repo.commit("start WEB-1")
    repo.git("checkout", "-q", "main")
    repo.git("cherry-pick", original)
    picked = repo.git("rev-parse", "HEAD")
    do_sync(repo)
    assert history_of(repo.db_url, "WEB-1")[1:] == [("backlog", "active", picked)]
    repo.git("merge", "-q", "--no-ff", "-m", "merge feature", "feature")  # brings the original commit too
    do_sync(repo)
    assert history_of(repo.db_url, "WEB-1")[1:] == [("backlog", "active", picked)]


def test_pull_rebase_does_not_record_rebased_moves_again(tmp_path: Path) -> None:
    upstream = make_repo(tmp_path / "upstream")
    upstream.story("backlog", "web", "WEB-1", title="One")
    upstream.commit("one")
    subprocess.run(["git", "clone", "-q", str(upstream.path), str(tmp_path / "clone")], check=True)
    clone = Repo(tmp_path / "clone")
    do_sync(clone)
    git_mv(clone, "backlog/web/WEB-1-story.md", "active/web/WEB-1-story.md")
    local = clone.commit("start WEB-1")
    do_sync(clone)
    upstream.story("backlog", "api", "WEB-2", title="Two")
    two = upstream.commit("two")
    clone.git("pull", "-q", "--rebase")
    rebased = clone.git("rev-parse", "HEAD")
    assert rebased != local
    result = do_sync(clone)
    assert len(result.notices) == 1
    assert "not an ancestor" in result.notices[0]
    assert result.created == ["WEB-2"]
    assert history_of(clone.db_url, "WEB-1")[1:] == [("backlog", "active", local)]  # not again as the rebased copy
    assert history_of(clone.db_url, "WEB-2") == [(None, "backlog", two)]  # walked from the fork point


def test_full_history_rebuilds_from_the_whole_log(repo: Repo) -> None:
    repo.story("refinements", "web", "WEB-1", title="One")
    created = commit_as(repo, "idea", "Bea Builder <bea@example.invalid>", "2026-01-01T08:00:00Z")
    git_mv(repo, "refinements/web/WEB-1-story.md", "backlog/web/WEB-1-story.md")
    groomed = commit_as(repo, "groomed", when="2026-01-02T08:00:00Z")
    git_mv(repo, "backlog/web/WEB-1-story.md", "active/web/WEB-1-story.md")
    started = commit_as(repo, "started", when="2026-01-03T08:00:00Z")
    repo.story("backlog", "api", "API-1", title="Later")
    later = commit_as(repo, "later", when="2026-01-04T08:00:00Z")
    do_sync(repo)  # the first sync knows no range: one row per story, at HEAD
    assert history_of(repo.db_url, "WEB-1") == [(None, "active", later)]
    result = do_sync(repo, full=True, history=True)
    assert result.exit_code == 0
    assert history_of(repo.db_url, "WEB-1") == [
        (None, "refinements", created),
        ("refinements", "backlog", groomed),
        ("backlog", "active", started),
    ]
    assert history_of(repo.db_url, "API-1") == [(None, "backlog", later)]
    rows = [h for h in table(repo.db_url, m.status_history) if h["commit"] == created]
    assert rows[0]["author"] == "Bea Builder <bea@example.invalid>"
    again = len(table(repo.db_url, m.status_history))
    do_sync(repo, full=True, history=True)  # rebuilding twice gives the same rows
    assert len(table(repo.db_url, m.status_history)) == again


def test_history_command(backlog_repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    repo = backlog_repo
    assert repo.run("sync") == 0
    git_mv(repo, "backlog/web/WEB-1-login.md", "active/web/WEB-1-login.md")
    moved = commit_as(repo, "start", "Bea Builder <bea@example.invalid>")
    assert repo.run("sync") == 0
    capsys.readouterr()
    assert repo.run("history", "WEB-1", "--format", "json") == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["from_status"], r["to_status"]) for r in rows] == [(None, "backlog"), ("backlog", "active")]
    assert rows[1]["commit"] == moved
    assert rows[1]["author"] == "Bea Builder <bea@example.invalid>"
    assert repo.run("history", "WEB-1") == 0
    out = capsys.readouterr().out
    assert moved[:12] in out
    assert "(created)" in out
    assert repo.run("history", "NOPE-1") == 2
    assert "no story with id 'NOPE-1'" in capsys.readouterr().err


def test_a_reset_to_an_older_commit_is_dated_at_the_sync_and_listed_in_order(
    repo: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    """No commit makes the move back after ``reset --hard HEAD~1``: its history row is
    dated when the sync saw it, not at the older commit, so ``history`` lists it last."""
    repo.story("backlog", "web", "WEB-1", title="One")
    older = commit_as(repo, "one", when="2020-01-01T08:00:00Z")
    assert repo.run("sync") == 0
    git_mv(repo, "backlog/web/WEB-1-story.md", "active/web/WEB-1-story.md")
    commit_as(repo, "start WEB-1", when="2020-01-02T08:00:00Z")
    assert repo.run("sync") == 0
    repo.git("reset", "-q", "--hard", "HEAD~1")  # no hook fires
    synced_at = datetime.now(timezone.utc).replace(microsecond=0)
    assert repo.run("sync", "--allow-rewind") == 0
    capsys.readouterr()
    assert repo.run("history", "WEB-1", "--format", "json") == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["from_status"], r["to_status"]) for r in rows] == [
        (None, "backlog"),
        ("backlog", "active"),
        ("active", "backlog"),
    ]
    back = rows[-1]
    assert back["commit"] == older  # the commit the database now reflects
    assert datetime.fromisoformat(back["changed_at"]).replace(tzinfo=timezone.utc) >= synced_at
    assert [r["changed_at"] for r in rows] == sorted(r["changed_at"] for r in rows)


def test_runs_command(backlog_repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    repo = backlog_repo
    assert repo.run("sync", "--trigger", "ci") == 0
    repo.write("backlog/web/WEB-3-bad.md", "---\nid: WEB-3\n---\n")
    repo.commit("bad")
    assert repo.run("sync") == 1
    capsys.readouterr()
    assert repo.run("runs", "--format", "json") == 0
    runs = json.loads(capsys.readouterr().out)
    assert [(r["trigger"], r["outcome"]) for r in runs] == [("manual", "invalid"), ("ci", "ok")]
    assert runs[0]["errors"][0]["path"] == "backlog/web/WEB-3-bad.md"
    assert runs[1]["upserted"] == 4
    assert repo.run("runs", "-n", "1") == 0
    out = capsys.readouterr().out
    assert "invalid" in out
    assert "backlog/web/WEB-3-bad.md" in out


def test_full_history_in_a_shallow_clone_says_so(tmp_path: Path) -> None:
    upstream = make_repo(tmp_path / "upstream")
    upstream.story("backlog", "web", "WEB-1", title="One")
    upstream.commit("one")
    git_mv(upstream, "backlog/web/WEB-1-story.md", "active/web/WEB-1-story.md")
    upstream.commit("start")
    path = tmp_path / "shallow"
    subprocess.run(["git", "clone", "-q", "--depth", "1", f"file://{upstream.path}", str(path)], check=True)
    shallow = Repo(path)
    result = do_sync(shallow, full=True, history=True)
    assert result.notices == [
        "this is a shallow clone: the status history is rebuilt from the commits it has "
        "(git fetch --unshallow for all of it)"
    ]
    head = shallow.git("rev-parse", "HEAD")
    assert history_of(shallow.db_url, "WEB-1") == [(None, "active", head)]
