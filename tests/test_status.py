"""``storysync status``: one answer whichever way the database is read.

On a current SQLite file it reads with the standard library's sqlite3 (read-only,
no SQLAlchemy import); anywhere else, or when anything is unusual about the file,
through SQLAlchemy, creating or upgrading the database and reporting errors as
every command does.  Real repositories, real SQLite files, a real PostgreSQL server.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console
from rich.table import Table
from sqlalchemy.engine import make_url

from storysync.cli.report import console_width, plain_stdout, plain_table
from storysync.db import queries
from storysync.db import sqlite_reader as sqliteread
from storysync.db.database import HEAD_REVISION, Database
from tests.conftest import Repo, run_cli_subprocess, story_text
from tests.faults import run, storysync_argv

NO_OVERRIDE = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner", "--"]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _status(repo: Repo, url: str, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    capsys.readouterr()
    assert repo.run("--db", url, "status", *args) == 0
    return capsys.readouterr().out


def _busy_databases(repo: Repo, *urls: str) -> None:
    """The same history into each database: synced, a story deleted, one changed DB-side
    (waiting for export), one open conflict, and HEAD one commit ahead."""

    def each(*args: str, code: int = 0) -> None:
        for url in urls:
            assert repo.run("--db", url, "-q", *args) == code, (url, args)

    each("sync")
    repo.story("backlog", "web", "WEB-3", "three", title="Three", depends_on=["WEB-1"])
    repo.story("active", "ops", "OPS-1", "deploy", title="Deploy")
    (repo.path / "completed" / "api" / "API-2-health.md").unlink()
    repo.commit("one more backlog, one story gone")
    each("sync")
    each("set", "WEB-2", "title=Signup, in the API")
    repo.write("active/web/WEB-2-signup.md", story_text("WEB-2", title="Signup, in the file", points=3))
    each("export", code=1)  # the file was edited: a conflict, kept open
    each("set", "WEB-1", "points=8")
    repo.story("backlog", "web", "WEB-4", "four", title="Four")
    repo.commit("behind by one", all_files=False)


@pytest.mark.postgres
def test_the_same_status_on_sqlite_and_postgresql(
    backlog_repo: Repo, pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    sqlite_url = backlog_repo.db_url
    _busy_databases(backlog_repo, sqlite_url, pg_url)
    shown = {}
    for fmt in ("text", "json"):
        shown[fmt] = _status(backlog_repo, sqlite_url, capsys, "--format", fmt)
        on_postgres = _status(backlog_repo, pg_url, capsys, "--format", fmt)
        assert on_postgres.replace(Database(pg_url).display, sqlite_url) == shown[fmt]
    data = json.loads(shown["json"])
    assert (data["stories"], data["deleted"], data["pending_export"], data["open_conflicts"]) == (5, 1, 1, 1)
    assert data["commits_behind"] == 1
    assert {"backlog": "ops", "status": "active", "count": 1} in data["by_backlog"]
    assert shown["text"].splitlines()[-3:] == [
        f"1 commit(s) behind HEAD (last synced {data['last_synced_commit'][:12]}): run 'storysync sync'",
        "1 DB-side change(s) waiting for 'storysync export'",
        "1 open conflict(s): see 'storysync conflicts'",
    ]


def test_sqlite3_and_sqlalchemy_read_the_same_status(backlog_repo: Repo) -> None:
    url = backlog_repo.db_url
    _busy_databases(backlog_repo, url)
    fast = sqliteread.read(url, queries.read_status)
    db = Database(url)
    try:
        general = queries.status(db)
    finally:
        db.dispose()
    assert fast is not None
    assert fast == general
    assert (general.total, general.deleted, general.pending_export, general.open_conflicts) == (5, 1, 1, 1)
    assert general.last_synced_commit == backlog_repo.git("rev-parse", "HEAD~1")


_PROBE = """
import sys
from storysync.cli.main import main
code = main(["--repo", sys.argv[1], *sys.argv[2:]])
print(code, ",".join(sorted({m.split(".")[0] for m in sys.modules} & {"sqlalchemy", "alembic", "git", "rich"})))
"""


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_piped_status_on_sqlite_imports_no_sqlalchemy_nor_rich(backlog_repo: Repo, fmt: str) -> None:
    """As a script or hook runs it, piped: no SQLAlchemy, no Alembic, no GitPython, no rich."""
    assert backlog_repo.run("-q", "sync") == 0
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, str(backlog_repo.path), "status", "--format", fmt],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.splitlines()[-1] == "0 ", done.stdout
    assert "4 stories" in done.stdout or '"stories": 4' in done.stdout


def test_a_missing_database_is_created(repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    out = _status(repo, repo.db_url, capsys)
    assert out.splitlines()[0] == f"0 stories in {repo.db_url}"
    assert out.splitlines()[-1] == "never synced: run 'storysync sync'"
    db = Database(repo.db_url)
    try:
        assert db.schema_revision() == HEAD_REVISION
    finally:
        db.dispose()


def test_an_older_schema_is_upgraded(backlog_repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    url = backlog_repo.db_url
    db = Database(url)
    try:
        db.upgrade("0003")
        assert sqliteread.read(url, queries.read_status) is None  # not read with sqlite3: it needs upgrading
        assert "0 stories" in _status(backlog_repo, url, capsys)
        assert db.schema_revision() == HEAD_REVISION
    finally:
        db.dispose()
    assert sqliteread.read(url, queries.read_status) is not None


def test_a_newer_schema_is_refused(backlog_repo: Repo) -> None:
    assert backlog_repo.run("-q", "sync") == 0
    conn = sqlite3.connect(backlog_repo.db_path)
    with conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    conn.close()
    before = _digest(backlog_repo.db_path)
    done = run_cli_subprocess(backlog_repo, "status")
    assert done.returncode == 3
    assert done.stderr == (
        f"storysync: error: {backlog_repo.db_url}: schema version 9999 is newer than this storysync knows; "
        "upgrade storysync\n"
    )
    assert _digest(backlog_repo.db_path) == before


def test_a_writer_in_progress_does_not_hold_status_up(backlog_repo: Repo) -> None:
    """WAL: status reads the last commit while a writer holds its transaction open."""
    assert backlog_repo.run("-q", "sync") == 0
    writer = sqlite3.connect(backlog_repo.db_path, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("UPDATE stories SET deleted_at = '2026-01-01' WHERE id = 'WEB-1'")
        started = time.monotonic()
        done = run_cli_subprocess(
            backlog_repo, "status", "--format", "json", env={"STORYSYNC_BUSY_TIMEOUT_MS": "20000"}
        )
        took = time.monotonic() - started
    finally:
        writer.close()
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["stories"] == 4
    assert took < 15


def test_a_locked_database_fails_after_the_busy_timeout(backlog_repo: Repo) -> None:
    """A rollback-journal database under an exclusive lock: exit 3, one line, as before."""
    assert backlog_repo.run("-q", "sync") == 0
    conn = sqlite3.connect(backlog_repo.db_path)
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.close()
    holder = sqlite3.connect(backlog_repo.db_path, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        holder.execute("UPDATE stories SET title = 'held' WHERE id = 'WEB-1'")
        done = run_cli_subprocess(backlog_repo, "status", env={"STORYSYNC_BUSY_TIMEOUT_MS": "300"})
    finally:
        holder.close()
    assert done.returncode == 3
    assert done.stderr == (
        f"storysync: error: {backlog_repo.db_url}: database is locked: another writer held it for 0.3s; "
        "try again later\n"
    )


def test_a_corrupt_database_is_reported_and_left_alone(backlog_repo: Repo, tmp_path: Path) -> None:
    assert backlog_repo.run("-q", "sync") == 0
    target = tmp_path / "corrupt.db"
    source, copy = sqlite3.connect(backlog_repo.db_path), sqlite3.connect(target)
    source.backup(copy)
    source.close()
    copy.close()
    data = bytearray(target.read_bytes())
    page = 4096
    for offset in range(page, len(data), page):  # every page but the schema's first
        data[offset : offset + 64] = b"\xee" * 64
    target.write_bytes(bytes(data))
    done = run(storysync_argv(backlog_repo.path, "--db", f"sqlite:///{target}", "status"))
    assert done.returncode == 3
    [line] = done.stderr.splitlines()
    assert line.startswith(f"storysync: error: sqlite:///{target}: ")
    assert "malformed" in line
    assert target.read_bytes() == bytes(data)


def test_a_read_only_database_file_is_read(backlog_repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    """chmod 444, root's override dropped: status reads it and changes nothing."""
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    assert backlog_repo.run("-q", "sync") == 0
    expected = _status(backlog_repo, backlog_repo.db_url, capsys)
    backlog_repo.db_path.chmod(0o444)
    before = _digest(backlog_repo.db_path)
    done = run([*NO_OVERRIDE, *storysync_argv(backlog_repo.path, "status")])
    assert (done.returncode, done.stdout, done.stderr) == (0, expected, "")
    assert _digest(backlog_repo.db_path) == before


