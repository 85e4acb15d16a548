"""The first schema: every SPEC §4 table.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JSONType = sa.JSON().with_variant(JSONB(), "postgresql")
Stamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "backlogs",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("created_at", Stamp, nullable=False),
    )
    op.create_table(
        "stories",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column(
            "backlog_id",
            sa.String(200),
            sa.ForeignKey("backlogs.id", name="fk_stories_backlog_id_backlogs"),
            nullable=False,
        ),
        sa.Column("status", sa.String(100), nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("priority", sa.String(20)),
        sa.Column("points", sa.Integer),
        sa.Column("epic", sa.Text),
        sa.Column("assignee", sa.Text),
        sa.Column("tags", JSONType),
        sa.Column("extra", JSONType),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("path", sa.Text),
        sa.Column("content_hash", sa.String(64)),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("synced_revision", sa.Integer, nullable=False),
        sa.Column("synced_commit", sa.String(64)),
        sa.Column("created_at", Stamp, nullable=False),
        sa.Column("updated_at", Stamp, nullable=False),
        sa.Column("deleted_at", Stamp),
    )
    op.create_index(
        "uq_stories_live_path",
        "stories",
        ["path"],
        unique=True,
        sqlite_where=sa.text("deleted_at IS NULL"),
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
    op.create_table(
        "dependencies",
        sa.Column(
            "story_id",
            sa.String(64),
            sa.ForeignKey("stories.id", name="fk_dependencies_story_id_stories"),
            primary_key=True,
        ),
        sa.Column("depends_on_id", sa.String(64), primary_key=True),
    )
    op.create_table(
        "status_history",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "story_id",
            sa.String(64),
            sa.ForeignKey("stories.id", name="fk_status_history_story_id_stories"),
            nullable=False,
        ),
        sa.Column("from_status", sa.String(100)),
        sa.Column("to_status", sa.String(100), nullable=False),
        sa.Column("changed_at", Stamp, nullable=False),
        sa.Column("commit", sa.String(64)),
        sa.Column("author", sa.Text),
        sa.Column("source", sa.String(10), nullable=False),
    )
    op.create_table(
        "sync_runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("trigger", sa.String(20), nullable=False),
        sa.Column("from_commit", sa.String(64)),
        sa.Column("to_commit", sa.String(64)),
        sa.Column("started_at", Stamp, nullable=False),
        sa.Column("finished_at", Stamp),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("files_changed", sa.Integer, nullable=False),
        sa.Column("upserted", sa.Integer, nullable=False),
        sa.Column("deleted", sa.Integer, nullable=False),
        sa.Column("errors", JSONType),
    )
    op.create_table(
        "sync_state",
        sa.Column("key", sa.String(100), primary_key=True),
        sa.Column("value", sa.Text),
    )
    op.create_table(
        "conflicts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "story_id", sa.String(64), sa.ForeignKey("stories.id", name="fk_conflicts_story_id_stories"), nullable=False
        ),
        sa.Column("detected_at", Stamp, nullable=False),
        sa.Column("file_hash", sa.String(64)),
        sa.Column("db_snapshot", JSONType),
        sa.Column("resolution", sa.String(20), nullable=False),
        sa.Column("resolved_at", Stamp),
    )
    op.create_table(
        "changes",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("story_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("source", sa.String(10), nullable=False),
        sa.Column("run_id", sa.Integer),
        sa.Column("at", Stamp, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "changes",
        "conflicts",
        "sync_state",
        "sync_runs",
        "status_history",
        "dependencies",
        "stories",
        "backlogs",
    ):
        op.drop_table(table)
