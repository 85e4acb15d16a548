"""The measured scenarios: each runs whole processes on a generated repository.

Every scenario returns ``Row``s (one per thing measured).  Pairs that are compared
(storysync vs the raw floor vs markdown-to-sqlite) are measured in the same run,
interleaved repeat by repeat, so that a noisy machine hits all of them alike.
"""

from __future__ import annotations

import os
import random
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks.backends import SQLITE, Databases, remove_sqlite
from benchmarks.generate import GIT_ENV, git
from benchmarks.measure import Series, repeat, run_once, storysync_argv
from benchmarks.report import row_key

M2S_MAX = 20_000  # markdown-to-sqlite takes the paths as arguments; beyond this they overflow ARG_MAX


@dataclass
class Row:
    """One measurement: a median over repeats (seconds) and the peak RSS."""

    bench: str
    size: int
    median_s: float
    low_s: float
    high_s: float
    repeats: int
    peak_rss_mb: float
    note: str = ""
    cpu_median_s: float = 0.0  # user + system time of the process itself
    load: float = 0.0  # the 1-minute load average as the measurement ended (2 CPUs: above 2, processes wait)
    backend: str = SQLITE  # where storysync's database was: sqlite (a file) or postgresql (a local server)

    @classmethod
    def of(cls, bench: str, size: int, series: Series, note: str = "") -> Row:
        return cls(
            bench,
            size,
            series.median,
            series.low,
            series.high,
            len(series.samples),
            series.peak_rss_mb,
            note,
            series.cpu_median,
            os.getloadavg()[0],
        )

    @property
    def key(self) -> str:
        return row_key(self.bench, self.size, self.backend)


@dataclass
class Context:
    """What every scenario needs: the repository, a scratch directory, the repeat count,
    and where storysync's databases are (SQLite files or a PostgreSQL server)."""

    repo: Path
    size: int
    scratch: Path
    repeats: int
    log: Path
    databases: Databases

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("STORYSYNC_")}
        env.update(GIT_ENV)
        env.pop("GIT_AUTHOR_DATE", None)
        env.pop("GIT_COMMITTER_DATE", None)
        return env

    @property
    def synced_db(self) -> str:
        """A database fully synced with the repository's generated commit (built by ``full_sync``)."""
        return self.databases.url("synced.db")


def full_sync(ctx: Context) -> list[Row]:
    """Full sync vs the raw floor vs markdown-to-sqlite, interleaved, fresh database each run.

    The floor and markdown-to-sqlite write SQLite files: they run next to a SQLite
    full sync only; on a server the full sync is measured alone."""
    on_sqlite = ctx.databases.backend == SQLITE
    m2s = shutil.which("markdown-to-sqlite") if on_sqlite and ctx.size <= M2S_MAX else None
    paths = _story_paths(ctx.repo) if m2s else []
    runs: dict[str, Series] = {"floor": Series(), "full_sync": Series()} if on_sqlite else {"full_sync": Series()}
    if m2s:
        runs["markdown_to_sqlite"] = Series()
    files = {"floor": ctx.scratch / "floor.db", "markdown_to_sqlite": ctx.scratch / "m2s.db"}
    commands: dict[str, Callable[[], list[str]]] = {
        "floor": lambda: [sys.executable, "-m", "benchmarks.floor", str(ctx.repo), str(files["floor"])],
        "full_sync": lambda: storysync_argv(ctx.repo, ctx.databases.fresh("synced.db"), "sync", "--full"),
        "markdown_to_sqlite": lambda: [str(m2s), str(files["markdown_to_sqlite"]), "stories", *paths],
    }
    for _ in range(ctx.repeats):
        for name, series in runs.items():
            if name in files:  # the full sync's database is made fresh by its command line
                remove_sqlite(files[name])
            series.samples.append(run_once(commands[name](), ctx.repo, ctx.env, log=ctx.log))
    return [Row.of(name, ctx.size, series) for name, series in runs.items()]


