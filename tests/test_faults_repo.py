"""The git repository in awkward states (SPEC §5, §6, §7, §9): mid-merge, mid-rebase,
a stale ``index.lock``, a shallow clone, a force-pushed branch, and the last synced
commit garbage-collected.

Real repositories, real merges and rebases that stop on real conflicts, the real
hook scripts installed by ``storysync install-hooks`` and fired by git itself.
What must hold: git commands never fail because of a hook (post-* hooks exit 0);
export refuses (exit 4) while a merge or rebase is under way or ``index.lock`` is
held; sync reads commits, so it stays correct; and when the last synced commit
is gone or no longer an ancestor, sync does a full reconcile, says so, and loses
nothing (every file at HEAD is in the database, rows of vanished files are
soft-deleted with their history, DB-side edits are kept).
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Repo, make_repo, run_cli_subprocess, story_text
from tests.faults import live_rows, one_line_error

HOOKED_PYTHON = sys.executable


def _files_at_head(repo: Repo) -> dict[str, tuple[str, str]]:
    """id → (path, sha256 of the blob) for every story file in HEAD's tree."""
    out: dict[str, tuple[str, str]] = {}
    for rel in repo.git("ls-tree", "-r", "--name-only", "HEAD").splitlines():
        parts = rel.split("/")
        if len(parts) == 3 and parts[0] in ("refinements", "backlog", "active", "completed") and rel.endswith(".md"):
            data = subprocess.run(["git", "show", f"HEAD:{rel}"], cwd=repo.path, capture_output=True, check=True).stdout
            story_id = "-".join(parts[2].split("-", 2)[:2])
            out[story_id] = (rel, hashlib.sha256(data).hexdigest())
    return out


def _in_step(repo: Repo) -> None:
    """The database holds exactly the story files of HEAD."""
    assert live_rows(repo.db_path) == _files_at_head(repo)


def _query(repo: Repo, sql: str, *args: object) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(repo.db_path)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def _last_synced(repo: Repo) -> str:
    rows = _query(repo, "SELECT value FROM sync_state WHERE key = 'last_synced_commit'")
    return str(rows[0][0])


@pytest.fixture
def hooked(backlog_repo: Repo) -> Repo:
    """The backlog repository with storysync's git hooks installed, synced at HEAD."""
    assert backlog_repo.run("install-hooks") == 0
    backlog_repo.git("config", "storysync.python", HOOKED_PYTHON)
    assert backlog_repo.run("sync") == 0
    return backlog_repo


def _conflicting_branches(repo: Repo) -> None:
    """``feature`` and ``main`` both retitle WEB-1: merging or rebasing them conflicts."""
    rel = "backlog/web/WEB-1-login.md"
    repo.git("checkout", "-q", "-b", "feature")
    repo.write(rel, story_text("WEB-1", title="Login page (feature)", depends_on=["API-1"]))
    repo.story("backlog", "web", "WEB-7", "sso", title="SSO")
    repo.commit("feature: retitle WEB-1, add WEB-7")
    repo.git("checkout", "-q", "main")
    repo.write(rel, story_text("WEB-1", title="Login page (main)", depends_on=["API-1"]))
    repo.commit("main: retitle WEB-1")


# --------------------------------------------------------------------------- merge


