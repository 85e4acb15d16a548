"""``storysync conflicts``: open conflicts with both versions; ``--resolve`` closes them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from storysync.db.writer import update_story
from tests.conftest import Repo, story_text
from tests.export_helpers import Handles, handles, synced

pytestmark = pytest.mark.usefixtures("any_db")

WEB2 = "active/web/WEB-2-signup.md"


def _conflict(repo: Repo, url: str | None = None) -> None:
    """A whole-story conflict (``merge = "file-wins"``; field merges: tests/test_merge_sync.py)."""
    repo.write("storysync.toml", 'merge = "file-wins"\n')
    repo.commit("whole-story conflicts")
    synced(repo)
    repo.write(WEB2, story_text("WEB-2", title="Signup, edited in the file", points=3))
    with handles(repo, url) as h:
        update_story(h.db, "WEB-2", points=21, title="Signup, edited in the API")
    assert repo.run("export") == 1


def test_lists_both_versions_side_by_side(backlog_repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    _conflict(backlog_repo)
    capsys.readouterr()
    assert backlog_repo.run("conflicts") == 1
    out = capsys.readouterr().out
    assert "WEB-2" in out
    assert "file (kept)" in out
    assert "database (conflict)" in out
    assert "Signup, edited in the file" in out
    assert "Signup, edited in the API" in out
    assert "21" in out


def test_json_format(backlog_repo: Repo, any_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    _conflict(backlog_repo, any_db)
    capsys.readouterr()
    assert backlog_repo.run("conflicts", "--format", "json") == 1
    (item,) = json.loads(capsys.readouterr().out)
    assert item["story_id"] == "WEB-2"
    assert item["path"] == WEB2
    assert (item["file"]["title"], item["file"]["points"]) == ("Signup, edited in the file", 3)
    assert (item["database"]["title"], item["database"]["points"]) == ("Signup, edited in the API", 21)


def test_resolve_closes_the_conflict(backlog_repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    _conflict(backlog_repo)
    assert backlog_repo.run("conflicts", "--resolve", "WEB-2") == 0
    with handles(backlog_repo) as h:
        (row,) = h.rows("conflicts")
        assert row["resolved_at"] is not None
    assert backlog_repo.run("conflicts") == 0
    assert backlog_repo.run("conflicts", "--resolve", "WEB-2") == 2  # nothing open any more
    assert backlog_repo.run("conflicts", "--resolve", "NOPE-1") == 2


def test_a_committed_edit_synced_before_the_export_keeps_the_db_version(backlog_repo: Repo) -> None:
    repo = backlog_repo
    synced(repo)
    with handles(repo) as h:
        update_story(h.db, "WEB-2", points=21)
        repo.write(WEB2, story_text("WEB-2", title="Signup", points=5))
        repo.commit("edit in git")
        synced(repo)  # the sync meets the pending DB change: the file wins, the DB version is kept
        assert h.row("WEB-2")["points"] == 5
        assert h.count("conflicts", "story_id = 'WEB-2'") == 1
        assert repo.run("export") == 0  # nothing pending any more
        assert "points: 5" in (repo.path / WEB2).read_text()


def test_every_db_version_that_meets_the_edited_file_is_kept(backlog_repo: Repo) -> None:
    _conflict(backlog_repo)
    with handles(backlog_repo) as h:
        update_story(h.db, "WEB-2", points=34)
        assert backlog_repo.run("export") == 1
        snapshots = [r["db_snapshot"] for r in h.rows("conflicts", "story_id = 'WEB-2'")]
        points = sorted((json.loads(s) if isinstance(s, str) else s)["points"] for s in snapshots)
        assert points == [21, 34]
        assert backlog_repo.run("export") == 0  # each version is recorded once
        assert h.count("conflicts") == 2


def test_a_db_write_between_a_syncs_read_and_write_is_kept_as_a_conflict(backlog_repo: Repo) -> None:
    """The sync plans from rows read before its write transaction; the story API may write
    in between.  The file still wins, and that DB-side version is kept, not overwritten."""
    from storysync.check.sources import WorkTreeSource
    from storysync.check.validate import check_entries, checker_for
    from storysync.db.database import utcnow
    from storysync.ingest import apply, plan, types

    repo = backlog_repo
    synced(repo)
    repo.write(WEB2, story_text("WEB-2", title="Signup", points=5))
    with handles(repo) as h:
        source = WorkTreeSource(h.config)
        checked = check_entries(source, source.entries([WEB2]), checker_for(h.config))
        with h.db.read() as conn:
            rows = plan.load_rows(conn)  # the sync has read the rows ...
        update_story(h.db, "WEB-2", points=21)  # ... the story API writes ...
        the_plan = plan.make_plan(checked.valid_stories, rows, deleted_paths={WEB2})
        with h.db.write() as conn:  # ... then the sync writes
            provenance = types.Provenance(None, None, utcnow())
            apply.apply(conn, the_plan, provenance, types.SyncOptions(), types.SyncResult(), advance=False)
        row = h.row("WEB-2")
        assert row["points"] == 5  # the file wins
        assert row["synced_revision"] == row["revision"]
        (conflict,) = h.rows("conflicts", "story_id = 'WEB-2'")
        snapshot = conflict["db_snapshot"]
        assert (json.loads(snapshot) if isinstance(snapshot, str) else snapshot)["points"] == 21


def _snapshots(h: Handles, story_id: str) -> list[dict[str, Any]]:
    rows = h.rows("conflicts", "story_id = :sid ORDER BY id", sid=story_id)
    return [json.loads(r["db_snapshot"]) if isinstance(r["db_snapshot"], str) else r["db_snapshot"] for r in rows]


def test_a_conflict_found_by_sync_keeps_the_same_complete_db_version_as_one_found_by_export(
    backlog_repo: Repo,
) -> None:
    """WEB-1 depends on API-1.  Its DB-side version meets a committed edit (the sync finds
    the conflict), then an uncommitted one (the export finds it): both records hold the
    whole row, ``depends_on`` included, under the same keys."""
    repo, web1 = backlog_repo, "backlog/web/WEB-1-login.md"
    repo.write("storysync.toml", 'merge = "file-wins"\n')
    synced(repo)
    with handles(repo) as h:
        update_story(h.db, "WEB-1", points=8)
        repo.write(web1, story_text("WEB-1", title="Login, edited in git", priority="high", depends_on=["API-1"]))
        repo.commit("edit in git")
        synced(repo)  # the sync meets the pending DB change
        update_story(h.db, "WEB-1", points=13)
        repo.write(web1, story_text("WEB-1", title="Login, edited on disk", priority="high", depends_on=["API-1"]))
        assert repo.run("export") == 1  # the export meets the edited file
        by_sync, by_export = _snapshots(h, "WEB-1")
    assert (by_sync["points"], by_export["points"]) == (8, 13)
    assert by_sync["depends_on"] == by_export["depends_on"] == ["API-1"]
    assert sorted(by_sync) == sorted(by_export)


# --- the file wins, also after the export met it (issue 17) ----------------------------------


def _row_is_the_file(h: Handles) -> None:
    row = h.row("WEB-2")
    assert (row["title"], row["points"]) == ("Signup", 3)  # the committed file's values
    assert row["revision"] == row["synced_revision"]


def test_a_file_restored_after_an_export_conflict_wins_on_the_next_full_sync(backlog_repo: Repo) -> None:
    """The export met an edited file and kept the row's version in ``conflicts``; the edit
    is then thrown away.  The file (as committed) wins: the row takes its values."""
    repo = backlog_repo
    _conflict(repo)
    repo.git("checkout", "--", WEB2)
    assert repo.run("sync", "--full") == 0
    with handles(repo) as h:
        _row_is_the_file(h)
        updated = h.row("WEB-2")["updated_at"]
        assert repo.run("sync", "--full") == 0  # and then it is in step: nothing written again
        assert h.row("WEB-2")["updated_at"] == updated
        assert h.count("conflicts") == 1
    assert repo.run("export") == 0
    assert repo.git("status", "--porcelain") == ""


def test_a_file_restored_after_an_export_conflict_wins_on_the_next_sync(backlog_repo: Repo) -> None:
    """The same without ``--full``: the commit did not change the file, the row is read again anyway."""
    repo = backlog_repo
    _conflict(repo)
    repo.git("checkout", "--", WEB2)
    assert repo.run("sync") == 0
    with handles(repo) as h:
        _row_is_the_file(h)


def test_resolving_an_export_conflict_leaves_the_row_equal_to_the_file(backlog_repo: Repo) -> None:
    """``conflicts --resolve`` closes the record; the row holds the file's values at the next sync."""
    repo = backlog_repo
    _conflict(repo)
    repo.git("checkout", "--", WEB2)
    assert repo.run("conflicts", "--resolve", "WEB-2") == 0
    assert repo.run("sync") == 0
    with handles(repo) as h:
        _row_is_the_file(h)
        assert h.count("conflicts", "resolved_at IS NULL") == 0
    assert repo.run("export") == 0
    assert repo.git("status", "--porcelain") == ""


