"""Atomic file replacement: a temporary file in the same directory, fsync, rename.

A crash at any moment leaves the old file or the new one, never a torn mix.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

TEMP_PREFIX = ".storysync-"
TEMP_SUFFIX = ".tmp"


def atomic_write(path: Path, data: bytes, *, sync_dir: bool = True) -> None:
    """Replace ``path`` with ``data``: a temporary file in the same directory, fsync, rename.

    A crash at any moment leaves the old file or the new one, never a mix.  An
    existing file keeps its permission bits; a new one gets the umask's.  With
    ``sync_dir`` False the caller fsyncs the directory (once for many files).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = stat.S_IMODE(os.lstat(path).st_mode)
    except FileNotFoundError:
        mode = 0o666 & ~umask()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if sync_dir:
        fsync_dir(path.parent)


def umask() -> int:
    """The process's file-creation mask."""
    current = os.umask(0o022)
    os.umask(current)
    return current


def fsync_dir(directory: Path) -> None:
    """Make the renames and removals in ``directory`` durable."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
