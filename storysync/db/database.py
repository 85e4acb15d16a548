"""Engine, connections, the one-writer rule and migrations.

``Database(url)`` opens SQLite (WAL, foreign keys, ``BEGIN IMMEDIATE`` for
writers) or PostgreSQL (pre-ping, a transaction-scoped advisory lock for
writers).  ``ensure_schema`` upgrades an older database in place with Alembic.
SQLAlchemy errors become ``DatabaseError`` (exit 3) or ``ConfigError`` (exit 2)
here, with the URL's password hidden.
"""

from __future__ import annotations

import os
import re
import shutil
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    create_engine,
    event,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, OperationalError, SQLAlchemyError

from storysync.db.connect import STATEMENT_MARGIN_S, Timeouts, open_with_retry, reason, scrub, where
from storysync.db.migrations import HEAD_REVISION as HEAD_REVISION  # defined there, free of SQLAlchemy
from storysync.db.migrations import LAST_SYNCED as LAST_SYNCED
from storysync.db.migrations import VERSION_TABLE as VERSION_TABLE
from storysync.db.tables import sync_state, use_postgresql_options
from storysync.errors import ConfigError, DatabaseError
from storysync.log import redact_url

WRITE_LOCK_KEY = 0x5707_5C  # PostgreSQL advisory lock id for "one storysync writer"
RUN_LOCK_KEY = WRITE_LOCK_KEY + 1  # held by a whole sync run, from reading last_synced_commit to its commit
BUSY_TIMEOUT_MS = 30_000  # SQLite: how long a writer waits for another (STORYSYNC_BUSY_TIMEOUT_MS)
LOCK_NOT_AVAILABLE = "55P03"
QUERY_CANCELED = "57014"  # statement_timeout
PSYCOPG_DRIVERS = ("psycopg", "psycopg2", "psycopg2cffi")  # libpq's connect_timeout
LOW_SPACE = 1024 * 1024  # below this, a SQLite I/O error is most likely a full disk
SEARCH_PATH = re.compile(r"-c\s*search_path=([a-z][a-z0-9_]*)\s*$")  # storysync.config.scoped_database_url's


def _env_number(name: str, default: float) -> float:
    try:
        return max(0.0, float(os.environ.get(name, default)))
    except ValueError:
        return default


def parse_url(raw: str) -> URL:
    """``raw`` as a SQLAlchemy URL; one-line ``ConfigError`` (exit 2), credentials hidden,
    when it is not one (a port that is not a number, no ``scheme://``).  Every command,
    doctor included, parses a database URL here."""
    try:
        return make_url(raw)
    except (ArgumentError, ValueError, TypeError) as exc:  # ValueError: a port that is not a number
        raise ConfigError(
            f"invalid database URL {redact_url(raw)!r}: "
            "expected e.g. sqlite:///path.db or postgresql+psycopg://user@host:5432/db"
        ) from exc


def display_url(url: URL) -> str:
    """How a database is named in messages: its URL with every credential hidden
    (the password, and query parameters such as ``?password=`` or ``sslpassword=``)."""
    return redact_url(url.render_as_string(hide_password=True))


def utcnow() -> datetime:
    """Now, in UTC, timezone-aware."""
    return datetime.now(timezone.utc)


