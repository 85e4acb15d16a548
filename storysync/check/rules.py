"""Checks that need more than one file: the directory layout, unique ids, dependencies.

``check_story`` compares one story with where it lives; ``check_set`` looks at all
stories together (plus the ids the database already knows, for an incremental
run) for duplicate ids, missing dependency targets and dependency cycles.
"""

from __future__ import annotations

import re
import unicodedata
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

from storysync.errors import Diagnostic, utf8_safe
from storysync.story.model import Checkable, Story

ID_PATTERN = re.compile(r"^[A-Z][A-Z0-9]*-[0-9]+$")


def check_story(story: Story) -> list[Diagnostic]:
    """The file name, stage and backlog directories agree with the frontmatter."""
    out: list[Diagnostic] = []
    fm, loc = story.frontmatter, story.location
    if utf8_safe(loc.path) != loc.path:
        out.append(
            Diagnostic(loc.path, 1, 1, "file-name", "file name is not valid UTF-8; rename the file to UTF-8 characters")
        )
    # a printable path has no control character: one C call instead of a category per character
    bad = None if loc.path.isprintable() else next((ch for ch in loc.path if unicodedata.category(ch) == "Cc"), None)
    if bad is not None:
        out.append(
            Diagnostic(
                loc.path,
                1,
                1,
                "file-name",
                f"file name contains the control character {bad!r}; rename the file to printable characters",
            )
        )
    sid = story.id
    stem = loc.name[: -len(".md")]
    if ID_PATTERN.match(sid) and stem != sid and not stem.startswith(sid + "-"):
        out.append(
            _at(
                story,
                ("id",),
                "id-filename",
                f"id {sid!r} does not match the file name {loc.name!r}; name the file '{sid}-<slug>.md'",
            )
        )
    status = fm.get("status")
    if isinstance(status, str) and status != loc.status:
        out.append(
            _at(
                story,
                ("status",),
                "status-dir",
                f"status {status!r} disagrees with directory {loc.stage!r} (status {loc.status!r}); "
                "move the file or fix the status",
            )
        )
    backlog = fm.get("backlog")
    if isinstance(backlog, str) and backlog != loc.backlog:
        out.append(
            _at(
                story,
                ("backlog",),
                "backlog-dir",
                f"backlog {backlog!r} disagrees with directory {loc.backlog!r}; move the file or fix the backlog",
            )
        )
    return out


def symlinked_directory(path: str, directory: str, place: str) -> Diagnostic:
    """The one rule for stage and backlog directories (every reader applies it): a symlink
    in their place is refused, never followed.  Followed, two paths would name one file,
    and a move between them (``ln -s web backlog/frontend``) would delete the story.
    ``path`` is the directory itself, or a story file reached through it."""
    what = f"{place} directory" if path == directory else f"{place} directory {directory}"
    return Diagnostic(
        path,
        1,
        1,
        "symlinked-directory",
        f"{what} is a symlink; stage and backlog directories must be real directories (symlinks are not followed)",
    )


def fold_id(story_id: str) -> str:
    """The form under which two ids count as the same (case and Unicode form)."""
    return unicodedata.normalize("NFKC", story_id).casefold()


class Known(Protocol):
    """Stories outside the checked set: the rest of the repository or the database."""

    def lookup(self, folded: str) -> tuple[str, str] | None:
        """``(id, path)`` of the story whose folded id is ``folded``, if any."""

    def deps(self, story_id: str) -> list[str] | None:
        """The ``depends_on`` of a story, or None if no such story exists."""


class KnownRows:
    """``Known`` over a mapping of id -> (path, depends_on), such as database rows."""

    def __init__(self, rows: Mapping[str, tuple[str, list[str]]]) -> None:
        self._rows = rows
        self._folded = {fold_id(sid): (sid, path) for sid, (path, _) in rows.items()}

    def lookup(self, folded: str) -> tuple[str, str] | None:
        return self._folded.get(folded)

    def deps(self, story_id: str) -> list[str] | None:
        row = self._rows.get(story_id)
        return None if row is None else row[1]


