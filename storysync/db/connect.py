"""Opening a database connection: retries with backoff for transient failures.

A connection that cannot be made because the server is down, restarting,
unreachable or full is retried a few times with exponential backoff and jitter
(tenacity); anything else (a wrong password, a missing database) fails at once.
Only the opening of a connection is retried, never work already sent on one: a
transaction that loses its server fails and is rolled back by the server, and the
next run redoes it from ``last_synced_commit``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, OperationalError

from storysync.errors import DatabaseError

if TYPE_CHECKING:  # tenacity is imported when a server connection is opened (SQLite needs none)
    from tenacity import RetryCallState

log = logging.getLogger("storysync.db")

T = TypeVar("T")

DEFAULT_ATTEMPTS = 4
FIRST_WAIT_S = 0.25
MAX_WAIT_S = 4.0
# SQLSTATE classes/codes meaning "try again later": connection exceptions,
# admin/crash shutdown, cannot connect now, too many connections.
TRANSIENT_SQLSTATES = ("08", "57P01", "57P02", "57P03", "53300")
TRANSIENT_TEXT = (
    "connection refused",
    "could not connect",
    "connection timed out",
    "timeout expired",
    "server closed the connection",
    "connection reset",
    "the database system is starting up",
    "the database system is shutting down",
    "the database system is in recovery mode",
    "too many clients",
    "temporary failure in name resolution",
    "no route to host",
)


def connect_attempts() -> int:
    """How many times a connection is tried (``STORYSYNC_DB_CONNECT_ATTEMPTS``, default 4)."""
    try:
        return max(1, int(os.environ.get("STORYSYNC_DB_CONNECT_ATTEMPTS", DEFAULT_ATTEMPTS)))
    except ValueError:
        return DEFAULT_ATTEMPTS


def is_transient(exc: BaseException) -> bool:
    """Whether a failure to connect may go away on its own (server down, restarting, full)."""
    if not isinstance(exc, OperationalError):
        return False
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate.startswith(TRANSIENT_SQLSTATES):
        return True
    message = str(exc.orig if exc.orig is not None else exc).lower()
    return any(fragment in message for fragment in TRANSIENT_TEXT)


def where(url: URL) -> str:
    """``host:port`` of a server URL (the defaults spelled out), without any credentials."""
    host = url.host or url.query.get("host") or "localhost"
    port = url.port or 5432
    return f"{host}:{port}"


def open_with_retry(connect: Callable[[], T], url: URL, display: str) -> T:
    """``connect()``, retried with backoff while the failure is transient.

    When every attempt fails, raises a one-line ``DatabaseError`` naming the host
    and port (never the password).
    """
    from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential, wait_random

    attempts = connect_attempts()
    retrying = Retrying(
        stop=stop_after_attempt(attempts),
        wait=wait_exponential(multiplier=FIRST_WAIT_S, max=MAX_WAIT_S) + wait_random(0, FIRST_WAIT_S),
        retry=retry_if_exception(is_transient),
        before_sleep=_log_retry(display),
        reraise=True,
    )
    try:
        return retrying(connect)
    except OperationalError as exc:
        if not is_transient(exc):
            raise
        raise DatabaseError(
            f"{display}: cannot connect to the database server at {where(url)} "
            f"after {attempts} attempt(s): {scrub(reason(exc), url)}",
            unavailable=True,
        ) from exc


def reason(exc: DBAPIError) -> str:
    """The driver's message, first line only."""
    orig = exc.orig
    text = str(orig if orig is not None else exc).strip()
    return text.splitlines()[0] if text else type(orig).__name__


def scrub(message: str, url: URL) -> str:
    """``message`` with the URL's password, if any, replaced by ``***``."""
    password = url.password
    if password:
        message = message.replace(str(password), "***")
    return message


def _log_retry(display: str) -> Callable[[RetryCallState], None]:
    def before_sleep(state: RetryCallState) -> None:
        wait = state.next_action.sleep if state.next_action else 0.0
        log.info("%s: connection failed (attempt %d), retrying in %.1fs", display, state.attempt_number, wait)

    return before_sleep
