"""``list``, ``ready``, ``blocked``, ``deps`` and ``board`` on a repository with a real history,
on SQLite and PostgreSQL (tests/flow_history.py: moves across commits, days and authors)."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from storysync.views.queries import StoryRow, sort_stories
from tests import flow_history
from tests.conftest import Repo, run_cli_subprocess

LIVE = ["API-1", "API-2", "API-3", "API-4", "WEB-1", "WEB-2", "WEB-3", "WEB-4", "WEB-5"]


@pytest.fixture
def history_repo(repo: Repo, any_db: str) -> Repo:
    """The fixed history, synced into SQLite and into PostgreSQL."""
    flow_history.build(repo)
    return repo


def out(repo: Repo, capsys: pytest.CaptureFixture[str], *args: str, code: int = 0) -> str:
    capsys.readouterr()
    assert repo.run(*args) == code
    return capsys.readouterr().out


def ids(repo: Repo, capsys: pytest.CaptureFixture[str], *args: str) -> list[str]:
    return out(repo, capsys, *args, "--format", "ids").split()


def test_list_filters(history_repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    repo = history_repo
    assert ids(repo, capsys, "list") == LIVE
    assert ids(repo, capsys, "list", "--status", "active") == ["WEB-2"]
    assert ids(repo, capsys, "list", "--status", "backlog", "--status", "refinements") == ["API-4", "WEB-4", "WEB-5"]
    assert ids(repo, capsys, "list", "--backlog", "api") == ["API-1", "API-2", "API-3", "API-4"]
    assert ids(repo, capsys, "list", "--backlog", "api", "--status", "backlog") == ["API-4"]
    assert ids(repo, capsys, "list", "--assignee", "bea") == ["WEB-1", "WEB-2"]
    assert ids(repo, capsys, "list", "--tag", "ui") == ["WEB-1", "WEB-2"]
    assert ids(repo, capsys, "list", "--tag", "ui", "--tag", "auth") == ["WEB-1"]  # every tag
    assert ids(repo, capsys, "list", "--tag", "nope") == []
    assert ids(repo, capsys, "list", "--priority", "critical", "--priority", "high") == ["WEB-1", "WEB-4"]
    assert ids(repo, capsys, "list", "--epic", "accounts") == ["API-1", "WEB-1"]
    assert ids(repo, capsys, "list", "--search", "SEARCH") == ["WEB-3"]  # the title, any case
    assert ids(repo, capsys, "list", "--search", "tokens") == ["API-1"]  # the body
    assert ids(repo, capsys, "list", "--search", "ZOË") == ["API-1"]  # beyond ASCII, any case
    assert ids(repo, capsys, "list", "--search", "%") == ["WEB-5"]  # LIKE's wildcards are literal text
    assert ids(repo, capsys, "list", "--search", "_") == []
    assert ids(repo, capsys, "list", "--deleted") == ["OLD-1"]
    assert ids(repo, capsys, "list", "--deleted", "--backlog", "web") == []


def test_list_sorts(history_repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    repo = history_repo
    assert ids(repo, capsys, "list", "--sort", "priority") == [
        *["WEB-4", "WEB-1", "WEB-2", "API-2"],  # critical, high, medium, low
        *["API-1", "API-3", "API-4", "WEB-3", "WEB-5"],  # none: last, by id
    ]
    assert ids(repo, capsys, "list", "--sort", "status") == [
        *["WEB-5", "API-4", "WEB-4", "WEB-2"],  # refinements, backlog, active: in stage order
        *["API-1", "API-2", "API-3", "WEB-1", "WEB-3"],
    ]
    assert ids(repo, capsys, "list", "--sort", "status", "--reverse")[:2] == ["API-1", "API-2"]
    assert ids(repo, capsys, "list", "--reverse") == LIVE[::-1]
    assert ids(repo, capsys, "list", "--sort", "assignee") == [
        *["WEB-1", "WEB-2", "API-2", "API-4"],
        *["API-1", "API-3", "WEB-3", "WEB-4", "WEB-5"],
    ]


def test_list_formats(history_repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    repo = history_repo
    found = json.loads(out(repo, capsys, "list", "--backlog", "web", "--format", "json"))
    assert [s["id"] for s in found] == ["WEB-1", "WEB-2", "WEB-3", "WEB-4", "WEB-5"]
    first = found[0]
    assert {k: first[k] for k in ("id", "title", "status", "backlog", "priority", "assignee", "tags", "epic")} == {
        "id": "WEB-1",
        "title": "Login page",
        "status": "completed",
        "backlog": "web",
        "priority": "high",
        "assignee": "bea",
        "tags": ["ui", "auth"],
        "epic": "accounts",
    }
    assert first["path"] == "completed/web/WEB-1-login.md"
    assert first["updated_at"].endswith("+00:00")
    rows = list(csv.DictReader(io.StringIO(out(repo, capsys, "list", "--tag", "ui", "--format", "csv"))))
    assert [(r["id"], r["status"], r["backlog"], r["tags"]) for r in rows] == [
        ("WEB-1", "completed", "web", '["ui", "auth"]'),
        ("WEB-2", "active", "web", '["ui"]'),
    ]
    table = out(repo, capsys, "list", "--backlog", "api").splitlines()
    assert table[0].split() == ["id", "status", "backlog", "priority", "points", "assignee", "title"]
    assert table[1].split() == ["API-1", "completed", "api", "-", "-", "-", "Auth", "API"]
    assert len(table) == 5
    assert [line.index("Rate limits") for line in table if "Rate" in line] == [table[0].index("title")]


def test_ready_and_blocked(history_repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    repo = history_repo
    assert ids(repo, capsys, "ready") == ["API-4", "WEB-2"]  # their dependency API-1 is completed
    assert ids(repo, capsys, "ready", "--backlog", "web") == ["WEB-2"]
    assert ids(repo, capsys, "blocked") == ["WEB-4", "WEB-5"]
    found = json.loads(out(repo, capsys, "blocked", "--format", "json"))
    assert [(b["id"], [n["id"] for n in b["blocked_by"]], [n["id"] for n in b["all_blockers"]]) for b in found] == [
        ("WEB-4", ["WEB-2"], ["WEB-2"]),
        ("WEB-5", ["WEB-4"], ["WEB-2", "WEB-4"]),  # WEB-4 waits on WEB-2 in turn
    ]
    assert found[1]["blocked_by"][0] == {"id": "WEB-4", "title": "Profile page", "status": "backlog", "backlog": "web"}
    table = out(repo, capsys, "blocked").splitlines()
    assert table[0].endswith("blocked by  via")
    assert table[2].split()[-2:] == ["WEB-4", "WEB-2"]
    # completing WEB-2 in git unblocks WEB-4 (WEB-5 still waits on it)
    assert repo.run("move", "WEB-2", "completed", "--commit") == 0
    assert repo.run("-q", "sync") == 0
    assert ids(repo, capsys, "ready") == ["API-4", "WEB-4"]
    assert ids(repo, capsys, "blocked") == ["WEB-5"]


def test_deps_both_ways(history_repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    repo = history_repo
    tree = json.loads(out(repo, capsys, "deps", "WEB-2", "--format", "json"))
    assert tree["id"] == "WEB-2"
    assert tree["depends_on"] == [
        {"id": "API-1", "title": "Auth API", "status": "completed", "backlog": "api", "depends_on": []}
    ]
    assert [(n["id"], [m["id"] for m in n["needed_by"]]) for n in tree["needed_by"]] == [("WEB-4", ["WEB-5"])]
    text = out(repo, capsys, "deps", "WEB-4")
    assert text == (
        "WEB-4 (backlog) Profile page\n"
        "depends on:\n"
        "  WEB-2 (active) Signup\n"
        "    API-1 (completed) Auth API\n"
        "needed by:\n"
        "  WEB-5 (refinements) Avatars at 100% size\n"
    )
    capsys.readouterr()
    assert repo.run("deps", "NOPE-1") == 2
    assert "no live story with id 'NOPE-1'" in capsys.readouterr().err


def test_board(history_repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    repo = history_repo
    boards = json.loads(out(repo, capsys, "board", "--format", "json"))
    assert [b["backlog"] for b in boards] == ["api", "web"]
    web = {c["status"]: [s["id"] for s in c["stories"]] for c in boards[1]["columns"]}
    assert web == {
        "refinements": ["WEB-5"],
        "backlog": ["WEB-4"],
        "active": ["WEB-2"],
        "completed": ["WEB-1", "WEB-3"],  # most urgent first
    }
    assert [c["stage"] for c in boards[1]["columns"]] == ["refinements", "backlog", "active", "completed"]
    text = out(repo, capsys, "board", "--backlog", "web", "--limit", "1")
    lines = text.splitlines()
    assert lines[0] == "web (5 stories)"
    assert lines[1].split() == ["refinements", "(1)", "backlog", "(1)", "active", "(1)", "completed", "(2)"]
    assert "WEB-4 Profile page (critical)" in lines[2]
    assert lines[3].strip() == "... and 1 more"


def test_piped_output_is_plain_and_full_width(history_repo: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    """No line of a piped command is wrapped or cut at 80 columns, tables or messages."""
    monkeypatch.delenv("COLUMNS", raising=False)
    repo = history_repo
    long_title = "A title long enough to pass eighty columns by itself, and then some more words to be sure"
    assert repo.run("set", "WEB-4", f"title={long_title}") == 0
    for args in (["list"], ["show", "WEB-4"], ["board"], ["blocked"], ["deps", "WEB-5"]):
        done = run_cli_subprocess(repo, *args)
        assert done.returncode == 0, done.stderr
        assert "\x1b[" not in done.stdout
        assert any(long_title in line for line in done.stdout.splitlines()), (args, done.stdout)
    done = run_cli_subprocess(repo, "new", "--backlog", "web", "--title", long_title)
    assert done.returncode == 0
    assert done.stdout == "WEB-6\n"
    assert len(done.stderr.splitlines()) == 1  # the long message is one line


def test_a_terminal_gets_rich_tables(history_repo: Repo) -> None:
    done = run_cli_subprocess(
        history_repo, "list", "--status", "active", env={"TTY_COMPATIBLE": "1", "COLUMNS": "100", "NO_COLOR": "1"}
    )
    assert done.returncode == 0
    shown = re.sub(r"\x1b\[[0-9;]*m", "", done.stdout)  # bold headers
    assert shown.splitlines()[1].split() == [
        "┃",
        "id",
        "┃",
        "status",
        "┃",
        "backlog",
        "┃",
        "priority",
        "┃",
        "points",
        "┃",
        "assignee",
        "┃",
        "title",
        "┃",
    ]
    assert "│ WEB-2 │" in shown


def test_list_on_sqlite_reads_without_sqlalchemy_nor_rich(repo: Repo) -> None:
    history_repo = repo
    flow_history.build(repo)
    script = (
        "import sys\nfrom storysync.cli.main import main\n"
        f"code = main(['--repo', {str(history_repo.path)!r}, 'list', '--format', 'ids'])\n"
        "assert 'sqlalchemy' not in sys.modules and 'rich' not in sys.modules, 'imported'\n"
        "sys.exit(code)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.split() == LIVE


def test_ids_sort_in_number_order() -> None:
    rows = [
        StoryRow(i, "", "backlog", "web", None, None, None, None, None, None, None, None)
        for i in ("WEB-10", "WEB-2", "AB-1", "WEB-1")
    ]
    assert [r.id for r in sort_stories(rows)] == ["AB-1", "WEB-1", "WEB-2", "WEB-10"]


def test_status_names_its_backlog_column_apart_from_the_backlog_status(
    history_repo: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    header = out(history_repo, capsys, "status").splitlines()[2]
    cells = [c.strip() for c in header.strip("┃").split("┃")]
    assert cells == ["backlog id", "refinements", "backlog", "active", "completed", "total"]


def test_the_three_ways_to_the_table_agree(history_repo: Repo, any_db: str) -> None:
    """read_stories, read_cells and (on SQLite) read_table_text give the same table."""
    from storysync.cli.listing import cells, plain_columns
    from storysync.db.database import Database
    from storysync.db.queries import ConnectionReader
    from storysync.views import queries

    db = Database(any_db)
    try:
        with db.read() as conn:
            reader, dialect = ConnectionReader(conn), db.engine.dialect.name
            for flt in (queries.Filter(), queries.Filter(backlogs=("web",)), queries.Filter(search="page")):
                rows = queries.read_stories(reader, dialect, flt)
                table = queries.read_cells(reader, dialect, flt)
                assert [tuple(t) for t in table] == [tuple(cells(r)) for r in rows]
                parts = queries.read_table_text(reader, dialect, flt)
                if dialect == "sqlite":
                    assert parts is not None
                    assert b"".join(parts).decode() == plain_columns(queries.TABLE, table)
                else:
                    assert parts is None
            assert queries.read_table_text(reader, dialect, queries.Filter(search="zoë")) is None  # Python's search
    finally:
        db.dispose()


# What another writer (the story API, a SQL client) may leave in the stories' cells: one
# UPDATE of WEB-2's row (or of every row) per case, and whether SQLite can pad it exactly;
# where it cannot, the table is left to Python wherever WEB-2 is listed.
LONG_TITLE = "A title that goes on " * 25
TABLE_CASES: dict[str, tuple[str, str, bool]] = {
    "as synced": ("title = title", "WEB-2", True),
    "NULL priority, points and assignee": ("priority = NULL, points = NULL, assignee = NULL", "WEB-2", True),
    "every cell empty or NULL": ("title = '', assignee = '', priority = NULL, points = NULL", "WEB-2", True),
    "every title empty": ("title = ''", "every", True),
    "a title ending in spaces": ("title = 'Signup   '", "WEB-2", True),
    "a title of spaces": ("title = '   '", "WEB-2", True),
    "long cells": (f"title = '{LONG_TITLE}', assignee = '{'x' * 70}', points = 1234567890", "WEB-2", True),
    "every story alike (sorting ties)": ("title = 'Same', assignee = 'a', priority = 'low', points = 1", "every", True),
    "a tab": ("title = 'Sign' || char(9) || 'up'", "WEB-2", False),
    "a newline": ("title = 'Sign' || char(10) || 'up'", "WEB-2", False),
    "a carriage return": ("assignee = 'bea' || char(13)", "WEB-2", False),
    "an escape sequence": ("title = char(27) || '[31mred'", "WEB-2", False),
    "a DEL": ("title = 'Sign' || char(127)", "WEB-2", False),
    "wide characters": ("title = 'Débit 漢字 limits'", "WEB-2", False),
    "an accent": ("assignee = 'zoë'", "WEB-2", False),
}


@pytest.mark.parametrize("case", list(TABLE_CASES))
def test_sqlite_pads_the_table_as_python_does(repo: Repo, tmp_path: Path, case: str) -> None:
    """The table SQLite formats (``list`` piped, sorted by id) is byte for byte the one
    Python pads from the same cells, or is left to Python."""
    from storysync.cli.listing import plain_columns
    from storysync.db.sqlite_reader import SqliteReader
    from storysync.views import queries

    flow_history.build(repo, synced=False)
    for story_id in ("WEB-10", "WEB-100", "WEB-9", "A-12", "A-3", "AB-1", "A1-2", "API-10"):  # number order
        repo.story("backlog", "web", story_id, title=f"Story {story_id}", priority="low", points=3)
    repo.commit("more stories")
    assert repo.run("-q", "sync", "--full") == 0
    change, which, exact = TABLE_CASES[case]
    db = shutil.copy(repo.db_path, tmp_path / "case.db")  # the synced database, changed by another writer
    conn = sqlite3.connect(db)
    try:
        with conn:
            conn.execute(f"UPDATE stories SET {change} WHERE id = :id OR :id = 'every'", {"id": which})  # noqa: S608
        reader = SqliteReader(conn)
        assert [row[0] for row in queries.read_cells(reader, "sqlite", queries.Filter())] == [
            *("A-3", "A-12", "A1-2", "AB-1", "API-1", "API-2", "API-3", "API-4", "API-10"),
            *("WEB-1", "WEB-2", "WEB-3", "WEB-4", "WEB-5", "WEB-9", "WEB-10", "WEB-100"),
        ]
        for flt in (
            queries.Filter(),
            queries.Filter(backlogs=("web",)),
            queries.Filter(statuses=("backlog",)),  # without WEB-2
            queries.Filter(statuses=("nothing",)),  # no story: the header alone
        ):
            cells = queries.read_cells(reader, "sqlite", flt)
            parts = queries.read_table_text(reader, "sqlite", flt)
            if exact or "WEB-2" not in (row[0] for row in cells):
                assert parts is not None, flt
                assert b"".join(parts).decode() == plain_columns(queries.TABLE, cells), flt
            else:
                assert parts is None, flt
    finally:
        conn.close()


def test_the_piped_table_is_the_same_whatever_stdout_encodes(
    repo: Repo, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite's table goes to stdout's bytes as it is only where stdout would write the same
    bytes; a text-only stdout, or one encoding UTF-16, gets it as text."""
    flow_history.build(repo)
    table = out(repo, capsys, "list")  # the bytes as they are
    assert table.splitlines()[0].split() == ["id", "status", "backlog", "priority", "points", "assignee", "title"]
    assert len(table.splitlines()) == 1 + len(LIVE)
    text_only = io.StringIO()
    monkeypatch.setattr(sys, "stdout", text_only)
    assert repo.run("list") == 0
    utf16_bytes = io.BytesIO()
    utf16 = io.TextIOWrapper(utf16_bytes, encoding="utf-16")
    monkeypatch.setattr(sys, "stdout", utf16)
    assert repo.run("list") == 0
    utf16.flush()
    monkeypatch.undo()
    assert text_only.getvalue() == table
    assert utf16_bytes.getvalue().decode("utf-16") == table


