"""The index (staged) versions of story files, read with plain ``git`` subprocesses.

The pre-commit hook runs this on every commit, so it avoids GitPython's import
cost and never parses the whole index for a few files: the staged blobs come
from ``git diff --cached --raw``; the checked stories' own ids (for duplicates)
from one ``git ls-files`` pathspec query; a dependency walk searches one
unparsed ``git ls-files -s``; every blob comes through one ``git cat-file
--batch`` kept open for the whole run.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Collection, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from storysync.check.rules import check_set, fold_id
from storysync.check.schema import SchemaChecker
from storysync.check.sources import Entry, _refusal, directory_entry
from storysync.config import Config
from storysync.errors import Diagnostic, GitError
from storysync.git.blobs import BlobReader
from storysync.story.layout import classify, directory_place
from storysync.story.model import Story

if TYPE_CHECKING:
    from storysync.check.validate import Checked

SYMLINK_MODE = "120000"
SUBMODULE_MODE = "160000"  # a gitlink (gitplain.SUBMODULE_MODE; not imported on the hook path)
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
_PATHSPEC_ENV = ("GIT_LITERAL_PATHSPECS", "GIT_GLOB_PATHSPECS", "GIT_NOGLOB_PATHSPECS", "GIT_ICASE_PATHSPECS")
_HIGH_BYTE = re.compile(b"[\x80-\xff]")
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
        self._raw: bytes | None = None  # an unparsed ``ls-files -s -z``, searched by ``named`` (``use_listing``)
        self._low = b""  # the same, ASCII letters lowered
        self._blobs = BlobReader(config.repo)
        self.replaced: list[str] = []  # paths of HEAD the staged change deletes or replaces (``staged``)
        env = os.environ.copy()
        for key in _PATHSPEC_ENV:
            env.pop(key, None)
        self._env = env

    def close(self) -> None:
        """End the ``git cat-file`` process this source keeps open."""
        self._blobs.close()

    def _git(self, *args: str) -> bytes:
        try:
            done = subprocess.run(["git", *args], cwd=self.config.repo, env=self._env, capture_output=True, check=True)
        except subprocess.CalledProcessError as exc:
            raise GitError(f"git {args[0]} failed: {exc.stderr.decode(errors='replace').strip()}") from exc
        except OSError as exc:
            raise GitError(f"cannot run git: {exc.strerror}") from exc
        return done.stdout

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

    def use_listing(self) -> None:
        """From now on ``named`` searches one unparsed ``git ls-files -s`` of the index (a long walk)."""
        if self._raw is None:
            self._raw = self._git("ls-files", "-s", "-z", "--", self.config.root or ".")
            self._low = self._raw.lower()  # ASCII letters only: every position stays

    @property
    def complete(self) -> bool:
        """Whether the whole index under the root has been read."""
        return self._complete

    def staged(self) -> list[str]:
        """Paths added, copied, modified, renamed or changed in type in the index (what a commit would change).

        The same paths as ``staged_paths``; their index blobs are noted on the way,
        so reading them needs no listing of the index.  The paths HEAD has that the
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
        try:
            done = subprocess.run(["git", *args, "--", spec], cwd=self.config.repo, env=self._env, capture_output=True)
        except OSError as exc:
            raise GitError(f"cannot run git: {exc.strerror}") from exc
        if done.returncode not in (0, 1):  # 1: nothing found
            raise GitError(f"git grep failed: {done.stderr.decode(errors='replace').strip()}")
        return _index_order(p.decode("utf-8", "surrogateescape") for p in done.stdout.split(b"\0") if p)

    def listing(self) -> list[str]:
        """Every indexed path under the root (the whole index is read once)."""
        return list(self._all())

    def named(self, keys: Collection[str]) -> list[str]:
        """Story-depth index paths whose file names may carry one of the folded ids ``keys``, in index order.

        One ``git ls-files`` asks for the ASCII ids, case-insensitively; names with
        a non-ASCII character (which may fold to any id) are asked for once a run.
        The caller folds each name to tell which really carry which id.
        """
        if self._complete:
            return list(self._records)
        if self._raw is not None:
            return self._search(keys)
        base = _glob_escape(self.config.root) + "/" if self.config.root else ""
        specs = [f":(glob,icase){base}*/*/{_glob_escape(k)}[-.]*" for k in sorted(keys) if _askable(k)]
        if self._non_ascii is None:
            specs.append(f":(glob){base}*/*/*{NON_ASCII}*")
        if not specs:
            return list(self._non_ascii or [])
        found = self._ls_files(*specs)
        if self._non_ascii is None:
            self._non_ascii = [p for p in found if not _name(p).isascii()]
            return found
        return _index_order({*found, *self._non_ascii})

    def _search(self, keys: Collection[str]) -> list[str]:
        """``named`` over the unparsed listing: names starting ``<id>-`` or ``<id>.`` (ASCII case
        ignored), and names with a non-ASCII byte; each found record is kept."""
        askable = sorted(k for k in keys if _askable(k))
        found: list[str] = []
        if askable:
            names = re.compile(b"/(?:" + b"|".join(re.escape(k.encode()) for k in askable) + b")[-.]")
            found = [p for m in names.finditer(self._low) if (p := self._record_at(m.start())) is not None]
        if self._non_ascii is None:
            self._non_ascii = self._non_ascii_names()
        return _index_order({*found, *self._non_ascii})

    def _non_ascii_names(self) -> list[str]:
        """The listing's paths whose file name has a non-ASCII byte (their records are kept)."""
        raw = self._raw or b""
        out: list[str] = []
        at = 0 if not raw.isascii() else len(raw)  # isascii: one fast pass, and the usual answer
        while (hit := _HIGH_BYTE.search(raw, at)) is not None:
            end = raw.find(b"\0", hit.start())
            start = max(raw.rfind(b"/", 0, end), raw.rfind(b"\0", 0, end)) + 1
            if not raw[start:end].isascii() and (path := self._record_at(end - 1)) is not None:
                out.append(path)
            at = end + 1
        return out

    def _record_at(self, at: int) -> str | None:
        """The path of the listing's record around ``at`` if ``at`` is in its file name (the record is kept)."""
        raw = self._raw or b""
        end = raw.find(b"\0", at)
        if raw.find(b"/", at + 1, end) >= 0:
            return None  # a directory name matched, not the file's
        meta, _, path = raw[raw.rfind(b"\0", 0, at) + 1 : end].decode("utf-8", "surrogateescape").partition("\t")
        mode, sha, stage = meta.split()
        if stage != "0":
            self._unmerged.add(path)
        self._records[path] = (mode, sha)  # the listing is in index order: the last stage stays
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
            if mode == SUBMODULE_MODE:  # a submodule's commit, not a file: skipped, as sync does
                continue
            location = classify(self.config, path)
            if location is not None:
                out.append(Entry(location, sha, 0, mode == SYMLINK_MODE))
            elif mode == SYMLINK_MODE and (linked := directory_entry(self.config, path)) is not None:
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


