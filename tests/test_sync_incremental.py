"""Incremental sync: changed paths from the working tree (watch) and from a git range."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from storysync.config import load_config
from storysync.db import tables as m
from storysync.db.database import LAST_SYNCED, Database, get_state
from storysync.errors import GitError
from storysync.git.repo import open_repo
from storysync.ingest.run import sync
from storysync.ingest.types import SyncOptions, SyncResult
from tests.conftest import Repo, make_repo, story_text

pytestmark = pytest.mark.usefixtures("any_db")


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


def test_keep_going_reports_a_file_name_that_is_not_utf8_and_syncs_the_rest(backlog_repo: Repo) -> None:
    """A watch batch (or ``sync --keep-going``) naming a Latin-1 file: reported and
    skipped, the valid file beside it written; not a crash that stops watch."""
    repo = backlog_repo
    do_sync(repo)
    folder = repo.path / "backlog" / "web"
    with open(os.fsencode(folder) + b"/WEB-7-caf\xe9.md", "wb") as fh:
        fh.write(story_text("WEB-7", title="Latin-1 file name").encode())
    latin1 = os.fsdecode(b"backlog/web/WEB-7-caf\xe9.md")
    good = repo.story("backlog", "web", "WEB-8", title="Fine")
    result = do_sync(repo, working_tree=True, keep_going=True, paths=(latin1, good))
    assert [str(d) for d in result.diagnostics] == [
        "backlog/web/WEB-7-caf\\xe9.md:1:1: file name is not valid UTF-8; rename the file to UTF-8 characters"
    ]
    assert result.created == ["WEB-8"]
    repo.commit("a Latin-1 name and a good story")
    assert do_sync(repo, keep_going=True).created == []  # the git range: WEB-8 is there already
    assert "WEB-7" not in stories(repo.db_url)


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


# --- a git range ----------------------------------------------------------------------------


def history_of(url: str, story_id: str) -> list[tuple[str | None, str, str | None]]:
    """(from, to, commit) of a story's status history, in insertion order."""
    rows = sorted(table(url, m.status_history), key=lambda h: h["id"])
    return [(h["from_status"], h["to_status"], h["commit"]) for h in rows if h["story_id"] == story_id]


def commit_as(repo: Repo, message: str, author: str = "Ada Author <ada@example.invalid>", when: str = "") -> str:
    """Commit everything with a given author and author date."""
    repo.git("add", "-A")
    args = ["commit", "-q", "--allow-empty", "-m", message, f"--author={author}"]
    if when:
        args.append(f"--date={when}")
    repo.git(*args)
    return repo.git("rev-parse", "HEAD")


def git_mv(repo: Repo, old: str, new: str) -> None:
    (repo.path / new).parent.mkdir(parents=True, exist_ok=True)
    repo.git("mv", old, new)


def test_incremental_reads_only_changed_files(backlog_repo: Repo) -> None:
    repo = backlog_repo
    first = do_sync(repo)
    assert first.full
    assert first.notices == [f"no last synced commit: a full sync of {repo.git('rev-parse', 'HEAD')[:12]}"]
    repo.story("active", "web", "WEB-2", "signup", title="Signup v2", points=5)
    repo.write("README.md", "# not a story\n")
    repo.write("backlog/web/README.md", "# not a story either\n")
    repo.write("plans/q1.md", "plans are not stories\n")
    head = repo.commit("edit one story")
    result = do_sync(repo)
    assert (result.full, result.files, result.updated, result.notices) == (False, 1, ["WEB-2"], [])
    assert result.from_commit == first.to_commit
    assert last_synced(repo.db_url) == head
    assert stories(repo.db_url)["WEB-2"]["synced_commit"] == head
    again = do_sync(repo)  # idempotent: nothing new
    assert (again.files, again.upserted, again.deleted) == (0, 0, [])


