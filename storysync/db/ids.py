"""The next free story id of a backlog: ``storysync new`` without an id.

Ids are unique across the repository (SPEC §2), and a story created on another
branch, pushed or not, takes its id as surely as one in the database.  So the
ids already used are gathered from the database (live and deleted rows, and ids
that dependencies name), from the tree of every local and remote-tracking branch,
and from the story files in the working tree; the next id is one above the
highest number of the backlog's prefix.  The prefix is the one most of the
backlog's stories use, else the backlog's name in capitals when that is an id
prefix (``web`` → ``WEB``), else it must be given.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from storysync.errors import UsageError

if TYPE_CHECKING:
    from storysync.config import Config
    from storysync.db.database import Database
    from storysync.git.runner import GitRepo

PREFIX = re.compile(r"[A-Z][A-Z0-9]*")
ID_IN_NAME = re.compile(r"([A-Z][A-Z0-9]*)-([0-9]+)(?:-.*)?\.md")
KNOWN = "SELECT backlog_id, id FROM stories UNION ALL SELECT NULL, depends_on_id FROM dependencies"


def next_id(config: Config, db: Database, repo: GitRepo | None, backlog: str, prefix: str | None = None) -> str:
    """The id a new story of ``backlog`` gets: ``<prefix>-<n>`` with ``n`` one above every
    number of that prefix used anywhere; ``UsageError`` when no prefix can be told."""
    used = list(_database_ids(db))
    used += list(_tree_ids(config, repo))
    used += list(_working_tree_ids(config))
    if prefix is not None and not PREFIX.fullmatch(prefix):
        raise UsageError(f"--prefix {prefix!r} must match {PREFIX.pattern} (e.g. WEB)")
    chosen = prefix or prefix_of(backlog, used)
    numbers = [int(number) for _, (p, number) in _split(used) if p == chosen]
    return f"{chosen}-{max(numbers, default=0) + 1}"


def prefix_of(backlog: str, used: Iterable[tuple[str | None, str]]) -> str:
    """The prefix most of ``backlog``'s ids use (the first by name on a tie), else its name in
    capitals when that makes a prefix; ``UsageError`` otherwise."""
    counts = Counter(p for b, (p, _) in _split(used) if b == backlog)
    if counts:
        return min(counts, key=lambda p: (-counts[p], p))
    if PREFIX.fullmatch(backlog.upper()):
        return backlog.upper()
    raise UsageError(
        f"backlog {backlog!r} has no story to take an id prefix from and its name is not one: "
        "give the id (storysync new WEB-1 ...) or --prefix"
    )


def _split(used: Iterable[tuple[str | None, str]]) -> Iterator[tuple[str | None, tuple[str, str]]]:
    for backlog, story_id in used:
        prefix, _, number = story_id.rpartition("-")
        if prefix and number.isdigit():
            yield backlog, (prefix, number)


def _database_ids(db: Database) -> list[tuple[str | None, str]]:
    # local: git and SQL text only when new picks an id
    from sqlalchemy import text

    with db.read() as conn:
        return [(backlog, story_id) for backlog, story_id in conn.execute(text(KNOWN))]


def _story_id(config: Config, repo_path: str) -> tuple[str, str] | None:
    """(backlog, id) of a path at story depth whose file name starts with an id."""
    rel = repo_path
    if config.root:
        if not repo_path.startswith(config.root + "/"):
            return None
        rel = repo_path[len(config.root) + 1 :]
    parts = rel.split("/")
    if len(parts) != 3:
        return None
    match = ID_IN_NAME.fullmatch(parts[2])
    return (parts[1], f"{match.group(1)}-{match.group(2)}") if match else None


def _tree_ids(config: Config, repo: GitRepo | None) -> Iterator[tuple[str, str]]:
    """The ids of the story files on every local and remote-tracking branch."""
    if repo is None:
        return
    # local: git and SQL text only when new picks an id
    from storysync.git import runner

    for tip in runner.branch_tips(repo):
        for path in runner.tree_paths(repo, tip, config.root):
            found = _story_id(config, path)
            if found is not None:
                yield found


def _working_tree_ids(config: Config) -> Iterator[tuple[str, str]]:
    """The ids of the story files in the working tree (new ones not committed included)."""
    for stage in config.stages:
        for backlog in _entries(config.root_path / stage):
            for name in _entries(config.root_path / stage / backlog):
                found = _story_id(config, config.rel_to_repo(f"{stage}/{backlog}/{name}"))
                if found is not None:
                    yield found


def _entries(directory: Path) -> list[str]:
    try:
        return [entry.name for entry in os.scandir(directory)]
    except (NotADirectoryError, FileNotFoundError, PermissionError):
        return []
