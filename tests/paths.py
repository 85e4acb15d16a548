"""The ways storysync meets a repository's story files, each run the way a user runs it,
each answering what it said (``Seen``): its verdict, the ``path:line:col: message``
lines it reported, and anything it did that it must not (rows written by a run that
reported errors, an audit row that disagrees with the output).

``tests/test_path_agreement.py`` runs every case of the bad-input corpus through all
of them and asserts that they agree.
"""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import sqlite3
import subprocess
import sys
from collections.abc import Iterable
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml

from storysync.cli.main import main
from storysync.errors import Diagnostic
from tests.conftest import Repo

ROOT = Path(__file__).resolve().parent.parent
WHERE = re.compile(r"^(.*):(\d+):(\d+): ")
DATA_TABLES = ("backlogs", "stories", "dependencies", "status_history", "sync_state", "conflicts", "changes")
HOOK_EXIT = re.compile(r"^- exit code: (\d+)$", re.MULTILINE)


@dataclass(frozen=True)
class Seen:
    """What one path said about a repository."""

    code: int  # the exit code (watch: 0 ok, 1 invalid, 3 failed; the framework: its hook's)
    lines: tuple[str, ...]  # the diagnostics reported, sorted
    problems: tuple[str, ...] = ()  # what went wrong besides the verdict (writes, audit)
    live: tuple[str, ...] | None = None  # sync paths: ``id path`` of every live story after the run
    output: str = ""  # everything printed, for a failure's message

    def __str__(self) -> str:
        return f"exit {self.code}\n{self.output}"


def diagnostic_lines(text: str) -> tuple[str, ...]:
    """The ``path:line:col: message`` lines of some output, sorted."""
    return tuple(sorted(line for line in text.splitlines() if WHERE.match(line)))


