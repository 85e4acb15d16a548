"""The backlog as lists: filtered stories, what is ready or blocked, the dependency tree, the board.

Every question is a SQL text with named ``:param`` placeholders whose values are
bound, never formatted in (a filter's values get numbered names such as
``:status_1``).  The texts run through a ``Reader`` (``storysync.db.queries``): a
SQLAlchemy connection on any database, or the standard library's sqlite3 on a
current SQLite file, which saves importing SQLAlchemy (``storysync.db.sqlite_reader``).
Only the two places where SQLite and PostgreSQL differ (a tag inside the JSON list,
a case-insensitive search) depend on the dialect.  Sorting is done here, in Python,
so that both databases give the same order whatever their collation.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from storysync.errors import UsageError

if TYPE_CHECKING:
    from storysync.db.database import Database
    from storysync.db.queries import Reader

T = TypeVar("T")

TABLE = ("id", "status", "backlog", "priority", "points", "assignee", "title")  # the columns of a list's table
PRIORITIES = ("critical", "high", "medium", "low")  # most urgent first
SORT_KEYS = ("id", "title", "status", "backlog", "priority", "points", "assignee", "epic", "updated")
DONE_STATUS = "completed"
STARTED_STATUS = "active"
_LIKE_ESCAPE = "!"

COLUMNS = "id, title, status, backlog_id, priority, points, epic, assignee, tags, path, updated_at, deleted_at"


class Filter(NamedTuple):
    """Which stories to show: each option's values are alternatives (any one matches),
    except ``tags``, where a story must carry every one; options combine with AND."""

    statuses: tuple[str, ...] = ()
    backlogs: tuple[str, ...] = ()
    assignees: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    priorities: tuple[str, ...] = ()
    epics: tuple[str, ...] = ()
    search: str | None = None  # in the title or the body, case-insensitive
    deleted: bool = False  # the deleted stories instead of the live ones


class StoryRow(NamedTuple):
    """One story as the lists show it (``tags_raw`` as the database returned it)."""

    id: str
    title: str
    status: str
    backlog: str
    priority: str | None
    points: int | None
    epic: str | None
    assignee: str | None
    tags_raw: Any
    path: str | None
    updated_at: Any
    deleted_at: Any

    @property
    def tags(self) -> list[str]:
        """The story's tags (decoded only when asked: most lists never show them)."""
        raw = self.tags_raw
        if isinstance(raw, str):
            raw = json.loads(raw) if raw not in ("", "[]", "null") else []
        return [str(t) for t in raw] if isinstance(raw, list) else []

    def as_dict(self) -> dict[str, Any]:
        """The JSON form: ``id``, ``title``, ``status``, ``backlog`` and the other fields."""
        return {
            "id": self.id,
            "title": self.title,
            "status": self.status,
            "backlog": self.backlog,
            "priority": self.priority,
            "points": self.points,
            "epic": self.epic,
            "assignee": self.assignee,
            "tags": self.tags,
            "path": self.path,
            "updated_at": iso(self.updated_at),
            "deleted_at": iso(self.deleted_at),
        }


# --------------------------------------------------------------------------- stages


def done_status(stages: Mapping[str, str]) -> str:
    """The status that means done: ``completed`` when configured, else the last stage's."""
    statuses = list(stages.values())
    return DONE_STATUS if DONE_STATUS in statuses or not statuses else statuses[-1]


def started_status(stages: Mapping[str, str]) -> str | None:
    """The status where work starts: ``active`` when configured, else the stage before done."""
    statuses = list(dict.fromkeys(stages.values()))
    if STARTED_STATUS in statuses:
        return STARTED_STATUS
    done = statuses.index(done_status(stages)) if done_status(stages) in statuses else len(statuses)
    return statuses[done - 1] if done >= 1 else None


def status_order(stages: Mapping[str, str], seen: Iterable[str] = ()) -> list[str]:
    """The configured statuses in stage order, then any other status found, sorted."""
    ordered = list(dict.fromkeys(stages.values()))
    return ordered + sorted(set(seen) - set(ordered))


# --------------------------------------------------------------------------- list


