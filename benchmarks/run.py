"""Run the benchmarks and report medians::

    python -m benchmarks.run --sizes 1k,10k --repeat 5
    python -m benchmarks.run --sizes 100k --repeat 3 --only full_sync,incremental_sync   # on demand: minutes

Each size uses a cached generated repository (``benchmarks/.cache/``), reset to
its generated commit first.  Results are merged into
``benchmarks/results/results.json`` and written to ``docs/performance.md``
(``--no-write`` to only print).  A failing command stops the run with its log.
"""

from __future__ import annotations

import argparse
import compileall
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks import report
from benchmarks.generate import CACHE_DIR, cached_repo, parse_size
from benchmarks.measure import CommandFailed, run_once, storysync_argv
from benchmarks.scenarios import SCENARIOS, Context, Row, process_start


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
    return parser.parse_args(argv)


def run_size(size: int, args: argparse.Namespace, wanted: set[str], scratch: Path) -> list[Row]:
    """Every wanted scenario on the repository of ``size`` stories, in order."""
    repo = cached_repo(size, args.seed, args.cache)
    ctx = Context(repo, size, scratch, args.repeat, args.cache / "commands.log")
    rows: list[Row] = []
    try:
        for name, scenario in SCENARIOS.items():
            if name not in wanted:
                continue
            if name != "full_sync" and not (scratch / "synced.db").exists():
                prepare_synced_db(ctx)
            print(f"  {name} ({size} stories) ...", file=sys.stderr, flush=True)
            rows += scenario(ctx)
    finally:
        cached_repo(size, args.seed, args.cache)  # leave the cache as generated
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


def main(argv: list[str] | None = None) -> int:
    """Measure, print the table, and (unless ``--no-write``) store and document the results."""
    args = parse_args(argv)
    sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    wanted = {w.strip() for w in args.only.split(",") if w.strip()} or {*SCENARIOS, "micro", "process_start"}
    run_id = report.now_id()
    rows: list[Row] = []
    args.cache.mkdir(parents=True, exist_ok=True)
    (args.cache / "commands.log").write_bytes(b"")
    compile_bytecode()
    try:
        for size in sizes:
            with tempfile.TemporaryDirectory(prefix=f"storysync-bench-{size}-") as tmp:
                rows += run_size(size, args, wanted, Path(tmp))
        if "process_start" in wanted and sizes:
            with tempfile.TemporaryDirectory(prefix="storysync-bench-start-") as tmp:
                ctx = Context(Path(tmp), 0, Path(tmp), args.repeat, args.cache / "commands.log")
                rows += process_start(ctx)
    except CommandFailed as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    costs = micro(args.micro_files) if "micro" in wanted else None
    previous = report.load(args.results) if not args.no_write else {"rows": {}, "micro": {}}
    store = report.merge(previous, rows, costs, run_id)
    report.print_table(store)
    if not args.no_write:
        report.save(store, args.results)
        report.write_doc(store, args.doc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