class Database:
    """One storysync database."""

    def __init__(self, url: str, timeouts: Timeouts | None = None) -> None:
        self.url = parse_url(url)
        self.display = display_url(self.url)
        self.timeouts = timeouts or Timeouts.from_env()
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        self.busy_timeout_ms = int(_env_number("STORYSYNC_BUSY_TIMEOUT_MS", BUSY_TIMEOUT_MS))
        # PostgreSQL: the schema of a named repository (its URL's search_path), None for the database's own
        self.schema = None if self.is_sqlite else url_schema(self.url)
        self.locks = lock_keys(self.schema)
        self.engine = self._create_engine()

    def _create_engine(self) -> Engine:
        try:
            if self.is_sqlite:
                self._prepare_sqlite_path()
                engine = create_engine(self.url, connect_args={"timeout": self.busy_timeout_ms / 1000})
                _sqlite_events(engine, self.busy_timeout_ms)
                return engine
            use_postgresql_options()
            connect_args: dict[str, Any] = {}
            if self.url.get_driver_name() in PSYCOPG_DRIVERS:
                connect_args["connect_timeout"] = self.timeouts.connect_timeout(self.url)
            engine = create_engine(self.url, pool_pre_ping=True, connect_args=connect_args)
            _postgresql_events(engine, self.timeouts)
            return engine
        except NoSuchModuleError as exc:
            raise ConfigError(
                f"{self.display}: unknown database driver; for PostgreSQL install 'storysync[postgres]' and use postgresql+psycopg://"
            ) from exc
        except (ArgumentError, ImportError) as exc:
            raise ConfigError(f"{self.display}: cannot use this database URL: {exc}") from exc

    def _prepare_sqlite_path(self) -> None:
        database = self.url.database
        if not database or database == ":memory:":
            raise ConfigError(
                f"{self.display}: no database file in the URL (an in-memory database keeps nothing); "
                "use sqlite:///path/to/stories.db"
            )
        path = Path(database)
        if path.is_dir():
            raise DatabaseError(f"{path}: database path is a directory, not a file")
        blocker = next((p for p in path.parents if p.exists()), None)
        if blocker is not None and not blocker.is_dir():
            raise DatabaseError(f"{blocker}: not a directory, so the database {path} cannot be created in it")
        try:
            if path.parent.name == ".storysync":
                _make_state_dir(path.parent)
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatabaseError(f"{path.parent}: cannot create database directory: {exc.strerror}") from exc

    @property
    def sqlite_path(self) -> Path | None:
        """The SQLite file, if this is a file-backed SQLite database."""
        if self.is_sqlite and self.url.database and self.url.database != ":memory:":
            return Path(self.url.database)
        return None

    @contextmanager
    def errors(self, what: str = "database") -> Iterator[None]:
        """Turn SQLAlchemy errors into one-line ``DatabaseError``s naming the database."""
        try:
            yield
        except OperationalError as exc:
            raise self._operational_error(exc) from exc
        except DBAPIError as exc:
            raise DatabaseError(f"{self.display}: {what} failed: {scrub(reason(exc), self.url)}") from exc
        except SQLAlchemyError as exc:
            raise DatabaseError(f"{self.display}: {what} failed: {exc}".splitlines()[0]) from exc

    def _operational_error(self, exc: OperationalError) -> DatabaseError:
        why = scrub(reason(exc), self.url)
        if self.is_sqlite and "database is locked" in why:
            waited = self.busy_timeout_ms / 1000
            return DatabaseError(
                f"{self.display}: database is locked: another writer held it for {waited:g}s; try again later",
                unavailable=True,
            )
        if not self.is_sqlite and exc.connection_invalidated:
            return DatabaseError(
                f"{self.display}: lost the connection to the database server at {where(self.url)} ({why}); "
                "this run did not complete: run it again to catch up",
                unavailable=True,
            )
        sqlstate = getattr(exc.orig, "sqlstate", None)
        if sqlstate == LOCK_NOT_AVAILABLE:
            return DatabaseError(f"{self.display}: {self._lock_wait(str(exc.statement or ''))}", unavailable=True)
        if sqlstate == QUERY_CANCELED:
            limit = self.timeouts.statement_s
            return DatabaseError(
                f"{self.display}: a statement ran longer than {limit:g}s (STORYSYNC_LOCK_TIMEOUT plus "
                f"{STATEMENT_MARGIN_S:g}s) and was cancelled; nothing of it was kept: run it again",
                unavailable=True,
            )
        return DatabaseError(f"{self.display}: {why}{_sqlite_hint(self.sqlite_path, why)}")

    def _lock_wait(self, statement: str) -> str:
        waited = f"{self.timeouts.lock_s:g}s"
        if "pg_advisory" in statement:
            return f"another storysync writer held the write lock for more than {waited}; try again when it is done"
        return (
            f"gave up after {waited} waiting for a lock another session holds on the database "
            "(a LOCK TABLE or a long transaction; see pg_locks); try again when it is released"
        )

    def connect(self) -> Connection:
        """An open connection; a server that is down or restarting is retried with backoff
        first, then a one-line ``DatabaseError`` names its host and port (exit 3)."""
        if self.is_sqlite:
            return self.engine.connect()
        return open_with_retry(self.engine.connect, self.url, self.display, self.timeouts.attempts)

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only transaction."""
        with self.errors("read"), self.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """The single writer's transaction: all of it commits, or none of it."""
        with self.errors("write"), self.connect() as conn:
            if self.is_sqlite:
                conn.execution_options(storysync_immediate=True)
            with conn.begin():
                if not self.is_sqlite:
                    _advisory_lock(conn, self.locks[0])
                yield conn

    @contextmanager
    def run_lock(self) -> Iterator[None]:
        """Keep every other storysync sync on any machine out while this block runs.

        A sync reads ``last_synced_commit``, plans from it and writes; on PostgreSQL
        this session-level advisory lock makes that one step (released at the end,
        or by the server when the process dies).  SQLite needs none: its writers
        share one machine and the repository lock.
        """
        if self.is_sqlite:
            yield
            return
        with self.errors("run lock"), self.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            _session_lock(conn, self.locks[1])
            try:
                yield
            finally:
                _session_unlock(conn, self.locks[1])

    def schema_revision(self) -> str | None:
        """The revision the database is at (None when never initialised).

        Read straight from Alembic's version table: importing Alembic costs more
        than a small command's whole run, and it is needed only to migrate.
        """
        with self.errors("read schema version"), self.connect() as conn:
            if not inspect(conn).has_table(VERSION_TABLE):
                return None
            heads = list(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())
        if len(heads) > 1:
            raise DatabaseError(f"{self.display}: the schema version table holds {len(heads)} versions, not one")
        return heads[0] if heads else None

    def ensure_schema(self) -> None:
        """Create or upgrade the schema to this storysync's version."""
        current = self.schema_revision()
        if current == HEAD_REVISION:
            return
        if current is None:
            self._create_repository_schema()
            self._refuse_foreign_tables()
            if self._create_new():
                return
        if current is not None and current not in _known_revisions():
            raise DatabaseError(
                f"{self.display}: schema version {current} is newer than this storysync knows; upgrade storysync"
            )
        self.upgrade()

    def _create_repository_schema(self) -> None:
        """A named repository's first run creates its PostgreSQL schema (two at once: one does)."""
        if self.schema is None:
            return
        with self.errors("create the repository's schema"), self.connect() as conn, conn.begin():
            _advisory_lock(conn, self.locks[0])
            # the name matched SEARCH_PATH (lowercase letters, digits, '_'), so it needs no quoting
            conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"'))

    def _refuse_foreign_tables(self) -> None:
        """An unversioned database holding tables of ours belongs to another application."""
        # local: Alembic and schema inspection only when a schema is created or migrated (~0.1 s)
        from sqlalchemy import inspect

        from storysync.db.tables import Base

        with self.errors("read tables"), self.connect() as conn:
            tables = set(inspect(conn).get_table_names())
        clash = sorted(tables & set(Base.metadata.tables))
        if clash and VERSION_TABLE not in tables:  # with it: another first run has just created the schema
            raise DatabaseError(
                f"{self.display}: not a storysync database (it has table(s) {', '.join(clash)} but no storysync "
                "schema version); point --db at a new file or an existing storysync database"
            )

    def _create_new(self) -> bool:
        """Create the schema of a database with no tables yet; False if it has some by now.

        Alembic's recipe for a new database: create the tables from the models and
        stamp the head revision (its version table as Alembic makes it).  Importing
        Alembic costs ~0.1 s (its dialects, mako, pygments); the migrations are for
        upgrading existing databases.  ``tests/test_db.py`` checks that both ways give
        the same schema.  Two first runs at once: the second waits for the write lock,
        finds the tables, and leaves it to the migrations (which find it current).
        """
        # local: Alembic and schema inspection only when a schema is created or migrated (~0.1 s)
        from storysync.db.tables import metadata

        with self.errors("create schema"), self.connect() as conn:
            if self.is_sqlite:
                conn.execution_options(storysync_immediate=True)
            with conn.begin():
                if not self.is_sqlite:
                    _advisory_lock(conn, self.locks[0])
                if inspect(conn).get_table_names():
                    return False
                metadata.create_all(conn)
                version = version_table()
                version.create(conn)
                conn.execute(version.insert().values(version_num=HEAD_REVISION))
        return True

    def upgrade(self, target: str = "head") -> None:
        """Run the migrations up to ``target``."""
        # local: Alembic and schema inspection only when a schema is created or migrated (~0.1 s)
        from alembic import command

        with self.errors("migration"), self.connect() as conn:
            if self.is_sqlite:
                conn.execution_options(storysync_immediate=True)
            with conn.begin():
                if not self.is_sqlite:  # two first runs at once: the second waits, then finds the schema done
                    _advisory_lock(conn, self.locks[0])
                cfg = alembic_config()
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, target)

    def dispose(self) -> None:
        """Close pooled connections."""
        self.engine.dispose()


