"""Full sync, files → DB (SPEC §6): one transaction, idempotent, soft deletes, history, feed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from storysync.db import tables as m
from storysync.db.database import Database
from tests.conftest import Repo, story_text

DATA_TABLES = ("backlogs", "stories", "dependencies", "status_history", "sync_state", "conflicts", "changes")


@pytest.fixture
def db(any_db: str) -> Iterator[Database]:
    database = Database(any_db)
    yield database
    database.dispose()


def table(db: Database, name: str, order: str | None = None) -> list[dict[str, Any]]:
    t = m.Base.metadata.tables[name]
    query = select(t)
    if order:
        query = query.order_by(t.c[order])
    with db.read() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


def story(db: Database, story_id: str) -> dict[str, Any]:
    [row] = [r for r in table(db, "stories") if r["id"] == story_id]
    return row


def data(db: Database) -> dict[str, list[str]]:
    """Every data table's rows (sorted, as text), to compare before and after a run."""
    return {name: sorted(repr(sorted(r.items())) for r in table(db, name)) for name in DATA_TABLES}


def last_synced(db: Database) -> str | None:
    rows = [r["value"] for r in table(db, "sync_state") if r["key"] == "last_synced_commit"]
    return rows[0] if rows else None


def sync(repo: Repo, *args: str) -> int:
    return repo.run("-q", "sync", *args)


def test_first_sync_fills_every_table(backlog_repo: Repo, db: Database) -> None:
    head = backlog_repo.git("rev-parse", "HEAD")
    assert sync(backlog_repo) == 0
    stories = {r["id"]: r for r in table(db, "stories")}
    assert sorted(stories) == ["API-1", "API-2", "WEB-1", "WEB-2"]
    web1 = stories["WEB-1"]
    assert web1["backlog_id"] == "web"
    assert web1["status"] == "backlog"
    assert web1["title"] == "Login page"
    assert web1["priority"] == "high"
    assert web1["path"] == "backlog/web/WEB-1-login.md"
    assert web1["revision"] == 1
    assert web1["synced_revision"] == 1
    assert web1["synced_commit"] == head
    assert web1["deleted_at"] is None
    assert stories["API-1"]["tags"] == ["auth", "security"]
    assert stories["API-2"]["extra"] == {"created": "2026-01-05"}
    assert stories["WEB-2"]["points"] == 3
    import hashlib

    blob = (backlog_repo.path / "backlog/web/WEB-1-login.md").read_bytes()
    assert web1["content_hash"] == hashlib.sha256(blob).hexdigest()
    assert {r["id"] for r in table(db, "backlogs")} == {"web", "api"}
    assert [(d["story_id"], d["depends_on_id"]) for d in table(db, "dependencies")] == [("WEB-1", "API-1")]
    history = table(db, "status_history")
    assert sorted((h["story_id"], h["from_status"], h["to_status"]) for h in history) == [
        ("API-1", None, "refinements"),
        ("API-2", None, "completed"),
        ("WEB-1", None, "backlog"),
        ("WEB-2", None, "active"),
    ]
    assert {(h["commit"], h["author"], h["source"]) for h in history} == {
        (head, "Ada Author <ada@example.invalid>", "file")
    }
    changes = table(db, "changes", "seq")
    assert sorted((c["story_id"], c["kind"], c["source"]) for c in changes) == [
        ("API-1", "created", "file"),
        ("API-2", "created", "file"),
        ("WEB-1", "created", "file"),
        ("WEB-2", "created", "file"),
    ]
    [run] = table(db, "sync_runs")
    assert run["outcome"] == "ok"
    assert run["trigger"] == "manual"
    assert run["to_commit"] == head
    assert run["upserted"] == 4
    assert run["deleted"] == 0
    assert run["errors"] == []
    assert run["finished_at"] is not None
    assert {c["run_id"] for c in changes} == {run["id"]}
    assert last_synced(db) == head


def test_second_run_is_idempotent(backlog_repo: Repo, db: Database) -> None:
    assert sync(backlog_repo) == 0
    before = data(db)
    assert sync(backlog_repo) == 0
    assert sync(backlog_repo, "--full") == 0
    assert data(db) == before
    assert [r["outcome"] for r in table(db, "sync_runs")] == ["ok", "ok", "ok"]


