"""The index (staged) versions of story files, read with plain ``git`` subprocesses.

The pre-commit hook runs this on every commit, so it avoids GitPython's import
cost: one ``git ls-files`` and one ``git cat-file --batch`` for the wanted blobs.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from storysync.config import Config
from storysync.errors import Diagnostic, GitError
from storysync.layout import classify
from storysync.sources import Entry, _refusal

SYMLINK_MODE = "120000"
FEW_PATHS = 64  # up to this many wanted paths are looked up in the index one query, not listed in full


class IndexSource:
    """Story files as they are staged in the index."""

    label = "index"

    def __init__(self, config: Config) -> None:
        self.config = config
        self._records: dict[str, tuple[str, str]] | None = None  # path -> (mode, blob sha)
        self._unmerged: set[str] = set()

    def _git(self, *args: str, data: bytes | None = None) -> bytes:
        try:
            done = subprocess.run(["git", *args], cwd=self.config.repo, input=data, capture_output=True, check=True)
        except subprocess.CalledProcessError as exc:
            raise GitError(f"git {args[0]} failed: {exc.stderr.decode(errors='replace').strip()}") from exc
        except OSError as exc:
            raise GitError(f"cannot run git: {exc.strerror}") from exc
        return done.stdout

    def _all(self) -> dict[str, tuple[str, str]]:
        """Every path in the index under the stories root (not yet classified: that is per use)."""
        if self._records is None:
            self._records = self._stage_records("--", self.config.root or ".")
        return self._records

    def _stage_records(self, *pathspec: str) -> dict[str, tuple[str, str]]:
        """``git ls-files -s`` of ``pathspec`` as path -> (mode, blob sha); notes unmerged paths."""
        raw = self._git("ls-files", "-s", "-z", *pathspec)
        records: dict[str, tuple[str, str]] = {}
        for record in raw.decode("utf-8", "surrogateescape").split("\0"):  # one decode, not one a path
            if not record:
                continue
            meta, _, path = record.partition("\t")
            mode, sha, stage = meta.split()
            if stage != "0":
                self._unmerged.add(path)
            records[path] = (mode, sha)
        return records

    def listing(self) -> list[str]:
        """Every indexed path under the root, cheaply: callers classify the few they use.

        Paths only (``git ls-files`` without ``-s`` formats no object ids: about half
        the cost at 100k files); an unmerged path appears once per conflict stage.
        """
        if self._records is not None:
            return list(self._records)
        raw = self._git("ls-files", "-z", "--", self.config.root or ".")
        paths = raw.decode("utf-8", "surrogateescape").split("\0")
        if paths and not paths[-1]:
            paths.pop()
        return paths

    def entries(self, paths: Iterable[str] | None = None) -> list[Entry]:
        if paths is None:
            records = self._all()
            candidates: Iterable[str] = records
        else:
            wanted = set(paths)
            if self._records is None and len(wanted) <= FEW_PATHS:
                # a few files (the hook's staged ones, a dependency): ask git for just these
                records = self._stage_records("--", *(f":(literal){p}" for p in sorted(wanted))) if wanted else {}
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
