"""PostgreSQL as the team database, against a real PostgreSQL 15 server.

The commands on both backends (``any_db``), migrations, JSONB columns and the
API's indexes, two syncs at once, connection failures and retries, a server
stopped in the middle of a sync, and SQLite's own lock timeout.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text

from storysync.db import tables as m
from storysync.db.database import HEAD_REVISION, LAST_SYNCED, RUN_LOCK_KEY, WRITE_LOCK_KEY, Database, get_state
from tests import pg
from tests.conftest import Repo, make_repo, run_cli_subprocess
from tests.pg import PgServer, free_port, start_or_skip

pytestmark = pytest.mark.timeout(120)


def db_state(url: str) -> dict[str, object]:
    """What a test needs to compare two moments of one database."""
    db = Database(url)
    try:
        with db.read() as conn:
            return {
                "stories": conn.execute(select(func.count()).select_from(m.stories)).scalar_one(),
                "backlogs": sorted(conn.execute(select(m.backlogs.c.id)).scalars()),
                "changes": conn.execute(select(func.count()).select_from(m.changes)).scalar_one(),
                "history": conn.execute(select(func.count()).select_from(m.status_history)).scalar_one(),
                "runs": list(conn.execute(select(m.sync_runs.c.outcome).order_by(m.sync_runs.c.id)).scalars()),
                "last": get_state(conn, LAST_SYNCED),
                "synced_commits": sorted(set(conn.execute(select(m.stories.c.synced_commit)).scalars())),
            }
    finally:
        db.dispose()


def many_stories(repo: Repo, count: int, backlog: str = "bulk", start: int = 1) -> None:
    for n in range(start, start + count):
        repo.story("backlog", backlog, f"BULK-{n}", f"s{n}", title=f"Bulk story {n}", tags=["a", "b"], points=n % 8)


# --- every command on both backends ---------------------------------------------------


def test_commands_work_on_both_backends(any_db: str, backlog_repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    assert backlog_repo.run("init") == 0
    assert backlog_repo.run("validate") == 0
    assert backlog_repo.run("sync") == 0
    capsys.readouterr()
    assert backlog_repo.run("status", "--format", "json") == 0
    assert '"stories": 4' in capsys.readouterr().out
    assert backlog_repo.run("show", "API-1") == 0
    assert "Auth API" in capsys.readouterr().out
    state = db_state(any_db)
    assert state["stories"] == 4
    assert state["backlogs"] == ["api", "web"]
    assert state["last"] == backlog_repo.git("rev-parse", "HEAD")


def test_db_side_changes_round_trip_on_both_backends(
    any_db: str, backlog_repo: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    assert backlog_repo.run("sync") == 0
    assert backlog_repo.run("set", "WEB-2", "status=completed", "points=5", "tags=[ui, forms]") == 0
    assert backlog_repo.run("new", "WEB-9", "--backlog", "web", "--title", "Profile page") == 0
    assert backlog_repo.run("export", "--commit", "--message", "export from the database") == 0
    moved = backlog_repo.path / "completed/web/WEB-2-signup.md"
    assert "points: 5" in moved.read_text(encoding="utf-8")
    assert not (backlog_repo.path / "active/web/WEB-2-signup.md").exists()
    assert list((backlog_repo.path / "backlog/web").glob("WEB-9-*.md"))
    assert backlog_repo.git("status", "--porcelain") == ""
    changes_before = db_state(any_db)["changes"]
    assert backlog_repo.run("sync") == 0  # the export's commit is already in the database
    assert db_state(any_db)["changes"] == changes_before
    capsys.readouterr()
    assert backlog_repo.run("history", "WEB-2", "--format", "json") == 0
    assert "completed" in capsys.readouterr().out
    assert backlog_repo.run("runs", "--format", "json") == 0
    assert backlog_repo.run("conflicts") == 0
    state = db_state(any_db)
    assert state["stories"] == 5
    assert state["last"] == backlog_repo.git("rev-parse", "HEAD")


def test_a_reader_follows_the_changes_feed_by_seq(any_db: str, backlog_repo: Repo) -> None:
    assert backlog_repo.run("sync") == 0
    db = Database(any_db)
    with db.read() as conn:
        last_seq = conn.execute(select(func.max(m.changes.c.seq))).scalar_one()
    backlog_repo.write("active/web/WEB-2-signup.md", "---\nid: WEB-2\ntitle: Signup, reworded\n---\n")
    backlog_repo.git("rm", "-q", "completed/api/API-2-health.md")
    backlog_repo.commit("edit one, delete one")
    assert backlog_repo.run("sync") == 0
    with db.read() as conn:  # what the story API runs: everything after the last seq it handled, in order
        feed = conn.execute(
            select(m.changes.c.story_id, m.changes.c.kind, m.changes.c.source, m.changes.c.run_id)
            .where(m.changes.c.seq > last_seq)
            .order_by(m.changes.c.seq)
        ).all()
    db.dispose()
    assert sorted((r.story_id, r.kind, r.source) for r in feed) == [
        ("API-2", "deleted", "file"),
        ("WEB-2", "updated", "file"),
    ]
    assert len({r.run_id for r in feed}) == 1  # one run, one batch


def test_json_values_round_trip_on_both_backends(any_db: str, repo: Repo) -> None:
    repo.story("backlog", "web", "WEB-1", "x", title="Ünïcode", tags=["auth", "ø"], estimate="2d", created="2026-01-05")
    repo.commit()
    assert repo.run("sync") == 0
    db = Database(any_db)
    with db.read() as conn:
        row = conn.execute(select(m.stories.c.tags, m.stories.c.extra, m.stories.c.title)).one()
    db.dispose()
    assert row.tags == ["auth", "ø"]
    assert row.extra["estimate"] == "2d"
    assert row.extra["created"] == "2026-01-05"
    assert row.title == "Ünïcode"


# --- schema on PostgreSQL ---------------------------------------------------------------


def test_migrations_upgrade_an_older_postgres_database(pg_url: str) -> None:
    db = Database(pg_url)
    assert db.schema_revision() is None
    db.upgrade("0001")
    assert db.schema_revision() == "0001"
    db.ensure_schema()
    assert db.schema_revision() == HEAD_REVISION
    db.dispose()


def test_json_columns_are_jsonb_on_postgres(pg_url: str) -> None:
    db = Database(pg_url)
    db.ensure_schema()
    with db.read() as conn:
        types: dict[str, str] = dict(
            conn.execute(
                text(
                    "SELECT table_name || '.' || column_name, data_type FROM information_schema.columns"
                    " WHERE table_schema = 'public' AND data_type IN ('json', 'jsonb')"
                )
            ).all()
        )
    db.dispose()
    assert set(types.values()) == {"jsonb"}  # no plain json anywhere
    assert {"stories.tags", "stories.extra", "sync_runs.errors", "conflicts.db_snapshot"} <= set(types)


API_QUERIES = {
    "ix_stories_backlog_status": "SELECT id FROM stories WHERE backlog_id = 'web' AND status = 'active'",
    "ix_dependencies_depends_on_id": "SELECT story_id FROM dependencies WHERE depends_on_id = 'API-1'",
    "pk_changes": "SELECT seq, story_id, kind FROM changes WHERE seq > 10 ORDER BY seq LIMIT 100",
}


@pytest.mark.parametrize(("index", "query"), API_QUERIES.items(), ids=list(API_QUERIES))
def test_the_apis_queries_can_use_an_index(pg_url: str, index: str, query: str) -> None:
    db = Database(pg_url)
    db.ensure_schema()
    with db.read() as conn:
        conn.execute(text("SET LOCAL enable_seqscan = off"))  # an empty table: make the planner show its choice
        plan = "\n".join(conn.execute(text(f"EXPLAIN {query}")).scalars())
    db.dispose()
    assert index in plan, plan


# --- one writer at a time ------------------------------------------------------------------


def test_two_concurrent_syncs_lose_no_update(pg_url: str, tmp_path: Path) -> None:
    origin = make_repo(tmp_path / "origin")
    many_stories(origin, 120)
    origin.story("active", "web", "WEB-1", "login", title="Login", depends_on=["BULK-1"])
    head = origin.commit("stories")
    clones = []
    for name in ("ci-job-a", "ci-job-b"):  # two CI jobs: two checkouts, one database
        subprocess.run(["git", "clone", "-q", str(origin.path), str(tmp_path / name)], check=True)
        clones.append(Repo(tmp_path / name))
    env = {"STORYSYNC_DATABASE_URL": pg_url}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "storysync", "--repo", str(c.path), "sync", "--trigger", "ci"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **env},
        )
        for c in clones
    ]
    outputs = [p.communicate(timeout=90) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    state = db_state(pg_url)
    assert state["stories"] == 121
    assert state["changes"] == 121  # each story created once: the second run found nothing new
    assert state["history"] == 121
    assert state["runs"] == ["ok", "ok"]
    assert state["last"] == head
    assert state["synced_commits"] == [head]


def live_ids(url: str) -> set[str]:
    db = Database(url)
    with db.read() as conn:
        ids = set(conn.execute(select(m.stories.c.id).where(m.stories.c.deleted_at.is_(None))).scalars())
    db.dispose()
    return ids


def _wait_for_waiters(conn: Any, count: int, deadline_s: float = 60) -> None:
    """Wait until ``count`` sessions wait for a writer's advisory lock (the run's or the transaction's)."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND objid IN (%s, %s)",
            (WRITE_LOCK_KEY, RUN_LOCK_KEY),
        ).fetchone()
        if row and row[0] >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"{count} writer(s) never queued for the lock")


