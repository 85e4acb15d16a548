"""``storysync watch`` latency and memory, measured from outside the process::

    python -m benchmarks.bench_watch                       # 1,000 stories, 200 edits, 10,000 edits for RSS
    python -m benchmarks.bench_watch --write-doc           # also rewrite the results in docs/watch.md
    python -m benchmarks.bench_watch --stories 20 --edits 5 --rss-edits 100 --idle 1 --json   # the smoke run

A generated repository (``benchmarks.generate``) in a temporary directory, a real
``storysync watch`` subprocess and a real SQLite database.  Latency: an edit is
written, then the database is polled (read-only, every ``--poll`` ms) until the
row shows it: save → committed row.  Memory: ``--rss-edits`` edits in rounds of
``--round`` files, the watcher's VmRSS read from /proc after each 1,000.  Idle
CPU: the watcher's user+system ticks over ``--idle`` quiet seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks.generate import generate
from benchmarks.report import machine

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "watch.md"
START, END = "<!-- watch-results:start (python -m benchmarks.bench_watch --write-doc) -->", "<!-- watch-results:end -->"
TITLE = re.compile(r"^title:.*$", re.MULTILINE)
TIMEOUT = 30.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The benchmark's options."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_watch", description=__doc__.splitlines()[0])
    parser.add_argument("--stories", type=int, default=1000, help="stories in the generated repository")
    parser.add_argument("--edits", type=int, default=200, help="edits timed one at a time (latency)")
    parser.add_argument("--rss-edits", type=int, default=10_000, help="edits made while RSS is sampled")
    parser.add_argument("--round", type=int, default=20, help="files edited together in each RSS round")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of quiet over which idle CPU is measured")
    parser.add_argument("--poll", type=float, default=5.0, help="database poll interval, ms")
    parser.add_argument("--debounce", type=int, default=200, help="watch --debounce, ms")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--write-doc", action="store_true", help=f"rewrite the results section of {DOC.name}")
    parser.add_argument("--from-json", type=Path, help="report a run saved with --json instead of measuring")
    return parser.parse_args(argv)


class Watch:
    """A running ``storysync watch`` and a read-only view of its database."""

    def __init__(self, repo: Path, debounce: int) -> None:
        self.repo = repo
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "storysync", "--repo", str(repo), "watch", "--debounce", str(debounce)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        assert self.proc.stderr is not None
        stderr = self.proc.stderr
        self.reader = threading.Thread(target=lambda: self.lines.extend(iter(stderr.readline, "")), daemon=True)
        self.reader.start()
        wait(lambda: any("rescan of" in line for line in self.lines) or self.proc.poll() is not None, 120)
        if self.proc.poll() is not None:
            raise RuntimeError("storysync watch exited: " + "".join(self.lines))
        db = repo / ".storysync" / "storysync.db"
        self.db = sqlite3.connect(db.as_uri() + "?mode=ro", uri=True, timeout=30, check_same_thread=False)

    def title(self, story_id: str) -> str | None:
        """The title the database holds for a story now."""
        found = self.db.execute("SELECT title FROM stories WHERE id = ?", (story_id,)).fetchone()
        return None if found is None else str(found[0])

    def rss_kb(self) -> int:
        """The watcher's resident set size."""
        status = Path(f"/proc/{self.proc.pid}/status").read_text(encoding="ascii")
        return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))

    def cpu_ticks(self) -> int:
        """The watcher's user + system CPU time, in clock ticks."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])

    def stop(self) -> int:
        """SIGINT, as Ctrl-C would; the exit code."""
        self.db.close()
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(TIMEOUT)
        self.reader.join(TIMEOUT)
        assert self.proc.stderr is not None
        self.proc.stderr.close()
        return code


def wait(predicate: Callable[[], object], timeout: float = TIMEOUT, interval: float = 0.005) -> None:
    """Poll until ``predicate`` holds; raise after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("timed out waiting for the database")
        time.sleep(interval)


def stories(repo: Path) -> list[tuple[str, Path]]:
    """(id, file) of every story in the generated repository."""
    out = []
    for path in sorted(repo.glob("*/*/*.md")):
        if path.name != "README.md":
            out.append(("-".join(path.name.split("-", 2)[:2]), path))
    return out


def edit(path: Path, token: str) -> None:
    """Save a story with a new title, as an editor writing in place would."""
    text = path.read_text(encoding="utf-8")
    path.write_text(TITLE.sub(f'title: "bench {token}"', text, count=1), encoding="utf-8")


def latency(watch: Watch, files: list[tuple[str, Path]], count: int, poll: float) -> list[float]:
    """Seconds from each save to its committed row, one edit at a time."""
    out = []
    for i in range(count):
        story_id, path = files[i % len(files)]
        token = f"latency {i}"
        start = time.perf_counter()
        edit(path, token)
        wait(lambda sid=story_id, t=token: watch.title(sid) == f"bench {t}", interval=poll)
        out.append(time.perf_counter() - start)
    return out