def _story_paths(repo: Path) -> list[str]:
    listed = git(repo, "ls-files", "-z", "--", "refinements", "backlog", "active", "completed")
    return [p for p in listed.split("\0") if p.endswith(".md")]


def edit_stories(repo: Path, paths: list[str], rng: random.Random, tag: str) -> None:
    """Change each file as a person would: a new points value and a line in the body."""
    for rel in paths:
        target = repo / rel
        text = target.read_text(encoding="utf-8")
        points = rng.choice((1, 2, 3, 5, 8, 13))
        lines = [f"points: {points}" if line.startswith("points: ") else line for line in text.split("\n")]
        target.write_text("\n".join(lines) + f"Edited in {tag}.\n", encoding="utf-8")


def incremental_sync(ctx: Context) -> list[Row]:
    """A 10-file commit on top of the synced database, then ``storysync sync``."""
    paths = _story_paths(ctx.repo)
    rng = random.Random(ctx.size)

    def commit_ten(i: int) -> None:
        chosen = rng.sample(paths, 10)
        edit_stories(ctx.repo, chosen, rng, f"incremental run {i}")
        git(ctx.repo, "add", "--", *chosen)
        git(ctx.repo, "commit", "-q", "-m", f"edit 10 stories ({i})")

    argv = storysync_argv(ctx.repo, ctx.synced_db, "sync")
    series = repeat(argv, ctx.repo, ctx.repeats, env=ctx.env, setup=commit_ten, log=ctx.log)
    return [Row.of("incremental_sync", ctx.size, series, "10 files changed in one commit")]


def validate_staged(ctx: Context) -> list[Row]:
    """The pre-commit hook: ``storysync validate --staged`` with one staged file."""
    paths = _story_paths(ctx.repo)
    rng = random.Random(ctx.size + 1)

    def stage_one(i: int) -> None:
        git(ctx.repo, "reset", "-q", "--hard")  # one staged file per run, not the runs so far
        chosen = rng.choice(paths)
        edit_stories(ctx.repo, [chosen], rng, f"staged run {i}")
        git(ctx.repo, "add", "--", chosen)

    argv = [sys.executable, "-m", "storysync", "--repo", str(ctx.repo), "validate", "--staged"]
    series = repeat(argv, ctx.repo, ctx.repeats, env=ctx.env, setup=stage_one, log=ctx.log)
    git(ctx.repo, "reset", "-q")
    git(ctx.repo, "checkout", "-q", "-f", "HEAD")
    return [Row.of("validate_staged", ctx.size, series, "one staged file, whole process")]


def status(ctx: Context) -> list[Row]:
    """``storysync status`` on the synced database."""
    argv = storysync_argv(ctx.repo, ctx.synced_db, "status")
    return [Row.of("status", ctx.size, repeat(argv, ctx.repo, ctx.repeats, env=ctx.env, log=ctx.log))]


def list_stories(ctx: Context) -> list[Row]:
    """``storysync list`` on the synced database, output piped: every story (the plain
    table, discarded rather than logged: 10 MB a run at 100k), and one question (a
    backlog's active stories, as JSON)."""
    everything = storysync_argv(ctx.repo, ctx.synced_db, "list")
    backlog = _story_paths(ctx.repo)[0].split("/")[1]
    question = storysync_argv(
        ctx.repo, ctx.synced_db, "list", "--backlog", backlog, "--status", "active", "--format", "json"
    )
    return [
        Row.of("list", ctx.size, repeat(everything, ctx.repo, ctx.repeats, env=ctx.env), "every story, piped"),
        Row.of(
            "list_filtered",
            ctx.size,
            repeat(question, ctx.repo, ctx.repeats, env=ctx.env, log=ctx.log),
            "one backlog's active stories, JSON",
        ),
    ]


def export_available() -> bool:
    """Whether this storysync has an ``export`` command yet."""
    from storysync.cli.registry import COMMANDS

    return "export" in COMMANDS


