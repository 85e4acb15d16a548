"""SIGKILL a real ``storysync sync`` process at many moments (SPEC §6: "a run killed
at any moment leaves the database as it was before the run").

Each kill point restores the database to the old state, starts a sync of a new
commit as its own process, kills its whole process group after a seeded random
delay spread over the run, and then checks: the database is exactly the old
state or exactly the new one, ``PRAGMA integrity_check`` is ok, and the next
sync completes and leaves exactly the new state.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Repo
from tests.faults import (
    DbState,
    StorySet,
    copy_database,
    db_state,
    expected_rows,
    generate,
    integrity,
    kill_after,
    kill_delays,
    live_rows,
    mutate,
    run,
    storysync_argv,
    timed,
)


@dataclass
class Scenario:
    """A repository at commit B whose database is at commit A (kept as a pristine copy)."""

    repo: Repo
    pristine: Path | None  # the database at A; None: no database at all
    old: DbState | None
    new: DbState
    expected: dict[str, tuple[str, str]]
    duration: float  # seconds an uninterrupted sync A → B takes


def _same_content(state: DbState | None, other: DbState | None) -> bool:
    """Equal apart from the audit trail (a no-op sync adds a ``sync_runs`` row)."""
    if state is None or other is None:
        return state is other
    return dataclasses.replace(state, runs=0) == dataclasses.replace(other, runs=0)


def _is_empty(state: DbState | None) -> bool:
    return state is None or (state.rows == 0 and state.runs == 0 and state.last_synced is None)


def _sync(repo: Repo) -> None:
    done = run(storysync_argv(repo.path, "sync"))
    assert done.returncode == 0, done.stderr


def prepare(repo: Repo, count: int, seed: int, *, first_sync: bool) -> Scenario:
    """Commit A (``count`` stories), sync it unless ``first_sync``, then commit B (a
    third of them edited, moved, deleted or added) and time an uninterrupted sync."""
    stories = generate(repo.path, count, seed)
    repo.commit("version A")
    pristine: Path | None = None
    if not first_sync:
        _sync(repo)
        pristine = repo.path.parent / "pristine.db"
        copy_database(repo.db_path, pristine)
        stories = mutate(stories, seed + 1)
        repo.commit("version B")
    old = db_state(pristine) if pristine else None
    duration, done = timed(storysync_argv(repo.path, "sync"))
    assert done.returncode == 0, done.stderr
    expected = expected_rows(StorySet(repo.path, stories.paths))
    assert live_rows(repo.db_path) == expected
    new = db_state(repo.db_path)
    assert new is not None
    assert new.last_synced == repo.git("rev-parse", "HEAD")
    return Scenario(repo, pristine, old, new, expected, duration)


def restore(scenario: Scenario) -> None:
    """Put the database back to the old state."""
    db = scenario.repo.db_path
    if scenario.pristine is None:
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
    else:
        copy_database(scenario.pristine, db)


def kill_loop(scenario: Scenario, points: int, seed: int) -> Counter[str]:
    """Kill a sync at ``points`` moments; check each aftermath; count what was found."""
    seen: Counter[str] = Counter()
    argv = storysync_argv(scenario.repo.path, "sync")
    for delay in kill_delays(scenario.duration * 1.1, points, seed):
        restore(scenario)
        killed = kill_after(argv, delay)
        db = scenario.repo.db_path
        if db.exists():
            assert integrity(db) == "ok", f"kill at {delay:.3f}s"
        after = db_state(db)
        if killed.finished:
            assert killed.returncode == 0, killed.stderr
            assert _same_content(after, scenario.new), f"finished at {delay:.3f}s"
            seen["finished"] += 1
        elif _same_content(after, scenario.new):
            seen["killed, new state"] += 1
        else:
            is_old = _is_empty(after) if scenario.old is None else after == scenario.old
            assert is_old, f"kill at {delay:.3f}s left a state that is neither old nor new: {after}"
            seen["killed, old state"] += 1
        _sync(scenario.repo)  # the next sync completes...
        assert _same_content(db_state(db), scenario.new)  # ...and leaves exactly the new state
        assert live_rows(db) == scenario.expected
    return seen


def _report(label: str, seen: Counter[str]) -> None:
    print(f"\n{label}: {sum(seen.values())} kill points: {dict(seen)}")


def test_kill_first_sync_of_500_stories(repo: Repo) -> None:
    """From no database at all: after a kill there are no stories or all 500."""
    scenario = prepare(repo, 500, seed=11, first_sync=True)
    seen = kill_loop(scenario, points=5, seed=12)
    _report("first sync, 500 stories", seen)
    assert seen["finished"] < 5, "every kill came too late to test anything"


def test_kill_incremental_sync_of_500_stories(repo: Repo) -> None:
    """From commit A to B (edits, moves, deletes, creates): old state or new, never between."""
    scenario = prepare(repo, 500, seed=21, first_sync=False)
    seen = kill_loop(scenario, points=6, seed=22)
    _report("A → B sync, 500 stories", seen)
    assert seen["finished"] < 6, "every kill came too late to test anything"


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_kill_sync_of_10k_stories_at_many_moments(repo: Repo) -> None:
    """The full-size version: 10,000 stories, 40 kill points over the run."""
    scenario = prepare(repo, 10_000, seed=31, first_sync=False)
    seen = kill_loop(scenario, points=40, seed=32)
    _report("A → B sync, 10k stories", seen)
    assert seen["killed, old state"] > 0
