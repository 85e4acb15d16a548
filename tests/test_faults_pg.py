"""PostgreSQL stopped in the middle of a run, on a real server (tests/pg.py).

The sync side (a crash mid-sync leaves nothing partial, the next run catches up,
also at many moments of a large write) is in tests/test_postgres.py.  Here: the
server crashes (``pg_ctl stop -m immediate``) while an export is writing files,
so the export cannot record what it wrote.  It must exit 3 with one line, put
every file back as it was (or, if it won the race, have finished completely),
leave the database as it was, and the next export, once the server is back,
writes exactly the new files.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.conftest import Repo
from tests.faults import ChangedFiles, db_side_changes, generate, one_line_error, run, storysync_argv, tree_files
from tests.pg import PgServer, PgUnavailable

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def crashable_pg() -> Iterator[PgServer]:
    """A server of this module's own, since the test crashes it."""
    try:
        server = PgServer.start_new()
    except PgUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI: {exc}", pytrace=False)
        pytest.skip(f"PostgreSQL not available: {exc}")
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def crashable_url(crashable_pg: PgServer) -> Iterator[str]:
    if not crashable_pg.is_running():
        crashable_pg.start()
    name = crashable_pg.create_database()
    yield crashable_pg.url(name)
    if not crashable_pg.is_running():
        crashable_pg.start()
    crashable_pg.drop_database(name)


def _pending(url: str) -> int:
    from sqlalchemy import func, select

    from storysync.db import tables as m
    from storysync.db.database import Database

    db = Database(url)
    try:
        with db.read() as conn:
            s = m.stories.c
            query = select(func.count()).select_from(m.stories).where(s.revision > s.synced_revision)
            return int(conn.execute(query).scalar_one())
    finally:
        db.dispose()


def test_server_crash_while_export_writes_files(
    crashable_pg: PgServer, crashable_url: str, repo: Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STORYSYNC_DATABASE_URL", crashable_url)  # the subprocesses inherit these
    monkeypatch.setenv("STORYSYNC_DB_CONNECT_ATTEMPTS", "1")
    generate(repo.path, 400, seed=91)
    repo.commit("400 stories")
    assert run(storysync_argv(repo.path, "sync")).returncode == 0
    db_side_changes(repo.path, crashable_url, fraction=0.5, seed=92)
    pending = _pending(crashable_url)
    old_files = tree_files(repo.path)

    started = ChangedFiles(repo.path, 1)
    export = subprocess.Popen(
        storysync_argv(repo.path, "export"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        while export.poll() is None and not started():
            time.sleep(0.002)
        crashable_pg.stop("immediate")  # a crash: open transactions lost, no connection possible
        _, err = export.communicate(timeout=120)
    finally:
        if export.poll() is None:
            export.send_signal(signal.SIGKILL)
    crashable_pg.start()
    print(f"\nexport after the crash: exit {export.returncode}: {err.strip()}")
    if export.returncode == 0:  # it recorded before the crash: then it is complete
        assert _pending(crashable_url) == 0
    else:
        assert export.returncode == 3, err
        line = one_line_error(err)
        assert f"127.0.0.1:{crashable_pg.port}" in line
        assert "restored" in line
        assert tree_files(repo.path) == old_files  # every written file was put back
        assert _pending(crashable_url) == pending  # and nothing was recorded
    done = run(storysync_argv(repo.path, "export"))
    assert done.returncode == 0, done.stderr
    assert _pending(crashable_url) == 0
    again = tree_files(repo.path)
    assert again != old_files
    assert run(storysync_argv(repo.path, "sync")).returncode == 0  # the exported files are valid stories
    assert run(storysync_argv(repo.path, "export")).returncode == 0
    assert tree_files(repo.path) == again  # and an export right after writes nothing
