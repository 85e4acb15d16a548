"""The data a sync run passes along: its options and result, the rows it compares with, its plan."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from sqlalchemy import Connection

from storysync.check.validate import Checked
from storysync.errors import Diagnostic
from storysync.story.model import Record

if TYPE_CHECKING:
    from storysync.check.validate import Checked

    pass


TRIGGERS = ("manual", "hook", "ci", "watch")


@dataclass(frozen=True)
class SyncOptions:
    """What a sync run should do (the ``storysync sync`` flags)."""

    from_rev: str | None = None
    to_rev: str | None = None
    full: bool = False
    working_tree: bool = False
    keep_going: bool = False
    dry_run: bool = False
    trigger: str = "manual"
    # With ``working_tree``: sync only these repository-relative paths (watch's
    # batches); a path gone from disk soft-deletes the row stored at that path.
    paths: tuple[str, ...] | None = None
    # With ``full``: rebuild the file-side status history from the whole git log.
    history: bool = False
    # Sync a commit that is older than the last synced one (its ancestor), or whose
    # relation to it this clone cannot tell: otherwise refused (hooks never pass it).
    allow_rewind: bool = False
    # A story changed in its file and in the database: "fields" (merged) or "file-wins" (config ``merge``).
    merge: str = "fields"


@dataclass
class SyncResult:
    """What a run did, for the report and the exit code."""

    outcome: str = "ok"  # ok | invalid | failed
    run_id: int | None = None
    from_commit: str | None = None
    to_commit: str | None = None
    full: bool = False
    dry_run: bool = False
    files: int = 0
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    moved: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    unchanged: int = 0
    diagnostics: list[Diagnostic] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    # The story paths a working-tree run wrote, recorded as such (``storysync.worktree``).
    worktree_written: list[str] = field(default_factory=list)
    # (branch, story id) of the branch overlay rows the run dropped: merged or promoted (``ingest.overlay``).
    promoted: list[tuple[str, str]] = field(default_factory=list)

    @property
    def upserted(self) -> int:
        return len(self.created) + len(self.updated)

    @property
    def exit_code(self) -> int:
        return 1 if self.diagnostics else 0


@dataclass(frozen=True)
class DbRow:
    """What the planner needs to know about an existing ``stories`` row."""

    id: str
    path: str | None
    content_hash: str | None
    status: str
    backlog_id: str
    revision: int
    synced_revision: int
    deleted: bool
    # The row holds a DB-side version that lost to its file (``plan.lost_to_file``):
    # the file is read into it again whatever its hash.
    lost: bool = False


@dataclass
class Plan:
    """The writes one run will make."""

    creates: list[Record] = field(default_factory=list)
    revives: list[tuple[Record, DbRow]] = field(default_factory=list)
    updates: list[tuple[Record, DbRow]] = field(default_factory=list)
    deletes: list[DbRow] = field(default_factory=list)
    unchanged: int = 0


@dataclass(frozen=True)
class Provenance:
    """The commit a run's content comes from (None for the working tree)."""

    sha: str | None
    author: str | None
    when: datetime


MovesById = dict[str, list[tuple[str | None, str, "Provenance"]]]


Planner = Callable[[Connection], "Plan"]


class HistoryWriter(Protocol):
    """The stage moves a git range made, written in a run's transaction around ``apply``
    (``ingest.history.HistoryPlan``)."""

    def for_plan(self, conn: Connection, plan: Plan, checked: Checked) -> MovesById:
        """The moves ``apply`` records for the stories ``plan`` creates or moves."""
        ...

    def before(self, conn: Connection) -> None:
        """Before ``apply``, in its transaction."""
        ...

    def after(self, conn: Connection) -> None:
        """After ``apply``, in its transaction."""
        ...