class _Query:
    """A WHERE clause being built: its conditions and their bound values."""

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect
        self.where: list[str] = []
        self.params: dict[str, Any] = {}

    def any_of(self, column: str, name: str, values: Sequence[str]) -> None:
        if values:
            names = [f"{name}_{i}" for i in range(len(values))]
            self.where.append(f"{column} IN ({', '.join(':' + n for n in names)})")
            self.params.update(zip(names, values, strict=True))

    def tag(self, i: int, tag: str) -> None:
        name = f"tag_{i}"
        if self.dialect == "postgresql":
            self.where.append(f"stories.tags @> CAST(:{name} AS jsonb)")
            self.params[name] = json.dumps([tag])
        else:
            in_list = f"SELECT 1 FROM json_each(stories.tags) WHERE json_each.value = :{name}"  # noqa: S608 - bound
            self.where.append(f"EXISTS ({in_list})")
            self.params[name] = tag

    def search(self, text: str) -> bool:
        """Add the search condition; False when SQL cannot decide it (SQLite folds only
        ASCII letters), and the caller checks the rows itself."""
        if self.dialect != "postgresql" and not text.isascii():
            return False
        like = "ILIKE" if self.dialect == "postgresql" else "LIKE"
        escape = f"ESCAPE '{_LIKE_ESCAPE}'"
        self.where.append(f"(stories.title {like} :search {escape} OR stories.body {like} :search {escape})")
        self.params["search"] = "%" + _like_escaped(text) + "%"
        return True


def _like_escaped(text: str) -> str:
    return "".join(_LIKE_ESCAPE + ch if ch in (_LIKE_ESCAPE, "%", "_") else ch for ch in text)


# ids in number order within a prefix (WEB-2 before WEB-10), as ``id_key`` orders them:
# the prefix, then the id's length (its number's, for one prefix), then the id itself
ID_ORDER = {
    "sqlite": "substr(stories.id, 1, instr(stories.id, '-') - 1), length(stories.id), stories.id",
    "postgresql": 'split_part(stories.id, \'-\', 1) COLLATE "C", length(stories.id), stories.id COLLATE "C"',
}
# the cells of the table ``list`` prints, as text, empty values as '-' (the title last)
_CELL_LIST = (
    "stories.id",
    "stories.status",
    "stories.backlog_id",
    "coalesce(stories.priority, '-')",
    "coalesce(CAST(stories.points AS TEXT), '-')",
    "coalesce(stories.assignee, '-')",
    "stories.title",
)
CELLS = ", ".join(_CELL_LIST)


def story_where(flt: Filter, dialect: str) -> tuple[str, dict[str, Any], bool]:
    """The WHERE condition of the stories ``flt`` wants, its parameters, and whether the
    search is left to Python (SQLite folds only ASCII letters)."""
    q = _Query(dialect)
    q.where.append("stories.deleted_at IS NOT NULL" if flt.deleted else "stories.deleted_at IS NULL")
    q.any_of("stories.status", "status", flt.statuses)
    q.any_of("stories.backlog_id", "backlog", flt.backlogs)
    q.any_of("stories.assignee", "assignee", flt.assignees)
    q.any_of("stories.priority", "priority", flt.priorities)
    q.any_of("stories.epic", "epic", flt.epics)
    for i, tag in enumerate(dict.fromkeys(flt.tags)):
        q.tag(i, tag)
    in_python = bool(flt.search) and not q.search(flt.search or "")
    return " AND ".join(q.where), q.params, in_python  # fixed fragments; every value is bound


def story_query(flt: Filter, dialect: str, columns: str = COLUMNS) -> tuple[str, dict[str, Any], bool]:
    """The SELECT of ``columns`` of the stories ``flt`` wants, in id order, its parameters,
    and whether the rows still need the search checked in Python (then the title and
    the body are selected last, to check)."""
    where, params, in_python = story_where(flt, dialect)
    selected = columns + (", stories.title, stories.body" if in_python else "")
    order = ID_ORDER.get(dialect, ID_ORDER["sqlite"])
    return f"SELECT {selected} FROM stories WHERE {where} ORDER BY {order}", params, in_python  # noqa: S608


