"""Helpers for the fault tests: a seeded story generator, database fingerprints,
killing real processes, and small file systems made by the test.

Everything here acts on real things: files on disk, git repositories, SQLite
files read with the standard library, processes that are really killed, and
tmpfs mounts that really fill up.  Nothing is mocked.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

STAGES = ("refinements", "backlog", "active", "completed")
BACKLOGS = ("web", "api", "ops", "data")
PRIORITIES = ("low", "medium", "high", "critical")
WORDS = tuple(
    [
        "login",
        "page",
        "cart",
        "search",
        "checkout",
        "report",
        "export",
        "invoice",
        "audit",
        "token",
        "cache",
        "queue",
        "retry",
        "webhook",
        "dashboard",
        "billing",
        "profile",
        "avatar",
        "upload",
        "import",
        "filter",
        "sort",
        "ünïcode",
    ]
)


# --------------------------------------------------------------------------- stories


def _prefix(backlog: str) -> str:
    return backlog.upper()


def story_file(story_id: str, rng: random.Random, *, version: int = 0, deps: list[str] | None = None) -> str:
    """The text of one generated story; ``version`` changes its title and body."""
    title = " ".join(rng.choice(WORDS) for _ in range(3)).capitalize()
    lines = [
        "---",
        f"id: {story_id}",
        f"title: {title} v{version}",
        f"priority: {rng.choice(PRIORITIES)}",
        f"points: {rng.randint(0, 13)}",
        f"tags: [{rng.choice(WORDS)}, {rng.choice(WORDS)}]",
    ]
    if deps:
        lines.append(f"depends_on: [{', '.join(deps)}]")
    lines.append("created: 2026-01-0" + str(rng.randint(1, 9)))
    lines.append("---")
    body = "\n".join(" ".join(rng.choice(WORDS) for _ in range(12)) for _ in range(rng.randint(1, 6)))
    return "\n".join(lines) + f"\n# {title}\n\n{body}\nrevision {version}\n"


@dataclass
class StorySet:
    """Generated stories: id → repository-relative path."""

    root: Path
    paths: dict[str, str]


def generate(root: Path, count: int, seed: int) -> StorySet:
    """Write ``count`` valid stories under ``root`` (spread over stages and backlogs).

    The same seed always gives the same files.  About a fifth depend on an
    earlier story, so dependencies are written too (never a cycle).
    """
    rng = random.Random(seed)
    paths: dict[str, str] = {}
    ids: list[str] = []
    for i in range(1, count + 1):
        backlog = BACKLOGS[i % len(BACKLOGS)]
        story_id = f"{_prefix(backlog)}-{i}"
        deps = [rng.choice(ids)] if ids and rng.random() < 0.2 else []
        rel = f"{rng.choice(STAGES)}/{backlog}/{story_id}-story.md"
        _write(root / rel, story_file(story_id, rng, deps=deps))
        paths[story_id] = rel
        ids.append(story_id)
    return StorySet(root, paths)


def mutate(stories: StorySet, seed: int, fraction: float = 0.3) -> StorySet:
    """Change a ``fraction`` of the stories: edit, move to another stage, delete, add.

    Returns the new set; the files on disk are changed to match it.
    """
    rng = random.Random(seed)
    paths = dict(stories.paths)
    chosen = rng.sample(sorted(paths), int(len(paths) * fraction))
    depended = _depended_on(stories.root, paths)
    for n, story_id in enumerate(chosen):
        old = paths[story_id]
        kind = n % 4
        if kind == 3 and story_id not in depended:
            (stories.root / old).unlink()
            del paths[story_id]
            continue
        text = story_file(story_id, rng, version=1)
        if kind == 1:  # move to another stage (a status change)
            stage, backlog, name = old.split("/")
            new = f"{rng.choice([s for s in STAGES if s != stage])}/{backlog}/{name}"
            (stories.root / old).unlink()
            paths[story_id] = new
            old = new
        _write(stories.root / old, text)
    start = max(int(i.split("-")[1]) for i in paths) + 1 if paths else 1
    for i in range(start, start + max(1, len(chosen) // 4)):
        backlog = BACKLOGS[i % len(BACKLOGS)]
        story_id = f"{_prefix(backlog)}-{i}"
        rel = f"{rng.choice(STAGES)}/{backlog}/{story_id}-new.md"
        _write(stories.root / rel, story_file(story_id, rng, version=1))
        paths[story_id] = rel
    return StorySet(stories.root, paths)


def _depended_on(root: Path, paths: dict[str, str]) -> set[str]:
    out: set[str] = set()
    for rel in paths.values():
        for line in (root / rel).read_text(encoding="utf-8").splitlines():
            if line.startswith("depends_on: ["):
                out.update(x.strip() for x in line[len("depends_on: [") : -1].split(","))
    return out


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def expected_rows(stories: StorySet) -> dict[str, tuple[str, str]]:
    """id → (path, sha256 of the file bytes): what a sync of these files must leave."""
    return {
        story_id: (rel, hashlib.sha256((stories.root / rel).read_bytes()).hexdigest())
        for story_id, rel in stories.paths.items()
    }


# --------------------------------------------------------------------------- databases


@dataclass(frozen=True)
class DbState:
    """A fingerprint of a storysync SQLite database, equal for equal contents."""

    live: int
    deleted: int
    digest: str  # over every (id, path, content_hash, deleted?) row, sorted
    last_synced: str | None
    changes: int
    history: int
    dependencies: int
    runs: int

    @property
    def rows(self) -> int:
        return self.live + self.deleted


def connect(db_path: Path) -> sqlite3.Connection:
    """A plain sqlite3 connection (no storysync code involved)."""
    return sqlite3.connect(f"file:{db_path}", uri=True, timeout=30)


def db_state(db_path: Path) -> DbState | None:
    """The database's fingerprint; None if it has no storysync tables yet."""
    if not db_path.exists():
        return None
    conn = connect(db_path)
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "stories" not in tables:
            return None
        rows = sorted(
            conn.execute("SELECT id, path, content_hash, deleted_at IS NOT NULL FROM stories").fetchall(),
            key=lambda r: r[0],
        )
        last = conn.execute("SELECT value FROM sync_state WHERE key = 'last_synced_commit'").fetchone()
        return DbState(
            live=sum(1 for r in rows if not r[3]),
            deleted=sum(1 for r in rows if r[3]),
            digest=hashlib.sha256(repr(rows).encode()).hexdigest(),
            last_synced=last[0] if last else None,
            changes=_count(conn, "changes"),
            history=_count(conn, "status_history"),
            dependencies=_count(conn, "dependencies"),
            runs=_count(conn, "sync_runs"),
        )
    finally:
        conn.close()


