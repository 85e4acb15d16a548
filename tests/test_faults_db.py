"""Bad database targets (SPEC §5): a read-only database, a path that is a directory,
a file that is not a database, someone else's database, a mistyped URL.

Each runs the real CLI as its own process, as a hook does, and expects exit 2
(usage or configuration) or 3 (runtime), exactly one line on stderr naming the
path or URL, no traceback, and the target left byte for byte as it was.

The tests run as root, and root ignores permission bits; permission errors are
made real with ``chattr +i`` (immutable, which binds root too), a tmpfs remounted
read-only, or by dropping the capabilities that let root override permissions
(``setpriv --bounding-set -dac_override,...``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Repo
from tests.faults import MountRefused, db_state, immutable, one_line_error, run, storysync_argv, tmpfs

NO_OVERRIDE = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner", "--"]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def synced(backlog_repo: Repo) -> Repo:
    """The backlog repository, synced once into its default SQLite database."""
    assert backlog_repo.run("sync") == 0
    return backlog_repo


@pytest.fixture
def good_db(synced: Repo, tmp_path: Path) -> Path:
    """A consistent copy of a synced database, outside the repository."""
    target = tmp_path / "copy" / "stories.db"
    target.parent.mkdir()
    source, copy = sqlite3.connect(synced.db_path), sqlite3.connect(target)
    source.backup(copy)
    source.close()
    copy.close()
    return target


def _fails(repo: Repo, url: str, *args: str, code: int, names: str, prefix: list[str] | None = None) -> str:
    """Run ``storysync --db url args``; expect ``code`` and one line naming ``names``."""
    done = run([*(prefix or []), *storysync_argv(repo.path, "--db", url, *args)])
    assert done.returncode == code, done.stderr
    line = one_line_error(done.stderr)
    assert names in line, line
    assert line.startswith("storysync: error: "), line
    return line


# --------------------------------------------------------------------------- read-only


@pytest.mark.parametrize("command", ["sync", "status"])
def test_immutable_database_file(synced: Repo, good_db: Path, command: str) -> None:
    """``chattr +i``: sync exits 3 naming the file; status (a reader) still works."""
    before = _digest(good_db)
    (synced.path / "backlog" / "web" / "WEB-9-new.md").write_text("---\nid: WEB-9\ntitle: New\n---\n")
    synced.commit("a new story to write")
    try:
        with immutable(good_db):
            if command == "sync":
                line = _fails(synced, f"sqlite:///{good_db}", "sync", code=3, names=str(good_db))
                assert "read" in line
            else:
                done = run(storysync_argv(synced.path, "--db", f"sqlite:///{good_db}", "status"))
                assert done.returncode in (0, 3), done.stderr
                if done.returncode == 3:
                    assert str(good_db) in one_line_error(done.stderr)
    except MountRefused as exc:
        pytest.skip(str(exc))
    assert _digest(good_db) == before


def test_read_only_permission_without_root_override(synced: Repo, good_db: Path) -> None:
    """chmod 444 with root's override capabilities dropped: exit 3, one line, file untouched."""
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    before = _digest(good_db)
    (synced.path / "backlog" / "web" / "WEB-9-new.md").write_text("---\nid: WEB-9\ntitle: New\n---\n")
    synced.commit("a new story to write")
    good_db.chmod(0o444)
    _fails(synced, f"sqlite:///{good_db}", "sync", code=3, names=str(good_db), prefix=NO_OVERRIDE)
    assert _digest(good_db) == before


def test_database_directory_not_writable(synced: Repo, good_db: Path) -> None:
    """The file is writable but its directory is not (SQLite needs -wal/-shm there): exit 3."""
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    (synced.path / "backlog" / "web" / "WEB-9-new.md").write_text("---\nid: WEB-9\ntitle: New\n---\n")
    synced.commit("a new story to write")
    before = db_state(good_db)
    good_db.parent.chmod(0o555)
    try:
        _fails(synced, f"sqlite:///{good_db}", "sync", code=3, names=str(good_db), prefix=NO_OVERRIDE)
    finally:
        good_db.parent.chmod(0o755)
    assert db_state(good_db) == before


@pytest.fixture
def read_only_fs(tmp_path: Path, good_db: Path) -> Iterator[Path]:
    """A tmpfs holding a copy of the database, remounted read-only."""
    try:
        with tmpfs(tmp_path / "ro", "4m") as mount:
            shutil.copy(good_db, mount / "stories.db")
            done = run(["mount", "-o", "remount,ro", str(mount)])
            if done.returncode != 0:
                pytest.skip(f"cannot remount read-only here: {done.stderr.strip()}")
            yield mount / "stories.db"
    except MountRefused as exc:
        pytest.skip(f"cannot mount a tmpfs here: {exc}")


def test_database_on_read_only_file_system(synced: Repo, read_only_fs: Path) -> None:
    """Exit 3, one line naming the file and saying the file system is read-only."""
    before = _digest(read_only_fs)
    (synced.path / "backlog" / "web" / "WEB-9-new.md").write_text("---\nid: WEB-9\ntitle: New\n---\n")
    synced.commit("a new story to write")
    line = _fails(synced, f"sqlite:///{read_only_fs}", "sync", code=3, names=str(read_only_fs))
    assert "read-only" in line
    assert _digest(read_only_fs) == before


