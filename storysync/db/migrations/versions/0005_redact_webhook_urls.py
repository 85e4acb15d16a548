"""Webhook delivery state without the token of a webhook's path.

``webhook_state`` kept each target's URL for display with its user, password and
query hidden, but with the path as it was, and the path is where Slack
(``/services/T…/B…/TOKEN``), Discord (``/api/webhooks/ID/TOKEN``) and most other
services carry the secret.  The row's key was already a hash of the URL; this
rewrites the stored ``url`` and ``last_error`` texts as ``storysync.log.redact``
shows them now.  Nothing else changes, and there is nothing to restore on the way
down.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from storysync.log import redact

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

webhook_state = sa.table(
    "webhook_state",
    sa.column("target", sa.String),
    sa.column("url", sa.Text),
    sa.column("last_error", sa.Text),
)


def upgrade() -> None:
    conn = op.get_bind()
    rows = conn.execute(sa.select(webhook_state.c.target, webhook_state.c.url, webhook_state.c.last_error)).all()
    for target, url, error in rows:
        hidden = {"url": redact(url), "last_error": redact(error) if error is not None else None}
        if (hidden["url"], hidden["last_error"]) != (url, error):
            conn.execute(webhook_state.update().where(webhook_state.c.target == target).values(**hidden))


def downgrade() -> None:
    pass  # the tokens are gone; the texts stay hidden
