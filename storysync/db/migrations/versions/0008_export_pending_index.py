"""A partial index of the rows an export must write (``revision > synced_revision``).

``export`` asks for exactly those rows; ``ix_stories_pending`` (0002) indexes the two
columns but cannot answer a comparison between them, so every row (bodies included)
was read: 100k rows on every export of a few changed stories.  This index holds only
the pending rows, so the question costs what there is to export.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

PENDING = sa.text("revision > synced_revision")


def upgrade() -> None:
    op.create_index("ix_stories_export_pending", "stories", ["id"], sqlite_where=PENDING, postgresql_where=PENDING)


def downgrade() -> None:
    op.drop_index("ix_stories_export_pending", table_name="stories")
