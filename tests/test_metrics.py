"""Prometheus metrics and the /metrics and /healthz server, over loopback HTTP."""

from __future__ import annotations

import shutil
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from storysync.db.database import Database
from storysync.errors import Diagnostic, UsageError
from storysync.ingest.types import SyncResult
from storysync.watch.events import Watcher
from storysync.watch.live import health
from storysync.watch.metrics import Address, Metrics, MetricsServer, parse_address
from storysync.watch.outcome import Outcome
from tests.conftest import Repo

TIMEOUT = 10


def get(url: str) -> tuple[int, str, str]:
    """Status, content type and body of a GET (error statuses included)."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:  # noqa: S310 - loopback test server
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.headers["Content-Type"], exc.read().decode()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, parsed by prometheus_client's own parser."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("127.0.0.1:9464", Address("127.0.0.1", 9464)),
        (":9464", Address("127.0.0.1", 9464)),
        ("0.0.0.0:0", Address("0.0.0.0", 0)),  # noqa: S104 - a parsed string, nothing listens
        ("[::1]:9464", Address("::1", 9464)),
        ("localhost:80", Address("localhost", 80)),
    ],
)
def test_parse_address(text: str, address: Address) -> None:
    assert parse_address(text) == address


@pytest.mark.parametrize("text", ["9464", "localhost", "host:port", "host:70000", "host:-1"])
def test_a_bad_address_is_a_usage_error(text: str) -> None:
    with pytest.raises(UsageError, match="expected HOST:PORT"):
        parse_address(text)


def _outcome(created: int = 0, updated: int = 0, deleted: int = 0, problems: int = 0) -> Outcome:
    result = SyncResult(
        created=[f"A-{i}" for i in range(created)],
        updated=[f"B-{i}" for i in range(updated)],
        deleted=[f"C-{i}" for i in range(deleted)],
        diagnostics=[Diagnostic(f"backlog/x/X-{i}-y.md", 2, 1, "schema", "bad") for i in range(problems)],
    )
    outcome = Outcome(paths=created + updated + deleted + problems, result=result, duration=0.03, lag=0.25)
    outcome.problems = list(result.diagnostics)
    return outcome


def test_record_counts_batches_rows_and_problems() -> None:
    metrics = Metrics()
    metrics.record(_outcome(created=2, updated=1))
    metrics.record(_outcome(updated=1, deleted=3, problems=2), invalid_files=2)
    metrics.record(Outcome(paths=4, error="database is locked", duration=0.5))
    from prometheus_client import generate_latest

    got = samples(generate_latest(metrics.registry).decode())
    assert got[("storysync_syncs_total", (("outcome", "ok"),))] == 1
    assert got[("storysync_syncs_total", (("outcome", "invalid"),))] == 1
    assert got[("storysync_syncs_total", (("outcome", "failed"),))] == 1
    assert got[("storysync_stories_written_total", (("kind", "created"),))] == 2
    assert got[("storysync_stories_written_total", (("kind", "updated"),))] == 2
    assert got[("storysync_stories_written_total", (("kind", "deleted"),))] == 3
    assert got[("storysync_errors_total", (("kind", "invalid_file"),))] == 2
    assert got[("storysync_errors_total", (("kind", "sync_failed"),))] == 1
    assert got[("storysync_batch_size_count", ())] == 3
    assert got[("storysync_batch_size_sum", ())] == 3 + 6 + 4
    assert got[("storysync_sync_duration_seconds_count", ())] == 3
    assert got[("storysync_sync_duration_seconds_bucket", (("le", "0.05"),))] == 2
    assert got[("storysync_lag_seconds", ())] == 0.25
    assert got[("storysync_last_sync_timestamp_seconds", ())] > 1.7e9
    assert got[("storysync_invalid_files", ())] == 2
    assert all(name.startswith("storysync_") for name, _ in got)


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    db = Database(f"sqlite:///{tmp_path / 'state' / 'storysync.db'}")
    yield db
    db.dispose()


@pytest.fixture
def watcher(tmp_path: Path) -> Iterator[Watcher]:
    (tmp_path / "tree").mkdir()
    with Watcher(tmp_path / "tree") as started:
        yield started


def _serve(metrics: Metrics, db: Database, watcher: Watcher) -> MetricsServer:
    return MetricsServer(Address("127.0.0.1", 0), metrics, lambda: health(db, watcher)).start()


def test_server_serves_metrics_and_a_passing_health_check(database: Database, watcher: Watcher) -> None:
    metrics = Metrics()
    metrics.record(_outcome(created=1))
    server = _serve(metrics, database, watcher)
    try:
        status, ctype, body = get(server.url + "/metrics")
        assert status == 200
        assert ctype.startswith("text/plain")
        assert samples(body)[("storysync_stories_written_total", (("kind", "created"),))] == 1
        status, ctype, body = get(server.url + "/healthz")
        assert (status, ctype) == (200, "application/json")
        assert body == '{"ok": true, "database": true, "observer": true}'
        assert get(server.url + "/elsewhere")[0] == 404
    finally:
        server.close()


def test_health_is_503_when_the_observer_has_stopped(database: Database, tmp_path: Path) -> None:
    (tmp_path / "tree").mkdir()
    stopped = Watcher(tmp_path / "tree")
    stopped.start()
    stopped.close()
    server = _serve(Metrics(), database, stopped)
    try:
        status, _, body = get(server.url + "/healthz")
    finally:
        server.close()
    assert status == 503
    assert body == '{"ok": false, "database": true, "observer": false}'


def test_health_is_503_when_the_database_is_unreachable(tmp_path: Path, watcher: Watcher) -> None:
    db = Database(f"sqlite:///{tmp_path / 'gone' / 'storysync.db'}")
    shutil.rmtree(tmp_path / "gone")  # SQLite cannot open a file in a directory that is not there
    server = _serve(Metrics(), db, watcher)
    try:
        status, _, body = get(server.url + "/healthz")
    finally:
        server.close()
        db.dispose()
    assert status == 503
    assert body == '{"ok": false, "database": false, "observer": true}'


def test_a_port_in_use_is_a_usage_error(database: Database, watcher: Watcher) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(UsageError, match=f"127.0.0.1:{port}: cannot listen"):
            MetricsServer(Address("127.0.0.1", port), Metrics(), lambda: health(database, watcher))


def test_the_server_stops_and_frees_its_port(database: Database, watcher: Watcher) -> None:
    server = _serve(Metrics(), database, watcher)
    port = int(server.url.rsplit(":", 1)[1])
    server.close()
    assert not server.thread.is_alive()
    with socket.socket() as again:
        again.bind(("127.0.0.1", port))


def test_open_conflicts_gauge_follows_the_conflicts_table(backlog_repo: Repo) -> None:
    """After each watch batch the gauge is the number of unresolved conflicts in the database."""
    from prometheus_client import generate_latest

    from storysync.config import load_config
    from storysync.db.writer import update_story
    from storysync.git.repo import open_repo
    from storysync.watch.events import Batch, ChangeKind, StoryFilter
    from storysync.watch.live import LiveSync
    from tests.conftest import story_text
    from tests.export_helpers import handles, synced

    web2 = "active/web/WEB-2-signup.md"
    synced(backlog_repo)
    backlog_repo.write(web2, story_text("WEB-2", title="Signup, edited in the file", points=3))
    with handles(backlog_repo) as h:
        update_story(h.db, "WEB-2", points=21, title="Signup, edited in the API")
    assert backlog_repo.run("export") == 1  # the conflict is recorded

    def gauge(metrics: Metrics) -> float:
        return samples(generate_latest(metrics.registry).decode())[("storysync_open_conflicts", ())]

    config = load_config(backlog_repo.path)
    db = Database(backlog_repo.db_url)
    try:
        metrics = Metrics()
        live = LiveSync(config, db, open_repo(backlog_repo.path), StoryFilter(config), metrics)
        assert live.catch_up().error is None
        assert gauge(metrics) == 1
        assert backlog_repo.run("conflicts", "--resolve", "WEB-2") == 0
        backlog_repo.write(web2, story_text("WEB-2", title="Signup, settled", points=5))
        assert live.apply(Batch(frozenset({(ChangeKind.modified, web2)}))) is not None
        assert gauge(metrics) == 0
    finally:
        db.dispose()
