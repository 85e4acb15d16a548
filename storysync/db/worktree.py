"""The story paths whose rows the database holds from the working tree, not from a commit.

A working-tree sync (watch, ``sync --working-tree``) writes what is on disk,
uncommitted work included, and ``last_synced_commit`` cannot say so: when the
files then go back to HEAD while nothing watches (``git checkout -- FILE``,
``rm`` of a new file), no git range names them.  So each working-tree run
records the paths it wrote (both ends of a move) under ``sync_state`` key
``worktree_paths`` in its own transaction; every commit-based sync reads those
paths again from its commit (restoring, deleting or keeping their rows) and
forgets them; ``status`` and ``doctor`` report them as drift (SPEC §6).

No key is the common case: it costs a commit-based sync one primary-key lookup.
A ``sync_state`` value needs no schema change, so an older storysync keeps using
the database (it ignores the key; a path it leaves recorded is merely read again).
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import TYPE_CHECKING

from storysync.db.migrations import WORKTREE_PATHS

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from storysync.db.database import Database


def parse(value: str | None) -> set[str]:
    """The paths a stored ``worktree_paths`` value holds (none for no value or a bad one)."""
    if not value:
        return set()
    try:
        paths = json.loads(value)
    except ValueError:
        return set()
    return {p for p in paths if isinstance(p, str)} if isinstance(paths, list) else set()


def read(conn: Connection) -> set[str]:
    """The paths recorded as synced from the working tree."""
    # local: SQLAlchemy off the status and no-op hook paths, which read sqlite3
    from storysync.db.database import get_state

    return parse(get_state(conn, WORKTREE_PATHS))


def current(db: Database) -> set[str]:
    """``read`` in a transaction of its own."""
    with db.read() as conn:
        return read(conn)


def _write(conn: Connection, paths: set[str]) -> None:
    # local: SQLAlchemy off the status and no-op hook paths, which read sqlite3
    from storysync.db import tables as m
    from storysync.db.database import set_state

    if paths:
        set_state(conn, WORKTREE_PATHS, json.dumps(sorted(paths), ensure_ascii=False))
    else:
        conn.execute(m.sync_state.delete().where(m.sync_state.c.key == WORKTREE_PATHS))


def record(conn: Connection, written: set[str] | None, resynced: Collection[str]) -> set[str]:
    """In a run's transaction: a working-tree run (``written``: the story paths whose rows it
    wrote) adds them; a commit-based run (``written`` None) forgets ``resynced``, the recorded
    paths it read again from its commit.  Returns the paths this run added."""
    if written is not None:
        added = written
        if added:
            before = read(conn)
            if not added <= before:
                _write(conn, before | added)
        return added
    if resynced:
        before = read(conn)
        if before & set(resynced):
            _write(conn, before - set(resynced))
    return set()