def live_rows(db_path: Path) -> dict[str, tuple[str, str]]:
    """id → (path, content_hash) of every live story row."""
    conn = connect(db_path)
    try:
        query = "SELECT id, path, content_hash FROM stories WHERE deleted_at IS NULL"
        return {r[0]: (r[1], r[2]) for r in conn.execute(query)}
    finally:
        conn.close()


def _count(conn: sqlite3.Connection, table: str) -> int:
    value = conn.execute(f"SELECT count(*) FROM {table}").fetchone()  # noqa: S608 - fixed table names
    return int(value[0])


def integrity(db_path: Path) -> str:
    """``PRAGMA integrity_check``'s answer ("ok" when the file is sound)."""
    conn = connect(db_path)
    try:
        return "; ".join(r[0] for r in conn.execute("PRAGMA integrity_check"))
    finally:
        conn.close()


def copy_database(src: Path, dst: Path) -> None:
    """A consistent copy of a SQLite database (the backup API; no -wal left behind)."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{dst}{suffix}").unlink(missing_ok=True)
    dst.parent.mkdir(parents=True, exist_ok=True)
    source, target = connect(src), sqlite3.connect(dst)
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()


# --------------------------------------------------------------------------- processes


def storysync_argv(repo: Path, *args: str) -> list[str]:
    """The command line that runs storysync as its own process, as a hook does."""
    return [sys.executable, "-m", "storysync", "--repo", str(repo), *args]


def run(
    argv: list[str], *, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run a command to the end; output captured as text."""
    return subprocess.run(
        argv, capture_output=True, text=True, check=False, env={**os.environ, **(env or {})}, timeout=timeout
    )


