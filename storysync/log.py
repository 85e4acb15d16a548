"""Logging setup: human lines on the terminal, optional JSON records and a log file.

Database passwords never reach a record: URLs are rendered with the password hidden
before they are logged, and ``redact`` scrubs any that slip into a message.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
import traceback
from datetime import datetime, timezone
from pathlib import Path

LOGGER = "storysync"
_PASSWORD = re.compile(r"(://[^:/@\s]+:)[^@\s]+@")


def redact(text: str) -> str:
    """Hide the password in any URL inside ``text``."""
    return _PASSWORD.sub(r"\1***@", text)


class JSONFormatter(logging.Formatter):
    """One JSON object a line: time, level, event and any ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "time": datetime.fromtimestamp(record.created, tz=timezone.utc).isoformat(),
            "level": record.levelname.lower(),
            "event": redact(record.getMessage()),
        }
        payload.update(getattr(record, "fields", {}))
        return json.dumps(payload, default=str)


class RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def setup_logging(verbosity: int, fmt: str = "text", log_file: Path | None = None) -> None:
    """Configure the ``storysync`` logger for one command run."""
    logger = logging.getLogger(LOGGER)
    logger.handlers.clear()
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    formatter: logging.Formatter = JSONFormatter() if fmt == "json" else RedactingFormatter("storysync: %(message)s")
    console = logging.StreamHandler()
    console.setLevel(logging.DEBUG if verbosity > 0 else logging.WARNING if verbosity == 0 else logging.ERROR)
    console.setFormatter(formatter)
    logger.addHandler(console)
    if log_file is not None:
        handler = logging.FileHandler(log_file, encoding="utf-8")
        handler.setLevel(logging.INFO)
        handler.setFormatter(
            JSONFormatter() if fmt == "json" else RedactingFormatter("%(asctime)s %(levelname)s %(message)s")
        )
        logger.addHandler(handler)


def get_logger() -> logging.Logger:
    """The storysync logger."""
    return logging.getLogger(LOGGER)


def log_crash(exc: BaseException) -> Path:
    """Write an unexpected exception's traceback to a file; return where."""
    path = Path(tempfile.gettempdir()) / "storysync-crash.log"
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(f"--- {datetime.now(timezone.utc).isoformat()}\n{redact(text)}\n")
    return path