def _searched(rows: Sequence[Sequence[Any]], flt: Filter, width: int) -> list[Sequence[Any]]:
    """The rows whose title or body (the two last columns) holds the search text, any case,
    cut back to their first ``width`` columns."""
    wanted = (flt.search or "").casefold()
    return [r[:width] for r in rows if wanted in r[-2].casefold() or wanted in r[-1].casefold()]


def read_stories(reader: Reader, dialect: str, flt: Filter) -> list[StoryRow]:
    """The stories ``flt`` wants, in id order (``id_key``)."""
    sql, params, in_python = story_query(flt, dialect)
    rows = reader.rows(sql, params)
    return list(map(StoryRow._make, _searched(rows, flt, 12) if in_python else rows))


def read_cells(reader: Reader, dialect: str, flt: Filter) -> list[Sequence[str]]:
    """What ``list`` shows in its table (``TABLE``) for the stories ``flt`` wants, in id
    order, as text: ``read_stories`` without building a ``StoryRow`` a story, which at
    100,000 stories costs more than the query."""
    sql, params, in_python = story_query(flt, dialect, CELLS)
    rows = reader.rows(sql, params)
    return _searched(rows, flt, 7) if in_python else list(rows)


# how many stories, their cells' widths (the title's aside), and whether a line would end in
# padding (an empty or space-ended title, which Python's rstrip takes off with the padding)
_MEASURES = (
    "count(*), "
    + ", ".join(f"max(length({cell}))" for cell in _CELL_LIST[:-1])
    + ", max(stories.title = '' OR rtrim(stories.title) <> stories.title)"
)
_PRINTABLE = bytes(range(0x20, 0x7F))  # printable ASCII, which SQLite's printf pads as Python does


def read_table_text(reader: Reader, dialect: str, flt: Filter) -> tuple[bytes, ...] | None:
    """``read_cells`` as the lines of a plain table (``TABLE``'s columns padded to their
    widest cell or name, two spaces apart), formatted by SQLite itself, which at 100,000
    stories takes a third of the time Python does: ASCII bytes in parts, to be written one
    after the other (the stories' 12 MB come as one part, never copied to join or encode
    them).  None where SQLite cannot do it exactly: another database, a search left to
    Python, a value that is not printable ASCII (its padding would count bytes); the
    caller then pads ``read_cells``."""
    where, params, in_python = story_where(flt, dialect)
    if dialect != "sqlite" or in_python:
        return None
    count, *longest, padded = reader.rows(f"SELECT {_MEASURES} FROM stories WHERE {where}", params)[0]  # noqa: S608
    widths = [max(len(name), n or 0) for name, n in zip(TABLE[:-1], longest, strict=True)]
    line = "  ".join(f"%-{w}s" for w in widths) + "  %s"
    head = ((line % TABLE).rstrip() + "\n").encode("ascii")
    if not count:
        return (head,)
    cell = f"rtrim(printf(:line, {CELLS}))" if padded else f"printf(:line, {CELLS})"
    # one value, not a row a story: SQLite keeps a FROM-clause subquery's ORDER BY when the
    # query above it aggregates with anything but count, min or max (faster here than the
    # ORDER BY inside group_concat of SQLite 3.44, which older versions lack)
    lines = f"SELECT {cell} AS line FROM stories WHERE {where} ORDER BY {ID_ORDER['sqlite']}"  # noqa: S608
    sql = f"SELECT CAST(group_concat(line, char(10)) AS BLOB) FROM ({lines})"  # noqa: S608 - bound values
    body = reader.rows(sql, {**params, "line": line})[0][0]
    # every byte printable ASCII but the newlines between the lines (one more would be in
    # a value, which the table must show escaped)
    if not isinstance(body, bytes) or body.translate(None, _PRINTABLE) != b"\n" * (count - 1):
        return None
    return head, body, b"\n"


def list_stories(
    db: Database, flt: Filter | None = None, sort: str = "id", reverse: bool = False, stages: Mapping[str, str] = {}
) -> list[StoryRow]:
    """The stories ``flt`` wants (every live one by default), sorted by ``sort``."""
    rows = on(db, lambda reader, dialect: read_stories(reader, dialect, flt or Filter()))
    return (
        rows[::-1] if sort == "id" and reverse else rows if sort == "id" else sort_stories(rows, sort, reverse, stages)
    )


