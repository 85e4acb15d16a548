"""The incremental sync's cost per run: git through plain processes, the dependency walk in one query.

The post-merge hook runs ``storysync sync`` after every merge; these tests hold
the things that keep it short: it never imports GitPython, it asks git only what
it needs (each question once), and the cross-file checks ask the database for
the stored dependency graph in one recursive query however long the chain,
with the same answers as asking story by story.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import bindparam, event, select, text
from sqlalchemy.engine import Engine

from storysync.config import load_config
from storysync.db import tables as m
from storysync.db.database import Database
from storysync.errors import GitError
from storysync.git import runner
from storysync.ingest.plan import CHUNK, DbKnown
from storysync.ingest.run import sync
from storysync.ingest.types import SyncOptions, SyncResult
from tests.conftest import Repo


def do_sync(repo: Repo, **options: Any) -> SyncResult:
    """The library sync with a plain ``GitRepo`` handle, as the CLI and the hooks call it."""
    config = load_config(repo.path, db_flag=repo.db_url)
    db = Database(config.database)
    try:
        return sync(config, db, runner.open_repo(repo.path), SyncOptions(**options))
    finally:
        db.dispose()


@contextmanager
def statements() -> Iterator[list[str]]:
    """Every SQL statement run meanwhile, whitespace collapsed."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(" ".join(statement.split()))

    event.listen(Engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", record)


_PROBE = """
import sys
from storysync.cli.main import main
code = main(["--repo", sys.argv[1], *sys.argv[2:]])
print(code, ",".join(sorted(m for m in ("git", "gitdb") if m in sys.modules)))
"""


def _gitpython_after(repo: Repo, *args: str) -> tuple[int, str]:
    """Run a command in a fresh process, stderr piped as in a hook; whether it imported GitPython."""
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, str(repo.path), *args],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "GIT_TRACE": str(repo.path.parent / "trace.txt")},
    )
    code, _, loaded = done.stdout.strip().splitlines()[-1].partition(" ")
    return int(code), loaded


def _git_commands(repo: Repo) -> list[str]:
    """The git commands a traced run started (``GIT_TRACE``), in order; the trace is then cleared."""
    trace = repo.path.parent / "trace.txt"
    lines = trace.read_text(errors="replace").splitlines()
    trace.unlink()
    return [line.split("trace: built-in: git ", 1)[1].split()[0] for line in lines if "trace: built-in: git " in line]


INCREMENTAL = [
    "log",  # HEAD: its sha, author and time (log -1 --no-walk)
    "merge-base",  # the last synced commit is an ancestor of HEAD (asked once, used twice)
    "diff-tree",
    "cat-file",  # the changed blobs' sizes
    "cat-file",  # their contents, streamed
    "log",  # the range's moves, for the status history
]


def test_post_merge_hook_and_sync_run_git_without_gitpython(backlog_repo: Repo) -> None:
    """An incremental run asks git each question once, through plain processes."""
    repo = backlog_repo
    assert repo.run("sync") == 0
    repo.story("backlog", "web", "WEB-3", "new", title="New", depends_on=["WEB-2"])
    repo.commit("one more")
    assert _gitpython_after(repo, "run-hook", "post-merge", "0") == (0, "")
    # first: the git directory (a merge or rebase under way?) and HEAD, for the quick answer
    # (nothing to do?); then HEAD again on the ordinary path, which decides alone
    assert _git_commands(repo) == ["rev-parse", "rev-parse", *INCREMENTAL]
    repo.story("active", "web", "WEB-3", "new", title="New", depends_on=["WEB-2"])
    repo.git("rm", "-q", "backlog/web/WEB-3-new.md")
    repo.commit("start it")
    assert _gitpython_after(repo, "sync") == (0, "")
    assert _git_commands(repo) == INCREMENTAL
    db = Database(repo.db_url)
    try:
        with db.read() as conn:
            h = m.status_history.c
            query = select(h.from_status, h.to_status).where(h.story_id == "WEB-3").order_by(h.id)
            assert [tuple(r) for r in conn.execute(query)] == [(None, "backlog"), ("backlog", "active")]
            deps = conn.execute(select(m.dependencies.c.depends_on_id).where(m.dependencies.c.story_id == "WEB-3"))
            assert list(deps.scalars()) == ["WEB-2"]
    finally:
        db.dispose()


