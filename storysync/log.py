"""Logging setup: human lines on the terminal, optional JSON records and a log file.

Database passwords never reach a record: URLs are rendered with the password hidden
before they are logged, and ``redact`` scrubs any that slip into a message.
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import tempfile
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from storysync.errors import StorysyncError, UsageError

LOGGER = "storysync"
_PASSWORD = re.compile(r"(://[^:/@\s]+:)[^@\s]+@")


def redact(text: str) -> str:
    """Hide the password in any URL inside ``text``."""
    return _PASSWORD.sub(r"\1***@", text)


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
    """The plain text format, with URL passwords hidden."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


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
