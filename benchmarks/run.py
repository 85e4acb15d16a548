"""Run the benchmarks and report medians::

    python -m benchmarks.run --sizes 1k,10k --repeat 5
    python -m benchmarks.run --sizes 100k --repeat 3 --only full_sync,incremental_sync   # on demand: minutes
    python -m benchmarks.run --sizes 10k,100k --repeat 3 --backend postgresql            # the server rows

Each size uses a cached generated repository (``benchmarks/.cache/``), reset to
its generated commit first.  Results are merged into
``benchmarks/results/results.json`` and written to ``docs/performance.md``
(``--no-write`` to only print).  A failing command stops the run with its log.

``--backend`` (``sqlite``, the default; ``postgresql``; or ``sqlite,postgresql``)
says where storysync's database is.  For ``postgresql`` one throwaway server is
started for the run (``tests/pg.py``: initdb in a temporary directory, local TCP,
fsync off, run as the ``postgres`` user when the runner is root) and destroyed
after it; each size gets its own database (``CREATE DATABASE``, dropped after the
size, and made anew for every full-sync run).  Only the scenarios that use the
database as a server would run there: full_sync, incremental_sync, export and
export_commit (its rows are named ``full_sync [postgresql]`` and so on).  The
per-process costs (process_start, micro) are measured with the ``sqlite`` backend.
"""

from __future__ import annotations

import argparse
import compileall
import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks import report
from benchmarks.backends import (
    BACKENDS,
    POSTGRESQL,
    SERVER_SCENARIOS,
    SQLITE,
    Databases,
    ServerDatabases,
    SQLiteFiles,
    parse_backends,
)
from benchmarks.generate import CACHE_DIR, cached_repo, parse_size
from benchmarks.measure import CommandFailed, run_once, storysync_argv
from benchmarks.scenarios import SCENARIOS, Context, Row, process_start

if TYPE_CHECKING:
    from tests.pg import PgServer


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The runner's options."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description="storysync benchmarks")
    parser.add_argument("--sizes", default="1k,10k", help="comma-separated story counts (50, 1k, 10k, 100k)")
    parser.add_argument("--repeat", type=int, default=5, help="runs per measurement; the median is reported")
    parser.add_argument("--only", default="", help=f"comma-separated scenarios of: {', '.join(SCENARIOS)}, micro")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--cache", type=Path, default=CACHE_DIR, help="where generated repositories are kept")
    parser.add_argument("--results", type=Path, default=report.RESULTS, help="the results store (JSON)")
    parser.add_argument("--doc", type=Path, default=report.DOC, help="the page whose results section is rewritten")
    parser.add_argument("--no-write", action="store_true", help="print only; leave results and docs alone")
    parser.add_argument("--micro-files", type=int, default=500, help="stories sampled for the micro costs")
    parser.add_argument(
        "--backend",
        default=SQLITE,
        help=f"where storysync's database is, comma-separated: {', '.join(BACKENDS)} (a throwaway local server; "
        f"scenarios {', '.join(sorted(SERVER_SCENARIOS))})",
    )
    return parser.parse_args(argv)


def run_size(size: int, args: argparse.Namespace, wanted: set[str], scratch: Path, databases: Databases) -> list[Row]:
    """Every wanted scenario on the repository of ``size`` stories, in order, on one backend."""
    repo = cached_repo(size, args.seed, args.cache)
    ctx = Context(repo, size, scratch, args.repeat, args.cache / "commands.log", databases)
    rows: list[Row] = []
    synced = False  # whether ctx.synced_db holds a full sync yet (every scenario leaves it synced)
    try:
        for name, scenario in SCENARIOS.items():
            if name not in wanted or (databases.backend != SQLITE and name not in SERVER_SCENARIOS):
                continue
            if name != "full_sync" and not synced:
                prepare_synced_db(ctx)
            print(f"  {name} ({size} stories, {databases.backend}) ...", file=sys.stderr, flush=True)
            rows += [replace(row, backend=databases.backend) for row in scenario(ctx)]
            synced = True
    finally:
        cached_repo(size, args.seed, args.cache)  # leave the cache as generated
        databases.close()
    return rows


