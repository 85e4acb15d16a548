"""The repositories that share one database, for ``status`` and ``list --all-repositories``.

A named repository (``repository = "web"`` in the config) keeps its tables apart
from every other one's (``storysync.config.scoped_database_url``): in PostgreSQL a
schema of that name, in SQLite a file beside the shared one.  This module finds
them again from the shared URL, each with the URL that reaches its tables.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import MetaData, select, text

from storysync.config import REPOSITORY_NAME, schema_name, scoped_database_url
from storysync.db.database import Database, url_schema
from storysync.db.tables import sync_state

_SCHEMA_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
REPOSITORY_STATE = "repository"  # sync_state: the name a named repository's syncs write, as configured
_SCHEMAS = text(
    "SELECT table_schema FROM information_schema.tables "
    "WHERE table_name IN ('stories', 'sync_state') "
    "AND table_schema NOT IN ('pg_catalog', 'information_schema') "
    "GROUP BY table_schema HAVING count(*) = 2 ORDER BY table_schema"
)


@dataclass(frozen=True)
class Repository:
    """One repository's tables in a shared database ("" names the database's own tables)."""

    name: str
    url: str


def shared_repositories(shared_url: str) -> list[Repository]:
    """Every repository with storysync tables in the database at ``shared_url``, the
    unnamed one (the database's own tables) first, then by name."""
    db = Database(shared_url)
    try:
        found = _sqlite_repositories(db) if db.is_sqlite else _schema_repositories(db, shared_url)
    finally:
        db.dispose()
    return sorted(found, key=lambda r: (r.name != "", r.name))


def _sqlite_repositories(db: Database) -> list[Repository]:
    path = db.sqlite_path
    if path is None:
        return []
    found = [Repository("", str(db.url))] if path.exists() else []
    stem, dot, suffix = path.name.rpartition(".")
    named = rf"{re.escape(stem)}\.(.+)\.{re.escape(suffix)}" if dot and stem else rf"{re.escape(path.name)}\.(.+)"
    pattern = re.compile(rf"^{named}$")
    for candidate in sorted(path.parent.iterdir()) if path.parent.is_dir() else ():
        match = pattern.match(candidate.name)
        if match and REPOSITORY_NAME.match(match.group(1)) and _is_file(candidate):
            found.append(Repository(match.group(1), scoped_database_url(str(db.url), match.group(1))))
    return found


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:
        return False


def _schema_repositories(db: Database, shared_url: str) -> list[Repository]:
    with db.read() as conn:
        own = conn.execute(text("SELECT current_schema()")).scalar_one_or_none()
        schemas = list(conn.execute(_SCHEMAS).scalars())
        found = []
        for schema in schemas:
            if schema == own and url_schema(db.url) is None:
                found.append(Repository("", shared_url))
                continue
            if _SCHEMA_NAME.match(schema) is None:  # not one storysync named
                continue
            state = sync_state.to_metadata(MetaData(), schema=schema)  # quoted by SQLAlchemy
            name = conn.execute(select(state.c.value).where(state.c.key == REPOSITORY_STATE)).scalar() or schema
            if REPOSITORY_NAME.match(name) and schema_name(name) == schema:
                found.append(Repository(name, scoped_database_url(shared_url, name)))
    return found
