"""Logging setup: human lines on the terminal, optional JSON records and a log file.

Credentials never reach a record or the terminal: ``redact_url`` is the one rule for
showing a URL (the password of ``user:password@``, the values of query parameters
named like a credential, and the token in a webhook's path hidden), and ``redact``
applies it to every URL inside a message, with ``name=value`` credentials of a
connection string.  Plain words are never touched ("expired", "keyboard").
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import tempfile
import traceback
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus, urlsplit, urlunsplit

from storysync.errors import StorysyncError, UsageError, printable

LOGGER = "storysync"
HIDDEN = "***"
# ``user:password@`` (a raw "/" or "?" in the password too), not ``host:8080/path?mail=a@b``
_PASSWORD = re.compile(r"(://[^:/@\s]*:)(?!\d+[/?#])[^@\s]+@")
_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
# a query parameter is a credential when its name holds one of these (``sslpassword``,
# ``access_token``, ``X-Amz-Signature``, ``apiKey``, ``client_secret``, ``auth``...)
_SECRET_PARAM = re.compile(r"pass|pwd|secret|token|key|auth|sig|cred|session", re.IGNORECASE)
# ``name=value`` in running text (a libpq connection string in a driver's message):
# only these whole names, so that no ordinary word is ever touched
_SECRET_PAIR = re.compile(
    r"(?<![\w.-])((?:ssl)?password|passwd|pwd|secret|client_secret|(?:access_|refresh_|id_|auth_|private_)?token"
    r"|api_?key|apikey|key|sig|signature)=('[^']*'|\"[^\"]*\"|[^\s&;,'\"]+)",
    re.IGNORECASE,
)
# webhook URLs carry their secret in the path: the segment after one of these names
# (Slack ``/services/T…/B…/TOKEN``, Discord ``/api/webhooks/ID/TOKEN``, ``/hooks/KEY``)
_WEBHOOK_MARKERS = frozenset({"services", "webhooks", "webhook", "hooks", "hook", "triggers"})
_OPAQUE = re.compile(r"[A-Za-z0-9_\-.~=+@%]{16,}")


def redact_url(url: str) -> str:
    """``url`` safe to show or log: the password of ``user:password@``, the value of every
    query (and fragment) parameter whose name looks like a credential (password, pwd,
    token, key, secret, auth, sig...) and, in an http(s) URL, the secret of a webhook's
    path replaced by ``***``.

    A path segment of an http(s) URL is taken for a secret when it is the last one after
    a ``services``, ``webhooks``, ``hooks``, ``hook`` or ``triggers`` segment, or when it
    is opaque: 16 or more letters, digits and ``-_.~=+@%`` with a digit in them or both
    cases.  A database URL's path is its database name and stays as it is.  A URL that
    cannot be parsed keeps nothing after a ``?``; ``user:password@host`` without a
    scheme keeps its user and host.
    """
    url = _PASSWORD.sub(rf"\1{HIDDEN}@", url)
    if "://" not in url:  # not a URL at all (``user:password@host``): keep only the user and host
        head, at, host = url.rpartition("@")
        user, colon, _ = head.partition(":")
        return f"{user}:{HIDDEN}@{host}" if at and colon else url
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        head, mark, _ = url.partition("?")
        return head + (f"?{HIDDEN}" if mark else "")
    path = parts.path
    if parts.scheme.lower() in ("http", "https"):
        path = _redact_path(path)
    query, fragment = _redact_params(parts.query), _redact_params(parts.fragment)
    if (path, query, fragment) == (parts.path, parts.query, parts.fragment):
        return url
    return urlunsplit((parts.scheme, parts.netloc, path, query, fragment))


def secret_param(name: str) -> bool:
    """Whether a URL query parameter called ``name`` holds a credential."""
    return _SECRET_PARAM.search(name) is not None


def _redact_params(params: str) -> str:
    def one(pair: str) -> str:
        name, eq, value = pair.partition("=")
        return f"{name}={HIDDEN}" if eq and value and secret_param(unquote_plus(name)) else pair

    return "&".join(one(pair) for pair in params.split("&")) if params else params


def _redact_path(path: str) -> str:
    segments = path.split("/")
    marks = [i for i, seg in enumerate(segments) if seg.lower() in _WEBHOOK_MARKERS]
    after = [i for i in range(marks[-1] + 1, len(segments)) if segments[i]] if marks else []
    token = after[-1] if after else None
    return "/".join(HIDDEN if i == token or _opaque(seg) else seg for i, seg in enumerate(segments))


def _opaque(segment: str) -> bool:
    if not _OPAQUE.fullmatch(segment):
        return False
    return any(c.isdigit() for c in segment) or (segment.lower() != segment and segment.upper() != segment)


def redact(text: str) -> str:
    """``text`` with every URL in it shown as ``redact_url`` shows it, and the value of each
    ``password=``/``token=``/``key=``… pair of a connection string hidden."""
    text = _URL.sub(_redact_match, text)
    text = _PASSWORD.sub(rf"\1{HIDDEN}@", text)  # a password holding a quote ends the URL match early
    return _SECRET_PAIR.sub(rf"\1={HIDDEN}", text)


def shown(text: str) -> str:
    """``text`` as a message may reach the terminal: credentials hidden (``redact``) and
    control characters escaped, on one line (``errors.printable``)."""
    return printable(redact(text))


def _redact_match(match: re.Match[str]) -> str:
    """A URL found in running text; the punctuation that ends a sentence is not its own."""
    url = match.group(0)
    core = url.rstrip(".,;:!?)]}")
    return redact_url(core) + url[len(core) :]


def hide(text: str, secrets: Iterable[str]) -> str:
    """``text`` with each of ``secrets`` (a password a driver may echo) replaced by ``***``
    where it stands as a word of its own, never inside another word ("e***pired")."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(secret)}(?![A-Za-z0-9])", HIDDEN, text)
    return text


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redact_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redact_value(v) for v in value]
    return value


