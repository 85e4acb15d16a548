"""Disk full (ENOSPC) while syncing: exit 3, nothing partial, one clear line.

The test mounts a small tmpfs (we run as root; where mounting is refused the
tests skip and say why), puts the SQLite database on it, fills the rest of the
file system with a ballast file, and runs a real ``storysync sync`` process.
Afterwards the database is exactly what it was, ``PRAGMA integrity_check`` is
ok, and once space is freed the next sync completes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from tests.conftest import Repo, make_repo
from tests.faults import (
    MountRefused,
    db_side_changes,
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
    tree_files,
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
    after = db_state(db)
    assert after is not None
    assert before is not None
    assert replace(after, runs=before.runs) == before  # no story, history, change or state written
    assert after.runs - before.runs in (0, 1)  # the failure's audit row, where the disk still took it
    assert failed_runs(db) == after.runs - before.runs
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


# --------------------------------------------------------------------------- export


@pytest.fixture
def repo_on_small_fs(tmp_path: Path) -> Iterator[Repo]:
    """A git repository inside a 16 MiB tmpfs, with 150 stories committed."""
    try:
        with tmpfs(tmp_path / "export-fs", "16m") as mount:
            yield _stories_repo(mount)
    except MountRefused as exc:
        pytest.skip(f"cannot mount a tmpfs here: {exc}")


def _stories_repo(mount: Path) -> Repo:
    repo = make_repo(mount / "stories")
    generate(repo.path, 150, seed=44)
    repo.commit("stories")
    return repo


@pytest.mark.parametrize(
    ("database", "leave", "body"),  # a 6000-byte body takes a 4 KiB page more a file; 2048 bytes fit
    [
        ("outside", 8 * 1024, 6000),  # the files do not fit
        ("inside", 96 * 1024, 2048),  # the files fit, then recording them in the database does not
        pytest.param("outside", 0, 6000, marks=pytest.mark.slow),
        pytest.param("outside", 96 * 1024, 6000, marks=pytest.mark.slow),
        pytest.param("inside", 0, 6000, marks=pytest.mark.slow),
        pytest.param("inside", 8 * 1024, 6000, marks=pytest.mark.slow),
    ],
)
def test_disk_full_during_export_changes_nothing(
    repo_on_small_fs: Repo, tmp_path: Path, database: str, leave: int, body: int
) -> None:
    """Export runs out of space writing files (and, with the database on the same file
    system, recording them): exit 3, one line, every file as it was, nothing recorded."""
    repo = repo_on_small_fs
    url = f"sqlite:///{tmp_path / 'outside.db'}" if database == "outside" else repo.db_url
    db = Path(url.removeprefix("sqlite:///"))
    code, err = _sync(repo, url)
    assert code == 0, err
    db_side_changes(repo.path, url, fraction=0.6, seed=45, body_bytes=body)
    before_files, before = tree_files(repo.path), db_state(db)

    ballast = fill(repo.path.parent, leave=leave)
    done = run(storysync_argv(repo.path, "--db", url, "export"))
    assert done.returncode == 3, done.stderr
    line = one_line_error(done.stderr)
    assert "the disk is full" in line or "No space left on device" in line, line
    assert "internal error" not in line
    ballast.unlink()
    assert tree_files(repo.path) == before_files
    assert integrity(db) == "ok"
    assert db_state(db) == before

    done = run(storysync_argv(repo.path, "--db", url, "export"))  # with space again: complete
    assert done.returncode == 0, done.stderr
    assert tree_files(repo.path) != before_files
    assert run(storysync_argv(repo.path, "--db", url, "export")).returncode == 0


def failed_runs(db: Path) -> int:
    """How many sync runs the database records as failed."""
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute("SELECT count(*) FROM sync_runs WHERE outcome = 'failed'").fetchone()[0])
    finally:
        conn.close()