@dataclass(frozen=True)
class Killed:
    """What a process did before it was killed (or whether it finished first)."""

    delay: float
    finished: bool  # it exited by itself before the kill
    returncode: int
    stderr: str


def kill_after(argv: list[str], delay: float, *, env: dict[str, str] | None = None) -> Killed:
    """Start ``argv`` in its own process group and SIGKILL the whole group after ``delay`` s."""
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )
    finished = True
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        finished = False
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    _, err = proc.communicate(timeout=60)
    with contextlib.suppress(ProcessLookupError):  # any git child left in the group
        os.killpg(proc.pid, signal.SIGKILL)
    return Killed(delay, finished, proc.returncode, err.decode("utf-8", "replace"))


def kill_when(argv: list[str], condition: Callable[[], bool], *, after: float = 0.0, limit: float = 300.0) -> Killed:
    """Start ``argv`` in its own process group; SIGKILL the group ``after`` seconds once
    ``condition()`` holds (polled every 2 ms), unless the process ends first."""
    proc = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=dict(os.environ), start_new_session=True
    )
    start = time.monotonic()
    finished = True
    while proc.poll() is None:
        if condition():
            time.sleep(after)
            if proc.poll() is None:
                finished = False
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
            break
        assert time.monotonic() - start < limit, f"{argv} ran over {limit}s"
        time.sleep(0.002)
    _, err = proc.communicate(timeout=60)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    return Killed(time.monotonic() - start, finished, proc.returncode, err.decode("utf-8", "replace"))


def grown(path: Path, beyond: int = 0) -> Callable[[], bool]:
    """A condition: ``path`` exists and is larger than ``beyond`` bytes (e.g. a -wal file
    that a write transaction has started to fill)."""

    def check() -> bool:
        try:
            return path.stat().st_size > beyond
        except FileNotFoundError:
            return False

    return check


class ChangedFiles:
    """A condition: at least ``count`` files under ``root`` differ (added, removed or
    rewritten) from when this was made.  ``.git`` and ``.storysync`` are not looked at."""

    def __init__(self, root: Path, count: int) -> None:
        self.root = root
        self.count = count
        self.before = self._scan()

    def _scan(self) -> dict[str, tuple[int, int]]:
        out: dict[str, tuple[int, int]] = {}
        for top, dirs, files in os.walk(self.root):
            dirs[:] = [d for d in dirs if d not in (".git", ".storysync")]
            for name in files:
                path = os.path.join(top, name)
                with contextlib.suppress(FileNotFoundError):
                    st = os.lstat(path)
                    out[path] = (st.st_ino, st.st_mtime_ns)
        return out

    def __call__(self) -> bool:
        now = self._scan()
        changed = sum(1 for k, v in now.items() if self.before.get(k) != v)
        changed += sum(1 for k in self.before if k not in now)
        return changed >= self.count


def timed(argv: list[str], *, env: dict[str, str] | None = None) -> tuple[float, subprocess.CompletedProcess[str]]:
    """Run ``argv`` to the end; (seconds taken, the result)."""
    start = time.monotonic()
    done = run(argv, env=env)
    return time.monotonic() - start, done