def version_table() -> Table:
    """Alembic's version table, as Alembic creates it (``alembic.ddl.impl``)."""
    return Table(
        VERSION_TABLE,
        MetaData(),
        Column("version_num", String(32), nullable=False),
        PrimaryKeyConstraint("version_num", name=f"{VERSION_TABLE}_pkc"),
    )


def alembic_config() -> Any:
    """An Alembic config pointing at the packaged migrations."""
    # local: Alembic and schema inspection only when a schema is created or migrated (~0.1 s)
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    return cfg


def _known_revisions() -> set[str]:
    # local: Alembic and schema inspection only when a schema is created or migrated (~0.1 s)
    from alembic.script import ScriptDirectory

    return {s.revision for s in ScriptDirectory.from_config(alembic_config()).walk_revisions()}


def url_schema(url: URL) -> str | None:
    """The schema a PostgreSQL URL's ``options=-csearch_path=NAME`` selects (a named repository)."""
    options = url.query.get("options")
    match = SEARCH_PATH.search(options if isinstance(options, str) else "")
    return match.group(1) if match else None


def lock_keys(schema: str | None) -> tuple[int, int]:
    """The advisory lock ids (one writer, one sync run) of the database's own tables or of
    one repository's schema: repositories sharing a server never wait for each other."""
    if schema is None:
        return WRITE_LOCK_KEY, RUN_LOCK_KEY
    scope = zlib.crc32(schema.encode()) << 24  # a bigint: apart from the unnamed keys and from each other
    return scope | WRITE_LOCK_KEY, scope | RUN_LOCK_KEY


