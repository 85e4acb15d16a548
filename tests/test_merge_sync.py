"""Merge instead of conflict on sync and export (issue 15): the base each story keeps,
and a story changed on both sides merged field by field, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import pytest
from sqlalchemy import select, text

from storysync.db import tables as m
from storysync.db.database import Database
from storysync.db.notify import _pending_batches
from storysync.db.writer import update_story
from storysync.story.merge import base_of, body_sha
from tests.conftest import Repo, story_text
from tests.export_helpers import Handles, handles, synced

pytestmark = pytest.mark.usefixtures("any_db")

WEB1 = "backlog/web/WEB-1-login.md"
NOW = datetime(2026, 1, 5, 10, 30, tzinfo=timezone.utc)


def _base(h: Handles, story_id: str) -> dict[str, Any]:
    row = h.row(story_id)
    base = row["base"]
    return json.loads(base) if isinstance(base, str) else base


def _deps(h: Handles, story_id: str) -> list[str]:
    return [r["depends_on_id"] for r in h.rows("dependencies", "story_id = :s", s=story_id)]


def test_every_synced_story_keeps_its_base_across_a_restart(backlog_repo: Repo, any_db: str) -> None:
    synced(backlog_repo)
    with handles(backlog_repo, any_db) as h:  # a new process: the base is in the database
        for story_id in ("WEB-1", "WEB-2", "API-1", "API-2"):
            row = h.row(story_id)
            assert _base(h, story_id) == base_of(row, _deps(h, story_id)), story_id
        assert _base(h, "WEB-1")["depends_on"] == ["API-1"]
        assert _base(h, "API-1")["tags"] == ["auth", "security"]


def test_an_export_moves_the_base_to_what_it_wrote(backlog_repo: Repo, any_db: str) -> None:
    synced(backlog_repo)
    with handles(backlog_repo, any_db) as h:
        update_story(h.db, "WEB-1", priority="low")
        assert _base(h, "WEB-1")["priority"] == "high"  # a DB-side change leaves the base as last synced
        assert h.export() == 0
        assert _base(h, "WEB-1")["priority"] == "low"
        assert _base(h, "WEB-1") == base_of(h.row("WEB-1"), _deps(h, "WEB-1"))


def test_a_file_change_moves_the_base(backlog_repo: Repo, any_db: str) -> None:
    synced(backlog_repo)
    backlog_repo.write(WEB1, story_text("WEB-1", title="Login page", priority="critical", depends_on=["API-1"]))
    backlog_repo.commit()
    synced(backlog_repo)
    with handles(backlog_repo, any_db) as h:
        assert _base(h, "WEB-1")["priority"] == "critical"


def test_an_upgraded_database_knows_the_base_of_every_row_in_step(any_db: str) -> None:
    db = Database(any_db)
    try:
        db.upgrade("0006")
        story = (
            "INSERT INTO stories (id, backlog_id, status, title, tags, extra, body, path, revision, synced_revision,"
            " created_at, updated_at) VALUES (:id, 'web', 'backlog', :title, :tags, :extra, 'words\\n', :path,"
            " :rev, 2, :now, :now)"
        )
        with db.write() as conn:
            conn.execute(text("INSERT INTO backlogs (id, created_at) VALUES ('web', :now)"), {"now": NOW})
            for sid, rev in (("WEB-1", 2), ("WEB-2", 3)):
                values = {"id": sid, "title": f"{sid} title", "tags": '["a"]', "extra": '{"created": "2026-01-05"}'}
                conn.execute(text(story), {**values, "path": f"backlog/web/{sid}-x.md", "rev": rev, "now": NOW})
            conn.execute(text("INSERT INTO dependencies VALUES ('WEB-1', 'WEB-2')"))
        db.ensure_schema()
        with db.read() as conn:
            bases = dict(conn.execute(select(m.stories.c.id, m.stories.c.base)).all())
        assert bases["WEB-1"] == {
            "title": "WEB-1 title",
            "status": "backlog",
            "priority": None,
            "points": None,
            "epic": None,
            "assignee": None,
            "backlog_id": "web",
            "tags": ["a"],
            "extra": {"created": "2026-01-05"},
            "depends_on": ["WEB-2"],
            "body_sha": body_sha("words\\n"),
        }
        assert bases["WEB-2"] is None  # unexported DB-side changes: no base is known
    finally:
        db.dispose()


def test_export_merges_a_db_change_into_a_file_edited_since_the_sync(backlog_repo: Repo, any_db: str) -> None:
    """A PM sets the priority in the tool while a developer edits the body: no conflict."""
    synced(backlog_repo)
    edited = "---\nid: WEB-1\ntitle: Login page  # the page\npriority: high\ndepends_on: [API-1]\n---\nSteps: 1, 2\n"
    backlog_repo.write(WEB1, edited)
    with handles(backlog_repo, any_db) as h:
        update_story(h.db, "WEB-1", priority="critical", tags=["ux"])
        assert h.export("--commit") == 0
        assert (backlog_repo.path / WEB1).read_text() == (
            "---\nid: WEB-1\ntitle: Login page  # the page\npriority: critical\ndepends_on: [API-1]\n"
            "tags: [ux]\n---\nSteps: 1, 2\n"
        )
        row = h.row("WEB-1")
        assert (row["priority"], row["tags"], row["body"]) == ("critical", ["ux"], "Steps: 1, 2\n")
        assert row["revision"] == row["synced_revision"]
        assert h.count("conflicts") == 0
        (change,) = h.rows("changes", "source = 'file' AND detail IS NOT NULL")
        detail = json.loads(change["detail"]) if isinstance(change["detail"], str) else change["detail"]
        assert detail == {"merged": ["priority", "tags", "body"], "conflicts": []}
    assert backlog_repo.git("status", "--porcelain", "--", WEB1) == ""  # committed by export --commit
    assert backlog_repo.run("sync") == 0
    with handles(backlog_repo, any_db) as h:
        assert h.row("WEB-1")["priority"] == "critical"
        assert h.export() == 0  # nothing left to write


def test_export_names_the_one_field_both_sides_changed(
    backlog_repo: Repo, any_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    synced(backlog_repo)
    backlog_repo.write(WEB1, story_text("WEB-1", title="Login, file", priority="high", depends_on=["API-1"]))
    with handles(backlog_repo, any_db) as h:
        update_story(h.db, "WEB-1", title="Login, API", points=8)
        capsys.readouterr()
        assert h.export() == 1  # the conflict is shown
        out, err = capsys.readouterr()
        assert "merged points into the file's edit; both changed title: the file wins" in out
        assert "exported 1 story; 1 conflict (the file wins; see 'storysync conflicts')" in err
        text_now = (backlog_repo.path / WEB1).read_text()
        assert "title: Login, file" in text_now  # the file wins the field both changed
        assert "points: 8" in text_now  # the field only the database changed is merged
        (conflict,) = h.rows("conflicts")
        fields = conflict["fields"]
        assert (json.loads(fields) if isinstance(fields, str) else fields) == ["title"]
        snapshot = conflict["db_snapshot"]
        assert (json.loads(snapshot) if isinstance(snapshot, str) else snapshot)["title"] == "Login, API"
        assert h.row("WEB-1")["title"] == "Login, file"


def test_file_wins_mode_keeps_the_whole_story_conflict(backlog_repo: Repo, any_db: str) -> None:
    backlog_repo.write("storysync.toml", 'merge = "file-wins"\n')
    backlog_repo.commit()
    synced(backlog_repo)
    edited = story_text("WEB-1", title="Login page", body="Steps\n", priority="high", depends_on=["API-1"])
    backlog_repo.write(WEB1, edited)
    with handles(backlog_repo, any_db) as h:
        update_story(h.db, "WEB-1", priority="critical")
        assert h.export() == 1
        assert (backlog_repo.path / WEB1).read_text() == edited
        assert h.rows("conflicts")[0]["fields"] is None


def test_an_unknown_merge_mode_is_a_config_error(backlog_repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    backlog_repo.write("storysync.toml", 'merge = "theirs"\n')
    assert backlog_repo.run("sync") == 2
    assert "'merge' must be one of 'fields', 'file-wins', got 'theirs'" in capsys.readouterr().err


def test_sync_merges_a_committed_edit_with_a_pending_db_change(
    backlog_repo: Repo, any_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    synced(backlog_repo)
    with handles(backlog_repo, any_db) as h:
        update_story(h.db, "WEB-1", priority="critical", tags=["ux"])
        backlog_repo.write(
            WEB1, story_text("WEB-1", title="Login page", body="Steps: 1, 2\n", priority="high", depends_on=["API-1"])
        )
        backlog_repo.commit("body edited in git")
        capsys.readouterr()
        synced(backlog_repo)
        assert "conflict" not in capsys.readouterr().err
        row = h.row("WEB-1")
        assert (row["priority"], row["tags"], row["body"]) == ("critical", ["ux"], "Steps: 1, 2\n")
        assert row["revision"] > row["synced_revision"]  # the merged values still go to the file
        assert _deps(h, "WEB-1") == ["API-1"]
        assert h.count("conflicts") == 0
        (change,) = h.rows("changes", "detail IS NOT NULL")
        detail = json.loads(change["detail"]) if isinstance(change["detail"], str) else change["detail"]
        assert detail == {"merged": ["priority", "tags", "body"], "conflicts": []}
        assert h.count("status_history", "story_id = 'WEB-1'") == 1
        webhook = [c for batch in _pending_batches(h.db, 0) for c in batch.changes if c["story_id"] == "WEB-1"]
        assert webhook[-1] == {
            "seq": change["seq"],
            "story_id": "WEB-1",
            "kind": "updated",
            "source": "file",
            "merged": ["priority", "tags", "body"],
            "conflicts": [],
        }
        assert h.export("--commit") == 0
    text_now = (backlog_repo.path / WEB1).read_text()
    assert "priority: critical" in text_now
    assert "tags: [ux]" in text_now
    assert text_now.endswith("---\nSteps: 1, 2\n")
    assert backlog_repo.run("sync") == 0
    with handles(backlog_repo, any_db) as h:
        assert h.export() == 0


def test_sync_keeps_the_field_both_sides_changed_as_a_conflict(backlog_repo: Repo, any_db: str) -> None:
    synced(backlog_repo)
    with handles(backlog_repo, any_db) as h:
        update_story(h.db, "WEB-1", title="Login, API", points=8, status="active")
        backlog_repo.write(WEB1, story_text("WEB-1", title="Login, git", priority="high", depends_on=["API-1"]))
        backlog_repo.commit("title edited in git")
        synced(backlog_repo)
        row = h.row("WEB-1")
        assert (row["title"], row["points"], row["status"]) == ("Login, git", 8, "active")
        (conflict,) = h.rows("conflicts")
        fields = conflict["fields"]
        assert (json.loads(fields) if isinstance(fields, str) else fields) == ["title"]
        snapshot = conflict["db_snapshot"]
        snapshot = json.loads(snapshot) if isinstance(snapshot, str) else snapshot
        assert snapshot["title"] == "Login, API"
        assert "base" not in snapshot
        statuses = [r["to_status"] for r in h.rows("status_history", "story_id = 'WEB-1'")]
        assert statuses == ["backlog", "active"]  # no move back to the file's stage
        assert h.export() == 0  # the merged move to active is written (the conflict was met by the sync)
    assert (backlog_repo.path / "active/web/WEB-1-login.md").is_file()


BODY = "Intro.\n\nSteps.\n\nNotes.\n"
DEPS = ["API-1"]  # WEB-1's dependencies


def test_bodies_edited_on_both_sides_merge_line_by_line(backlog_repo: Repo, any_db: str) -> None:
    backlog_repo.write(WEB1, story_text("WEB-1", title="Login page", body=BODY, priority="high", depends_on=["API-1"]))
    backlog_repo.commit()
    synced(backlog_repo)
    with handles(backlog_repo, any_db) as h:
        assert "body" not in _base(h, "WEB-1")  # a sync keeps only the body's hash ...
        h.writer.update("WEB-1", {}, body=BODY.replace("Intro.", "Introduction."))
        assert _base(h, "WEB-1")["body"] == BODY  # ... until a writer replaces the body
        edited = BODY.replace("Notes.", "Notes, more.")
        backlog_repo.write(
            WEB1, story_text("WEB-1", title="Login page", body=edited, priority="high", depends_on=["API-1"])
        )
        assert h.export() == 0
        assert (backlog_repo.path / WEB1).read_text().endswith("---\nIntroduction.\n\nSteps.\n\nNotes, more.\n")
        assert h.count("conflicts") == 0


def test_a_body_changed_outside_storysync_and_in_the_file_is_a_conflict_not_a_loss(
    backlog_repo: Repo, any_db: str
) -> None:
    """A writer that updates the row with SQL keeps no base body: the two bodies cannot be
    merged, so the file's wins and the database's is kept in the conflict."""
    synced(backlog_repo)
    with handles(backlog_repo, any_db) as h:
        h.sql("UPDATE stories SET body = 'Written by the API.\n', revision = revision + 1 WHERE id = 'WEB-1'")
        update_story(h.db, "WEB-1", points=5)
        backlog_repo.write(
            WEB1,
            story_text("WEB-1", title="Login page", body="Written in git.\n", priority="high", depends_on=["API-1"]),
        )
        assert h.export() == 1
        text_now = (backlog_repo.path / WEB1).read_text()
        assert text_now.endswith("---\nWritten in git.\n")
        assert "points: 5" in text_now
        (conflict,) = h.rows("conflicts")
        fields = conflict["fields"]
        assert (json.loads(fields) if isinstance(fields, str) else fields) == ["body"]
        snapshot = conflict["db_snapshot"]
        assert (json.loads(snapshot) if isinstance(snapshot, str) else snapshot)["body"] == "Written by the API.\n"


def test_conflicts_lists_the_fields_both_sides_changed(backlog_repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    synced(backlog_repo)
    backlog_repo.write(WEB1, story_text("WEB-1", title="Login, file", priority="high", depends_on=["API-1"]))
    with handles(backlog_repo) as h:
        update_story(h.db, "WEB-1", title="Login, API", points=8)
        assert h.export() == 1
    capsys.readouterr()
    assert backlog_repo.run("conflicts", "--format", "json") == 1
    (item,) = json.loads(capsys.readouterr().out)
    assert item["fields"] == ["title"]
    assert (item["file"]["title"], item["database"]["title"]) == ("Login, file", "Login, API")
    assert backlog_repo.run("conflicts") == 1
    assert "both changed: title" in capsys.readouterr().out
