"""The pre-commit hook's path stays cheap: cached compiled schema, lazy heavy imports.

These check the mechanisms that make ``validate --staged`` fast (the timing
itself is measured by ``python -m benchmarks.run``): the compiled validator is
cached and reused, a broken or unwritable cache falls back cleanly with the same
results, and a process that validates a good staged file never imports
SQLAlchemy, GitPython, rich or jsonschema.
"""

from __future__ import annotations

import hashlib
import json
import marshal
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from storysync.check.schema import SchemaChecker, cache_dir, default_schema_path
from storysync.story.model import Location, Story
from storysync.story.parse import parse_story
from tests.conftest import Repo, story_text

LOC = Location("backlog/web/WEB-1-x.md", "backlog", "backlog", "web", "WEB-1-x.md")
HEAVY = ("sqlalchemy", "git", "rich", "jsonschema")
NOT_FOR_A_VALID_FILE = (*HEAVY, "fastjsonschema", "decimal")  # the cached validator needs none


def _story(text: str) -> Story:
    parsed = parse_story(LOC, text.encode())
    assert isinstance(parsed, Story)
    return parsed


def _schema() -> dict[str, object]:
    loaded: dict[str, object] = json.loads(default_schema_path().read_text(encoding="utf-8"))
    return loaded


def _reports(checker: SchemaChecker) -> tuple[list[str], list[str]]:
    good = _story(story_text("WEB-1", points=3))
    bad = _story(story_text("WEB-1", points=-2, priority="urgent"))
    return [str(d) for d in checker.check(good)], [str(d) for d in checker.check(bad)]


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "cache"
    monkeypatch.setenv("STORYSYNC_CACHE_DIR", str(path))
    return path


def test_compiled_validator_is_written_once_and_reused(cache: Path) -> None:
    assert cache_dir() == cache
    first = _reports(SchemaChecker(_schema(), "schema.json"))
    files = list(cache.glob("validator-*.bin"))
    assert len(files) == 1
    stamp = files[0].stat().st_mtime_ns
    second = _reports(SchemaChecker(_schema(), "schema.json"))
    assert second == first
    assert first[0] == []
    assert len(first[1]) == 2  # both errors, from the full jsonschema report
    assert files[0].stat().st_mtime_ns == stamp  # reused, not rewritten


def test_a_different_schema_gets_its_own_cache_entry(cache: Path) -> None:
    SchemaChecker(_schema(), "a.json")
    strict = {**_schema(), "additionalProperties": False}
    SchemaChecker(strict, "b.json")
    assert len(list(cache.glob("validator-*.bin"))) == 2


def test_broken_cache_file_falls_back_to_compiling(cache: Path) -> None:
    expected = _reports(SchemaChecker(_schema(), "schema.json"))
    (entry,) = cache.glob("validator-*.bin")
    for broken in (b"def this is not marshal(", marshal.dumps(("validate", "not code")), marshal.dumps(42), b""):
        entry.write_bytes(broken)
        assert _reports(SchemaChecker(_schema(), "schema.json")) == expected
        assert entry.read_bytes() != broken  # compiled afresh


def test_a_damaged_cache_file_never_reaches_marshal(cache: Path, tmp_path: Path) -> None:
    """A torn write, a flipped byte, or other code behind the stored digest: compiled afresh,
    never unmarshalled or run."""
    expected = _reports(SchemaChecker(_schema(), "schema.json"))
    (entry,) = cache.glob("validator-*.bin")
    good = entry.read_bytes()
    marker = tmp_path / "ran"
    planted = (
        f"open({str(marker)!r}, 'w').close()\n"
        "def validate(data, custom_formats={}, name_prefix=None):\n    return data\n"
    )
    swapped = good[:32] + marshal.dumps(("validate", compile(planted, "planted", "exec")))
    for damaged in (good[:-7], good[:40] + bytes([good[40] ^ 0xFF]) + good[41:], good[32:], swapped):
        entry.write_bytes(damaged)
        entry.chmod(0o600)
        assert _reports(SchemaChecker(_schema(), "schema.json")) == expected
        assert entry.read_bytes() == good  # rewritten whole
    assert not marker.exists()


