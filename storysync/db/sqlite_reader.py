"""A read-only look at a storysync SQLite database through the standard library's sqlite3.

``status`` runs in less time than importing SQLAlchemy takes (~130 ms), so it reads
the common case this way: a plain ``sqlite:///path`` URL naming an existing file in
WAL mode at this storysync's schema version, opened read-only.  Anything else (a
file to create, a schema to upgrade or one that is newer, a locked, corrupt or
foreign file, any sqlite3 error) makes ``read`` return None having written nothing,
and the caller takes the general SQLAlchemy path, which creates, upgrades or reports
it exactly as every other command does.  The SQL texts are the callers' own, shared
with that path: named ``:param`` placeholders, bound, never formatted in.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import quote

from storysync.db.migrations import HEAD_REVISION

log = logging.getLogger("storysync.db")

T = TypeVar("T")

# Paths SQLAlchemy neither unquotes when parsing nor quotes when displaying the URL
# (tests check this against make_url): such a URL is its own display string.
_PLAIN_URL = re.compile(r"sqlite(?:\+pysqlite)?:///([ +\-./0-9A-Za-z_~]+)")


def plain_file(url: str) -> str | None:
    """The file a plain ``sqlite:///path`` URL names, as SQLAlchemy reads it (relative
    to the working directory unless absolute); None for any other URL."""
    match = _PLAIN_URL.fullmatch(url)
    return match.group(1) if match else None


class SqliteReader:
    """SQL texts with named ``:param`` placeholders, run on one read-only sqlite3 connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """Every row of ``sql`` with ``params`` bound."""
        return self._conn.execute(sql, dict(params or {})).fetchall()


def read(url: str, work: Callable[[SqliteReader], T]) -> T | None:
    """``work(reader)`` in one read-only transaction on the database at ``url``; None,
    with nothing written, when it is not a current storysync SQLite file in WAL mode or
    sqlite3 fails in any way (the caller then reads it the general way)."""
    path = plain_file(url)
    if path is None or not os.path.isfile(path):
        return None
    try:
        # timeout 0: a busy database is left to the general path, which waits for it
        # read-write but query-only where we may write: a read-only connection can neither
        # checkpoint nor remove the -wal and -shm files, so they would stay behind
        mode = "rw" if os.access(path, os.W_OK) and os.access(os.path.dirname(os.path.abspath(path)), os.W_OK) else "ro"
        conn = sqlite3.connect(f"file:{quote(os.path.abspath(path))}?mode={mode}", uri=True, timeout=0)
    except sqlite3.Error as exc:
        _declined(url, exc)
        return None
    try:
        conn.execute("PRAGMA query_only=ON")
        conn.isolation_level = None  # we issue BEGIN ourselves: one snapshot for every query
        conn.execute("BEGIN")
        if not _is_current(conn):
            return None
        return work(SqliteReader(conn))
    except sqlite3.Error as exc:
        _declined(url, exc)
        return None
    finally:
        conn.close()


def _is_current(conn: sqlite3.Connection) -> bool:
    """In WAL mode (the general path would switch it) and at this storysync's schema version."""
    if conn.execute("PRAGMA journal_mode").fetchall() != [("wal",)]:
        return False
    return conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(HEAD_REVISION,)]


def _declined(url: str, exc: sqlite3.Error) -> None:
    log.debug("%s: not read with sqlite3 (%s); reading it through SQLAlchemy", url, exc)
