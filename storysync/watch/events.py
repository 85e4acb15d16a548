"""watchdog → debounced batches of changed story paths.

The shape is watchfiles' ``watch()``: a generator of *batches* (sets of changes),
a filter that is a plain callable, and a stop event.  A watchdog observer puts
raw events on a queue from its own thread; the generator blocks on that queue
with a timeout (never a busy loop), coalesces events until the tree has been
quiet for ``debounce`` (or ``max_wait`` has passed since the first one), waits
while git holds ``index.lock``, and yields one ``Batch``.

Kinds are informational: whoever consumes a batch must look at the disk, since
an editor's atomic save (write a temporary file, rename it over the story) or
vim's backup rename shows the story path as deleted for a moment.  A path that
is missing when a batch is cut early (``max_wait``) but was touched less than
``debounce`` ago is held back for the next batch rather than reported gone.
"""

from __future__ import annotations

import enum
import errno
import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import TYPE_CHECKING, Any

from watchdog.events import FileSystemEvent, FileSystemEventHandler

from storysync.errors import ConfigError, StorysyncError

if TYPE_CHECKING:
    from storysync.config import Config

WATCH_LIMIT_SYSCTL = "fs.inotify.max_user_watches"
INSTANCE_LIMIT_SYSCTL = "fs.inotify.max_user_instances"
IGNORED_DIRS = frozenset({".git", ".storysync"})
IDLE_TICK = 1.0  # longest a blocked wait lasts before the stop event is looked at again
LOCK_POLL = 0.05  # how often a held index.lock is looked at


class ChangeKind(enum.IntEnum):
    """What happened to a path (as watchfiles' ``Change``)."""

    added = 1
    modified = 2
    deleted = 3


Change = tuple[ChangeKind, str]  # (kind, POSIX path relative to the base directory)
ChangeFilter = Callable[[ChangeKind, str], bool]


class WatchLimitError(StorysyncError):
    """The kernel refused another inotify watch or instance."""


class WatchStoppedError(StorysyncError):
    """The observer stopped while watching (its root was removed)."""


@dataclass(frozen=True)
class Batch:
    """Changes coalesced over one debounce window.

    ``rescan`` says the consumer should compare the whole tree with what it last
    synced: a story directory was created, moved or removed, events were lost, or
    the periodic reconcile is due.  ``first_event`` is the monotonic time of the
    oldest event in the batch (None for a plain reconcile).
    """

    changes: frozenset[Change]
    rescan: bool = False
    first_event: float | None = None

    @property
    def paths(self) -> set[str]:
        """Every path named by a change, whatever its kind."""
        return {path for _, path in self.changes}


# --- filtering --------------------------------------------------------------------

_TEMP_SUFFIXES = (
    "~",  # vim backup, emacs backup
    ".swp",
    ".swo",
    ".swx",
    ".swpx",  # vim swap files
    "___jb_tmp___",
    "___jb_old___",  # JetBrains safe write
    ".vsctmp",  # VS Code atomic save
    ".tmp",
    ".bak",
    ".orig",
)


def is_editor_temporary(name: str) -> bool:
    """True for the temporary and backup files editors write beside the real one."""
    return (
        name.endswith(_TEMP_SUFFIXES)
        or name == "4913"  # vim's "can I write here" probe
        or name.startswith(".#")  # emacs lock links
        or (name.startswith(".") and ".tmp" in name)  # hidden "save as temp, then rename" files
    )


def is_ignored_path(path: str) -> bool:
    """True for paths inside ``.git/`` or ``.storysync/`` and for editor temporaries."""
    parts = PurePosixPath(path).parts
    return bool(IGNORED_DIRS.intersection(parts)) or (bool(parts) and is_editor_temporary(parts[-1]))


class StoryFilter:
    """The default filter: keep story files (SPEC §2), drop everything else."""

    def __init__(self, config: Config) -> None:
        self.config = config

    def __call__(self, kind: ChangeKind, path: str) -> bool:
        from storysync.story.layout import classify

        return not is_ignored_path(path) and classify(self.config, path) is not None


# --- batching (pure logic, driven by a clock) ---------------------------------------


