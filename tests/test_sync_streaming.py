"""A full sync checks every file first, then streams the bodies back for the write.

Pass 1 keeps bodies only up to ``KEEP_BODIES`` characters (``Checked.bodies``
knows where the others are); pass 2, inside the one write transaction, reads
those again a write batch at a time.  What is stored is byte for byte what was
checked, and a file that changes in between fails the run without writing
anything.  The budget is 0 here unless a test says otherwise: every body streams.
"""

from __future__ import annotations

import sqlite3

import pytest

from storysync.check import validate as validate_module
from storysync.check.sources import GitTreeSource
from storysync.check.validate import check_entries, checker_for
from storysync.config import load_config
from storysync.db.database import Database
from storysync.errors import StorysyncError
from storysync.git.repo import open_repo
from storysync.ingest import apply as sync_module
from storysync.ingest.run import sync
from storysync.ingest.types import SyncOptions
from storysync.story.parse import split_body
from tests.conftest import Repo

BODIES = [
    "Plain words.\n",
    "",
    "# Heading\r\n\r\nCRLF body\r\n",
    "Unicode: naïve café ✓\n" * 40,
    "---\nlooks like frontmatter\n---\n",
]


@pytest.fixture(autouse=True)
def _stream_every_body(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(validate_module, "KEEP_BODIES", 0)


def _stories(repo: Repo, count: int) -> dict[str, str]:
    paths = {}
    for i in range(1, count + 1):
        paths[f"WEB-{i}"] = repo.story("backlog", "web", f"WEB-{i}", "s", title=f"Story {i}", body=BODIES[i % 5])
    return paths


def _stored(repo: Repo) -> dict[str, tuple[str, str]]:
    with sqlite3.connect(repo.db_path) as conn:
        rows = conn.execute("SELECT id, path, body FROM stories").fetchall()
    conn.close()
    return {sid: (path, body) for sid, path, body in rows}


def test_a_compacted_check_holds_no_bodies_and_reads_them_back(repo: Repo) -> None:
    _stories(repo, 6)
    sha = repo.commit("six stories")
    config = load_config(repo.path)
    source = GitTreeSource(open_repo(repo.path), config, sha)
    checked = check_entries(source, source.entries(), checker_for(config), compact=True)
    assert checked.bodies is not None
    dropped = [None if BODIES[i % 5] else "" for i in range(1, 7)]  # an empty body costs nothing to keep
    assert [s.body for s in checked.stories] == dropped
    first, second = checked.stories[0], checked.stories[1]  # equal parts kept as shared objects
    assert first.marks is second.marks
    assert first.place is second.place == ("backlog", "backlog", "web")
    assert first.columns[5] is second.columns[5] == "[]"  # tags, as JSON text
    batch = checked.stories[1:4]
    checked.bodies.load(batch)
    assert [s.body for s in batch] == [split_body((repo.path / s.path).read_bytes()) for s in batch]
    checked.bodies.unload(batch)
    assert [s.body for s in checked.stories] == dropped


def test_bodies_are_kept_up_to_the_budget_and_the_rest_streamed(repo: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = _stories(repo, 8)
    sha = repo.commit("eight stories")
    config = load_config(repo.path)
    source = GitTreeSource(open_repo(repo.path), config, sha)
    full = check_entries(source, source.entries(), checker_for(config))
    budget = sum(len(s.body or "") for s in full.stories[:3])
    monkeypatch.setattr(validate_module, "KEEP_BODIES", budget)
    checked = check_entries(source, source.entries(), checker_for(config), compact=True)
    assert [s.body for s in checked.stories[:3]] == [s.body for s in full.stories[:3]]
    assert [s.body or None for s in checked.stories[3:]] == [None] * 5
    monkeypatch.setattr(sync_module, "WRITE_BATCH", 3)
    assert repo.run("sync", "--full") == 0
    stored = _stored(repo)
    for sid, rel in paths.items():
        assert stored[sid] == (rel, split_body((repo.path / rel).read_bytes()))


@pytest.mark.parametrize("flags", [("--full",), ("--working-tree",)])
def test_streamed_bodies_are_stored_byte_for_byte(
    repo: Repo, monkeypatch: pytest.MonkeyPatch, flags: tuple[str, ...]
) -> None:
    monkeypatch.setattr(sync_module, "WRITE_BATCH", 3)  # 11 stories: four batches, the last one short
    paths = _stories(repo, 11)
    repo.commit("eleven stories")
    assert repo.run("sync", *flags) == 0
    stored = _stored(repo)
    assert set(stored) == set(paths)
    for sid, rel in paths.items():
        assert stored[sid] == (rel, split_body((repo.path / rel).read_bytes()))
    with sqlite3.connect(repo.db_path) as conn:
        changes = conn.execute("SELECT story_id, kind FROM changes").fetchall()
        history = conn.execute("SELECT story_id, to_status FROM status_history").fetchall()
    conn.close()
    assert sorted(changes) == sorted((sid, "created") for sid in paths)
    assert sorted(history) == sorted((sid, "backlog") for sid in paths)


def test_updates_and_deletes_stream_too(repo: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sync_module, "WRITE_BATCH", 2)
    paths = _stories(repo, 7)
    repo.commit("seven stories")
    assert repo.run("sync") == 0
    for i in range(1, 5):
        paths[f"WEB-{i}"] = repo.story("active", "web", f"WEB-{i}", "s", title=f"Story {i}", body=f"Now {i}.\n")
        (repo.path / "backlog" / "web" / f"WEB-{i}-s.md").unlink()
    (repo.path / paths.pop("WEB-7")).unlink()
    repo.commit("four start, one goes")
    assert repo.run("sync", "--full") == 0
    stored = _stored(repo)
    for sid, rel in paths.items():
        assert stored[sid] == (rel, split_body((repo.path / rel).read_bytes()))
    with sqlite3.connect(repo.db_path) as conn:
        kinds = conn.execute("SELECT kind, COUNT(*) FROM changes GROUP BY kind").fetchall()
        deleted = conn.execute("SELECT id FROM stories WHERE deleted_at IS NOT NULL").fetchall()
    conn.close()
    assert dict(kinds) == {"created": 7, "moved": 4, "deleted": 1}
    assert deleted == [("WEB-7",)]


def test_a_file_changed_between_check_and_write_fails_and_writes_nothing(repo: Repo) -> None:
    paths = _stories(repo, 4)
    repo.commit("four stories")
    config = load_config(repo.path)
    target = repo.path / paths["WEB-2"]
    seen = []

    def edit_after_the_last_check(done: int) -> None:
        seen.append(done)
        if len(seen) == len(paths):  # every file checked; the write has not started
            target.write_text(target.read_text(encoding="utf-8") + "An edit made mid-sync.\n", encoding="utf-8")

    db = Database(config.database)
    with pytest.raises(StorysyncError, match=r"WEB-2-s\.md: the file changed while it was being synced"):
        sync(config, db, open_repo(repo.path), SyncOptions(working_tree=True), progress=edit_after_the_last_check)
    assert _stored(repo) == {}
    assert repo.run("sync", "--working-tree") == 0  # run again: the edit is what is stored
    assert _stored(repo)["WEB-2"][1].endswith("An edit made mid-sync.\n")