def test_concurrent_syncs_of_two_commits_leave_last_synced_commit_consistent(pg_url: str, tmp_path: Path) -> None:
    origin = make_repo(tmp_path / "origin")
    many_stories(origin, 20)
    base = origin.commit("base")
    env = {**os.environ, "STORYSYNC_DATABASE_URL": pg_url}
    assert run_cli_subprocess(origin, "sync", env=env).returncode == 0
    many_stories(origin, 50, start=100)
    older = origin.commit("50 more")
    many_stories(origin, 50, backlog="later", start=1000)
    for n in range(1, 6):
        (origin.path / f"backlog/bulk/BULK-{n}-s{n}.md").unlink()
    newer = origin.commit("50 more elsewhere, 5 gone")
    trees = {}
    for name, sha in (("job-older", older), ("job-newer", newer)):
        subprocess.run(["git", "clone", "-q", str(origin.path), str(tmp_path / name)], check=True)
        clone = Repo(tmp_path / name)
        clone.git("checkout", "-q", sha)
        trees[sha] = {p.name.split("-s")[0] for p in clone.path.rglob("BULK-*.md")}
    import psycopg

    dsn = pg_url.replace("postgresql+psycopg://", "postgresql://")
    procs = []
    with psycopg.connect(dsn, autocommit=True) as gate:
        # Both jobs read the database before either writes; the newer one then writes first.
        gate.execute("SELECT pg_advisory_lock(%s)", (WRITE_LOCK_KEY,))
        for waiting, name in enumerate(("job-newer", "job-older"), start=1):
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "storysync", "--repo", str(tmp_path / name), "sync", "--trigger", "ci"],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    env=env,
                )
            )
            _wait_for_waiters(gate, waiting)
        gate.execute("SELECT pg_advisory_unlock(%s)", (WRITE_LOCK_KEY,))
    outputs = [p.communicate(timeout=90) for p in procs]
    # The second saw the first: the older job would take the team database back, so it is refused.
    assert [p.returncode for p in procs] == [0, 4], outputs
    refusal = outputs[1][1]
    assert f"{older[:12]} is older than the last synced commit {newer[:12]}" in refusal
    assert "--allow-rewind" in refusal
    db = Database(pg_url)
    with db.read() as conn:
        ranges = conn.execute(select(m.sync_runs.c.from_commit, m.sync_runs.c.to_commit).order_by(m.sync_runs.c.id))
        assert [tuple(r) for r in ranges] == [(None, base), (base, newer)]  # the refused job wrote nothing
    db.dispose()
    assert db_state(pg_url)["last"] == newer
    assert live_ids(pg_url) == trees[newer]  # the rows are exactly the tree of the last synced commit


