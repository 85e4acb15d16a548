"""Where story bytes come from: a commit's tree (git objects), the working tree, or the index.

A check reads "story entries from a source of content"; every source answers
the same three questions (``Source``) and refuses symlinks and oversized files
before reading them.  ``storysync.check.index.IndexSource`` is the third
source, the staged versions.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from storysync.config import Config
from storysync.errors import Diagnostic
from storysync.git import runner
from storysync.git.blobs import BlobReader
from storysync.story.layout import classify
from storysync.story.model import Location
from storysync.story.parse import MAX_FILE

if TYPE_CHECKING:
    import git


@dataclass(frozen=True, slots=True)
class Entry:
    """A story candidate in a source: its location and how to fetch it."""

    location: Location
    ref: str  # blob sha (git) or absolute path (working tree)
    size: int
    symlink: bool = False


class Source(Protocol):
    """A source of story file contents: the working tree, a commit's tree, or the index.

    Optional capability: a source may also answer ``named(keys, walk=False) ->
    list[str] | None``, the paths whose file names may carry one of the folded
    story ids ``keys`` (a superset; each in the source's order), or None when it
    would rather be listed whole.  ``SourceKnown`` asks it instead of listing every
    entry: the index answers by ``git ls-files`` pathspec queries, so a commit's
    hook does not list a 100k-story index.  ``walk`` says more rounds of the same
    question are likely to follow (a dependency walk).
    """

    label: str

    def entries(self, paths: Iterable[str] | None = None) -> list[Entry]:
        """Story entries, all of them (None) or those among ``paths`` that exist."""

    def read(self, entry: Entry) -> bytes | Diagnostic:
        """The entry's bytes, or a diagnostic saying why they cannot be read."""

    def read_many(self, entries: Sequence[Entry]) -> Iterator[tuple[Entry, bytes | Diagnostic]]:
        """Each entry with its bytes (or refusal), in order; read in one batch where the source can."""


def _refusal(entry: Entry) -> Diagnostic | None:
    if entry.symlink:
        return Diagnostic(
            entry.location.path,
            1,
            1,
            "symlink",
            "story file is a symlink; a story must be a regular file (symlinks are not followed)",
        )
    if entry.size > MAX_FILE:
        return Diagnostic(
            entry.location.path, 1, 1, "file-too-large", f"file is {entry.size} bytes; the limit is {MAX_FILE} (1 MiB)"
        )
    return None


def _unreadable(entry: Entry, exc: OSError) -> Diagnostic:
    return Diagnostic(entry.location.path, 1, 1, "unreadable", f"cannot read file: {exc.strerror}")


class GitTreeSource:
    """Story files as they are in one commit (read by plain ``git`` processes)."""

    def __init__(self, repo: runner.GitRepo | git.Repo, config: Config, commit: str) -> None:
        self.repo = runner.as_plain(repo)
        self.config = config
        self.commit = commit
        self.label = commit

    def entries(self, paths: Iterable[str] | None = None) -> list[Entry]:
        wanted = None if paths is None else set(paths)
        out = []
        for item in runner.list_tree(self.repo, self.commit, self.config.root):
            if wanted is not None and item.path not in wanted:
                continue
            if item.mode == runner.SUBMODULE_MODE:
                continue
            location = classify(self.config, item.path)
            if location is not None:
                out.append(Entry(location, item.sha, item.size, item.mode == runner.SYMLINK_MODE))
        return out

    def read(self, entry: Entry) -> bytes | Diagnostic:
        with contextlib.closing(self.read_many([entry])) as one:
            return next(one)[1]

    def read_many(self, entries: Sequence[Entry]) -> Generator[tuple[Entry, bytes | Diagnostic], None, None]:
        """Each entry's bytes (or refusal), in order, streamed through one ``git cat-file --batch``."""
        with BlobReader(self.config.repo) as reader:
            blobs = reader.read([e.ref for e in entries if _refusal(e) is None])
            for entry in entries:
                refusal = _refusal(entry)
                yield (entry, refusal) if refusal is not None else (entry, next(blobs))


class WorkTreeSource:
    """Story files as they are on disk now."""

    label = "working tree"

    def __init__(self, config: Config) -> None:
        self.config = config

    def entries(self, paths: Iterable[str] | None = None) -> list[Entry]:
        candidates = self._walk() if paths is None else iter(paths)
        out = []
        for rel in candidates:
            location = classify(self.config, rel)
            if location is None:
                continue
            try:
                st = os.lstat(self.config.repo / rel)
            except (FileNotFoundError, NotADirectoryError):
                continue
            if stat.S_ISLNK(st.st_mode) or stat.S_ISREG(st.st_mode):
                out.append(Entry(location, str(self.config.repo / rel), st.st_size, stat.S_ISLNK(st.st_mode)))
        return out

    def read(self, entry: Entry) -> bytes | Diagnostic:
        refusal = _refusal(entry)
        if refusal:
            return refusal
        try:  # O_NOFOLLOW: a file swapped for a symlink since it was listed is still not followed
            fd = os.open(entry.ref, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return _refusal(Entry(entry.location, entry.ref, entry.size, symlink=True)) or _unreadable(entry, exc)
            return _unreadable(entry, exc)
        with os.fdopen(fd, "rb") as fh:
            try:
                return fh.read(MAX_FILE + 1)
            except OSError as exc:  # e.g. a directory, or an I/O error
                return _unreadable(entry, exc)

    def read_many(self, entries: Sequence[Entry]) -> Iterator[tuple[Entry, bytes | Diagnostic]]:
        """Each entry's bytes (or refusal), in order, one file after another."""
        for entry in entries:
            yield entry, self.read(entry)

    def _walk(self) -> Iterator[str]:
        root = self.config.root_path
        for stage in sorted(self.config.stages):
            stage_dir = root / stage
            if not stage_dir.is_dir() or stage_dir.is_symlink():
                continue
            for backlog in sorted(os.scandir(stage_dir), key=lambda e: e.name):
                if not backlog.is_dir(follow_symlinks=False):
                    continue
                for item in sorted(os.scandir(backlog.path), key=lambda e: e.name):
                    if item.name.endswith(".md"):
                        yield Path(item.path).relative_to(self.config.repo).as_posix()