def prepare_synced_db(ctx: Context) -> None:
    """The database the DB-side scenarios start from: a full sync of the generated commit (untimed)."""
    run_once(storysync_argv(ctx.repo, ctx.synced_db, "sync", "--full"), ctx.repo, ctx.env, log=ctx.log)


def micro(files: int) -> dict[str, float]:
    """The per-file micro costs, measured in a separate process."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.micro", "--files", str(files)], capture_output=True, text=True, check=True
    )
    costs: dict[str, float] = json.loads(done.stdout)
    return costs


def compile_bytecode() -> None:
    """Byte-compile storysync and the benchmark scripts, as ``pip install`` does for a package.

    An editable install writes its ``.pyc`` files on first import, unless
    ``PYTHONDONTWRITEBYTECODE`` is set (as in some sandboxes and containers);
    then every measured process would compile each module from source again.
    """
    import storysync

    for package in (Path(storysync.__file__).parent, Path(__file__).parent):
        compileall.compile_dir(package, quiet=1)


@contextmanager
def postgres_server(backends: list[str], given: PgServer | None) -> Iterator[PgServer | None]:
    """The PostgreSQL server of the run: none without the backend, else ``given``, else
    a throwaway one (``tests/pg.py``), destroyed after the run."""
    if POSTGRESQL not in backends or given is not None:
        yield given if POSTGRESQL in backends else None
        return
    from tests.pg import PgServer

    with PgServer.running() as server:
        yield server


def measure(
    args: argparse.Namespace, sizes: list[int], wanted: set[str], backends: list[str], pg: PgServer | None
) -> list[Row]:
    """Every size on each backend in turn (SQLite files; databases on ``pg``), then process start."""
    rows: list[Row] = []
    for size in sizes:
        for backend in backends:
            with tempfile.TemporaryDirectory(prefix=f"storysync-bench-{size}-{backend}-") as tmp:
                databases = ServerDatabases(pg) if pg and backend == POSTGRESQL else SQLiteFiles(Path(tmp))
                rows += run_size(size, args, wanted, Path(tmp), databases)
    if "process_start" in wanted and sizes and SQLITE in backends:
        with tempfile.TemporaryDirectory(prefix="storysync-bench-start-") as tmp:
            ctx = Context(Path(tmp), 0, Path(tmp), args.repeat, args.cache / "commands.log", SQLiteFiles(Path(tmp)))
            rows += process_start(ctx)
    return rows


def main(argv: list[str] | None = None, server: PgServer | None = None) -> int:
    """Measure, print the table, and (unless ``--no-write``) store and document the results.

    ``server``: a running PostgreSQL server to use for the ``postgresql`` backend
    instead of starting one (the tests pass theirs)."""
    args = parse_args(argv)
    sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    wanted = {w.strip() for w in args.only.split(",") if w.strip()} or {*SCENARIOS, "micro", "process_start"}
    try:
        backends = parse_backends(args.backend)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    if POSTGRESQL in backends and not wanted & SERVER_SCENARIOS:
        print(f"postgresql: none of {', '.join(sorted(SERVER_SCENARIOS))} wanted; no server started", file=sys.stderr)
        backends.remove(POSTGRESQL)
    run_id = report.now_id()
    args.cache.mkdir(parents=True, exist_ok=True)
    (args.cache / "commands.log").write_bytes(b"")
    compile_bytecode()
    try:
        with postgres_server(backends, server) as pg:
            pg_version = pg.version() if pg else None
            rows = measure(args, sizes, wanted, backends, pg)
    except CommandFailed as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    costs = micro(args.micro_files) if "micro" in wanted and SQLITE in backends else None
    previous = report.load(args.results) if not args.no_write else {"rows": {}, "micro": {}}
    store = report.merge(previous, rows, costs, run_id, pg_version)
    report.print_table(store)
    if not args.no_write:
        report.save(store, args.results)
        report.write_doc(store, args.doc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
