"""watch end to end: a real watchdog observer on real files in a real git repository,
syncing into a real SQLite database.  Every wait polls for the expected state with
a generous timeout; nothing sleeps and then asserts."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from benchmarks import bench_watch
from storysync.config import load_config
from storysync.db.database import Database
from storysync.git.repo import open_repo
from storysync.watch.events import StoryFilter, Watcher
from storysync.watch.live import LiveSync
from storysync.watch.metrics import Metrics
from storysync.watch.outcome import Outcome
from tests.conftest import Repo, story_text

TIMEOUT = 10.0
WEB1 = "backlog/web/WEB-1-login.md"
WEB2 = "active/web/WEB-2-signup.md"


def wait_until(predicate: Callable[[], Any], timeout: float = TIMEOUT, what: str = "condition") -> Any:
    """Poll ``predicate`` until it is truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def query(repo: Repo, sql: str, *params: object) -> list[tuple[Any, ...]]:
    """Read the watch's database (read-only; nothing yet is an empty answer)."""
    try:
        conn = sqlite3.connect(repo.db_path.as_uri() + "?mode=ro", uri=True, timeout=30)
    except sqlite3.OperationalError:
        return []
    try:
        return list(conn.execute(sql, params))
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []
        raise
    finally:
        conn.close()


def row(repo: Repo, story_id: str) -> dict[str, Any] | None:
    found = query(repo, "SELECT title, deleted_at, path, status FROM stories WHERE id = ?", story_id)
    if not found:
        return None
    title, deleted_at, path, status = found[0]
    return {"title": title, "deleted_at": deleted_at, "path": path, "status": status}


def title(repo: Repo, story_id: str) -> str | None:
    found = row(repo, story_id)
    return None if found is None else found["title"]


def deleted(repo: Repo, story_id: str) -> bool:
    found = row(repo, story_id)
    return found is not None and found["deleted_at"] is not None


def change_kinds(repo: Repo, story_id: str) -> list[str]:
    return [k for (k,) in query(repo, "SELECT kind FROM changes WHERE story_id = ? ORDER BY seq", story_id)]


@dataclass
class Session:
    """A watch running in a background thread of the test process."""

    repo: Repo
    live: LiveSync
    watcher: Watcher
    outcomes: list[Outcome] = field(default_factory=list)
    failure: list[BaseException] = field(default_factory=list)

    @property
    def batches(self) -> list[Outcome]:
        return self.outcomes[1:]

    def total(self, kind: str) -> int:
        """How many stories the batches after the catch-up created, updated or deleted."""
        return sum(len(getattr(o.result, kind)) for o in self.batches if o.result is not None)

    def run(self, ready: threading.Event) -> None:
        try:
            with self.watcher:
                self.outcomes.append(self.live.catch_up())
                ready.set()
                for batch in self.watcher:
                    outcome = self.live.apply(batch)
                    if outcome is not None:
                        self.outcomes.append(outcome)
        except BaseException as exc:  # reported by the fixture's teardown
            self.failure.append(exc)
            ready.set()


def start_session(repo: Repo, **options: Any) -> tuple[Session, threading.Thread, Database]:
    config = load_config(repo.path)
    db = Database(config.database)
    keep = StoryFilter(config)
    git_repo = open_repo(repo.path)
    watcher = Watcher(
        config.root_path,
        base=config.repo,
        watch_filter=options.pop("watch_filter", keep),
        lock_file=Path(git_repo.git_dir) / "index.lock",
        **{"debounce": 0.2, "rescan_interval": 30.0, **options},
    )
    session = Session(repo, LiveSync(config, db, git_repo, keep, Metrics()), watcher)
    ready = threading.Event()
    thread = threading.Thread(target=session.run, args=(ready,), daemon=True)
    thread.start()
    assert ready.wait(TIMEOUT), "watch did not start"
    assert not session.failure, session.failure
    return session, thread, db


@pytest.fixture
def watching(backlog_repo: Repo) -> Iterator[Session]:
    session, thread, db = start_session(backlog_repo)
    yield session
    session.watcher.stop()
    thread.join(TIMEOUT)
    db.dispose()
    assert not thread.is_alive()
    assert not session.failure, session.failure


