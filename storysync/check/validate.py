"""Load → check → result: parse story files from a source and collect every problem.

Used by ``storysync validate`` (working tree, given paths, or the index with
``--staged``) and by sync (a commit's tree).  Nothing here writes anything.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from storysync.check.rules import Known, check_set, check_story, fold_id
from storysync.check.schema import SchemaChecker, load_checker
from storysync.check.sources import Entry, Source
from storysync.config import Config
from storysync.errors import Diagnostic, StorysyncError
from storysync.story.layout import classify
from storysync.story.model import KNOWN_KEYS, KeyPath, Location, Mark, Record, Story, to_json
from storysync.story.parse import parse_story, split_body


@dataclass
class Checked:
    """The outcome of checking a set of story files."""

    stories: list[Record] = field(default_factory=list)  # parsed (file-level problems or not)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    invalid_paths: set[str] = field(default_factory=set)
    files: int = 0
    bodies: Bodies | None = None  # set when the stories' bodies may have been dropped (``compact``)

    def add(self, diags: Iterable[Diagnostic]) -> None:
        for d in diags:
            self.diagnostics.append(d)
            self.invalid_paths.add(d.path)

    @property
    def valid_stories(self) -> list[Record]:
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
        self._room = keep

    def drop(self, record: Record, entry: Entry) -> None:
        """Keep ``record``'s body while there is room, else forget it (``entry`` is where it is read back from)."""
        size = len(record.body or "")
        if size <= self._room:
            self._room -= size
            return
        self._room = 0
        record.body = None
        record.ref, record.size = entry.ref, entry.size

    def load(self, records: Sequence[Record]) -> None:
        """Put back the bodies of ``records`` (the ones dropped); ``StorysyncError`` if a file changed."""
        dropped = [r for r in records if r.body is None and r.ref is not None]
        wanted = [Entry(r.location, r.ref, r.size) for r in dropped if r.ref is not None]
        for record, (_, data) in zip(dropped, read_each(self._source, wanted), strict=True):
            if isinstance(data, Diagnostic) or hashlib.sha256(data).hexdigest() != record.content_hash:
                raise StorysyncError(f"{record.path}: the file changed while it was being synced; run the sync again")
            record.body = split_body(data)

    def unload(self, records: Iterable[Record]) -> None:
        """Drop again the bodies ``load`` put back."""
        for record in records:
            if record.ref is not None:
                record.body = None


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


_READ = Entry(Location("", "", "", "", ""), "", 0)  # what a compacted check leaves in place of an entry read


def check_entries(
    source: Source,
    entries: Iterable[Entry],
    checker: SchemaChecker,
    known: Known | None = None,
    progress: Callable[[int], None] | None = None,
    *,
    compact: bool = False,
    more: Callable[[Checked], list[Entry]] | None = None,
) -> Checked:
    """Check every entry, then the cross-file rules over all of them.

    Each story that parsed is kept as a ``Record`` once its file's own checks are
    done: its column values serialised and only the positions the cross-file
    checks point at.  ``compact`` also drops, past ``KEEP_BODIES``, the body
    (``Checked.bodies`` reads it back for the write), and consumes ``entries``: a
    list given is emptied and each entry let go once its file is read.  A full
    sync of 100k stories holds every record at once, but not every entry too.
    ``more``, asked once the entries are checked, names further entries to check
    (before the cross-file rules, which then cover them too).
    """
    result = Checked()
    bodies = result.bodies = Bodies(source, KEEP_BODIES) if compact else None
    shared: dict[Any, Any] = {}
    todo = list(entries)
    if compact and isinstance(entries, list):
        entries.clear()
    for i, (entry, data) in enumerate(read_each(source, todo)):
        if compact:
            todo[i] = _READ  # the reader is past it (read_each reads in order)
        result.files += 1
        story, problems = check_data(entry, data, checker)
        result.add(problems)
        if story is not None:
            record = to_record(story, shared)
            if bodies is not None:
                bodies.drop(record, entry)
            result.stories.append(record)
        if progress:
            progress(1)
    for entry, data in read_each(source, more(result) if more is not None else []):
        result.files += 1
        story, problems = check_data(entry, data, checker)
        result.add(problems)
        if story is not None:
            result.stories.append(to_record(story, shared))
    result.add(check_set(result.stories, known))
    result.diagnostics.sort()
    return result


CROSS_FILE_KEYS = frozenset({"id", "depends_on"})  # the keys check_set reports at
EMPTY_LIST, EMPTY_OBJECT = to_json([]), to_json({})
_MARKED: tuple[KeyPath, ...] = ((), ("id",), ("depends_on",))  # and ("depends_on", i) for each entry
_TAGS = object()  # the key, in a run's shared dict, of its tags texts by tags


def to_record(story: Story, shared: dict[Any, Any] | None = None) -> Record:
    """What a sync keeps of ``story``: its columns (``tags`` and ``extra`` as JSON text),
    ``depends_on``, body, and the positions the cross-file checks can ask for (the
    mapping, the id, ``depends_on`` and its entries).

    With ``shared`` (one dict for a whole run), equal places, marks, ``tags`` texts
    and the strings of priority, epic and assignee of many stories are kept as one
    object each.
    """
    one = {} if shared is None else shared
    fm, loc = story.frontmatter, story.location
    columns = (
        fm.get("title"),
        _shared_value(one, fm.get("priority")),
        fm.get("points"),
        _shared_value(one, fm.get("epic")),
        _shared_value(one, fm.get("assignee")),
        _tags_text(one, fm.get("tags")),
        _extra_text(fm),
    )
    place = (loc.stage, loc.status, loc.backlog)
    return Record(
        loc.path,
        one.setdefault(place, place),
        story.id,
        tuple(story.depends_on),
        story.content_hash,
        columns,
        _cross_file_marks(story, one),
        story.body,
    )


def _tags_text(one: dict[Any, Any], tags: Any) -> str:
    """``tags`` as the JSON text of the list stored (serialised once per distinct list of strings)."""
    if not tags:
        return EMPTY_LIST
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        return to_json(list(tags) if isinstance(tags, (dict, str)) else [tags])
    texts: dict[tuple[str, ...], str] = one.setdefault(_TAGS, {})
    key = tuple(tags)
    found = texts.get(key)
    if found is None:
        found = texts[key] = to_json(tags)
    return found


def _extra_text(fm: dict[str, Any]) -> str:
    """The JSON text of every frontmatter key without a column of its own."""
    extra = {k: v for k, v in fm.items() if k not in KNOWN_KEYS}
    return to_json(extra) if extra else EMPTY_OBJECT


def _cross_file_marks(story: Story, one: dict[Any, Any]) -> tuple[tuple[KeyPath, Mark], ...]:
    """The marks of the mapping, the id, ``depends_on`` and its entries: all that ``check_set`` asks."""
    values = story.value_marks
    deps = story.frontmatter.get("depends_on")
    paths = _MARKED + tuple(("depends_on", i) for i in range(len(deps))) if isinstance(deps, list) else _MARKED
    marks = tuple((one.setdefault(p, p), one.setdefault(m, m)) for p in paths if (m := values.get(p)) is not None)
    kept: tuple[tuple[KeyPath, Mark], ...] = one.setdefault(marks, marks)
    return kept


def _shared_value(one: dict[Any, Any], value: Any) -> Any:
    return one.setdefault(value, value) if isinstance(value, str) else value


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
            if not isinstance(item, str) and item.linked is not None and item.location.path == item.linked[0]:
                continue  # a symlinked directory named like a story file: not a story
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
