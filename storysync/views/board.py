"""The board: each backlog's stories in columns, one per status in stage order."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from storysync.db.branches import BranchStatus, read_overlay
from storysync.views.queries import Filter, StoryRow, live_only, read_stories, sort_stories, status_order

if TYPE_CHECKING:
    from storysync.db.queries import Reader


@dataclass
class Column:
    """One status of a backlog's board, its stories most urgent first."""

    status: str
    stage: str | None
    stories: list[StoryRow]


@dataclass
class Board:
    """A backlog's stories in columns, one per status in stage order."""

    backlog: str
    columns: list[Column]
    # story id -> the branches where its file differs (the branch overlay), for its card
    branches: Mapping[str, list[BranchStatus]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """``{backlog, columns: [{status, stage, stories: [...]}]}``; each story with its
        ``branches`` (``[{branch, status, kind}]``: where its file differs, the branch overlay)."""
        return {
            "backlog": self.backlog,
            "columns": [
                {"status": c.status, "stage": c.stage, "stories": [self._story(s) for s in c.stories]}
                for c in self.columns
            ],
        }

    def _story(self, row: StoryRow) -> dict[str, Any]:
        return row.as_dict() | {"branches": [b.as_dict() for b in self.branches.get(row.id, ())]}


def boards(
    rows: Iterable[StoryRow], stages: Mapping[str, str], overlay: Mapping[str, list[BranchStatus]] | None = None
) -> list[Board]:
    """One board per backlog (sorted by name) with a column for every configured status;
    each card in its main status's column, with the branches it differs on (``overlay``)."""
    rows = list(rows)
    stage_of = {status: stage for stage, status in reversed(list(stages.items()))}
    statuses = status_order(stages, (r.status for r in rows))
    by_backlog: dict[str, dict[str, list[StoryRow]]] = {}
    for row in sort_stories(rows, "priority"):
        by_backlog.setdefault(row.backlog, {}).setdefault(row.status, []).append(row)
    return [
        Board(backlog, [Column(s, stage_of.get(s), columns.get(s, [])) for s in statuses], overlay or {})
        for backlog, columns in sorted(by_backlog.items())
    ]


def read_board(reader: Reader, dialect: str, flt: Filter, stages: Mapping[str, str]) -> list[Board]:
    """The boards of the stories ``flt`` wants, with the branch overlay."""
    return boards(read_stories(reader, dialect, live_only(flt)), stages, read_overlay(reader))
