"""One storysync writer per repository: a file lock beside the git directory.

Hooks, watch and a manual sync may start together; the second waits for the
first, then catches up.  The database's own lock (``BEGIN IMMEDIATE`` on SQLite,
an advisory lock on PostgreSQL) guards writers from other machines.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from storysync.errors import DatabaseError

LOCK_NAME = "storysync.lock"
DEFAULT_TIMEOUT = float(os.environ.get("STORYSYNC_LOCK_TIMEOUT", "600"))


@contextmanager
def writer_lock(git_dir: Path, timeout: float = DEFAULT_TIMEOUT) -> Iterator[None]:
    """Hold the repository's writer lock, waiting up to ``timeout`` seconds for it."""
    path = git_dir / LOCK_NAME
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=timeout)
    except Timeout as exc:
        raise DatabaseError(f"{path}: another storysync run held the lock for {timeout:.0f}s; try again") from exc
    except OSError as exc:
        raise DatabaseError(f"{path}: cannot take the writer lock: {exc.strerror}") from exc
    try:
        yield
    finally:
        lock.release()
