"""The board: each backlog's stories in columns, one per status in stage order."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

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

    def as_dict(self) -> dict[str, Any]:
        """``{backlog, columns: [{status, stage, stories: [...]}]}``."""
        return {
            "backlog": self.backlog,
            "columns": [
                {"status": c.status, "stage": c.stage, "stories": [s.as_dict() for s in c.stories]}
                for c in self.columns
            ],
        }


def boards(rows: Iterable[StoryRow], stages: Mapping[str, str]) -> list[Board]:
    """One board per backlog (sorted by name) with a column for every configured status."""
    rows = list(rows)
    stage_of = {status: stage for stage, status in reversed(list(stages.items()))}
    statuses = status_order(stages, (r.status for r in rows))
    by_backlog: dict[str, dict[str, list[StoryRow]]] = {}
    for row in sort_stories(rows, "priority"):
        by_backlog.setdefault(row.backlog, {}).setdefault(row.status, []).append(row)
    return [
        Board(backlog, [Column(s, stage_of.get(s), columns.get(s, [])) for s in statuses])
        for backlog, columns in sorted(by_backlog.items())
    ]


def read_board(reader: Reader, dialect: str, flt: Filter, stages: Mapping[str, str]) -> list[Board]:
    """The boards of the stories ``flt`` wants."""
    return boards(read_stories(reader, dialect, live_only(flt)), stages)