def test_catch_up_syncs_the_tree_at_start(watching: Session) -> None:
    assert row(watching.repo, "WEB-1") == {"title": "Login page", "deleted_at": None, "path": WEB1, "status": "backlog"}
    assert watching.outcomes[0].result is not None
    assert sorted(watching.outcomes[0].result.created) == ["API-1", "API-2", "WEB-1", "WEB-2"]


def test_a_save_reaches_the_database(watching: Session) -> None:
    watching.repo.write(WEB1, story_text("WEB-1", title="Login page, revised", depends_on=["API-1"]))
    wait_until(lambda: title(watching.repo, "WEB-1") == "Login page, revised", what="the saved title")
    assert query(watching.repo, "SELECT trigger FROM sync_runs ORDER BY id DESC LIMIT 1") == [("watch",)]


def test_an_atomic_save_is_an_update_not_a_delete(watching: Session) -> None:
    repo = watching.repo
    temp = repo.path / "backlog/web/.WEB-1-login.md.tmp-4242"
    temp.write_text(story_text("WEB-1", title="Saved atomically", depends_on=["API-1"]), encoding="utf-8")
    os.replace(temp, repo.path / WEB1)
    wait_until(lambda: title(repo, "WEB-1") == "Saved atomically", what="the atomic save")
    assert change_kinds(repo, "WEB-1") == ["created", "updated"]
    assert not deleted(repo, "WEB-1")


def test_vims_backup_rename_is_an_update_not_a_delete(watching: Session) -> None:
    repo = watching.repo
    story = repo.path / WEB1
    backup = repo.path / (WEB1 + "~")
    os.rename(story, backup)  # vim with 'nobackupcopy': move the original aside...
    story.write_text(story_text("WEB-1", title="Saved by vim", depends_on=["API-1"]), encoding="utf-8")  # ...write anew
    backup.unlink()
    wait_until(lambda: title(repo, "WEB-1") == "Saved by vim", what="vim's save")
    assert change_kinds(repo, "WEB-1") == ["created", "updated"]


def test_a_real_delete_soft_deletes(watching: Session) -> None:
    (watching.repo.path / WEB2).unlink()
    wait_until(lambda: deleted(watching.repo, "WEB-2"), what="the soft delete")
    assert change_kinds(watching.repo, "WEB-2") == ["created", "deleted"]


def test_a_bad_file_is_reported_once_kept_then_fixed(watching: Session) -> None:
    repo = watching.repo
    bad = "---\nid: WEB-2\ntitle: Signup\npoints: many\n---\nbody\n"
    repo.write(WEB2, bad)
    first = wait_until(lambda: [o for o in watching.batches if o.problems], what="the report")
    problems = [str(d) for d in first[0].problems]
    assert len(problems) == 1
    assert re.fullmatch(r"active/web/WEB-2-signup\.md:4:9: .*", problems[0]), problems
    assert title(repo, "WEB-2") == "Signup"  # last good row kept
    done = len(watching.batches)
    repo.write(WEB2, bad + "more\n")  # saved again, still broken: not reported again
    wait_until(lambda: len(watching.batches) > done, what="the second sync")
    assert sum(len(o.problems) for o in watching.outcomes) == 1
    assert watching.live.open_problems == 1
    repo.write(WEB2, story_text("WEB-2", title="Signup, fixed", points=5))
    wait_until(lambda: title(repo, "WEB-2") == "Signup, fixed", what="the fix")
    wait_until(lambda: any(o.fixed == [WEB2] for o in watching.outcomes), what="the fixed report")
    assert watching.live.open_problems == 0


def test_a_burst_of_500_files_arrives_in_few_batches(watching: Session) -> None:
    repo = watching.repo
    for i in range(1, 501):
        repo.write(f"backlog/bulk/BULK-{i}-item.md", story_text(f"BULK-{i}", title=f"Item {i}"))
    wait_until(lambda: watching.total("created") == 500, what="500 creations")
    assert query(repo, "SELECT count(*) FROM stories WHERE backlog_id = 'bulk' AND deleted_at IS NULL") == [(500,)]
    writing = [o for o in watching.outcomes[1:] if o.result is not None and o.result.created]
    assert 1 <= len(writing) <= 5, [o.paths for o in writing]