def on(db: Database, work: Callable[[Reader, str], T]) -> T:
    """``work(reader, dialect)`` in one read-only transaction of ``db``: how a Python caller
    asks any view, e.g. ``on(db, lambda r, d: graph.read_ready(r, d, Filter(), "completed"))``."""
    with db.read() as conn:
        return work(connection_reader(conn), db.engine.dialect.name)


def read_with(url: str, open_db: Callable[[], Database], work: Callable[[Reader, str], T]) -> T:
    """``work(reader, dialect)`` in one read-only transaction: through sqlite3 when ``url``
    is a current storysync SQLite file, else through ``open_db()`` (SQLAlchemy), which
    creates or upgrades the schema first, as every command does."""
    # local: the sqlite3 reader or SQLAlchemy: only the one the database needs
    from storysync.db import sqlite_reader

    fast = sqlite_reader.read(url, lambda reader: work(reader, "sqlite"))
    if fast is not None:
        return fast
    db = open_db()
    db.ensure_schema()
    return on(db, work)


def connection_reader(conn: Any) -> Reader:
    """A ``Reader`` over an open SQLAlchemy connection."""
    # local: the sqlite3 reader or SQLAlchemy: only the one the database needs
    from storysync.db.queries import ConnectionReader

    return ConnectionReader(conn)


def sort_stories(
    rows: list[StoryRow], sort: str = "id", reverse: bool = False, stages: Mapping[str, str] = {}
) -> list[StoryRow]:
    """``rows`` ordered by ``sort`` (ids in number order: WEB-2 before WEB-10; priority
    most urgent first; statuses in stage order; empty values last), then by id."""
    if sort not in SORT_KEYS:
        raise UsageError(f"cannot sort by {sort!r}: choose one of {', '.join(SORT_KEYS)}")
    rows = sorted(rows, key=lambda r: id_key(r.id))
    if sort == "id":
        return rows[::-1] if reverse else rows
    key = _sort_key(sort, rows, stages)
    present = [r for r in rows if key(r) is not None]
    missing = [r for r in rows if key(r) is None]
    return sorted(present, key=key, reverse=reverse) + missing  # stable: ties keep the id order


def _sort_key(sort: str, rows: Sequence[StoryRow], stages: Mapping[str, str]) -> Any:
    if sort == "priority":
        rank = {p: i for i, p in enumerate(PRIORITIES)}
        return lambda r: None if r.priority is None else (rank.get(r.priority, len(rank)), r.priority)
    if sort == "status":
        order = {s: i for i, s in enumerate(status_order(stages, (r.status for r in rows)))}
        return lambda r: order[r.status]
    if sort == "updated":
        return lambda r: stamp(r.updated_at)
    attribute = {"backlog": "backlog", "title": "title", "points": "points", "assignee": "assignee", "epic": "epic"}
    name = attribute[sort]
    if name == "points":
        return lambda r: r.points
    return lambda r: None if getattr(r, name) is None else str(getattr(r, name)).casefold()


def id_key(story_id: str) -> tuple[str, int, str]:
    """Ids in number order within a prefix, WEB-2 before WEB-10 (the order ``ID_ORDER`` gives
    in SQL: the prefix, the length, the id)."""
    return (story_id.partition("-")[0], len(story_id), story_id)


# --------------------------------------------------------------------------- time values


def stamp(value: Any) -> datetime | None:
    """A timestamp as the database returned it (a datetime, or SQLite's text) as UTC."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def iso(value: Any) -> str | None:
    """A timestamp in ISO 8601, UTC (``2026-04-01T09:00:00+00:00``)."""
    moment = stamp(value)
    return None if moment is None else moment.isoformat()


def live_only(flt: Filter) -> Filter:
    """``flt``, which must not ask for deleted stories (they are neither ready, blocked nor on a board)."""
    if flt.deleted:
        raise UsageError("a deleted story is neither ready nor blocked: --deleted is for 'storysync list'")
    return flt
