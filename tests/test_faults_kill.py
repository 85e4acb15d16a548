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
import functools
import random
import subprocess
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Repo
from tests.faults import (
    ChangedFiles,
    DbState,
    Killed,
    StorySet,
    copy_database,
    db_side_changes,
    db_state,
    expected_rows,
    generate,
    grown,
    integrity,
    kill_after,
    kill_delays,
    kill_when,
    live_rows,
    mutate,
    run,
    storysync_argv,
    timed,
    tree_files,
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


Killer = Callable[[], Killed]


def sync_killers(scenario: Scenario, points: int, seed: int) -> list[tuple[str, Killer]]:
    """``points`` ways to kill a sync: half after seeded delays over the whole run, half
    within 0-30 ms of its first write to the database's WAL (inside the transaction)."""
    rng = random.Random(seed)
    argv = storysync_argv(scenario.repo.path, "sync")
    wal = Path(f"{scenario.repo.db_path}-wal")
    at_write = points // 2
    killers: list[tuple[str, Killer]] = [
        (f"after {d:.3f}s", functools.partial(kill_after, argv, d))
        for d in kill_delays(scenario.duration * 1.1, points - at_write, seed)
    ]
    for _ in range(at_write):
        extra = rng.uniform(0, 0.03)
        killers.append((f"{extra:.3f}s into the write", functools.partial(kill_when, argv, grown(wal), after=extra)))
    return killers


def kill_loop(scenario: Scenario, points: int, seed: int) -> Counter[str]:
    """Kill a sync at ``points`` moments; check each aftermath; count what was found."""
    seen: Counter[str] = Counter()
    db = scenario.repo.db_path
    for moment, kill in sync_killers(scenario, points, seed):
        restore(scenario)
        killed = kill()
        if db.exists():
            assert integrity(db) == "ok", f"kill {moment}"
        after = db_state(db)
        if killed.finished:
            assert killed.returncode == 0, killed.stderr
            assert _same_content(after, scenario.new), f"finished ({moment})"
            seen["finished"] += 1
        elif _same_content(after, scenario.new):
            seen["killed, new state"] += 1
        else:
            is_old = _is_empty(after) if scenario.old is None else after == scenario.old
            assert is_old, f"kill {moment} left a state that is neither old nor new: {after}"
            seen["killed, old state"] += 1
        _sync(scenario.repo)  # the next sync completes...
        assert _same_content(db_state(db), scenario.new)  # ...and leaves exactly the new state
        assert live_rows(db) == scenario.expected
    return seen


def _report(label: str, seen: Counter[str]) -> None:
    points = sum(n for kind, n in seen.items() if not kind.startswith("temporary"))
    print(f"\n{label}: {points} kill points: {dict(seen)}")


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


# --------------------------------------------------------------------------- export


@dataclass
class ExportScenario:
    """A synced repository with DB-side changes pending export (database and files kept)."""

    repo: Repo
    pristine: Path
    old_files: dict[str, bytes]
    new_files: dict[str, bytes]
    new: DbState
    duration: float


def prepare_export(repo: Repo, count: int, seed: int) -> ExportScenario:
    """``count`` stories synced, then about half changed DB-side; time an uninterrupted export."""
    generate(repo.path, count, seed)
    repo.commit("stories")
    _sync(repo)
    pending = db_side_changes(repo.path, repo.db_url, fraction=0.5, seed=seed + 1)
    assert pending > count // 3
    pristine = repo.path.parent / "pristine-export.db"
    copy_database(repo.db_path, pristine)
    old_files = tree_files(repo.path)
    duration, done = timed(storysync_argv(repo.path, "export"))
    assert done.returncode == 0, done.stderr
    new_files = tree_files(repo.path)
    assert new_files != old_files
    new = db_state(repo.db_path)
    assert new is not None
    restore_export(repo, pristine, old_files)
    return ExportScenario(repo, pristine, old_files, new_files, new, duration)


def restore_export(repo: Repo, pristine: Path, old_files: dict[str, bytes]) -> None:
    """Database and working tree back to before the export."""
    copy_database(pristine, repo.db_path)
    for rel in set(tree_files(repo.path)) - set(old_files):
        (repo.path / rel).unlink()
    for rel, data in old_files.items():
        target = repo.path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


def check_files(scenario: ExportScenario, moment: str) -> tuple[int, int]:
    """Every path holds its old bytes or its new bytes (or is absent where one of them is);
    returns (paths in the new state, leftover temporary files)."""
    now = tree_files(scenario.repo.path)
    temporary = {rel for rel in now if Path(rel).name.startswith(".storysync-") and rel.endswith(".tmp")}
    stray = set(now) - set(scenario.old_files) - set(scenario.new_files) - temporary
    assert not stray, f"kill {moment} left files that are neither old nor new: {sorted(stray)[:5]}"
    changed = 0
    for rel in set(scenario.old_files) | set(scenario.new_files):
        old, new, current = scenario.old_files.get(rel), scenario.new_files.get(rel), now.get(rel)
        assert current in (old, new), f"kill {moment}: {rel} is neither old nor new (truncated or mixed)"
        changed += current != old
    return changed, len(temporary)


def export_killers(scenario: ExportScenario, points: int, seed: int) -> list[tuple[str, Killer]]:
    """``points`` ways to kill an export: two after seeded delays over its start-up, the
    rest once a seeded number of files (1 up to all of them) has been written."""
    argv = storysync_argv(scenario.repo.path, "export")
    paths = set(scenario.old_files) | set(scenario.new_files)
    total = sum(1 for p in paths if scenario.old_files.get(p) != scenario.new_files.get(p))
    early: list[tuple[str, Killer]] = [
        (f"after {d:.3f}s", functools.partial(kill_after, argv, d)) for d in kill_delays(0.8, 2, seed)
    ]
    rng = random.Random(seed)
    counts = [1 + int((total - 1) * (i + rng.random()) / (points - 3)) for i in range(points - 3)] + [total]

    def after_files(n: int) -> Killed:  # the files are counted from when the kill starts
        return kill_when(argv, ChangedFiles(scenario.repo.path, n))

    late: list[tuple[str, Killer]] = [
        (f"after {n} of {total} files", functools.partial(after_files, n)) for n in counts
    ]
    return early + late


def export_kill_loop(scenario: ExportScenario, points: int, seed: int) -> Counter[str]:
    """Kill an export at ``points`` moments; each time files are old or new and the next
    export completes with exactly the new files and database."""
    seen: Counter[str] = Counter()
    for moment, kill in export_killers(scenario, points, seed):
        restore_export(scenario.repo, scenario.pristine, scenario.old_files)
        killed = kill()
        assert integrity(scenario.repo.db_path) == "ok"
        changed, temporary = check_files(scenario, moment)
        seen["finished" if killed.finished else "killed, some files new" if changed else "killed, all files old"] += 1
        seen["temporary files left"] += temporary
        done = run(storysync_argv(scenario.repo.path, "export"))  # the next export completes...
        assert done.returncode == 0, f"after a kill {moment}: {done.stderr}"
        assert tree_files(scenario.repo.path) == scenario.new_files  # no temporary file left either
        assert _same_content(db_state(scenario.repo.db_path), scenario.new)
    return seen


def test_kill_export_of_about_200_changed_stories(repo: Repo) -> None:
    """400 stories, about 200 changed DB-side (edits, moves, deletes, creates)."""
    scenario = prepare_export(repo, 400, seed=51)
    seen = export_kill_loop(scenario, points=6, seed=52)
    _report("export, ~200 changed rows", seen)
    assert seen["finished"] < 6


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_kill_export_of_5000_changed_stories_at_many_moments(repo: Repo) -> None:
    scenario = prepare_export(repo, 10_000, seed=61)
    seen = export_kill_loop(scenario, points=30, seed=62)
    _report("export, ~5000 changed rows", seen)
    assert seen["killed, some files new"] > 0


def _head_files(repo: Repo) -> dict[str, bytes]:
    """Every story file in HEAD's tree: path → bytes."""
    out: dict[str, bytes] = {}
    listing = repo.git("ls-tree", "-r", "-z", "--name-only", "HEAD")
    for rel in filter(None, listing.split("\0")):
        if rel.endswith(".md"):
            out[rel] = subprocess.run(
                ["git", "show", f"HEAD:{rel}"], cwd=repo.path, capture_output=True, check=True
            ).stdout
    return out


def test_kill_export_commit_then_rerun_commits_everything(repo: Repo) -> None:
    """``export --commit`` killed after writing files (before or during its git commit):
    a re-run (after clearing a lock git left, if any) commits every exported file, so
    HEAD, the working tree and the database agree, and a full sync changes nothing."""
    generate(repo.path, 200, seed=71)
    repo.commit("stories")
    _sync(repo)
    db_side_changes(repo.path, repo.db_url, fraction=0.5, seed=72)
    paths = tree_files(repo.path)
    argv = storysync_argv(repo.path, "export", "--commit")
    killed = kill_when(argv, ChangedFiles(repo.path, 40))
    assert not killed.finished, "the export finished before 40 files were written"
    done = run(argv)
    if done.returncode == 4:  # git was killed holding index.lock: the refusal names it
        lock = repo.path / ".git" / "index.lock"
        assert str(lock) in done.stderr
        lock.unlink()
        done = run(argv)
    assert done.returncode == 0, done.stderr
    story_files = {k: v for k, v in tree_files(repo.path).items() if k.endswith(".md")}
    assert story_files != {k: v for k, v in paths.items() if k.endswith(".md")}
    assert _head_files(repo) == story_files  # everything exported is committed
    assert repo.git("status", "--porcelain") == ""
    before = db_state(repo.db_path)
    full = run(storysync_argv(repo.path, "sync", "--full"))
    assert full.returncode == 0, full.stderr
    assert _same_content(db_state(repo.db_path), before)


# --------------------------------------------------------------------------- watch


def test_kill_watch_in_its_catch_up_write(repo: Repo) -> None:
    """``storysync watch`` killed within 0-5 ms of the first write of its start-up catch-up (edits made
    while it was not running): old state or new, integrity ok, the next run completes."""
    stories = generate(repo.path, 300, seed=81)
    repo.commit("stories")
    _sync(repo)
    pristine = repo.path.parent / "pristine-watch.db"
    copy_database(repo.db_path, pristine)
    old = db_state(pristine)
    stories = mutate(stories, seed=82)  # edits, moves, deletions, additions, not committed
    done = run(storysync_argv(repo.path, "sync", "--working-tree"))
    assert done.returncode == 0, done.stderr
    new = db_state(repo.db_path)
    assert new != old
    seen: Counter[str] = Counter()
    rng = random.Random(83)
    for _ in range(3):
        copy_database(pristine, repo.db_path)
        argv = storysync_argv(repo.path, "watch", "--debounce", "50")
        killed = kill_when(argv, grown(Path(f"{repo.db_path}-wal")), after=rng.uniform(0, 0.005))
        assert not killed.finished, killed.stderr
        assert integrity(repo.db_path) == "ok"
        after = db_state(repo.db_path)
        assert after == old or _same_content(after, new), after
        seen["killed, new state" if _same_content(after, new) else "killed, old state"] += 1
        done = run(storysync_argv(repo.path, "sync", "--working-tree"))
        assert done.returncode == 0, done.stderr
        assert _same_content(db_state(repo.db_path), new)
        assert live_rows(repo.db_path) == expected_rows(stories)
    _report("watch catch-up, 300 stories", seen)