class IndexKnown:
    """``Known`` for the rest of the index, asked id by id: the whole index is never listed
    for a few checked files, so the hook costs the same in a 1k or a 100k repository.

    ``prepare`` walks what the cross-file checks will ask in rounds: the ids of the
    checked stories and their dependencies, the stories found read in one batch,
    their dependencies in the next round.  A story's id
    is its file name's prefix, so a name folding to the id (case and Unicode form,
    as ``fold_id``) is a candidate; the first in index order that is a story file
    answers, as ``validate.ListingKnown`` does over the whole listing.  Without
    dependencies, up to ``FEW_IDS`` ids are asked for by one ``git ls-files``
    pathspec query; a walk searches one unparsed listing of the index instead,
    and a round of more than ``FEW_PATHS`` ids parses it.
    """

    def __init__(self, config: Config, source: IndexSource, checker: SchemaChecker, exclude: Collection[str]) -> None:
        self._config = config
        self._source = source
        self._checker = checker
        self._exclude = exclude
        self._found: dict[str, tuple[str, Entry] | None] = {}  # folded id -> (id from the name, entry)
        self._deps: dict[str, list[str] | None] = {}
        self._rounds = 0
        self._groups: dict[str, list[str]] | None = None  # the whole index by folded id, once it is listed

    def prepare(self, stories: Sequence[Story]) -> None:
        """Look up, in batches, everything the cross-file checks of ``stories`` will ask."""
        checked = {s.id for s in stories if s.id}
        wanted = [d for s in stories for d in s.depends_on if d not in checked]
        if wanted and WALK_BY_LISTING:  # a walk: likely more than one round, cheaper from one listing
            self._source.use_listing()
        self._resolve({fold_id(sid) for sid in checked} | {fold_id(d) for d in wanted})
        while wanted:
            fresh = [d for d in dict.fromkeys(wanted) if d not in self._deps]
            wanted = [d for deps in self._read(fresh) for d in deps if d not in checked and d not in self._deps]
            self._resolve({fold_id(d) for d in wanted})

    def lookup(self, folded: str) -> tuple[str, str] | None:
        self._resolve({folded})
        found = self._found[folded]
        return None if found is None else (found[0], found[1].location.path)

    def deps(self, story_id: str) -> list[str] | None:
        if story_id not in self._deps:
            self._resolve({fold_id(story_id)})
            self._read([story_id])
        return self._deps[story_id]

    def _resolve(self, keys: Collection[str]) -> None:
        """Find the story file answering each folded id of ``keys`` not looked up yet."""
        todo = {k for k in keys if k not in self._found}
        if not todo:
            return
        self._rounds += 1
        if self._groups is None and (len(todo) > FEW_PATHS or self._source.complete):
            self._groups = self._group(self._source.listing())  # from now on without more queries
        elif self._rounds > LOOKUP_ROUNDS or len(todo) > FEW_IDS:
            self._source.use_listing()
        groups = self._groups if self._groups is not None else self._group(self._source.named(todo))
        for key in todo:
            self._found[key] = next(filter(None, map(self._story, groups.get(key, ()))), None)

    def _group(self, paths: Iterable[str]) -> dict[str, list[str]]:
        """``paths`` (not the checked ones) by the folded id their names carry, each in index order."""
        groups: dict[str, list[str]] = {}
        for path in paths:
            key = _id_key(path) if path not in self._exclude else None
            if key is not None:
                groups.setdefault(key, []).append(path)
        return groups

    def _story(self, path: str) -> tuple[str, Entry] | None:
        if classify(self._config, path) is None:
            return None
        found = self._source.entries([path])
        if not found:
            return None
        sid = found[0].location.name[:-3].split("-", 2)
        return f"{sid[0]}-{sid[1]}", found[0]

    def _read(self, ids: Iterable[str]) -> list[list[str]]:
        """Read the stories with exactly these ids (one batch) and note their ``depends_on``."""
        from storysync.check.validate import check_data

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


