"""What a field-level three-way merge needs (issue 15).

``stories.base``: the story as last synced with its file, the base of a merge when
both the file and the row changed since.  A row in step (``revision =
synced_revision``) is its own base, so the upgrade fills it in from the row and its
dependencies; a row with unexported changes has no known base and stays null (a
two-sided change of it is a whole-story conflict, as before).
``conflicts.fields``: the fields both sides changed (null: the whole story).
``changes.detail``: ``{"merged": [field, ...]}`` where a change merged fields.

Revision ID: 0007
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from storysync.db.tables import JSONType
from storysync.story.merge import base_of

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

BASE_COLUMNS: tuple[str, ...] = ("id", "title", "status", "backlog_id", "priority", "points", "epic", "assignee")
BASE_COLUMNS += ("tags", "extra", "body")


def upgrade() -> None:
    with op.batch_alter_table("stories") as batch:
        batch.add_column(sa.Column("base", JSONType, nullable=True))
    with op.batch_alter_table("conflicts") as batch:
        batch.add_column(sa.Column("fields", JSONType, nullable=True))
    with op.batch_alter_table("changes") as batch:
        batch.add_column(sa.Column("detail", JSONType, nullable=True))
    stories = sa.table(
        "stories",
        *(sa.column(c) for c in BASE_COLUMNS if c not in ("tags", "extra")),
        sa.column("tags", JSONType),
        sa.column("extra", JSONType),
        sa.column("base", JSONType),
        sa.column("revision", sa.Integer),
        sa.column("synced_revision", sa.Integer),
    )
    deps = sa.table("dependencies", sa.column("story_id"), sa.column("depends_on_id"))
    conn = op.get_bind()
    depends: dict[str, list[str]] = {}
    for story_id, dep in conn.execute(sa.select(deps.c.story_id, deps.c.depends_on_id)):
        depends.setdefault(story_id, []).append(dep)
    in_step = sa.select(*(stories.c[c] for c in BASE_COLUMNS)).where(stories.c.revision == stories.c.synced_revision)
    rows = [dict(r._mapping) for r in conn.execute(in_step)]
    update = stories.update().where(stories.c.id == sa.bindparam("b_id")).values(base=sa.bindparam("b_base"))
    for start in range(0, len(rows), 1000):
        batch_rows = rows[start : start + 1000]
        conn.execute(update, [{"b_id": r["id"], "b_base": base_of(r, depends.get(r["id"], []))} for r in batch_rows])


def downgrade() -> None:
    with op.batch_alter_table("changes") as batch:
        batch.drop_column("detail")
    with op.batch_alter_table("conflicts") as batch:
        batch.drop_column("fields")
    with op.batch_alter_table("stories") as batch:
        batch.drop_column("base")
