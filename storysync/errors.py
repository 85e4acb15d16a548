"""The storysync error family and the ``Diagnostic`` a check reports.

Every error a user sees is one line.  Expected failures are ``StorysyncError``
subclasses carrying the exit code the command line turns them into (SPEC §5).
"""

from __future__ import annotations

from dataclasses import dataclass

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2
EXIT_RUNTIME = 3
EXIT_REFUSED = 4


def printable(text: str, *, keep_lines: bool = False) -> str:
    """``text`` safe to show on a terminal: every control character (C0 and C1: ESC, BEL,
    DEL, CSI; so no escape sequence can set the window title, write the clipboard or
    redraw the screen) and every other non-printable one written escaped (``\\x1b``,
    ``\\n``), so that a report stays one line.  With ``keep_lines``, newlines and tabs
    stay as they are (a story's body).  The one rule for user text in human output;
    JSON output keeps the exact values."""
    if text.isprintable():
        return text
    if keep_lines:
        return "\n".join("\t".join(map(printable, line.split("\t"))) for line in text.split("\n"))
    text = utf8_safe(text)
    return "".join(ch if ch.isprintable() or ch == " " else ch.encode("unicode_escape").decode("ascii") for ch in text)


def utf8_safe(text: str) -> str:
    """``text`` with the undecodable bytes of a file name (lone surrogates) written ``\\xe9``,
    so that it can be printed, stored and sent as UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        try:
            raw = text.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            return text.encode("utf-8", "backslashreplace").decode("utf-8")
        return raw.decode("utf-8", "backslashreplace")
    return text


@dataclass(frozen=True, order=True)
class Diagnostic:
    """One problem in one file, at a 1-based line and column."""

    path: str
    line: int
    col: int
    code: str
    message: str

    def __str__(self) -> str:
        return f"{printable(self.path)}:{self.line}:{self.col}: {printable(self.message)}"

    def as_dict(self) -> dict[str, object]:
        """The JSON form used by ``--format json`` and ``sync_runs.errors``."""
        return {
            "path": utf8_safe(self.path),
            "line": self.line,
            "col": self.col,
            "code": self.code,
            "message": self.message,
        }


class StorysyncError(Exception):
    """Base of every expected failure; ``exit_code`` is what the CLI returns."""

    exit_code = EXIT_RUNTIME


class UsageError(StorysyncError):
    """The command was called wrongly (an unknown id, a bad argument)."""

    exit_code = EXIT_USAGE


class ConfigError(StorysyncError):
    """``storysync.toml`` or ``[tool.storysync]`` is wrong or unreadable."""

    exit_code = EXIT_USAGE


class GitError(StorysyncError):
    """git failed or the repository is missing or unreadable."""

    exit_code = EXIT_RUNTIME


class DatabaseError(StorysyncError):
    """The database is unreachable, locked after retries, or refused a write.

    ``unavailable``: it could not be reached or stayed locked, so nothing more can be
    written to it now (not even the failed run's audit row)."""

    exit_code = EXIT_RUNTIME

    def __init__(self, message: str, *, unavailable: bool = False) -> None:
        super().__init__(message)
        self.unavailable = unavailable


class RepositoryStateError(StorysyncError):
    """The repository is in a state that refuses the operation (merge, rebase, lock)."""

    exit_code = EXIT_REFUSED


class ValidationFailed(StorysyncError):
    """Input was invalid; the diagnostics say where."""

    exit_code = EXIT_INVALID

    def __init__(self, diagnostics: list[Diagnostic], message: str = "") -> None:
        self.diagnostics = diagnostics
        super().__init__(message or f"{len(diagnostics)} error(s)")


class ConflictError(StorysyncError):
    """Both sides changed a story; the file won and the DB version was kept."""

    exit_code = EXIT_INVALID
