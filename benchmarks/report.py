"""Results: kept in ``benchmarks/results/results.json``, printed as a table, and
written into the generated section of ``docs/performance.md`` with the machine.

Rows from different invocations are merged by (benchmark, size, backend), so a
100k run on demand adds to the 1k/10k figures instead of replacing them; every
row says when it was measured.  A SQLite row's key is ``bench@size`` (as before
there were other backends), a PostgreSQL row's ``bench [postgresql]@size``.
Targets compare rows measured in the same run.
"""

from __future__ import annotations

import json
import os
import platform
import sqlite3
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchmarks.generate import size_label

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "results.json"
DOC = ROOT / "docs" / "performance.md"
START, END = "<!-- results:start (written by python -m benchmarks.run) -->", "<!-- results:end -->"


def row_key(bench: str, size: int, backend: str = "sqlite") -> str:
    """Where a row is kept in the store: ``full_sync@10k``, ``full_sync [postgresql]@10k``."""
    return f"{row_label(bench, backend)}@{size_label(size)}"


def row_label(bench: str, backend: str = "sqlite") -> str:
    """A row's name in the table: the benchmark, and the backend unless SQLite."""
    return bench if backend == "sqlite" else f"{bench} [{backend}]"


def machine() -> dict[str, str]:
    """nproc, CPU model, RAM, Python, SQLite and git versions."""
    cpu = "unknown"
    ram = "unknown"
    try:
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
        kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if "MemTotal" in line)
        ram = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, StopIteration):
        pass
    git_version = subprocess.run(["git", "--version"], capture_output=True, text=True, check=False).stdout.strip()
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "ram": ram,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "git": git_version,
        "os": platform.platform(),
    }


def load(path: Path = RESULTS) -> dict[str, Any]:
    """The stored results (empty when none yet)."""
    if path.is_file():
        stored: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return stored
    return {"machine": {}, "rows": {}, "micro": {}}


def merge(
    store: dict[str, Any], rows: list[Any], micro: dict[str, float] | None, run_id: str, postgresql: str | None = None
) -> dict[str, Any]:
    """Add this run's rows (and micro costs) to the store; ``postgresql``: the version of
    the server this run measured on (else the stored one stays, for the rows it measured)."""
    server = postgresql or store.get("machine", {}).get("postgresql")
    store["machine"] = machine() | ({"postgresql": server} if server else {})
    for row in rows:
        store["rows"][row.key] = {**asdict(row), "run": run_id}
    if micro:
        store["micro"] = {"run": run_id, "us": micro}
    return store


def save(store: dict[str, Any], path: Path = RESULTS) -> None:
    """Write the store as stable, readable JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(store, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def now_id() -> str:
    """A run's id: its UTC start time."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


@dataclass
class Target:
    """A promise from issue 7, 13 or 14 and whether the stored figures keep it."""

    name: str
    limit: str
    measured: str
    ok: bool | None  # None: not measured yet


def _get(rows: dict[str, Any], bench: str, size: int, backend: str = "sqlite") -> dict[str, Any] | None:
    found: dict[str, Any] | None = rows.get(row_key(bench, size, backend))
    return found


def _ratio(
    rows: dict[str, Any], a: str, b: str, size: int, test: Callable[[float], bool], fmt: str, a_backend: str = "sqlite"
) -> tuple[str, bool | None]:
    ra, rb = _get(rows, a, size, a_backend), _get(rows, b, size)
    if ra is None or rb is None:
        return "not measured", None
    value = ra["median_s"] / rb["median_s"]
    text = fmt.format(value=value, a=ra["median_s"], b=rb["median_s"])
    if ra.get("cpu_median_s") and rb.get("cpu_median_s"):
        text += f"; CPU time {ra['cpu_median_s'] / rb['cpu_median_s']:.2f}×"
    return text, test(value)


def _limit(rows: dict[str, Any], bench: str, size: int, seconds: float) -> tuple[str, bool | None]:
    row = _get(rows, bench, size)
    if row is None:
        return "not measured", None
    return f"{row['median_s'] * 1000:.0f} ms", row["median_s"] <= seconds


