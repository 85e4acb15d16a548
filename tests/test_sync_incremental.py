"""Incremental sync: changed paths from the working tree (watch) and from a git range."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from storysync import models as m
from storysync.config import load_config
from storysync.db import LAST_SYNCED, Database, get_state
from storysync.gitdiff import open_repo
from storysync.sync import SyncOptions, SyncResult, sync
from tests.conftest import Repo, story_text


def do_sync(repo: Repo, url: str | None = None, **options: Any) -> SyncResult:
    """Run the library sync on ``repo`` with ``options``."""
    config = load_config(repo.path, db_flag=url or repo.db_url)
    db = Database(config.database)
    try:
        return sync(config, db, open_repo(repo.path), SyncOptions(**options))
    finally:
        db.dispose()


def stories(url: str) -> dict[str, dict[str, Any]]:
    """Every stories row by id."""
    db = Database(url)
    try:
        with db.read() as conn:
            return {r.id: dict(r._mapping) for r in conn.execute(select(m.stories))}
    finally:
        db.dispose()


def table(url: str, tbl: Any) -> list[dict[str, Any]]:
    db = Database(url)
    try:
        with db.read() as conn:
            return [dict(r._mapping) for r in conn.execute(select(tbl))]
    finally:
        db.dispose()


def last_synced(url: str) -> str | None:
    db = Database(url)
    try:
        with db.read() as conn:
            return get_state(conn, LAST_SYNCED)
    finally:
        db.dispose()


def move(repo: Repo, old: str, new: str) -> None:
    """Rename a file on disk (creating the target directory), as an editor or ``mv`` would."""
    (repo.path / new).parent.mkdir(parents=True, exist_ok=True)
    (repo.path / old).rename(repo.path / new)


def live(url: str) -> dict[str, str]:
    """id -> path of the live stories."""
    return {k: v["path"] for k, v in stories(url).items() if v["deleted_at"] is None}


# --- working tree, changed paths (the watch API) -------------------------------------------


def test_paths_sync_reads_only_the_given_paths(backlog_repo: Repo) -> None:
    repo = backlog_repo
    assert do_sync(repo).exit_code == 0
    repo.story("backlog", "web", "WEB-1", "login", title="Login page v2", priority="high", depends_on=["API-1"])
    repo.story("active", "web", "WEB-2", "signup", title="Signup CHANGED ON DISK", points=3)
    result = do_sync(repo, working_tree=True, paths=("backlog/web/WEB-1-login.md",))
    assert result.exit_code == 0
    assert (result.files, result.updated, result.full) == (1, ["WEB-1"], False)
    rows = stories(repo.db_url)
    assert rows["WEB-1"]["title"] == "Login page v2"
    assert rows["WEB-2"]["title"] == "Signup"  # not among the paths: untouched


def test_paths_sync_creates_and_deletes_by_path(backlog_repo: Repo) -> None:
    repo = backlog_repo
    do_sync(repo)
    (repo.path / "completed/api/API-2-health.md").unlink()
    new = repo.story("backlog", "api", "API-3", "rate limits", title="Rate limits", depends_on=["API-1"])
    result = do_sync(repo, working_tree=True, paths=("completed/api/API-2-health.md", new, "README.md", "plans/x.md"))
    assert result.exit_code == 0
    assert (result.created, result.deleted, result.files) == (["API-3"], ["API-2"], 1)
    rows = stories(repo.db_url)
    assert rows["API-2"]["deleted_at"] is not None
    assert rows["API-3"]["path"] == "backlog/api/API-3-rate limits.md"
    assert last_synced(repo.db_url) == repo.git("rev-parse", "HEAD")  # a working-tree run never advances it


def test_paths_sync_move_by_both_paths_and_by_new_path_alone(backlog_repo: Repo) -> None:
    repo = backlog_repo
    do_sync(repo)
    move(repo, "backlog/web/WEB-1-login.md", "active/web/WEB-1-login.md")
    result = do_sync(repo, working_tree=True, paths=("backlog/web/WEB-1-login.md", "active/web/WEB-1-login.md"))
    assert (result.exit_code, result.moved, result.deleted) == (0, ["WEB-1"], [])
    assert stories(repo.db_url)["WEB-1"]["status"] == "active"
    # an editor's atomic save reported by the new path only: still a move, not a duplicate id
    move(repo, "active/web/WEB-1-login.md", "completed/web/WEB-1-login-page.md")
    result = do_sync(repo, working_tree=True, paths=("completed/web/WEB-1-login-page.md",))
    assert (result.exit_code, result.moved) == (0, ["WEB-1"])
    assert live(repo.db_url)["WEB-1"] == "completed/web/WEB-1-login-page.md"
    history = [
        (h["from_status"], h["to_status"]) for h in table(repo.db_url, m.status_history) if h["story_id"] == "WEB-1"
    ]
    assert history == [(None, "backlog"), ("backlog", "active"), ("active", "completed")]


def test_paths_sync_cross_file_checks_use_database_rows(backlog_repo: Repo) -> None:
    repo = backlog_repo
    do_sync(repo)
    dup = repo.story("backlog", "api", "WEB-2", "again", title="Duplicate id")
    missing = repo.story("backlog", "api", "API-4", "dep", title="Dep", depends_on=["NOPE-1"])
    cycle = repo.story("refinements", "api", "API-1", "auth", title="Auth API", depends_on=["WEB-1"])
    result = do_sync(repo, working_tree=True, paths=(dup, missing, cycle))
    codes = sorted((d.path, d.code) for d in result.diagnostics)
    assert codes == sorted([(dup, "duplicate-id"), (missing, "missing-dependency"), (cycle, "dependency-cycle")])
    assert result.exit_code == 1
    assert "WEB-2" in str(next(d for d in result.diagnostics if d.code == "duplicate-id"))
    assert "API-4" not in stories(repo.db_url)  # nothing written
    runs = table(repo.db_url, m.sync_runs)
    assert runs[-1]["outcome"] == "invalid"


def test_paths_sync_keep_going_writes_the_valid_ones(backlog_repo: Repo) -> None:
    repo = backlog_repo
    do_sync(repo)
    good = repo.story("backlog", "api", "API-5", "ok", title="Fine")
    bad = repo.write("backlog/api/API-6-bad.md", "---\nid: API-6\ntitle: [unclosed\n---\n")
    rel_bad = bad.relative_to(repo.path).as_posix()
    result = do_sync(repo, working_tree=True, keep_going=True, paths=(good, rel_bad))
    assert result.exit_code == 1
    assert result.created == ["API-5"]
    assert [d.path for d in result.diagnostics] == [rel_bad]
    rows = stories(repo.db_url)
    assert "API-5" in rows
    assert "API-6" not in rows
    run = table(repo.db_url, m.sync_runs)[-1]
    assert run["outcome"] == "invalid"
    assert run["errors"][0]["path"] == rel_bad


def test_paths_sync_invalid_file_keeps_its_row(backlog_repo: Repo) -> None:
    repo = backlog_repo
    do_sync(repo)
    repo.write("active/web/WEB-2-signup.md", "---\nid: WEB-2\ntitle: x\n")  # no closing ---
    result = do_sync(repo, working_tree=True, keep_going=True, paths=("active/web/WEB-2-signup.md",))
    assert result.exit_code == 1
    assert result.deleted == []
    assert stories(repo.db_url)["WEB-2"]["title"] == "Signup"


def test_paths_sync_dry_run_and_idempotence(backlog_repo: Repo) -> None:
    repo = backlog_repo
    do_sync(repo)
    path = repo.story("active", "web", "WEB-2", "signup", title="Renamed", points=3)
    dry = do_sync(repo, working_tree=True, dry_run=True, paths=(path,))
    assert dry.updated == ["WEB-2"]
    assert stories(repo.db_url)["WEB-2"]["title"] == "Signup"
    assert do_sync(repo, working_tree=True, paths=(path,)).updated == ["WEB-2"]
    changes = len(table(repo.db_url, m.changes))
    again = do_sync(repo, working_tree=True, paths=(path,))
    assert (again.updated, again.unchanged) == ([], 1)
    assert len(table(repo.db_url, m.changes)) == changes


def test_paths_sync_id_changed_in_place_replaces_the_row(backlog_repo: Repo) -> None:
    repo = backlog_repo
    do_sync(repo)
    path = "active/web/WEB-2-signup.md"
    (repo.path / path).unlink()
    repo.write("active/web/WEB-9-signup.md", story_text("WEB-9", title="Signup"))
    result = do_sync(repo, working_tree=True, paths=(path, "active/web/WEB-9-signup.md"))
    assert (result.created, result.deleted) == (["WEB-9"], ["WEB-2"])


@pytest.mark.parametrize("name", ["WEB-7-with space.md", 'WEB-7-ünïcödé "quoted".md'])
def test_paths_sync_odd_file_names(backlog_repo: Repo, name: str) -> None:
    repo = backlog_repo
    do_sync(repo)
    rel = f"backlog/web/{name}"
    repo.write(rel, story_text("WEB-7"))
    assert do_sync(repo, working_tree=True, paths=(rel,)).created == ["WEB-7"]
    assert live(repo.db_url)["WEB-7"] == rel
    Path(repo.path / rel).unlink()
    assert do_sync(repo, working_tree=True, paths=(rel,)).deleted == ["WEB-7"]
