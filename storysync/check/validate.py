"""Load → check → result: parse story files from a source and collect every problem.

Used by ``storysync validate`` (working tree, given paths, or the index with
``--staged``) and by sync (a commit's tree).  Nothing here writes anything.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from storysync.check.rules import Known, check_set, check_story, fold_id, id_key
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
        for record, (_, data) in zip(dropped, self._source.read_many(wanted), strict=True):
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


def check_data(entry: Entry, data: bytes | Diagnostic, checker: SchemaChecker) -> tuple[Story | None, list[Diagnostic]]:
    """Parse and check one file's bytes (or pass on why they could not be read), on its own
    (no cross-file checks).

    The story is returned whenever it parsed, even with schema problems, so that
    the cross-file checks can still report on it.
    """
    if isinstance(data, Diagnostic):
        return None, [data]
    parsed = parse_story(entry.location, data)
    if isinstance(parsed, list):
        return None, parsed
    return parsed, checker.check(parsed) + check_story(parsed)


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
    for i, (entry, data) in enumerate(source.read_many(todo)):
        if compact:
            todo[i] = _READ  # the reader is past it (read_many reads in order)
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
    for entry, data in source.read_many(more(result) if more is not None else []):
        result.files += 1
        story, problems = check_data(entry, data, checker)
        result.add(problems)
        if story is not None:
            result.stories.append(to_record(story, shared))
    result.add(check_set(result.stories, known))
    result.diagnostics.sort()
    return result


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


class SourceKnown:
    """``Known`` for the rest of a source: its story files outside the checked ones, found
    by id and read only as far as the cross-file checks need.

    Checking a few files must not read the whole repository: a story's id is its
    file name's prefix, so a name folding to the id (case and Unicode form, as
    ``fold_id``) is a candidate, and the first in the source's order that is a
    story file answers.  A source that finds names itself (``named``, ``Source``'s
    optional capability: the index, by pathspec) is asked each round; any other
    is listed once and its names grouped by id.  ``prefetch`` walks what the
    checks will ask in rounds (the checked stories' ids and dependencies, then
    the dependencies of the stories found), each round's stories read in one
    batch; only the stories a dependency chain reaches are parsed.
    """

    def __init__(self, config: Config, source: Source, checker: SchemaChecker, exclude: Collection[str] = ()) -> None:
        self._config = config
        self._source = source
        self._checker = checker
        self._exclude = exclude  # the checked files speak for themselves
        self._named: Callable[[Collection[str], bool], list[str] | None] | None = getattr(source, "named", None)
        self._listed: dict[str, list[str | Entry]] | None = None  # every candidate by folded id, once listed
        self._found: dict[str, tuple[str, Entry] | None] = {}  # folded id -> (id from the name, entry)
        self._deps: dict[str, list[str] | None] = {}

    def prefetch(self, folded: Iterable[str], ids: Iterable[str]) -> None:
        """Look up, in rounds, what ``lookup`` of ``folded`` and ``deps`` of ``ids`` and of
        every story they reach will be asked."""
        wanted = list(dict.fromkeys(ids))
        walk = bool(wanted)  # likely more than one round
        self._resolve({*folded, *(fold_id(d) for d in wanted)}, walk)
        while wanted:
            fresh = [d for d in wanted if d not in self._deps]
            wanted = list(dict.fromkeys(d for deps in self._read(fresh) for d in deps if d not in self._deps))
            self._resolve({fold_id(d) for d in wanted}, walk)

    def lookup(self, folded: str) -> tuple[str, str] | None:
        self._resolve({folded})
        found = self._found[folded]
        return None if found is None else (found[0], found[1].location.path)

    def deps(self, story_id: str) -> list[str] | None:
        if story_id not in self._deps:
            self._resolve({fold_id(story_id)})
            self._read([story_id])
        return self._deps[story_id]

    def _resolve(self, keys: Collection[str], walk: bool = False) -> None:
        """Find the story file answering each folded id of ``keys`` not looked up yet."""
        todo = {k for k in keys if k not in self._found}
        if not todo:
            return
        groups = self._listed
        if groups is None:
            named = self._named(todo, walk) if self._named is not None else None
            if named is None:
                groups = self._listed = self._group(self._source.entries())
            else:
                groups = self._group(named)
        for key in todo:
            self._found[key] = next(filter(None, map(self._story, groups.get(key, ()))), None)

    def _group(self, items: Iterable[str | Entry]) -> dict[str, list[str | Entry]]:
        """``items`` (not the checked ones) by the folded id their names carry, each in the source's order."""
        groups: dict[str, list[str | Entry]] = {}
        exclude = self._exclude
        for item in items:  # at most one pass over every path of the repository: keep it lean
            path = item if isinstance(item, str) else item.location.path
            if not isinstance(item, str) and item.linked is not None and item.location.path == item.linked[0]:
                continue  # a symlinked directory named like a story file: not a story
            key = id_key(path) if path not in exclude else None
            if key is not None:
                groups.setdefault(key, []).append(item)
        return groups

    def _story(self, item: str | Entry) -> tuple[str, Entry] | None:
        """The id a story file's name carries, and its entry; None if ``item`` is no story file."""
        if isinstance(item, Entry):
            entry: Entry | None = item
        else:
            found = self._source.entries([item]) if classify(self._config, item) is not None else []
            entry = found[0] if found else None
        if entry is None:
            return None
        sid = entry.location.name[:-3].split("-", 2)
        return f"{sid[0]}-{sid[1]}", entry

    def _read(self, ids: Iterable[str]) -> list[list[str]]:
        """Read the stories with exactly these ids (one batch) and note their ``depends_on``."""
        todo: list[tuple[str, Entry]] = []
        for sid in ids:
            found = self._found.get(fold_id(sid))
            if found is None or found[0] != sid:
                self._deps[sid] = None
            else:
                todo.append((sid, found[1]))
        out = []
        for (sid, _), (entry, data) in zip(todo, self._source.read_many([e for _, e in todo]), strict=True):
            story, _ = check_data(entry, data, self._checker)
            deps = self._deps[sid] = story.depends_on if story is not None else []
            out.append(deps)
        return out


def validate_paths(config: Config, source: Source, paths: list[str] | None) -> Checked:
    """Check the given repository-relative paths (all story files when None)."""
    checker = checker_for(config)
    if paths is None:
        return check_entries(source, source.entries(), checker)
    wanted = [p for p in paths if classify(config, p) is not None]
    known = SourceKnown(config, source, checker, exclude=set(wanted))
    return check_entries(source, source.entries(wanted), checker, known)