def kill_delays(duration: float, count: int, seed: int) -> list[float]:
    """``count`` kill moments over a run of ``duration`` seconds (stratified random).

    Half are spread over the whole run (start-up, reading, planning); the other
    half over its last 40 %, where the write transaction and the commit are.
    """
    rng = random.Random(seed)
    spread = count - count // 2
    early = [duration * (i + rng.random()) / spread for i in range(spread)]
    late = [duration * (0.6 + 0.4 * (i + rng.random()) / (count // 2)) for i in range(count // 2)]
    return sorted(early + late)


def one_line_error(stderr: str) -> str:
    """The single error line of a failed run; fails the test on a traceback or several lines."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr, stderr
    assert len(lines) == 1, f"expected one line, got:\n{stderr}"
    return lines[0]


# --------------------------------------------------------------------------- file systems


class MountRefused(Exception):
    """The kernel refused to mount a file system here (the reason is the message)."""


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (e.g. "256k") mounted at ``path`` for the block's duration."""
    path.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None:
        raise MountRefused("no mount command")
    done = run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)])
    if done.returncode != 0:
        raise MountRefused(done.stderr.strip() or f"mount exited {done.returncode}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


def resize_tmpfs(path: Path, size: str) -> None:
    """Grow or shrink a mounted tmpfs."""
    done = run(["mount", "-o", f"remount,size={size}", str(path)])
    assert done.returncode == 0, done.stderr


def fill(directory: Path, leave: int = 0) -> Path:
    """Fill the file system holding ``directory`` until at most ``leave`` bytes are free."""
    ballast = directory / "ballast.bin"
    chunk = b"\0" * 4096
    with contextlib.suppress(OSError), open(ballast, "wb") as fh:
        while shutil.disk_usage(directory).free > leave:
            fh.write(chunk)
            fh.flush()
    return ballast


@contextlib.contextmanager
def immutable(path: Path) -> Iterator[Path]:
    """``chattr +i`` on ``path`` (even root cannot write it) for the block's duration."""
    done = run(["chattr", "+i", str(path)])
    if done.returncode != 0:
        raise MountRefused(f"chattr +i refused: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=False, capture_output=True)


# --------------------------------------------------------------------------- working trees


def tree_files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` outside ``.git`` and ``.storysync``: relative path → bytes."""
    out: dict[str, bytes] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if rel.parts[0] in (".git", ".storysync") or not path.is_file():
            continue
        out[rel.as_posix()] = path.read_bytes()
    return out


def db_side_changes(repo: Path, db_url: str, fraction: float, seed: int, body_bytes: int = 0) -> int:
    """Change ``fraction`` of the live stories in the database, as the story API does:
    new titles and points (and, with ``body_bytes``, a body that much longer), new
    statuses (moves), deletions, and a few new stories.  Returns how many changed."""
    from sqlalchemy import select

    from storysync.config import load_config
    from storysync.db.database import Database
    from storysync.db.tables import stories
    from storysync.db.writer import StoryWriter
    from storysync.errors import ValidationFailed

    rng = random.Random(seed)
    db = Database(db_url)
    try:
        writer = StoryWriter(db, load_config(repo))
        with db.read() as conn:
            ids = sorted(conn.execute(select(stories.c.id).where(stories.c.deleted_at.is_(None))).scalars())
        changed = 0
        for n, story_id in enumerate(rng.sample(ids, int(len(ids) * fraction))):
            kind = n % 5
            try:
                if kind == 4:
                    writer.delete(story_id)
                elif kind == 3:
                    writer.update(story_id, {"status": rng.choice(STAGES), "title": f"Moved {story_id}"})
                else:
                    body = ("Rewritten in the database. " * (body_bytes // 27 + 1))[:body_bytes] + "\n"
                    fields = {"title": f"Edited in the database {n}", "points": rng.randint(0, 20)}
                    writer.update(story_id, fields, body=body if body_bytes else None)
            except ValidationFailed:  # another story depends on it: leave it
                continue
            changed += 1
        for i in range(1, max(2, len(ids) // 20)):
            writer.create(f"NEW-{seed}{i}", rng.choice(BACKLOGS), f"Created in the database {i}", body="New.\n")
            changed += 1
        return changed
    finally:
        db.dispose()
