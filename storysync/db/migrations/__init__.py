"""Alembic migrations of the storysync database schema (run by ``storysync.db.database``).

The names below are what a reader needs to recognise a current storysync
database; they live here, free of SQLAlchemy, so that ``status`` can check a
SQLite file with the standard library alone (``storysync.db.sqlite_reader``).
"""

HEAD_REVISION = "0009"  # tests check this equals the migrations' head
LAST_SYNCED = "last_synced_commit"  # the sync_state key of the last commit synced
WORKTREE_PATHS = "worktree_paths"  # the sync_state key of the paths synced from the working tree (storysync.worktree)
VERSION_TABLE = "alembic_version"  # Alembic's default, which the migrations keep
