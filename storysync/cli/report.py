"""Reporters: diagnostics as text, JSON or GitHub annotations; sync summaries.

Diagnostics go to stdout (what a script or CI reads); summaries and notices go
to stderr.  User text (titles, bodies, paths, names, messages) goes through
``errors.printable`` before it reaches a terminal, so that no escape sequence in it
can act there, and through ``rich_safe`` where rich reads markup.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING, Any

from storysync.errors import Diagnostic, printable, utf8_safe

if TYPE_CHECKING:
    from storysync.ingest.branches import BranchResult
    from storysync.ingest.types import SyncResult

FORMATS = ("text", "json", "github")


def _gh_escape(value: str, *, prop: bool = False) -> str:
    value = value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    if prop:
        value = value.replace(":", "%3A").replace(",", "%2C")
    return value


def github_annotation(d: Diagnostic) -> str:
    """One GitHub Actions ``::error`` workflow command."""
    return (
        f"::error file={_gh_escape(utf8_safe(d.path), prop=True)},line={d.line},col={d.col},"
        f"title={_gh_escape('storysync ' + d.code, prop=True)}::{_gh_escape(printable(d.message))}"
    )


def rich_safe(text: str, *, keep_lines: bool = False) -> str:
    """User text for a rich ``print`` that reads markup: control characters escaped
    (``errors.printable``) and rich's ``[markup]`` too."""
    # local: rich only for a terminal (the hook and piped output write plain text)
    from rich.markup import escape

    return escape(printable(text, keep_lines=keep_lines))