def test_mid_merge_sync_reads_head_export_refuses_hooks_never_fail(hooked: Repo) -> None:
    _conflicting_branches(hooked)
    assert hooked.run("sync") == 0
    merge = hooked.git("merge", "feature", check=False)
    assert (hooked.path / ".git" / "MERGE_HEAD").exists(), merge

    # sync reads the commit, not the conflicted working tree: the database is HEAD exactly
    done = run_cli_subprocess(hooked, "sync")
    assert done.returncode == 0, done.stderr
    _in_step(hooked)
    # the hook entry point exits 0 and says why it does nothing
    done = run_cli_subprocess(hooked, "run-hook", "post-merge")
    assert done.returncode == 0
    assert "merge is in progress" in done.stderr
    # export refuses: exit 4, one line naming the repository
    hooked.run("set", "API-2", "title=Changed in the database")
    done = run_cli_subprocess(hooked, "export")
    assert done.returncode == 4, done.stderr
    assert "merge" in one_line_error(done.stderr)
    # validate of the working tree reports the conflict markers with file and line
    done = run_cli_subprocess(hooked, "validate", "backlog/web/WEB-1-login.md")
    assert done.returncode == 1
    assert "backlog/web/WEB-1-login.md:" in done.stdout + done.stderr

    # resolve and conclude the merge (git fires no post-merge hook for that): sync heals
    hooked.write("backlog/web/WEB-1-login.md", story_text("WEB-1", title="Login page (both)", depends_on=["API-1"]))
    hooked.git("add", "backlog/web/WEB-1-login.md")
    hooked.git("commit", "-q", "--no-edit")
    assert run_cli_subprocess(hooked, "sync").returncode == 0
    _in_step(hooked)
    assert run_cli_subprocess(hooked, "export").returncode == 0  # no longer refused


def test_clean_merge_fires_post_merge_hook_which_syncs(hooked: Repo) -> None:
    hooked.git("checkout", "-q", "-b", "feature")
    hooked.story("active", "api", "API-9", "metrics", title="Metrics")
    hooked.commit("feature: API-9")
    hooked.git("checkout", "-q", "main")
    hooked.git("merge", "-q", "--no-ff", "--no-edit", "feature")  # the real post-merge hook runs
    assert _last_synced(hooked) == hooked.git("rev-parse", "HEAD")
    _in_step(hooked)


# --------------------------------------------------------------------------- rebase


def test_mid_rebase_export_refuses_and_rebase_end_syncs(hooked: Repo) -> None:
    _conflicting_branches(hooked)
    hooked.git("checkout", "-q", "feature")
    rebase = hooked.git("rebase", "main", check=False)
    git_dir = hooked.path / ".git"
    assert (git_dir / "rebase-merge").exists() or (git_dir / "rebase-apply").exists(), rebase

    hooked.run("set", "API-2", "title=Changed in the database")
    done = run_cli_subprocess(hooked, "export")
    assert done.returncode == 4, done.stderr
    assert "rebase" in one_line_error(done.stderr)
    done = run_cli_subprocess(hooked, "run-hook", "post-checkout", "a", "b", "1")
    assert done.returncode == 0
    assert "rebase is in progress" in done.stderr

    hooked.write("backlog/web/WEB-1-login.md", story_text("WEB-1", title="Login page (rebased)", depends_on=["API-1"]))
    hooked.git("add", "backlog/web/WEB-1-login.md")
    finish = hooked.git("-c", "core.editor=true", "rebase", "--continue", check=False)
    assert not (git_dir / "rebase-merge").exists(), finish
    # post-rewrite fired at the end of the rebase and synced the rebased HEAD
    assert _last_synced(hooked) == hooked.git("rev-parse", "HEAD")
    _in_step(hooked)
    assert run_cli_subprocess(hooked, "export").returncode == 0


# --------------------------------------------------------------------------- index.lock


def test_stale_index_lock(hooked: Repo) -> None:
    """Sync needs no index (it reads objects); ``export --commit`` refuses with exit 4."""
    hooked.story("active", "api", "API-9", "metrics", title="Metrics")
    hooked.commit("API-9")  # the post-commit state: the database is one commit behind
    lock = hooked.path / ".git" / "index.lock"
    lock.write_text("")
    done = run_cli_subprocess(hooked, "sync")
    assert done.returncode == 0, done.stderr
    _in_step(hooked)
    hooked.run("set", "API-2", "title=Changed in the database")
    before = (hooked.path / "completed/api/API-2-health.md").read_bytes()
    done = run_cli_subprocess(hooked, "export", "--commit")
    assert done.returncode == 4, done.stderr
    assert str(lock) in one_line_error(done.stderr)
    assert (hooked.path / "completed/api/API-2-health.md").read_bytes() == before  # nothing written
    lock.unlink()
    done = run_cli_subprocess(hooked, "export", "--commit")
    assert done.returncode == 0, done.stderr
    assert b"Changed in the database" in (hooked.path / "completed/api/API-2-health.md").read_bytes()


