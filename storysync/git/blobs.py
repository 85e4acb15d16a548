"""Read git blobs through one ``git cat-file --batch`` process, streamed.

Asking for objects one at a time costs a pipe round trip each (about 100 µs,
a second per 10k stories).  ``BlobReader.read`` writes every object id of a
request up front (a writer thread for a long one) and hands the contents back
in order as they come, so git works while the caller parses.  The process stays
open for the next request: a walk that learns which blobs it needs from the
blobs it read (a dependency chain) asks in rounds without starting another.
Started through ``storysync.git.runner.start``; no GitPython import.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import IO

from storysync.errors import GitError
from storysync.git.runner import start


class BlobReader:
    """One ``git cat-file --batch`` for any number of requests, until ``close``.

    A request that is not read to its end (the caller stopped early, or a blob
    was missing) leaves answers in the pipe: the process is ended then, and the
    next request starts a fresh one.
    """

    DIRECT = 64  # ids written without a writer thread (~2.6 KB: a pipe takes them at once)

    def __init__(self, top: Path) -> None:
        self._top = top
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> BlobReader:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def read(self, shas: Sequence[str]) -> Generator[bytes, None, None]:
        """The contents of each of ``shas``, in order, as git answers; ``GitError`` if one is missing."""
        if not shas:
            return
        proc = self._started()
        assert proc.stdin is not None
        assert proc.stdout is not None
        ids = b"".join(sha.encode("ascii") + b"\n" for sha in shas)
        writer = None
        if len(shas) <= self.DIRECT:
            try:
                proc.stdin.write(ids)
                proc.stdin.flush()
            except OSError as exc:
                self.close()
                raise GitError(f"git cat-file --batch stopped: {exc}") from exc
        else:  # the answers may fill the pipe back before git has read every id
            writer = threading.Thread(target=_write, args=(proc.stdin, ids), daemon=True)
            writer.start()
        finished = False  # whether every answer was read from the pipe
        last = len(shas) - 1
        try:
            for i, sha in enumerate(shas):
                data = _read_one(proc.stdout, sha)
                finished = i == last
                yield data
        finally:
            if not finished:
                self.close()  # ends git, so a writer still writing stops too
            if writer is not None:
                writer.join()

    def close(self) -> None:
        """End the ``git cat-file`` process, if one was started."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        for pipe in (proc.stdout, proc.stdin):
            if pipe is not None:
                with contextlib.suppress(OSError):  # ids left unwritten to a git that has gone
                    pipe.close()
        proc.wait()

    def _started(self) -> subprocess.Popen[bytes]:
        if self._proc is None:
            self._proc = start(self._top, "cat-file", "--batch")
        return self._proc


def _write(stdin: IO[bytes], ids: bytes) -> None:
    try:
        stdin.write(ids)
        stdin.flush()
    except (OSError, ValueError):  # the reader stopped early and ended git (or closed the pipe)
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