def test_plain_sqlite_urls_are_their_own_display() -> None:
    """Where sqlite3 is used, the URL is shown as SQLAlchemy would show it, and names the same file."""
    accepted = []
    for char in map(chr, range(32, 127)):
        url = f"sqlite:////tmp/a{char}b.db"
        path = sqliteread.plain_file(url)
        if path is not None:
            parsed = make_url(url)
            assert (parsed.database, parsed.render_as_string(hide_password=True)) == (path, url)
            accepted.append(char)
    assert "".join(accepted) == " +-./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz~"
    for url in ("sqlite:///rel/x.db", "sqlite+pysqlite:////abs/x.db"):
        assert sqliteread.plain_file(url) == make_url(url).database
    for url in ("sqlite://", "sqlite:///", "sqlite:///:memory:", "sqlite:////a.db?mode=ro", "postgresql://h/db"):
        assert sqliteread.plain_file(url) is None
    assert sqliteread.plain_file("sqlite:////caf\u00e9.db") is None  # SQLAlchemy shows it quoted


# --------------------------------------------------------------------------- the table without rich

_PLAIN_NAME = st.from_regex(r"[a-zA-Z0-9]([a-zA-Z0-9 ._/-]{0,12}[a-zA-Z0-9])?", fullmatch=True)
_ANY_NAME = st.one_of(_PLAIN_NAME, st.text(alphabet="abcXYZ019-_ .:[]/\\é漢\t", min_size=1, max_size=14))


