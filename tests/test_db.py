"""The database: SPEC §4 tables after init, migrations in place, newer schemas refused."""

from __future__ import annotations

import json
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, Table, inspect, select, text

from storysync.db import tables as m
from storysync.db.database import HEAD_REVISION, Database, alembic_config, get_state, set_state
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
            context = MigrationContext.configure(conn, opts={"include_object": _for_dialect(conn.dialect.name)})
            diffs = compare_metadata(context, m.Base.metadata)
        assert diffs == []
    finally:
        db.dispose()


def _for_dialect(dialect: str) -> Any:
    """Alembic's ``include_object``: leave out an index the models make on SQLite only
    (``ddl_if``), which Alembic's comparison does not know to skip elsewhere."""

    def include(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        return not (type_ == "index" and name == m.LIST_INDEX and dialect != "sqlite")

    return include


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


def test_a_new_file_reaches_wal_mode_while_another_writer_commits(tmp_path: Path) -> None:
    """Switching to WAL while another connection holds a write lock on a new (rollback-journal)
    file: SQLite refuses at once, without waiting; the switch is retried until it is made."""
    path = tmp_path / "new.db"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("CREATE TABLE t (x INTEGER)")
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO t VALUES (1)")
    other.execute("SELECT * FROM t").fetchall()
    later = threading.Timer(0.3, lambda: other.execute("COMMIT"))
    later.start()
    try:
        db = Database(f"sqlite:///{path}")
        with db.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        db.dispose()
    finally:
        later.join()
        other.close()


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


SQLITE_SCHEMA = (
    "SELECT m.type, m.name, m.tbl_name, p.* FROM sqlite_master m, pragma_table_xinfo(m.name) p "
    "WHERE m.type = 'table' ORDER BY m.name, p.cid",
    "SELECT m.name, p.* FROM sqlite_master m, pragma_foreign_key_list(m.name) p WHERE m.type = 'table' "
    "ORDER BY m.name, p.id, p.seq",
    'SELECT m.name, l.name, l."unique", l.origin, l.partial, i.* FROM sqlite_master m, pragma_index_list(m.name) l, '
    "pragma_index_xinfo(l.name) i WHERE m.type = 'table' ORDER BY m.name, l.name, i.seqno",
    "SELECT name, substr(sql, instr(sql, ' WHERE ')) FROM sqlite_master WHERE type = 'index' AND sql LIKE '% WHERE %' "
    "ORDER BY name",
)
POSTGRES_SCHEMA = (
    "SELECT table_name, column_name, ordinal_position, data_type, character_maximum_length, is_nullable, "
    "column_default FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1, 3",
    "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1, 2",
    "SELECT conrelid::regclass::text, conname, contype, pg_get_constraintdef(oid) FROM pg_constraint "
    "WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2",
    "SELECT sequencename, data_type, start_value, increment_by FROM pg_sequences WHERE schemaname = 'public' "
    "ORDER BY 1",
)


def _schema_and_rows(db: Database) -> list[object]:
    """Every table, column, key, index (with its predicate) and row of ``db``."""
    queries = SQLITE_SCHEMA if db.is_sqlite else POSTGRES_SCHEMA
    with db.read() as conn:
        found: list[object] = [conn.execute(text(q)).all() for q in queries]
        for table in sorted(inspect(conn).get_table_names()):
            rows = conn.execute(select(Table(table, MetaData(), autoload_with=conn))).all()
            found.append((table, sorted(map(tuple, rows))))
    return found


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_new_database_gets_the_schema_the_migrations_make(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A new database is created from the models and stamped (no Alembic import); the
    same as running every migration, down to index predicates, defaults and rows."""
    if backend == "sqlite":
        urls = [f"sqlite:///{tmp_path / 'migrated.db'}", f"sqlite:///{tmp_path / 'created.db'}"]
    else:
        server = request.getfixturevalue("pg_server")
        names = [server.create_database(), server.create_database()]
        request.addfinalizer(lambda: [server.drop_database(n) for n in names])
        urls = [server.url(n) for n in names]
    migrated, created = Database(urls[0]), Database(urls[1])
    try:
        migrated.upgrade()
        created.ensure_schema()
        assert created.schema_revision() == migrated.schema_revision() == HEAD_REVISION
        assert _schema_and_rows(created) == _schema_and_rows(migrated)
    finally:
        migrated.dispose()
        created.dispose()