def change_rows(url: str, count: int, rng: random.Random, tag: str) -> None:
    """``count`` live rows retitled as the story API does (revision raised), on any
    backend: SQLAlchemy with bound parameters, no pool left open."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            ids = sorted(conn.execute(text("SELECT id FROM stories WHERE deleted_at IS NULL")).scalars())
            chosen = rng.sample(ids, min(count, len(ids)))
            conn.execute(
                text("UPDATE stories SET title = :title, revision = revision + 1 WHERE id = :id"),
                [{"title": f"Retitled {tag} {sid}", "id": sid} for sid in chosen],
            )
    finally:
        engine.dispose()


def export(ctx: Context) -> list[Row]:
    """100 rows changed DB-side (as the story API does: new value, revision raised), then ``export``."""
    if not export_available():
        return []
    rng = random.Random(ctx.size + 2)

    def change_hundred(i: int) -> None:
        change_rows(ctx.synced_db, 100, rng, f"in export run {i}")

    argv = storysync_argv(ctx.repo, ctx.synced_db, "export")
    series = repeat(argv, ctx.repo, ctx.repeats, env=ctx.env, setup=change_hundred, log=ctx.log)
    return [Row.of("export", ctx.size, series, "100 DB-changed stories")]


def export_commit(ctx: Context) -> list[Row]:
    """100, then 1,000 rows changed DB-side, then ``export --commit`` (files written and committed)."""
    if not export_available():
        return []
    rows = []
    for count in (100, 1000):
        rng = random.Random(ctx.size + count)

        def change(i: int, count: int = count, rng: random.Random = rng) -> None:
            change_rows(ctx.synced_db, count, rng, f"in commit run {count} {i}")

        argv = storysync_argv(ctx.repo, ctx.synced_db, "export", "--commit")
        series = repeat(argv, ctx.repo, ctx.repeats, env=ctx.env, setup=change, log=ctx.log)
        rows.append(Row.of(f"export_commit_{count}", ctx.size, series, f"{count} DB-changed stories, committed"))
    return rows


def noop_hook(ctx: Context) -> list[Row]:
    """The post-merge hook with the database at HEAD, next to ``python -c pass`` and one
    ``git rev-parse HEAD``, interleaved (the target: ≤ 3× the first plus the second).  The
    database comes from the environment, as a hook's does (``--db`` takes the click path)."""
    env = {**ctx.env, "STORYSYNC_DATABASE_URL": ctx.synced_db}
    runs: dict[str, Series] = {"noop_hook": Series(), "noop_python_start": Series(), "noop_git_rev_parse": Series()}
    argv = {
        "noop_hook": [sys.executable, "-m", "storysync", "run-hook", "post-merge", "0"],
        "noop_python_start": [sys.executable, "-c", "pass"],
        "noop_git_rev_parse": ["git", "rev-parse", "HEAD"],
    }
    run_once(storysync_argv(ctx.repo, ctx.synced_db, "sync"), ctx.repo, ctx.env, log=ctx.log)  # at HEAD
    for _ in range(ctx.repeats):
        for name, series in runs.items():
            series.samples.append(run_once(argv[name], ctx.repo, env, log=ctx.log))
    return [Row.of(name, ctx.size, series) for name, series in runs.items()]


def process_start(ctx: Context) -> list[Row]:
    """What a process pays before doing anything: bare Python, and the heavy imports."""
    heavy = "import sqlalchemy, jsonschema, git, rich"
    rows = []
    for name, argv in (
        ("python_start", [sys.executable, "-c", "pass"]),
        ("heavy_imports", [sys.executable, "-c", heavy]),
        ("storysync_help", [sys.executable, "-m", "storysync", "--help"]),
    ):
        rows.append(Row.of(name, 0, repeat(argv, ctx.repo, ctx.repeats, env=ctx.env, log=ctx.log)))
    return rows


SCENARIOS: dict[str, Callable[[Context], list[Row]]] = {
    "full_sync": full_sync,
    "status": status,
    "list": list_stories,
    "incremental_sync": incremental_sync,
    "validate_staged": validate_staged,
    "export": export,
    "noop_hook": noop_hook,
    "export_commit": export_commit,  # last: it commits
}
