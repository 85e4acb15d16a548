"""Webhooks (SPEC §10) against a real HTTP server on loopback that fails on purpose."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import select

from storysync.db import notify
from storysync.db import tables as m
from storysync.db.database import Database
from tests.conftest import Repo


@dataclass
class Hook:
    """A loopback HTTP server whose answers follow a script, then ``default``."""

    script: list[int | float] = field(default_factory=list)  # an int is a status; a float, seconds to stall
    default: int = 200
    received: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    attempts: int = 0
    port: int = 0
    server: ThreadingHTTPServer | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/storysync?token=s3cret-token"

    def next_answer(self) -> int | float:
        with self.lock:
            self.attempts += 1
            return self.script.pop(0) if self.script else self.default

    def start(self) -> None:
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                answer = hook.next_answer()
                if isinstance(answer, float):
                    time.sleep(answer)
                    answer = 200
                if 200 <= answer < 300:
                    hook.received.append(json.loads(body))
                    hook.headers.append(dict(self.headers))
                self.send_response(answer)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        server.block_on_close = False
        self.port = server.server_address[1]
        self.server = server
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def seqs(self) -> list[int]:
        return [c["seq"] for batch in self.received for c in batch["changes"]]


@pytest.fixture
def hook(monkeypatch: pytest.MonkeyPatch) -> Iterator[Hook]:
    monkeypatch.setenv("STORYSYNC_WEBHOOK_BUDGET", "1.5")
    monkeypatch.setenv("STORYSYNC_WEBHOOK_TIMEOUT", "0.5")
    server = Hook()
    server.start()
    monkeypatch.setenv("STORYSYNC_WEBHOOK_URL", server.url)
    yield server
    server.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def changes(repo: Repo, url: str | None = None) -> list[dict[str, Any]]:
    db = Database(url or repo.db_url)
    with db.read() as conn:
        rows = conn.execute(select(m.changes).order_by(m.changes.c.seq)).all()
    db.dispose()
    return [{"seq": r.seq, "story_id": r.story_id, "kind": r.kind, "source": r.source, "run": r.run_id} for r in rows]


def delivered_seq(repo: Repo, url: str, db_url: str | None = None) -> int | None:
    db = Database(db_url or repo.db_url)
    state = notify.target_state(db, url)
    db.dispose()
    return state.delivered_seq if state else None


def test_batch_retried_after_two_500s_then_delivered_once_acknowledged(backlog_repo: Repo, hook: Hook) -> None:
    hook.script = [500, 500]
    assert backlog_repo.run("sync") == 0
    assert hook.attempts == 3
    feed = changes(backlog_repo)
    assert len(hook.received) == 1
    batch = hook.received[0]
    assert batch["run"] == feed[0]["run"]
    assert (batch["from_seq"], batch["to_seq"]) == (feed[0]["seq"], feed[-1]["seq"])
    assert batch["changes"] == [{k: c[k] for k in ("seq", "story_id", "kind", "source")} for c in feed]
    assert {c["kind"] for c in batch["changes"]} == {"created"}
    assert hook.headers[0]["Content-Type"] == "application/json"
    assert hook.headers[0]["X-Storysync-Batch"] == f"{feed[0]['seq']}-{feed[-1]['seq']}"
    assert delivered_seq(backlog_repo, hook.url) == feed[-1]["seq"]


def test_server_down_never_fails_or_blocks_sync_and_notify_resumes(
    backlog_repo: Repo, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STORYSYNC_WEBHOOK_BUDGET", "1")
    down = Hook(port=free_port())
    monkeypatch.setenv("STORYSYNC_WEBHOOK_URL", down.url)
    started = time.monotonic()
    assert backlog_repo.run("sync") == 0
    assert time.monotonic() - started < 8
    first = changes(backlog_repo)
    assert delivered_seq(backlog_repo, down.url) == first[0]["seq"] - 1  # nothing acknowledged yet
    err = capsys.readouterr().err
    assert "not yet delivered" in err
    assert "s3cret-token" not in err

    backlog_repo.story("active", "web", "WEB-3", "three", title="Three")
    backlog_repo.commit("another story")
    assert backlog_repo.run("sync") == 0  # still down: backing off, still exit 0
    feed = changes(backlog_repo)
    assert len(feed) > len(first)
    assert backlog_repo.run("doctor") == 1
    assert f"{len(feed)} change(s) not yet delivered" in capsys.readouterr().out

    down.start()  # the server comes back on the same port
    try:
        assert backlog_repo.run("notify") == 0
    finally:
        down.stop()
    assert down.seqs() == [c["seq"] for c in feed]  # everything, once, in order
    assert [b["run"] for b in down.received] == sorted({c["run"] for c in feed})
    assert delivered_seq(backlog_repo, down.url) == feed[-1]["seq"]


def test_resume_after_outage_on_each_backend(
    backlog_repo: Repo, any_db: str, hook: Hook, capsys: pytest.CaptureFixture[str]
) -> None:
    hook.default = 503
    assert backlog_repo.run("sync") == 0
    backlog_repo.git("rm", "-q", "completed/api/API-2-health.md")
    backlog_repo.commit("drop API-2")
    assert backlog_repo.run("sync") == 0
    feed = changes(backlog_repo, any_db)
    assert delivered_seq(backlog_repo, hook.url, any_db) == feed[0]["seq"] - 1
    assert hook.received == []
    assert backlog_repo.run("notify", "--budget", "1") == 3  # still failing: exit 3, nothing lost
    hook.default = 200
    assert backlog_repo.run("notify") == 0
    assert hook.seqs() == [c["seq"] for c in feed]
    assert hook.received[-1]["changes"] == [
        {"seq": feed[-1]["seq"], "story_id": "API-2", "kind": "deleted", "source": "file"}
    ]
    assert delivered_seq(backlog_repo, hook.url, any_db) == feed[-1]["seq"]
    capsys.readouterr()
    backlog_repo.run("doctor", "--format", "json")
    (webhook,) = [c for c in json.loads(capsys.readouterr().out)["checks"] if c["name"] == "webhook"]
    assert webhook["status"] == "pass"


def test_a_new_webhook_url_gets_what_the_old_one_had_not_acknowledged(
    backlog_repo: Repo, any_db: str, hook: Hook, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The old target acknowledged the first run, then went down; the URL is changed: the
    new target starts where the old one stopped, so nothing is silently dropped."""
    assert backlog_repo.run("sync") == 0
    acknowledged = changes(backlog_repo, any_db)
    hook.default = 503
    backlog_repo.git("rm", "-q", "completed/api/API-2-health.md")
    backlog_repo.commit("drop API-2")
    assert backlog_repo.run("sync") == 0  # not delivered: the old target fails
    assert delivered_seq(backlog_repo, hook.url, any_db) == acknowledged[-1]["seq"]
    new = Hook()
    new.start()
    new_url = new.url.replace("s3cret-token", "new-token")
    monkeypatch.setenv("STORYSYNC_WEBHOOK_URL", new_url)
    db = Database(any_db)
    assert notify.pending_count(db, new_url) == 1  # what doctor reports for it
    db.dispose()
    try:
        backlog_repo.story("active", "web", "WEB-3", "three", title="Three")
        backlog_repo.commit("another story")
        assert backlog_repo.run("sync") == 0
    finally:
        new.stop()
    feed = changes(backlog_repo, any_db)
    assert new.seqs() == [c["seq"] for c in feed[len(acknowledged) :]]  # the pending run, then this one
    assert [(c["story_id"], c["kind"]) for b in new.received for c in b["changes"]] == [
        ("API-2", "deleted"),
        ("WEB-3", "created"),
    ]


