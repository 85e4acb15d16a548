"""Stories and their dependencies: what is ready, what is blocked and by what, the trees.

"Completed" is the done status (``completed``, or the last stage's status): a
story is ready when it is not completed and every story it depends on is; it is
blocked by its dependencies that are not, and through them by theirs.  A
dependency on an id the database does not hold (or holds deleted) counts as not
completed, and is shown as missing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from storysync.errors import UsageError
from storysync.views.queries import Filter, StoryRow, id_key, live_only, read_stories

if TYPE_CHECKING:
    from storysync.db.queries import Reader

LIVE_STATUSES = "SELECT id, status, title, backlog_id FROM stories WHERE deleted_at IS NULL"
LIVE_EDGES = (
    "SELECT d.story_id, d.depends_on_id FROM dependencies d JOIN stories s ON s.id = d.story_id "
    "WHERE s.deleted_at IS NULL"
)


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
        for row in read_stories(reader, dialect, live_only(flt))
        if row.status != done and not graph.open_dependencies(row.id)
    ]


def read_blocked(reader: Reader, dialect: str, flt: Filter, done: str) -> list[Blocked]:
    """The live stories ``flt`` wants that are not completed and wait on a dependency."""
    graph = read_graph(reader, done)
    out = []
    for row in read_stories(reader, dialect, live_only(flt)):
        direct = graph.open_dependencies(row.id)
        if row.status != done and direct:
            out.append(Blocked(row, [graph.node(d) for d in direct], [graph.node(b) for b in graph.blockers(row.id)]))
    return out


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