def test_a_git_checkout_of_many_files_is_few_batches(backlog_repo: Repo) -> None:
    repo = backlog_repo
    repo.git("checkout", "-q", "-b", "bulk")
    for i in range(1, 301):
        repo.write(f"backlog/bulk/BULK-{i}-item.md", story_text(f"BULK-{i}", title=f"Item {i}"))
    repo.commit("300 stories")
    session, thread, db = start_session(repo)
    try:
        repo.git("checkout", "-q", "main")  # git holds index.lock while it removes 300 files
        wait_until(lambda: session.total("deleted") == 300, what="300 soft deletes")
        assert query(repo, "SELECT count(*) FROM stories WHERE deleted_at IS NOT NULL") == [(300,)]
        deleting = [o for o in session.outcomes[1:] if o.result is not None and o.result.deleted]
        assert 1 <= len(deleting) <= 5
        assert not deleted(repo, "WEB-1")
    finally:
        session.watcher.stop()
        thread.join(TIMEOUT)
        db.dispose()
    assert not session.failure


def test_a_batch_waits_while_git_holds_index_lock(watching: Session) -> None:
    repo = watching.repo
    lock = repo.path / ".git" / "index.lock"
    lock.write_text("")
    try:
        repo.write(WEB1, story_text("WEB-1", title="Behind the lock", depends_on=["API-1"]))
        wait_until(lambda: watching.watcher.lock_waits >= 5, what="the batch to wait for index.lock")
        assert title(repo, "WEB-1") == "Login page"
    finally:
        lock.unlink()
    wait_until(lambda: title(repo, "WEB-1") == "Behind the lock", what="the sync after the lock")


def test_moving_a_backlog_directory_moves_its_stories(watching: Session) -> None:
    repo = watching.repo
    (repo.path / "completed").mkdir(exist_ok=True)
    os.rename(repo.path / "active" / "web", repo.path / "completed" / "web")
    wait_until(lambda: (row(repo, "WEB-2") or {}).get("status") == "completed", what="the moved story")
    assert (row(repo, "WEB-2") or {}).get("path") == "completed/web/WEB-2-signup.md"
    assert change_kinds(repo, "WEB-2") == ["created", "moved"]


def test_the_periodic_reconcile_heals_missed_events(backlog_repo: Repo) -> None:
    # The observer's filter drops every event, as an overflowing inotify queue
    # would; only the reconcile's scan of sizes and mtimes can see the edit.
    session, thread, db = start_session(backlog_repo, watch_filter=lambda kind, path: False, rescan_interval=0.3)
    try:
        backlog_repo.write(WEB1, story_text("WEB-1", title="Missed event", depends_on=["API-1"]))
        (backlog_repo.path / WEB2).unlink()
        wait_until(lambda: title(backlog_repo, "WEB-1") == "Missed event", what="the reconcile")
        wait_until(lambda: deleted(backlog_repo, "WEB-2"), what="the reconciled delete")
        assert all(o.rescan for o in session.outcomes)
        runs = len(query(backlog_repo, "SELECT id FROM sync_runs"))
        rescans = session.live.rescans
        wait_until(lambda: session.live.rescans >= rescans + 2, what="two more reconciles")
        assert len(query(backlog_repo, "SELECT id FROM sync_runs")) == runs  # nothing new: nothing written
    finally:
        session.watcher.stop()
        thread.join(TIMEOUT)
        db.dispose()
    assert not session.failure


