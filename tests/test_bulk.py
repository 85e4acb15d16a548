"""A full sync's bulk writes store exactly what SQLAlchemy's own processing would.

On SQLite the rows skip SQLAlchemy's per-row parameter processing (``storysync.ingest.bulk``):
the JSON text and the timestamp strings must be byte for byte what the JSON and
DateTime types write.  On PostgreSQL the rows go through SQLAlchemy Core; the
logical values must be the same.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import create_engine, select, text

from storysync.db import tables as m
from storysync.db.database import Database
from storysync.ingest.bulk import BulkWriter
from storysync.story.model import to_json
from tests.conftest import Repo

JSON_VALUES: list[Any] = [
    [],
    {},
    ["ui", "café", "x y", "✓", "tab\there", 'quote "q"', "\u2028"],
    {"created": "2026-01-05", "n": 3, "f": 2.5, "big": 2**62, "neg": -0.0, "t": True, "none": None},
    {"nested": {"list": [1, [2, {"k": "v"}]], "empty": {}}, "ünï": "☃"},
]

WEB1 = """---
id: WEB-1
title: Café ✓ "quoted"
priority: high
points: 5
epic: Checkout
assignee: ada
tags: [ui, café, "x y"]
depends_on: [WEB-2]
created: 2026-01-05
updated: 2026-01-06T10:30:00+01:00
estimate: 2.5
links: {spec: "https://example.invalid/s", n: 3}
flag: true
nothing: null
---
Body ✓
"""
WEB1_TAGS = ["ui", "café", "x y"]
WEB1_EXTRA = {
    "created": "2026-01-05",
    "updated": "2026-01-06T10:30:00+01:00",
    "estimate": 2.5,
    "links": {"spec": "https://example.invalid/s", "n": 3},
    "flag": True,
    "nothing": None,
}


@pytest.mark.parametrize("value", JSON_VALUES)
def test_json_text_is_what_the_json_type_writes_on_sqlite(value: Any) -> None:
    dialect = create_engine("sqlite://").dialect
    process = m.stories.c.extra.type.dialect_impl(dialect).bind_processor(dialect)
    assert process is not None
    assert to_json(value) == process(value)


def test_stamps_are_what_the_datetime_type_writes_on_sqlite(tmp_path: Any) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    process = m.Stamp.dialect_impl(engine.dialect).bind_processor(engine.dialect)
    assert process is not None
    when = datetime(2026, 3, 4, 5, 6, 7, 89, tzinfo=timezone(timedelta(hours=-7)))
    with engine.connect() as conn:
        bulk = BulkWriter(conn)
        assert bulk.stamp(when) == process(when) == "2026-03-04 05:06:07.000089"
        assert bulk.stamp(when) is bulk.stamp(when)  # processed once per distinct value
        assert bulk.stamp(None) is None
        same_instant = when.astimezone(timezone.utc)  # equal in Python, other text in the column
        assert bulk.stamp(same_instant) == process(same_instant) == "2026-03-04 12:06:07.000089"
    engine.dispose()


def _commit_time(repo: Repo) -> datetime:
    return datetime.fromtimestamp(int(repo.git("show", "-s", "--format=%at", "HEAD").strip()), tz=timezone.utc)


def test_a_full_sync_stores_exact_values(any_db: str, repo: Repo) -> None:
    repo.write("backlog/web/WEB-1-cafe.md", WEB1)
    repo.story("active", "web", "WEB-2", "plain", title="Plain")
    repo.commit("two stories")
    assert repo.run("sync", "--full") == 0
    db = Database(any_db)
    try:
        with db.read() as conn:
            s = m.stories.c
            rows = {r.id: r for r in conn.execute(select(m.stories))}
            deps = conn.execute(select(m.dependencies)).all()
            started = conn.execute(select(m.sync_runs.c.started_at)).scalar_one()
            history = dict(conn.execute(select(m.status_history.c.story_id, m.status_history.c.changed_at)).all())
            at = set(conn.execute(select(m.changes.c.at)).scalars())
            raw = conn.execute(select(s.tags, s.extra).where(s.id == "WEB-1")).one() if db.is_sqlite else None
        one, two = rows["WEB-1"], rows["WEB-2"]
        assert (one.title, one.priority, one.points, one.epic, one.assignee) == (
            'Café ✓ "quoted"',
            "high",
            5,
            "Checkout",
            "ada",
        )
        assert (one.tags, one.extra, one.body) == (WEB1_TAGS, WEB1_EXTRA, "Body ✓\n")
        assert (two.tags, two.extra) == ([], {})
        assert [tuple(d) for d in deps] == [("WEB-1", "WEB-2")]
        assert (one.revision, one.synced_revision, one.deleted_at) == (1, 1, None)
        assert (
            one.created_at == one.updated_at == two.created_at == started
        )  # the run's time, as the Core path stores it
        assert at == {started}
        as_utc = {sid: t if t.tzinfo else t.replace(tzinfo=timezone.utc) for sid, t in history.items()}
        assert as_utc == {"WEB-1": _commit_time(repo), "WEB-2": _commit_time(repo)}  # SQLite reads back naive UTC
        assert raw is None or raw == (one.tags, one.extra)
    finally:
        db.dispose()
    if db.is_sqlite:
        _check_sqlite_text(repo)


def _check_sqlite_text(repo: Repo) -> None:
    """The stored text itself: JSON as the JSON type serialises it, DATETIME as its processor formats it."""
    engine = create_engine(repo.db_url)
    dialect = engine.dialect
    json_text = m.stories.c.tags.type.dialect_impl(dialect).bind_processor(dialect)
    stamp = m.Stamp.dialect_impl(dialect).bind_processor(dialect)
    assert json_text is not None
    assert stamp is not None
    with engine.connect() as conn:
        tags, extra, created = conn.execute(
            text("SELECT tags, extra, created_at FROM stories WHERE id = 'WEB-1'")
        ).one()
        started = conn.execute(text("SELECT started_at FROM sync_runs")).scalar_one()
        changed = conn.execute(text("SELECT changed_at FROM status_history WHERE story_id = 'WEB-1'")).scalar_one()
        types = conn.execute(text("SELECT typeof(tags), typeof(extra), typeof(created_at) FROM stories")).all()
    engine.dispose()
    assert tags == json_text(WEB1_TAGS) == '["ui", "caf\\u00e9", "x y"]'
    assert extra == json_text(WEB1_EXTRA)
    assert created == started
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}", created)
    assert changed == stamp(_commit_time(repo))
    assert set(types) == {("text", "text", "text")}
