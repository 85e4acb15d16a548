"""Hooks, watch, manual syncs, validate and DB-side writers at once on one database
(SPEC §6: "only one sync writes to a database at a time; the others wait, then
catch up").

Real processes started together, over several rounds of real commits.  Every
run must end 0 (having waited its turn), nobody may print "database is locked"
or a traceback, and nothing may be lost: the database ends holding exactly the
story files of HEAD, every new story has exactly one ``created`` change, and
every DB-side edit made meanwhile is still there, waiting for export.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
from pathlib import Path

from tests.conftest import Repo, make_repo
from tests.faults import StorySet, expected_rows, generate, live_rows, storysync_argv
from tests.test_watch import watch_process


def _start(argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})}
    )


def _all_succeed(procs: list[subprocess.Popen[str]]) -> None:
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"{proc.args!r}: {err}"
        assert "locked" not in err + out, err
        assert "Traceback" not in err, err


def _query(db: Path, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def _one_created_each(db: Path, ids: set[str]) -> None:
    created = _query(db, "SELECT story_id, count(*) FROM changes WHERE kind = 'created' GROUP BY story_id")
    assert dict(created) == dict.fromkeys(ids, 1)  # type: ignore[arg-type]


def _round(repo: Repo, stories: StorySet, n: int) -> None:
    """A commit that adds ten stories and edits one."""
    for i in range(10):
        story_id = f"NEW-{n * 100 + i}"
        rel = f"backlog/web/{story_id}-new.md"
        (repo.path / rel).write_text(f"---\nid: {story_id}\ntitle: Round {n} story {i}\n---\nBody.\n")
        stories.paths[story_id] = rel
    first = sorted(stories.paths)[n]
    with open(repo.path / stories.paths[first], "a", encoding="utf-8") as fh:
        fh.write(f"edited in round {n}\n")
    repo.commit(f"round {n}")


def test_hooks_watch_syncs_validate_and_set_together(repo: Repo) -> None:
    stories = generate(repo.path, 120, seed=71)
    repo.commit("120 stories")

    def argv(*args: str) -> list[str]:
        return storysync_argv(repo.path, *args)

    db_edits: dict[str, str] = {}
    with watch_process(repo, "--debounce", "50") as watch:
        for n in range(2):
            _round(repo, stories, n)
            target = sorted(stories.paths)[100 + n]  # a story no round edits on disk
            db_edits[target] = f"Edited in the database, round {n}"
            _all_succeed(
                [
                    _start(argv("sync")),
                    _start(argv("sync", "--trigger", "hook")),
                    _start(argv("run-hook", "post-merge")),
                    _start(argv("run-hook", "post-checkout", "0" * 40, "1" * 40, "1")),
                    _start(argv("validate")),
                    _start(argv("set", target, f"title={db_edits[target]}")),
                ]
            )
        assert watch.stop(signal.SIGINT) == 0, watch.lines
    assert not [line for line in watch.lines if "locked" in line or "Traceback" in line], watch.lines

    _all_succeed([_start(argv("sync"))])
    assert live_rows(repo.db_path) == expected_rows(stories)
    _one_created_each(repo.db_path, set(stories.paths))
    for story_id, title in db_edits.items():  # no DB-side update lost to a sync
        assert _query(repo.db_path, f"SELECT title FROM stories WHERE id = '{story_id}'") == [(title,)]  # noqa: S608
    assert _query(repo.db_path, "SELECT count(*) FROM sync_runs WHERE outcome != 'ok'") == [(0,)]


def test_two_clones_share_one_database(tmp_path: Path) -> None:
    """Different repositories (so different file locks) writing one SQLite database at
    once: the database's own lock (BEGIN IMMEDIATE) makes them take turns."""
    author = make_repo(tmp_path / "author")
    stories = generate(author.path, 200, seed=81)
    author.commit("200 stories")
    clones = []
    for name in ("laptop", "ci"):
        author.git("clone", "-q", str(author.path), str(tmp_path / name))
        clones.append(Repo(tmp_path / name))
    db = tmp_path / "team.db"
    env = {"STORYSYNC_DATABASE_URL": f"sqlite:///{db}"}
    _all_succeed([_start(storysync_argv(c.path, "sync", *extra), env) for c in clones for extra in ((), ("--full",))])
    assert live_rows(db) == expected_rows(stories)
    _one_created_each(db, set(stories.paths))

    _round(author, stories, 1)
    for clone in clones:
        clone.git("pull", "-q", "--ff-only")
    _all_succeed([_start(storysync_argv(c.path, "sync"), env) for c in clones for _ in range(2)])
    assert live_rows(db) == expected_rows(StorySet(author.path, stories.paths))
    _one_created_each(db, set(stories.paths))