def test_a_batch_that_fails_is_reported_and_retried(backlog_repo: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORYSYNC_BUSY_TIMEOUT_MS", "200")
    session, thread, db = start_session(backlog_repo, rescan_interval=0.5)
    blocker = sqlite3.connect(backlog_repo.db_path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")  # another writer holds the database
        backlog_repo.write(WEB1, story_text("WEB-1", title="After the lock", depends_on=["API-1"]))
        failed = wait_until(lambda: [o for o in session.batches if o.error], what="a failed batch")
        assert "locked" in (failed[0].error or "")
        assert failed[0].label == "failed"
        assert title(backlog_repo, "WEB-1") == "Login page"
        blocker.execute("ROLLBACK")
        wait_until(lambda: title(backlog_repo, "WEB-1") == "After the lock", what="the retry by reconcile")
    finally:
        blocker.close()
        session.watcher.stop()
        thread.join(TIMEOUT)
        db.dispose()
    assert not session.failure


def test_editor_temporaries_and_non_story_files_never_sync(watching: Session) -> None:
    repo = watching.repo
    runs = len(query(repo, "SELECT id FROM sync_runs"))
    for name in (".WEB-1-login.md.swp", "4913", "WEB-1-login.md~", ".#WEB-1-login.md", "notes.txt", "README.md"):
        repo.write(f"backlog/web/{name}", "scratch\n")
    repo.write("plans/idea.md", "not a story\n")
    repo.write(WEB1, story_text("WEB-1", title="Marker", depends_on=["API-1"]))  # a real change, after the noise
    wait_until(lambda: title(repo, "WEB-1") == "Marker", what="the marker")
    wait_until(lambda: watching.batches, what="the batch's outcome")
    assert [o.paths for o in watching.batches] == [1]
    assert len(query(repo, "SELECT id FROM sync_runs")) == runs + 1


# --- as a subprocess ----------------------------------------------------------------------


@dataclass
class WatchProcess:
    """``storysync watch`` running as a subprocess, and what it wrote on stderr."""

    proc: subprocess.Popen[str]
    lines: list[str]

    def stop(self, sig: signal.Signals) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(TIMEOUT)


@contextmanager
def watch_process(repo: Repo, *args: str, options: tuple[str, ...] = ()) -> Iterator[WatchProcess]:
    """Start ``storysync [options] watch [args]``; yield it once it has caught up; kill it if left running."""
    with subprocess.Popen(
        [sys.executable, "-m", "storysync", "--repo", str(repo.path), *options, "watch", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stderr is not None
        stderr = proc.stderr
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(iter(stderr.readline, "")), daemon=True)
        reader.start()
        try:
            wait_until(lambda: any("rescan of" in line for line in lines) or proc.poll() is not None, what="catch-up")
            assert proc.poll() is None, lines
            yield WatchProcess(proc, lines)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            reader.join(TIMEOUT)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_watch_subprocess_syncs_and_exits_0_on_signal(backlog_repo: Repo, sig: signal.Signals) -> None:
    with watch_process(backlog_repo, "--debounce", "100") as watch:
        backlog_repo.write(WEB1, story_text("WEB-1", title="From the subprocess", depends_on=["API-1"]))
        wait_until(lambda: title(backlog_repo, "WEB-1") == "From the subprocess", what="the sync")
        assert watch.stop(sig) == 0, watch.lines
    assert any("stopped" in line for line in watch.lines), watch.lines
    assert any("batch of 1 file(s): 0 created, 1 updated" in line for line in watch.lines), watch.lines


@contextmanager
def writer_lock_held(repo: Repo) -> Iterator[threading.Event]:
    """Hold the repository's writer lock; the event is set once a sync waits for it
    (it polls the lock by opening .git/storysync.lock): a batch is then in flight."""
    from filelock import FileLock
    from watchdog.events import FileSystemEvent, FileSystemEventHandler
    from watchdog.observers import Observer

    waiting = threading.Event()

    class LockOpened(FileSystemEventHandler):
        def on_opened(self, event: FileSystemEvent) -> None:
            if str(event.src_path).endswith("storysync.lock"):
                waiting.set()

    lock = FileLock(str(repo.path / ".git" / "storysync.lock"))
    lock.acquire()
    observer = Observer()
    observer.schedule(LockOpened(), str(repo.path / ".git"))
    observer.start()
    try:
        yield waiting
    finally:
        lock.release()
        observer.stop()
        observer.join(TIMEOUT)


def test_a_signal_finishes_the_batch_in_flight(backlog_repo: Repo) -> None:
    with watch_process(backlog_repo) as watch:
        with writer_lock_held(backlog_repo) as in_flight:
            backlog_repo.write(WEB1, story_text("WEB-1", title="In flight", depends_on=["API-1"]))
            assert in_flight.wait(TIMEOUT), "the batch never reached the writer lock"
            watch.proc.send_signal(signal.SIGTERM)
        assert watch.proc.wait(TIMEOUT) == 0, watch.lines
    assert title(backlog_repo, "WEB-1") == "In flight"


def test_a_second_ctrl_c_interrupts_the_batch(backlog_repo: Repo) -> None:
    with watch_process(backlog_repo) as watch, writer_lock_held(backlog_repo) as in_flight:
        backlog_repo.write(WEB1, story_text("WEB-1", title="Interrupted", depends_on=["API-1"]))
        assert in_flight.wait(TIMEOUT), "the batch never reached the writer lock"
        watch.proc.send_signal(signal.SIGINT)
        # again until it says so: two signals sent at once may be delivered as one
        deadline = time.monotonic() + TIMEOUT
        while not any("interrupted" in line for line in watch.lines) and time.monotonic() < deadline:
            watch.proc.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                watch.proc.wait(1.0)
        assert watch.proc.wait(TIMEOUT) == 130, watch.lines
    assert title(backlog_repo, "WEB-1") == "Login page"  # the interrupted batch wrote nothing


def _lowered_watch_limit(limit: int) -> list[str]:
    """A command prefix running in a new user namespace whose inotify watch limit is
    ``limit`` (per-namespace since Linux 5.11; nothing outside it is affected)."""
    setup = f'echo {limit} > /proc/sys/user/max_inotify_watches && exec "$@"'
    probe = subprocess.run(
        ["unshare", "-Ur", "sh", "-c", setup, "sh", "true"], capture_output=True, text=True, check=False
    )
    if probe.returncode != 0:
        pytest.skip(f"no unprivileged user namespace with its own inotify limit here: {probe.stderr.strip()}")
    return ["unshare", "-Ur", "sh", "-c", setup, "sh"]


def test_the_inotify_watch_limit_is_a_clear_error(backlog_repo: Repo) -> None:
    prefix = _lowered_watch_limit(8)  # the repository has more directories than that (.git/ included)
    done = subprocess.run(
        [*prefix, sys.executable, "-m", "storysync", "--repo", str(backlog_repo.path), "watch"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 3, done.stderr
    assert "the inotify watch limit is reached" in done.stderr
    assert "sudo sysctl fs.inotify.max_user_watches=" in done.stderr


def test_removing_the_stories_root_stops_watch_with_an_error(repo: Repo) -> None:
    repo.write("storysync.toml", 'root = "stories"\n')
    repo.write("stories/backlog/web/WEB-1-login.md", story_text("WEB-1", title="Login"))
    repo.commit("stories under a root")
    with watch_process(repo) as watch:
        shutil.rmtree(repo.path / "stories")
        assert watch.proc.wait(TIMEOUT) == 3, watch.lines
    wait_until(lambda: any("the stories root was removed" in line for line in watch.lines), what="the error")


def test_on_a_terminal_watch_shows_a_live_status_line(backlog_repo: Repo) -> None:
    import pty

    controller, terminal = pty.openpty()
    chunks: list[bytes] = []

    def read() -> None:
        while True:
            try:
                data = os.read(controller, 4096)
            except OSError:  # the terminal closed
                return
            if not data:
                return
            chunks.append(data)

    proc = subprocess.Popen(
        [sys.executable, "-m", "storysync", "--repo", str(backlog_repo.path), "watch"],
        stdin=subprocess.DEVNULL,
        stdout=terminal,
        stderr=terminal,
        env={**os.environ, "TERM": "xterm", "COLUMNS": "200"},
    )
    os.close(terminal)
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        wait_until(lambda: b"watching \xc2\xb7 last sync" in b"".join(chunks), what="the status line")
        backlog_repo.write(WEB1, story_text("WEB-1", title="On a terminal", depends_on=["API-1"]))
        wait_until(lambda: b"2 syncs" in b"".join(chunks), what="the status line after a save")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(TIMEOUT) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(TIMEOUT)
        os.close(controller)
    screen = b"".join(chunks).decode("utf-8", "replace")
    assert "\x1b[" in screen  # rich drew it with terminal control sequences
    assert "batch of" not in screen  # no plain log lines on a terminal


def test_a_bad_metrics_address_is_a_usage_error(backlog_repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    assert backlog_repo.run("watch", "--metrics", "nowhere") == 2
    assert "expected HOST:PORT" in capsys.readouterr().err


def test_watch_logs_json_records_with_log_format_json(backlog_repo: Repo) -> None:
    with watch_process(backlog_repo, options=("--log-format", "json")) as watch:
        backlog_repo.write(WEB1, story_text("WEB-1", title="As JSON", depends_on=["API-1"]))
        wait_until(lambda: any('"updated": 1' in line for line in watch.lines), what="the batch record")
        assert watch.stop(signal.SIGTERM) == 0
    records = [json.loads(line) for line in watch.lines]
    batch = next(r for r in records if r.get("updated") == 1)
    assert batch["event_type"] == "watch"
    assert batch["level"] == "info"
    assert batch["files"] == 1
    assert batch["lag_ms"] >= batch["duration_ms"] > 0
    assert records[-1]["event"] == "stopped"


def test_watch_subprocess_serves_metrics_and_health(backlog_repo: Repo) -> None:
    with watch_process(backlog_repo, "--metrics", "127.0.0.1:0") as watch:
        announced = [m for line in watch.lines for m in re.findall(r"(http://\S+)/healthz", line)]
        assert announced, watch.lines
        base = announced[0]
        backlog_repo.write(WEB1, story_text("WEB-1", title="Measured", depends_on=["API-1"]))
        wait_until(lambda: title(backlog_repo, "WEB-1") == "Measured", what="the sync")
        body = wait_until(lambda: _metrics_after(base, syncs=2), what="the second sync in /metrics")
        assert 'storysync_stories_written_total{kind="updated"} 1.0' in body
        assert "storysync_sync_duration_seconds_bucket" in body
        assert "storysync_last_sync_timestamp_seconds" in body
        assert "storysync_lag_seconds" in body
        status, health = _get(base + "/healthz")
        assert status == 200
        assert '"observer": true' in health
        assert '"database": true' in health
        assert watch.stop(signal.SIGINT) == 0


def _metrics_after(base: str, syncs: int) -> str:
    status, body = _get(base + "/metrics")
    assert status == 200
    return body if f'storysync_syncs_total{{outcome="ok"}} {syncs}.0' in body else ""


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=TIMEOUT) as response:  # noqa: S310 - a loopback test server
        return response.status, response.read().decode()


SMOKE_ARGS = ("--stories", "20", "--edits", "5", "--rss-edits", "60", "--idle", "0.5", "--json")


def test_watch_benchmark_smoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The on-demand benchmark, tiny: it runs, measures and the watcher exits 0; a saved run
    is reported again (``--from-json``) with how long the idle CPU was measured."""
    project = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_watch", *SMOKE_ARGS],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    assert results["edits"] == 5
    assert 0 < results["latency_ms"]["p50"] <= results["latency_ms"]["p95"] < 5000
    assert len(results["rss_mb"]) == 2
    assert results["exit_code"] == 0
    assert results["machine"]["nproc"] == str(os.cpu_count())
    saved = tmp_path / "run.json"
    saved.write_text(done.stdout, encoding="utf-8")
    assert bench_watch.main(["--from-json", str(saved)]) == 0
    report = capsys.readouterr().out
    assert f"| save → committed row, p95 | {results['latency_ms']['p95']:.0f} ms |" in report
    assert f"| idle CPU over {results['idle_s']:g} s | {results['idle_cpu_percent']} % of one core |" in report


def test_non_ascii_and_spaced_file_names_sync(watching: Session) -> None:
    rel = "backlog/web/WEB-9-café crème.md"
    watching.repo.write(rel, story_text("WEB-9", title="Café"))
    wait_until(lambda: title(watching.repo, "WEB-9") == "Café", what="the non-ASCII story")
    assert (row(watching.repo, "WEB-9") or {}).get("path") == rel
    (watching.repo.path / rel).unlink()
    wait_until(lambda: deleted(watching.repo, "WEB-9"), what="its soft delete")