def memory(watch: Watch, files: list[tuple[str, Path]], edits: int, per_round: int, poll: float) -> list[int]:
    """VmRSS (KiB) after each 1,000 edits (and before the first)."""
    samples = [watch.rss_kb()]
    done = 0
    while done < edits:
        batch = [files[(done + j) % len(files)] for j in range(min(per_round, edits - done))]
        for _, path in batch:
            edit(path, f"rss {done}")
            done += 1
        last_id = batch[-1][0]
        wait(lambda sid=last_id, t=f"bench rss {done - 1}": watch.title(sid) == t, interval=poll)
        if done % 1000 < per_round or done == edits:
            samples.append(watch.rss_kb())
    return samples


def idle_cpu(watch: Watch, seconds: float) -> float:
    """The watcher's CPU use while nothing changes, in percent of one core."""
    ticks = os.sysconf("SC_CLK_TCK")
    before, start = watch.cpu_ticks(), time.monotonic()
    time.sleep(seconds)
    used = (watch.cpu_ticks() - before) / ticks
    return 100 * used / (time.monotonic() - start)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank)."""
    ranked = sorted(values)
    return ranked[min(len(ranked) - 1, max(0, round(q / 100 * len(ranked)) - 1))]


@contextmanager
def generated_repo(n: int) -> Iterator[Path]:
    """A fresh generated repository with ``n`` stories, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="bench-watch-") as tmp:
        yield generate(Path(tmp) / "repo", n)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Measure; the results as a dict."""
    with generated_repo(args.stories) as repo:
        started = time.perf_counter()
        watch = Watch(repo, args.debounce)
        catch_up = time.perf_counter() - started
        try:
            files = stories(repo)
            lat = latency(watch, files, args.edits, args.poll / 1000)
            rss = memory(watch, files, args.rss_edits, args.round, args.poll / 1000)
            cpu = idle_cpu(watch, args.idle)
        finally:
            code = watch.stop()
    return {
        "stories": args.stories,
        "debounce_ms": args.debounce,
        "startup_catch_up_s": round(catch_up, 3),
        "edits": len(lat),
        "latency_ms": {
            "p50": round(statistics.median(lat) * 1000, 1),
            "p95": round(percentile(lat, 95) * 1000, 1),
            "max": round(max(lat) * 1000, 1),
        },
        "rss_edits": args.rss_edits,
        "rss_mb": [round(kb / 1024, 1) for kb in rss],
        "rss_growth_mb": round((rss[-1] - rss[1 if len(rss) > 2 else 0]) / 1024, 1),
        "idle_cpu_percent": round(cpu, 2),
        "idle_s": args.idle,
        "exit_code": code,
        "machine": machine(),
    }


def render(results: dict[str, Any]) -> str:
    """The results as a Markdown section."""
    lat, m = results["latency_ms"], results["machine"]
    return "\n".join(
        [
            START,
            "",
            f"Measured {time.strftime('%Y-%m-%d')} on {m['nproc']} cores ({m['cpu']}, {m['ram']} RAM), "
            f"Python {m['python']}, SQLite {m['sqlite']}; {results['stories']} stories, "
            f"`--debounce {results['debounce_ms']}`.",
            "",
            "| measure | result |",
            "| --- | --- |",
            f"| save → committed row, p50 ({results['edits']} edits) | {lat['p50']:.0f} ms |",
            f"| save → committed row, p95 | {lat['p95']:.0f} ms |",
            f"| save → committed row, max | {lat['max']:.0f} ms |",
            f"| RSS over {results['rss_edits']:,} edits (every 1,000) | {', '.join(map(str, results['rss_mb']))} MiB |",
            f"| RSS growth after the first 1,000 edits | {results['rss_growth_mb']} MiB |",
            f"| idle CPU{_over(results.get('idle_s'))} | {results['idle_cpu_percent']} % of one core |",
            f"| start-up catch-up (full sync of the tree) | {results['startup_catch_up_s']} s |",
            "",
            END,
        ]
    )


def _over(seconds: float | None) -> str:
    """How long the idle CPU was measured, when the run says (older saved runs do not)."""
    return "" if seconds is None else f" over {seconds:g} s"


def write_doc(section: str, doc: Path = DOC) -> None:
    """Replace the results section of the watch page."""
    text = doc.read_text(encoding="utf-8")
    head, rest = text.split(START, 1)
    tail = rest.split(END, 1)[1]
    doc.write_text(head + section + tail, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and report; exit 1 if the watcher did not exit 0."""
    args = parse_args(argv)
    results = json.loads(args.from_json.read_text(encoding="utf-8")) if args.from_json else run(args)
    print(json.dumps(results, indent=2) if args.json else render(results))
    if args.write_doc:
        write_doc(render(results))
    return 0 if results["exit_code"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
