"""Indexes for the queries the story API makes.

By backlog and status, DB-side pending rows, reverse dependencies, a story's
history, conflicts and changes.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

INDEXES = {
    "ix_stories_backlog_status": ("stories", ["backlog_id", "status"]),
    "ix_stories_pending": ("stories", ["revision", "synced_revision"]),
    "ix_dependencies_depends_on_id": ("dependencies", ["depends_on_id"]),
    "ix_status_history_story_id": ("status_history", ["story_id"]),
    "ix_conflicts_story_id": ("conflicts", ["story_id"]),
    "ix_changes_story_id": ("changes", ["story_id"]),
}


def upgrade() -> None:
    for name, (table, columns) in INDEXES.items():
        op.create_index(name, table, columns)


def downgrade() -> None:
    for name, (table, _) in INDEXES.items():
        op.drop_index(name, table_name=table)