def test_incremental_cost_does_not_list_the_tree(backlog_repo: Repo, tmp_path: Path, monkeypatch: Any) -> None:
    repo = backlog_repo
    for i in range(10, 60):
        repo.story("backlog", "bulk", f"BULK-{i}", title=f"Bulk {i}")
    repo.commit("many stories")
    do_sync(repo)
    repo.story("backlog", "bulk", "BULK-10", title="Bulk ten, edited")
    repo.commit("one edit")
    trace = tmp_path / "git-trace.txt"
    monkeypatch.setenv("GIT_TRACE", str(trace))
    result = do_sync(repo)
    monkeypatch.delenv("GIT_TRACE")
    assert (result.files, result.updated) == (1, ["BULK-10"])
    commands = trace.read_text(encoding="utf-8", errors="replace")
    assert "diff-tree" in commands
    assert "ls-tree" not in commands  # no listing of the whole tree for an incremental run


def test_moves_renames_and_deletes_across_commits(backlog_repo: Repo) -> None:
    repo = backlog_repo
    do_sync(repo)
    git_mv(repo, "backlog/web/WEB-1-login.md", "active/web/WEB-1-login.md")
    c1 = commit_as(repo, "start WEB-1", "Bea Builder <bea@example.invalid>", "2026-03-01T10:00:00Z")
    git_mv(repo, "active/web/WEB-1-login.md", "completed/web/WEB-1-login-page.md")  # moved and re-slugged
    c2 = commit_as(repo, "finish WEB-1", "Cy Closer <cy@example.invalid>", "2026-03-02T10:00:00Z")
    git_mv(repo, "active/web/WEB-2-signup.md", "active/web/WEB-2-sign-up.md")  # slug only
    repo.git("rm", "-q", "completed/api/API-2-health.md")
    commit_as(repo, "tidy")
    result = do_sync(repo)
    assert result.exit_code == 0
    assert (result.moved, result.deleted) == (["WEB-1"], ["API-2"])
    assert sorted(result.updated) == ["WEB-1", "WEB-2"]
    assert live(repo.db_url)["WEB-1"] == "completed/web/WEB-1-login-page.md"
    assert live(repo.db_url)["WEB-2"] == "active/web/WEB-2-sign-up.md"
    assert stories(repo.db_url)["API-2"]["deleted_at"] is not None
    rows = sorted(table(repo.db_url, m.status_history), key=lambda h: h["id"])
    web1 = [h for h in rows if h["story_id"] == "WEB-1"][1:]
    assert [(h["from_status"], h["to_status"], h["commit"], h["author"]) for h in web1] == [
        ("backlog", "active", c1, "Bea Builder <bea@example.invalid>"),
        ("active", "completed", c2, "Cy Closer <cy@example.invalid>"),
    ]
    assert [h["changed_at"].strftime("%Y-%m-%d %H:%M") for h in web1] == ["2026-03-01 10:00", "2026-03-02 10:00"]
    assert history_of(repo.db_url, "WEB-2") == [(None, "active", history_of(repo.db_url, "WEB-2")[0][2])]


def test_edited_and_moved_beyond_rename_detection(backlog_repo: Repo) -> None:
    repo = backlog_repo
    do_sync(repo)
    (repo.path / "backlog/web/WEB-1-login.md").unlink()
    body = "".join(f"An entirely new line {i}.\n" for i in range(40))
    repo.write("active/web/WEB-1-new-login.md", story_text("WEB-1", title="New login", body=body))
    sha = repo.commit("rewrite and move")
    assert repo.git("diff-tree", "-r", "-M", "--name-status", "HEAD~1", "HEAD").count("\t") == 2  # D + A, no R
    result = do_sync(repo)
    assert (result.moved, result.deleted, result.created) == (["WEB-1"], [], [])
    assert history_of(repo.db_url, "WEB-1")[-1] == ("backlog", "active", sha)


def test_move_there_and_back_records_both_moves(backlog_repo: Repo) -> None:
    repo = backlog_repo
    do_sync(repo)
    git_mv(repo, "backlog/web/WEB-1-login.md", "active/web/WEB-1-login.md")
    c1 = repo.commit("start")
    git_mv(repo, "active/web/WEB-1-login.md", "backlog/web/WEB-1-login.md")
    c2 = repo.commit("stop again")
    result = do_sync(repo)
    assert (result.updated, result.unchanged) == ([], 0)
    assert history_of(repo.db_url, "WEB-1")[1:] == [("backlog", "active", c1), ("active", "backlog", c2)]
    changes = len(table(repo.db_url, m.status_history))
    do_sync(repo, from_rev="HEAD~2")  # the same range again: nothing recorded twice
    assert len(table(repo.db_url, m.status_history)) == changes


