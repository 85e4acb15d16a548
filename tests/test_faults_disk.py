"""Disk full (ENOSPC) while syncing: exit 3, nothing partial, one clear line.

The test mounts a small tmpfs (we run as root; where mounting is refused the
tests skip and say why), puts the SQLite database on it, fills the rest of the
file system with a ballast file, and runs a real ``storysync sync`` process.
Afterwards the database is exactly what it was, ``PRAGMA integrity_check`` is
ok, and once space is freed the next sync completes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Repo
from tests.faults import (
    MountRefused,
    db_state,
    expected_rows,
    fill,
    generate,
    integrity,
    live_rows,
    mutate,
    one_line_error,
    run,
    storysync_argv,
    tmpfs,
)


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 3 MiB tmpfs mounted for the test."""
    try:
        with tmpfs(tmp_path / "small", "3m") as mount:
            yield mount
    except MountRefused as exc:
        pytest.skip(f"cannot mount a tmpfs here: {exc}")


def _sync(repo: Repo, url: str) -> tuple[int, str]:
    done = run(storysync_argv(repo.path, "--db", url, "sync"))
    return done.returncode, done.stderr


@pytest.mark.parametrize("leave", [0, 16 * 1024, 96 * 1024])
def test_disk_full_during_sync_changes_nothing(repo: Repo, small_fs: Path, leave: int) -> None:
    """A sync of 300 changed stories runs out of space: exit 3, database as before."""
    db = small_fs / "stories.db"
    url = f"sqlite:///{db}"
    stories = generate(repo.path, 300, seed=41)
    repo.commit("version A")
    code, err = _sync(repo, url)
    assert code == 0, err
    before = db_state(db)
    stories = mutate(stories, seed=42, fraction=0.9)
    for rel in stories.paths.values():  # make every file bigger than the space left
        with open(repo.path / rel, "a", encoding="utf-8") as fh:
            fh.write("padding " * 400 + "\n")
    repo.commit("version B")

    ballast = fill(small_fs, leave=leave)
    code, err = _sync(repo, url)
    assert code == 3, err
    line = one_line_error(err)
    assert str(db) in line
    assert "the disk is full" in line.split(str(db), 1)[1]

    ballast.unlink()  # space again (reading the database needs a little: its -shm file)
    assert integrity(db) == "ok"
    assert db_state(db) == before
    code, err = _sync(repo, url)  # the next sync completes, with nothing lost
    assert code == 0, err
    assert live_rows(db) == expected_rows(stories)
    assert integrity(db) == "ok"


def test_disk_full_creating_the_database(repo: Repo, small_fs: Path) -> None:
    """No room even for the schema: exit 3 naming the file; the next run, with room, works."""
    db = small_fs / "new" / "stories.db"
    url = f"sqlite:///{db}"
    stories = generate(repo.path, 20, seed=43)
    repo.commit("stories")
    ballast = fill(small_fs, leave=0)
    code, err = _sync(repo, url)
    assert code == 3, err
    line = one_line_error(err)
    assert str(db.parent) in line
    ballast.unlink()
    code, err = _sync(repo, url)
    assert code == 0, err
    assert live_rows(db) == expected_rows(stories)
    assert integrity(db) == "ok"
