"""One ``git cat-file --batch`` kept open across rounds of reads (``blobs.BlobReader``)."""

from __future__ import annotations

import pytest

from storysync.errors import GitError
from storysync.git.blobs import BlobReader
from tests.conftest import Repo


def _blob(repo: Repo, text: bytes) -> str:
    path = repo.write("blob.tmp", text)
    sha = repo.git("hash-object", "-w", str(path))
    path.unlink()
    return sha


def test_rounds_of_reads_come_back_in_order_from_one_process(repo: Repo) -> None:
    texts = [f"story {i}\r\n".encode() * (i * 40) for i in range(200)] + [b"", b"\x00\xff no newline"]
    shas = [_blob(repo, t) for t in texts]
    by_sha = dict(zip(shas, texts, strict=True))
    reader = BlobReader(repo.path)
    try:
        first = list(reader.read(shas[:150]))  # more than one chunk
        proc = reader._proc
        second = list(reader.read(list(reversed(shas)) + shas[:2]))
        assert reader._proc is proc  # the same process answered both rounds
    finally:
        reader.close()
    assert first == [by_sha[s] for s in shas[:150]]
    assert second == [by_sha[s] for s in [*reversed(shas), *shas[:2]]]
    assert reader._proc is None


def test_a_round_stopped_early_leaves_the_next_one_in_step(repo: Repo) -> None:
    shas = [_blob(repo, f"blob {i}\n".encode()) for i in range(100)]
    reader = BlobReader(repo.path)
    try:
        partial = reader.read(shas)
        assert next(partial) == b"blob 0\n"
        partial.close()  # answers were left in the pipe: that process is ended
        assert reader._proc is None
        assert list(reader.read(shas[50:53])) == [b"blob 50\n", b"blob 51\n", b"blob 52\n"]
        proc = reader._proc
        whole = reader.read(shas[:2])
        assert [next(whole), next(whole)] == [b"blob 0\n", b"blob 1\n"]
        whole.close()  # every answer was read: the process stays for the next round
        assert reader._proc is proc
    finally:
        reader.close()


def test_a_missing_object_is_a_git_error_and_the_next_round_starts_afresh(repo: Repo) -> None:
    good = _blob(repo, b"fine\n")
    reader = BlobReader(repo.path)
    try:
        with pytest.raises(GitError, match="cannot read blob 0000000000"):
            list(reader.read([good, "0" * 40, good]))
        assert list(reader.read([good])) == [b"fine\n"]
    finally:
        reader.close()


def test_nothing_asked_starts_no_process(repo: Repo) -> None:
    reader = BlobReader(repo.path)
    assert list(reader.read([])) == []
    assert reader._proc is None
    reader.close()