def test_created_then_moved_in_one_range(backlog_repo: Repo) -> None:
    repo = backlog_repo
    do_sync(repo)
    repo.story("refinements", "web", "WEB-5", "idea", title="Idea")
    c1 = repo.commit("idea")
    git_mv(repo, "refinements/web/WEB-5-idea.md", "backlog/web/WEB-5-idea.md")
    c2 = repo.commit("groomed")
    assert do_sync(repo).created == ["WEB-5"]
    assert history_of(repo.db_url, "WEB-5") == [(None, "refinements", c1), ("refinements", "backlog", c2)]


ODD_NAMES = {
    "WEB-7": "WEB-7-with space.md",
    "WEB-8": "WEB-8-ünïcödé ✓.md",
    "WEB-9": "WEB-9-\"quoted\" 'both'.md",
    "WEB-10": "WEB-10-back\\slash*?[x].md",
}


def test_odd_file_names_survive_the_range(backlog_repo: Repo) -> None:
    repo = backlog_repo
    do_sync(repo)
    for sid, name in ODD_NAMES.items():
        repo.write(f"backlog/web/{name}", story_text(sid, title="Odd"))
    repo.commit("odd names")
    assert do_sync(repo).created == sorted(ODD_NAMES)
    for name in ODD_NAMES.values():
        git_mv(repo, f"backlog/web/{name}", f"active/web/{name}")
    sha = repo.commit("move odd names")
    result = do_sync(repo)
    assert (result.moved, result.diagnostics) == (sorted(ODD_NAMES), [])
    for sid, name in ODD_NAMES.items():
        assert live(repo.db_url)[sid] == f"active/web/{name}"
        assert history_of(repo.db_url, sid)[-1] == ("backlog", "active", sha)
    repo.git("rm", "-q", *(f"active/web/{name}" for name in ODD_NAMES.values()))
    repo.commit("delete odd names")
    assert do_sync(repo).deleted == sorted(ODD_NAMES)


def test_explicit_range_and_to(backlog_repo: Repo) -> None:
    repo = backlog_repo
    c0 = repo.git("rev-parse", "HEAD")
    repo.story("backlog", "web", "WEB-3", title="Three")
    c1 = repo.commit("three")
    repo.story("backlog", "web", "WEB-4", title="Four")
    c2 = repo.commit("four")
    assert do_sync(repo, to_rev="HEAD~1").to_commit == c1
    assert last_synced(repo.db_url) == c1
    assert "WEB-4" not in stories(repo.db_url)
    result = do_sync(repo, from_rev=c0, to_rev=c2)
    assert (result.from_commit, result.to_commit, result.created) == (c0, c2, ["WEB-4"])
    assert result.files == 2  # c0..c2 changed both; WEB-3 is unchanged
    assert last_synced(repo.db_url) == c2
    back = do_sync(repo, to_rev=c0)  # back to an older commit: the database reflects it
    assert back.notices  # c2 is not an ancestor of c0: a full reconcile, said once
    assert sorted(live(repo.db_url)) == ["API-1", "API-2", "WEB-1", "WEB-2"]
    assert last_synced(repo.db_url) == c0
    with pytest.raises(GitError, match="'no-such-rev' does not name a commit"):
        do_sync(repo, from_rev="no-such-rev")


def test_keep_going_retries_invalid_files_next_run(backlog_repo: Repo) -> None:
    repo = backlog_repo
    do_sync(repo)
    synced = last_synced(repo.db_url)
    repo.write("backlog/web/WEB-8-bad.md", "---\nid: WEB-8\ntitle: [oops\n---\n")
    repo.story("backlog", "web", "WEB-9", title="Fine")
    repo.commit("one good, one bad")
    strict = do_sync(repo)
    assert strict.exit_code == 1
    assert "WEB-9" not in stories(repo.db_url)
    result = do_sync(repo, keep_going=True)
    assert (result.exit_code, result.created) == (1, ["WEB-9"])
    assert last_synced(repo.db_url) == synced  # the next run retries the bad file
    repo.story("backlog", "web", "WEB-8", "bad", title="Fixed")
    head = repo.commit("fix")
    fixed = do_sync(repo)
    assert (fixed.exit_code, fixed.created) == (0, ["WEB-8"])
    assert last_synced(repo.db_url) == head
    assert len(history_of(repo.db_url, "WEB-9")) == 1


