"""SQLAlchemy 2.0 typed models of the SPEC §4 tables (names and columns are the contract).

Sync writes through Core (``Model.__table__``) in bulk; these classes give every
table one typed definition, used by the migrations' tests and by readers.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import JSON, DateTime, ForeignKey, Index, Integer, MetaData, String, Table, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

JSONType = JSON().with_variant(JSONB(), "postgresql")
Stamp = DateTime(timezone=True)

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Backlog(Base):
    __tablename__ = "backlogs"
    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(Stamp)


class StoryRow(Base):
    __tablename__ = "stories"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    backlog_id: Mapped[str] = mapped_column(ForeignKey("backlogs.id"))
    status: Mapped[str] = mapped_column(String(100))
    title: Mapped[str] = mapped_column(Text)
    priority: Mapped[str | None] = mapped_column(String(20))
    points: Mapped[int | None] = mapped_column(Integer)
    epic: Mapped[str | None] = mapped_column(Text)
    assignee: Mapped[str | None] = mapped_column(Text)
    tags: Mapped[Any] = mapped_column(JSONType, nullable=True)
    extra: Mapped[Any] = mapped_column(JSONType, nullable=True)
    body: Mapped[str] = mapped_column(Text)
    path: Mapped[str | None] = mapped_column(Text)
    content_hash: Mapped[str | None] = mapped_column(String(64))
    revision: Mapped[int] = mapped_column(Integer, default=1)
    synced_revision: Mapped[int] = mapped_column(Integer, default=0)
    synced_commit: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(Stamp)
    updated_at: Mapped[datetime] = mapped_column(Stamp)
    deleted_at: Mapped[datetime | None] = mapped_column(Stamp)

    __table_args__ = (
        Index(
            "uq_stories_live_path",
            "path",
            unique=True,
            sqlite_where=text("deleted_at IS NULL"),
            postgresql_where=text("deleted_at IS NULL"),
        ),
        Index("ix_stories_backlog_status", "backlog_id", "status"),
        Index("ix_stories_pending", "revision", "synced_revision"),
        Index("ix_stories_live_counts", "deleted_at", "backlog_id", "status"),  # status counts (0004)
    )


class Dependency(Base):
    __tablename__ = "dependencies"
    story_id: Mapped[str] = mapped_column(ForeignKey("stories.id"), primary_key=True)
    depends_on_id: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)


class StatusHistory(Base):
    __tablename__ = "status_history"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    story_id: Mapped[str] = mapped_column(ForeignKey("stories.id"), index=True)
    from_status: Mapped[str | None] = mapped_column(String(100))
    to_status: Mapped[str] = mapped_column(String(100))
    changed_at: Mapped[datetime] = mapped_column(Stamp)
    commit: Mapped[str | None] = mapped_column(String(64))
    author: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(10))


class SyncRun(Base):
    __tablename__ = "sync_runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    trigger: Mapped[str] = mapped_column(String(20))
    from_commit: Mapped[str | None] = mapped_column(String(64))
    to_commit: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(Stamp)
    finished_at: Mapped[datetime | None] = mapped_column(Stamp)
    outcome: Mapped[str] = mapped_column(String(20))
    files_changed: Mapped[int] = mapped_column(Integer, default=0)
    upserted: Mapped[int] = mapped_column(Integer, default=0)
    deleted: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[Any] = mapped_column(JSONType, nullable=True)


class SyncState(Base):
    __tablename__ = "sync_state"
    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str | None] = mapped_column(Text)


class Conflict(Base):
    __tablename__ = "conflicts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    story_id: Mapped[str] = mapped_column(ForeignKey("stories.id"), index=True)
    detected_at: Mapped[datetime] = mapped_column(Stamp)
    file_hash: Mapped[str | None] = mapped_column(String(64))
    db_snapshot: Mapped[Any] = mapped_column(JSONType, nullable=True)
    resolution: Mapped[str] = mapped_column(String(20))
    resolved_at: Mapped[datetime | None] = mapped_column(Stamp)


class Change(Base):
    __tablename__ = "changes"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    story_id: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(10))
    source: Mapped[str] = mapped_column(String(10))
    run_id: Mapped[int | None] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(Stamp)


class WebhookState(Base):
    """How far each webhook target has been delivered (migration 0003)."""

    __tablename__ = "webhook_state"
    target: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 of the URL
    url: Mapped[str] = mapped_column(Text)  # the URL with any password or query hidden
    delivered_seq: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_attempt_at: Mapped[datetime | None] = mapped_column(Stamp)
    last_delivered_at: Mapped[datetime | None] = mapped_column(Stamp)
    last_error: Mapped[str | None] = mapped_column(Text)


backlogs: Table = cast(Table, Backlog.__table__)
stories: Table = cast(Table, StoryRow.__table__)
dependencies: Table = cast(Table, Dependency.__table__)
status_history: Table = cast(Table, StatusHistory.__table__)
sync_runs: Table = cast(Table, SyncRun.__table__)
sync_state: Table = cast(Table, SyncState.__table__)
conflicts: Table = cast(Table, Conflict.__table__)
changes: Table = cast(Table, Change.__table__)
webhook_state: Table = cast(Table, WebhookState.__table__)
