"""Reading many blobs through one ``git cat-file --batch`` process, streamed in order."""

from __future__ import annotations

import os

import pytest

from storysync.check.sources import GitTreeSource
from storysync.check.validate import check_entries, checker_for
from storysync.config import load_config
from storysync.errors import GitError
from storysync.git.blobs import BlobReader
from storysync.git.repo import open_repo
from tests.conftest import Repo


def _blob(repo: Repo, text: bytes) -> str:
    path = repo.write("blob.tmp", text)
    sha = repo.git("hash-object", "-w", str(path))
    path.unlink()
    return sha


def test_blobs_come_back_in_the_order_asked_byte_for_byte(repo: Repo) -> None:
    texts = [f"story {i}\r\n".encode() * (i * 50) for i in range(300)] + [b"", b"\x00\xff no newline"]
    shas = [_blob(repo, t) for t in texts]
    order = list(reversed(shas)) + shas[:3]  # any order, repeats allowed
    with BlobReader(repo.path) as reader:
        got = list(reader.read(order))  # far more than a pipe holds: the ids are written while reading
    by_sha = dict(zip(shas, texts, strict=True))
    assert got == [by_sha[s] for s in order]


def test_a_missing_object_is_a_git_error(repo: Repo) -> None:
    good = _blob(repo, b"fine\n")
    with BlobReader(repo.path) as reader:
        blobs = reader.read([good, "0" * 40])
        assert next(blobs) == b"fine\n"
        with pytest.raises(GitError, match="cannot read blob 0000000000"):
            next(blobs)


def test_stopping_early_ends_the_git_process(repo: Repo) -> None:
    shas = [_blob(repo, f"{i}\n".encode() * 5000) for i in range(50)]
    reader = BlobReader(repo.path)
    blobs = reader.read(shas * 20)
    next(blobs)
    proc = reader._proc
    assert proc is not None
    blobs.close()  # must not hang on a full pipe
    assert proc.poll() is not None
    assert reader._proc is None


def test_tree_source_streams_in_order_and_still_refuses_symlinks(repo: Repo) -> None:
    repo.story("backlog", "web", "WEB-1", "a", title="A")
    os.symlink("WEB-1-a.md", repo.path / "backlog" / "web" / "WEB-2-link.md")
    repo.story("backlog", "web", "WEB-3", "c", title="C", depends_on=["WEB-1"])
    sha = repo.commit("stories and a symlink")
    config = load_config(repo.path)
    source = GitTreeSource(open_repo(repo.path), config, sha)
    checked = check_entries(source, source.entries(), checker_for(config))
    assert [s.id for s in checked.stories] == ["WEB-1", "WEB-3"]
    assert [(d.path, d.code) for d in checked.diagnostics] == [("backlog/web/WEB-2-link.md", "symlink")]
    one_by_one = [source.read(e) for e in source.entries()]
    streamed = [data for _, data in source.read_many(source.entries())]
    assert streamed == one_by_one