def _advisory_lock(conn: Connection, key: int) -> None:
    """Wait (up to the session's ``lock_timeout``) for the one-writer lock, held until commit."""
    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def _session_lock(conn: Connection, key: int) -> None:
    conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})


def _postgresql_events(engine: Engine, timeouts: Timeouts) -> None:
    """Give every new session the run's ``lock_timeout`` and ``statement_timeout``, so that
    no lock (storysync's own, or a table or row another session holds) and no statement
    is waited for longer (SQLAlchemy's recipe: set outside any transaction, which a
    rollback would undo)."""
    calls = ", ".join(f"set_config('{name}', '{ms:d}', false)" for name, ms in timeouts.session_settings().items())

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        autocommit = dbapi_conn.autocommit
        dbapi_conn.autocommit = True
        cur = dbapi_conn.cursor()
        cur.execute(f"SELECT {calls}")  # our own names and integers, no outside text
        cur.close()
        dbapi_conn.autocommit = autocommit


def _session_unlock(conn: Connection, key: int) -> None:
    try:
        conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
    except SQLAlchemyError:  # the server went away: it released the lock with the session
        conn.invalidate()


def _sqlite_hint(path: Path | None, why: str) -> str:
    """Why SQLite could not open or write ``path``, when the file system can tell."""
    if path is None or not any(s in why for s in ("readonly", "unable to open", "disk is full", "disk I/O")):
        return ""
    directory = path.parent
    try:
        if os.statvfs(directory).f_flag & os.ST_RDONLY:
            return f" ({directory} is on a read-only file system)"
        free = shutil.disk_usage(directory).free
        if "disk is full" in why or free < LOW_SPACE:
            return f" ({free} bytes free in {directory}: the disk is full; free some space and retry)"
    except OSError:
        return ""
    if path.exists() and not os.access(path, os.W_OK):
        return " (the file is not writable: check its permissions and immutable flag, lsattr)"
    if not os.access(directory, os.W_OK):
        return f" ({directory} is not writable, and SQLite must create its -wal and -shm files there)"
    return ""


def _sqlite_events(engine: Engine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        _use_wal(cur, busy_timeout_ms)
        cur.execute("PRAGMA synchronous = NORMAL")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("storysync_immediate")
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _use_wal(cur: Any, busy_timeout_ms: int) -> None:
    """Put the database in WAL mode unless it is already.

    Switching needs an exclusive lock, and SQLite answers "database is locked" at
    once, without its busy handler, when that could deadlock with another writer
    (two first runs at once on a new file).  So the switch is retried, for as long
    as the busy timeout, until this run or the other has made it.
    """
    # local: Alembic and schema inspection only when a schema is created or migrated (~0.1 s)
    import sqlite3

    def switch() -> None:
        if cur.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            cur.execute("PRAGMA journal_mode = WAL")

    def locked(exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)

    try:
        switch()
        return
    except sqlite3.OperationalError as exc:
        if not locked(exc):
            raise
    # local: Alembic and schema inspection only when a schema is created or migrated (~0.1 s)
    from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_random  # only when contended

    retrying = Retrying(
        stop=stop_after_delay(busy_timeout_ms / 1000),
        wait=wait_random(0.005, 0.05),
        retry=retry_if_exception(locked),
        reraise=True,
    )
    for attempt in retrying:
        with attempt:
            switch()


def get_state(conn: Connection, key: str) -> str | None:
    """A value from ``sync_state``."""
    return conn.execute(select(sync_state.c.value).where(sync_state.c.key == key)).scalar_one_or_none()


def set_state(conn: Connection, key: str, value: str | None) -> None:
    """Set a ``sync_state`` value (insert or update)."""
    updated = conn.execute(sync_state.update().where(sync_state.c.key == key).values(value=value))
    if updated.rowcount == 0:
        conn.execute(sync_state.insert().values(key=key, value=value))


def _make_state_dir(state: Path) -> None:
    """Create ``.storysync/`` with a ``.gitignore`` that ignores it, unless it exists.

    Two runs may start at once (hooks, watch, a manual sync): whichever creates
    the directory writes the ``.gitignore``; the other finds it made.
    """
    try:
        state.mkdir(parents=True)
    except FileExistsError:
        return
    (state / ".gitignore").write_text("# created by storysync\n*\n", encoding="utf-8")