class Debouncer:
    """Collects changes and says when a batch is due.

    A batch is due once no change has arrived for ``debounce`` seconds, or
    ``max_wait`` seconds after its first change, whichever comes first.
    """

    def __init__(self, debounce: float, max_wait: float) -> None:
        self.debounce = debounce
        self.max_wait = max(max_wait, debounce)
        self._kinds: dict[str, ChangeKind] = {}
        self._touched: dict[str, float] = {}
        self._rescan = False
        self._first: float | None = None
        self._last: float | None = None

    @property
    def pending(self) -> bool:
        """True if anything is waiting to go into a batch."""
        return self._first is not None

    def add(self, change: Change | None, now: float) -> None:
        """Record a change (None: a rescan request) that happened at ``now``."""
        if change is None:
            self._rescan = True
        else:
            kind, path = change
            self._kinds[path] = _merge(self._kinds.get(path), kind)
            self._touched[path] = now
        self._first = now if self._first is None else self._first
        self._last = now

    def deadline(self) -> float | None:
        """The monotonic time the pending batch becomes due (None if nothing pends)."""
        if self._first is None or self._last is None:
            return None
        return min(self._last + self.debounce, self._first + self.max_wait)

    def due(self, now: float) -> bool:
        """True if the pending batch should be cut at ``now``."""
        deadline = self.deadline()
        return deadline is not None and now >= deadline

    def take(self, now: float, exists: Callable[[str], bool]) -> Batch:
        """Cut the batch.  Missing paths touched under ``debounce`` ago stay pending:
        an editor is probably half-way through a save."""
        held = {
            p: (self._kinds[p], t)
            for p, t in self._touched.items()
            if now - t < self.debounce and self._kinds[p] == ChangeKind.deleted and not exists(p)
        }
        changes = frozenset((k, p) for p, k in self._kinds.items() if p not in held)
        batch = Batch(changes, self._rescan, self._first)
        self._kinds, self._touched, self._rescan = {}, {}, False
        self._first = self._last = None
        for path, (kind, touched) in held.items():
            self.add((kind, path), touched)
        return batch


def _merge(old: ChangeKind | None, new: ChangeKind) -> ChangeKind:
    """The net effect of two changes to one path within a batch."""
    if old is None or new == ChangeKind.deleted:
        return new
    if old == ChangeKind.deleted:
        return ChangeKind.modified  # deleted then re-created: the path was replaced
    return old  # added then modified stays added


# --- the observer ---------------------------------------------------------------------


class _Handler(FileSystemEventHandler):
    """watchdog's event handler: turns events into queue items, on the observer's thread."""

    def __init__(self, base: Path, sink: queue.SimpleQueue[Change | None], watch_filter: ChangeFilter) -> None:
        super().__init__()
        self.base = base
        self.sink = sink
        self.watch_filter = watch_filter

    def dispatch(self, event: FileSystemEvent) -> None:
        kind = event.event_type
        if event.is_directory:
            self._directory(event)
            return
        if kind == "deleted" or (kind == "created" and os.path.islink(event.src_path)) or kind == "moved":
            self._directory(event)  # a symlink where a stage or backlog directory belongs comes as a file event
        if kind == "moved":
            self._offer(ChangeKind.deleted, event.src_path)
            self._offer(ChangeKind.added, event.dest_path)
        elif kind in _KINDS:
            self._offer(_KINDS[kind], event.src_path)

    def _offer(self, kind: ChangeKind, raw: str | bytes) -> None:
        rel = self._relative(raw)
        if rel is not None and self.watch_filter(kind, rel):
            self.sink.put((kind, rel))

    def _directory(self, event: Any) -> None:
        paths = [event.src_path] + ([event.dest_path] if event.event_type == "moved" else [])
        for raw in paths:
            rel = self._relative(raw)
            # only a stage or backlog directory can hold stories (two levels below the root)
            if rel is not None and not is_ignored_path(rel) and len(PurePosixPath(rel).parts) <= 2:
                self.sink.put(None)
                return

    def _relative(self, raw: str | bytes) -> str | None:
        text = raw.decode("utf-8", "surrogateescape") if isinstance(raw, bytes) else raw
        try:
            return Path(text).relative_to(self.base).as_posix()
        except ValueError:
            return None


_KINDS = {
    "created": ChangeKind.added,
    "modified": ChangeKind.modified,
    "closed": ChangeKind.modified,  # close after write
    "deleted": ChangeKind.deleted,
}


