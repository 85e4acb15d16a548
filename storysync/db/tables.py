"""SQLAlchemy Core definitions of the SPEC §4 tables (names and columns are the contract).

Plain ``Table`` objects: sync writes through them in bulk and readers select from
them.  (Core, not ORM classes: importing the ORM and mapping declarative classes
cost ~65 ms at the start of every database command, and nothing used them.)
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Column, DateTime, ForeignKey, Index, Integer, MetaData, String, Table, Text, text
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine


class JSONVariant(TypeDecorator[Any]):
    """JSON, as JSONB on PostgreSQL.

    Same DDL and values as ``JSON().with_variant(JSONB(), "postgresql")``, but the
    PostgreSQL dialect (~35 ms of imports) is loaded only when PostgreSQL is used,
    not by every SQLite command that imports these tables.
    """

    impl = JSON
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            # local: the PostgreSQL dialect only when PostgreSQL compiles the type
            from sqlalchemy.dialects.postgresql import JSONB

            return dialect.type_descriptor(JSONB())
        return dialect.type_descriptor(JSON())


JSONType = JSONVariant()
Stamp = DateTime(timezone=True)

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING)

LIST_INDEX = "ix_stories_live_list"
LIST_COLUMNS = (  # ix_stories_live_list: every column a list of the live stories reads (deleted_at last)
    "id",
    "title",
    "status",
    "backlog_id",
    "priority",
    "points",
    "epic",
    "assignee",
    "tags",
    "path",
    "updated_at",
    "deleted_at",
)


class Base:
    """``Base.metadata``: every table (for Alembic's environment and the schema tests)."""

    metadata = metadata


def _required(name: str, type_: object, *args: object, **kwargs: object) -> Column[object]:
    return Column(name, type_, *args, nullable=False, **kwargs)  # type: ignore[arg-type]


backlogs = Table(
    "backlogs",
    metadata,
    Column("id", String(200), primary_key=True),
    _required("created_at", Stamp),
)

stories = Table(
    "stories",
    metadata,
    Column("id", String(64), primary_key=True),
    _required("backlog_id", String(200), ForeignKey("backlogs.id")),
    _required("status", String(100)),
    _required("title", Text),
    Column("priority", String(20)),
    Column("points", Integer),
    Column("epic", Text),
    Column("assignee", Text),
    Column("tags", JSONType, nullable=True),
    Column("extra", JSONType, nullable=True),
    _required("body", Text),
    Column("path", Text),
    Column("content_hash", String(64)),
    _required("revision", Integer, default=1),
    _required("synced_revision", Integer, default=0),
    Column("synced_commit", String(64)),
    _required("created_at", Stamp),
    _required("updated_at", Stamp),
    Column("deleted_at", Stamp),
    # the story as last synced with its file (storysync.story.merge.base_of), the base of a
    # three-way merge when both sides changed it (0006); null: not known (an older row)
    Column("base", JSONType, nullable=True),
    Index(
        "uq_stories_live_path",
        "path",
        unique=True,
        sqlite_where=text("deleted_at IS NULL"),
    ),
    Index("ix_stories_backlog_status", "backlog_id", "status"),
    Index("ix_stories_pending", "revision", "synced_revision"),
    # the status counts (0004); partial, so that id and path lookups keep their own indexes
    Index(
        "ix_stories_live_counts",
        "backlog_id",
        "status",
        sqlite_where=text("deleted_at IS NULL"),
    ),
    Index(
        "ix_stories_deleted",
        "deleted_at",
        sqlite_where=text("deleted_at IS NOT NULL"),
    ),
    # what `storysync list` reads, so that it never reads a body (0006); SQLite only
    Index(
        LIST_INDEX,
        *LIST_COLUMNS,
        sqlite_where=text("deleted_at IS NULL"),
    ).ddl_if(dialect="sqlite"),
    # the rows an export must write (0007): only those, so an export reads what it writes
    Index(
        "ix_stories_export_pending",
        "id",
        sqlite_where=text("revision > synced_revision"),
    ),
)

dependencies = Table(
    "dependencies",
    metadata,
    Column("story_id", String(64), ForeignKey("stories.id"), primary_key=True),
    Column("depends_on_id", String(64), primary_key=True, index=True),
)

status_history = Table(
    "status_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    _required("story_id", String(64), ForeignKey("stories.id"), index=True),
    Column("from_status", String(100)),
    _required("to_status", String(100)),
    _required("changed_at", Stamp),
    Column("commit", String(64)),
    Column("author", Text),
    _required("source", String(10)),
)

sync_runs = Table(
    "sync_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    _required("trigger", String(20)),
    Column("from_commit", String(64)),
    Column("to_commit", String(64)),
    _required("started_at", Stamp),
    Column("finished_at", Stamp),
    _required("outcome", String(20)),
    _required("files_changed", Integer, default=0),
    _required("upserted", Integer, default=0),
    _required("deleted", Integer, default=0),
    Column("errors", JSONType, nullable=True),
)

sync_state = Table(
    "sync_state",
    metadata,
    Column("key", String(100), primary_key=True),
    Column("value", Text),
)

conflicts = Table(
    "conflicts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    _required("story_id", String(64), ForeignKey("stories.id"), index=True),
    _required("detected_at", Stamp),
    Column("file_hash", String(64)),
    Column("db_snapshot", JSONType, nullable=True),
    _required("resolution", String(20)),
    Column("resolved_at", Stamp),
    Column("fields", JSONType, nullable=True),  # the fields both sides changed (0006); null: the whole story
)

changes = Table(
    "changes",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    _required("story_id", String(64), index=True),
    _required("kind", String(10)),
    _required("source", String(10)),
    Column("run_id", Integer),
    _required("at", Stamp),
    Column("detail", JSONType, nullable=True),  # {"merged": [field, ...]} of a three-way merge (0006)
)

# Each branch's stories whose file differs from the main line at the merge base (0009):
# the overlay `sync --branch NAME` records, never touching the main rows; no foreign
# key to stories: a story may exist on a branch only
branch_stories = Table(
    "branch_stories",
    metadata,
    Column("branch", Text, primary_key=True),
    Column("story_id", String(64), primary_key=True),
    Column("path", Text),  # at the branch tip; the merge base's for a deleted story
    Column("status", String(100)),  # null: deleted on the branch
    Column("title", Text),
    _required("kind", String(10)),  # added | modified | deleted
    Column("content_hash", String(64)),  # null: deleted on the branch
    Column("commit", String(64)),  # the last commit on the branch that touched the file
    Column("author", Text),
    Column("changed_at", Stamp),  # that commit's author time
    _required("base_commit", String(64)),  # the merge base with the main line
    _required("tip_commit", String(64)),  # the branch tip when recorded
    _required("recorded_at", Stamp),
    Index("ix_branch_stories_story_id", "story_id"),
)

webhook_state = Table(  # how far each webhook target has been delivered (migration 0003)
    "webhook_state",
    metadata,
    Column("target", String(64), primary_key=True),  # sha256 of the URL
    _required("url", Text),  # the URL with any password or query hidden
    _required("delivered_seq", Integer, default=0, server_default="0"),
    _required("failures", Integer, default=0, server_default="0"),
    Column("last_attempt_at", Stamp),
    Column("last_delivered_at", Stamp),
    Column("last_error", Text),
)


def use_postgresql_options() -> None:
    """Give the partial indexes their PostgreSQL predicates (the same as SQLite's).

    Kept out of the ``Index`` definitions because naming a ``postgresql_*`` option
    imports SQLAlchemy's PostgreSQL dialect (~30 ms) at every SQLite command;
    ``Database`` calls this for a PostgreSQL URL.  Idempotent.
    """
    for index in (index for table in metadata.tables.values() for index in table.indexes):
        where = index.dialect_options["sqlite"]["where"]
        if where is not None and index.dialect_options["postgresql"]["where"] is None:
            index.dialect_kwargs["postgresql_where"] = where
