"""Nothing hangs: a database server that accepts connections and never answers, and a
PostgreSQL table lock nobody releases, end a command (exit 3) or a git hook (exit 0,
one line) within the configured time, never minutes later.

The silent server is a real socket on 127.0.0.1 that accepts and never writes a byte;
the table lock is held by a real second session on a real PostgreSQL server.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from tests.conftest import Repo

pytestmark = pytest.mark.timeout(120)


class SilentServer:
    """Accepts TCP connections on loopback and never answers; closes them all on ``stop``."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.1)
        self.port: int = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.accepted.append(conn)  # held open, never read from or written to

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for conn in self.accepted:
            conn.close()
        self.sock.close()


def storysync(repo: Repo, *args: str, env: dict[str, str], limit: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a hook runs it; a run still going after ``limit`` seconds is killed and fails the test."""
    try:
        return subprocess.run(
            [sys.executable, "-m", "storysync", "--repo", str(repo.path), *args],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, **env},
            timeout=limit,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"storysync {' '.join(args)} still waiting after {limit:.0f}s")


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.stop()


def silent_url(server: SilentServer) -> str:
    pytest.importorskip("psycopg")
    return f"postgresql+psycopg://storysync@127.0.0.1:{server.port}/team"


def test_a_post_checkout_hook_gives_up_on_a_silent_server_within_seconds(
    backlog_repo: Repo, silent: SilentServer
) -> None:
    """git checkout with the hooks installed returns in seconds, not ~9 minutes, and the
    hook says in one line that it gave up and how to catch up."""
    assert backlog_repo.run("install-hooks") == 0
    env = {**os.environ, "STORYSYNC_DATABASE_URL": silent_url(silent)}
    started = time.monotonic()
    try:
        done = subprocess.run(
            ["git", "checkout", "-q", "-b", "topic"],
            cwd=backlog_repo.path,
            capture_output=True,
            text=True,
            check=False,
            env=env,
            timeout=60,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("git checkout still held up by its post-checkout hook after 60s")
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert took < 20, f"the hook held git up for {took:.0f}s"
    assert silent.accepted, "the hook never reached the server"
    lines = [line for line in done.stderr.splitlines() if line.startswith("storysync:")]
    assert len(lines) == 1, done.stderr
    assert "gave up waiting for the database" in lines[0]
    assert f"127.0.0.1:{silent.port}" in lines[0]
    assert lines[0].endswith("run 'storysync sync' to catch up")


def test_status_against_a_silent_server_ends_with_exit_3(backlog_repo: Repo, silent: SilentServer) -> None:
    env = {"STORYSYNC_CONNECT_TIMEOUT": "2", "STORYSYNC_DB_CONNECT_ATTEMPTS": "2"}
    started = time.monotonic()
    done = storysync(backlog_repo, "--db", silent_url(silent), "status", env=env)
    took = time.monotonic() - started
    assert done.returncode == 3, done
    assert took < 20, f"status waited {took:.0f}s"
    assert f"cannot connect to the database server at 127.0.0.1:{silent.port} after 2 attempt(s)" in done.stderr
    assert "timeout" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


@pytest.mark.postgres
def test_a_table_lock_held_by_another_session_ends_the_sync_after_the_lock_timeout(
    pg_url: str, backlog_repo: Repo
) -> None:
    """STORYSYNC_LOCK_TIMEOUT bounds every lock wait, not only storysync's own write lock."""
    import psycopg

    env = {"STORYSYNC_DATABASE_URL": pg_url, "STORYSYNC_LOCK_TIMEOUT": "2"}
    assert storysync(backlog_repo, "init", env=env).returncode == 0
    backlog_repo.story("backlog", "web", "WEB-9", "more", title="One more")
    backlog_repo.commit("one more story")
    with psycopg.connect(pg_url.replace("postgresql+psycopg://", "postgresql://")) as other:
        other.execute("LOCK TABLE stories IN ACCESS EXCLUSIVE MODE")  # held until this block ends
        started = time.monotonic()
        done = storysync(backlog_repo, "sync", env=env)
        took = time.monotonic() - started
        other.rollback()
    assert done.returncode == 3, done
    assert took < 15, f"the sync waited {took:.0f}s behind the table lock"
    assert "gave up after 2s waiting for a lock another session holds" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert storysync(backlog_repo, "sync", env=env).returncode == 0  # released: the next run catches up


@pytest.mark.postgres
def test_a_hook_gives_up_behind_a_table_lock_within_its_budget(pg_url: str, backlog_repo: Repo) -> None:
    """The hook's budget (STORYSYNC_HOOK_TIMEOUT) wins over a long STORYSYNC_LOCK_TIMEOUT."""
    import psycopg

    env = {"STORYSYNC_DATABASE_URL": pg_url, "STORYSYNC_LOCK_TIMEOUT": "600", "STORYSYNC_HOOK_TIMEOUT": "2"}
    assert storysync(backlog_repo, "init", env=env).returncode == 0
    with psycopg.connect(pg_url.replace("postgresql+psycopg://", "postgresql://")) as other:
        other.execute("LOCK TABLE stories IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        done = storysync(backlog_repo, "run-hook", "post-merge", env=env)
        took = time.monotonic() - started
        other.rollback()
    assert done.returncode == 0, done
    assert took < 15, f"the hook waited {took:.0f}s"
    assert "gave up waiting for the database" in done.stderr
    assert "run 'storysync sync' to catch up" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
