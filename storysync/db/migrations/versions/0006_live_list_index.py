"""A covering index of the columns ``storysync list`` reads, on SQLite.

Listing the live stories filters on ``deleted_at``; without an index holding
every column it selects, SQLite reads each whole row, the body included (most of
a row: 1-3 KB), for 100,000 stories hundreds of megabytes.  This partial index
holds exactly those columns (``deleted_at`` last, which SQLite needs to call it
covering), so a list scans it alone.  SQLite only: PostgreSQL keeps a large body
out of line (TOAST), and limits an index entry to about 2.7 KB, which a long
title or many tags could pass, failing the sync that writes them.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

LIVE = sa.text("deleted_at IS NULL")
COLUMNS = [
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
]


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.create_index("ix_stories_live_list", "stories", COLUMNS, sqlite_where=LIVE)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.drop_index("ix_stories_live_list", table_name="stories")