def test_duplicate_id_against_database_rows(backlog_repo: Repo) -> None:
    repo = backlog_repo
    do_sync(repo)
    repo.story("backlog", "api", "WEB-1", "copy", title="Copy")
    repo.commit("duplicate")
    result = do_sync(repo)
    assert [(d.path, d.code) for d in result.diagnostics] == [("backlog/api/WEB-1-copy.md", "duplicate-id")]
    assert "backlog/web/WEB-1-login.md" in result.diagnostics[0].message


def test_control_characters_in_names_survive_the_diff_and_are_refused(backlog_repo: Repo) -> None:
    repo = backlog_repo
    do_sync(repo)
    names = ["backlog/web/WEB-7-new\nline.md", "backlog/web/WEB-8-tab\there.md"]
    for number, name in enumerate(names, 7):
        repo.write(name, story_text(f"WEB-{number}", title="Odd"))
    repo.commit("odd names")
    result = do_sync(repo)
    assert result.exit_code == 1
    assert [d.path for d in result.diagnostics] == names  # the exact names, from -z output
    assert ["\\n" in str(result.diagnostics[0]), "\\t" in str(result.diagnostics[1])] == [True, True]  # one line
    repo.git("rm", "-q", *names)
    repo.commit("remove them")
    assert do_sync(repo).exit_code == 0


# --- rewritten, shallow and shared histories ---------------------------------------------------


def clone_of(upstream: Repo, path: Path, *args: str) -> Repo:
    subprocess.run(["git", "clone", "-q", *args, f"file://{upstream.path}", str(path)], check=True)
    clone = Repo(path)
    clone.git("config", "user.name", "Ada Author")
    clone.git("config", "user.email", "ada@example.invalid")
    return clone


def test_amend_of_the_synced_commit_is_a_full_reconcile(backlog_repo: Repo) -> None:
    repo = backlog_repo
    repo.story("backlog", "web", "WEB-3", title="Draft")
    old = repo.commit("draft")
    do_sync(repo)
    (repo.path / "backlog/web/WEB-3-story.md").unlink()
    repo.story("active", "web", "WEB-4", title="Instead")
    repo.git("add", "-A")
    repo.git("commit", "-q", "--amend", "-m", "instead")
    result = do_sync(repo)
    new = repo.git("rev-parse", "HEAD")[:12]
    assert result.notices == [
        f"last synced commit {old[:12]} is not an ancestor of {new} "
        f"(history rewritten by a rebase, force-push or reset): a full reconcile of {new}"
    ]
    assert (result.full, result.created, result.deleted) == (True, ["WEB-4"], ["WEB-3"])


def test_force_push_upstream_loses_nothing(tmp_path: Path) -> None:
    upstream = make_repo(tmp_path / "upstream")
    upstream.story("backlog", "web", "WEB-1", title="One")
    upstream.story("backlog", "web", "WEB-2", title="Two")
    upstream.commit("base")
    upstream.story("backlog", "web", "WEB-3", title="Three, to be force-pushed away")
    upstream.git("rm", "-q", "backlog/web/WEB-2-story.md")
    upstream.commit("three")
    clone = clone_of(upstream, tmp_path / "clone")
    do_sync(clone)
    assert sorted(live(clone.db_url)) == ["WEB-1", "WEB-3"]
    upstream.git("reset", "-q", "--hard", "HEAD~1")  # the server's branch is rewritten
    upstream.story("active", "web", "WEB-1", title="One, started")
    (upstream.path / "backlog/web/WEB-1-story.md").unlink()
    upstream.commit("start one")
    clone.git("fetch", "-q")
    clone.git("reset", "-q", "--hard", "origin/main")  # no hook fires; the next sync heals
    result = do_sync(clone)
    assert len(result.notices) == 1
    assert sorted(live(clone.db_url)) == ["WEB-1", "WEB-2"]
    assert live(clone.db_url)["WEB-1"] == "active/web/WEB-1-story.md"
    assert stories(clone.db_url)["WEB-3"]["deleted_at"] is not None