def test_a_held_write_lock_times_out_with_exit_3(
    pg_url: str, backlog_repo: Repo, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import psycopg

    monkeypatch.setenv("STORYSYNC_DATABASE_URL", pg_url)
    monkeypatch.setenv("STORYSYNC_LOCK_TIMEOUT", "0.3")
    assert backlog_repo.run("init") == 0
    dsn = pg_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as other_writer:
        other_writer.execute("SELECT pg_advisory_lock(%s)", (WRITE_LOCK_KEY,))
        capsys.readouterr()
        assert backlog_repo.run("sync") == 3
        err = capsys.readouterr().err
        assert "write lock" in err
        assert err.count("\n") == 1
        other_writer.execute("SELECT pg_advisory_unlock(%s)", (WRITE_LOCK_KEY,))
    assert backlog_repo.run("sync") == 0
    assert db_state(pg_url)["stories"] == 4


# --- connection failures ----------------------------------------------------------------------


def test_unreachable_server_exits_3_naming_host_never_password(
    repo: Repo, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()  # nothing listens there
    secret = "hunter2-Very-Secret"
    url = f"postgresql+psycopg://storysync:{secret}@127.0.0.1:{port}/team"
    done = run_cli_subprocess(repo, "--db", url, "sync", env={"STORYSYNC_DB_CONNECT_ATTEMPTS": "2"})
    assert done.returncode == 3, done
    assert secret not in done.stdout + done.stderr
    assert f"cannot connect to the database server at 127.0.0.1:{port} after 2 attempt(s)" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    monkeypatch.setenv("STORYSYNC_DB_CONNECT_ATTEMPTS", "2")
    for command in ("status", "init", "show"):
        capsys.readouterr()
        assert repo.run("--db", url, "-v", command, *(["WEB-1"] if command == "show" else [])) == 3
        out, err = capsys.readouterr()
        assert secret not in out + err
        assert "retrying" in err  # -v shows each retry; the password is hidden there too
        assert err.strip().splitlines()[-1].endswith("Connection refused")


def test_a_missing_database_fails_at_once_without_retrying(pg_server: PgServer, repo: Repo) -> None:
    url = pg_server.url("no_such_database", password="pw-Not-Shown")
    started = time.monotonic()
    done = run_cli_subprocess(repo, "--db", url, "-v", "status", env={"STORYSYNC_DB_CONNECT_ATTEMPTS": "5"})
    assert done.returncode == 3
    assert "does not exist" in done.stderr
    assert "retrying" not in done.stderr
    assert "pw-Not-Shown" not in done.stdout + done.stderr
    assert time.monotonic() - started < 30


@pytest.fixture(scope="module")
def own_pg() -> Iterator[PgServer]:
    """A server of this module's own, for tests that stop and restart it."""
    server = start_or_skip()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def own_url(own_pg: PgServer) -> Iterator[str]:
    if not own_pg.is_running():
        own_pg.start()
    name = own_pg.create_database()
    yield own_pg.url(name)
    if not own_pg.is_running():
        own_pg.start()
    own_pg.drop_database(name)


def test_a_server_coming_back_is_reached_by_retrying(
    own_pg: PgServer, own_url: str, backlog_repo: Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STORYSYNC_DATABASE_URL", own_url)
    monkeypatch.setenv("STORYSYNC_DB_CONNECT_ATTEMPTS", "10")
    own_pg.stop()
    restart = threading.Timer(0.5, own_pg.start)
    restart.start()
    try:
        assert backlog_repo.run("sync") == 0
    finally:
        restart.join()
    assert db_state(own_url)["stories"] == 4


def test_pooled_connections_survive_a_server_restart(own_pg: PgServer, own_url: str) -> None:
    db = Database(own_url)  # one engine, as a long-running watch keeps it
    db.ensure_schema()
    with db.read() as conn:
        assert get_state(conn, LAST_SYNCED) is None
    own_pg.stop("fast")
    own_pg.start()
    with db.read() as conn:  # the pooled connection is dead; pre-ping replaces it
        assert get_state(conn, LAST_SYNCED) is None
    db.dispose()


def _wait_for_blocked_writer(dsn: str, deadline_s: float = 60) -> None:
    """Wait until some other session waits on a table lock (the sync's first story write)."""
    import psycopg

    end = time.monotonic() + deadline_s
    with psycopg.connect(dsn, autocommit=True) as conn:
        while time.monotonic() < end:
            waiting = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
            ).fetchone()
            if waiting and waiting[0]:
                return
            time.sleep(0.05)
    raise AssertionError("the sync never reached its story writes")


def test_a_server_stopped_mid_sync_leaves_nothing_partial_and_the_next_run_catches_up(
    own_pg: PgServer, own_url: str, repo: Repo
) -> None:
    import psycopg

    many_stories(repo, 5)
    first = repo.commit("first five")
    env = {"STORYSYNC_DATABASE_URL": own_url, "STORYSYNC_DB_CONNECT_ATTEMPTS": "1"}
    assert run_cli_subprocess(repo, "sync", env=env).returncode == 0
    before = db_state(own_url)
    many_stories(repo, 100, backlog="more", start=100)
    repo.write("backlog/bulk/BULK-1-s1.md", "---\nid: BULK-1\ntitle: Changed\n---\n")
    second = repo.commit("a hundred more, one changed")
    dsn = own_url.replace("postgresql+psycopg://", "postgresql://")
    blocker = psycopg.connect(dsn)
    blocker.execute("LOCK TABLE stories IN SHARE MODE")  # reads go on; the sync's first story write waits
    sync = subprocess.Popen(
        [sys.executable, "-m", "storysync", "--repo", str(repo.path), "sync"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )
    try:
        _wait_for_blocked_writer(dsn)
        own_pg.stop("immediate")  # a crash: no shutdown checkpoint, open transactions lost
        out, err = sync.communicate(timeout=60)
    finally:
        sync.kill()
        blocker.close()
    assert sync.returncode == 3, (out, err)
    assert f"lost the connection to the database server at 127.0.0.1:{own_pg.port}" in err
    assert len(err.strip().splitlines()) == 1, err
    own_pg.start()
    assert db_state(own_url) == before  # nothing of the interrupted run, not even its audit row
    assert before["last"] == first
    assert run_cli_subprocess(repo, "sync", env=env).returncode == 0
    after = db_state(own_url)
    assert after["stories"] == 105
    assert after["last"] == second
    assert after["backlogs"] == ["bulk", "more"]


# --- SQLite's lock timeout --------------------------------------------------------------------


def test_sqlite_locked_after_busy_timeout_is_exit_3(
    backlog_repo: Repo, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert backlog_repo.run("init") == 0
    monkeypatch.setenv("STORYSYNC_BUSY_TIMEOUT_MS", "200")
    holder = sqlite3.connect(backlog_repo.db_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        capsys.readouterr()
        assert backlog_repo.run("sync") == 3
        err = capsys.readouterr().err
    finally:
        holder.rollback()
        holder.close()
    assert "database is locked: another writer held it for 0.2s" in err
    assert len(err.strip().splitlines()) == 1
    assert backlog_repo.run("sync") == 0


def _wait_for_write_transaction(dsn: str, deadline_s: float = 120) -> bool:
    """Wait until a sync holds the write lock (its transaction is writing); False if none came."""
    import psycopg

    end = time.monotonic() + deadline_s
    with psycopg.connect(dsn, autocommit=True) as conn:
        while time.monotonic() < end:
            row = conn.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objid = %s",
                (WRITE_LOCK_KEY,),
            ).fetchone()
            if row and row[0]:
                return True
            time.sleep(0.01)
    return False


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.0, 0.05, 0.2, 0.5])
def test_a_crash_at_any_moment_of_a_large_write_is_all_or_nothing(
    own_pg: PgServer, own_url: str, repo: Repo, delay: float
) -> None:
    many_stories(repo, 10)
    first = repo.commit("ten")
    env = {"STORYSYNC_DATABASE_URL": own_url, "STORYSYNC_DB_CONNECT_ATTEMPTS": "1"}
    assert run_cli_subprocess(repo, "sync", env=env).returncode == 0
    before = db_state(own_url)
    many_stories(repo, 3000, backlog="big", start=100)
    second = repo.commit("three thousand more")
    sync = subprocess.Popen(
        [sys.executable, "-m", "storysync", "--repo", str(repo.path), "sync"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )
    try:
        assert _wait_for_write_transaction(own_url.replace("postgresql+psycopg://", "postgresql://"))
        time.sleep(delay)
        own_pg.stop("immediate")
        out, err = sync.communicate(timeout=120)
    finally:
        sync.kill()
    own_pg.start()
    state = db_state(own_url)
    if sync.returncode == 0:  # the commit won the race with the crash
        assert state["last"] == second
        assert state["stories"] == 3010
    else:
        assert sync.returncode == 3, (out, err)
        assert "lost the connection" in err
        assert state == before
        assert before["last"] == first
    assert run_cli_subprocess(repo, "sync", env=env).returncode == 0
    after = db_state(own_url)
    assert after["last"] == second
    assert after["stories"] == 3010


# --- a machine without PostgreSQL ---------------------------------------------------------------


@pytest.fixture
def no_postgres(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No initdb on PATH nor in the Debian location."""
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    monkeypatch.setattr(pg, "PG_BIN_DIRS", (tmp_path / "no-postgresql" / "bin",))


@pytest.mark.usefixtures("no_postgres")
def test_missing_postgres_skips_with_the_reason_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="initdb, pg_ctl"):
        start_or_skip()


@pytest.mark.usefixtures("no_postgres")
def test_missing_postgres_fails_loudly_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="PostgreSQL is required when CI is set"):
        start_or_skip()


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://ci:Hidden-Pw-42@db.internal:notaport/stories",
        "postgresql+psycopg://ci:Hidden-Pw-42@[::1/stories",
        "ci:Hidden-Pw-42@db.internal",
    ],
)
def test_a_malformed_url_is_a_usage_error_that_hides_the_password(
    repo: Repo, capsys: pytest.CaptureFixture[str], url: str
) -> None:
    assert repo.run("--db", url, "status") == 2
    out, err = capsys.readouterr()
    assert "Hidden-Pw-42" not in out + err
    assert "invalid database URL" in err
    assert len(err.strip().splitlines()) == 1
