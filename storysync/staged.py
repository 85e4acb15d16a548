"""The index (staged) versions of story files, read with plain ``git`` subprocesses.

The pre-commit hook runs this on every commit, so it avoids GitPython's import
cost: one ``git ls-files`` and one ``git cat-file --batch`` for the wanted blobs.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from storysync.config import Config
from storysync.errors import Diagnostic, GitError
from storysync.layout import classify
from storysync.sources import Entry, _refusal

SYMLINK_MODE = "120000"
FEW_LOOKUPS = 32  # after this many searches of the unparsed listing (~2 ms each at 100k), it is parsed whole (~110 ms)
FEW_PATHS = 64  # up to this many wanted paths are searched for rather than the listing parsed
_PATHS = re.compile("\t([^\0]*)\0")  # the path of each ``mode sha stage<TAB>path<NUL>`` record


class IndexSource:
    """Story files as they are staged in the index."""

    label = "index"

    def __init__(self, config: Config) -> None:
        self.config = config
        self._records: dict[str, tuple[str, str]] | None = None  # path -> (mode, blob sha)
        self._unmerged: set[str] = set()
        self._text: str | None = None  # the unparsed index listing
        self._lookups = 0  # searches of the unparsed listing so far

    def _git(self, *args: str, data: bytes | None = None) -> bytes:
        try:
            done = subprocess.run(["git", *args], cwd=self.config.repo, input=data, capture_output=True, check=True)
        except subprocess.CalledProcessError as exc:
            raise GitError(f"git {args[0]} failed: {exc.stderr.decode(errors='replace').strip()}") from exc
        except OSError as exc:
            raise GitError(f"cannot run git: {exc.strerror}") from exc
        return done.stdout

    def _index_text(self) -> str:
        """``git ls-files -s -z`` under the root, decoded once and kept unparsed."""
        if self._text is None:
            raw = self._git("ls-files", "-s", "-z", "--", self.config.root or ".")
            self._text = raw.decode("utf-8", "surrogateescape")  # one decode, not one a path
        return self._text

    def _all(self) -> dict[str, tuple[str, str]]:
        """Every path in the index under the stories root (not yet classified: that is per use)."""
        if self._records is None:
            records: dict[str, tuple[str, str]] = {}
            for record in self._index_text().split("\0"):
                if not record:
                    continue
                meta, _, path = record.partition("\t")
                mode, sha, stage = meta.split()
                if stage != "0":
                    self._unmerged.add(path)
                records[path] = (mode, sha)
            self._records = records
            self._text = None  # parsed: the records answer from now on
        return self._records

    def _find(self, path: str) -> tuple[int, tuple[str, str]] | None:
        """Where ``path``'s first record sits in the listing, and its (mode, blob sha); notes a conflict.

        A search of the unparsed listing: a record is ``mode sha stage<TAB>path<NUL>``,
        and a match counts only if no tab precedes it in its record (a path may hold one).
        """
        text = self._index_text()
        needle = f"\t{path}\0"
        first: int | None = None
        found: tuple[str, str] | None = None
        at = text.find(needle)
        while at >= 0:
            meta = text[text.rfind("\0", 0, at) + 1 : at]
            if "\t" not in meta:
                mode, sha, stage = meta.split()
                if stage != "0":
                    self._unmerged.add(path)
                first = at if first is None else first
                found = (mode, sha)  # the last stage, as a parse of the whole listing keeps
            at = text.find(needle, at + 1)
        return None if first is None or found is None else (first, found)

    def listing(self) -> list[str]:
        """Every indexed path under the root, cheaply: callers classify the few they use.

        The paths are cut out of the listing by one regular expression, without
        parsing the records; an unmerged path appears once per conflict stage.
        """
        if self._records is not None:
            return list(self._records)
        return _PATHS.findall(self._index_text())

    def entries(self, paths: Iterable[str] | None = None) -> list[Entry]:
        records: dict[str, tuple[str, str]]
        if paths is None:
            records = self._all()
            candidates: Iterable[str] = records
        else:
            wanted = set(paths)
            if self._records is None and len(wanted) <= FEW_PATHS and self._lookups < FEW_LOOKUPS:
                # a few files (the staged ones, a dependency): searched for in the listing;
                # a long dependency chain instead parses the whole listing once
                self._lookups += 1
                hits = sorted((hit[0], path, hit[1]) for path in wanted if (hit := self._find(path)) is not None)
                records = {path: record for _, path, record in hits}
            else:
                records = self._all()
            candidates = [p for p in records if p in wanted]
        out = []
        for path in candidates:
            location = classify(self.config, path)
            if location is not None:
                mode, sha = records[path]
                out.append(Entry(location, sha, 0, mode == SYMLINK_MODE))
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
        refusal = self._refused(entry)
        if refusal:
            return refusal
        out = self._git("cat-file", "blob", entry.ref)
        return _refusal(Entry(entry.location, entry.ref, len(out), entry.symlink)) or out

    def read_many(self, entries: Sequence[Entry]) -> Iterator[tuple[Entry, bytes | Diagnostic]]:
        """Each entry's bytes (or refusal), in order, through one ``git cat-file --batch``."""
        from storysync.blobs import read_blobs

        blobs = read_blobs(self.config.repo, [e.ref for e in entries if self._refused(e) is None])
        try:
            for entry in entries:
                refusal = self._refused(entry)
                if refusal is not None:
                    yield entry, refusal
                    continue
                data = next(blobs)[1]
                yield entry, _refusal(Entry(entry.location, entry.ref, len(data), entry.symlink)) or data
        finally:
            blobs.close()


def staged_paths(repo: Path) -> list[str]:
    """Paths added, copied, modified or renamed in the index (what a commit would change)."""
    done = subprocess.run(
        ["git", "diff", "--cached", "--name-only", "--diff-filter=ACMR", "-z"],
        cwd=repo,
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        raise GitError(f"git diff --cached failed: {done.stderr.decode(errors='replace').strip()}")
    return [p.decode("utf-8", "surrogateescape") for p in done.stdout.split(b"\0") if p]
