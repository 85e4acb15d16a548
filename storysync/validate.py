"""Load → check → result: parse story files from a source and collect every problem.

Used by ``storysync validate`` (working tree, given paths, or the index with
``--staged``) and by sync (a commit's tree).  Nothing here writes anything.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from storysync.checks import Known, check_set, check_story, fold_id
from storysync.config import Config
from storysync.errors import Diagnostic, StorysyncError
from storysync.layout import classify
from storysync.model import Story
from storysync.parse import parse_story, split_body
from storysync.schema import SchemaChecker, load_checker
from storysync.sources import Entry, Source


@dataclass
class Checked:
    """The outcome of checking a set of story files."""

    stories: list[Story] = field(default_factory=list)  # parsed and file-level valid
    diagnostics: list[Diagnostic] = field(default_factory=list)
    invalid_paths: set[str] = field(default_factory=set)
    files: int = 0
    bodies: Bodies | None = None  # set when the stories' bodies were dropped (``compact``)

    def add(self, diags: Iterable[Diagnostic]) -> None:
        for d in diags:
            self.diagnostics.append(d)
            self.invalid_paths.add(d.path)

    @property
    def valid_stories(self) -> list[Story]:
        return [s for s in self.stories if s.path not in self.invalid_paths]


# Body characters a compacted check keeps from its first pass (about 15k average
# stories); past this, bodies are dropped and read back at write time.  Reading
# back costs a second pass over the blobs (~0.3 s per 10k), holding costs memory.
KEEP_BODIES = 32 * 1024 * 1024


class Bodies:
    """Where the bodies a compacted check dropped are read back from, a batch at a time.

    A full sync checks every file first and writes afterwards; holding every body
    in between is most of its memory, so past ``KEEP_BODIES`` characters they
    are dropped.  ``load`` puts a batch's dropped bodies back for the write and
    ``unload`` drops them again after it.  Each file is read again from the same
    blob (or path) and must hash as it did when it was checked.
    """

    def __init__(self, source: Source, keep: int) -> None:
        self._source = source
        self._refs: dict[str, tuple[str, int, bool]] = {}  # path -> the entry's ref, size, symlink
        self._room = keep

    def drop(self, story: Story, entry: Entry) -> None:
        """Keep ``story``'s body while there is room, else forget it (``entry`` is where it is read back from)."""
        if len(story.body) <= self._room:
            self._room -= len(story.body)
            return
        self._room = 0
        story.body = ""
        self._refs[story.path] = (entry.ref, entry.size, entry.symlink)

    def load(self, stories: Sequence[Story]) -> None:
        """Put back the bodies of ``stories`` (the ones dropped); ``StorysyncError`` if a file changed."""
        by_path = {s.path: s for s in stories if s.path in self._refs}
        wanted = [Entry(s.location, *self._refs[path]) for path, s in by_path.items()]
        for entry, data in read_each(self._source, wanted):
            story = by_path[entry.location.path]
            if isinstance(data, Diagnostic) or hashlib.sha256(data).hexdigest() != story.content_hash:
                raise StorysyncError(f"{story.path}: the file changed while it was being synced; run the sync again")
            story.body = split_body(data)

    def unload(self, stories: Iterable[Story]) -> None:
        """Drop again the bodies ``load`` put back."""
        for story in stories:
            if story.path in self._refs:
                story.body = ""


def checker_for(config: Config) -> SchemaChecker:
    """The schema checker the configuration asks for."""
    return load_checker(str(config.schema) if config.schema else None)


def check_one(source: Source, entry: Entry, checker: SchemaChecker) -> tuple[Story | None, list[Diagnostic]]:
    """Read, parse and check one file on its own (no cross-file checks).

    The story is returned whenever it parsed, even with schema problems, so that
    the cross-file checks can still report on it.
    """
    return check_data(entry, source.read(entry), checker)


def check_data(entry: Entry, data: bytes | Diagnostic, checker: SchemaChecker) -> tuple[Story | None, list[Diagnostic]]:
    """Parse and check one file's bytes (or pass on why they could not be read)."""
    if isinstance(data, Diagnostic):
        return None, [data]
    parsed = parse_story(entry.location, data)
    if isinstance(parsed, list):
        return None, parsed
    return parsed, checker.check(parsed) + check_story(parsed)


def read_each(source: Source, entries: Sequence[Entry]) -> Iterator[tuple[Entry, bytes | Diagnostic]]:
    """Every entry's bytes in order: streamed in one batch where the source can, else one by one."""
    many: Callable[[Sequence[Entry]], Iterator[tuple[Entry, bytes | Diagnostic]]] | None
    many = getattr(source, "read_many", None)
    if many is not None:
        yield from many(entries)
        return
    for entry in entries:
        yield entry, source.read(entry)


def check_entries(
    source: Source,
    entries: Iterable[Entry],
    checker: SchemaChecker,
    known: Known | None = None,
    progress: Callable[[int], None] | None = None,
    *,
    compact: bool = False,
) -> Checked:
    """Check every entry, then the cross-file rules over all of them.

    ``compact`` drops, once a file's own checks are done, the positions that only
    those checks use (keeping what the cross-file checks point at) and, past
    ``KEEP_BODIES``, the body (``Checked.bodies`` reads it back for the write): a
    full sync of 100k stories holds every story at once.
    """
    result = Checked()
    bodies = result.bodies = Bodies(source, KEEP_BODIES) if compact else None
    shared: dict[Any, Any] = {}
    for entry, data in read_each(source, list(entries)):
        result.files += 1
        story, problems = check_data(entry, data, checker)
        result.add(problems)
        if story is not None:
            if bodies is not None:
                compact_positions(story, shared)
                bodies.drop(story, entry)
            result.stories.append(story)
        if progress:
            progress(1)
    result.add(check_set(result.stories, known))
    result.diagnostics.sort()
    return result