def check_set(stories: Iterable[Checkable], known: Known | None = None) -> list[Diagnostic]:
    """Duplicate ids, missing ``depends_on`` targets and cycles through ``stories``.

    ``known`` answers for the stories this run does not read (the rest of the
    repository, or the database's rows); a story in ``stories`` shadows it.
    """
    stories = [s for s in stories if s.id]
    by_id = {s.id: s for s in stories}
    _prefetch(known, [s.id for s in stories], [dep for s in stories for dep in s.depends_on if dep not in by_id])
    out = _duplicates(stories, known)

    def deps_of(sid: str) -> list[str] | None:
        if sid in by_id:
            return by_id[sid].depends_on
        return known.deps(sid) if known is not None else None

    for s in stories:
        for i, dep in enumerate(s.depends_on):
            if deps_of(dep) is None:
                out.append(_at(s, ("depends_on", i), "missing-dependency", f"depends_on: no story has id {dep!r}"))
    for component in _cycles(sorted(by_id), deps_of):
        members = set(component)
        shown = _cycle_path(component[0], members, deps_of)
        for sid in component:
            member = by_id.get(sid)
            if member is not None:
                path = shown if sid in shown else _cycle_path(sid, members, deps_of)
                idx = member.depends_on.index(path[path.index(sid) + 1])
                text = " -> ".join(path)
                out.append(_at(member, ("depends_on", idx), "dependency-cycle", f"depends_on: dependency cycle {text}"))
    return out


def _cycle_path(start: str, members: set[str], deps_of: Callable[[str], list[str] | None]) -> list[str]:
    """The shortest cycle from ``start`` back to it through ``members``, in dependency order
    (``[start, ..., start]``); ``members`` is a strongly connected component holding ``start``."""
    parent: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for dep in deps_of(node) or []:
            if dep == start:
                chain = [node]
                while chain[-1] != start:
                    chain.append(parent[chain[-1]])
                return [*reversed(chain), start]
            if dep in members and dep not in parent:
                parent[dep] = node
                queue.append(dep)
    return [start, start]  # not reached: every member of a component lies on a cycle


def _prefetch(known: Known | None, ids: list[str], deps: list[str]) -> None:
    """Let a ``known`` that can (the database's ``prefetch``) fetch at once what the checks
    then ask story by story: ``lookup`` of ``ids`` and ``deps`` of ``deps`` and beyond."""
    prefetch: Callable[[Iterable[str], Iterable[str]], None] | None = getattr(known, "prefetch", None)
    if prefetch is not None:
        prefetch([fold_id(sid) for sid in ids], deps)


def _duplicates(stories: list[Checkable], known: Known | None) -> list[Diagnostic]:
    """Every file whose id another file also has (folded): each one is named, since
    neither is more right than the other."""
    groups: dict[str, list[Checkable]] = {}
    for s in sorted(stories, key=lambda s: s.path):
        groups.setdefault(fold_id(s.id), []).append(s)
    checked = {s.path for s in stories}
    out: list[Diagnostic] = []
    for key, members in groups.items():
        holders = [(m.id, m.path) for m in members]
        found = known.lookup(key) if known is not None else None
        if found is not None and found[1] not in checked:
            holders.append(found)
        for s in members:
            other = next((h for h in holders if h[1] != s.path), None)
            if other is not None:
                out.append(_duplicate(s, *other))
    return out


def _duplicate(story: Checkable, other_id: str, other_path: str) -> Diagnostic:
    how = "the same id" if other_id == story.id else f"id {other_id!r}, which differs only in case or Unicode form"
    message = f"id {story.id!r} is already used by {other_path} ({how}); ids are unique across all backlogs"
    return _at(story, ("id",), "duplicate-id", message)


def _cycles(roots: list[str], deps_of: Callable[[str], list[str] | None]) -> list[list[str]]:
    """Strongly connected components with a cycle reachable from ``roots`` (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    edges: dict[str, list[str]] = {}
    for root in roots:
        if root in index:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
                edges[node] = [d for d in (deps_of(node) or []) if deps_of(d) is not None]
            deps = edges[node]
            if i < len(deps):
                work.append((node, i + 1))
                dep = deps[i]
                if dep not in index:
                    work.append((dep, 0))
                elif dep in on_stack:
                    low[node] = min(low[node], index[dep])
                continue
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in deps:
                    found.append(sorted(component))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return found


def _at(story: Checkable, path: tuple[str | int, ...], code: str, message: str) -> Diagnostic:
    line, col = story.mark(path)
    return Diagnostic(story.path, line, col, code, message)