def test_commands_that_change_or_check_the_repository_run_git_without_gitpython(backlog_repo: Repo) -> None:
    """set and new (the author from git config), export --commit and doctor ask git through plain processes."""
    repo = backlog_repo
    assert repo.run("sync") == 0
    assert _gitpython_after(repo, "set", "WEB-1", "points=5") == (0, "")
    assert _git_commands(repo) == ["config", "config"]  # user.name, user.email
    assert _gitpython_after(repo, "new", "WEB-9", "--backlog", "web", "--title", "Nine") == (0, "")
    assert _gitpython_after(repo, "export", "--commit") == (0, "")
    assert repo.git("log", "-1", "--format=%s") == "storysync export: 2 stories from the database"
    assert _gitpython_after(repo, "doctor")[1] == ""


def test_open_repo_outside_a_repository_is_a_git_error(tmp_path: Path) -> None:
    with pytest.raises(GitError, match="not a git repository"):
        runner.open_repo(tmp_path)


def test_git_directories_of_a_repository_and_of_a_linked_worktree(backlog_repo: Repo, tmp_path: Path) -> None:
    """Read from ``.git`` where it is the repository's own directory, else asked of git."""
    top = backlog_repo.path
    assert runner.open_repo(top).dirs == ((top / ".git").resolve(), (top / ".git").resolve())
    backlog_repo.git("worktree", "add", "-q", str(tmp_path / "wt"))
    linked = runner.open_repo(tmp_path / "wt")
    assert linked.common_dir == (top / ".git").resolve()
    assert linked.git_dir == (top / ".git" / "worktrees" / "wt").resolve()


def test_head_info_is_resolve_and_commit_info_in_one(backlog_repo: Repo) -> None:
    plain = runner.open_repo(backlog_repo.path)
    sha = runner.resolve(plain, "HEAD")
    assert runner.head_info(plain) == runner.commit_info(plain, sha)
    backlog_repo.git("checkout", "-q", "--orphan", "unborn")
    with pytest.raises(GitError, match="'HEAD' does not name a commit"):
        runner.head_info(plain)