def validate_index(
    config: Config, source: IndexSource, paths: Sequence[str], replaced: Collection[str] = ()
) -> tuple[list[Diagnostic], int]:
    """Check the staged versions of ``paths`` against the rest of the index: every
    diagnostic (sorted) and how many story files were checked.

    The same checks and report as ``validate.validate_paths``; the rest of the
    index is asked for by id (``IndexKnown``) instead of listed.  ``replaced`` are
    the paths of HEAD the staged change deletes or replaces: a story id one of
    them carried that no staged story has any more is gone, and each story that
    depends on it is checked too, so its ``depends_on`` entry is reported as
    ``validate`` reports it for the whole tree.
    """
    from storysync.check.validate import Checked, checker_for

    checker = checker_for(config)
    wanted = [p for p in paths if classify(config, p) is not None or directory_place(config, p) is not None]
    result = Checked()
    stories = _check_staged(source, source.entries(wanted), checker, result)
    known = IndexKnown(config, source, checker, exclude=set(wanted))
    known.prepare(stories)  # between the files' own checks and the cross-file ones: batched lookups
    gone = _gone_ids(config, replaced, stories, known)
    if gone:
        found = _dependents(config, source, checker, gone, exclude=set(wanted))
        if found:
            stories += _check_staged(source, found, checker, result)
            known = IndexKnown(config, source, checker, exclude={*wanted, *(e.location.path for e in found)})
            known.prepare(stories)
    result.add(check_set(stories, known))
    result.diagnostics.sort()
    return result.diagnostics, result.files


