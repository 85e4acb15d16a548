"""What one watch batch did: read by the status line, the log and the metrics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from storysync.errors import Diagnostic
    from storysync.ingest.types import SyncResult


@dataclass
class Outcome:
    """What one batch did, for the status line, the log and the metrics."""

    paths: int
    result: SyncResult | None = None
    problems: list[Diagnostic] = field(default_factory=list)  # first seen in this batch
    fixed: list[str] = field(default_factory=list)  # paths whose problems are gone
    error: str | None = None  # the whole batch failed (database, lock); it will be retried
    duration: float = 0.0
    lag: float | None = None  # first event → committed, seconds
    rescan: bool = False

    @property
    def label(self) -> str:
        """ok, invalid (some files skipped) or failed."""
        if self.error is not None:
            return "failed"
        return "invalid" if self.result is not None and self.result.diagnostics else "ok"
