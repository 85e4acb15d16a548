"""A tiny run of the benchmark suite: the generator's repositories are valid and
reproducible, and the runner measures real processes and writes its report.

The real runs (1k, 10k, 100k stories) are on demand: ``python -m benchmarks.run``
(``--backend postgresql`` for the server rows).
"""

from __future__ import annotations

import json
import re
import sqlite3
import sys
from pathlib import Path

import pytest

from benchmarks import floor, generate, report, run
from benchmarks.measure import run_once
from storysync.cli.main import main
from tests.pg import PgServer

SIZE = 50


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bench-cache")


def test_generator_is_seeded_and_realistic() -> None:
    files = generate.story_files(SIZE, seed=3)
    assert files == generate.story_files(SIZE, seed=3)
    assert files != generate.story_files(SIZE, seed=4)
    assert len(files) == SIZE
    stages = {path.split("/")[0] for path in files}
    backlogs = {path.split("/")[1] for path in files}
    assert stages == {"refinements", "backlog", "active", "completed"}
    assert len(backlogs) >= 3
    bodies = [text.split("\n---\n", 1)[1] for text in files.values()]
    assert all(1000 <= len(b.encode()) <= 3100 for b in bodies)
    assert sum("depends_on:" in text for text in files.values()) >= SIZE // 5


def test_generated_repository_is_committed_and_valid(cache: Path) -> None:
    repo = generate.cached_repo(SIZE, seed=3, cache=cache)
    assert generate.git(repo, "status", "--porcelain") == ""
    assert len(generate.git(repo, "ls-files", "*.md").split()) == SIZE + 1  # and a README.md
    assert main(["--repo", str(repo), "validate"]) == 0  # ids, dependencies (no cycles), layout
    again = generate.cached_repo(SIZE, seed=3, cache=cache)
    assert again == repo
    assert generate.git(repo, "rev-parse", "HEAD").strip() == (repo / ".git" / generate.COMPLETE_MARK).read_text()


def test_floor_loads_every_story(cache: Path, tmp_path: Path) -> None:
    repo = generate.cached_repo(SIZE, seed=3, cache=cache)
    assert floor.main([str(repo), str(tmp_path / "floor.db")]) == 0
    with sqlite3.connect(tmp_path / "floor.db") as conn:
        assert conn.execute("SELECT count(*) FROM stories").fetchone() == (SIZE,)
    conn.close()


def test_runner_measures_processes_and_writes_the_report(cache: Path, tmp_path: Path) -> None:
    results, doc = tmp_path / "results.json", tmp_path / "performance.md"
    doc.write_text("# Performance\n\nProse stays.\n\n" + report.START + "\nold\n" + report.END + "\n\nAfter.\n")
    only = "full_sync,status,list,incremental_sync,validate_staged,export,noop_hook,export_commit"
    args = ["--sizes", str(SIZE), "--repeat", "1", "--seed", "3", "--only", only]
    code = run.main([*args, "--cache", str(cache), "--results", str(results), "--doc", str(doc)])
    assert code == 0
    stored = json.loads(results.read_text())
    benches = {row["bench"] for row in stored["rows"].values()}
    assert {"floor", "full_sync", "status", "list", "list_filtered", "incremental_sync", "validate_staged"} <= benches
    assert {"noop_hook", "export_commit_100", "export_commit_1000"} <= benches
    for key, row in stored["rows"].items():
        assert key == f"{row['bench']}@{SIZE}"  # SQLite rows keep the keys they had before there were backends
        assert row["backend"] == "sqlite"
        assert row["size"] == SIZE
        assert 0 < row["median_s"] < 60
        assert row["peak_rss_mb"] > 1
    assert stored["machine"]["nproc"]
    text = doc.read_text()
    assert text.startswith("# Performance\n\nProse stays.")
    assert text.rstrip().endswith("After.")
    assert "old" not in text
    assert re.search(r"\| full_sync \| 50 \| \d+ ms \|", text)
    assert "Machine: " in text
    assert generate.git(generate.cached_repo(SIZE, seed=3, cache=cache), "status", "--porcelain") == ""


def test_a_measured_process_reports_its_own_peak_rss_not_the_runners(tmp_path: Path) -> None:
    ballast = bytearray(200 * 1024 * 1024)  # the runner grows (as it does holding a 100k repository)
    ballast[::4096] = b"\1" * len(ballast[::4096])

    small = run_once([sys.executable, "-c", "pass"], tmp_path)
    grow = "x = bytearray(120 * 1024 * 1024); x[::4096] = b'1' * len(x[::4096])"
    big = run_once([sys.executable, "-c", grow], tmp_path)

    assert small.peak_rss_kb < 60 * 1024, small
    assert big.peak_rss_kb > 120 * 1024, big
    assert len(ballast) == 200 * 1024 * 1024


