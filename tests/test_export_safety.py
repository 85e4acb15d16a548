"""``storysync export`` never loses a story, never commits what the next sync refuses,
and refuses a bad row alone (issue 17, items 1, 3 and 8).

Real git repositories, files and databases (SQLite, and PostgreSQL through ``any_db``).
"""

from __future__ import annotations

import pytest

from storysync.config import load_config
from storysync.db.writer import create_story, update_story
from storysync.errors import StorysyncError, UsageError, ValidationFailed
from storysync.export.actions import Action
from storysync.watch.events import StoryFilter
from tests.conftest import Repo, story_text
from tests.export_helpers import git_repo, handles, synced

WEB1 = "backlog/web/WEB-1-login.md"
WEB2 = "active/web/WEB-2-signup.md"
LINKED = (
    "backlog directory is a symlink; stage and backlog directories must be real directories (symlinks are not followed)"
)


def out_of(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    return captured.out + captured.err


# ---------------------------------------------------------------- item 1: one file under two names


def test_a_move_into_a_symlinked_backlog_is_refused_and_the_story_kept(
    backlog_repo: Repo, any_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``ln -s web backlog/frontend; set WEB-1 backlog=frontend; export --commit`` wrote the
    file through the link, then removed the old path: the same file.  The commit deleted
    the story and ``status`` said in step."""
    repo = backlog_repo
    synced(repo)
    head = repo.git("rev-parse", "HEAD")
    original = (repo.path / WEB1).read_bytes()
    (repo.path / "backlog" / "frontend").symlink_to("web", target_is_directory=True)
    assert repo.run("set", "WEB-1", "backlog=frontend") == 0
    capsys.readouterr()
    assert repo.run("export", "--commit") == 1
    out = out_of(capsys)
    assert "refused        WEB-1" in out
    assert "backlog directory backlog/frontend is a symlink" in out
    assert (repo.path / WEB1).read_bytes() == original
    assert repo.git("rev-parse", "HEAD") == head
    assert repo.git("status", "--porcelain", "--", "backlog/web") == ""
    with handles(repo, any_db) as h:
        row = h.row("WEB-1")
        assert row["path"] == WEB1
        assert row["synced_revision"] < row["revision"]  # still pending


def test_a_move_into_a_symlinked_stage_is_refused(repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    repo.story("active", "web", "WEB-2", "signup", title="Signup")
    repo.commit("one story")
    synced(repo)
    (repo.path / "completed").symlink_to("active", target_is_directory=True)
    with handles(repo) as h:
        update_story(h.db, "WEB-2", status="completed")
    capsys.readouterr()
    assert repo.run("export") == 1
    assert "stage directory completed is a symlink" in out_of(capsys)
    assert (repo.path / WEB2).read_text() == story_text("WEB-2", title="Signup")


def test_a_backlog_differing_only_in_case_is_refused(backlog_repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    """On a case-insensitive file system ``backlog/Web`` is ``backlog/web``: the move would
    write the file, then remove it.  This file system is case-sensitive, so the test shows
    the rule that prevents it (names compared folded), which holds on both kinds."""
    repo = backlog_repo
    synced(repo)
    original = (repo.path / WEB1).read_bytes()
    assert repo.run("set", "WEB-1", "backlog=Web") == 0
    capsys.readouterr()
    assert repo.run("export") == 1
    out = out_of(capsys)
    assert "backlog directory 'Web' differs only in case from the existing backlog/web" in out
    assert (repo.path / WEB1).read_bytes() == original
    assert not (repo.path / "backlog" / "Web").exists()


def test_a_move_never_removes_the_file_it_has_just_written(backlog_repo: Repo) -> None:
    """The last guard, for a directory that became a link after the export looked, or two
    names a case-insensitive file system gives one file (simulated with a symlink, as this
    file system is case-sensitive): before removing a move's old path the export compares
    file identities, and stops instead of removing the story."""
    from storysync.export.run import _Undo, _write

    repo = backlog_repo
    config = load_config(repo.path)
    original = (repo.path / WEB1).read_bytes()
    (repo.path / "backlog" / "frontend").symlink_to("web", target_is_directory=True)
    move = Action("WEB-1", "move", 2, old_path=WEB1, new_path="backlog/frontend/WEB-1-login.md", data=original)
    undo = _Undo()
    with pytest.raises(StorysyncError, match=r"the same file as backlog/frontend/WEB-1-login\.md"):
        _write(config, move, undo)
    undo.restore()
    assert (repo.path / WEB1).read_bytes() == original


def test_every_reader_refuses_a_symlinked_backlog_directory(
    backlog_repo: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    """One rule for validate, validate --staged, sync (from git and the working tree) and watch."""
    from storysync.db.database import Database
    from storysync.watch.events import Batch
    from storysync.watch.live import LiveSync

    repo = backlog_repo
    synced(repo)
    (repo.path / "backlog" / "frontend").symlink_to("web", target_is_directory=True)
    at_dir = f"backlog/frontend:1:1: {LINKED}"
    capsys.readouterr()

    assert repo.run("validate") == 1
    assert capsys.readouterr().out.splitlines() == [at_dir]
    assert repo.run("validate", "backlog/frontend/WEB-1-login.md") == 1  # a path through it: the same one line
    assert capsys.readouterr().out.splitlines() == [at_dir]
    assert repo.run("sync", "--working-tree") == 1
    assert capsys.readouterr().out.splitlines() == [at_dir]

    config = load_config(repo.path)
    db = Database(repo.db_url)
    try:
        live = LiveSync(config, db, git_repo(repo), StoryFilter(config))
        outcome = live.catch_up()
        assert outcome.result is not None
        assert [str(d) for d in outcome.result.diagnostics] == [at_dir]
        repo.write("backlog/frontend/WEB-5-new.md", story_text("WEB-5", title="Saved through the link"))
        rescan = live.apply(Batch(frozenset(), rescan=True))
        assert rescan is not None
        assert rescan.result is not None
        assert [str(d) for d in rescan.result.diagnostics] == [at_dir]
        (repo.path / "backlog/web/WEB-5-new.md").unlink()
    finally:
        db.dispose()

    repo.git("add", "backlog/frontend")
    assert repo.run("validate", "--staged") == 1
    assert capsys.readouterr().out.splitlines() == [at_dir]
    repo.git("commit", "-q", "-m", "a symlinked backlog")
    assert repo.run("sync") == 1  # the commit's changes
    assert capsys.readouterr().out.splitlines() == [at_dir]
    assert repo.run("sync", "--full") == 1
    assert capsys.readouterr().out.splitlines() == [at_dir]


# ---------------------------------------------------------------- item 3: the tree the export leaves


def test_export_refuses_what_the_next_sync_would(
    backlog_repo: Repo, any_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A row created with the id of a committed but unsynced file, and a ``depends_on``
    naming a story whose file a commit deleted: refused by id and reason, nothing of
    theirs committed; the valid row beside them is exported, and the next sync passes."""
    repo = backlog_repo
    synced(repo)
    repo.story("backlog", "web", "WEB-60", "committed", title="Committed, not synced")
    repo.git("rm", "-q", "completed/api/API-2-health.md")
    head = repo.commit("a new file and a deletion, not synced")
    with handles(repo, any_db) as h:
        create_story(h.db, "WEB-60", backlog="web", title="Made in the database")
        update_story(h.db, "WEB-2", depends_on=["API-2"])  # API-2 is still live in the database
        update_story(h.db, "API-1", points=8)
        capsys.readouterr()
        assert repo.run("export", "--commit") == 1
        out = out_of(capsys)
        assert (
            "refused        WEB-60  backlog/web/WEB-60-made-in-the-database.md: id 'WEB-60' is already used by "
            "backlog/web/WEB-60-committed.md (the same id)"
        ) in out
        assert "refused        WEB-2  active/web/WEB-2-signup.md: depends_on: no story has id 'API-2'" in out
        assert "updated        API-1" in out
        assert repo.git("rev-parse", "HEAD~1") == head
        assert repo.git("show", "--name-only", "--format=", "HEAD").splitlines() == ["refinements/api/API-1-auth.md"]
        assert not (repo.path / "backlog/web/WEB-60-made-in-the-database.md").exists()
        assert "API-2" not in (repo.path / WEB2).read_text()
        assert h.row("WEB-60")["synced_revision"] == 0
    assert repo.run("sync") == 0, out_of(capsys)


def test_a_row_refused_leaves_out_the_rows_that_needed_it(repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    """Without ``--commit`` the working tree is the tree checked.  WEB-9 depends on WEB-7,
    whose file is gone; WEB-1 depends on WEB-9, which only WEB-9's new file would provide:
    both are refused, in two rounds."""
    repo.story("backlog", "web", "WEB-1", "login", title="Login")
    repo.story("backlog", "web", "WEB-7", "gone", title="Soon gone")
    repo.commit("stories")
    synced(repo)
    (repo.path / "backlog/web/WEB-7-gone.md").unlink()
    with handles(repo) as h:
        create_story(h.db, "WEB-9", backlog="web", title="Needs seven", depends_on=["WEB-7"])
        update_story(h.db, "WEB-1", depends_on=["WEB-9"])
    capsys.readouterr()
    assert repo.run("export") == 1
    out = out_of(capsys)
    assert "refused        WEB-9  backlog/web/WEB-9-needs-seven.md: depends_on: no story has id 'WEB-7'" in out
    assert "refused        WEB-1  backlog/web/WEB-1-login.md: depends_on: no story has id 'WEB-9'" in out
    assert not (repo.path / "backlog/web/WEB-9-needs-seven.md").exists()
    assert (repo.path / "backlog/web/WEB-1-login.md").read_text() == story_text("WEB-1", title="Login")


# ---------------------------------------------------------------- item 8: one bad row, one refusal


def test_bad_rows_are_refused_one_by_one(backlog_repo: Repo, any_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Rows a database client wrote past the story API: each refused with its reason, the
    good one exported, never an internal error for the whole run."""
    repo = backlog_repo
    synced(repo)
    long_backlog = "é" * 200  # 200 characters fit the column; 400 bytes fit no directory name
    with handles(repo, any_db) as h:
        h.sql("UPDATE stories SET tags = '\"auth\"', revision = revision + 1 WHERE id = 'API-1'")
        h.sql("UPDATE stories SET extra = '[1, 2]', revision = revision + 1 WHERE id = 'API-2'")
        h.sql("INSERT INTO backlogs (id, created_at) VALUES (:b, CURRENT_TIMESTAMP)", b=long_backlog)
        h.sql("UPDATE stories SET backlog_id = :b, revision = revision + 1 WHERE id = 'WEB-2'", b=long_backlog)
        update_story(h.db, "WEB-1", points=5)
        capsys.readouterr()
        assert repo.run("export") == 1
        out = out_of(capsys)
        assert "refused        API-1  refinements/api/API-1-auth.md: tags in the database is str 'auth'" in out
        assert "it must be a JSON list" in out
        assert "refused        API-2  completed/api/API-2-health.md: extra in the database is list [1, 2]" in out
        assert "refused        WEB-2" in out
        assert "is 400 bytes in UTF-8; a directory name holds at most 255" in out
        assert "updated        WEB-1" in out
        assert "points: 5" in (repo.path / WEB1).read_text()
        assert h.row("API-1")["synced_revision"] < h.row("API-1")["revision"]


def test_a_row_sqlite_holds_but_no_file_can_is_refused(repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    """SQLite keeps text that is not JSON in a JSON column, and any length in a String(64):
    invalid JSON in ``tags`` and a 300-digit id are refused with their reasons."""
    repo.story("backlog", "web", "WEB-1", "login", title="Login")
    repo.commit("one story")
    synced(repo)
    long_id = "WEB-" + "9" * 300
    with handles(repo) as h:
        h.sql("UPDATE stories SET tags = 'not json', revision = revision + 1 WHERE id = 'WEB-1'")
        h.sql(
            "INSERT INTO stories (id, title, status, backlog_id, tags, extra, body, revision, synced_revision,"
            " created_at, updated_at) VALUES (:i, 'Long', 'backlog', 'web', '[]', '{}', '', 1, 0,"
            " CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
            i=long_id,
        )
    capsys.readouterr()
    assert repo.run("export") == 1
    out = out_of(capsys)
    assert "refused        WEB-1  backlog/web/WEB-1-login.md: tags in the database is not valid JSON" in out
    assert f"refused        {long_id}: id WEB-9999999999999999... is 304 characters; the limit is 64" in out
    assert "internal error" not in out


def test_set_and_new_refuse_what_no_story_file_can_hold(
    backlog_repo: Repo, any_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The parser's own limits decide, and the message names the limit."""
    repo = backlog_repo
    synced(repo)
    with handles(repo, any_db) as h:
        before = h.row("WEB-1")
        cases = [
            ({}, "x" * 10_000_000, "file is 10000", "the limit is 1048576 (1 MiB)"),
            ({}, "a\0b", "file contains NUL bytes", ""),
            ({"depends_on": [f"API-{i}" for i in range(10_000)]}, None, "frontmatter is over 64 KiB", ""),
        ]
        for fields, body, reason, limit in cases:
            with pytest.raises(ValidationFailed) as failed:
                h.writer.update("WEB-1", fields, body=body)
            assert f"WEB-1: its story file would be refused: {reason}" in str(failed.value)
            assert limit in str(failed.value)
        assert h.row("WEB-1")["revision"] == before["revision"]
        with pytest.raises(ValidationFailed, match="is 304 characters; the limit is 64"):
            h.writer.create("WEB-" + "9" * 300, "web", "Long id")
        with pytest.raises(UsageError):  # the id exists: it is not the limit that stops this one
            h.writer.create("WEB-1", "web", "Again")
    capsys.readouterr()
    assert repo.run("new", "WEB-9", "--backlog", "é" * 200, "--title", "Long backlog") == 1
    assert "is 400 bytes in UTF-8; a directory name holds at most 255" in out_of(capsys)
    assert repo.run("set", "WEB-1", 'title="a\\0b"') == 1  # YAML's escape: valid in a file, not in PostgreSQL
    assert "WEB-1: 'title' holds a NUL character, which the database cannot store" in out_of(capsys)


def test_every_story_bound_for_a_refused_directory_is_refused_by_its_own_path(
    backlog_repo: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    """A plan checks each directory once; each story bound for it is still named."""
    repo = backlog_repo
    synced(repo)
    assert repo.run("set", "WEB-1", "backlog=Web") == 0
    assert repo.run("set", "API-1", "backlog=Web", "status=backlog") == 0
    capsys.readouterr()
    assert repo.run("export") == 1
    out = out_of(capsys)
    for target in ("backlog/Web/WEB-1-login.md", "backlog/Web/API-1-auth.md"):
        assert f"{target}: backlog directory 'Web' differs only in case from the existing backlog/web" in out
    assert not (repo.path / "backlog" / "Web").exists()
