"""Before/after, interleaved: the hook with nothing to do, ``export --commit``, ``watch`` idle::

    git archive BASE storysync | tar -x -C /tmp/base        # the code to compare with
    python -m benchmarks.compare --before /tmp/base --sizes 10k --repeat 7
    python -m benchmarks.compare --before /tmp/base --sizes 100k --repeat 3 --only noop_hook,export

Each variant (``before``: the package under ``--before``; ``after``: this checkout)
runs in its own clone of the cached generated repository with its own SQLite
database (a newer schema is not readable by older code), fully synced first
(untimed).  Every measurement alternates the variants repeat by repeat, so that
load from other processes hits both alike.  Whole processes, medians:

* ``noop_hook``: ``storysync run-hook post-merge 0`` with the database at HEAD,
  next to ``python -c pass`` and one ``git rev-parse HEAD`` (the target: at most
  three times the first plus the second);
* ``export_N``: N rows changed DB-side (title, revision raised), then
  ``storysync export --commit``;
* ``watch``: ``storysync watch --reconcile R`` started on the synced repository:
  the time until its catch-up is reported, then its CPU over ``--idle`` seconds
  (at least two reconcile periods) with nothing changing;
* ``postgres`` (not in the default ``--only``): this checkout on SQLite and on
  PostgreSQL, interleaved: full sync, incremental 10-file sync, export of 100.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.generate import GIT_ENV, cached_repo, git, parse_size, size_label
from benchmarks.measure import Series, run_once
from benchmarks.scenarios import change_rows

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "compare.json"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.compare", description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="a directory holding the older storysync package")
    parser.add_argument("--sizes", default="10k")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--only", default="noop_hook,export,watch")
    parser.add_argument("--exports", default="100,1000", help="rows changed per export run")
    parser.add_argument("--reconcile", type=float, default=10.0, help="watch --reconcile, seconds")
    parser.add_argument("--idle", type=float, default=25.0, help="seconds of idle CPU measured (≥ 2 reconciles)")
    parser.add_argument("--watch-repeat", type=int, default=2)
    return parser.parse_args(argv)


class Variant:
    """One storysync under test, in its own clone and database."""

    def __init__(self, name: str, package_root: Path, source: Path, scratch: Path, url: str | None = None) -> None:
        self.name = name
        self.root = package_root
        self.repo = scratch / name / "repo"
        self.repo.parent.mkdir(parents=True)
        git(source, "clone", "-q", "--shared", str(source), str(self.repo))
        self.db = scratch / name / "storysync.db"
        env = {k: v for k, v in os.environ.items() if not k.startswith("STORYSYNC_")}
        env.update(GIT_ENV)
        env.pop("GIT_AUTHOR_DATE", None)
        env.pop("GIT_COMMITTER_DATE", None)
        env["PYTHONPATH"] = str(package_root)
        self.url = url or f"sqlite:///{self.db}"
        env["STORYSYNC_DATABASE_URL"] = self.url
        self.env = env
        self.log = scratch / name / "commands.log"
        self.full_sync = run_once(self.argv("sync", "--full"), self.repo, self.env, log=self.log)

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "storysync", *args]

    def run(self, *args: str) -> float:
        return run_once(self.argv(*args), self.repo, self.env, log=self.log).seconds


def noop_hook(variants: list[Variant], repeats: int) -> dict[str, Series]:
    series = {k: Series() for k in ("python_start", "git_rev_parse", *(f"noop_hook_{v.name}" for v in variants))}
    repo, env = variants[0].repo, variants[0].env
    for _ in range(repeats):
        series["python_start"].samples.append(run_once([sys.executable, "-c", "pass"], repo, env))
        series["git_rev_parse"].samples.append(run_once(["git", "rev-parse", "HEAD"], repo, env))
        for v in variants:
            sample = run_once(v.argv("run-hook", "post-merge", "0"), v.repo, v.env, log=v.log)
            series[f"noop_hook_{v.name}"].samples.append(sample)
    return series


def export(variants: list[Variant], repeats: int, count: int) -> dict[str, Series]:
    series = {f"export_{count}_{v.name}": Series() for v in variants}
    rngs = {v.name: random.Random(count) for v in variants}
    for i in range(repeats):
        for v in variants if i % 2 == 0 else reversed(variants):
            change_rows(v.url, count, rngs[v.name], f"run {i}")
            sample = run_once(v.argv("export", "--commit"), v.repo, v.env, log=v.log)
            series[f"export_{count}_{v.name}"].samples.append(sample)
    return series


def postgres(source: Path, scratch: Path, repeats: int) -> dict[str, Series]:
    """This checkout on SQLite and on a throwaway PostgreSQL server (``tests/pg.py``: fsync
    off), interleaved: the full sync (fresh database, once each), an incremental sync of a
    10-file commit, and ``export --commit`` of 100 DB-changed stories."""
    from tests.pg import PgServer

    with PgServer.running() as server, server.database() as url:
        variants = [Variant("sqlite", ROOT, source, scratch), Variant("postgresql", ROOT, source, scratch, url)]
        series: dict[str, Series] = {f"full_sync_{v.name}": Series([v.full_sync]) for v in variants}
        for v in variants:
            series[f"incremental_sync_{v.name}"] = Series()
            series[f"export_100_{v.name}"] = Series()
        rng = random.Random(10)
        for i in range(repeats):
            for v in variants if i % 2 == 0 else reversed(variants):
                paths = [p for p in git(v.repo, "ls-files", "--", "backlog").splitlines() if p.endswith(".md")]
                for rel in rng.sample(paths, 10):
                    with (v.repo / rel).open("a", encoding="utf-8") as story:
                        story.write(f"Edited in run {i}.\n")
                git(v.repo, "commit", "-q", "-am", f"edit 10 stories ({i})")
                series[f"incremental_sync_{v.name}"].samples.append(run_once(v.argv("sync"), v.repo, v.env, log=v.log))
                _export_via_api(v, 100, rng, f"pg run {i}")
                sample = run_once(v.argv("export", "--commit"), v.repo, v.env, log=v.log)
                series[f"export_100_{v.name}"].samples.append(sample)
        return series


def _export_via_api(v: Variant, count: int, rng: random.Random, tag: str) -> None:
    """``count`` rows retitled through storysync's own story API (any database)."""
    code = (
        "import random, sys\n"
        "from storysync.config import load_config\n"
        "from storysync.db.database import Database\n"
        "from storysync.db.writer import update_story\n"
        "from sqlalchemy import text\n"
        "config = load_config(__import__('pathlib').Path('.'))\n"
        "db = Database(config.database)\n"
        "with db.read() as conn:\n"
        "    ids = [r[0] for r in conn.execute(text('SELECT id FROM stories WHERE deleted_at IS NULL'))]\n"
        "for sid in random.Random(int(sys.argv[1])).sample(ids, int(sys.argv[2])):\n"
        "    update_story(db, sid, title=sys.argv[3] + ' ' + sid)\n"
        "db.dispose()\n"
    )
    seed = str(rng.randrange(1 << 30))
    run_once([sys.executable, "-c", code, seed, str(count), tag], v.repo, v.env, log=v.log)


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def watch_once(v: Variant, reconcile: float, idle: float) -> tuple[float, float, float]:
    """Seconds until the catch-up is reported, its CPU seconds, and idle CPU in % of a core."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [*v.argv("watch", "--reconcile", str(reconcile))],
        cwd=v.repo,
        env=v.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    ready = threading.Event()
    assert proc.stderr is not None
    stderr = proc.stderr

    def read() -> None:
        for line in iter(stderr.readline, ""):
            lines.append(line)
            if "rescan of" in line:
                ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        if not ready.wait(600):
            raise RuntimeError("watch did not catch up: " + "".join(lines))
        start_s = time.perf_counter() - started
        hz = os.sysconf("SC_CLK_TCK")
        start_cpu = cpu_ticks(proc.pid) / hz
        before, t0 = cpu_ticks(proc.pid), time.monotonic()
        time.sleep(idle)
        used = (cpu_ticks(proc.pid) - before) / hz
        return start_s, start_cpu, 100 * used / (time.monotonic() - t0)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
        reader.join(10)
        stderr.close()


def watch(variants: list[Variant], repeats: int, reconcile: float, idle: float) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for i in range(repeats):
        for v in variants if i % 2 == 0 else reversed(variants):
            start_s, start_cpu, idle_pct = watch_once(v, reconcile, idle)
            out.setdefault(f"watch_start_s_{v.name}", []).append(start_s)
            out.setdefault(f"watch_start_cpu_s_{v.name}", []).append(start_cpu)
            out.setdefault(f"watch_idle_cpu_pct_{v.name}", []).append(idle_pct)
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    wanted = {w.strip() for w in args.only.split(",") if w.strip()}
    for package in (args.before / "storysync", ROOT / "storysync"):
        compileall.compile_dir(package, quiet=1)
    store: dict[str, Any] = json.loads(RESULTS.read_text(encoding="utf-8")) if RESULTS.exists() else {}
    for size in (parse_size(s) for s in args.sizes.split(",") if s.strip()):
        source = cached_repo(size)
        results: dict[str, Any] = {"load_start": os.getloadavg()[0], "measured": time.strftime("%Y-%m-%d %H:%M UTC")}
        with tempfile.TemporaryDirectory(prefix=f"storysync-compare-{size}-") as tmp:
            pairs = (("before", args.before), ("after", ROOT))
            needed = wanted & {"noop_hook", "export", "watch"}
            variants = [Variant(name, root, source, Path(tmp)) for name, root in pairs] if needed else []
            series: dict[str, Series] = {}
            if "noop_hook" in wanted:
                series |= noop_hook(variants, args.repeat)
            if "export" in wanted:
                for count in (int(c) for c in args.exports.split(",")):
                    series |= export(variants, args.repeat, count)
            if "postgres" in wanted:
                series |= postgres(source, Path(tmp) / "pg", args.repeat)
            for name, s in series.items():
                results[name] = {
                    "median_ms": round(s.median * 1000, 1),
                    "cpu_median_ms": round(s.cpu_median * 1000, 1),
                    "min_ms": round(s.low * 1000, 1),
                    "max_ms": round(s.high * 1000, 1),
                    "runs": len(s.samples),
                }
            if "watch" in wanted:
                for name, values in watch(variants, args.watch_repeat, args.reconcile, args.idle).items():
                    results[name] = {"median": round(statistics.median(values), 3), "values": values}
        results["load_end"] = os.getloadavg()[0]
        store.setdefault(size_label(size), {}).update(results)  # a later run of a scenario replaces its rows
        print(json.dumps({size_label(size): results}, indent=1))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(store, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