CROSS_FILE_KEYS = frozenset({"id", "depends_on"})  # the keys check_set reports at
FEW_VALUES = frozenset({"priority", "epic", "assignee", "tags"})  # values many stories repeat


def compact_positions(story: Story, shared: dict[Any, Any] | None = None) -> None:
    """Keep only the positions the cross-file checks can ask for (the id, depends_on, the mapping).

    With ``shared`` (one dict for a whole run), equal key paths and marks of many
    stories, their frontmatter keys, the strings of ``FEW_VALUES`` and the
    location's directory names are kept as one object each.
    """
    one = {} if shared is None else shared
    if shared is not None:
        story.frontmatter = {one.setdefault(k, k): _shared_value(one, k, v) for k, v in story.frontmatter.items()}
        loc = story.location
        story.location = replace(
            loc,
            stage=one.setdefault(loc.stage, loc.stage),
            status=one.setdefault(loc.status, loc.status),
            backlog=one.setdefault(loc.backlog, loc.backlog),
        )
    values, keys = story.value_marks, story.key_marks
    story.value_marks = {
        one.setdefault(p, p): one.setdefault(m, m) for p, m in values.items() if not p or p[0] in CROSS_FILE_KEYS
    }
    story.key_marks = {
        one.setdefault(p, p): one.setdefault(m, m) for p, m in keys.items() if p and p[0] in CROSS_FILE_KEYS
    }
    story.written = {}


def _shared_value(one: dict[Any, Any], key: str, value: Any) -> Any:
    if key not in FEW_VALUES:
        return value
    if isinstance(value, str):
        return one.setdefault(value, value)
    if isinstance(value, list):
        return [one.setdefault(v, v) if isinstance(v, str) else v for v in value]
    return value


class ListingKnown:
    """``Known`` for the rest of a source: ids from file names, deps read on demand.

    Checking a few files must not read the whole repository: a story's id equals
    its file name's prefix, so the listing answers "does this id exist"; only the
    stories a dependency chain actually reaches are parsed (for cycles).  A source
    with a cheap ``listing()`` of paths (the index) is classified only where a
    lookup lands, so a 100k-file repository costs one pass over path strings.
    """

    def __init__(self, config: Config, source: Source, checker: SchemaChecker, exclude: Collection[str] = ()) -> None:
        self._source = source
        self._checker = checker
        self._config = config
        self._candidates: dict[str, list[str | Entry]] = {}
        self._found: dict[str, tuple[str, Entry] | None] = {}
        self._deps: dict[str, list[str] | None] = {}
        listing: Callable[[], Iterable[str]] | None = getattr(source, "listing", None)
        items: Iterable[str | Entry] = listing() if listing is not None else source.entries()
        candidates = self._candidates
        for item in items:  # one pass over every path of the repository: keep it lean
            path = item if isinstance(item, str) else item.location.path
            if not path.endswith(".md") or path in exclude:  # the checked files speak for themselves
                continue
            sid = path[path.rfind("/") + 1 : -3].split("-", 2)
            if len(sid) < 2:
                continue
            stem = f"{sid[0]}-{sid[1]}"
            key = stem.lower() if stem.isascii() else fold_id(stem)  # NFKC and casefold are lower() on ASCII
            found = candidates.get(key)
            if found is None:
                candidates[key] = [item]
            else:
                found.append(item)

    def _story(self, folded: str) -> tuple[str, Entry] | None:
        """The first story file (in listing order) whose id folds to ``folded``."""
        if folded not in self._found:
            self._found[folded] = None
            for item in self._candidates.get(folded, ()):
                entry = item if isinstance(item, Entry) else self._entry(item)
                if entry is not None:
                    sid = entry.location.name[:-3].split("-", 2)
                    self._found[folded] = (f"{sid[0]}-{sid[1]}", entry)
                    break
        return self._found[folded]

    def _entry(self, path: str) -> Entry | None:
        if classify(self._config, path) is None:
            return None
        found = self._source.entries([path])
        return found[0] if found else None

    def lookup(self, folded: str) -> tuple[str, str] | None:
        found = self._story(folded)
        return None if found is None else (found[0], found[1].location.path)

    def deps(self, story_id: str) -> list[str] | None:
        if story_id not in self._deps:
            found = self._story(fold_id(story_id))
            if found is None or found[0] != story_id:
                self._deps[story_id] = None
            else:
                story, _ = check_one(self._source, found[1], self._checker)
                self._deps[story_id] = story.depends_on if story is not None else []
        return self._deps[story_id]


def validate_paths(config: Config, source: Source, paths: list[str] | None) -> Checked:
    """Check the given repository-relative paths (all story files when None)."""
    checker = checker_for(config)
    if paths is None:
        return check_entries(source, source.entries(), checker)
    wanted = [p for p in paths if classify(config, p) is not None]
    known = ListingKnown(config, source, checker, exclude=set(wanted))
    return check_entries(source, source.entries(wanted), checker, known)
