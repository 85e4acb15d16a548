"""Change notifications, push side (SPEC §10): POST each committed batch of the
``changes`` feed to the configured webhook.

Delivery is at least once: the last ``seq`` a target acknowledged with a 2xx is
kept in ``webhook_state`` and only moves forward after a 2xx, so a restart
resumes where it stopped (a batch may arrive twice; ``X-Storysync-Batch`` names
it for de-duplication).  A new ``webhook_url`` starts where the target it
replaces stopped, so what that one had not acknowledged goes to the new one.
After a sync commits, ``after_sync`` tries for a few seconds at most and never
raises; what is left is picked up by the next run or ``storysync notify``.
Between runs a failing target backs off (1 s, 2 s, 4 s … up to 5 minutes) so
that a dead server costs a sync nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import Connection, func, select

from storysync.db import tables as m
from storysync.db.database import utcnow
from storysync.errors import ConfigError
from storysync.log import get_logger, redact_url

if TYPE_CHECKING:
    from storysync.config import Config
    from storysync.db.database import Database

AFTER_SYNC_BUDGET = 3.0  # seconds a sync may spend delivering, in process
REQUEST_TIMEOUT = 2.0  # seconds for one POST
MAX_BATCH = 1000  # changes per POST
MAX_BACKOFF = 300.0  # seconds between attempts, across runs, for a failing target
USER_AGENT = "storysync-webhook/1"


def _env_seconds(name: str, default: float) -> float:
    try:
        return max(0.05, float(os.environ.get(name, default)))
    except ValueError:
        return default


def after_sync_budget() -> float:
    """Seconds a sync may spend delivering (``STORYSYNC_WEBHOOK_BUDGET``, default 3)."""
    return _env_seconds("STORYSYNC_WEBHOOK_BUDGET", AFTER_SYNC_BUDGET)


def request_timeout() -> float:
    """Seconds one POST may take (``STORYSYNC_WEBHOOK_TIMEOUT``, default 2)."""
    return _env_seconds("STORYSYNC_WEBHOOK_TIMEOUT", REQUEST_TIMEOUT)


class DeliveryFailed(Exception):
    """One POST did not get a 2xx (refused, timed out, or an error status)."""


@dataclass(frozen=True)
class Batch:
    """A run's consecutive changes, as one POST."""

    run: int | None
    changes: tuple[dict[str, Any], ...]

    @property
    def from_seq(self) -> int:
        return int(self.changes[0]["seq"])

    @property
    def to_seq(self) -> int:
        return int(self.changes[-1]["seq"])

    def payload(self) -> dict[str, Any]:
        """The JSON body SPEC §10 promises."""
        return {"run": self.run, "from_seq": self.from_seq, "to_seq": self.to_seq, "changes": list(self.changes)}


@dataclass
class DeliveryReport:
    """What one delivery pass did."""

    delivered: list[Batch] = field(default_factory=list)
    pending: int = 0  # changes still waiting after the pass
    error: str | None = None
    skipped: bool = False  # backing off after earlier failures; nothing was sent


@dataclass(frozen=True)
class TargetState:
    """A webhook target's row in ``webhook_state``."""

    delivered_seq: int
    failures: int
    last_attempt_at: datetime | None
    last_error: str | None


def target_key(url: str) -> str:
    """The ``webhook_state`` key of a URL: its sha256, so no token is stored."""
    return hashlib.sha256(url.encode("utf-8")).hexdigest()


def display_url(url: str) -> str:
    """The URL safe to print, log and store: no user, password, query string or fragment,
    and the token of a webhook's path hidden (``storysync.log.redact_url``: Slack's
    ``/services/T…/B…/***``, Discord's ``/api/webhooks/***/***``)."""
    try:
        parts = urlsplit(redact_url(url))
    except ValueError:  # an unclosed IPv6 bracket: show no more than the scheme
        return url.partition("://")[0] + "://…"
    host = parts.netloc.rpartition("@")[2]
    query = "…" if parts.query else ""
    return urlunsplit((parts.scheme, host, parts.path, query, ""))


def check_url(url: str) -> None:
    """Raise ``ConfigError`` unless ``url`` is an http(s) URL with a host."""
    try:
        parts = urlsplit(url)
        port = parts.port  # ValueError: a port that is not a number or out of range
    except ValueError:  # ... or an unclosed IPv6 bracket
        parts, port = urlsplit(""), -1
    if port == -1 or parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ConfigError(
            f"webhook_url {display_url(url)!r}: must be an http:// or https:// URL with a host and a numeric port"
        )


def feed_end(config: Config, db: Database) -> int | None:
    """The last ``seq`` of the feed before a DB-side write, when a webhook is set.

    None (and no query) without a webhook or when the database cannot say; a
    target seen for the first time then starts after this write's change.
    """
    if not config.webhook_url:
        return None
    try:
        return max_seq(db)
    except Exception:  # the write itself will report a broken database
        return None