def _databases(server: PgServer) -> set[str]:
    import psycopg

    with psycopg.connect(host="127.0.0.1", port=server.port, user="postgres", dbname="postgres") as conn:
        return {row[0] for row in conn.execute("SELECT datname FROM pg_database")}


@pytest.mark.postgres
def test_runner_measures_postgresql_rows_apart_from_sqlite(cache: Path, tmp_path: Path, pg_server: PgServer) -> None:
    results, doc = tmp_path / "results.json", tmp_path / "performance.md"
    doc.write_text("# Performance\n\n" + report.START + "\n" + report.END + "\n")
    earlier = {"bench": "incremental_sync", "size": SIZE, "median_s": 0.3, "low_s": 0.3, "high_s": 0.3, "repeats": 1}
    earlier |= {"peak_rss_mb": 45.0, "note": "", "run": "2026-01-01 00:00 UTC"}  # stored before rows had a backend
    results.write_text(json.dumps({"machine": {}, "rows": {f"incremental_sync@{SIZE}": earlier}, "micro": {}}))
    databases_before = _databases(pg_server)
    args = ["--sizes", str(SIZE), "--repeat", "1", "--seed", "3", "--backend", "postgresql"]
    args += ["--only", "full_sync,status,incremental_sync,export,export_commit"]  # status: a SQLite-only row
    code = run.main([*args, "--cache", str(cache), "--results", str(results), "--doc", str(doc)], server=pg_server)
    assert code == 0
    stored = json.loads(results.read_text())
    assert stored["rows"].pop(f"incremental_sync@{SIZE}") == earlier  # the SQLite row stays, under its key
    server_benches = {"full_sync", "incremental_sync", "export", "export_commit_100", "export_commit_1000"}
    assert set(stored["rows"]) == {f"{bench} [postgresql]@{SIZE}" for bench in server_benches}
    for row in stored["rows"].values():
        assert row["backend"] == "postgresql"
        assert row["bench"] in server_benches
        assert row["size"] == SIZE
        assert row["repeats"] == 1
        assert 0 < row["low_s"] <= row["median_s"] <= row["high_s"] < 60
        assert 0 < row["cpu_median_s"] < 60
        assert row["peak_rss_mb"] > 1
    assert stored["machine"]["postgresql"] == pg_server.version()
    assert _databases(pg_server) == databases_before  # each size's databases dropped after it
    text = doc.read_text()
    assert re.search(r"\| full_sync \[postgresql\] \| 50 \| \d+ ms \|", text)
    assert "| incremental_sync | 50 | 300 ms |" in text
    assert f"PostgreSQL {pg_server.version()} on a local throwaway server" in text
    assert generate.git(generate.cached_repo(SIZE, seed=3, cache=cache), "status", "--porcelain") == ""


def test_targets_compare_the_postgresql_row_with_the_sqlite_row() -> None:
    def row(bench: str, seconds: float, backend: str | None = None) -> dict[str, object]:
        stored: dict[str, object] = {"bench": bench, "size": 100_000, "median_s": seconds, "cpu_median_s": seconds}
        return stored | ({"backend": backend} if backend else {})

    rows = {
        "incremental_sync@100k": row("incremental_sync", 0.4),  # stored before rows had a backend
        "incremental_sync [postgresql]@100k": row("incremental_sync", 0.5, "postgresql"),
    }
    found = {t.name: t for t in report.targets(rows)}
    assert found["incremental sync, 10 files, 100k"].measured == "400 ms"  # the SQLite row, not the server's
    server = found["incremental sync 100k, PostgreSQL vs SQLite"]
    assert (server.measured, server.ok) == ("1.25× (0.50 s vs 0.40 s); CPU time 1.25×", True)


def test_a_measured_command_gets_a_long_argument_list_whole(tmp_path: Path) -> None:
    """markdown-to-sqlite is given every story path (600 KB at 10k): more than one
    argument may hold (128 KB), so the launcher passes them on one by one."""
    paths = [f"backlog/backlog-{i % 50}/STORY-{i}-a-slug-of-some-length.md" for i in range(5000)]
    listing = tmp_path / "paths.json"
    listing.write_text(json.dumps(paths), encoding="utf-8")
    check = f"import json, sys; sys.exit(0 if sys.argv[1:] == json.load(open({str(listing)!r})) else 1)"
    assert sum(map(len, paths)) > 128 * 1024
    assert run_once([sys.executable, "-c", check, *paths], tmp_path).returncode == 0