def _check_staged(
    source: IndexSource, entries: Sequence[Entry], checker: SchemaChecker, result: Checked
) -> list[Story]:
    """Each entry's own checks, noted in ``result``; the stories that parsed."""
    from storysync.check.validate import check_data

    stories: list[Story] = []
    for entry, data in source.read_many(entries):
        result.files += 1
        story, problems = check_data(entry, data, checker)
        result.add(problems)
        if story is not None:
            stories.append(story)
    return stories


def _gone_ids(config: Config, replaced: Collection[str], stories: Sequence[Story], known: IndexKnown) -> set[str]:
    """The ids the story files at ``replaced`` carried in their names that neither a checked
    story nor the rest of the index has any more."""
    ids = {sid for p in replaced if classify(config, p) is not None and (sid := _name_id(p)) is not None}
    ids -= {s.id for s in stories}
    return {sid for sid in ids if known.deps(sid) is None}


def _dependents(
    config: Config, source: IndexSource, checker: SchemaChecker, gone: set[str], exclude: Collection[str]
) -> list[Entry]:
    """The entries of the index's other stories whose ``depends_on`` names one of ``gone``.

    ``git grep`` narrows them to the blobs that spell one of the ids (or hold a
    backslash, an escape may spell it); each of those is parsed to be sure.
    """
    from storysync.check.validate import check_data

    paths = [p for p in source.containing(gone) if p not in exclude and classify(config, p) is not None]
    entries = source.entries(paths)
    found: list[Entry] = []
    for entry, data in source.read_many(entries):
        story, _ = check_data(entry, data, checker)
        if story is not None and not gone.isdisjoint(story.depends_on):
            found.append(entry)
    return found


def staged_paths(repo: Path) -> list[str]:
    """Paths added, copied, modified, renamed or changed in type in the index (what a commit would change)."""
    done = subprocess.run(
        ["git", "diff", "--cached", "--name-only", "--no-renames", "--diff-filter=ACMRT", "-z"],
        cwd=repo,
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        raise GitError(f"git diff --cached failed: {done.stderr.decode(errors='replace').strip()}")
    return [p.decode("utf-8", "surrogateescape") for p in done.stdout.split(b"\0") if p]


def _glob_escape(text: str) -> str:
    return _GLOB_SPECIAL.sub(r"\\\1", text)


def _askable(key: str) -> bool:
    """Whether an ASCII file name can fold to ``key`` (an id prefix always holds a ``-``, never a ``/``)."""
    return key.isascii() and "-" in key and "/" not in key and "\0" not in key


def _name(path: str) -> str:
    return path[path.rfind("/") + 1 :]


def _name_id(path: str) -> str | None:
    """The id a story file's name carries (``<ID>-<slug>.md`` or ``<ID>.md``), if any."""
    if not path.endswith(".md"):
        return None
    sid = path[path.rfind("/") + 1 : -3].split("-", 2)
    return f"{sid[0]}-{sid[1]}" if len(sid) >= 2 else None


def _id_key(path: str) -> str | None:
    """The folded id a story file's name carries (``<ID>-<slug>.md`` or ``<ID>.md``), if any."""
    if not path.endswith(".md"):
        return None
    sid = path[path.rfind("/") + 1 : -3].split("-", 2)
    if len(sid) < 2:
        return None
    stem = f"{sid[0]}-{sid[1]}"
    return stem.lower() if stem.isascii() else fold_id(stem)  # NFKC and casefold are lower() on ASCII


def _index_order(paths: Iterable[str]) -> list[str]:
    """``paths`` sorted as git's index sorts them (by their bytes)."""
    return sorted(paths, key=lambda p: p.encode("utf-8", "surrogateescape"))
