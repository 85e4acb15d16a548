"""``storysync export``: DB → files on real git repositories, files and databases."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import pytest

from storysync.db.writer import create_story, delete_story, update_story
from tests.conftest import Repo, run_cli_subprocess, story_text
from tests.export_helpers import handles, killed_in_pre_commit, synced

WEB1 = "backlog/web/WEB-1-login.md"
WEB2 = "active/web/WEB-2-signup.md"


def snapshot(repo: Repo) -> dict[str, bytes]:
    """Every file under the repository (but .git and .storysync), with its bytes."""
    out = {}
    for path in sorted(repo.path.rglob("*")):
        rel = path.relative_to(repo.path).as_posix()
        if path.is_file() and not rel.startswith((".git/", ".storysync/")):
            out[rel] = path.read_bytes()
    return out


def test_export_right_after_a_sync_writes_nothing(backlog_repo: Repo, any_db: str) -> None:
    synced(backlog_repo)
    before = snapshot(backlog_repo)
    assert backlog_repo.run("export") == 0
    assert snapshot(backlog_repo) == before
    assert backlog_repo.git("status", "--porcelain") == ""


def test_update_changes_only_that_line(backlog_repo: Repo, any_db: str) -> None:
    original = "---\n# the login story\nid: WEB-1\ntitle: 'Login page'  # keep quotes\npriority: high\n---\nBody\n"
    backlog_repo.write(WEB1, original)
    backlog_repo.commit("comments")
    synced(backlog_repo)
    with handles(backlog_repo, any_db) as h:
        update_story(h.db, "WEB-1", priority="critical", points=2)
        assert backlog_repo.run("export") == 0
        row = h.row("WEB-1")
        text = (backlog_repo.path / WEB1).read_text()
        assert text == original.replace("priority: high", "priority: critical").replace(
            "---\nBody", "points: 2\n---\nBody"
        )
        assert row["synced_revision"] == row["revision"]
        assert row["content_hash"] == hashlib.sha256(text.encode()).hexdigest()
    assert backlog_repo.run("export") == 0  # nothing left to do
    assert (backlog_repo.path / WEB1).read_text() == text


def test_crlf_bom_and_body_are_kept(repo: Repo) -> None:
    data = "\ufeff---\r\nid: WEB-1\r\ntitle: Old\r\ntags:\r\n  - a\r\n---\r\n"
    data += "\r\nBody with trailing spaces  \r\nno final newline"
    repo.write("backlog/web/WEB-1-x.md", data.encode())
    repo.commit("crlf")
    synced(repo)
    with handles(repo) as h:
        update_story(h.db, "WEB-1", title="New", tags=["a", "b"])
    assert repo.run("export") == 0
    new = (repo.path / "backlog/web/WEB-1-x.md").read_bytes().decode()
    assert new == data.replace("title: Old", "title: New").replace("  - a\r\n", "  - a\r\n  - b\r\n")


def test_status_and_backlog_changes_move_the_file(backlog_repo: Repo, any_db: str) -> None:
    synced(backlog_repo)
    with handles(backlog_repo, any_db) as h:
        update_story(h.db, "WEB-2", status="completed")
        update_story(h.db, "API-1", backlog="platform")
        assert backlog_repo.run("export") == 0
        assert not (backlog_repo.path / WEB2).exists()
        moved = backlog_repo.path / "completed/web/WEB-2-signup.md"
        assert moved.read_text() == story_text("WEB-2", title="Signup", points=3)
        assert (backlog_repo.path / "refinements/platform/API-1-auth.md").exists()
        assert not (backlog_repo.path / "refinements/api").exists()  # the emptied backlog directory is gone
        assert h.row("WEB-2")["path"] == "completed/web/WEB-2-signup.md"
    backlog_repo.git("add", "-A")
    assert "R  active/web/WEB-2-signup.md -> completed/web/WEB-2-signup.md" in backlog_repo.git("status", "--short")


def test_status_key_in_the_file_is_kept_in_step(repo: Repo) -> None:
    repo.write("backlog/web/WEB-1-x.md", "---\nid: WEB-1\ntitle: T\nstatus: backlog\nbacklog: web\n---\n")
    repo.commit("explicit status")
    synced(repo)
    with handles(repo) as h:
        update_story(h.db, "WEB-1", status="active")
    assert repo.run("export") == 0
    assert (
        repo.path / "active/web/WEB-1-x.md"
    ).read_text() == "---\nid: WEB-1\ntitle: T\nstatus: active\nbacklog: web\n---\n"
    assert repo.run("validate") == 0


def test_created_rows_get_a_clean_new_file(backlog_repo: Repo, any_db: str) -> None:
    synced(backlog_repo)
    with handles(backlog_repo, any_db) as h:
        create_story(h.db, "WEB-9", backlog="web", title="Dark mode: settings", priority="low", tags=["ui"])
        h.writer.update("WEB-9", {"depends_on": ["API-2", "API-1"], "created": "2026-11-25"}, body="Why.\n")
        assert backlog_repo.run("export") == 0
        path = backlog_repo.path / "backlog/web/WEB-9-dark-mode-settings.md"
        assert path.read_text() == (
            "---\nid: WEB-9\ntitle: 'Dark mode: settings'\npriority: low\ntags: [ui]\n"
            "depends_on: [API-1, API-2]\ncreated: 2026-11-25\n---\nWhy.\n"
        )
        assert h.row("WEB-9")["path"] == "backlog/web/WEB-9-dark-mode-settings.md"
    assert backlog_repo.run("validate") == 0


def test_deleted_rows_remove_their_file(backlog_repo: Repo) -> None:
    synced(backlog_repo)
    with handles(backlog_repo) as h:
        delete_story(h.db, "WEB-2")
        assert backlog_repo.run("export") == 0
        assert not (backlog_repo.path / WEB2).exists()
        row = h.row("WEB-2")
        assert row["synced_revision"] == row["revision"]


def test_dry_run_shows_the_plan_and_writes_nothing(backlog_repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    synced(backlog_repo)
    with handles(backlog_repo) as h:
        update_story(h.db, "WEB-2", status="completed")
        create_story(h.db, "WEB-9", backlog="web", title="New one")
        delete_story(h.db, "API-2")
        before = snapshot(backlog_repo)
        capsys.readouterr()
        assert backlog_repo.run("export", "--dry-run") == 0
        out = capsys.readouterr().out
        assert "would move     WEB-2  active/web/WEB-2-signup.md -> completed/web/WEB-2-signup.md" in out
        assert "would create   WEB-9  backlog/web/WEB-9-new-one.md" in out
        assert "would delete   API-2  completed/api/API-2-health.md" in out
        assert snapshot(backlog_repo) == before
        assert h.row("WEB-2")["revision"] > h.row("WEB-2")["synced_revision"]


def test_a_file_edited_since_its_sync_wins_and_the_db_version_is_kept(backlog_repo: Repo, any_db: str) -> None:
    backlog_repo.write("storysync.toml", 'merge = "file-wins"\n')  # field merges: tests/test_merge_sync.py
    synced(backlog_repo)
    edited = story_text("WEB-2", title="Signup (edited by hand)", points=3)
    backlog_repo.write(WEB2, edited)
    with handles(backlog_repo, any_db) as h:
        update_story(h.db, "WEB-2", points=13)
        assert backlog_repo.run("export") == 1
        assert (backlog_repo.path / WEB2).read_text() == edited
        (conflict,) = h.rows("conflicts")
        assert conflict["story_id"] == "WEB-2"
        assert conflict["resolution"] == "file_wins"
        assert conflict["resolved_at"] is None
        assert conflict["file_hash"] == hashlib.sha256(edited.encode()).hexdigest()
        snapshot_ = conflict["db_snapshot"]
        if isinstance(snapshot_, str):
            snapshot_ = json.loads(snapshot_)
        assert snapshot_["points"] == 13
        row = h.row("WEB-2")
        assert row["synced_revision"] == row["revision"]  # not exported again
        assert backlog_repo.run("export") == 0
        assert h.count("conflicts") == 1
        backlog_repo.commit("hand edit")
        synced(backlog_repo)
        row = h.row("WEB-2")
        assert (row["title"], row["points"]) == ("Signup (edited by hand)", 3)  # the next sync takes the file
        assert h.count("conflicts") == 1


def test_deleting_a_story_whose_file_was_edited_is_a_conflict(backlog_repo: Repo) -> None:
    synced(backlog_repo)
    backlog_repo.write(WEB2, story_text("WEB-2", title="Still wanted"))
    with handles(backlog_repo) as h:
        delete_story(h.db, "WEB-2")
        assert backlog_repo.run("export") == 1
        assert (backlog_repo.path / WEB2).exists()
        assert h.count("conflicts", "story_id = 'WEB-2'") == 1


def test_an_export_interrupted_before_recording_is_finished_without_conflict(backlog_repo: Repo) -> None:
    synced(backlog_repo)
    with handles(backlog_repo) as h:
        update_story(h.db, "WEB-2", status="completed", points=5)
        pending = h.row("WEB-2")
        assert backlog_repo.run("export") == 0
        # as if the process died after writing the files, before the database recorded them
        h.sql(
            "UPDATE stories SET path = :p, content_hash = :c, synced_revision = :s WHERE id = 'WEB-2'",
            p=pending["path"],
            c=pending["content_hash"],
            s=pending["synced_revision"],
        )
        assert backlog_repo.run("export") == 0
        assert h.count("conflicts") == 0
        row = h.row("WEB-2")
        assert (row["path"], row["synced_revision"]) == ("completed/web/WEB-2-signup.md", row["revision"])


def test_writes_are_atomic_and_keep_the_file_mode(backlog_repo: Repo) -> None:
    synced(backlog_repo)
    target = backlog_repo.path / WEB2
    os.chmod(target, 0o600)
    with handles(backlog_repo) as h:
        update_story(h.db, "WEB-2", points=4)
    assert backlog_repo.run("export") == 0
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert not [p for p in backlog_repo.path.rglob(".storysync-*.tmp")]


# ---------------------------------------------------------------- --commit


def test_commit_contains_exactly_the_exported_paths(backlog_repo: Repo, any_db: str) -> None:
    repo = backlog_repo
    repo.write("notes.txt", "mine\n")
    repo.commit("notes")
    synced(repo)
    repo.write("notes.txt", "mine, unstaged edit\n")
    repo.write("staged.txt", "staged by the user\n")
    repo.git("add", "staged.txt")
    with handles(repo, any_db) as h:
        update_story(h.db, "WEB-2", status="completed")
        create_story(h.db, "WEB-9", backlog="web", title="New one")
        delete_story(h.db, "API-2")
        update_story(h.db, "API-1", title="Auth API v2")
        head = repo.git("rev-parse", "HEAD")
        assert repo.run("export", "--commit", "--message", "Export from the story API") == 0
        new_head = repo.git("rev-parse", "HEAD")
        assert repo.git("rev-parse", "HEAD~1") == head
        changed = repo.git("show", "--name-status", "--format=", "-M", "HEAD").splitlines()
        assert sorted(changed) == sorted(
            [
                "D\tcompleted/api/API-2-health.md",
                "M\trefinements/api/API-1-auth.md",
                "A\tbacklog/web/WEB-9-new-one.md",
                "R100\tactive/web/WEB-2-signup.md\tcompleted/web/WEB-2-signup.md",
            ]
        )
        message = repo.git("log", "-1", "--format=%B")
        assert message.startswith("Export from the story API\n\n")
        assert "- WEB-2: moved active/web/WEB-2-signup.md -> completed/web/WEB-2-signup.md" in message
        assert repo.git("diff", "--cached", "--name-only") == "staged.txt"  # still staged, not committed
        assert repo.git("diff", "--name-only") == "notes.txt"  # still edited, not committed
        assert h.rows("sync_state", "key = 'last_synced_commit'")[0]["value"] == new_head
        assert {h.row(s)["synced_commit"] for s in ("WEB-2", "WEB-9", "API-1", "API-2")} == {new_head}
        counts = (h.count("changes"), h.count("status_history"))
        assert repo.run("sync") == 0
        assert repo.run("sync", "--full") == 0
        assert (h.count("changes"), h.count("status_history")) == counts  # nothing echoed back


def test_commit_when_the_database_is_behind_head(backlog_repo: Repo) -> None:
    repo = backlog_repo
    synced(repo)
    with handles(repo) as h:
        repo.write("readme.txt", "later\n")
        later = repo.commit("unrelated later commit")
        update_story(h.db, "WEB-2", status="completed")
        assert repo.run("export", "--commit") == 0
        # the database was not at HEAD's parent, so the export does not claim to be synced
        assert h.rows("sync_state", "key = 'last_synced_commit'")[0]["value"] != later
        counts = (h.count("changes", "story_id = 'WEB-2'"), h.count("status_history", "story_id = 'WEB-2'"))
        assert repo.run("sync") == 0
        assert (h.count("changes", "story_id = 'WEB-2'"), h.count("status_history", "story_id = 'WEB-2'")) == counts


def test_held_index_lock_refuses_commit_before_writing(backlog_repo: Repo) -> None:
    repo = backlog_repo
    synced(repo)
    with handles(repo) as h:
        update_story(h.db, "WEB-2", status="completed")
        update_story(h.db, "API-1", title="Changed")
        create_story(h.db, "WEB-9", backlog="web", title="New one")
        before = snapshot(repo)
        lock = repo.path / ".git" / "index.lock"
        lock.write_bytes(b"")
        assert repo.run("export", "--commit") == 4  # SPEC §5: a held index.lock refuses the operation
        assert snapshot(repo) == before
        assert lock.exists()
        assert all(h.row(s)["revision"] > h.row(s)["synced_revision"] for s in ("WEB-2", "API-1", "WEB-9"))
        assert repo.run("export", "--dry-run") == 0  # no index needed to show or write files
        lock.unlink()
        assert repo.run("export", "--commit") == 0
        assert repo.git("status", "--porcelain") == ""


def test_a_rejecting_pre_commit_hook_restores_files_and_index(backlog_repo: Repo) -> None:
    """git failing after the files were written (here a hook; also an index.lock taken meanwhile)."""
    repo = backlog_repo
    synced(repo)
    hook = repo.path / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\necho 'no commits today' >&2\nexit 1\n")
    hook.chmod(0o755)
    with handles(repo) as h:
        create_story(h.db, "WEB-9", backlog="web", title="New one")
        update_story(h.db, "WEB-1", priority="low")
        before = snapshot(repo)
        assert repo.run("export", "--commit") == 3
        assert snapshot(repo) == before
        assert repo.git("status", "--porcelain") == ""
        assert h.row("WEB-9")["synced_revision"] == 0


def test_refuses_during_a_merge_and_without_a_database(backlog_repo: Repo, tmp_path: Path) -> None:
    repo = backlog_repo
    assert repo.run("export") == 4  # never initialised
    synced(repo)
    repo.git("checkout", "-q", "-b", "side")
    repo.write(WEB2, story_text("WEB-2", title="Side", points=3))
    repo.commit("side")
    repo.git("checkout", "-q", "main")
    repo.write(WEB2, story_text("WEB-2", title="Main", points=3))
    repo.commit("main")
    repo.git("merge", "side", check=False)
    assert (repo.path / ".git" / "MERGE_HEAD").exists()
    with handles(repo) as h:
        update_story(h.db, "WEB-1", points=1)
    assert repo.run("export") == 4


def test_unsafe_rows_are_refused_by_id(backlog_repo: Repo, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = backlog_repo
    synced(repo)
    outside = tmp_path / "outside"
    outside.mkdir()
    (repo.path / "backlog" / "evil").symlink_to(outside, target_is_directory=True)
    (tmp_path / "escape").mkdir()
    (tmp_path / "escape" / ".storysync-not-ours.tmp").write_text("someone else's\n")
    with handles(repo) as h:
        create_story(h.db, "WEB-9", backlog="evil", title="Lands outside")
        h.sql("INSERT INTO backlogs (id, created_at) VALUES ('../../x', CURRENT_TIMESTAMP)")
        h.sql("UPDATE stories SET backlog_id = '../../x', revision = revision + 1 WHERE id = 'API-2'")
        h.sql("UPDATE stories SET path = '../escape/WEB-1-login.md', revision = revision + 1 WHERE id = 'WEB-1'")
        h.sql("UPDATE stories SET status = 'someday', revision = revision + 1 WHERE id = 'WEB-2'")
        capsys.readouterr()
        assert repo.run("export") == 1
        out = capsys.readouterr().out
        assert "refused" in out
        assert "WEB-9" in out
        assert "leads out of the stories root" in out
        assert "API-2" in out
        assert "not a safe directory name" in out
        assert "WEB-1" in out
        assert "unsafe path" in out
        assert "no stage directory" in out
        assert list(outside.iterdir()) == []
        assert [p.name for p in (tmp_path / "escape").iterdir()] == [".storysync-not-ours.tmp"]
        assert h.row("WEB-9")["synced_revision"] == 0  # left pending


def test_a_symlinked_story_file_is_not_written_through(backlog_repo: Repo, tmp_path: Path) -> None:
    repo = backlog_repo
    synced(repo)
    target = tmp_path / "elsewhere.md"
    data = (repo.path / WEB2).read_bytes()
    target.write_bytes(data)
    (repo.path / WEB2).unlink()
    (repo.path / WEB2).symlink_to(target)
    with handles(repo) as h:
        update_story(h.db, "WEB-2", points=9)
    assert repo.run("export") == 1
    assert target.read_bytes() == data


def test_export_as_a_subprocess(backlog_repo: Repo) -> None:
    synced(backlog_repo)
    with handles(backlog_repo) as h:
        update_story(h.db, "WEB-1", points=2)
    done = run_cli_subprocess(backlog_repo, "export", "--commit")
    assert done.returncode == 0, done.stderr
    assert "exported 1 story in commit" in done.stderr
    assert "points: 2" in (backlog_repo.path / WEB1).read_text()


def test_odd_and_non_ascii_paths_under_a_configured_root(repo: Repo) -> None:
    repo.write("storysync.toml", 'root = "docs/stories"\n\n[stages]\nbacklog = "backlog"\ndoing = "active"\n')
    old = "docs/stories/backlog/équipe [β]*/WEB-1-café.md"
    repo.write(old, story_text("WEB-1", title="Café"))
    repo.write("docs/stories/backlog/équipe [β]*/WEB-2-other.md", story_text("WEB-2", title="Other"))
    repo.commit("odd names")
    synced(repo)
    with handles(repo) as h:
        update_story(h.db, "WEB-1", status="active", title="Café au lait")
        assert repo.run("export", "--commit") == 0
        new = "docs/stories/doing/équipe [β]*/WEB-1-café.md"
        assert h.row("WEB-1")["path"] == new
    assert (repo.path / new).read_text().startswith("---\nid: WEB-1\ntitle: Café au lait\n")
    names = repo.git(
        "-c", "core.quotePath=false", "show", "--no-renames", "--name-only", "--format=", "HEAD"
    ).splitlines()
    assert sorted(names) == sorted([old, new])  # the glob-like backlog matched nothing else
    assert repo.git("status", "--porcelain") == ""


def test_a_full_sync_before_the_export_keeps_db_creations_and_deletions(backlog_repo: Repo) -> None:
    synced(backlog_repo)
    with handles(backlog_repo) as h:
        create_story(h.db, "WEB-9", backlog="web", title="Not exported yet")
        delete_story(h.db, "WEB-2")
        assert backlog_repo.run("sync", "--full") == 0
        assert h.row("WEB-9")["deleted_at"] is None  # no file yet is not a deleted file
        assert h.row("WEB-2")["deleted_at"] is not None  # an unchanged file does not bring it back
        assert backlog_repo.run("export") == 0
    assert (backlog_repo.path / "backlog/web/WEB-9-not-exported-yet.md").exists()
    assert not (backlog_repo.path / WEB2).exists()


def test_a_move_that_stopped_before_removing_the_old_file_is_finished(backlog_repo: Repo) -> None:
    synced(backlog_repo)
    with handles(backlog_repo) as h:
        update_story(h.db, "WEB-2", status="completed")
        assert backlog_repo.run("export", "--dry-run") == 0
        old = (backlog_repo.path / WEB2).read_bytes()
        assert backlog_repo.run("export") == 0
        new = backlog_repo.path / "completed/web/WEB-2-signup.md"
        # as if killed after writing the new file, before removing the old one and recording
        backlog_repo.write(WEB2, old)
        h.sql("UPDATE stories SET path = :p, synced_revision = synced_revision - 1 WHERE id = 'WEB-2'", p=WEB2)
        h.sql("UPDATE stories SET content_hash = :c WHERE id = 'WEB-2'", c=hashlib.sha256(old).hexdigest())
        assert backlog_repo.run("export") == 0
        assert not (backlog_repo.path / WEB2).exists()
        assert new.exists()
        assert h.row("WEB-2")["path"] == "completed/web/WEB-2-signup.md"
        assert h.count("conflicts") == 0


def test_a_body_change_keeps_the_frontmatter_bytes(repo: Repo) -> None:
    head = "---\r\nid: WEB-1  # the id\r\ntitle: 'T'\r\n---\r\n"
    repo.write("backlog/web/WEB-1-x.md", (head + "old body\r\n").encode())
    repo.commit("crlf story")
    synced(repo)
    with handles(repo) as h:
        assert h.writer.update("WEB-1", {}, body="new body\r\nsecond line").changed == ("body",)
    assert repo.run("export") == 0
    assert (repo.path / "backlog/web/WEB-1-x.md").read_bytes() == (head + "new body\r\nsecond line").encode()


def test_a_killed_exports_temporary_files_stay_out_of_git_status_and_syncs(backlog_repo: Repo) -> None:
    """SIGKILL export --commit while its undo links sit beside the stories (from the
    pre-commit hook): git status stays clean of them; sync, validate and watch skip them."""
    from storysync.config import load_config
    from storysync.watch.events import ChangeKind, StoryFilter

    synced(backlog_repo)
    exclude = backlog_repo.path / ".git" / "info" / "exclude"
    exclude.write_text("# the user's own\n*.local", encoding="utf-8")  # no final newline
    hook = killed_in_pre_commit(backlog_repo)
    leftovers = [p.relative_to(backlog_repo.path).as_posix() for p in backlog_repo.path.rglob(".storysync-*.tmp")]
    assert leftovers  # what a killed export leaves
    assert backlog_repo.git("status", "--porcelain", "--untracked-files=all") == ""  # git committed before the kill
    assert exclude.read_text(encoding="utf-8").splitlines()[:2] == ["# the user's own", "*.local"]
    assert backlog_repo.run("validate") == 0
    assert backlog_repo.run("sync", "--working-tree") == 0
    keep = StoryFilter(load_config(backlog_repo.path))
    assert not any(keep(ChangeKind.added, p) for p in leftovers)
    hook.unlink()
    assert backlog_repo.run("export") == 0  # sweeps them; the pattern is not added twice
    assert not list(backlog_repo.path.rglob(".storysync-*.tmp"))
    assert exclude.read_text(encoding="utf-8").count(".storysync-*.tmp") == 1