def test_diff_without_the_index_is_git_s_diff(backlog_repo: Repo) -> None:
    """``diff`` keeps git from reading the index (~15 ms at 100k stories); the changes are
    the ones ``git diff-tree`` gives with it: renames, edits, deletes, spaced and non-ASCII names."""
    repo = backlog_repo
    old = repo.git("rev-parse", "HEAD")
    repo.write(".gitattributes", "*.md diff\n")
    repo.story("backlog", "web", "WEB-7", "größe mit leerzeichen", title="Größe")
    repo.git("mv", "backlog/web/WEB-1-login.md", "active/web/WEB-1-login.md")
    repo.git("rm", "-q", "completed/api/API-2-health.md")
    repo.story("active", "web", "WEB-2", "signup", title="Signup, edited", points=5)
    new = repo.commit("many kinds of change")
    raw = subprocess.run(
        ["git", "diff-tree", "-r", "-z", "-M", "--no-abbrev", "--no-commit-id", old, new],
        cwd=repo.path,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    paths = {r.decode() for r in raw if r and not r.startswith(b":")}
    changes = runner.diff(runner.open_repo(repo.path), old, new)
    assert {c.status for c in changes} == {"A", "M", "D", "R"}
    assert {p for c in changes for p in (c.path, c.old) if p} == paths
    assert not (repo.path / ".git" / "storysync-no-index").exists()


@pytest.mark.parametrize("marked", [[], [0], [3], [-1], [0, -1]], ids=["none", "first", "middle", "last", "ends"])
@pytest.mark.parametrize("mark", ["--assume-unchanged", "--skip-worktree"])
def test_a_marked_index_entry_is_found_wherever_it_lists(backlog_repo: Repo, mark: str, marked: list[int]) -> None:
    """``any_unwatched`` (the first record matched apart, the others after their NUL) answers
    as reading each record's tag does, whichever entries git was told not to look at."""
    repo = backlog_repo
    repo.write("a b c.md", "a name with spaces\n")  # a path with a space and a lower-case letter before it
    repo.commit("spaced")
    paths = repo.git("ls-files", "-z").split("\0")[:-1]
    for at in marked:
        repo.git("update-index", mark, paths[at])
    listing = subprocess.run(["git", "ls-files", "-v", "-z"], cwd=repo.path, capture_output=True, check=True).stdout
    tags = [record[:1] for record in listing.split(b"\0") if record]
    assert runner.any_unwatched(listing) == any(t.islower() or t == b"S" for t in tags) == bool(marked)


def _chain(repo: Repo, n: int) -> None:
    """S-1 -> S-2 -> ... -> S-n, committed."""
    for i in range(1, n + 1):
        deps = [f"S-{i + 1}"] if i < n else []
        repo.story("backlog", "core", f"S-{i}", "step", title=f"Step {i}", depends_on=deps)
    repo.commit("a long chain")


@pytest.mark.usefixtures("any_db")
def test_a_cycle_through_a_long_stored_chain_is_found_with_one_query_a_level(repo: Repo) -> None:
    _chain(repo, 40)
    assert do_sync(repo).exit_code == 0
    path = repo.story("backlog", "core", "S-40", "step", title="Step 40", depends_on=["S-1"])
    repo.commit("close the loop")
    with statements() as seen:
        result = do_sync(repo)
    assert result.exit_code == 1
    [diag] = result.diagnostics
    members = [f"S-{i}" for i in range(1, 41)]  # in dependency order, from the smallest id
    assert (diag.path, diag.line, diag.code) == (path, 4, "dependency-cycle")
    assert diag.message == f"depends_on: dependency cycle {' -> '.join([*members, members[0]])}"
    walks = [s for s in seen if "LEFT JOIN dependencies" in s]
    # a chain is 40 levels deep: one indexed query a level (each a primary-key lookup on both
    # databases; one recursive query made PostgreSQL scan every story and dependency)
    assert len(walks) <= 40
    assert len(seen) - len(walks) < 20


@pytest.mark.usefixtures("any_db")
def test_dependencies_on_deleted_and_on_this_run_s_deleted_stories_are_missing(repo: Repo) -> None:
    _chain(repo, 3)
    repo.story("backlog", "core", "D-1", "gone", title="Gone soon")
    repo.commit("one to delete")
    assert do_sync(repo).exit_code == 0
    repo.git("rm", "-q", "backlog/core/D-1-gone.md")
    repo.commit("deleted")
    assert do_sync(repo).exit_code == 0  # D-1's row is soft-deleted
    repo.git("rm", "-q", "backlog/core/S-3-step.md")  # this run deletes S-3: its row no longer counts
    a = repo.story("backlog", "core", "A-1", "uses", title="Uses them", depends_on=["D-1", "S-1", "S-3"])
    repo.commit("depends on the gone ones")
    result = do_sync(repo)
    assert sorted((d.path, d.code, d.message) for d in result.diagnostics) == [
        (a, "missing-dependency", "depends_on: no story has id 'D-1'"),
        (a, "missing-dependency", "depends_on: no story has id 'S-3'"),
        ("backlog/core/S-2-step.md", "missing-dependency", "depends_on: no story has id 'S-3'"),  # unchanged, as full
    ]
    assert [str(d) for d in result.diagnostics] == [str(d) for d in do_sync(repo, full=True).diagnostics]


def _random_graph(repo: Repo, rng: random.Random, n: int) -> None:
    for i in range(1, n + 1):
        deps = sorted({f"G-{rng.randint(1, n)}" for _ in range(rng.randint(0, 3))} - {f"G-{i}"})
        deps = [d for d in deps if int(d[2:]) > i]  # acyclic, so that it syncs
        repo.story("backlog", "graph", f"G-{i}", "node", title=f"Node {i}", depends_on=deps)
    repo.commit("a random graph")


def _levels(seeds: list[str], deps: dict[str, list[str] | None]) -> int:
    """How many levels a breadth-first walk from ``seeds`` along live stories' ``deps`` has."""
    levels, asked, level = 0, set(), set(seeds)
    while level:
        levels, asked = levels + 1, asked | level
        level = {d for sid in level for d in (deps.get(sid) or [])} - asked
    return levels


@pytest.mark.usefixtures("any_db")
def test_prefetched_answers_equal_the_story_by_story_ones(repo: Repo) -> None:
    """Every ``lookup`` and ``deps`` answer after ``prefetch`` is the one asked story by story,
    with rows this run hides, deleted rows, DB rows kept over invalid files, and ids no row has."""
    rng = random.Random(7)
    _random_graph(repo, rng, 60)
    assert do_sync(repo).exit_code == 0
    for i in rng.sample(range(1, 61), 8):
        repo.git("rm", "-q", f"backlog/graph/G-{i}-node.md")
    repo.commit("delete some")
    assert do_sync(repo, keep_going=True).exit_code in (0, 1)
    ids = [f"G-{i}" for i in range(0, 63)]
    hidden = [f"backlog/graph/G-{i}-node.md" for i in rng.sample(range(1, 61), 10)]
    db = Database(repo.db_url)
    try:
        with db.read() as conn:
            one_by_one = DbKnown(conn, hidden=hidden)
            expected = {sid: (one_by_one.deps(sid), one_by_one.lookup(sid.lower())) for sid in ids}
            unhidden = DbKnown(conn)  # the walk goes on through the stories this run hides
            stored = {sid: unhidden.deps(sid) for sid in ids}
            batched = DbKnown(conn, hidden=hidden)
            with statements() as seen:
                batched.prefetch([sid.lower() for sid in ids[:20]], ids[20:40])
                prefetched = len(seen)
                got = {sid: batched.lookup(sid.lower()) for sid in ids[:20]}
                deps = {sid: batched.deps(sid) for sid in ids[20:40]}
            assert len(seen) == prefetched  # every answer came from what it fetched
            rest = {sid: (batched.deps(sid), batched.lookup(sid.lower())) for sid in ids}
    finally:
        db.dispose()
    assert rest == expected
    # the lookups in one query, then the walk in one query a level (not one a story)
    assert prefetched == 1 + _levels(ids[20:40], stored)
    assert got == {sid: expected[sid][1] for sid in ids[:20]}
    assert deps == {sid: expected[sid][0] for sid in ids[20:40]}
    assert any(v[0] for v in expected.values())
    assert any(v[0] is None for v in expected.values())
    assert any(v[1] is None for v in expected.values())
    assert any(v[1] for v in expected.values())


# The walk before it went a level a query (ff861e9): the reference for which rows it reaches.
_RECURSIVE_REACH = text(
    """
    WITH RECURSIVE reach(id) AS (
        SELECT s.id FROM stories s WHERE s.id IN :seeds AND s.deleted_at IS NULL
        UNION
        SELECT d.depends_on_id FROM dependencies d
        JOIN reach r ON d.story_id = r.id
        JOIN stories t ON t.id = d.depends_on_id AND t.deleted_at IS NULL
    )
    SELECT id FROM reach
    """
).bindparams(bindparam("seeds", expanding=True))


def test_the_walk_a_level_a_query_reaches_what_the_recursive_query_reached(tmp_path: Path) -> None:
    """Stored dependencies the files could never hold (cycles, set in the database), levels wider
    than a query's chunk, deleted rows, hidden paths and ids no row has: after ``prefetch`` every
    story the recursive query reached is answered without a query, and every answer is the one
    asked story by story."""
    wide = CHUNK + 150  # a level of more ids than one query takes
    ids = ["HUB-1", "HUB-2"] + [f"W-{i}" for i in range(wide)] + [f"T-{i}" for i in range(40)]
    deleted = {f"W-{i}" for i in range(0, wide, 17)} | {"T-3"}
    hidden = {f"backlog/x/W-{i}.md" for i in range(5, wide, 23)} | {"backlog/x/T-7.md"}
    deps: dict[str, list[str]] = {
        "HUB-1": [f"W-{i}" for i in range(wide)] + ["NOPE-1"],
        "HUB-2": ["HUB-1", "T-0"],
    }
    for i in range(wide):  # a wide level, then a narrow one, and back to the hubs (cycles)
        deps[f"W-{i}"] = [f"T-{i % 40}", "HUB-2"] if i % 3 else [f"T-{i % 40}"]
    for i in range(40):
        deps[f"T-{i}"] = [f"T-{(i + 1) % 40}", "HUB-1", "NOPE-2"]  # a ring through the hubs
    db = Database(f"sqlite:///{tmp_path / 'walk.db'}")
    try:
        db.ensure_schema()
        with db.write() as conn:
            now = datetime.now(timezone.utc)
            conn.execute(m.backlogs.insert(), [{"id": "x", "created_at": now}])
            conn.execute(
                m.stories.insert(),
                [
                    {
                        "id": sid,
                        "backlog_id": "x",
                        "status": "backlog",
                        "title": sid,
                        "body": "",
                        "path": f"backlog/x/{sid}.md",
                        "created_at": now,
                        "updated_at": now,
                        "deleted_at": now if sid in deleted else None,
                    }
                    for sid in ids
                ],
            )
            conn.execute(
                m.dependencies.insert(),
                [{"story_id": sid, "depends_on_id": dep} for sid, ds in deps.items() for dep in ds],
            )
        asked = ["W-1", "T-5", "NOPE-3", "W-0"]
        with db.read() as conn:
            reached = {r.id for r in conn.execute(_RECURSIVE_REACH, {"seeds": asked})}
            one_by_one = DbKnown(conn, hidden=hidden)
            everything = [*ids, "NOPE-1", "NOPE-2", "NOPE-3"]
            expected = {sid: (one_by_one.deps(sid), one_by_one.lookup(sid.lower())) for sid in everything}
            batched = DbKnown(conn, hidden=hidden)
            with statements() as seen:
                batched.prefetch([], asked)
                prefetched = len(seen)
                for sid in reached:
                    batched.deps(sid)
            assert len(seen) == prefetched  # the walk fetched every story the recursive query reached
            got = {sid: (batched.deps(sid), batched.lookup(sid.lower())) for sid in everything}
    finally:
        db.dispose()
    assert len(reached) > CHUNK
    assert got == expected