def _rich_table(title: str, header: list[str], rows: list[list[str]], width: int) -> str:
    out = io.StringIO()
    console = Console(file=out, highlight=False, soft_wrap=True, width=width)
    table = Table(title=title)
    table.add_column(header[0])
    for name in header[1:]:
        table.add_column(name, justify="right")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    return out.getvalue()


@settings(max_examples=300, deadline=None)
@given(data=st.data(), odd=st.booleans(), width=st.integers(10, 140))
def test_the_plain_table_is_what_rich_prints(data: st.DataObject, odd: bool, width: int) -> None:
    """Whenever ``plain_table`` answers, it answers what rich prints; otherwise rich is used."""
    name = _ANY_NAME if odd else _PLAIN_NAME
    title = f"{data.draw(st.integers(0, 10**6))} stories in sqlite:///{data.draw(name)}"
    header = ["backlog", *data.draw(st.lists(name, min_size=1, max_size=5, unique=True)), "total"]
    count = st.integers(0, 10**6).map(str)
    rows = [
        [b, *data.draw(st.lists(count, min_size=len(header) - 1, max_size=len(header) - 1))]
        for b in data.draw(st.lists(name, max_size=6, unique=True))
    ]
    plain = plain_table(title, header, rows, width)
    if plain is not None:
        assert plain == _rich_table(title, header, rows, width)


