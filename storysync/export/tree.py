"""The tree an export leaves, checked as the pre-commit hook and the next sync check it.

The files an export writes are checked with the cross-file rules (ids unique,
``depends_on`` naming a story, no cycles: ``check.rules.check_set``) against the
rest of the tree they land in: with ``--commit`` the commit (HEAD and the exported
files), else the working tree.  A row whose file would make that tree invalid is
refused with the problem, and the other files are checked again without it, until
every file written passes: an export never writes or commits a tree that the next
sync refuses (a row created with the id of a committed but unsynced file, a
``depends_on`` naming a story whose file was deleted).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

from storysync.check.rules import id_key
from storysync.check.sources import Entry, GitTreeSource, Source, WorkTreeSource
from storysync.check.validate import SourceKnown, check_entries, checker_for
from storysync.config import Config
from storysync.errors import Diagnostic
from storysync.export.actions import Action
from storysync.git import runner
from storysync.story.layout import classify

if TYPE_CHECKING:
    from storysync.git.runner import GitRepo

_WRITTEN = ("update", "move", "create")


class ExportedTree:
    """A source: ``base`` as the export leaves it (its files written, moved-away and deleted paths gone)."""

    label = "export"

    def __init__(self, config: Config, base: Source, actions: Iterable[Action]) -> None:
        self.base = base
        self.files: dict[str, tuple[Entry, bytes]] = {}
        self.removed: set[str] = set()
        self._base_entries: list[Entry] | None = None  # the base's listing, read once for every round
        for action in actions:
            if action.kind in _WRITTEN and action.new_path is not None and action.data is not None:
                location = classify(config, action.new_path)
                assert location is not None  # planning made sure
                self.files[action.new_path] = (Entry(location, "", len(action.data)), action.data)
            if action.kind in ("move", "delete") and action.old_path is not None:
                self.removed.add(action.old_path)

    def drop(self, action: Action) -> None:
        """The tree without ``action``'s change (a refused row leaves its file as it was)."""
        if action.new_path is not None:
            self.files.pop(action.new_path, None)
        if action.old_path is not None:
            self.removed.discard(action.old_path)

    def _hidden(self, path: str) -> bool:
        return path in self.removed or path in self.files

    def entries(self, paths: Iterable[str] | None = None) -> list[Entry]:
        if paths is None:
            if self._base_entries is None:
                self._base_entries = self.base.entries()
            kept = [e for e in self._base_entries if not self._hidden(e.location.path)]
            return kept + [entry for entry, _ in self.files.values()]
        wanted = list(paths)
        found = self.base.entries([p for p in wanted if not self._hidden(p)])
        return found + [self.files[p][0] for p in wanted if p in self.files]

    def named(self, keys: Collection[str], walk: bool = False) -> list[str] | None:
        """``Source``'s optional capability, when the base has it (a commit's tree): the
        base's paths whose names may carry one of ``keys`` (the exported files speak for
        their own paths), then the exported files', in ``entries``' order."""
        named = getattr(self.base, "named", None)
        if named is None:
            return None
        found: list[str] | None = named(keys, walk)
        if found is None:
            return None
        own = [p for p in self.files if id_key(p) in keys]
        return [p for p in found if not self._hidden(p)] + own

    def read(self, entry: Entry) -> bytes | Diagnostic:
        own = self.files.get(entry.location.path)
        if own is not None and own[0] is entry:
            return own[1]
        return self.base.read(entry)

    def read_many(self, entries: Sequence[Entry]) -> Iterator[tuple[Entry, bytes | Diagnostic]]:
        """Each entry's bytes: the exported files' own, the rest read from the base in one batch."""
        base = iter(self.base.read_many([e for e in entries if not self._own(e)]))
        for entry in entries:
            yield (entry, self.files[entry.location.path][1]) if self._own(entry) else next(base)

    def _own(self, entry: Entry) -> bool:
        own = self.files.get(entry.location.path)
        return own is not None and own[0] is entry


class _Empty:
    """The tree of an unborn branch: no story files."""

    label = "empty tree"

    def entries(self, paths: Iterable[str] | None = None) -> list[Entry]:
        return []

    def read(self, entry: Entry) -> bytes | Diagnostic:  # pragma: no cover - it lists nothing to read
        raise AssertionError(entry)

    def read_many(self, entries: Sequence[Entry]) -> Iterator[tuple[Entry, bytes | Diagnostic]]:
        return ((entry, self.read(entry)) for entry in entries)


def base_tree(config: Config, repo: GitRepo, commit: bool) -> Source:
    """What the exported files land in: HEAD's tree for a commit, else the working tree."""
    if not commit:
        return WorkTreeSource(config)
    head = runner.head(repo.top)
    return GitTreeSource(repo, config, head) if head is not None else _Empty()


def refuse_invalid(config: Config, actions: list[Action], base: Source) -> None:
    """Refuse (``kind`` 'refused', with the problems as the reason) each written row whose
    file would leave the tree invalid, until the files left all pass."""
    written = [a for a in actions if a.kind in _WRITTEN]
    if not written:
        return
    if isinstance(base, GitTreeSource) and base.blobs is None:
        # local: a blob reader only when the exported tree is a commit's
        from storysync.git.blobs import BlobReader

        base.blobs = BlobReader(config.repo)  # the dependency walk reads one file at a time
        try:
            _refuse_invalid(config, actions, base, written)
        finally:
            base.blobs.close()
            base.blobs = None
        return
    _refuse_invalid(config, actions, base, written)


def _refuse_invalid(config: Config, actions: list[Action], base: Source, written: list[Action]) -> None:
    tree = ExportedTree(config, base, actions)
    checker = checker_for(config)
    while written:
        paths = sorted(tree.files)
        known = SourceKnown(config, tree, checker, exclude=set(paths))
        checked = check_entries(tree, tree.entries(paths), checker, known)
        problems = _by_path(checked.diagnostics)
        bad = [a for a in written if a.new_path in problems]
        if not bad:
            return
        for action in bad:
            action.kind, action.data = "refused", None
            action.reason = "; ".join(problems[action.new_path or ""])
            tree.drop(action)
        written = [a for a in written if a.kind in _WRITTEN]


def _by_path(diagnostics: Iterable[Diagnostic]) -> Mapping[str, list[str]]:
    out: dict[str, list[str]] = {}
    for d in diagnostics:
        out.setdefault(d.path, []).append(d.message)
    return out
