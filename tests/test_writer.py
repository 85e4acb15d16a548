"""The DB-side writer API and the ``set`` / ``new`` commands, on real databases."""

from __future__ import annotations

import pytest

from storysync.db.writer import create_story, delete_story, update_story
from storysync.errors import UsageError, ValidationFailed
from tests.conftest import Repo
from tests.export_helpers import handles, synced


def test_update_raises_revision_and_feeds_a_db_change(backlog_repo: Repo, any_db: str) -> None:
    synced(backlog_repo)
    with handles(backlog_repo, any_db) as h:
        before = h.row("WEB-2")
        result = update_story(h.db, "WEB-2", points=8, tags=["ui"], reviewer="Grace")
        row = h.row("WEB-2")
        assert result.kind == "updated"
        assert set(result.changed) == {"points", "tags", "reviewer"}
        assert row["revision"] == before["revision"] + 1 > row["synced_revision"]
        assert (row["points"], row["tags"], row["extra"]["reviewer"]) == (8, ["ui"], "Grace")
        assert h.rows("changes", "story_id = 'WEB-2' AND source = 'db'")[0]["kind"] == "updated"
        assert h.count("status_history", "story_id = 'WEB-2' AND source = 'db'") == 0


def test_status_change_is_recorded_in_history_when_made(backlog_repo: Repo, any_db: str) -> None:
    synced(backlog_repo)
    with handles(backlog_repo, any_db) as h:
        h.writer.author = "api <api@example.invalid>"
        result = h.writer.update("WEB-2", {"status": "completed"})
        assert result.kind == "moved"
        (hist,) = h.rows("status_history", "story_id = 'WEB-2' AND source = 'db'")
        assert (hist["from_status"], hist["to_status"], hist["commit"]) == ("active", "completed", None)
        assert hist["author"] == "api <api@example.invalid>"
        assert h.rows("changes", "source = 'db'")[0]["kind"] == "moved"


def test_bad_values_are_refused_naming_the_story(backlog_repo: Repo) -> None:
    synced(backlog_repo)
    with handles(backlog_repo) as h:
        revision = h.row("WEB-1")["revision"]
        cases = [
            ({"priority": "urgent"}, "priority"),
            ({"points": -1}, "points"),
            ({"tags": "not-a-list"}, "tags"),
            ({"status": "someday"}, "no stage directory"),
            ({"backlog": "../../etc"}, "not a safe directory name"),
            ({"depends_on": ["NOPE-9"]}, "no story has id 'NOPE-9'"),
            ({"title": None}, "title is required"),
            ({"created": "yesterday"}, "created"),
        ]
        for fields, reason in cases:
            with pytest.raises(ValidationFailed) as caught:
                h.writer.update("WEB-1", fields)
            assert str(caught.value).startswith("WEB-1: ")
            assert reason in str(caught.value)
        assert h.row("WEB-1")["revision"] == revision
        assert h.count("changes", "source = 'db'") == 0


def test_dependency_cycles_are_refused(backlog_repo: Repo) -> None:
    synced(backlog_repo)  # WEB-1 depends on API-1
    with handles(backlog_repo) as h:
        with pytest.raises(ValidationFailed, match="cycle"):
            h.writer.update("API-1", {"depends_on": ["WEB-1"]})
        with pytest.raises(ValidationFailed, match="itself"):
            h.writer.update("API-1", {"depends_on": ["API-1"]})
        h.writer.update("API-1", {"depends_on": ["API-2"]})
        assert h.rows("dependencies", "story_id = 'API-1'")[0]["depends_on_id"] == "API-2"


def test_unknown_id_and_id_change_are_usage_errors(backlog_repo: Repo) -> None:
    synced(backlog_repo)
    with handles(backlog_repo) as h:
        with pytest.raises(UsageError, match="NOPE-1: no such story"):
            update_story(h.db, "NOPE-1", points=1)
        with pytest.raises(UsageError, match="cannot change"):
            update_story(h.db, "WEB-1", id="WEB-99")
    assert backlog_repo.run("set", "NOPE-1", "points=1") == 2