def test_plain_table_answers_for_ordinary_names() -> None:
    header = ["backlog", "refinements", "backlog", "active", "completed", "total"]
    rows = [[f"team-{i}", "1", "22", "333", "4444", "4800"] for i in range(500)]
    title = "2400000 stories in sqlite:////home/ci/my stories/.storysync/storysync.db"
    plain = plain_table(title, header, rows, 80)
    assert plain is not None
    assert plain == _rich_table(title, header, rows, 80)
    assert plain_table(title, header, [], 80) == _rich_table(title, header, [], 80)
    assert plain_table(title, header, rows, 40) is None  # rich would squeeze the columns
    assert plain_table(title, header, [["[b]x", "1", "1", "1", "1", "4"]], 80) is None  # rich markup
    assert plain_table(title, header, [["x:smile:", "1", "1", "1", "1", "4"]], 80) is None  # an emoji code


def test_plain_output_only_where_rich_would_not_see_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TTY_COMPATIBLE", "FORCE_COLOR", "COLUMNS"):
        monkeypatch.delenv(name, raising=False)
    assert plain_stdout()  # pytest captures stdout: not a terminal
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    assert not plain_stdout()
    monkeypatch.setenv("TTY_COMPATIBLE", "0")
    assert plain_stdout()
    monkeypatch.delenv("TTY_COMPATIBLE")
    monkeypatch.setenv("FORCE_COLOR", "1")
    assert not plain_stdout()
    monkeypatch.setenv("COLUMNS", "132")
    assert console_width() == Console().width == 132


@pytest.mark.parametrize("columns", ["80", "30"])
def test_status_prints_the_same_with_and_without_rich(backlog_repo: Repo, columns: str) -> None:
    """FORCE_COLOR='' leaves rich off a terminal but makes status hand its output to rich."""
    _busy_databases(backlog_repo, backlog_repo.db_url)
    shown = {}
    for fmt in ("text", "json"):
        plain = run_cli_subprocess(backlog_repo, "status", "--format", fmt, env={"COLUMNS": columns})
        rich = run_cli_subprocess(backlog_repo, "status", "--format", fmt, env={"COLUMNS": columns, "FORCE_COLOR": ""})
        assert (plain.returncode, plain.stderr) == (rich.returncode, rich.stderr) == (0, "")
        assert plain.stdout == rich.stdout
        shown[fmt] = plain.stdout
    assert json.loads(shown["json"])["stories"] == 5
    header = shown["text"].splitlines()[2]
    assert header.startswith("\u2503 backlog " if columns == "80" else "\u2503 b\u2026 ")  # 30: rich squeezes it


def test_status_on_a_non_utf8_pipe_prints_rich_ascii_boxes(backlog_repo: Repo) -> None:
    """A latin-1 or ASCII stdout (a Windows pipe): rich draws the table in ASCII; never a crash."""
    _busy_databases(backlog_repo, backlog_repo.db_url)
    for encoding in ("latin-1", "ascii"):
        shown = run_cli_subprocess(backlog_repo, "status", env={"PYTHONIOENCODING": encoding, "COLUMNS": "80"})
        assert (shown.returncode, shown.stderr) == (0, ""), encoding
        assert shown.stdout.isascii(), shown.stdout
        assert "| backlog" in shown.stdout, shown.stdout


def test_status_leaves_the_database_directory_as_it_found_it(backlog_repo: Repo) -> None:
    """Reading writes nothing: no -wal or -shm file is left beside the database."""
    backlog_repo.run("-q", "sync")
    state = backlog_repo.path / ".storysync"
    before = {p.name: _digest(p) for p in state.iterdir()}
    for fmt in ("text", "json"):
        assert run_cli_subprocess(backlog_repo, "status", "--format", fmt).returncode == 0
    assert {p.name: _digest(p) for p in state.iterdir()} == before