def test_shallow_clone_reconciles_against_the_team_database(tmp_path: Path) -> None:
    upstream = make_repo(tmp_path / "upstream")
    upstream.story("backlog", "web", "WEB-1", title="One")
    upstream.story("backlog", "web", "WEB-2", title="Two")
    upstream.commit("base")
    team_db = f"sqlite:///{tmp_path / 'team.db'}"
    assert do_sync(upstream, team_db).exit_code == 0
    upstream.git("rm", "-q", "backlog/web/WEB-2-story.md")
    upstream.story("backlog", "web", "WEB-3", title="Three")
    upstream.commit("second")
    upstream.story("active", "web", "WEB-1", title="One")
    (upstream.path / "backlog/web/WEB-1-story.md").unlink()
    upstream.commit("third")
    shallow = clone_of(upstream, tmp_path / "ci checkout", "--depth", "1")
    assert shallow.git("rev-parse", "--is-shallow-repository") == "true"
    result = do_sync(shallow, team_db)
    assert result.exit_code == 0
    assert result.notices == [
        f"last synced commit {result.from_commit[:12] if result.from_commit else ''} is not in the repository "
        f"(this is a shallow clone): a full reconcile of {shallow.git('rev-parse', 'HEAD')[:12]}"
    ]
    assert live(team_db) == {"WEB-1": "active/web/WEB-1-story.md", "WEB-3": "backlog/web/WEB-3-story.md"}
    assert last_synced(team_db) == upstream.git("rev-parse", "HEAD")
    upstream.story("completed", "web", "WEB-3", title="Three")
    (upstream.path / "backlog/web/WEB-3-story.md").unlink()
    upstream.commit("fourth")
    shallow.git("fetch", "-q", "--depth", "1")
    shallow.git("reset", "-q", "--hard", "origin/main")
    again = do_sync(shallow, team_db)  # the previous shallow tip is gone from the new shallow clone
    assert live(team_db)["WEB-3"] == "completed/web/WEB-3-story.md"
    assert last_synced(team_db) == upstream.git("rev-parse", "HEAD")
    assert again.exit_code == 0


def test_worktree_syncs_with_the_shared_lock(backlog_repo: Repo, tmp_path: Path) -> None:
    repo = backlog_repo
    do_sync(repo)
    tree = tmp_path / "second worktree"
    repo.git("worktree", "add", "-q", "-b", "side", str(tree))
    side = Repo(tree)
    git_mv(side, "backlog/web/WEB-1-login.md", "active/web/WEB-1-login.md")
    moved = side.commit("start on the side")
    result = do_sync(side, repo.db_url)  # the main worktree's database, from the second worktree
    assert (result.full, result.moved) == (False, ["WEB-1"])
    assert history_of(repo.db_url, "WEB-1")[-1] == ("backlog", "active", moved)
    assert (repo.path / ".git" / "storysync.lock").exists()


