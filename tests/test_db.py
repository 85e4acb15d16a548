"""The database: SPEC §4 tables after init, migrations in place, newer schemas refused."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, select, text

from storysync import models as m
from storysync.db import HEAD_REVISION, Database, alembic_config, get_state, set_state
from storysync.errors import ConfigError, DatabaseError
from tests.conftest import Repo

SPEC_TABLES: dict[str, set[str]] = {
    "backlogs": {"id", "created_at"},
    "stories": {
        "id",
        "backlog_id",
        "status",
        "title",
        "priority",
        "points",
        "epic",
        "assignee",
        "tags",
        "extra",
        "body",
        "path",
        "content_hash",
        "revision",
        "synced_revision",
        "synced_commit",
        "created_at",
        "updated_at",
        "deleted_at",
    },
    "dependencies": {"story_id", "depends_on_id"},
    "status_history": {"id", "story_id", "from_status", "to_status", "changed_at", "commit", "author", "source"},
    "sync_runs": {
        "id",
        "trigger",
        "from_commit",
        "to_commit",
        "started_at",
        "finished_at",
        "outcome",
        "files_changed",
        "upserted",
        "deleted",
        "errors",
    },
    "sync_state": {"key", "value"},
    "conflicts": {"id", "story_id", "detected_at", "file_hash", "db_snapshot", "resolution", "resolved_at"},
    "changes": {"seq", "story_id", "kind", "source", "run_id", "at"},
}
PRIMARY_KEYS = {
    "backlogs": ["id"],
    "stories": ["id"],
    "dependencies": ["story_id", "depends_on_id"],
    "sync_state": ["key"],
    "changes": ["seq"],
}
NOW = datetime(2026, 1, 5, 10, 30, tzinfo=timezone.utc)


def test_head_revision_is_the_migrations_head() -> None:
    assert ScriptDirectory.from_config(alembic_config()).get_current_head() == HEAD_REVISION


def test_every_spec_table_and_column_after_init(any_db: str, repo: Repo) -> None:
    assert repo.run("-q", "init") == 0
    db = Database(any_db)
    try:
        inspector = inspect(db.engine)
        tables = set(inspector.get_table_names())
        assert set(SPEC_TABLES) <= tables
        for table, columns in SPEC_TABLES.items():
            assert {c["name"] for c in inspector.get_columns(table)} >= columns, table
        for table, pk in PRIMARY_KEYS.items():
            assert inspector.get_pk_constraint(table)["constrained_columns"] == pk, table
        fks = {(fk["referred_table"], tuple(fk["constrained_columns"])) for fk in inspector.get_foreign_keys("stories")}
        assert ("backlogs", ("backlog_id",)) in fks
        assert db.schema_revision() == HEAD_REVISION
    finally:
        db.dispose()


def test_migrations_match_the_models(any_db: str) -> None:
    """The typed models and the migrated schema do not drift apart."""
    db = Database(any_db)
    try:
        db.ensure_schema()
        with db.engine.connect() as conn:
            diffs = compare_metadata(MigrationContext.configure(conn), m.Base.metadata)
        assert diffs == []
    finally:
        db.dispose()


def _insert_old_data(db: Database) -> None:
    with db.write() as conn:
        conn.execute(m.backlogs.insert().values(id="web", created_at=NOW))
        conn.execute(
            m.stories.insert().values(
                id="WEB-1",
                backlog_id="web",
                status="backlog",
                title="Kept across upgrades",
                tags=["a"],
                extra={"created": "2026-01-05"},
                body="body\n",
                path="backlog/web/WEB-1-x.md",
                content_hash="0" * 64,
                revision=3,
                synced_revision=3,
                synced_commit="f" * 40,
                created_at=NOW,
                updated_at=NOW,
            )
        )
        conn.execute(
            m.status_history.insert().values(
                story_id="WEB-1", from_status=None, to_status="backlog", changed_at=NOW, source="file"
            )
        )
        conn.execute(m.changes.insert().values(story_id="WEB-1", kind="created", source="file", at=NOW))
        set_state(conn, "last_synced_commit", "f" * 40)


def test_database_at_0001_upgrades_in_place_keeping_data(any_db: str) -> None:
    db = Database(any_db)
    try:
        db.upgrade("0001")
        assert db.schema_revision() == "0001"
        assert "ix_stories_backlog_status" not in {i["name"] for i in inspect(db.engine).get_indexes("stories")}
        _insert_old_data(db)
        db.ensure_schema()
        assert db.schema_revision() == HEAD_REVISION
        with db.read() as conn:
            row = conn.execute(select(m.stories).where(m.stories.c.id == "WEB-1")).one()
            assert row.title == "Kept across upgrades"
            assert row.tags == ["a"]
            assert row.extra == {"created": "2026-01-05"}
            assert row.revision == 3
            assert conn.execute(select(m.status_history.c.to_status)).scalars().all() == ["backlog"]
            assert conn.execute(select(m.changes.c.kind)).scalars().all() == ["created"]
            assert get_state(conn, "last_synced_commit") == "f" * 40
        assert "ix_stories_backlog_status" in {i["name"] for i in inspect(db.engine).get_indexes("stories")}
        db.ensure_schema()  # at head: nothing to do, nothing lost
        assert db.schema_revision() == HEAD_REVISION
    finally:
        db.dispose()


def test_old_database_upgraded_by_a_command(repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    repo.story("backlog", "web", "WEB-1", "x")
    repo.commit()
    db = Database(repo.db_url)
    db.upgrade("0001")
    db.dispose()
    assert repo.run("-q", "sync") == 0
    db = Database(repo.db_url)
    try:
        assert db.schema_revision() == HEAD_REVISION
    finally:
        db.dispose()


def _stamp(db: Database, revision: str) -> None:
    with db.write() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": revision})


def test_newer_unknown_revision_refused(any_db: str, repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    db = Database(any_db)
    try:
        db.ensure_schema()
        _stamp(db, "9999")
        with pytest.raises(DatabaseError, match="schema version 9999 is newer than this storysync knows"):
            db.ensure_schema()
        assert db.schema_revision() == "9999"  # untouched
    finally:
        db.dispose()
    repo.story("backlog", "web", "WEB-1", "x")
    repo.commit()
    capsys.readouterr()
    assert repo.run("sync") == 3
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("storysync: error: ")
    assert "schema version 9999 is newer than this storysync knows; upgrade storysync" in line


def test_json_columns_keep_values_exactly(any_db: str) -> None:
    db = Database(any_db)
    try:
        db.ensure_schema()
        _insert_old_data(db)
        weird = {"date": "2026-01-05", "n": 1.5, "nested": {"list": [1, None, True, "ü"]}, "empty": {}}
        with db.write() as conn:
            conn.execute(m.stories.update().where(m.stories.c.id == "WEB-1").values(extra=weird))
        with db.read() as conn:
            assert conn.execute(select(m.stories.c.extra)).scalar_one() == weird
    finally:
        db.dispose()


def test_live_paths_are_unique_but_deleted_rows_may_share(repo: Repo) -> None:
    db = Database(repo.db_url)
    try:
        db.ensure_schema()
        _insert_old_data(db)
        values = {
            "backlog_id": "web",
            "status": "backlog",
            "title": "t",
            "body": "",
            "path": "backlog/web/WEB-1-x.md",
            "revision": 1,
            "synced_revision": 1,
            "created_at": NOW,
            "updated_at": NOW,
        }
        with pytest.raises(DatabaseError), db.write() as conn:
            conn.execute(m.stories.insert().values(id="WEB-2", **values))
        with db.write() as conn:
            conn.execute(m.stories.insert().values(id="WEB-3", deleted_at=NOW, **values))
        with db.read() as conn:
            assert conn.execute(select(m.stories.c.id).order_by(m.stories.c.id)).scalars().all() == ["WEB-1", "WEB-3"]
    finally:
        db.dispose()


# --- unreachable and wrong databases ---------------------------------------------------------------


def test_database_path_that_is_a_directory_exits_3(
    repo: Repo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "adir").mkdir()
    repo.story("backlog", "web", "WEB-1", "x")
    repo.commit()
    assert repo.run("--db", f"sqlite:///{tmp_path / 'adir'}", "sync") == 3
    [line] = capsys.readouterr().err.splitlines()
    assert line == f"storysync: error: {tmp_path / 'adir'}: database path is a directory, not a file"


def test_database_directory_that_cannot_be_created_exits_3(
    repo: Repo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    repo.story("backlog", "web", "WEB-1", "x")
    repo.commit()
    assert repo.run("--db", f"sqlite:///{blocker}/sub/x.db", "sync") == 3
    [line] = capsys.readouterr().err.splitlines()
    assert line == (
        f"storysync: error: {blocker}: not a directory, so the database {blocker / 'sub/x.db'} cannot be created in it"
    )


def test_runs_starting_together_all_open_the_new_state_directory(tmp_path: Path) -> None:
    """Hooks, watch and a manual sync may start at once on a fresh clone: none fails on mkdir."""
    for attempt in range(20):
        url = f"sqlite:///{tmp_path / str(attempt) / '.storysync' / 'storysync.db'}"
        start = threading.Barrier(8)

        def open_db(url: str = url, start: threading.Barrier = start) -> None:
            start.wait()
            Database(url).engine.dispose()

        with ThreadPoolExecutor(max_workers=8) as pool:
            for future in [pool.submit(open_db) for _ in range(8)]:
                future.result()  # raises the DatabaseError a lost race used to give
        state = tmp_path / str(attempt) / ".storysync"
        assert (state / ".gitignore").read_text(encoding="utf-8") == "# created by storysync\n*\n"


def test_database_errors_hide_the_password() -> None:
    with pytest.raises(ConfigError) as caught:
        Database("nosuchdb://user:s3cret@host/db")
    assert "s3cret" not in str(caught.value)


def test_errors_json_is_valid_json(repo: Repo) -> None:
    repo.story("backlog", "web", "WEB-1", "x", title="[unclosed")
    repo.commit()
    assert repo.run("-q", "sync") == 1
    db = Database(repo.db_url)
    try:
        with db.read() as conn:
            errors = conn.execute(select(m.sync_runs.c.errors)).scalar_one()
        assert json.loads(json.dumps(errors))[0]["code"] == "yaml-syntax"
    finally:
        db.dispose()