def test_a_title_beyond_ascii_is_padded_by_its_width(history_repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    repo = history_repo
    assert repo.run("set", "API-4", "title=Débit 漢字 limits") == 0
    assert repo.run("set", "API-2", "assignee=zoë 漢") == 0
    lines = out(repo, capsys, "list", "--backlog", "api").splitlines()
    assert [line.index(" Auth API") for line in lines[1:2]] == [lines[0].index(" title")]
    row = next(line for line in lines if line.startswith("API-2"))
    assert row.index("Health check") == lines[0].index("title") - 1  # 漢 takes two columns


def test_the_live_list_reads_an_index_not_the_rows(repo: Repo) -> None:
    """On SQLite a list never reads a story's body: one covering index holds what it shows."""
    import sqlite3

    from storysync.views import queries

    flow_history.build(repo)
    conn = sqlite3.connect(repo.db_path)
    try:
        for flt in (queries.Filter(), queries.Filter(tags=("ui",)), queries.Filter(statuses=("active",))):
            sql, params, _ = queries.story_query(flt, "sqlite")
            plan = " ".join(str(row[-1]) for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))
            assert "COVERING INDEX ix_stories_live_list" in plan, plan
    finally:
        conn.close()


def test_python_callers_ask_the_same_views(history_repo: Repo, any_db: str) -> None:
    from storysync.db.database import Database
    from storysync.views import graph, queries

    db = Database(any_db)
    try:
        assert [r.id for r in queries.list_stories(db, queries.Filter(tags=("ui",)))] == ["WEB-1", "WEB-2"]
        assert [r.id for r in queries.list_stories(db, sort="priority")][:2] == ["WEB-4", "WEB-1"]
        ready = queries.on(db, lambda r, d: graph.read_ready(r, d, queries.Filter(), "completed"))
        assert [r.id for r in ready] == ["API-4", "WEB-2"]
    finally:
        db.dispose()