def cli(repo: Repo, *args: str) -> tuple[int, str, str]:
    """Run the CLI in-process in ``repo``: the exit code, stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["--repo", str(repo.path), *args])
    return code, out.getvalue(), err.getvalue()


# --- validate -----------------------------------------------------------------------------


def validate(repo: Repo, *args: str) -> Seen:
    """``storysync validate [args]``: every line on stdout must be a diagnostic."""
    code, out, err = cli(repo, "validate", *args)
    junk = tuple(f"not a diagnostic line on stdout: {line!r}" for line in out.splitlines() if not WHERE.match(line))
    return Seen(code, diagnostic_lines(out), junk, output=out + err)


# --- the pre-commit framework -------------------------------------------------------------


def framework_config() -> str:
    """A ``repo: local`` ``.pre-commit-config.yaml`` with this checkout's manifest hooks, run
    by this interpreter (``language: system``: no network, no environment to build)."""
    manifest = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text(encoding="utf-8"))
    hooks = []
    for hook in manifest:
        entry = hook["entry"]
        assert entry.startswith("storysync "), entry
        hooks.append({**hook, "language": "system", "entry": f"{shlex.quote(sys.executable)} -m {entry}"})
    return yaml.safe_dump({"repos": [{"repo": "local", "hooks": hooks}]}, sort_keys=False)


def framework_hook(template: Repo, env: dict[str, str]) -> bytes:
    """The pre-commit hook script ``pre-commit install`` writes (copied into each case's repository)."""
    done = subprocess.run(
        [sys.executable, "-m", "pre_commit", "install", "--hook-type", "pre-commit"],
        cwd=template.path,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **env},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return (template.path / ".git" / "hooks" / "pre-commit").read_bytes()


def install_framework_hook(repo: Repo, hook: bytes) -> None:
    target = repo.path / ".git" / "hooks" / "pre-commit"
    target.write_bytes(hook)
    target.chmod(0o755)


def framework_commit(repo: Repo, env: dict[str, str]) -> Seen:
    """``git commit`` of the staged change through the pre-commit framework's hook.

    The verdict is the hook's exit code as the framework reports it (0 when the
    commit went through); the lines are the diagnostics in its output.
    """
    head = repo.git("rev-parse", "HEAD")
    done = subprocess.run(
        ["git", "commit", "-q", "-m", "change"],
        cwd=repo.path,
        capture_output=True,
        check=False,
        env={**os.environ, **env},
    )
    output = (done.stdout + done.stderr).decode("utf-8", "replace")
    if repo.git("rev-parse", "HEAD") != head:
        return Seen(0, diagnostic_lines(output), output=output)
    hook_exit = HOOK_EXIT.search(output)
    code = int(hook_exit.group(1)) if hook_exit else 1000 + done.returncode  # no hook verdict: something else broke
    return Seen(code, diagnostic_lines(output), output=output)


# --- sync ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DbState:
    """A database as a run leaves it: the data tables, the audit trail, the live stories."""

    data: dict[str, list[str]]  # every row of every data table (not ``sync_runs``)
    runs: list[tuple[str, list[str]]]  # each ``sync_runs`` row's outcome and errors as report lines
    live: tuple[str, ...]  # ``id path`` of each live story

    @classmethod
    def of(cls, url: str) -> DbState:
        """Read in one connection; a SQLite database no run has created yet is empty (and stays absent)."""
        if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
            return cls({t: [] for t in DATA_TABLES}, [], ())
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        try:
            with engine.connect() as conn:
                if not sa.inspect(conn).has_table("sync_runs"):
                    return cls({t: [] for t in DATA_TABLES}, [], ())
                data = {
                    t: sorted(repr(tuple(r)) for r in conn.execute(sa.text(f"SELECT * FROM {t}")))  # noqa: S608
                    for t in DATA_TABLES
                }
                runs = conn.execute(sa.text("SELECT outcome, errors FROM sync_runs ORDER BY id")).all()
                live = conn.execute(sa.text("SELECT id, path FROM stories WHERE deleted_at IS NULL")).all()
        finally:
            engine.dispose()
        return cls(
            data,
            [(outcome, sorted(_error_lines(errors))) for outcome, errors in runs],
            tuple(sorted(f"{sid} {path}" for sid, path in live)),
        )

    def problems(self, after: DbState, code: int, lines: tuple[str, ...], keep_going: bool = False) -> tuple[str, ...]:
        """What a run from this state to ``after`` did wrong: one audit row, which holds the
        errors reported; a run that reported errors wrote nothing else (a keep-going run, as
        watch's: it left the rows of the files it reported as they were)."""
        found: list[str] = []
        if after.runs[: len(self.runs)] != self.runs or len(after.runs) != len(self.runs) + 1:
            found.append(f"expected one new sync_runs row, the runs are now {after.runs}")
        elif code == 1:
            outcome, errors = after.runs[-1]
            if outcome != "invalid":
                found.append(f"sync_runs outcome {outcome!r}, not 'invalid'")
            if tuple(errors) != lines:
                found.append(f"sync_runs errors {errors} differ from the report")
        if code == 1 and keep_going:
            reported = {line.split(":", 1)[0] for line in lines}
            kept = [r for r in self.live if r.split(" ", 1)[1] in reported]
            now = [r for r in after.live if r.split(" ", 1)[1] in reported]
            if kept != now:
                found.append(f"the rows of the reported files changed: {kept} -> {now}")
        elif code == 1:
            changed = {t: after.data[t] for t in DATA_TABLES if after.data[t] != self.data[t]}
            if changed:
                found.append(f"rows written by a run that reported errors: {changed}")
        return tuple(found)


def _error_lines(errors: Any) -> Iterable[str]:
    recorded = json.loads(errors) if isinstance(errors, str) else errors
    return (str(Diagnostic(**e)) for e in recorded)


def sync_full(repo: Repo, url: str) -> Seen:
    """``storysync sync --full`` of HEAD."""
    return _sync(repo, url, "--full")


def sync_incremental(repo: Repo, url: str) -> Seen:
    """``storysync sync`` into a database synced at an ancestor of HEAD (last synced..HEAD)."""
    return _sync(repo, url)


def _sync(repo: Repo, url: str, *args: str) -> Seen:
    before = DbState.of(url)
    code, out, err = cli(repo, "--db", url, "sync", *args)
    lines = diagnostic_lines(out)
    after = DbState.of(url)
    return Seen(code, lines, before.problems(after, code, lines), after.live, out + err)


def copy_sqlite(source: Path, target: Path) -> None:
    """A copy of a SQLite database, made by SQLite (whatever its journal holds)."""
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    src.close()
    dst.close()


# --- watch --------------------------------------------------------------------------------


def watch_batch(repo: Repo, url: str, changed: Iterable[str]) -> Seen:
    """One watch batch naming the ``changed`` paths, into a database synced before the change.

    This is what ``storysync watch`` does with the debounced events of the saves
    (``watchsync.LiveSync.apply``: a keep-going sync of the working tree's files at
    those paths); the lines are what it prints (the batch's new problems).
    """
    from storysync.config import load_config
    from storysync.db.database import Database
    from storysync.git.repo import open_repo
    from storysync.watch.events import StoryFilter
    from storysync.watch.live import LiveSync

    before = DbState.of(url)
    config = load_config(repo.path, db_flag=url)
    db = Database(config.database)
    try:
        live = LiveSync(config, db, open_repo(repo.path), StoryFilter(config))
        outcome = live.apply(batch_of_events(config.repo, StoryFilter(config), changed))
    finally:
        db.dispose()
    after = DbState.of(url)
    if outcome is None:
        return Seen(0, (), output="the batch had no story path", live=after.live)
    code = {"ok": 0, "invalid": 1, "failed": 3}[outcome.label]
    lines = tuple(sorted(map(str, outcome.problems)))
    problems = list(before.problems(after, code, lines, keep_going=True)) if outcome.error is None else []
    if outcome.result is not None and sorted(map(str, outcome.result.diagnostics)) != list(lines):
        problems.append(f"the batch found {outcome.result.diagnostics} but printed {lines}")
    return Seen(code, lines, tuple(problems), after.live, outcome.error or "\n".join(lines))


def batch_of_events(top: Path, keep: Any, changed: Iterable[str]) -> Any:
    """The batch watch makes of the file-system events the change raises: each changed path
    as watchdog reports it (a symlink or a new file created, a file modified, a path gone
    deleted), through watch's own event handler and debouncer."""
    import queue

    from watchdog.events import FileCreatedEvent, FileDeletedEvent, FileModifiedEvent

    from storysync.watch.events import Debouncer, _Handler

    sink: queue.SimpleQueue[Any] = queue.SimpleQueue()
    handler = _Handler(top, sink, keep)
    for rel in changed:
        path = str(top / rel)
        if os.path.islink(path):
            handler.dispatch(FileCreatedEvent(path))
        elif os.path.lexists(path):
            handler.dispatch(FileModifiedEvent(path))
        else:
            handler.dispatch(FileDeletedEvent(path))
    debouncer = Debouncer(0.0, 0.0)
    while not sink.empty():
        debouncer.add(sink.get(), 0.0)
    return debouncer.take(1.0, lambda rel: os.path.lexists(top / rel))
