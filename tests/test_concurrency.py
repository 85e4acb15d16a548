"""One writer at a time, and a killed sync changes nothing (SPEC §6), with real processes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from storysync.db import tables as m
from storysync.db.database import Database
from tests.conftest import Repo, story_text

STAGES = ("refinements", "backlog", "active", "completed")


def argv(repo: Repo, *args: str) -> list[str]:
    return [sys.executable, "-m", "storysync", "--repo", str(repo.path), *args]


def start(repo: Repo) -> subprocess.Popen[str]:
    return subprocess.Popen(argv(repo, "sync"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen[str]) -> tuple[int, str]:
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


def populate(repo: Repo, count: int) -> None:
    """``count`` stories spread over stages and two backlogs, with some dependencies."""
    for i in range(1, count + 1):
        deps = [f"BIG-{i - 1}"] if i > 1 and i % 3 == 0 else []
        extra: dict[str, Any] = {"depends_on": deps} if deps else {}
        text = story_text(f"BIG-{i}", title=f"Story {i}", body=f"Body {i}\n" * 20, **extra)
        repo.write(f"{STAGES[i % 4]}/b{i % 2}/BIG-{i}-s.md", text)


def churn(repo: Repo, count: int) -> None:
    """Move, edit and delete a good share of the stories in one commit."""
    for i in range(1, count + 1):
        old = repo.path / f"{STAGES[i % 4]}/b{i % 2}/BIG-{i}-s.md"
        if i % 7 == 0 and i % 3 != 2:  # never delete a story another depends on
            old.unlink()
        elif i % 2 == 0:
            new = repo.path / f"{STAGES[(i + 1) % 4]}/b{i % 2}/BIG-{i}-moved.md"
            new.parent.mkdir(parents=True, exist_ok=True)
            old.rename(new)
        elif i % 5 == 0:
            old.write_text(old.read_text(encoding="utf-8") + "Edited.\n", encoding="utf-8")


def _sorted(rows: Any) -> list[tuple[Any, ...]]:
    return sorted((tuple(r) for r in rows), key=repr)


def snapshot(url: str) -> dict[str, Any]:
    """Everything a sync writes, without its timestamps."""
    db = Database(url)
    try:
        with db.read() as conn:
            s, h = m.stories.c, m.status_history.c
            return {
                "stories": _sorted(
                    conn.execute(select(s.id, s.path, s.status, s.content_hash, s.revision, s.deleted_at.is_(None)))
                ),
                "deps": _sorted(conn.execute(select(m.dependencies))),
                "history": _sorted(conn.execute(select(h.story_id, h.from_status, h.to_status, h.commit))),
                "changes": _sorted(conn.execute(select(m.changes.c.story_id, m.changes.c.kind))),
                "state": _sorted(conn.execute(select(m.sync_state))),
                "runs": conn.execute(select(func.count()).select_from(m.sync_runs)).scalar_one(),
            }
    finally:
        db.dispose()


def test_two_syncs_at_once_both_succeed_and_write_once(backlog_repo: Repo, any_db: str) -> None:
    repo = backlog_repo
    populate(repo, 120)
    head = repo.commit("many stories")
    procs = [start(repo) for _ in range(2)]
    outcomes = [finish(p) for p in procs]
    assert [code for code, _ in outcomes] == [0, 0], outcomes
    state = snapshot(any_db)
    live = [row for row in state["stories"] if row[5]]
    assert len(live) == 124
    assert len(state["changes"]) == 124  # the second run found nothing new: no change written twice
    assert len(state["history"]) == 124
    assert state["state"] == [("last_synced_commit", head)]
    assert state["runs"] == 2


def test_a_waiting_sync_catches_up_with_a_newer_commit(backlog_repo: Repo) -> None:
    repo = backlog_repo
    populate(repo, 150)
    repo.commit("many stories")
    first = start(repo)
    repo.story("active", "web", "WEB-9", title="Committed while the first sync runs")
    newer = repo.commit("newer")
    second = start(repo)
    assert finish(first)[0] == 0
    assert finish(second)[0] == 0
    state = snapshot(repo.db_url)
    assert state["state"] == [("last_synced_commit", newer)]
    assert ("WEB-9", "active/web/WEB-9-story.md") in [(r[0], r[1]) for r in state["stories"] if r[5]]


def kill_at(repo: Repo, delay: float) -> int:
    """Start a sync in its own process group, SIGKILL it after ``delay`` seconds; its exit code."""
    proc = subprocess.Popen(
        argv(repo, "sync"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    return proc.wait(timeout=60)


@pytest.mark.parametrize(
    ("count", "fractions"),
    [
        (120, (0.15, 0.5, 0.9)),
        pytest.param(1000, tuple(i / 20 for i in range(20)), marks=pytest.mark.slow),
    ],
)
def test_sigkill_during_an_incremental_sync_leaves_the_database_as_it_was(
    backlog_repo: Repo, tmp_path: Path, count: int, fractions: tuple[float, ...]
) -> None:
    repo = backlog_repo
    populate(repo, count)
    repo.commit("many stories")
    assert subprocess.run(argv(repo, "sync"), capture_output=True, check=False).returncode == 0
    pristine = tmp_path / "pristine.db"
    shutil.copy(repo.db_path, pristine)
    old = snapshot(repo.db_url)
    churn(repo, count)
    repo.commit("moves, edits and deletes")
    started = time.monotonic()
    assert subprocess.run(argv(repo, "sync"), capture_output=True, check=False).returncode == 0
    duration = time.monotonic() - started
    new = snapshot(repo.db_url)
    assert new["history"] != old["history"]
    outcomes = []
    for fraction in fractions:
        _restore(pristine, repo.db_path)
        code = kill_at(repo, fraction * duration)
        state = snapshot(repo.db_url)
        assert state in (old, new), f"partial state after a kill at {fraction:.0%} of the run"
        outcomes.append("killed" if code == -signal.SIGKILL else "finished")
        assert subprocess.run(argv(repo, "sync"), capture_output=True, check=False).returncode == 0
        healed = snapshot(repo.db_url)
        assert {k: v for k, v in healed.items() if k != "runs"} == {k: v for k, v in new.items() if k != "runs"}
    assert "killed" in outcomes


def _restore(pristine: Path, target: Path) -> None:
    for suffix in ("-wal", "-shm"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    shutil.copy(pristine, target)