def test_invalid_file_writes_nothing_but_the_audit_row(backlog_repo: Repo, db: Database) -> None:
    assert sync(backlog_repo) == 0
    before = data(db)
    backlog_repo.story("active", "web", "WEB-2", "signup", title="Signup renamed", points=5)  # a valid update
    backlog_repo.story("active", "web", "WEB-3", "new", title="New one")  # a valid create
    backlog_repo.write("backlog/api/API-9-bad.md", "---\nid: API-9\ntitle: [oops\n---\n")
    backlog_repo.git("rm", "-q", "completed/api/API-2-health.md")  # a valid delete
    backlog_repo.commit("mixed")
    assert sync(backlog_repo) == 1
    assert data(db) == before
    runs = table(db, "sync_runs", "id")
    assert [r["outcome"] for r in runs] == ["ok", "invalid"]
    assert runs[-1]["errors"] == [
        {
            "path": "backlog/api/API-9-bad.md",
            "line": 4,
            "col": 1,
            "code": "yaml-syntax",
            "message": "invalid YAML: did not find expected ',' or ']'",
        }
    ]


def test_every_error_of_every_file_recorded(
    backlog_repo: Repo, db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    backlog_repo.write("backlog/api/API-8-a.md", "---\nid: API-8\ntitle: A\ntitle: B\npoints: -1\n---\n")
    backlog_repo.write("backlog/api/API-9-b.md", "---\nid: API-9\n---\n")
    backlog_repo.commit()
    capsys.readouterr()
    assert backlog_repo.run("sync") == 1
    out = capsys.readouterr()
    assert out.out.splitlines() == [
        "backlog/api/API-8-a.md:4:1: duplicate key 'title' (first at line 3, column 1); keep one of them",
        "backlog/api/API-9-b.md:2:1: missing required key 'title'",
    ]
    assert "nothing was written" in out.err
    [run] = table(db, "sync_runs")
    assert [e["code"] for e in run["errors"]] == ["duplicate-key", "schema"]
    assert table(db, "stories") == []


def test_keep_going_writes_the_valid_and_keeps_the_invalid_rows(backlog_repo: Repo, db: Database) -> None:
    assert sync(backlog_repo) == 0
    first = backlog_repo.git("rev-parse", "HEAD")
    web1_before = story(db, "WEB-1")
    backlog_repo.write("backlog/web/WEB-1-login.md", "---\nid: WEB-1\ntitle: Broken\ntitle: Twice\n---\n")
    backlog_repo.story("active", "web", "WEB-2", "signup", title="Signup v2", points=5)
    backlog_repo.story("backlog", "api", "API-3", "new", title="Brand new")
    backlog_repo.commit("some bad, some good")
    assert sync(backlog_repo, "--keep-going") == 1
    assert story(db, "WEB-1") == web1_before  # the invalid file's row stays as it was
    assert story(db, "WEB-2")["title"] == "Signup v2"
    assert story(db, "WEB-2")["revision"] == 2
    assert story(db, "API-3")["title"] == "Brand new"
    assert last_synced(db) == first  # the next run retries the invalid one
    run = table(db, "sync_runs", "id")[-1]
    assert run["outcome"] == "invalid"
    assert [e["path"] for e in run["errors"]] == ["backlog/web/WEB-1-login.md"]
    kinds = sorted((c["story_id"], c["kind"]) for c in table(db, "changes") if c["run_id"] == run["id"])
    assert kinds == [("API-3", "created"), ("WEB-2", "updated")]
    # fixed in the next commit: the retry picks it up and moves the marker
    backlog_repo.story("backlog", "web", "WEB-1", "login", title="Fixed")
    head = backlog_repo.commit("fix")
    assert sync(backlog_repo) == 0
    assert story(db, "WEB-1")["title"] == "Fixed"
    assert last_synced(db) == head


def test_keep_going_does_not_delete_the_row_of_an_unreadable_file(backlog_repo: Repo, db: Database) -> None:
    assert sync(backlog_repo) == 0
    backlog_repo.write("backlog/web/WEB-1-login.md", b"\xff\xfe binary now")
    backlog_repo.commit()
    assert sync(backlog_repo, "--keep-going") == 1
    assert story(db, "WEB-1")["deleted_at"] is None


def test_dry_run_writes_nothing(backlog_repo: Repo, db: Database, capsys: pytest.CaptureFixture[str]) -> None:
    assert backlog_repo.run("sync", "--dry-run") == 0
    assert "would sync" in capsys.readouterr().err
    assert table(db, "stories") == []
    assert table(db, "sync_runs") == []
    assert last_synced(db) is None
    assert sync(backlog_repo) == 0
    before = data(db)
    backlog_repo.git("rm", "-q", "backlog/web/WEB-1-login.md")
    backlog_repo.story("backlog", "web", "WEB-5", "x")
    backlog_repo.write("backlog/web/WEB-6-bad.md", "---\nid: WEB-6\n---\n")
    backlog_repo.commit()
    assert sync(backlog_repo, "--dry-run") == 1
    assert sync(backlog_repo, "--dry-run", "--keep-going") == 1
    assert data(db) == before
    assert len(table(db, "sync_runs")) == 1


def test_soft_delete_and_revival(backlog_repo: Repo, db: Database) -> None:
    assert sync(backlog_repo) == 0
    backlog_repo.git("rm", "-q", "active/web/WEB-2-signup.md")
    gone = backlog_repo.commit("remove WEB-2")
    assert sync(backlog_repo) == 0
    row = story(db, "WEB-2")
    assert row["deleted_at"] is not None
    assert row["revision"] == 2
    assert row["title"] == "Signup"  # the row and its history stay
    assert [h["to_status"] for h in table(db, "status_history") if h["story_id"] == "WEB-2"] == ["active"]
    assert gone
    backlog_repo.story("backlog", "web", "WEB-2", "signup-again", title="Back again")
    backlog_repo.commit("bring WEB-2 back")
    assert sync(backlog_repo) == 0
    row = story(db, "WEB-2")
    assert row["deleted_at"] is None
    assert row["title"] == "Back again"
    assert row["path"] == "backlog/web/WEB-2-signup-again.md"
    assert row["revision"] == 3
    kinds = [c["kind"] for c in table(db, "changes", "seq") if c["story_id"] == "WEB-2"]
    assert kinds == ["created", "deleted", "created"]
    history = [
        (h["from_status"], h["to_status"]) for h in table(db, "status_history", "id") if h["story_id"] == "WEB-2"
    ]
    assert history == [(None, "active"), (None, "backlog")]


def test_updates_moves_and_revision(backlog_repo: Repo, db: Database) -> None:
    assert sync(backlog_repo) == 0
    backlog_repo.story("backlog", "web", "WEB-1", "login", title="Login page v2", priority="high", depends_on=["API-1"])
    backlog_repo.commit("edit")
    assert sync(backlog_repo) == 0
    assert story(db, "WEB-1")["revision"] == 2
    backlog_repo.git("mv", "backlog/web/WEB-1-login.md", "active/web/WEB-1-login.md")
    moved = backlog_repo.commit("start WEB-1")
    assert sync(backlog_repo) == 0
    row = story(db, "WEB-1")
    assert (row["status"], row["path"], row["revision"], row["synced_revision"]) == (
        "active",
        "active/web/WEB-1-login.md",
        3,
        3,
    )
    assert row["synced_commit"] == moved
    kinds = [c["kind"] for c in table(db, "changes", "seq") if c["story_id"] == "WEB-1"]
    assert kinds == ["created", "updated", "moved"]
    history = [
        (h["from_status"], h["to_status"], h["commit"])
        for h in table(db, "status_history", "id")
        if h["story_id"] == "WEB-1"
    ]
    assert history[0][:2] == (None, "backlog")
    assert history[1:] == [("backlog", "active", moved)]
    assert story(db, "API-1")["revision"] == 1  # untouched rows keep their revision
    assert story(db, "API-1")["synced_commit"] != moved


def test_dependencies_follow_the_files(backlog_repo: Repo, db: Database) -> None:
    assert sync(backlog_repo) == 0
    backlog_repo.story("backlog", "web", "WEB-1", "login", title="Login page", depends_on=["API-2", "WEB-2", "API-2"])
    backlog_repo.commit()
    assert sync(backlog_repo) == 0
    deps = sorted((d["story_id"], d["depends_on_id"]) for d in table(db, "dependencies"))
    assert deps == [("WEB-1", "API-2"), ("WEB-1", "WEB-2")]


def test_conflict_kept_when_both_sides_changed(backlog_repo: Repo, db: Database) -> None:
    assert sync(backlog_repo) == 0
    with db.write() as conn:  # a DB-side writer changes the row, as the story API would
        conn.execute(m.stories.update().where(m.stories.c.id == "WEB-2").values(title="Changed in the DB", revision=2))
    backlog_repo.story("active", "web", "WEB-2", "signup", title="Changed in the file", points=3)
    backlog_repo.commit("file side")
    assert sync(backlog_repo) == 0
    row = story(db, "WEB-2")
    assert row["title"] == "Changed in the file"  # the file wins
    assert row["revision"] == 3
    assert row["synced_revision"] == 3
    [conflict] = table(db, "conflicts")
    assert conflict["story_id"] == "WEB-2"
    assert conflict["resolution"] == "file_wins"
    assert conflict["resolved_at"] is None
    assert conflict["db_snapshot"]["title"] == "Changed in the DB"
    assert conflict["db_snapshot"]["revision"] == 2
    assert conflict["file_hash"] == row["content_hash"]


def test_no_conflict_when_only_the_file_changed(backlog_repo: Repo, db: Database) -> None:
    assert sync(backlog_repo) == 0
    backlog_repo.story("active", "web", "WEB-2", "signup", title="File only")
    backlog_repo.commit()
    assert sync(backlog_repo) == 0
    assert table(db, "conflicts") == []


def test_content_comes_from_head_not_the_working_tree(backlog_repo: Repo, db: Database) -> None:
    backlog_repo.story("backlog", "web", "WEB-1", "login", title="Uncommitted edit")
    backlog_repo.write("backlog/web/WEB-7-draft.md", story_text("WEB-7", title="Untracked"))
    backlog_repo.write("backlog/web/WEB-8-broken.md", "not even frontmatter")
    assert sync(backlog_repo) == 0
    assert story(db, "WEB-1")["title"] == "Login page"
    assert "WEB-7" not in {r["id"] for r in table(db, "stories")}
    assert sync(backlog_repo, "--working-tree") == 1  # the broken untracked file counts on disk
    (backlog_repo.path / "backlog/web/WEB-8-broken.md").unlink()
    assert sync(backlog_repo, "--working-tree") == 0
    assert story(db, "WEB-1")["title"] == "Uncommitted edit"
    assert story(db, "WEB-7")["title"] == "Untracked"
    assert story(db, "WEB-7")["synced_commit"] is None


def test_sync_of_an_older_commit_with_to(backlog_repo: Repo, db: Database) -> None:
    first = backlog_repo.git("rev-parse", "HEAD")
    backlog_repo.story("backlog", "web", "WEB-9", "later")
    backlog_repo.commit("later")
    assert sync(backlog_repo, "--full", "--to", first) == 0
    assert "WEB-9" not in {r["id"] for r in table(db, "stories")}
    assert last_synced(db) == first


def test_library_call_matches_the_cli(backlog_repo: Repo, db: Database) -> None:
    import storysync

    config = storysync.load_config(backlog_repo.path)
    repo = storysync.open_repo(backlog_repo.path)
    result = storysync.sync(config, db, repo, storysync.SyncOptions(full=True))  # type: ignore[operator]
    assert isinstance(result, storysync.SyncResult)
    assert result.exit_code == 0
    assert result.created == ["API-1", "API-2", "WEB-1", "WEB-2"]
    assert sorted(r["id"] for r in table(db, "stories")) == result.created


@pytest.mark.parametrize("full", [True, False])
def test_keep_going_with_a_duplicate_id_writes_neither_file(backlog_repo: Repo, db: Database, full: bool) -> None:
    """Neither file of a duplicate pair wins by its path's sort order: the row stays."""
    assert sync(backlog_repo) == 0
    web1 = story(db, "WEB-1")
    backlog_repo.story("active", "api", "WEB-1", "copy", title="Impostor")
    backlog_repo.commit("duplicate id")
    assert sync(backlog_repo, "--keep-going", *(["--full"] if full else [])) == 1
    assert story(db, "WEB-1") == web1
    errors = table(db, "sync_runs", "id")[-1]["errors"]
    assert "active/api/WEB-1-copy.md" in {e["path"] for e in errors}
    assert {e["code"] for e in errors} == {"duplicate-id"}


def test_deleted_file_wins_over_db_changes_and_keeps_them_as_a_conflict(backlog_repo: Repo, db: Database) -> None:
    assert sync(backlog_repo) == 0
    with db.write() as conn:
        conn.execute(m.stories.update().where(m.stories.c.id == "WEB-2").values(title="DB edit", revision=2))
    backlog_repo.git("rm", "-q", "active/web/WEB-2-signup.md")
    backlog_repo.commit("remove WEB-2")
    assert sync(backlog_repo) == 0
    assert story(db, "WEB-2")["deleted_at"] is not None
    [conflict] = table(db, "conflicts")
    assert conflict["story_id"] == "WEB-2"
    assert conflict["file_hash"] is None
    assert conflict["db_snapshot"]["title"] == "DB edit"
    assert conflict["resolution"] == "file_wins"


def test_sync_result_names_the_conflicts(backlog_repo: Repo, db: Database) -> None:
    import storysync

    assert sync(backlog_repo) == 0
    with db.write() as conn:
        conn.execute(m.stories.update().where(m.stories.c.id == "WEB-2").values(title="DB edit", revision=2))
    backlog_repo.story("active", "web", "WEB-2", "signup", title="File edit")
    backlog_repo.commit()
    config = storysync.load_config(backlog_repo.path)
    result = storysync.sync(config, db, storysync.open_repo(backlog_repo.path))  # type: ignore[operator]
    assert result.conflicts == ["WEB-2"]
    assert [c["story_id"] for c in table(db, "conflicts")] == ["WEB-2"]
