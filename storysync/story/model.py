"""Plain data shared by the parser, the checks, sync and export.  No I/O here."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol

# Frontmatter keys that have their own column (or table) in the database.
COLUMN_KEYS = ("id", "title", "status", "backlog", "priority", "points", "epic", "assignee", "tags")
RELATION_KEYS = ("depends_on",)
KNOWN_KEYS = frozenset(COLUMN_KEYS + RELATION_KEYS)

Mark = tuple[int, int]  # 1-based (line, column) in the file
KeyPath = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Location:
    """Where a story file lives: its stage directory and backlog directory."""

    path: str  # relative to the repository root, POSIX
    stage: str
    status: str
    backlog: str
    name: str  # file name


@dataclass
class Story:
    """A parsed story file: frontmatter values with their positions, and the body."""

    location: Location
    frontmatter: dict[str, Any]
    body: str
    content_hash: str
    bom: bool = False
    value_marks: dict[KeyPath, Mark] = field(default_factory=dict)
    key_marks: dict[KeyPath, Mark] = field(default_factory=dict)
    written: dict[KeyPath, str] = field(default_factory=dict)  # source text of non-string scalars

    @property
    def path(self) -> str:
        return self.location.path

    @cached_property
    def id(self) -> str:
        """The ``id`` value when it is a string, else "" (computed once: the frontmatter is not changed)."""
        value = self.frontmatter.get("id")
        return value if isinstance(value, str) else ""

    @cached_property
    def depends_on(self) -> list[str]:
        """The string entries of ``depends_on`` (computed once)."""
        deps = self.frontmatter.get("depends_on") or []
        return [d for d in deps if isinstance(d, str)] if isinstance(deps, list) else []

    def mark(self, path: KeyPath) -> Mark:
        """The position of the value at ``path``, or of its nearest ancestor."""
        probe = tuple(path)
        while probe:
            if probe in self.value_marks:
                return self.value_marks[probe]
            probe = probe[:-1]
        return self.value_marks.get((), (2, 1))

    def row(self) -> dict[str, Any]:
        """The ``stories`` columns this file determines (SPEC §4)."""
        fm = self.frontmatter
        return {
            "id": self.id,
            "backlog_id": self.location.backlog,
            "status": self.location.status,
            "title": fm.get("title"),
            "priority": fm.get("priority"),
            "points": fm.get("points"),
            "epic": fm.get("epic"),
            "assignee": fm.get("assignee"),
            "tags": list(fm.get("tags") or []),
            "extra": {k: v for k, v in fm.items() if k not in KNOWN_KEYS},
            "body": self.body,
            "path": self.location.path,
            "content_hash": self.content_hash,
        }


def to_json(value: Any) -> str:
    """``value`` as a JSON column stores it: what SQLAlchemy's JSON type writes with no
    ``json_serializer`` configured (``json.dumps``; ``tests/test_bulk.py`` pins this)."""
    return json.dumps(value)


class Checkable(Protocol):
    """What the cross-file checks read of a story: a ``Story`` or a ``Record``."""

    @property
    def id(self) -> str: ...

    @property
    def path(self) -> str: ...

    @property
    def depends_on(self) -> list[str]: ...

    def mark(self, path: KeyPath) -> Mark: ...


Place = tuple[str, str, str]  # (stage, status, backlog) of a Location
Columns = tuple[Any, Any, Any, Any, Any, str, str]  # title, priority, points, epic, assignee, tags, extra (JSON text)
Marks = tuple[tuple[KeyPath, Mark], ...]


class Record:
    """A checked story as a sync keeps it until it is written: the ``stories`` columns
    its file determines (``tags`` and ``extra`` as JSON text), its ``depends_on``, and
    only the positions the cross-file checks report at.

    A full sync holds one per story of the repository at once, so it is small:
    slots, no dicts, and equal places, marks and JSON texts shared between records.
    ``body`` is None while it is dropped (``validate.Bodies`` reads it back from
    ``ref``, a blob id or a file path, of ``size`` bytes).
    """

    __slots__ = ("body", "columns", "content_hash", "deps", "id", "marks", "path", "place", "ref", "size")

    def __init__(
        self,
        path: str,
        place: Place,
        story_id: str,
        deps: tuple[str, ...],
        content_hash: str,
        columns: Columns,
        marks: Marks,
        body: str | None,
    ) -> None:
        self.path = path
        self.place = place
        self.id = story_id
        self.deps = deps
        self.content_hash = content_hash
        self.columns = columns
        self.marks = marks
        self.body = body
        self.ref: str | None = None
        self.size = 0

    @property
    def depends_on(self) -> list[str]:
        """The string entries of ``depends_on``."""
        return list(self.deps)

    @property
    def status(self) -> str:
        return self.place[1]

    @property
    def backlog(self) -> str:
        return self.place[2]

    @property
    def location(self) -> Location:
        """Where the file lives (built when asked: a record keeps only its path and place)."""
        stage, status, backlog = self.place
        return Location(self.path, stage, status, backlog, self.path.rpartition("/")[2])

    def mark(self, path: KeyPath) -> Mark:
        """The position of the value at ``path`` (the id, ``depends_on`` and its entries
        are kept), or of its nearest kept ancestor."""
        marks = dict(self.marks)
        probe = tuple(path)
        while probe:
            if probe in marks:
                return marks[probe]
            probe = probe[:-1]
        return marks.get((), (2, 1))