def targets(rows: dict[str, Any]) -> list[Target]:
    """Every target (issues 7, 13 and 14; where issue 13 tightened one of issue 7's, its
    limit) against the stored rows."""
    out = [
        Target(
            "full sync 10k vs raw floor",
            "≤ 1.5×",
            *_ratio(rows, "full_sync", "floor", 10_000, lambda v: v <= 1.5, "{value:.2f}× ({a:.2f} s vs {b:.2f} s)"),
        ),
        Target(
            "full sync 10k vs markdown-to-sqlite",
            "≥ 8× faster",
            *_ratio(
                rows,
                "markdown_to_sqlite",
                "full_sync",
                10_000,
                lambda v: v >= 8,
                "{value:.1f}× ({a:.2f} s vs {b:.2f} s)",
            ),
        ),
    ]
    out.append(
        Target(
            "full sync 100k vs raw floor",
            "≤ 1.3×",
            *_ratio(rows, "full_sync", "floor", 100_000, lambda v: v <= 1.3, "{value:.2f}× ({a:.1f} s vs {b:.1f} s)"),
        )
    )
    big, ten = _get(rows, "full_sync", 100_000), _get(rows, "full_sync", 10_000)
    if big is not None and ten is not None:
        per = (big["median_s"] / 100_000) / (ten["median_s"] / 10_000)
        text = f"{per:.2f}× wall"
        if big.get("cpu_median_s") and ten.get("cpu_median_s"):  # CPU time: the runs may see different loads
            per = (big["cpu_median_s"] / 100_000) / (ten["cpu_median_s"] / 10_000)
            text = f"{per:.2f}× in CPU time ({text})"
        out.append(Target("full sync 100k: linear", "≤ 1.1× the 10k cost per story", text, per <= 1.1))
        out.append(
            Target("full sync 100k: peak RSS", "≤ 250 MB", f"{big['peak_rss_mb']:.0f} MB", big["peak_rss_mb"] <= 250)
        )
    else:
        out.append(Target("full sync 100k: linear, peak RSS", "≤ 1.1×, ≤ 250 MB", "not measured", None))
    out.append(Target("incremental sync, 10 files, 100k", "≤ 150 ms", *_limit(rows, "incremental_sync", 100_000, 0.15)))
    out.append(_incremental_ratio(rows))
    out.append(
        Target(
            "incremental sync 100k, PostgreSQL vs SQLite",
            "≤ 1.3×",
            *_ratio(
                rows,
                "incremental_sync",
                "incremental_sync",
                100_000,
                lambda v: v <= 1.3,
                "{value:.2f}× ({a:.2f} s vs {b:.2f} s)",
                a_backend="postgresql",
            ),
        )
    )
    for size in (10_000, 100_000, 1_000):
        if _get(rows, "validate_staged", size) is not None:
            measured, ok = _limit(rows, "validate_staged", size, 0.12)
            out.append(Target(f"validate --staged, one file ({size_label(size)} repo)", "≤ 120 ms", measured, ok))
            break
    else:
        out.append(Target("validate --staged, one file", "≤ 120 ms", "not measured", None))
    out.append(Target("status, 10k", "≤ 300 ms", *_limit(rows, "status", 10_000, 0.3)))
    out.append(Target("list, every story, 100k", "≤ 300 ms", *_limit(rows, "list", 100_000, 0.3)))
    out.append(Target("list, one question, 100k", "≤ 300 ms", *_limit(rows, "list_filtered", 100_000, 0.3)))
    out.append(Target("export of 100 DB-changed stories, 10k", "≤ 1 s", *_limit(rows, "export", 10_000, 1.0)))
    out.append(_noop_hook(rows))
    for count, seconds in ((100, 0.8), (1000, 3.0)):
        limit = f"≤ {seconds:g} s"
        measured = _limit(rows, f"export_commit_{count}", 100_000, seconds)
        out.append(Target(f"export --commit of {count:,} DB-changed stories, 100k", limit, *measured))
    return out


