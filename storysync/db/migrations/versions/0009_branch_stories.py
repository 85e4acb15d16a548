"""The branch overlay (issue 16): ``branch_stories``, per branch the stories whose file
differs from the main line at the merge base, as ``storysync sync --branch NAME`` records
them.  The main rows are never touched; a branch merged or deleted drops its rows.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    stamp = sa.DateTime(timezone=True)
    op.create_table(
        "branch_stories",
        sa.Column("branch", sa.Text(), nullable=False),
        sa.Column("story_id", sa.String(64), nullable=False),
        sa.Column("path", sa.Text(), nullable=True),
        sa.Column("status", sa.String(100), nullable=True),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=True),
        sa.Column("commit", sa.String(64), nullable=True),
        sa.Column("author", sa.Text(), nullable=True),
        sa.Column("changed_at", stamp, nullable=True),
        sa.Column("base_commit", sa.String(64), nullable=False),
        sa.Column("tip_commit", sa.String(64), nullable=False),
        sa.Column("recorded_at", stamp, nullable=False),
        sa.PrimaryKeyConstraint("branch", "story_id", name="pk_branch_stories"),
    )
    op.create_index("ix_branch_stories_story_id", "branch_stories", ["story_id"])


def downgrade() -> None:
    op.drop_index("ix_branch_stories_story_id", table_name="branch_stories")
    op.drop_table("branch_stories")