def _event_types() -> list[Any]:
    """The watchdog events worth a sync: never opens or read-only closes (our own reads)."""
    from watchdog import events as ev

    return [
        ev.FileCreatedEvent,
        ev.FileModifiedEvent,
        ev.FileDeletedEvent,
        ev.FileMovedEvent,
        ev.FileClosedEvent,
        ev.DirCreatedEvent,
        ev.DirDeletedEvent,
        ev.DirMovedEvent,
    ]


def limit_error(exc: OSError, root: Path) -> StorysyncError | None:
    """The clear error for an inotify limit the kernel enforced, or None for other errors."""
    if exc.errno == errno.ENOSPC:
        return WatchLimitError(
            f"{root}: the inotify watch limit is reached ({WATCH_LIMIT_SYSCTL} = {_sysctl(WATCH_LIMIT_SYSCTL)}); "
            f"raise it, e.g. 'sudo sysctl {WATCH_LIMIT_SYSCTL}=524288' "
            f"(persist it in /etc/sysctl.d/), or stop other watchers"
        )
    if exc.errno == errno.EMFILE:
        return WatchLimitError(
            f"{root}: the inotify instance limit is reached ({INSTANCE_LIMIT_SYSCTL} = "
            f"{_sysctl(INSTANCE_LIMIT_SYSCTL)}); raise it, e.g. 'sudo sysctl {INSTANCE_LIMIT_SYSCTL}=1024'"
        )
    return None