def _noop_hook(rows: dict[str, Any]) -> Target:
    """The post-merge hook with nothing to do against 3× ``python -c pass`` + one git process (same run)."""
    name, limit = "post-merge hook with nothing to do, 100k", "≤ 3× python -c pass + git rev-parse"
    hook, start, git = (_get(rows, b, 100_000) for b in ("noop_hook", "noop_python_start", "noop_git_rev_parse"))
    if hook is None or start is None or git is None:
        return Target(name, limit, "not measured", None)
    bound = 3 * start["median_s"] + git["median_s"]
    ms = 1000 * hook["median_s"]
    return Target(name, limit, f"{ms:.0f} ms vs {1000 * bound:.0f} ms", hook["median_s"] <= bound)


def _incremental_ratio(rows: dict[str, Any]) -> Target:
    big, small = _get(rows, "incremental_sync", 100_000), _get(rows, "incremental_sync", 1_000)
    if big is None or small is None:
        return Target("incremental sync 100k vs 1k", "≤ 1.3×", "not measured", None)
    value = big["median_s"] / small["median_s"]
    return Target("incremental sync 100k vs 1k", "≤ 1.3×", f"{value:.2f}×", value <= 1.3)


def _verdict(ok: bool | None) -> str:
    return "—" if ok is None else "met" if ok else "**missed**"


def render(store: dict[str, Any]) -> str:
    """The generated Markdown: machine, medians per benchmark and size, targets, micro costs."""
    m = store.get("machine", {})
    server = f", PostgreSQL {m['postgresql']} on a local throwaway server (fsync off)" if m.get("postgresql") else ""
    lines = [
        START,
        "",
        f"Machine: {m.get('nproc', '?')} CPUs ({m.get('cpu', '?')}), {m.get('ram', '?')} RAM, "
        f"Python {m.get('python', '?')}, SQLite {m.get('sqlite', '?')}{server}, {m.get('git', '?')}, "
        f"{m.get('os', '?')}.",
        "",
        "### Medians (whole processes)",
        "",
        "| benchmark | stories | median | min | max | CPU (median) | runs | peak RSS | load | measured |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in sorted(store["rows"].values(), key=lambda r: (r["bench"], r["size"], _backend(r) != "sqlite")):
        name = row_label(r["bench"], _backend(r)) + (f" ({r['note']})" if r.get("note") else "")
        lines.append(
            f"| {name} | {size_label(r['size']) if r['size'] else '—'} | {_fmt(r['median_s'])} "
            f"| {_fmt(r['low_s'])} | {_fmt(r['high_s'])} | {_fmt(r.get('cpu_median_s', 0.0))} | {r['repeats']} "
            f"| {r['peak_rss_mb']:.0f} MB | {r.get('load', 0.0):.1f} | {r['run']} |"
        )
    lines += ["", "### Targets", "", "| target | limit | measured | verdict |", "| --- | --- | --- | --- |"]
    lines += [f"| {t.name} | {t.limit} | {t.measured} | {_verdict(t.ok)} |" for t in targets(store["rows"])]
    micro = store.get("micro") or {}
    if micro:
        lines += [
            "",
            f"### Per-file micro costs (in one process; {micro['run']})",
            "",
            "| cost | µs |",
            "| --- | ---: |",
        ]
        lines += [f"| {name} | {value:.1f} |" for name, value in micro["us"].items()]
    lines += ["", END]
    return "\n".join(lines)


def _backend(row: dict[str, Any]) -> str:
    """A stored row's backend (rows stored before there were backends are SQLite's)."""
    backend: str = row.get("backend", "sqlite")
    return backend


def _fmt(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


def print_table(store: dict[str, Any]) -> None:
    """The generated section, on stdout."""
    print(render(store).replace(START, "").replace(END, "").strip())


def write_doc(store: dict[str, Any], doc: Path = DOC) -> None:
    """Replace the generated section of the performance page (the prose around it stays)."""
    section = render(store)
    if doc.is_file():
        text = doc.read_text(encoding="utf-8")
        if START in text and END in text:
            head, rest = text.split(START, 1)
            tail = rest.split(END, 1)[1]
            doc.write_text(head + section + tail, encoding="utf-8")
            return
    else:
        text = "# Performance\n\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text.rstrip() + "\n\n## Results\n\n" + section + "\n", encoding="utf-8")
