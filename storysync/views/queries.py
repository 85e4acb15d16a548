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
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from storysync.errors import UsageError

if TYPE_CHECKING:
    from storysync.db.database import Database
    from storysync.db.queries import Reader

T = TypeVar("T")

PRIORITIES = ("critical", "high", "medium", "low")  # most urgent first
SORT_KEYS = ("id", "title", "status", "backlog", "priority", "points", "assignee", "epic", "updated")
DONE_STATUS = "completed"
STARTED_STATUS = "active"
_LIKE_ESCAPE = "!"

COLUMNS = "id, title, status, backlog_id, priority, points, epic, assignee, tags, path, updated_at, deleted_at"
LIVE_STATUSES = "SELECT id, status, title, backlog_id FROM stories WHERE deleted_at IS NULL"
LIVE_EDGES = (
    "SELECT d.story_id, d.depends_on_id FROM dependencies d JOIN stories s ON s.id = d.story_id "
    "WHERE s.deleted_at IS NULL"
)


@dataclass(frozen=True)
class Filter:
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


@dataclass
class _Query:
    """A WHERE clause being built: its conditions and their bound values."""

    dialect: str
    where: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)

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


def story_query(flt: Filter, dialect: str) -> tuple[str, dict[str, Any], bool]:
    """The SELECT of the stories ``flt`` wants, its parameters, and whether the rows
    still need the search checked in Python (then the body is selected too)."""
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
    columns = COLUMNS + (", body" if in_python else "")
    where = " AND ".join(q.where)  # fixed fragments with :named placeholders; every value is bound
    return f"SELECT {columns} FROM stories WHERE {where}", q.params, in_python  # noqa: S608


def read_stories(reader: Reader, dialect: str, flt: Filter) -> list[StoryRow]:
    """The stories ``flt`` wants, in the database's order."""
    sql, params, in_python = story_query(flt, dialect)
    rows = reader.rows(sql, params)
    if not in_python:
        return list(map(StoryRow._make, rows))
    wanted = (flt.search or "").casefold()
    return [StoryRow._make(r[:12]) for r in rows if wanted in r[1].casefold() or wanted in r[12].casefold()]


def list_stories(
    db: Database, flt: Filter | None = None, sort: str = "id", reverse: bool = False, stages: Mapping[str, str] = {}
) -> list[StoryRow]:
    """The stories ``flt`` wants (every live one by default), sorted by ``sort``."""
    with db.read() as conn:
        rows = read_stories(connection_reader(conn), db.engine.dialect.name, flt or Filter())
    return sort_stories(rows, sort, reverse, stages)


def read_with(url: str, open_db: Callable[[], Database], work: Callable[[Reader, str], T]) -> T:
    """``work(reader, dialect)`` in one read-only transaction: through sqlite3 when ``url``
    is a current storysync SQLite file, else through ``open_db()`` (SQLAlchemy), which
    creates or upgrades the schema first, as every command does."""
    from storysync.db import sqlite_reader

    fast = sqlite_reader.read(url, lambda reader: work(reader, "sqlite"))
    if fast is not None:
        return fast
    db = open_db()
    db.ensure_schema()
    with db.read() as conn:
        return work(connection_reader(conn), db.engine.dialect.name)


def connection_reader(conn: Any) -> Reader:
    """A ``Reader`` over an open SQLAlchemy connection."""
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
    """Ids in number order within a prefix: WEB-2 before WEB-10."""
    prefix, _, number = story_id.rpartition("-")
    return (prefix, int(number), story_id) if number.isdigit() else (story_id, -1, story_id)


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


# --------------------------------------------------------------------------- dependencies


@dataclass(frozen=True)
class Node:
    """A story in the dependency graph (``missing``: named by a dependency, not in the database)."""

    id: str
    title: str = ""
    status: str = ""
    backlog: str = ""
    missing: bool = False

    def as_dict(self) -> dict[str, Any]:
        """``id``, ``title``, ``status``, ``backlog`` (and ``missing`` when it is)."""
        out: dict[str, Any] = {"id": self.id, "title": self.title, "status": self.status, "backlog": self.backlog}
        if self.missing:
            out["missing"] = True
        return out


@dataclass
class Graph:
    """The live stories and their dependencies."""

    nodes: dict[str, Node]
    depends_on: dict[str, list[str]]
    needed_by: dict[str, list[str]]
    done: str

    def node(self, story_id: str) -> Node:
        """The story, or a ``missing`` node for an id nothing in the database has."""
        return self.nodes.get(story_id) or Node(story_id, missing=True)

    def completed(self, story_id: str) -> bool:
        found = self.nodes.get(story_id)
        return found is not None and found.status == self.done

    def open_dependencies(self, story_id: str) -> list[str]:
        """The direct dependencies that are not completed (missing ones included)."""
        return [d for d in self.depends_on.get(story_id, []) if not self.completed(d)]

    def blockers(self, story_id: str) -> list[str]:
        """Every story that keeps ``story_id`` from starting: its open dependencies, theirs,
        and so on (a completed story's own dependencies no longer block anything)."""
        seen: dict[str, None] = {}
        todo = list(reversed(self.open_dependencies(story_id)))
        while todo:
            current = todo.pop()
            if current in seen or current == story_id:
                continue
            seen[current] = None
            todo.extend(reversed(self.open_dependencies(current)))
        return sorted(seen, key=id_key)