def test_status_shows_drift_after_reset_and_rewrite(backlog_repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    repo = backlog_repo
    assert repo.run("sync") == 0
    repo.story("backlog", "web", "WEB-3", title="Three")
    repo.commit("three")
    repo.story("backlog", "web", "WEB-4", title="Four")
    repo.commit("four")
    capsys.readouterr()
    assert repo.run("status") == 0
    assert "2 commit(s) behind HEAD" in capsys.readouterr().out
    assert repo.run("sync") == 0
    repo.git("reset", "-q", "--hard", "HEAD~2")  # no hook fires on reset --hard
    repo.story("backlog", "web", "WEB-5", title="Five")
    repo.commit("five")
    capsys.readouterr()
    assert repo.run("status", "--format", "json") == 0
    assert json.loads(capsys.readouterr().out)["commits_behind"] is None
    assert repo.run("status") == 0
    assert "which HEAD no longer contains" in capsys.readouterr().out
    assert repo.run("sync") == 0
    assert sorted(live(repo.db_url)) == ["API-1", "API-2", "WEB-1", "WEB-2", "WEB-5"]


def test_sync_during_a_conflicted_merge_reads_head_not_the_markers(backlog_repo: Repo) -> None:
    repo = backlog_repo
    do_sync(repo)
    repo.git("checkout", "-q", "-b", "left")
    repo.story("active", "web", "WEB-2", "signup", title="Left title", points=3)
    repo.commit("left")
    repo.git("checkout", "-q", "main")
    repo.story("active", "web", "WEB-2", "signup", title="Right title", points=3)
    head = repo.commit("right")
    repo.git("merge", "-q", "left", check=False)  # stops on the conflict
    assert (repo.path / ".git" / "MERGE_HEAD").exists()
    assert "<<<<<<<" in (repo.path / "active/web/WEB-2-signup.md").read_text(encoding="utf-8")
    result = do_sync(repo)
    assert (result.exit_code, result.updated) == (0, ["WEB-2"])
    assert stories(repo.db_url)["WEB-2"]["title"] == "Right title"
    assert last_synced(repo.db_url) == head


def test_stories_root_and_ignore_globs(repo: Repo) -> None:
    repo.write("storysync.toml", 'root = "docs/stories"\nignore = ["**/drafts-*.md"]\n')
    repo.write("docs/stories/backlog/web/WEB-1-one.md", story_text("WEB-1"))
    repo.write("backlog/web/WEB-2-outside-the-root.md", story_text("WEB-2"))
    repo.commit("root")
    assert do_sync(repo).created == ["WEB-1"]
    git_mv(repo, "docs/stories/backlog/web/WEB-1-one.md", "docs/stories/active/web/WEB-1-one.md")
    repo.write("docs/stories/backlog/web/drafts-WEB-3.md", "not even a story")
    repo.write("backlog/web/WEB-2-outside-the-root.md", story_text("WEB-2", title="Changed"))
    moved = repo.commit("move inside, edit outside")
    result = do_sync(repo)
    assert (result.files, result.moved, result.diagnostics) == (1, ["WEB-1"], [])
    assert live(repo.db_url) == {"WEB-1": "docs/stories/active/web/WEB-1-one.md"}
    assert history_of(repo.db_url, "WEB-1")[-1] == ("backlog", "active", moved)


def test_a_file_may_depend_on_a_story_created_in_the_database(backlog_repo: Repo) -> None:
    repo = backlog_repo
    assert repo.run("sync") == 0
    assert repo.run("new", "API-9", "--backlog", "api", "--title", "Made by the API") == 0
    repo.story("backlog", "web", "WEB-3", title="Needs API-9", depends_on=["API-9"])
    repo.commit("depends on a story not exported yet")
    result = do_sync(repo)
    assert (result.diagnostics, result.created) == ([], ["WEB-3"])
    watched = repo.story("backlog", "web", "WEB-4", title="Also needs API-9", depends_on=["API-9"])
    result = do_sync(repo, working_tree=True, paths=(watched,))  # API-9 has no file on disk yet
    assert (result.diagnostics, result.created) == ([], ["WEB-4"])


# --- a story taken away while another depends on it ------------------------------------------

AUTH = "refinements/api/API-1-auth.md"  # backlog_repo: WEB-1 depends on API-1
DANGLING = "backlog/web/WEB-1-login.md:5:14: depends_on: no story has id 'API-1'"


def _taken_away_by_git_rm(repo: Repo) -> None:
    repo.git("rm", "-q", AUTH)


def _taken_away_by_a_rename_to_another_id(repo: Repo) -> None:
    repo.git("mv", AUTH, "refinements/api/API-7-auth.md")
    repo.write("refinements/api/API-7-auth.md", story_text("API-7", title="Auth API, renumbered"))


def _taken_away_by_a_move_out_of_the_layout(repo: Repo) -> None:
    (repo.path / "plans").mkdir()
    repo.git("mv", AUTH, "plans/API-1-auth.md")


def _taken_away_by_an_edit_that_does_not_parse(repo: Repo) -> None:
    repo.write(AUTH, "---\nid: API-1\ntitle: [unclosed\n---\n")


TAKEN_AWAY = {
    "git rm": _taken_away_by_git_rm,
    "rename to another id": _taken_away_by_a_rename_to_another_id,
    "move out of the layout": _taken_away_by_a_move_out_of_the_layout,
    "edit that does not parse": _taken_away_by_an_edit_that_does_not_parse,
}


@pytest.mark.parametrize("take_away", TAKEN_AWAY.values(), ids=TAKEN_AWAY.keys())
def test_taking_away_a_story_another_depends_on_is_refused_as_a_full_sync_refuses_it(
    backlog_repo: Repo, take_away: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = backlog_repo
    assert do_sync(repo).exit_code == 0
    synced, before = last_synced(repo.db_url), stories(repo.db_url)
    take_away(repo)
    repo.commit("take API-1 away")
    full = do_sync(repo, full=True, dry_run=True)
    assert repo.run("validate") == 1
    validated = capsys.readouterr().out.splitlines()
    assert DANGLING in validated
    result = do_sync(repo)
    assert not result.full
    assert (result.exit_code, result.outcome) == (1, "invalid")
    assert [str(d) for d in result.diagnostics] == [str(d) for d in full.diagnostics] == validated
    assert stories(repo.db_url) == before  # nothing written
    assert last_synced(repo.db_url) == synced
    run = table(repo.db_url, m.sync_runs)[-1]
    assert run["outcome"] == "invalid"
    assert [(e["path"], e["line"], e["col"]) for e in run["errors"]] == [
        (d.path, d.line, d.col) for d in full.diagnostics
    ]


def test_a_deleted_dependency_is_refused_until_its_dependent_lets_go(backlog_repo: Repo) -> None:
    repo = backlog_repo
    assert repo.run("sync") == 0
    repo.git("rm", "-q", AUTH)
    repo.commit("drop API-1")
    assert repo.run("sync") == 1  # the command line: exit 1
    assert live(repo.db_url)["API-1"] == AUTH
    repo.story("backlog", "web", "WEB-1", "login", title="Login page", priority="high")
    head = repo.commit("WEB-1 no longer needs API-1")
    result = do_sync(repo)
    assert (result.exit_code, result.full, result.deleted, result.updated) == (0, False, ["API-1"], ["WEB-1"])
    assert last_synced(repo.db_url) == head
    assert table(repo.db_url, m.dependencies) == []


def test_deleting_a_story_with_its_dependents_is_fine(backlog_repo: Repo) -> None:
    repo = backlog_repo
    do_sync(repo)
    repo.git("rm", "-q", AUTH, "backlog/web/WEB-1-login.md")
    repo.commit("drop API-1 and WEB-1")
    result = do_sync(repo)
    assert (result.exit_code, result.deleted, result.files) == (0, ["API-1", "WEB-1"], 0)


def test_keep_going_deletes_as_a_full_sync_does_and_keeps_the_dependent_row(backlog_repo: Repo) -> None:
    repo = backlog_repo
    do_sync(repo)
    synced = last_synced(repo.db_url)
    repo.git("rm", "-q", AUTH)
    repo.commit("drop API-1")
    full = do_sync(repo, full=True, keep_going=True, dry_run=True)
    result = do_sync(repo, keep_going=True)
    assert (result.exit_code, result.deleted) == (1, full.deleted) == (1, ["API-1"])
    assert [str(d) for d in result.diagnostics] == [DANGLING]
    assert last_synced(repo.db_url) == synced  # the next run retries WEB-1


def test_paths_sync_deleting_a_story_another_depends_on_is_refused(backlog_repo: Repo) -> None:
    """The watch API: a file removed from disk is refused at its dependent's entry, as a full
    sync of the working tree refuses it."""
    repo = backlog_repo
    do_sync(repo)
    (repo.path / AUTH).unlink()
    full = do_sync(repo, working_tree=True, dry_run=True)
    result = do_sync(repo, working_tree=True, paths=(AUTH,))
    assert (result.exit_code, result.outcome) == (1, "invalid")
    assert [str(d) for d in result.diagnostics] == [str(d) for d in full.diagnostics] == [DANGLING]
    assert live(repo.db_url)["API-1"] == AUTH
