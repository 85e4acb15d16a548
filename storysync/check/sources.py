"""Where story bytes come from: a commit's tree (git objects), the working tree, or the index.

A check reads "story entries from a source of content"; every source answers
the same three questions (``Source``) and refuses symlinks and oversized files
before reading them.  ``storysync.check.index.IndexSource`` is the third
source, the staged versions.  Every source lists a symlink in the place of a stage or backlog directory as an
entry that reads as its refusal (``check.rules.symlinked_directory``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import re
import stat
from collections.abc import Collection, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from storysync.check.rules import symlinked_directory
from storysync.config import Config
from storysync.errors import Diagnostic
from storysync.git import runner
from storysync.git.blobs import BlobReader
from storysync.story.layout import classify, directory_place, story_directories
from storysync.story.model import Location
from storysync.story.parse import MAX_FILE

if TYPE_CHECKING:
    import git

_HIGH_BYTE = re.compile(b"[\x80-\xff]")
_ID_SHAPED = re.compile(r"[a-z][a-z0-9]*-[0-9]+")  # a folded id of the schema's shape, ``WEB-12``
_NAME_ID = re.compile(rb"/([a-z][a-z0-9]*-[0-9]+)[-.]")  # such an id heading a file (or directory) name
INDEX_FROM = 48  # id-shaped keys from which one pass indexing every name beats the alternation scan
FEW_PATHS = 64  # up to this many wanted paths of a commit are asked for by name rather than its tree listed


@dataclass(frozen=True, slots=True)
class Entry:
    """A story candidate in a source: its location and how to fetch it."""

    location: Location
    ref: str  # blob sha (git) or absolute path (working tree)
    size: int  # -1 where a listing did not give it (checked once read)
    symlink: bool = False
    linked: tuple[str, str] | None = None  # a symlinked stage or backlog directory (path, place) on the way


def directory_entry(config: Config, path: str, ref: str = "") -> Entry | None:
    """The entry of a symlink at ``path`` when that is the place of a stage or backlog
    directory (it reads as the refusal), else None."""
    place = directory_place(config, path)
    if place is None:
        return None
    parts = path[len(config.root) + 1 :].split("/") if config.root else path.split("/")
    location = Location(path, parts[0], config.stages[parts[0]], parts[1] if len(parts) > 1 else "", "")
    return Entry(location, ref, 0, True, (path, place))


def linked_directory(config: Config, rel: str) -> tuple[str, str] | None:
    """The stage or backlog directory of the story path ``rel`` that is a symlink on disk (path, place)."""
    for directory, place in story_directories(config, rel):
        if os.path.islink(config.repo / directory):
            return directory, place
    return None


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
    if entry.linked is not None:
        return symlinked_directory(entry.location.path, *entry.linked)
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


def askable(key: str) -> bool:
    """Whether an ASCII file name can fold to ``key`` (an id prefix always holds a ``-``, never a ``/``)."""
    return key.isascii() and "-" in key and "/" not in key and "\0" not in key


class RawListing:
    """One unparsed ``-z`` listing of git (``ls-files -s``, ``ls-tree -r -l``: ``<meta>\t<path>``
    records in git's order), searched for the file names that may carry an id, so that a
    lookup of a few ids parses a few records, not the whole repository."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.low = raw.lower()  # ASCII letters only: every position stays
        self._non_ascii: list[int] | None = None  # where the records whose file name is not ASCII start
        self._ids: tuple[dict[bytes, int], dict[bytes, list[int]]] | None = None  # each name's id -> where (by_index)

    def named(self, keys: Collection[str]) -> list[str]:
        """The records (decoded) whose file name starts with one of the folded ids ``keys``
        and ``-`` or ``.`` (ASCII case ignored), and every record whose file name has a
        non-ASCII byte (it may fold to any id), in the listing's order; the caller folds
        each name to tell which really carry one of ``keys``.

        A few keys are found by one regular-expression scan (~5 ms over 100,000 records,
        but ~0.45 ms more a key: the alternation is tried at every name).  From
        ``INDEX_FROM`` keys of the id's shape on, or once the index is built, every
        name's id is indexed in one pass (~100 ms at 100,000) and looked up; both
        ways give the same records (``by_index``, ``by_scan``)."""
        wanted = {k for k in keys if askable(k)}
        shaped = {k for k in wanted if _ID_SHAPED.fullmatch(k)}
        starts = set(self._non_ascii_starts())
        if self._ids is not None or len(shaped) >= INDEX_FROM:
            starts.update(self.by_index(shaped))
            wanted -= shaped
        starts.update(self.by_scan(wanted))
        return [self._record(start) for start in sorted(starts)]

    def by_scan(self, keys: Collection[str]) -> set[int]:
        """Where the records start whose file name heads with one of ``keys`` (folded,
        askable) and ``-`` or ``.``: one scan of the listing for all of them."""
        if not keys:
            return set()
        names = re.compile(b"/(?:" + b"|".join(re.escape(k.encode()) for k in sorted(keys)) + b")[-.]")
        return {s for m in names.finditer(self.low) if (s := self._file_record(m.start())) is not None}

    def by_index(self, keys: Collection[str]) -> set[int]:
        """``by_scan`` for keys of the id's shape, looked up in an index of every name's id
        (a name heads with at most one: letters and digits, one ``-``, digits)."""
        if self._ids is None:
            self._ids = self._index()
        first, more = self._ids
        wanted = [k for k in map(str.encode, keys) if k in first]
        hits = [*(first[k] for k in wanted), *(at for k in wanted for at in more.get(k, ()))]
        return {s for at in hits if (s := self._file_record(at)) is not None}

    def _index(self) -> tuple[dict[bytes, int], dict[bytes, list[int]]]:
        """Where each name's id first heads a name, and where else it does: an int a name,
        not a list (100,000 lists cost ~60 ms more, most of it the garbage collector's)."""
        first: dict[bytes, int] = {}
        more: dict[bytes, list[int]] = {}
        for m in _NAME_ID.finditer(self.low):
            key, at = m.group(1), m.start()
            if first.setdefault(key, at) != at:
                more.setdefault(key, []).append(at)
        return first, more

    def _end(self, at: int) -> int:
        end = self.raw.find(b"\0", at)
        return len(self.raw) if end < 0 else end

    def _file_record(self, at: int) -> int | None:
        """Where the record around ``at`` starts, if ``at`` is in its file name (not a directory's)."""
        if self.raw.find(b"/", at + 1, self._end(at)) >= 0:
            return None
        return self.raw.rfind(b"\0", 0, at) + 1

    def _record(self, start: int) -> str:
        return self.raw[start : self._end(start)].decode("utf-8", "surrogateescape")

    def _non_ascii_starts(self) -> list[int]:
        if self._non_ascii is None:
            raw, out = self.raw, []
            at = 0 if not raw.isascii() else len(raw)  # isascii: one fast pass, and the usual answer
            while (hit := _HIGH_BYTE.search(raw, at)) is not None:
                end = self._end(hit.start())
                start = max(raw.rfind(b"/", 0, end), raw.rfind(b"\0", 0, end)) + 1
                if not raw[start:end].isascii():
                    out.append(raw.rfind(b"\0", 0, end) + 1)
                at = end + 1
            self._non_ascii = out
        return self._non_ascii


class GitTreeSource:
    """Story files as they are in one commit (read by plain ``git`` processes).

    ``named`` (``Source``'s optional capability, as the index has it) searches one
    unparsed listing of the commit's tree for the ids a cross-file check asks
    about, so that checking a few files against a commit of 100,000 neither parses
    nor classifies every path; ``entries`` of the paths it found reuses their records.
    """

    def __init__(self, repo: runner.GitRepo | git.Repo, config: Config, commit: str) -> None:
        self.repo = runner.as_plain(repo)
        self.config = config
        self.commit = commit
        self.label = commit
        self.blobs: BlobReader | None = None  # set by a caller that reads one blob at a time, many times
        self._listing: RawListing | None = None
        self._records: dict[str, runner.TreeEntry] = {}  # paths ``named`` found, parsed

    def entries(self, paths: Iterable[str] | None = None) -> list[Entry]:
        if paths is None:
            return self._entries(runner.list_tree(self.repo, self.commit, self.config.root))
        wanted = list(dict.fromkeys(paths))
        missing = [p for p in wanted if p not in self._records]
        if len(missing) > FEW_PATHS:
            listed = set(wanted)
            tree = runner.list_tree(self.repo, self.commit, self.config.root)
            return self._entries(e for e in tree if e.path in listed)
        self._records.update((e.path, e) for e in runner.tree_entries(self.repo, self.commit, missing))
        found = sorted((self._records[p] for p in wanted if p in self._records), key=_git_order)
        return self._entries(found)

    def _entries(self, items: Iterable[runner.TreeEntry]) -> list[Entry]:
        out = []
        for item in items:
            if item.mode == runner.SUBMODULE_MODE:
                continue
            location = classify(self.config, item.path)
            if location is not None:
                out.append(Entry(location, item.sha, item.size, item.mode == runner.SYMLINK_MODE))
            elif item.mode == runner.SYMLINK_MODE and (linked := directory_entry(self.config, item.path)):
                out.append(linked)
        return out

    def named(self, keys: Collection[str], walk: bool = False) -> list[str]:
        """The commit's paths whose file names may carry one of the folded ids ``keys``, in
        the tree's order (their records kept for ``entries``); the caller folds each name."""
        if self._listing is None:  # no sizes: git would open every blob for them (-l)
            self._listing = RawListing(runner.list_tree_raw(self.repo, self.commit, self.config.root, sizes=False))
        found = [e for e in map(runner.tree_entry, self._listing.named(keys)) if e.mode != runner.TREE_MODE]
        for entry in found:
            self._records.setdefault(entry.path, entry)  # size -1: checked once read, as the index's
        return [e.path for e in found]

    def read(self, entry: Entry) -> bytes | Diagnostic:
        with contextlib.closing(self.read_many([entry])) as one:
            return next(one)[1]

    def read_many(self, entries: Sequence[Entry]) -> Generator[tuple[Entry, bytes | Diagnostic], None, None]:
        """Each entry's bytes (or refusal), in order, streamed through one ``git cat-file --batch``
        (the caller's kept-open ``blobs`` when it set one)."""
        if self.blobs is not None:
            yield from _streamed(self.blobs, entries)
            return
        with BlobReader(self.config.repo) as reader:
            yield from _streamed(reader, entries)


def _git_order(entry: runner.TreeEntry) -> bytes:
    return entry.path.encode("utf-8", "surrogateescape")


def _streamed(reader: BlobReader, entries: Sequence[Entry]) -> Generator[tuple[Entry, bytes | Diagnostic], None, None]:
    """Each entry's blob or refusal; an entry whose size was not listed (-1) is refused by
    the size it reads with, as the index's entries are."""
    blobs = reader.read([e.ref for e in entries if _refusal(e) is None])
    for entry in entries:
        refusal = _refusal(entry)
        if refusal is not None:
            yield entry, refusal
            continue
        data = next(blobs)
        if entry.size < 0:
            refusal = _refusal(dataclasses.replace(entry, size=len(data)))
        yield entry, refusal or data


class WorkTreeSource:
    """Story files as they are on disk now."""

    label = "working tree"

    def __init__(self, config: Config) -> None:
        self.config = config
        self._linked: dict[str, bool] = {}  # directory -> whether it is a symlink, asked once a run
        self._listing: RawListing | None = None  # the story-depth names ``named`` searches, listed once

    def entries(self, paths: Iterable[str] | None = None) -> list[Entry]:
        candidates = self._walk() if paths is None else iter(paths)
        out = []
        for rel in candidates:
            location = classify(self.config, rel)
            if location is None:
                linked = directory_entry(self.config, rel) if os.path.islink(self.config.repo / rel) else None
                out += [linked] if linked is not None else []
                continue
            try:
                st = os.lstat(self.config.repo / rel)
            except (FileNotFoundError, NotADirectoryError):
                continue
            through = self._through(rel)
            if through is not None:  # reported once, as the directory, as a listing reports it
                linked = directory_entry(self.config, through[0])
                if linked is not None and linked.location.path not in {e.location.path for e in out}:
                    out.append(linked)
            elif stat.S_ISLNK(st.st_mode) or stat.S_ISREG(st.st_mode):
                out.append(Entry(location, str(self.config.repo / rel), st.st_size, stat.S_ISLNK(st.st_mode)))
        return out

    def _through(self, rel: str) -> tuple[str, str] | None:
        """The symlinked stage or backlog directory a story path leads through, if any."""
        for directory, place in story_directories(self.config, rel):
            linked = self._linked.get(directory)
            if linked is None:
                linked = self._linked[directory] = os.path.islink(self.config.repo / directory)
            if linked:
                return directory, place
        return None

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

    def named(self, keys: Collection[str], walk: bool = False) -> list[str]:
        """The paths ``_walk`` lists whose file names may carry one of the folded ids ``keys``,
        in its order (``Source``'s optional capability): the names are listed once a run
        (no file is stat'ed) and searched as git's listings are (``RawListing``); the
        caller folds each name and asks ``entries`` for the few it keeps."""
        if self._listing is None:
            raw = b"".join(b"-\t" + p.encode("utf-8", "surrogateescape") + b"\0" for p in self._walk())
            self._listing = RawListing(raw)
        return [record.partition("\t")[2] for record in self._listing.named(keys)]

    def _walk(self) -> Iterator[str]:
        """Every ``*.md`` at story depth, and each symlink in the place of a stage or backlog directory."""
        root = self.config.root_path
        for stage in sorted(self.config.stages):
            stage_dir = root / stage
            stage_rel = stage_dir.relative_to(self.config.repo).as_posix()
            if stage_dir.is_symlink():
                yield stage_rel
                continue
            if not stage_dir.is_dir():
                continue
            for backlog in sorted(os.scandir(stage_dir), key=lambda e: e.name):
                backlog_rel = f"{stage_rel}/{backlog.name}"
                if backlog.is_symlink():
                    yield backlog_rel
                    continue
                if not backlog.is_dir(follow_symlinks=False):
                    continue
                names = sorted(item.name for item in os.scandir(backlog.path))
                yield from (f"{backlog_rel}/{name}" for name in names if name.endswith(".md"))
