"""Webhook delivery state: how far each configured webhook has been delivered.

One row per webhook target (keyed by a hash of its URL, so a token in the URL
never lands in the database), holding the last ``changes.seq`` the target
acknowledged with a 2xx.  A restart resumes after it (SPEC §10).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

Stamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "webhook_state",
        sa.Column("target", sa.String(64), primary_key=True),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("delivered_seq", sa.Integer, nullable=False, server_default="0"),
        sa.Column("failures", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_attempt_at", Stamp),
        sa.Column("last_delivered_at", Stamp),
        sa.Column("last_error", sa.Text),
    )


def downgrade() -> None:
    op.drop_table("webhook_state")