def test_a_db_change_on_top_of_a_losing_version_loses_too_and_is_kept(backlog_repo: Repo) -> None:
    """A ``set`` after the export's conflict builds on the row's losing values; the file still
    wins at the next sync, and that version is kept as a conflict of its own."""
    repo = backlog_repo
    _conflict(repo)
    repo.git("checkout", "--", WEB2)
    with handles(repo) as h:
        update_story(h.db, "WEB-2", points=34)
        assert repo.run("sync") == 0
        _row_is_the_file(h)
        assert [s["points"] for s in _snapshots(h, "WEB-2")] == [21, 34]
        assert [s["title"] for s in _snapshots(h, "WEB-2")] == ["Signup, edited in the API"] * 2
    assert repo.run("export") == 0
    assert repo.git("status", "--porcelain") == ""


def test_a_committed_edit_reviving_a_story_deleted_in_the_database_is_a_conflict(
    backlog_repo: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    """A DB-side delete not exported yet meets a committed edit of the file: the file wins
    (the row comes back with its values) and the deleted DB version is kept, as export keeps it."""
    repo = backlog_repo
    synced(repo)
    with handles(repo) as h:
        h.writer.delete("WEB-2")
        repo.write(WEB2, story_text("WEB-2", title="Signup, still wanted", points=3))
        repo.commit("edit in git")
        capsys.readouterr()
        synced(repo)
        assert "1 conflict kept (file wins)" in capsys.readouterr().err
        row = h.row("WEB-2")
        assert (row["deleted_at"], row["title"]) == (None, "Signup, still wanted")
        (conflict,) = h.rows("conflicts", "story_id = 'WEB-2'")
        assert conflict["resolution"] == "file_wins"
        (snapshot,) = _snapshots(h, "WEB-2")
        assert snapshot["deleted_at"] is not None  # the database's version: deleted
        assert snapshot["title"] == "Signup"
        assert repo.run("sync") == 0
        assert h.count("conflicts") == 1  # recorded once
    assert repo.run("export") == 0
    assert (repo.path / WEB2).exists()
