"""Opening a database connection: how long to wait, and retries for transient failures.

Every wait on a server is bounded (``Timeouts``): each attempt to connect, each
lock (storysync's own or a table or row another session holds) and each
statement, so that a server that accepts connections and never answers, or a
lock nobody releases, ends the run with a one-line error instead of a hang.  A
git hook waits a few seconds at most and says so.

A connection that cannot be made because the server is down, restarting,
unreachable or full is retried a few times with exponential backoff and jitter
(tenacity); anything else (a wrong password, a missing database) fails at once.
Only the opening of a connection is retried, never work already sent on one: a
transaction that loses its server fails and is rolled back by the server, and the
next run redoes it from ``last_synced_commit``.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, OperationalError

from storysync.errors import DatabaseError
from storysync.log import hide, redact, secret_param

if TYPE_CHECKING:  # tenacity is imported when a server connection is opened (SQLite needs none)
    from tenacity import RetryCallState

log = logging.getLogger("storysync.db")

T = TypeVar("T")

DEFAULT_ATTEMPTS = 4
CONNECT_TIMEOUT_S = 10.0  # each attempt to connect (STORYSYNC_CONNECT_TIMEOUT)
LOCK_TIMEOUT_S = 600.0  # any lock wait (STORYSYNC_LOCK_TIMEOUT)
STATEMENT_MARGIN_S = 60.0  # a statement may run this much longer than a lock may be waited for
HOOK_TIMEOUT_S = 5.0  # a git hook's longest wait (STORYSYNC_HOOK_TIMEOUT): git must not hang
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


def env_seconds(name: str, default: float) -> float:
    """A number of seconds from the environment (``default`` when unset or not a number)."""
    try:
        return max(0.0, float(os.environ.get(name, default)))
    except ValueError:
        return default


@dataclass(frozen=True)
class Timeouts:
    """How long one run waits on a PostgreSQL server before it gives up.

    ``connect_s``: each attempt to connect (``STORYSYNC_CONNECT_TIMEOUT``, default 10;
    the driver's minimum is 2); ``attempts``: how many (``STORYSYNC_DB_CONNECT_ATTEMPTS``);
    ``lock_s``: any lock wait, storysync's one-writer locks or a table or row lock
    another session holds (``STORYSYNC_LOCK_TIMEOUT``, default 600; 0 waits for ever).
    A statement may run ``STATEMENT_MARGIN_S`` longer than a lock may be waited for.
    """

    connect_s: float = CONNECT_TIMEOUT_S
    attempts: int = DEFAULT_ATTEMPTS
    lock_s: float = LOCK_TIMEOUT_S
    hook: bool = False  # a git hook's short budget: a connect_timeout in the URL is capped too

    @classmethod
    def from_env(cls, *, hook: bool = False) -> Timeouts:
        """The timeouts the environment sets; for a git ``hook``, none longer than
        ``STORYSYNC_HOOK_TIMEOUT`` seconds (default 5) and a single attempt to connect."""
        connect = env_seconds("STORYSYNC_CONNECT_TIMEOUT", CONNECT_TIMEOUT_S)
        lock = env_seconds("STORYSYNC_LOCK_TIMEOUT", LOCK_TIMEOUT_S)
        if not hook:
            return cls(connect, connect_attempts(), lock)
        budget = env_seconds("STORYSYNC_HOOK_TIMEOUT", HOOK_TIMEOUT_S) or HOOK_TIMEOUT_S
        return cls(min(connect or budget, budget), 1, min(lock or budget, budget), hook=True)

    @property
    def statement_s(self) -> float:
        """How long one statement may run (0: no limit, as for the locks)."""
        return self.lock_s + STATEMENT_MARGIN_S if self.lock_s else 0.0

    def connect_timeout(self, url: URL) -> int:
        """The whole seconds to give the driver's ``connect_timeout``: the URL's own, if it
        has one (capped for a hook), else ``connect_s``; never below the driver's 2."""
        mine = max(2, math.ceil(self.connect_s)) if self.connect_s else 0  # 0: the driver's default
        given = url.query.get("connect_timeout")
        try:
            theirs = int(float(given)) if isinstance(given, str) else None
        except ValueError:
            theirs = None  # not a number: ours
        if theirs is None or (self.hook and theirs <= 0):
            return mine
        return min(theirs, mine) if self.hook else theirs

    def session_settings(self) -> dict[str, int]:
        """PostgreSQL settings for every session: ``lock_timeout`` and ``statement_timeout`` in ms."""
        return {"lock_timeout": int(self.lock_s * 1000), "statement_timeout": int(self.statement_s * 1000)}


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


def open_with_retry(connect: Callable[[], T], url: URL, display: str, attempts: int | None = None) -> T:
    """``connect()``, tried up to ``attempts`` times (default ``connect_attempts()``) with
    backoff while the failure is transient.

    When every attempt fails, raises a one-line ``DatabaseError`` naming the host
    and port (never the password).
    """
    # local: tenacity (~4 ms) only for a server connection, off the SQLite hook path
    from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential, wait_random

    attempts = attempts or connect_attempts()
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
    """``message`` with every credential hidden: the URL's password and credential-named
    query values wherever they stand as words of their own, and any URL or
    ``password=`` pair in it (``storysync.log.redact``)."""
    secrets = [str(url.password or "")]
    for name, value in url.query.items():
        if secret_param(name):
            secrets += [value] if isinstance(value, str) else list(value)
    return redact(hide(message, secrets))


def _log_retry(display: str) -> Callable[[RetryCallState], None]:
    def before_sleep(state: RetryCallState) -> None:
        wait = state.next_action.sleep if state.next_action else 0.0
        log.info("%s: connection failed (attempt %d), retrying in %.1fs", display, state.attempt_number, wait)

    return before_sleep