def read_graph(reader: Reader, done: str) -> Graph:
    """Every live story's status and every dependency of a live story."""
    nodes = {sid: Node(sid, title, status, backlog) for sid, status, title, backlog in reader.rows(LIVE_STATUSES)}
    depends_on: dict[str, list[str]] = {}
    needed_by: dict[str, list[str]] = {}
    for story_id, target in reader.rows(LIVE_EDGES):
        depends_on.setdefault(story_id, []).append(target)
        needed_by.setdefault(target, []).append(story_id)
    for edges in (*depends_on.values(), *needed_by.values()):
        edges.sort(key=id_key)
    return Graph(nodes, depends_on, needed_by, done)


@dataclass(frozen=True)
class Blocked:
    """A story that cannot start yet, and what stands in its way."""

    story: StoryRow
    blocked_by: list[Node]  # its own dependencies that are not completed
    all_blockers: list[Node]  # those and, transitively, theirs

    def as_dict(self) -> dict[str, Any]:
        """The story's JSON form with ``blocked_by`` and ``all_blockers`` (lists of nodes)."""
        return {
            **self.story.as_dict(),
            "blocked_by": [n.as_dict() for n in self.blocked_by],
            "all_blockers": [n.as_dict() for n in self.all_blockers],
        }


def read_ready(reader: Reader, dialect: str, flt: Filter, done: str) -> list[StoryRow]:
    """The live stories ``flt`` wants that are not completed and whose dependencies all are."""
    graph = read_graph(reader, done)
    return [
        row
        for row in read_stories(reader, dialect, _live(flt))
        if row.status != done and not graph.open_dependencies(row.id)
    ]


def read_blocked(reader: Reader, dialect: str, flt: Filter, done: str) -> list[Blocked]:
    """The live stories ``flt`` wants that are not completed and wait on a dependency."""
    graph = read_graph(reader, done)
    out = []
    for row in read_stories(reader, dialect, _live(flt)):
        direct = graph.open_dependencies(row.id)
        if row.status != done and direct:
            out.append(Blocked(row, [graph.node(d) for d in direct], [graph.node(b) for b in graph.blockers(row.id)]))
    return out


def _live(flt: Filter) -> Filter:
    if flt.deleted:
        raise UsageError("a deleted story is neither ready nor blocked: --deleted is for 'storysync list'")
    return flt


@dataclass
class Tree:
    """One story of a dependency tree and the stories under it (``seen``: shown earlier,
    not expanded again; ``cycle``: leads back to a story on its own path)."""

    node: Node
    children: list[Tree] = field(default_factory=list)
    seen: bool = False
    cycle: bool = False

    def as_dict(self, key: str) -> dict[str, Any]:
        """The node's JSON form with its children under ``key``."""
        out = self.node.as_dict()
        if self.seen:
            out["repeated"] = True
        if self.cycle:
            out["cycle"] = True
        out[key] = [child.as_dict(key) for child in self.children]
        return out


def dependency_tree(graph: Graph, story_id: str, edges: Mapping[str, list[str]]) -> Tree:
    """``story_id`` with, recursively, the stories ``edges`` lead to (each expanded once)."""
    expanded: set[str] = set()

    def build(current: str, path: tuple[str, ...]) -> Tree:
        tree = Tree(graph.node(current))
        if current in path:
            tree.cycle = True
            return tree
        if current in expanded:
            tree.seen = bool(edges.get(current))
            return tree
        expanded.add(current)
        tree.children = [build(child, (*path, current)) for child in edges.get(current, [])]
        return tree

    return build(story_id, ())


@dataclass
class Dependencies:
    """A story's dependency trees both ways: what it needs, and what needs it."""

    story: Node
    depends_on: Tree
    needed_by: Tree

    def as_dict(self) -> dict[str, Any]:
        """``{id, title, status, backlog, depends_on: [...], needed_by: [...]}``, nested."""
        return {
            **self.story.as_dict(),
            "depends_on": self.depends_on.as_dict("depends_on")["depends_on"],
            "needed_by": self.needed_by.as_dict("needed_by")["needed_by"],
        }


def read_dependencies(reader: Reader, story_id: str, done: str) -> Dependencies:
    """The dependency trees of a live story; ``UsageError`` if the database has none by that id."""
    graph = read_graph(reader, done)
    if story_id not in graph.nodes:
        raise UsageError(f"no live story with id {story_id!r} in the database")
    return Dependencies(
        graph.nodes[story_id],
        dependency_tree(graph, story_id, graph.depends_on),
        dependency_tree(graph, story_id, graph.needed_by),
    )


# --------------------------------------------------------------------------- board


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
    return boards(read_stories(reader, dialect, _live(flt)), stages)