# --------------------------------------------------------------------------- rewritten history


@pytest.fixture
def origin_and_clone(tmp_path: Path) -> tuple[Repo, Repo]:
    """A bare origin with three commits of stories, and a hooked clone synced at its tip."""
    author = make_repo(tmp_path / "author")
    author.story("backlog", "web", "WEB-1", "login", title="Login")
    author.story("backlog", "web", "WEB-2", "signup", title="Signup")
    author.commit("one")
    author.story("active", "api", "API-1", "auth", title="Auth")
    author.commit("two")
    author.git("mv", "backlog/web/WEB-2-signup.md", "backlog/web/WEB-2-sign-up.md")
    author.story("refinements", "api", "API-2", "cache", title="Cache")
    author.commit("three")
    origin = tmp_path / "origin.git"
    author.git("clone", "-q", "--bare", str(author.path), str(origin))
    author.git("remote", "add", "origin", str(origin))
    author.git("fetch", "-q", "origin")
    clone_path = tmp_path / "clone"
    author.git("clone", "-q", str(origin), str(clone_path))
    clone = Repo(clone_path)
    clone.write(".git/info/exclude", ".storysync/\n")
    assert clone.run("install-hooks") == 0
    clone.git("config", "storysync.python", HOOKED_PYTHON)
    assert clone.run("sync") == 0
    clone.run("set", "WEB-1", "title=Login (edited in the database)")
    return author, clone


def _force_push_rewrite(author: Repo) -> None:
    """Rewrite the last two commits (API-1 dropped, API-2 edited, WEB-3 added) and force-push."""
    author.git("reset", "-q", "--hard", "HEAD~2")
    author.story("refinements", "api", "API-2", "cache", title="Cache, rewritten")
    author.story("active", "web", "WEB-3", "search", title="Search")
    author.commit("rewritten")
    author.git("push", "-q", "--force", "origin", "HEAD:main")


def _fetch_rewritten(clone: Repo) -> str:
    """What a teammate does after a force-push: fetch and reset (no hook fires)."""
    old = clone.git("rev-parse", "HEAD")
    clone.git("fetch", "-q", "origin")
    clone.git("reset", "-q", "--hard", "origin/main")
    return old


def _nothing_lost(clone: Repo) -> None:
    _in_step(clone)
    deleted = _query(clone, "SELECT id FROM stories WHERE deleted_at IS NOT NULL")
    assert deleted == [("API-1",)]  # soft-deleted, its history kept
    assert _query(clone, "SELECT count(*) FROM status_history WHERE story_id = 'API-1'") == [(1,)]
    pending = _query(clone, "SELECT title FROM stories WHERE id = 'WEB-1' AND revision > synced_revision")
    assert pending == [("Login (edited in the database)",)]  # the DB-side edit waits for export


def test_force_pushed_history_full_reconcile(origin_and_clone: tuple[Repo, Repo]) -> None:
    author, clone = origin_and_clone
    _force_push_rewrite(author)
    old = _fetch_rewritten(clone)
    done = run_cli_subprocess(clone, "sync")
    assert done.returncode == 0, done.stderr
    assert old[:12] in done.stderr
    assert "full reconcile" in done.stderr
    _nothing_lost(clone)


