"""A sync that fails after it started leaves its audit row (SPEC §4: ``sync_runs.outcome``
``failed``), on SQLite and on a real PostgreSQL server.

The faults are real: a blob deleted from ``.git/objects`` (git cannot read the new
story), and a trigger that makes the database refuse the run's write (as a constraint
or a quota would).  The run exits 3 with one line; its own transaction is rolled back
(no story row, no history, ``last_synced_commit`` where it was), and the failure is
recorded in a transaction of its own.  When the database itself cannot be written,
nothing can be recorded (``tests/test_faults_db.py`` checks that such a file is left
byte for byte as it was).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from storysync.db.database import WRITE_LOCK_KEY
from tests.conftest import Repo
from tests.export_helpers import Handles, handles
from tests.faults import one_line_error, run, storysync_argv

pytestmark = pytest.mark.usefixtures("any_db")

NEW = "backlog/web/WEB-9-new.md"


@pytest.fixture
def synced(backlog_repo: Repo) -> Repo:
    """The backlog repository synced, then a commit adding WEB-9 that is not synced yet."""
    assert backlog_repo.run("sync") == 0
    backlog_repo.write(NEW, "---\nid: WEB-9\ntitle: New\n---\nA new story.\n")
    backlog_repo.commit("WEB-9")
    return backlog_repo


def _runs(h: Handles) -> list[dict[str, Any]]:
    runs = h.rows("sync_runs", "1=1 ORDER BY id")
    for r in runs:
        r["errors"] = json.loads(r["errors"]) if isinstance(r["errors"], str) else r["errors"]
    return runs


def _state(h: Handles) -> tuple[int, int, int, object]:
    last = h.rows("sync_state", "key = 'last_synced_commit'")[0]["value"]
    return h.count("stories"), h.count("status_history"), h.count("changes"), last


def _sync_fails(repo: Repo, names: str) -> dict[str, Any]:
    """Run the sync as a hook does; it exits 3 with one line naming ``names``, writes no
    story, and leaves exactly one new audit row: the failed run's.  Returns that row."""
    with handles(repo) as h:
        before, runs = _state(h), len(_runs(h))
    done = run(storysync_argv(repo.path, "sync", "--trigger", "hook"))
    assert done.returncode == 3, done.stderr
    line = one_line_error(done.stderr)
    assert names in line, line
    with handles(repo) as h:
        assert _state(h) == before  # the run's own transaction was rolled back
        (failed,) = _runs(h)[runs:]
    assert (failed["trigger"], failed["outcome"]) == ("hook", "failed")
    assert failed["to_commit"] == repo.git("rev-parse", "HEAD")
    assert failed["finished_at"] is not None
    (error,) = failed["errors"]
    assert names in error["message"]
    return failed


def test_a_git_object_that_cannot_be_read_is_recorded_as_a_failed_run(synced: Repo) -> None:
    blob = synced.git("rev-parse", f"HEAD:{NEW}")
    (synced.path / ".git" / "objects" / blob[:2] / blob[2:]).unlink()  # the new story's content is gone
    failed = _sync_fails(synced, blob)
    assert failed["errors"][0]["code"] == "GitError"


def test_a_write_the_database_refuses_is_recorded_as_a_failed_run(synced: Repo) -> None:
    with handles(synced) as h:
        if h.db.is_sqlite:
            h.sql("CREATE TRIGGER frozen BEFORE INSERT ON stories BEGIN SELECT RAISE(ABORT, 'stories are frozen'); END")
        else:
            h.sql(
                "CREATE FUNCTION frozen() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'stories are frozen'; END $$"
            )
            h.sql("CREATE TRIGGER frozen BEFORE INSERT ON stories FOR EACH ROW EXECUTE FUNCTION frozen()")
    failed = _sync_fails(synced, "stories are frozen")
    assert failed["errors"][0]["code"] == "DatabaseError"
    with handles(synced) as h:
        h.sql("DROP TRIGGER frozen" if h.db.is_sqlite else "DROP TRIGGER frozen ON stories")
    assert synced.run("sync") == 0  # the next run, once the database takes writes again, catches up
    with handles(synced) as h:
        assert h.row("WEB-9")["title"] == "New"
        assert [r["outcome"] for r in _runs(h)] == ["ok", "failed", "ok"]


def test_runs_shows_a_failed_runs_error(synced: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    blob = synced.git("rev-parse", f"HEAD:{NEW}")
    (synced.path / ".git" / "objects" / blob[:2] / blob[2:]).unlink()
    assert synced.run("sync") == 3
    capsys.readouterr()
    assert synced.run("runs") == 0
    out = capsys.readouterr().out.splitlines()
    assert " failed: " in out[0]
    assert out[1].startswith(f"    git cat-file: cannot read blob {blob}")


LOCK_WAIT_S = 2.0


@contextmanager
def _write_lock_held(repo: Repo, url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Another writer holds the database's write lock; storysync waits ``LOCK_WAIT_S`` for it."""
    if url.startswith("sqlite"):
        monkeypatch.setenv("STORYSYNC_BUSY_TIMEOUT_MS", str(int(LOCK_WAIT_S * 1000)))
        holder = sqlite3.connect(repo.db_path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            holder.rollback()
            holder.close()
        return
    import psycopg

    monkeypatch.setenv("STORYSYNC_LOCK_TIMEOUT", str(LOCK_WAIT_S))
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", (WRITE_LOCK_KEY,))
        yield


def test_a_run_that_waited_out_the_write_lock_does_not_wait_again_to_record_it(
    synced: Repo, any_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database stayed locked: the run fails once (exit 3) and records nothing, since
    its audit row could only be written after a second wait for the same lock."""
    with handles(synced) as h:
        runs = _runs(h)
    with _write_lock_held(synced, any_db, monkeypatch):
        start = time.monotonic()
        assert synced.run("sync") == 3
        took = time.monotonic() - start
    assert LOCK_WAIT_S <= took < 1.9 * LOCK_WAIT_S
    with handles(synced) as h:
        assert _runs(h) == runs
