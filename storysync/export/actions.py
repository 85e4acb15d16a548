"""What an export does: its options, one action per pending row, and the result.

Plain data, shared by the planning and writing (``export.run``) and the commit (``export.commit``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

WRITES = ("update", "move", "create", "delete")


@dataclass(frozen=True)
class ExportOptions:
    """What an export should do (the ``storysync export`` flags)."""

    commit: bool = False
    message: str | None = None
    dry_run: bool = False


@dataclass
class Action:
    """What the export does with one pending row."""

    story_id: str
    kind: str  # update | move | create | delete | in-step | conflict | refused
    revision: int
    old_path: str | None = None
    new_path: str | None = None
    data: bytes | None = None
    reason: str = ""
    file_hash: str | None = None
    snapshot: dict[str, Any] | None = None
    base: dict[str, Any] | None = None  # stories.base once the file holds the row (merge.base_of)
    values: dict[str, Any] | None = None  # a merge's result: the row's new values (merge.row_values)
    merged: list[str] = field(default_factory=list)  # the fields a three-way merge took from both sides
    conflict_fields: list[str] = field(default_factory=list)  # the fields both sides changed differently

    @property
    def content_hash(self) -> str | None:
        if self.kind == "in-step":
            return self.file_hash
        return hashlib.sha256(self.data).hexdigest() if self.data is not None else None

    @property
    def where(self) -> str:
        """The path, or ``old -> new`` for a move."""
        if self.kind == "move":
            return f"{self.old_path} -> {self.new_path}"
        return self.new_path or self.old_path or ""

    def describe(self, dry_run: bool = False) -> str:
        """One line for the report."""
        verb = {"in-step": "in step", "refused": "refused", "conflict": "conflict", "kept": "file kept"}.get(
            self.kind, self.kind + "d"
        )
        if dry_run and self.kind in WRITES:
            verb = "would " + self.kind
        text = f"{verb:<14} {self.story_id}  {self.where}".rstrip()
        return f"{text}: {self.reason}" if self.reason else text


@dataclass
class ExportResult:
    """What an export did (or would do), for the report and the exit code."""

    actions: list[Action] = field(default_factory=list)
    dry_run: bool = False
    commit: str | None = None
    parent: str | None = None  # HEAD before the export's commit

    def of(self, *kinds: str) -> list[Action]:
        return [a for a in self.actions if a.kind in kinds]

    @property
    def exit_code(self) -> int:
        return 1 if self.of("conflict", "refused") or any(a.conflict_fields for a in self.actions) else 0