def test_new_database_on_read_only_file_system(synced: Repo, read_only_fs: Path) -> None:
    """A database to be created in a directory that cannot be made: exit 3 naming it."""
    target = read_only_fs.parent / "sub" / "new.db"
    line = _fails(synced, f"sqlite:///{target}", "sync", code=3, names=str(target.parent))
    assert "read-only" in line.lower()
    assert not target.parent.exists()


# --------------------------------------------------------------------------- wrong kind of file


def test_database_path_is_a_directory(synced: Repo, tmp_path: Path) -> None:
    target = tmp_path / "a-directory.db"
    target.mkdir()
    line = _fails(synced, f"sqlite:///{target}", "sync", code=3, names=str(target))
    assert "directory" in line
    assert list(target.iterdir()) == []


def test_database_parent_is_a_file(synced: Repo, tmp_path: Path) -> None:
    """``--db sqlite:///notes.txt/stories.db``: exit 3 naming the file in the way."""
    blocker = tmp_path / "notes.txt"
    blocker.write_text("just notes\n")
    line = _fails(synced, f"sqlite:///{blocker}/stories.db", "sync", code=3, names=str(blocker))
    assert "not a directory" in line
    assert blocker.read_text() == "just notes\n"


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(bytes(range(256)) * 20, id="random-bytes"),
        pytest.param(b"id,title\nWEB-1,Login\n", id="csv-text"),
        pytest.param(b"SQLite format 3\x00" + b"\xff" * 84 + b"\x00" * 4000, id="corrupt-header"),
    ],
)
@pytest.mark.parametrize("command", ["sync", "status"])
def test_file_that_is_not_a_database(synced: Repo, tmp_path: Path, content: bytes, command: str) -> None:
    """Exit 3 naming the file; not a byte of it changes."""
    target = tmp_path / "stories.db"
    target.write_bytes(content)
    line = _fails(synced, f"sqlite:///{target}", command, code=3, names=str(target))
    assert "not a database" in line or "malformed" in line
    assert target.read_bytes() == content
    assert not Path(f"{target}-wal").exists() or Path(f"{target}-wal").stat().st_size == 0


def test_someone_elses_sqlite_database(synced: Repo, tmp_path: Path) -> None:
    """A SQLite file of another application with its own ``stories`` table: refused, untouched."""
    target = tmp_path / "other-app.db"
    conn = sqlite3.connect(target)
    conn.execute("CREATE TABLE stories (name TEXT, pages INTEGER)")
    conn.execute("INSERT INTO stories VALUES ('Moby Dick', 635)")
    conn.commit()
    conn.close()
    line = _fails(synced, f"sqlite:///{target}", "sync", code=3, names=str(target))
    assert "not a storysync database" in line
    conn = sqlite3.connect(target)
    tables = sorted(r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))
    rows = conn.execute("SELECT * FROM stories").fetchall()
    conn.close()
    assert tables == ["stories"]
    assert rows == [("Moby Dick", 635)]


def test_database_from_a_newer_storysync(synced: Repo, good_db: Path) -> None:
    """A schema version this storysync does not know: exit 3, asks to upgrade, no migration run."""
    conn = sqlite3.connect(good_db)
    conn.execute("UPDATE alembic_version SET version_num = '9999'")
    conn.commit()
    conn.close()
    before = _digest(good_db)
    line = _fails(synced, f"sqlite:///{good_db}", "sync", code=3, names=str(good_db))
    assert "upgrade storysync" in line
    assert _digest(good_db) == before


# --------------------------------------------------------------------------- mistyped URLs


@pytest.mark.parametrize(
    ("url", "code", "names"),
    [
        pytest.param("sqlte:///stories.db", 2, "sqlte:///stories.db", id="misspelt-scheme"),
        pytest.param("sqlite//stories.db", 2, "sqlite//stories.db", id="missing-colon"),
        pytest.param("stories.db", 2, "stories.db", id="bare-path"),
        pytest.param("postgres://u@127.0.0.1/db", 2, "postgres://u@127.0.0.1/db", id="postgres-scheme"),
        pytest.param("mysql://u@127.0.0.1/db", 2, "mysql://u@127.0.0.1/db", id="no-driver"),
        pytest.param("sqlite://", 2, "sqlite://", id="in-memory"),
        pytest.param("sqlite:///", 2, "sqlite:///", id="empty-path"),
    ],
)
def test_mistyped_url(synced: Repo, url: str, code: int, names: str) -> None:
    _fails(synced, url, "sync", code=code, names=names)


def test_unreachable_server_names_host_and_port_and_hides_password(synced: Repo) -> None:
    url = "postgresql+psycopg://story:s3cret-pw@127.0.0.1:1/stories"
    line = _fails(synced, url, "sync", code=3, names="127.0.0.1:1")
    assert "s3cret-pw" not in line


def test_url_from_environment_is_named_too(synced: Repo, tmp_path: Path) -> None:
    """The same one-line error when the bad URL comes from STORYSYNC_DATABASE_URL."""
    target = tmp_path / "dir.db"
    target.mkdir()
    done = run(storysync_argv(synced.path, "sync"), env={"STORYSYNC_DATABASE_URL": f"sqlite:///{target}"})
    assert done.returncode == 3
    assert str(target) in one_line_error(done.stderr)
    assert os.listdir(target) == []