def test_a_cache_file_others_can_write_is_never_run(cache: Path, tmp_path: Path) -> None:
    expected = _reports(SchemaChecker(_schema(), "schema.json"))
    (entry,) = cache.glob("validator-*.bin")
    marker = tmp_path / "ran"
    planted = (
        f"open({str(marker)!r}, 'w').close()\n"
        "def validate(data, custom_formats={}, name_prefix=None):\n    return data\n"
    )
    payload = marshal.dumps(("validate", compile(planted, "planted", "exec")))
    entry.write_bytes(hashlib.sha256(payload).digest() + payload)  # intact: only its mode gives it away
    entry.chmod(0o666)
    assert _reports(SchemaChecker(_schema(), "schema.json")) == expected
    assert not marker.exists()


def test_the_cached_validator_judges_as_fastjsonschema_does(cache: Path) -> None:
    """Loaded from the cache without fastjsonschema's imports, it accepts and rejects the same frontmatter."""
    import fastjsonschema

    from storysync.check.schema import _cached_fast, _draft7

    SchemaChecker(_schema(), "schema.json")  # writes the cache
    draft7 = _draft7(_schema())
    assert draft7 is not None
    cached = _cached_fast(draft7)
    assert cached is not None
    reference = fastjsonschema.compile(draft7)
    samples: list[object] = [
        {"id": "WEB-1", "title": "T"},
        {"id": "WEB-1", "title": "T", "points": 3, "priority": None, "tags": ["a"], "depends_on": ["API-2"]},
        {"id": "WEB-1", "title": "T", "created": "2026-11-25", "updated": "2026-11-25T10:30:00Z", "x": [1]},
        {"id": "web-1", "title": "T"},
        {"id": "WEB-1"},
        {"id": "WEB-1", "title": ""},
        {"id": "WEB-1", "title": "T", "points": -1},
        {"id": "WEB-1", "title": "T", "points": 1.5},
        {"id": "WEB-1", "title": "T", "points": True},
        {"id": "WEB-1", "title": "T", "priority": "urgent"},
        {"id": "WEB-1", "title": "T", "depends_on": ["api-2"]},
        {"id": "WEB-1", "title": "T", "created": "25.11.2026"},
        ["not", "a", "mapping"],
    ]
    for data in samples:
        expected = _verdict(reference, data)
        assert _verdict(cached, data) == expected, data


def _verdict(validate: Callable[[object], object], data: object) -> bool:
    try:
        validate(data)
    except Exception:
        return False
    return True


def test_unwritable_cache_location_still_validates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("STORYSYNC_CACHE_DIR", str(blocker / "cache"))
    good, bad = _reports(SchemaChecker(_schema(), "schema.json"))
    assert good == []
    assert len(bad) == 2


_PROBE = """
import sys
from storysync.cli.main import main
code = main(["--repo", sys.argv[1], "validate", "--staged"])
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(sys.argv[2].split(",")))
print(code, ",".join(heavy))
"""


def _hook(repo: Repo, watched: tuple[str, ...] = HEAVY) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, str(repo.path), ",".join(watched)],
        capture_output=True,
        text=True,
        check=True,
    )
    code, _, heavy = done.stdout.strip().splitlines()[-1].partition(" ")
    return int(code), heavy


def test_hook_on_a_valid_staged_file_imports_nothing_heavy(backlog_repo: Repo, cache: Path) -> None:
    backlog_repo.story("backlog", "web", "WEB-3", "new", title="New", depends_on=["WEB-2"])
    backlog_repo.git("add", "-A")
    _hook(backlog_repo)  # the first run compiles the schema into the cache
    assert _hook(backlog_repo, NOT_FOR_A_VALID_FILE) == (0, "")


def test_hook_on_an_invalid_staged_file_still_gives_the_full_report(backlog_repo: Repo, cache: Path) -> None:
    backlog_repo.story("backlog", "web", "WEB-3", "new", title="New", points=-1)
    backlog_repo.git("add", "-A")
    _hook(backlog_repo)
    code, heavy = _hook(backlog_repo)
    assert code == 1
    assert heavy == "jsonschema"  # loaded only because a file failed