def after_write(config: Config, db: Database, start_after: int | None = None) -> None:
    """Push pending changes after ``set``/``new`` or an export commits, as a sync does.

    Bounded by the same budget as ``after_sync``; never raises, so a notification
    problem never fails the command.  What is left goes with the next run.
    """
    try:
        if config.webhook_url:
            report = deliver(db, config.webhook_url, budget=after_sync_budget(), start_after=start_after)
            _log_report(config.webhook_url, report)
    except Exception as exc:  # a notification problem must never fail the command
        get_logger().warning("webhook: delivery deferred: %s", _one_line(exc))


def deliver(
    db: Database,
    url: str,
    *,
    budget: float = 30.0,
    timeout: float | None = None,
    start_after: int | None = None,
    respect_backoff: bool = True,
) -> DeliveryReport:
    """Send every pending batch in ``seq`` order until done or ``budget`` seconds pass.

    A target seen for the first time starts after ``start_after`` (default: the
    current end of the feed).  The cursor moves only past batches that got a 2xx.
    """
    check_url(url)
    timeout = timeout if timeout is not None else request_timeout()
    deadline = time.monotonic() + budget
    report = DeliveryReport()
    state = _ensure_state(db, url, start_after)
    if respect_backoff and _backing_off(state):
        report.skipped = True
        report.error = state.last_error
        report.pending = pending_count(db, url)
        return report
    cursor = state.delivered_seq
    while report.error is None:
        batches = _pending_batches(db, cursor)
        if not batches:
            break
        for batch in batches:
            try:
                _send_with_retries(url, batch, deadline, timeout)
            except DeliveryFailed as exc:
                report.error = str(exc)
                _record_failure(db, url, report.error)
                break
            _record_success(db, url, batch.to_seq)
            cursor = batch.to_seq
            report.delivered.append(batch)
    report.pending = pending_count(db, url)
    return report


def pending_count(db: Database, url: str) -> int:
    """How many changes the target has not acknowledged yet."""
    state = _get_state(db, url)
    end = max_seq(db) if state is None else 0
    with db.read() as conn:
        after = state.delivered_seq if state is not None else first_position(conn, end)
        count: int = conn.execute(
            select(func.count()).select_from(m.changes).where(m.changes.c.seq > after)
        ).scalar_one()
    return count


def target_state(db: Database, url: str) -> TargetState | None:
    """The stored delivery state of ``url`` (None if never delivered to)."""
    return _get_state(db, url)


