"""The index (staged) versions of story files, read with plain ``git`` processes.

The pre-commit hook runs this on every commit, so it avoids GitPython's import
cost and never parses the whole index for a few files: the staged blobs come
from ``git diff --cached --raw``; the checked stories' own ids (for duplicates)
from one ``git ls-files`` pathspec query; a dependency walk searches one
unparsed ``git ls-files -s``; every blob comes through one ``git cat-file
--batch`` kept open for the whole run.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Iterator, Sequence

from storysync.check.rules import check_set, id_key, name_id, prefetch
from storysync.check.schema import SchemaChecker
from storysync.check.sources import Entry, RawListing, _refusal, askable, directory_entry
from storysync.check.validate import Checked, SourceKnown, check_data, checker_for
from storysync.config import Config
from storysync.errors import Diagnostic
from storysync.git import runner
from storysync.git.blobs import BlobReader
from storysync.story.layout import classify, directory_place
from storysync.story.model import Story

FEW_PATHS = 64  # up to this many wanted paths are asked for by name rather than the whole index parsed
# The ids of the checked stories alone (no dependency walk) are asked for by pathspec: git reads the
# whole index (~17 ms at 100k), matches each id's pattern against every entry (~2 ms each) and lists the
# names with a non-ASCII byte (~28 ms).  A dependency walk, a second round or more than FEW_IDS ids
# search one unparsed ``ls-files -s`` instead (~60 ms at 100k, then ~5 ms a round).
LOOKUP_ROUNDS = 1
FEW_IDS = 6
WALK_BY_LISTING = True
_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")
# git reads these to change how every pathspec is read; the queries here spell out their own magic
_PATHSPEC_ENV: dict[str, str | None] = dict.fromkeys(
    ("GIT_LITERAL_PATHSPECS", "GIT_GLOB_PATHSPECS", "GIT_NOGLOB_PATHSPECS", "GIT_ICASE_PATHSPECS")
)
_STAGED = frozenset("ACMRT")  # the statuses of a path whose staged version a commit records
NON_ASCII = "[\udc80-\udcff]"  # any byte >= 0x80 (passed to git as raw bytes): a name with a non-ASCII character


class IndexSource:
    """Story files as they are staged in the index."""

    label = "index"

    def __init__(self, config: Config) -> None:
        self.config = config
        self._records: dict[str, tuple[str, str]] = {}  # path -> (mode, blob sha), as far as known
        self._complete = False  # whether ``_records`` holds the whole index under the root
        self._asked: set[str] = set()  # paths asked for by name (found or not)
        self._unmerged: set[str] = set()
        self._non_ascii: list[str] | None = None  # story-depth paths whose file name is not ASCII
        self._listing: RawListing | None = None  # an unparsed ``ls-files -s -z``, searched by ``named``
        self._by_key: dict[str, list[str]] | None = None  # the whole index by the folded id names carry
        self._rounds = 0  # how many times ``named`` was asked
        self._blobs = BlobReader(config.repo)
        self.replaced: list[str] = []  # paths of HEAD the staged change deletes or replaces (``staged``)

    def close(self) -> None:
        """End the ``git cat-file`` process this source keeps open."""
        self._blobs.close()

    def _git(self, *args: str) -> bytes:
        return runner.output(self.config.repo, *args, env=_PATHSPEC_ENV)

    def _ls_files(self, *pathspecs: str) -> list[str]:
        """``git ls-files -s`` of ``pathspecs``: their records are kept; the paths, in index order."""
        raw = self._git("ls-files", "-s", "-z", "--", *pathspecs)
        paths: list[str] = []
        for record in raw.decode("utf-8", "surrogateescape").split("\0"):
            if not record:
                continue
            meta, _, path = record.partition("\t")
            mode, sha, stage = meta.split()
            if stage != "0":
                self._unmerged.add(path)
            if not paths or paths[-1] != path:  # an unmerged path has a record per stage: the last one is kept
                paths.append(path)
            self._records[path] = (mode, sha)
        return paths

    def _all(self) -> dict[str, tuple[str, str]]:
        """Every path in the index under the stories root (not yet classified: that is per use)."""
        if not self._complete:
            self._records = {}
            self._ls_files(self.config.root or ".")
            self._complete = True
        return self._records

    def _use_listing(self) -> None:
        """From now on ``named`` searches one unparsed ``git ls-files -s`` of the index (a long walk)."""
        if self._listing is None:
            self._listing = RawListing(self._git("ls-files", "-s", "-z", "--", self.config.root or "."))

    def staged(self) -> list[str]:
        """Paths added, copied, modified, renamed or changed in type in the index (what a commit would change).

        Their index blobs are noted on the way, so reading them needs no listing
        of the index.  The paths HEAD has that the
        change deletes or replaces (a rename's old path too) are noted in ``replaced``.
        """
        raw = self._git("diff", "--cached", "--raw", "-z", "--no-abbrev", "--no-renames", "--no-color")
        fields = raw.decode("utf-8", "surrogateescape").split("\0")
        paths = []
        for meta, path in zip(fields[0:-1:2], fields[1::2], strict=True):
            old_mode, mode, _, sha, status = meta.split(" ")
            if old_mode != ":000000":
                self.replaced.append(path)
            if status not in _STAGED:
                continue
            self._records.setdefault(path, (mode, sha))
            self._asked.add(path)
            paths.append(path)
        return paths

    def containing(self, texts: Collection[str]) -> list[str]:
        """Index paths under the root whose blob holds one of ``texts`` or a backslash (which
        may spell any text in a YAML double-quoted scalar), in index order."""
        args = ["grep", "--cached", "-l", "-z", "--full-name", "--no-recurse-submodules", "--no-color", "-F"]
        for text in [*texts, "\\"]:
            args += ["-e", text]
        spec = f":(literal){self.config.root}" if self.config.root else "."
        found = runner.output(self.config.repo, *args, "--", spec, env=_PATHSPEC_ENV, ok=(0, 1))  # 1: none
        return _index_order(p.decode("utf-8", "surrogateescape") for p in found.split(b"\0") if p)

    def named(self, keys: Collection[str], walk: bool = False) -> list[str]:
        """Index paths whose file names may carry one of the folded ids ``keys``, in index order
        (``Source``'s optional capability); the caller folds each name to tell which really do.

        Up to ``FEW_IDS`` ids, in the first ``LOOKUP_ROUNDS`` rounds and not in a
        ``walk``, are asked for by one ``git ls-files`` pathspec query (the ASCII
        ids case-insensitively, names with a non-ASCII character, which may fold
        to any id, once a run); otherwise one unparsed listing of the index is
        searched; more than ``FEW_PATHS`` ids, or an index read whole already, are
        answered from the whole index grouped by id.
        """
        self._rounds += 1
        if self._by_key is None and (len(keys) > FEW_PATHS or self._complete):
            self._by_key = {}
            for path in self._all():
                key = id_key(path)
                if key is not None:
                    self._by_key.setdefault(key, []).append(path)
        if self._by_key is not None:
            return _index_order(p for k in keys for p in self._by_key.get(k, ()))
        if (walk and WALK_BY_LISTING) or self._rounds > LOOKUP_ROUNDS or len(keys) > FEW_IDS:
            self._use_listing()
        if self._listing is not None:
            return self._search(self._listing, keys)
        base = _glob_escape(self.config.root) + "/" if self.config.root else ""
        specs = [f":(glob,icase){base}*/*/{_glob_escape(k)}[-.]*" for k in sorted(keys) if askable(k)]
        if self._non_ascii is None:
            specs.append(f":(glob){base}*/*/*{NON_ASCII}*")
        if not specs:
            return list(self._non_ascii or [])
        found = self._ls_files(*specs)
        if self._non_ascii is None:
            self._non_ascii = [p for p in found if not _name(p).isascii()]
            return found
        return _index_order({*found, *self._non_ascii})

    def _search(self, listing: RawListing, keys: Collection[str]) -> list[str]:
        """``named`` over the unparsed listing (``RawListing.named``); each found record is kept."""
        found = [self._keep(record) for record in listing.named(keys)]
        return _index_order({*found, *(self._non_ascii or ())})

    def _keep(self, record: str) -> str:
        """Keep one ``ls-files -s`` record; its path (the listing is in index order: the last stage stays)."""
        meta, _, path = record.partition("\t")
        mode, sha, stage = meta.split()
        if stage != "0":
            self._unmerged.add(path)
        self._records[path] = (mode, sha)
        return path

    def entries(self, paths: Iterable[str] | None = None) -> list[Entry]:
        if paths is None:
            records: Iterable[str] = self._all()
        else:
            wanted = list(dict.fromkeys(paths))
            missing = [p for p in wanted if p not in self._asked and p not in self._records]
            if missing and not self._complete:
                if len(missing) <= FEW_PATHS:
                    self._ls_files(*(f":(literal){p}" for p in missing))
                    self._asked.update(missing)
                else:
                    self._all()
            records = _index_order(p for p in wanted if p in self._records)
        out = []
        for path in records:
            mode, sha = self._records[path]
            if mode == runner.SUBMODULE_MODE:  # a submodule's commit, not a file: skipped, as sync does
                continue
            location = classify(self.config, path)
            if location is not None:
                out.append(Entry(location, sha, 0, mode == runner.SYMLINK_MODE))
            elif mode == runner.SYMLINK_MODE and (linked := directory_entry(self.config, path)) is not None:
                out.append(linked)  # a symlinked stage or backlog directory: read as its refusal
        return out

    def _refused(self, entry: Entry) -> Diagnostic | None:
        if entry.location.path in self._unmerged:
            return Diagnostic(
                entry.location.path,
                1,
                1,
                "unmerged",
                "file has an unresolved merge conflict in the index; resolve it and 'git add' it",
            )
        return _refusal(entry)

    def read(self, entry: Entry) -> bytes | Diagnostic:
        return next(self.read_many([entry]))[1]

    def read_many(self, entries: Sequence[Entry]) -> Iterator[tuple[Entry, bytes | Diagnostic]]:
        """Each entry's bytes (or refusal), in order, through the one ``git cat-file --batch``."""
        blobs = self._blobs.read([e.ref for e in entries if self._refused(e) is None])
        for entry in entries:
            refusal = self._refused(entry)
            if refusal is not None:
                yield entry, refusal
                continue
            data = next(blobs)
            yield entry, _refusal(Entry(entry.location, entry.ref, len(data), entry.symlink)) or data


def validate_index(
    config: Config, source: IndexSource, paths: Sequence[str], replaced: Collection[str] = ()
) -> tuple[list[Diagnostic], int]:
    """Check the staged versions of ``paths`` against the rest of the index: every
    diagnostic (sorted) and how many story files were checked.

    The same checks and report as ``validate.validate_paths``; the rest of the
    index is asked for by id (``SourceKnown`` over ``named``) instead of listed.  ``replaced`` are
    the paths of HEAD the staged change deletes or replaces: a story id one of
    them carried that no staged story has any more is gone, and each story that
    depends on it is checked too, so its ``depends_on`` entry is reported as
    ``validate`` reports it for the whole tree.
    """
    checker = checker_for(config)
    wanted = [p for p in paths if classify(config, p) is not None or directory_place(config, p) is not None]
    result = Checked()
    stories = _check_staged(source, source.entries(wanted), checker, result)
    known = SourceKnown(config, source, checker, exclude=set(wanted))
    prefetch(known, stories)  # between the files' own checks and the cross-file ones: batched lookups
    gone = _gone_ids(config, replaced, stories, known)
    if gone:
        found = _dependents(config, source, checker, gone, exclude=set(wanted))
        if found:
            stories += _check_staged(source, found, checker, result)
            known = SourceKnown(config, source, checker, exclude={*wanted, *(e.location.path for e in found)})
            prefetch(known, stories)
    result.add(check_set(stories, known))
    result.diagnostics.sort()
    return result.diagnostics, result.files


def _check_staged(
    source: IndexSource, entries: Sequence[Entry], checker: SchemaChecker, result: Checked
) -> list[Story]:
    """Each entry's own checks, noted in ``result``; the stories that parsed."""
    stories: list[Story] = []
    for entry, data in source.read_many(entries):
        result.files += 1
        story, problems = check_data(entry, data, checker)
        result.add(problems)
        if story is not None:
            stories.append(story)
    return stories


def _gone_ids(config: Config, replaced: Collection[str], stories: Sequence[Story], known: SourceKnown) -> set[str]:
    """The ids the story files at ``replaced`` carried in their names that neither a checked
    story nor the rest of the index has any more."""
    ids = {sid for p in replaced if classify(config, p) is not None and (sid := name_id(p)) is not None}
    ids -= {s.id for s in stories}
    return {sid for sid in ids if known.deps(sid) is None}


def _dependents(
    config: Config, source: IndexSource, checker: SchemaChecker, gone: set[str], exclude: Collection[str]
) -> list[Entry]:
    """The entries of the index's other stories whose ``depends_on`` names one of ``gone``.

    ``git grep`` narrows them to the blobs that spell one of the ids (or hold a
    backslash, an escape may spell it); each of those is parsed to be sure.
    """
    paths = [p for p in source.containing(gone) if p not in exclude and classify(config, p) is not None]
    entries = source.entries(paths)
    found: list[Entry] = []
    for entry, data in source.read_many(entries):
        story, _ = check_data(entry, data, checker)
        if story is not None and not gone.isdisjoint(story.depends_on):
            found.append(entry)
    return found


def _glob_escape(text: str) -> str:
    return _GLOB_SPECIAL.sub(r"\\\1", text)


def _name(path: str) -> str:
    return path[path.rfind("/") + 1 :]


def _index_order(paths: Iterable[str]) -> list[str]:
    """``paths`` sorted as git's index sorts them (by their bytes)."""
    return sorted(paths, key=lambda p: p.encode("utf-8", "surrogateescape"))