def test_many_staged_files_are_read_in_one_batch_with_the_same_report(backlog_repo: Repo, cache: Path) -> None:
    for i in range(3, 30):
        backlog_repo.story("backlog", "web", f"WEB-{i}", "s", title=f"Story {i}", depends_on=["WEB-2"])
    backlog_repo.story("backlog", "web", "WEB-40", "bad", title="Bad", points="many")
    os.symlink("WEB-3-s.md", backlog_repo.path / "backlog" / "web" / "WEB-41-link.md")
    backlog_repo.git("add", "-A")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "storysync",
            "--repo",
            str(backlog_repo.path),
            "validate",
            "--staged",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    report = json.loads(done.stdout)
    assert report["files"] == 29
    assert sorted((d["path"], d["code"]) for d in report["errors"]) == [
        ("backlog/web/WEB-40-bad.md", "schema"),
        ("backlog/web/WEB-41-link.md", "symlink"),
    ]


def _staged_report(repo: Repo, capsys: pytest.CaptureFixture[str], *paths: str) -> tuple[int, list[str]]:
    code = repo.run("validate", "--staged", *paths)
    return code, sorted(capsys.readouterr().out.splitlines())


def test_a_few_staged_paths_are_looked_up_alone_with_the_same_report_as_the_full_index(
    backlog_repo: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    """Up to 64 paths come from one restricted ``ls-files -s``; more from the whole index."""
    paths = [
        backlog_repo.story("backlog", "web", f"WEB-{i}", "s", title=f"S{i}", depends_on=["API-1", "NOPE-1"])
        for i in range(3, 70)
    ]
    paths.append(backlog_repo.story("backlog", "api", "web-2", "again", title="Same id as WEB-2, other case"))
    backlog_repo.git("add", "-A")
    code_all, all_lines = _staged_report(backlog_repo, capsys, *paths)  # 68 paths: the whole index
    code_few, few_lines = _staged_report(backlog_repo, capsys, paths[0], paths[-1])  # 2 paths: looked up
    assert code_all == code_few == 1
    expected = [line for line in all_lines if line.startswith((paths[0] + ":", paths[-1] + ":"))]
    assert few_lines == expected
    assert any("NOPE-1" in line for line in few_lines)
    assert any("WEB-2" in line for line in few_lines)  # the duplicate of a story outside the checked set


def test_a_staged_story_with_a_merge_conflict_is_refused(
    backlog_repo: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    path = "active/web/WEB-2-signup.md"
    backlog_repo.git("checkout", "-q", "-b", "other")
    backlog_repo.story("active", "web", "WEB-2", "signup", title="Theirs", points=5)
    backlog_repo.commit("theirs")
    backlog_repo.git("checkout", "-q", "main")
    backlog_repo.story("active", "web", "WEB-2", "signup", title="Ours", points=8)
    backlog_repo.commit("ours")
    backlog_repo.git("merge", "other", check=False)  # stops with a conflict
    assert "UU" in backlog_repo.git("status", "--porcelain")
    code, lines = _staged_report(backlog_repo, capsys, path)
    assert code == 1
    assert any(line.startswith(f"{path}:1:1:") and "unresolved merge conflict" in line for line in lines)


_COMMAND_PROBE = """
import sys
from storysync.cli.main import main
code = main(["--repo", sys.argv[1], *sys.argv[3:]])
loaded = sorted(m for m in sys.argv[2].split(",") if m in sys.modules)
print(code, ",".join(loaded))
"""


def _modules_after(repo: Repo, watched: tuple[str, ...], *args: str) -> tuple[int, str]:
    """Run a command in a fresh process with stderr piped (as a git hook does); which of ``watched`` it imported."""
    done = subprocess.run(
        [sys.executable, "-c", _COMMAND_PROBE, str(repo.path), ",".join(watched), *args],
        capture_output=True,
        text=True,
        check=True,
    )
    code, _, loaded = done.stdout.strip().splitlines()[-1].partition(" ")
    return int(code), loaded


def test_sync_and_status_on_sqlite_skip_what_they_do_not_use(backlog_repo: Repo) -> None:
    """A piped sync (the post-merge hook) draws no bar, so imports no rich; status reads HEAD
    without GitPython; neither loads SQLAlchemy's PostgreSQL dialect for a SQLite database."""
    pg = "sqlalchemy.dialects.postgresql"
    assert backlog_repo.run("sync") == 0  # creates and migrates the database
    backlog_repo.story("backlog", "web", "WEB-3", "new", title="New", depends_on=["WEB-2"])
    backlog_repo.commit("one more")
    assert _modules_after(backlog_repo, ("rich", pg), "sync") == (0, "")
    assert _modules_after(backlog_repo, ("git", pg), "status", "--format", "json") == (0, "")


# --- the post-merge/post-checkout/post-rewrite hook with nothing to do ----------------------


def test_a_sync_hook_with_nothing_to_do_imports_no_sqlalchemy(backlog_repo: Repo) -> None:
    """After a checkout or merge that left HEAD where the database already is, the hook
    answers from one ``git rev-parse`` and a stdlib sqlite3 read, before any heavy import."""
    assert backlog_repo.run("sync") == 0
    watched = ("sqlalchemy", "git", "click", "yaml")
    assert _modules_after(backlog_repo, watched, "run-hook", "post-merge", "0") == (0, "")
    assert _modules_after(backlog_repo, watched, "run-hook", "post-checkout", "a", "b", "1") == (0, "")
    backlog_repo.story("backlog", "web", "WEB-3", "new", title="New", depends_on=["WEB-2"])
    backlog_repo.commit("one more")
    code, loaded = _modules_after(backlog_repo, ("sqlalchemy",), "run-hook", "post-merge", "0")
    assert (code, loaded) == (0, "sqlalchemy")  # behind HEAD: the ordinary path syncs


def _db_state(repo: Repo) -> tuple[object, ...]:
    """What a hook's run may change: sync_state, the audit rows, the stories."""
    import sqlite3

    with sqlite3.connect(repo.db_path) as conn:
        state = sorted(conn.execute("SELECT key, value FROM sync_state"))
        runs = conn.execute("SELECT count(*), max(to_commit) FROM sync_runs").fetchall()
        stories = sorted(conn.execute("SELECT id, path, title, revision, deleted_at IS NULL FROM stories"))
    conn.close()
    return state, runs, stories


def _both_ways(
    repo: Repo, capsys: pytest.CaptureFixture[str], *hook: str
) -> tuple[bool, tuple[int, str, str, tuple[object, ...]], tuple[int, str, str, tuple[object, ...]]]:
    """The hook run through the quick answer (``main``) and through the ordinary path alone
    (``run_post_hook``), each from the same database file; what each printed and left."""
    from storysync.cli.app import App
    from storysync.cli.fast import nothing_to_do
    from storysync.cli.hooks import run_post_hook

    saved = repo.db_path.read_bytes()
    assert not Path(f"{repo.db_path}-wal").exists() or Path(f"{repo.db_path}-wal").stat().st_size == 0
    capsys.readouterr()
    quick = nothing_to_do(["--repo", str(repo.path), "run-hook", *hook])
    code = repo.run("run-hook", *hook)
    out, err = capsys.readouterr()
    fast = (code, out, err, _db_state(repo))
    repo.db_path.write_bytes(saved)
    app = App(repo_arg=repo.path)
    try:
        code = run_post_hook(app, hook[0], hook[1:])
    finally:
        app.close()
    out, err = capsys.readouterr()
    return quick, fast, (code, out, err, _db_state(repo))


def test_the_quick_answer_of_a_sync_hook_equals_the_ordinary_path(
    backlog_repo: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    """Same exit code, output and database, whether the hook's quick answer or the ordinary
    path decides: in step (nothing written, not even an audit row), behind HEAD, a file
    checkout, and rows recorded from the working tree."""
    repo = backlog_repo
    assert repo.run("sync") == 0
    quick, fast, ordinary = _both_ways(repo, capsys, "post-merge", "0")
    assert quick
    assert fast == ordinary
    assert fast[:3] == (0, "", "")

    quick, fast, ordinary = _both_ways(repo, capsys, "post-checkout", "a", "b", "0")
    assert quick
    assert fast == ordinary

    repo.story("backlog", "web", "WEB-3", "new", title="New", depends_on=["WEB-2"])
    repo.commit("one more")
    quick, fast, ordinary = _both_ways(repo, capsys, "post-merge", "0")
    assert not quick
    assert fast == ordinary
    assert "1 created" in fast[2]

    repo.story("backlog", "web", "WEB-3", "new", title="Edited, not committed", depends_on=["WEB-2"])
    assert repo.run("sync", "--working-tree") == 0
    quick, fast, ordinary = _both_ways(repo, capsys, "post-checkout", "a", "b", "1")
    assert not quick
    assert fast == ordinary
    assert tuple(t for i, _, t, _, _ in fast[3][2] if i == "WEB-3") == ("New",)  # read again from HEAD