def probe_inotify(path: Path) -> OSError | None:
    """Try to add one inotify watch on ``path`` (Linux); the error if the kernel refuses."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(os.O_CLOEXEC)
    if fd < 0:
        code = ctypes.get_errno()
        return OSError(code, os.strerror(code))
    try:
        if libc.inotify_add_watch(fd, os.fsencode(path), _IN_DELETE_SELF) < 0:
            code = ctypes.get_errno()
            return OSError(code, os.strerror(code))
        return None
    finally:
        os.close(fd)


_IN_DELETE_SELF = 0x400


def _sysctl(name: str) -> str:
    try:
        return Path("/proc/sys", *name.split(".")).read_text(encoding="ascii").strip()
    except OSError:
        return "unknown"


class _OverflowHook(logging.Handler):
    """watchdog logs an inotify queue overflow (events were lost); ask for a rescan at once.

    The periodic reconcile heals an overflow anyway; this only makes it prompt.
    """

    def __init__(self, sink: queue.SimpleQueue[Change | None]) -> None:
        super().__init__(logging.WARNING)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        if "overflow" in record.getMessage().lower():
            self.sink.put(None)


class Watcher:
    """A watchdog observer on ``root`` as a stoppable iterator of debounced batches.

    Use as a context manager (it starts and stops the observer) and iterate it;
    ``stop()`` (from any thread or a signal handler) ends the iteration after the
    batch in flight.  Paths in changes are relative to ``base``.
    """

    def __init__(
        self,
        root: Path,
        *,
        base: Path | None = None,
        watch_filter: ChangeFilter | None = None,
        stop_event: threading.Event | None = None,
        debounce: float = 0.2,
        max_wait: float = 2.0,
        rescan_interval: float | None = 30.0,
        lock_file: Path | None = None,
    ) -> None:
        self.root = root
        self.base = base or root
        self.watch_filter: ChangeFilter = watch_filter or (lambda kind, path: not is_ignored_path(path))
        self.stop_event = stop_event or threading.Event()
        self.debouncer = Debouncer(debounce, max_wait)
        self.rescan_interval = rescan_interval
        self.lock_file = lock_file
        self._queue: queue.SimpleQueue[Change | None] = queue.SimpleQueue()
        self._observer: Any = None
        self._hook = _OverflowHook(self._queue)
        self.lock_waits = 0  # how many times a due batch waited for git's index.lock
        self._warned = False

    def __enter__(self) -> Watcher:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def start(self) -> None:
        """Start the observer; an inotify limit becomes a ``WatchLimitError`` naming the sysctl."""
        from watchdog.observers import Observer

        if not self.root.is_dir():
            raise ConfigError(
                f"{self.root}: the stories root is not a directory; create it or fix 'root' in the config"
            )
        observer = Observer()
        handler = _Handler(self.base, self._queue, self.watch_filter)
        try:
            observer.schedule(handler, str(self.root), recursive=True, event_filter=_event_types())
            observer.start()
        except OSError as exc:
            observer.stop()
            error = limit_error(exc, self.root)
            if error is None:
                raise
            raise error from exc
        self._observer = observer
        logging.getLogger("watchdog").addHandler(self._hook)
        self._check_watch_limit()

    def _check_watch_limit(self) -> None:
        """watchdog skips subdirectories it cannot watch without a word; if the kernel
        refuses one more watch now, some were surely skipped: fail clearly instead."""
        refused = probe_inotify(self.root)
        if refused is not None:
            self.close()
            raise limit_error(refused, self.root) or refused

    def close(self) -> None:
        """Stop the observer and wait for its threads."""
        logging.getLogger("watchdog").removeHandler(self._hook)
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=10)
            self._observer = None

    def stop(self) -> None:
        """End the iteration after the batch in flight (safe from a signal handler)."""
        self.stop_event.set()
        self._queue.put(None)  # wake a blocked wait

    @property
    def alive(self) -> bool:
        """True while the observer and every emitter thread are running."""
        observer = self._observer
        return bool(observer is not None and observer.is_alive() and all(e.is_alive() for e in observer.emitters))

    def __iter__(self) -> Iterator[Batch]:
        next_rescan = self._next_rescan(time.monotonic())
        while not self.stop_event.is_set():
            now = time.monotonic()
            self._collect(self._timeout(now, next_rescan))
            if self.stop_event.is_set():
                break
            self._check_alive()
            now = time.monotonic()
            if self.debouncer.due(now):
                if self._git_busy():
                    continue
                yield self.debouncer.take(now, self._exists)
                next_rescan = self._next_rescan(time.monotonic())
            elif not self.debouncer.pending and next_rescan is not None and now >= next_rescan:
                self._warn_at_limit()
                yield Batch(frozenset(), rescan=True)
                next_rescan = self._next_rescan(time.monotonic())

    def _check_alive(self) -> None:
        """An observer whose thread ended (its root was removed) sees nothing more: stop loudly."""
        if self._observer is not None and not self.alive:
            state = "was removed" if not self.root.is_dir() else "can no longer be watched"
            raise WatchStoppedError(f"{self.root}: the stories root {state}; the observer stopped")

    def _warn_at_limit(self) -> None:
        """New directories past the inotify limit go unwatched (the reconcile still
        covers them); say so once."""
        refused = None if self._warned else probe_inotify(self.root)
        error = limit_error(refused, self.root) if refused is not None else None
        if error is not None:
            self._warned = True
            logging.getLogger("storysync").warning("%s (until then, changes arrive by reconcile)", error)

    def _timeout(self, now: float, next_rescan: float | None) -> float:
        wake = [now + IDLE_TICK]
        deadline = self.debouncer.deadline()
        if deadline is not None:
            wake.append(deadline)
        if next_rescan is not None:
            wake.append(next_rescan)
        return max(0.0, min(wake) - now)

    def _collect(self, timeout: float) -> None:
        """Block up to ``timeout`` for one item, then drain whatever else is queued."""
        try:
            item = self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait()
        except queue.Empty:
            return
        now = time.monotonic()
        while True:
            if item is not None or not self.stop_event.is_set():
                self.debouncer.add(item, now)
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return

    def _git_busy(self) -> bool:
        """While git holds index.lock the batch waits (events keep coalescing into it)."""
        if self.lock_file is None or not self.lock_file.exists():
            return False
        self.lock_waits += 1
        self.stop_event.wait(LOCK_POLL)
        return True

    def _exists(self, path: str) -> bool:
        return (self.base / path).exists()

    def _next_rescan(self, now: float) -> float | None:
        return None if self.rescan_interval is None else now + self.rescan_interval


def watch(root: Path, **options: Any) -> Iterator[Batch]:
    """Yield debounced batches of changes under ``root`` until ``stop_event`` is set.

    Keyword options are those of ``Watcher`` (``watch_filter``, ``stop_event``,
    ``debounce``, ``max_wait``, ``rescan_interval``, ``lock_file``, ``base``).
    """
    with Watcher(root, **options) as watcher:
        yield from watcher