def write_diagnostics(
    diags: Sequence[Diagnostic],
    fmt: str,
    out: IO[str] | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    """Print every diagnostic in ``fmt`` (text, json or github)."""
    out = out or sys.stdout
    if fmt == "json":
        payload: dict[str, Any] = {"ok": not diags, "errors": [d.as_dict() for d in diags]}
        payload.update(extra or {})
        out.write(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
        return
    for d in diags:
        out.write((github_annotation(d) if fmt == "github" else str(d)) + "\n")


def plural(n: int, word: str) -> str:
    """``1 story``, ``2 stories``, ``3 errors``."""
    if n == 1:
        return f"{n} {word}"
    return f"{n} {word[:-1]}ies" if word.endswith("y") else f"{n} {word}s"


def sync_summary(result: SyncResult) -> str:
    """One line saying what a sync did (or would do, for a dry run)."""
    what = "would sync" if result.dry_run else "synced"
    target = (result.to_commit or "working tree")[:12]
    parts = [
        f"{len(result.created)} created",
        f"{len(result.updated)} updated",
        f"{len(result.moved)} moved",
        f"{len(result.deleted)} deleted",
        f"{result.unchanged} unchanged",
    ]
    mode = "full" if result.full else "incremental"
    line = f"storysync: {what} {target} ({mode}, {plural(result.files, 'file')} read): {', '.join(parts)}"
    if result.conflicts:
        line += f"; {plural(len(result.conflicts), 'conflict')} kept (file wins)"
    if result.diagnostics:
        line += f"; {plural(len(result.diagnostics), 'error')}"
    return line


def branch_summary(result: BranchResult) -> str:
    """One line saying what ``sync --branch`` did (or would do, for a dry run)."""
    name = printable(result.branch)
    if result.outcome == "dropped":
        what = "would drop" if result.dry_run else "dropped"
        return f"storysync: {name}: {what} its overlay ({plural(len(result.dropped), 'story')})"
    what = "would record" if result.dry_run else "recorded"
    tip, base = (result.tip or "")[:12], (result.base or "")[:12]
    line = f"storysync: {name} at {tip} (merge base {base}, {plural(result.files, 'file')} read): "
    if result.recorded:
        line += (
            f"{what} {plural(len(result.differing), 'story')} differing from the main line "
            f"({len(result.changed)} new or changed, {len(result.dropped)} dropped)"
        )
    else:
        line += "nothing recorded"
    if result.diagnostics:
        line += f"; {plural(len(result.diagnostics), 'error')}"
    return line


# --------------------------------------------------------------------------- plain tables
# ``status`` prints one table.  Importing rich and laying the table out cost ~25 ms
# and, at 500 backlogs, more than the rest of the run; when stdout is not a terminal
# and the cells are plain ASCII that fits, the text rich would print is simple enough
# to write directly.  Anything else is left to rich (tests compare the two).

_BOX_TOP, _BOX_HEAD, _BOX_RULE, _BOX_ROW, _BOX_BOTTOM = "┏━┳┓", "┃ ┃┃", "┡━╇┩", "│ ││", "└─┴┘"

FULL_WIDTH = 1 << 20  # the width of a console that is not a terminal: no line is wrapped or cut


def not_a_terminal(stream: IO[str] | None = None) -> bool:
    """True when rich would not treat ``stream`` (stdout by default) as a terminal: piped or
    redirected, with no ``TTY_COMPATIBLE=1`` or ``FORCE_COLOR``."""
    tty_compatible = os.environ.get("TTY_COMPATIBLE", "")
    if tty_compatible == "0":
        return True
    if tty_compatible == "1" or os.environ.get("FORCE_COLOR") is not None:
        return False
    try:
        return not (stream or sys.stdout).isatty()
    except (AttributeError, ValueError):  # no stream, or a closed one
        return False


def plain_stdout() -> bool:
    """True when rich would certainly not treat stdout as a terminal (piped or redirected,
    no ``TTY_COMPATIBLE=1`` or ``FORCE_COLOR``) and draws its boxes in Unicode (a UTF
    encoding): its output is then the plain text ``plain_table`` writes."""
    utf = (getattr(sys.stdout, "encoding", None) or "utf-8").lower().startswith("utf")
    if not utf and os.environ.get("TTY_COMPATIBLE", "") != "0":
        return False  # rich draws its boxes in ASCII there
    return not_a_terminal(sys.stdout)


def output_width(stream: IO[str] | None = None) -> int | None:
    """The width to give a rich console on ``stream``: ``FULL_WIDTH`` when it is not a
    terminal and ``COLUMNS`` is not set, so that output piped to a file or another
    program is never wrapped at 80 columns; None (rich's own choice) otherwise."""
    columns = os.environ.get("COLUMNS")
    if columns is not None and columns.isdigit():
        return None
    return FULL_WIDTH if not_a_terminal(stream) else None


def console_width() -> int:
    """The width rich gives a stdout console made with ``output_width``: ``COLUMNS``, else
    ``FULL_WIDTH`` when stdout is not a terminal, else the first of stdin, stdout and
    stderr that is a terminal, else 80."""
    columns = os.environ.get("COLUMNS")
    if columns is not None and columns.isdigit():
        return int(columns)
    if not_a_terminal(sys.stdout):
        return FULL_WIDTH
    for fd in (0, 1, 2):
        try:
            return os.get_terminal_size(fd).columns or 80
        except (AttributeError, ValueError, OSError):
            continue
    return 80


def plain_text(text: str) -> bool:
    """Whether rich prints ``text`` as it is: printable ASCII, no markup, no emoji code,
    no space at either end."""
    return text.isascii() and text.isprintable() and text == text.strip() and "[" not in text and text.count(":") < 2


def plain_table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]], width: int) -> str | None:
    """What rich prints for ``Table(title=title)`` with these columns (the first left-,
    the others right-justified) on a console of ``width`` columns that is not a terminal
    and soft-wraps; None when rich might print anything else (a cell that is not
    ``plain_text``, or a table wider than ``width``)."""
    if not all(plain_text(cell) for cell in (title, *header, *(c for row in rows for c in row))):
        return None
    widths = [len(h) for h in header]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    if sum(widths) + 3 * len(widths) + 1 > width:
        return None

    def line(box: str, cells: Sequence[str] | None = None) -> str:
        if cells is None:
            return box[0] + box[2].join(box[1] * (w + 2) for w in widths) + box[3]
        parts = [cells[0].ljust(widths[0]), *(c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))]
        return box[0] + box[2].join(f" {p} " for p in parts) + box[3]

    lines = [title, line(_BOX_TOP), line(_BOX_HEAD, header), line(_BOX_RULE)]
    lines += [line(_BOX_ROW, row) for row in rows]
    lines.append(line(_BOX_BOTTOM))
    return "\n".join(lines) + "\n"