def test_failing_target_backs_off_between_runs(backlog_repo: Repo, hook: Hook, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORYSYNC_WEBHOOK_BUDGET", "0.3")
    hook.default = 500
    assert backlog_repo.run("sync") == 0
    for _ in range(3):  # notify ignores the backoff, and counts each failed pass
        assert backlog_repo.run("notify", "--budget", "0.1") == 3
    db = Database(backlog_repo.db_url)
    state = notify.target_state(db, hook.url)
    db.dispose()
    assert state is not None
    assert state.failures == 4
    assert state.last_error is not None
    assert "HTTP 500" in state.last_error
    attempts = hook.attempts
    backlog_repo.story("active", "web", "WEB-3", "three", title="Three")
    backlog_repo.commit("another story")
    assert backlog_repo.run("sync") == 0  # within the 8 s backoff: no attempt at all
    assert hook.attempts == attempts
    hook.default = 200
    assert backlog_repo.run("notify") == 0
    assert hook.seqs() == [c["seq"] for c in changes(backlog_repo)]


def test_git_merge_with_a_dead_webhook_still_syncs_through_the_real_hook(
    backlog_repo: Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert backlog_repo.run("sync") == 0
    assert backlog_repo.run("install-hooks") == 0
    down = Hook(port=free_port())
    backlog_repo.env = {"STORYSYNC_WEBHOOK_URL": down.url, "STORYSYNC_WEBHOOK_BUDGET": "0.5"}
    no_hooks = ("-c", "core.hooksPath=/nonexistent")  # only the merge below runs the real hooks
    backlog_repo.git(*no_hooks, "switch", "-q", "-c", "feature")
    backlog_repo.story("backlog", "web", "WEB-5", "five", title="Five")
    backlog_repo.git("add", "-A")
    backlog_repo.git(*no_hooks, "commit", "-q", "-m", "WEB-5")
    backlog_repo.git(*no_hooks, "switch", "-q", "main")
    started = time.monotonic()
    backlog_repo.git("merge", "-q", "--no-ff", "-m", "merge feature", "feature")  # fails the test if git fails
    assert time.monotonic() - started < 15
    feed = changes(backlog_repo)
    assert ("WEB-5", "created") in [(c["story_id"], c["kind"]) for c in feed]
    monkeypatch.setenv("STORYSYNC_WEBHOOK_URL", down.url)
    down.start()
    try:
        assert backlog_repo.run("notify") == 0
    finally:
        down.stop()
    assert [c["story_id"] for c in down.received[-1]["changes"]] == ["WEB-5"]


def test_slow_server_is_cut_off_by_the_budget(
    backlog_repo: Repo, hook: Hook, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STORYSYNC_WEBHOOK_BUDGET", "1")
    hook.script = [3.0, 3.0, 3.0]
    started = time.monotonic()
    assert backlog_repo.run("sync") == 0
    assert time.monotonic() - started < 6
    assert delivered_seq(backlog_repo, hook.url) == changes(backlog_repo)[0]["seq"] - 1
    assert "timed out" in capsys.readouterr().err


def test_new_target_starts_at_the_next_run_and_only_acknowledged_batches_advance(
    backlog_repo: Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert backlog_repo.run("sync") == 0  # no webhook yet: this history is not pushed
    before = changes(backlog_repo)
    server = Hook()
    server.start()
    monkeypatch.setenv("STORYSYNC_WEBHOOK_URL", server.url)
    try:
        backlog_repo.git("mv", "backlog/web/WEB-1-login.md", "active/web/WEB-1-login.md")
        backlog_repo.commit("start WEB-1")
        assert backlog_repo.run("sync") == 0
    finally:
        server.stop()
    assert server.seqs() == [c["seq"] for c in changes(backlog_repo)[len(before) :]]
    assert [(c["story_id"], c["kind"]) for b in server.received for c in b["changes"]] == [("WEB-1", "moved")]


def test_notify_without_webhook_is_a_usage_error(backlog_repo: Repo) -> None:
    assert backlog_repo.run("notify") == 2


def test_only_http_urls_are_posted_to(backlog_repo: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORYSYNC_WEBHOOK_URL", f"file://{backlog_repo.path}/leak.json")
    assert backlog_repo.run("sync") == 0
    assert not (backlog_repo.path / "leak.json").exists()
    assert backlog_repo.run("notify") == 2


def test_display_url_hides_credentials_and_query() -> None:
    shown = notify.display_url("https://bot:pa55word@hooks.example.invalid:8443/x?token=abc")
    assert shown == "https://hooks.example.invalid:8443/x?…"
    assert notify.target_key("https://a.invalid/") != notify.target_key("https://b.invalid/")


def test_set_and_new_push_their_change_without_waiting_for_a_sync(backlog_repo: Repo, hook: Hook) -> None:
    assert backlog_repo.run("sync") == 0
    synced_batches = len(hook.received)
    assert backlog_repo.run("set", "WEB-2", "points=8") == 0
    assert backlog_repo.run("new", "WEB-7", "--backlog", "web", "--title", "Password reset") == 0
    pushed = [c for b in hook.received[synced_batches:] for c in b["changes"]]
    assert [(c["story_id"], c["kind"], c["source"]) for c in pushed] == [
        ("WEB-2", "updated", "db"),
        ("WEB-7", "created", "db"),
    ]
    assert delivered_seq(backlog_repo, hook.url) == changes(backlog_repo)[-1]["seq"]


def test_export_pushes_what_set_left_pending(backlog_repo: Repo, hook: Hook, monkeypatch: pytest.MonkeyPatch) -> None:
    assert backlog_repo.run("sync") == 0
    monkeypatch.delenv("STORYSYNC_WEBHOOK_URL")
    assert backlog_repo.run("set", "WEB-2", "points=8") == 0  # no webhook configured for this one
    monkeypatch.setenv("STORYSYNC_WEBHOOK_URL", hook.url)
    before = len(hook.received)
    assert backlog_repo.run("export", "--commit") == 0
    pushed = [c for b in hook.received[before:] for c in b["changes"]]
    assert [(c["story_id"], c["kind"]) for c in pushed] == [("WEB-2", "updated")]


def test_a_dead_webhook_never_fails_set(backlog_repo: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORYSYNC_WEBHOOK_BUDGET", "1")
    monkeypatch.setenv("STORYSYNC_WEBHOOK_URL", f"http://127.0.0.1:{free_port()}/hook")
    assert backlog_repo.run("-q", "sync") == 0
    started = time.monotonic()
    assert backlog_repo.run("set", "WEB-2", "points=8") == 0
    assert time.monotonic() - started < 5
