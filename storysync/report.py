"""Reporters: diagnostics as text, JSON or GitHub annotations; sync summaries.

Diagnostics go to stdout (what a script or CI reads); summaries and notices go
to stderr.  User text is escaped before it reaches rich markup.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING, Any

from storysync.errors import Diagnostic, utf8_safe

if TYPE_CHECKING:
    from storysync.sync import SyncResult

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
        f"title={_gh_escape('storysync ' + d.code, prop=True)}::{_gh_escape(d.message)}"
    )


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
