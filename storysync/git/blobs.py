"""Read many git blobs through one ``git cat-file --batch`` process, streamed.

Asking for objects one at a time costs a pipe round trip each (about 100 µs,
a second per 10k stories); here every object id is written up front by a
writer thread and the contents are read back in order as they come, so git
works while the caller parses.  Plain ``subprocess``: no GitPython import.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import IO

from storysync.errors import GitError


def read_blobs(repo: Path, shas: Sequence[str]) -> Generator[tuple[str, bytes], None, None]:
    """``(sha, contents)`` for each of ``shas``, in the same order; ``GitError`` if one is missing."""
    if not shas:
        return
    try:
        proc = subprocess.Popen(
            ["git", "cat-file", "--batch"],
            cwd=repo,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    except OSError as exc:
        raise GitError(f"cannot run git: {exc.strerror}") from exc
    assert proc.stdin is not None
    assert proc.stdout is not None
    writer = threading.Thread(target=_write_ids, args=(proc.stdin, shas), daemon=True)
    writer.start()
    try:
        for sha in shas:
            yield sha, _read_one(proc.stdout, sha)
    finally:
        proc.stdout.close()
        writer.join()
        proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


def _write_ids(stdin: IO[bytes], shas: Sequence[str]) -> None:
    try:
        stdin.write(b"".join(sha.encode("ascii") + b"\n" for sha in shas))
        stdin.close()
    except (BrokenPipeError, ValueError, OSError):  # the reader stopped early (an error, or a closed generator)
        return


def _read_one(stdout: IO[bytes], sha: str) -> bytes:
    header = stdout.readline()
    parts = header.split()
    if len(parts) != 3 or parts[1] != b"blob":
        what = header.decode(errors="replace").strip() or "no answer"
        raise GitError(f"git cat-file --batch: cannot read blob {sha}: {what}")
    size = int(parts[2])
    data = stdout.read(size)
    stdout.read(1)  # the newline after each object
    if len(data) != size:
        raise GitError(f"git cat-file --batch: blob {sha} ended early")
    return data


class BlobReader:
    """One ``git cat-file --batch`` kept open for several rounds of reads.

    A walk that learns which blobs it needs only from the blobs it read (a
    dependency chain) asks in rounds; this answers each round without starting
    another process.  Requests go in chunks small enough for the pipe, so neither
    side waits on the other.  ``close`` ends the process.
    """

    CHUNK = 64  # object ids a write (~2.6 KB, well inside a pipe's buffer); at most this many blobs held

    def __init__(self, repo: Path) -> None:
        self._repo = repo
        self._proc: subprocess.Popen[bytes] | None = None

    def read(self, shas: Sequence[str]) -> Generator[bytes, None, None]:
        """The contents of each of ``shas``, in order; ``GitError`` if one is missing.

        Each chunk is read whole before its blobs are handed out, so a caller that
        stops early leaves nothing unread in the pipe for the next round.
        """
        for start in range(0, len(shas), self.CHUNK):
            chunk = shas[start : start + self.CHUNK]
            stdin, stdout = self._pipes()
            try:
                stdin.write(b"".join(sha.encode("ascii") + b"\n" for sha in chunk))
                stdin.flush()
            except OSError as exc:
                raise GitError(f"git cat-file --batch stopped: {exc}") from exc
            try:
                got = [_read_one(stdout, sha) for sha in chunk]
            except GitError:
                self.close()  # answers may be left in the pipe: the next round starts afresh
                raise
            yield from got

    def close(self) -> None:
        """End the ``git cat-file`` process, if one was started."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
        proc.wait()

    def _pipes(self) -> tuple[IO[bytes], IO[bytes]]:
        if self._proc is None:
            try:
                self._proc = subprocess.Popen(
                    ["git", "cat-file", "--batch"],
                    cwd=self._repo,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                )
            except OSError as exc:
                raise GitError(f"cannot run git: {exc.strerror}") from exc
        assert self._proc.stdin is not None
        assert self._proc.stdout is not None
        return self._proc.stdin, self._proc.stdout