def test_last_synced_commit_garbage_collected(origin_and_clone: tuple[Repo, Repo]) -> None:
    author, clone = origin_and_clone
    _force_push_rewrite(author)
    old = _fetch_rewritten(clone)
    clone.git("reflog", "expire", "--expire=now", "--all")
    clone.git("gc", "-q", "--prune=now")
    assert clone.git("cat-file", "-t", old, check=False) == ""  # really gone
    refused = run_cli_subprocess(clone, "sync")  # older or newer than HEAD? this clone cannot tell
    assert refused.returncode == 4, refused.stderr
    assert "not in this clone" in refused.stderr
    assert "garbage-collected here after a history rewrite" in refused.stderr
    done = run_cli_subprocess(clone, "sync", "--allow-rewind")
    assert done.returncode == 0, done.stderr
    assert "full reconcile" in done.stderr
    _nothing_lost(clone)
    again = run_cli_subprocess(clone, "sync")  # and then it is incremental again, with nothing to do
    assert again.returncode == 0, again.stderr
    assert "full reconcile" not in again.stderr


def test_shallow_clone_with_a_database_synced_elsewhere(origin_and_clone: tuple[Repo, Repo], tmp_path: Path) -> None:
    """CI's shallow clone shares the team database, last synced at a commit it lacks."""
    author, clone = origin_and_clone
    author.story("completed", "web", "WEB-4", "footer", title="Footer")
    author.commit("four")
    author.git("push", "-q", "origin", "HEAD:main")
    shallow_path = tmp_path / "shallow"
    author.git("clone", "-q", "--depth", "1", f"file://{tmp_path / 'origin.git'}", str(shallow_path))
    shallow = Repo(shallow_path)
    assert shallow.git("rev-parse", "--is-shallow-repository") == "true"
    db = f"sqlite:///{clone.db_path}"
    refused = run_cli_subprocess(shallow, "--db", db, "sync")  # older or newer than HEAD? it cannot tell
    assert refused.returncode == 4, refused.stderr
    assert "git fetch --unshallow" in refused.stderr
    done = run_cli_subprocess(shallow, "--db", db, "sync", "--allow-rewind")
    assert done.returncode == 0, done.stderr
    assert "full reconcile" in done.stderr
    assert "shallow" in done.stderr
    assert live_rows(clone.db_path) == _files_at_head(shallow)
    pending = _query(clone, "SELECT title FROM stories WHERE id = 'WEB-1' AND revision > synced_revision")
    assert pending == [("Login (edited in the database)",)]


def _git_with_env(repo: Repo, env: dict[str, str], *args: str) -> str:
    """Run git (and so its hooks) with ``env``; fail the test if git fails; its stderr."""
    done = subprocess.run(
        ["git", *args], cwd=repo.path, capture_output=True, text=True, check=False, env={**os.environ, **env}
    )
    assert done.returncode == 0, f"git {' '.join(args)} failed: {done.stderr}"
    return done.stderr


def test_hooks_never_fail_git_when_the_database_is_broken(hooked: Repo, tmp_path: Path) -> None:
    """With the database path a directory, merge, checkout and rebase all still succeed,
    and the hook that would sync says in one line that the database was not synced and why."""
    broken = tmp_path / "broken.db"
    broken.mkdir()
    env = {"STORYSYNC_DATABASE_URL": f"sqlite:///{broken}"}
    for branch, story in (("side", "API-7"), ("other", "API-9")):
        hooked.git("checkout", "-q", "-b", branch, "main")
        hooked.story("active", "api", story, "more", title=f"Story {story}")
        hooked.commit(story)
    hooked.git("checkout", "-q", "main")
    said = [
        _git_with_env(hooked, env, "merge", "-q", "--no-ff", "--no-edit", "side"),
        _git_with_env(hooked, env, "checkout", "-q", "other"),
        _git_with_env(hooked, env, "rebase", "-q", "main"),  # rewrites API-9's commit
    ]
    for stderr in said:
        lines = [line for line in stderr.splitlines() if line.startswith("storysync:")]
        assert "Traceback" not in stderr
        assert all("not synced" in line or "rebase is in progress" in line for line in lines), stderr
        failed = [line for line in lines if "not synced" in line]
        assert len(failed) == 1, stderr
        assert str(broken) in failed[0]
    assert list(broken.iterdir()) == []