def post(url: str, payload: dict[str, Any], timeout: float = REQUEST_TIMEOUT) -> None:
    """POST ``payload`` as JSON; raise ``DeliveryFailed`` unless the answer is 2xx."""
    # local: urllib and tenacity only when a webhook is set
    import urllib.error
    import urllib.request

    body = json.dumps(payload, separators=(",", ":"), default=str).encode("utf-8")
    request = urllib.request.Request(  # noqa: S310 - check_url allows http(s) only
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-Storysync-Batch": f"{payload['from_seq']}-{payload['to_seq']}",
        },
    )
    where = display_url(url)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        exc.close()  # it holds the response's socket
        raise DeliveryFailed(f"{where}: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DeliveryFailed(f"{where}: {_one_line(reason)}") from exc
    if not 200 <= status < 300:
        raise DeliveryFailed(f"{where}: HTTP {status}")


def _send_with_retries(url: str, batch: Batch, deadline: float, timeout: float) -> None:
    # local: urllib and tenacity only when a webhook is set
    from tenacity import Retrying, retry_if_exception_type, stop_before_delay, wait_exponential

    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise DeliveryFailed(f"{display_url(url)}: out of time before sending seq {batch.from_seq}-{batch.to_seq}")
    retrying = Retrying(
        stop=stop_before_delay(remaining),
        wait=wait_exponential(multiplier=0.2, max=5.0),
        retry=retry_if_exception_type(DeliveryFailed),
        reraise=True,
    )
    for attempt in retrying:
        with attempt:
            left = max(0.05, deadline - time.monotonic())
            post(url, batch.payload(), timeout=min(timeout, left))


def batches_from(rows: Iterable[Any]) -> list[Batch]:
    """Group ``changes`` rows (in seq order) into one batch per run."""
    batches: list[Batch] = []
    current: list[dict[str, Any]] = []
    run: int | None = None
    for row in rows:
        if current and row.run_id != run:
            batches.append(Batch(run, tuple(current)))
            current = []
        run = row.run_id
        change = {"seq": row.seq, "story_id": row.story_id, "kind": row.kind, "source": row.source}
        detail = getattr(row, "detail", None)
        if isinstance(detail, dict) and detail.get("merged") is not None:  # a three-way merge (issue 15)
            change |= {"merged": detail["merged"], "conflicts": detail.get("conflicts", [])}
        if isinstance(detail, dict) and detail.get("branch") is not None:  # the branch overlay (issue 16)
            change |= {key: detail.get(key) for key in ("branch", "status", "furthest_status")}
            if detail.get("reason") is not None:
                change["reason"] = detail["reason"]
        current.append(change)
    if current:
        batches.append(Batch(run, tuple(current)))
    return batches


def _pending_batches(db: Database, after: int) -> list[Batch]:
    c = m.changes.c
    query = (
        select(c.seq, c.story_id, c.kind, c.source, c.run_id, c.detail)
        .where(c.seq > after)
        .order_by(c.seq)
        .limit(MAX_BATCH)
    )
    with db.read() as conn:
        return batches_from(conn.execute(query))


def max_seq(db: Database) -> int:
    """The last ``seq`` of the change feed (0 when it is empty)."""
    with db.read() as conn:
        return int(conn.execute(select(func.coalesce(func.max(m.changes.c.seq), 0))).scalar_one())


def _get_state(db: Database, url: str) -> TargetState | None:
    w = m.webhook_state.c
    with db.read() as conn:
        row = conn.execute(select(m.webhook_state).where(w.target == target_key(url))).first()
    if row is None:
        return None
    return TargetState(row.delivered_seq, row.failures, _aware(row.last_attempt_at), row.last_error)


def _ensure_state(db: Database, url: str, start_after: int | None) -> TargetState:
    state = _get_state(db, url)
    if state is not None:
        return state
    start = start_after if start_after is not None else max_seq(db)
    with db.write() as conn:
        start = first_position(conn, start)
        _insert_state(conn, url, start)
    return _get_state(db, url) or TargetState(start, 0, None, None)


def first_position(conn: Connection, start: int) -> int:
    """Where a target seen for the first time starts: after ``start``, or earlier when the
    target it replaces (a changed ``webhook_url``: the other target furthest delivered)
    had not acknowledged everything up to ``start``, so no change is silently dropped."""
    previous = conn.execute(select(func.max(m.webhook_state.c.delivered_seq))).scalar()
    return start if previous is None else min(start, int(previous))


def _insert_state(conn: Connection, url: str, start: int) -> None:
    exists = conn.execute(select(m.webhook_state.c.target).where(m.webhook_state.c.target == target_key(url))).first()
    if exists is None:
        conn.execute(
            m.webhook_state.insert().values(
                target=target_key(url), url=display_url(url), delivered_seq=start, failures=0
            )
        )


def _record_success(db: Database, url: str, seq: int) -> None:
    w = m.webhook_state.c
    now = utcnow()
    with db.write() as conn:
        current = conn.execute(select(w.delivered_seq).where(w.target == target_key(url))).scalar_one()
        conn.execute(
            m.webhook_state.update()
            .where(w.target == target_key(url))
            .values(
                delivered_seq=max(int(current), seq),
                failures=0,
                last_error=None,
                last_attempt_at=now,
                last_delivered_at=now,
            )
        )


def _record_failure(db: Database, url: str, error: str) -> None:
    w = m.webhook_state.c
    with db.write() as conn:
        conn.execute(
            m.webhook_state.update()
            .where(w.target == target_key(url))
            .values(failures=w.failures + 1, last_error=error[:500], last_attempt_at=utcnow())
        )


def _backing_off(state: TargetState) -> bool:
    if state.failures <= 0 or state.last_attempt_at is None:
        return False
    wait = min(MAX_BACKOFF, 2.0 ** (state.failures - 1))
    return utcnow() < state.last_attempt_at + timedelta(seconds=wait)


def _aware(stamp: datetime | None) -> datetime | None:
    if stamp is not None and stamp.tzinfo is None:  # SQLite returns naive UTC
        return stamp.replace(tzinfo=timezone.utc)
    return stamp


def _log_report(url: str, report: DeliveryReport) -> None:
    log = get_logger()
    where = display_url(url)
    for batch in report.delivered:
        log.info(
            "webhook: delivered seq %d-%d to %s",
            batch.from_seq,
            batch.to_seq,
            where,
            extra={"fields": {"event_type": "webhook", "from_seq": batch.from_seq, "to_seq": batch.to_seq}},
        )
    if report.pending:
        why = report.error or "out of time"
        log.warning(
            "webhook: %d change(s) not yet delivered to %s (%s); run 'storysync notify' or wait for the next sync",
            report.pending,
            where,
            "backing off after: " + why if report.skipped else why,
            extra={"fields": {"event_type": "webhook", "pending": report.pending}},
        )


def _one_line(value: object) -> str:
    text = str(value).strip().splitlines()
    return text[0] if text else type(value).__name__