class JSONFormatter(logging.Formatter):
    """One JSON object a line: time, level, event and any ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "time": datetime.fromtimestamp(record.created, tz=timezone.utc).isoformat(),
            "level": record.levelname.lower(),
            "event": redact(record.getMessage()),
        }
        payload.update(_redact_value(getattr(record, "fields", {})))
        if record.exc_info:
            payload["error"] = redact(self.formatException(record.exc_info))
        return json.dumps(payload, default=str, ensure_ascii=False)


class RedactingFormatter(logging.Formatter):
    """The plain text format, with credentials hidden and control characters escaped."""

    def format(self, record: logging.LogRecord) -> str:
        return printable(redact(super().format(record)), keep_lines=True)


def setup_logging(verbosity: int, fmt: str = "text", log_file: Path | None = None) -> None:
    """Configure the ``storysync`` logger for one command run."""
    logger = logging.getLogger(LOGGER)
    for old in logger.handlers:
        old.close()  # a previous run's log file (the CLI run in-process, as the tests do)
    logger.handlers.clear()
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    formatter: logging.Formatter = JSONFormatter() if fmt == "json" else RedactingFormatter("storysync: %(message)s")
    console = logging.StreamHandler()
    console.setLevel(logging.DEBUG if verbosity > 0 else logging.WARNING if verbosity == 0 else logging.ERROR)
    console.setFormatter(formatter)
    logger.addHandler(console)
    if log_file is not None:
        handler = _open_log_file(log_file)
        handler.setLevel(logging.INFO)
        handler.setFormatter(
            JSONFormatter() if fmt == "json" else RedactingFormatter("%(asctime)s %(levelname)s %(message)s")
        )
        logger.addHandler(handler)


def _open_log_file(log_file: Path) -> logging.FileHandler:
    """A handler appending to ``log_file``; a file that cannot be opened is a one-line error
    (exit 2 when the path is wrong: a missing folder, a folder in the way; else exit 3)."""
    try:
        return logging.FileHandler(log_file, encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
        raise UsageError(f"{log_file}: cannot open the --log-file: {exc.strerror} (does its folder exist?)") from exc
    except OSError as exc:
        raise StorysyncError(f"{log_file}: cannot open the --log-file: {exc.strerror}") from exc


def get_logger() -> logging.Logger:
    """The storysync logger."""
    return logging.getLogger(LOGGER)


def crash_dir() -> Path:
    """The user's own folder for crash logs: ``$XDG_CACHE_HOME/storysync``, by default
    ``~/.cache/storysync``."""
    cache = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(cache) if os.path.isabs(cache) else Path.home() / ".cache"  # a relative value is ignored (XDG)
    return base / "storysync"


def log_crash(exc: BaseException) -> Path:
    """Write an unexpected exception's traceback, redacted, to a new file of its own; return where.

    The file is made afresh for each crash (never a fixed name another user could own or
    plant a symlink at), readable by the user only (0600): in ``crash_dir()``, a folder of
    the user's own (made 0700), or, when that cannot be had, under a unique name in the
    temporary directory.  Raises ``OSError`` when neither can be written.
    """
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    stamp = datetime.now(timezone.utc)
    prefix = f"storysync-crash-{stamp:%Y%m%dT%H%M%S}-"
    try:
        fd, name = tempfile.mkstemp(prefix=prefix, suffix=".log", dir=_private_dir(crash_dir()))
    except (OSError, RuntimeError):  # RuntimeError: no home directory to be found
        fd, name = tempfile.mkstemp(prefix=prefix, suffix=".log")  # O_EXCL, mode 0600, a new random name
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(f"--- {stamp.isoformat()}\n{redact(text)}\n")
    return Path(name)


def _private_dir(path: Path) -> Path:
    """``path``, created 0700 if missing; refused (``OSError``) unless it is a real folder
    (not a symlink) owned by this user."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        raise PermissionError(f"{path}: not a folder of this user's own")
    return path


def log_failure(command: str | None, exc: BaseException, exit_code: int, internal: bool) -> None:
    """Record one failed command in the ``--log-file`` (text or JSON), redacted.

    The terminal already has the one-line error, so console handlers are skipped
    and it stays one line.  An internal error carries its traceback.
    """
    logger = get_logger()
    kind = "internal error" if internal else "error"
    fields = {
        "event_type": "command_failed",
        "command": command,
        "exit_code": exit_code,
        "error_type": type(exc).__name__,
        "error": redact(str(exc)),
    }
    exc_info = (type(exc), exc, exc.__traceback__) if internal else None
    record = logger.makeRecord(
        LOGGER, logging.ERROR, __file__, 0, "%s failed (exit %d): %s: %s", (command, exit_code, kind, exc), exc_info
    )
    record.fields = fields
    for handler in logger.handlers:
        if isinstance(handler, logging.FileHandler) and record.levelno >= handler.level:
            handler.handle(record)


# END