def test_setting_the_same_values_changes_nothing(backlog_repo: Repo) -> None:
    synced(backlog_repo)
    with handles(backlog_repo) as h:
        revision = h.row("WEB-2")["revision"]
        assert update_story(h.db, "WEB-2", points=3, title="Signup").kind == "unchanged"
        assert h.row("WEB-2")["revision"] == revision


def test_create_and_delete(backlog_repo: Repo, any_db: str) -> None:
    synced(backlog_repo)
    with handles(backlog_repo, any_db) as h:
        created = create_story(h.db, "WEB-9", backlog="mobile", title="Offline mode", priority="low")
        row = h.row("WEB-9")
        assert created.kind == "created"
        assert (row["revision"], row["synced_revision"], row["path"], row["backlog_id"]) == (1, 0, None, "mobile")
        assert h.count("backlogs", "id = 'mobile'") == 1
        (hist,) = h.rows("status_history", "story_id = 'WEB-9'")
        assert (hist["from_status"], hist["to_status"], hist["source"]) == (None, "backlog", "db")
        with pytest.raises(UsageError, match="already exists"):
            create_story(h.db, "WEB-9", backlog="web", title="Again")
        with pytest.raises(UsageError, match="already exists"):
            h.writer.create("WEB-1", "web", "Same id")
        with pytest.raises(ValidationFailed, match="must match"):
            create_story(h.db, "../x-1", backlog="web", title="Escape")
        with pytest.raises(ValidationFailed, match="API-1: cannot delete: WEB-1 depend"):
            delete_story(h.db, "API-1")
        deleted = delete_story(h.db, "WEB-2")
        assert deleted.kind == "deleted"
        assert h.row("WEB-2")["deleted_at"] is not None
        kinds = [(c["story_id"], c["kind"]) for c in h.rows("changes", "source = 'db'")]
        assert kinds == [("WEB-9", "created"), ("WEB-2", "deleted")]
        revived = create_story(h.db, "WEB-2", backlog="web", title="Signup again")
        assert revived.kind == "created"
        assert h.row("WEB-2")["deleted_at"] is None


def test_set_command_reads_yaml_values(backlog_repo: Repo) -> None:
    synced(backlog_repo)
    repo = backlog_repo
    assert repo.run("set", "WEB-1", "points=5", "tags=[a, b]", "created=2026-02-01", "owner=Ada Lovelace") == 0
    assert repo.run("set", "WEB-1", "priority=", "note='Fix #12'") == 0
    with handles(repo) as h:
        row = h.row("WEB-1")
    assert (row["points"], row["tags"], row["priority"]) == (5, ["a", "b"], None)
    assert row["extra"] == {"created": "2026-02-01", "owner": "Ada Lovelace", "note": "Fix #12"}
    assert repo.run("set", "WEB-1", "title=Fix #12") == 2  # a YAML comment would drop '#12'
    assert repo.run("set", "WEB-1", "title=a: b") == 2
    assert repo.run("set", "WEB-1", "noequals") == 2
    assert repo.run("set", "WEB-1", "priority=urgent") == 1
    assert repo.run("set", "WEB-1", "status=nowhere") == 1
    assert repo.run("set", "WEB-1", "status=active") == 0
    with handles(repo) as h:
        (hist,) = h.rows("status_history", "story_id = 'WEB-1' AND source = 'db'")
    assert (hist["to_status"], hist["author"]) == ("active", "Ada Author <ada@example.invalid>")


def test_new_command(backlog_repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    synced(backlog_repo)
    assert backlog_repo.run("new", "API-7", "--backlog", "api", "--title", "Rate limits", "--status", "active") == 0
    assert "API-7: created" in capsys.readouterr().err
    with handles(backlog_repo) as h:
        row = h.row("API-7")
    assert (row["status"], row["title"], row["revision"], row["synced_revision"]) == ("active", "Rate limits", 1, 0)
    assert backlog_repo.run("new", "API-7", "--backlog", "api", "--title", "Again") == 2
    assert backlog_repo.run("new", "bad id", "--backlog", "api", "--title", "X") == 1
