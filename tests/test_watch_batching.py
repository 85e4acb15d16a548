"""The batching logic of watch, driven by synthetic events and an explicit clock."""

from __future__ import annotations

import errno
import queue
import threading
from pathlib import Path

import pytest
from watchdog.events import (
    DirCreatedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
)

from storysync.config import load_config
from storysync.errors import ConfigError
from storysync.watch.events import (
    Batch,
    Change,
    ChangeKind,
    Debouncer,
    StoryFilter,
    Watcher,
    _Handler,
    is_editor_temporary,
    limit_error,
)
from storysync.watch.live import differing

A, M, D = ChangeKind.added, ChangeKind.modified, ChangeKind.deleted
STORY = "backlog/web/WEB-1-login.md"


def test_batch_is_due_after_a_quiet_debounce() -> None:
    deb = Debouncer(debounce=0.2, max_wait=2.0)
    deb.add((M, STORY), 10.0)
    deb.add((M, STORY), 10.1)
    assert not deb.due(10.29)
    assert deb.deadline() == pytest.approx(10.3)
    assert deb.due(10.3)


def test_a_stream_of_events_is_cut_at_max_wait() -> None:
    deb = Debouncer(debounce=0.2, max_wait=2.0)
    t = 0.0
    while not deb.due(t):
        deb.add((A, f"backlog/web/WEB-{int(t * 100)}-x.md"), t)
        t = round(t + 0.1, 3)
    assert t == pytest.approx(2.0)
    batch = deb.take(t, exists=lambda p: True)
    assert len(batch.changes) == 20
    assert batch.first_event == 0.0
    assert not deb.pending


def test_nothing_pending_means_no_deadline() -> None:
    deb = Debouncer(0.2, 2.0)
    assert deb.deadline() is None
    assert not deb.due(1e9)


@pytest.mark.parametrize(
    ("first", "second", "net"),
    [
        (A, M, A),  # created then written: still a creation
        (M, D, D),
        (A, D, D),
        (D, A, M),  # atomic save: the path was replaced, not removed
        (D, M, M),
        (M, M, M),
    ],
)
def test_changes_to_one_path_merge(first: ChangeKind, second: ChangeKind, net: ChangeKind) -> None:
    deb = Debouncer(0.2, 2.0)
    deb.add((first, STORY), 0.0)
    deb.add((second, STORY), 0.05)
    assert deb.take(1.0, exists=lambda p: True).changes == {(net, STORY)}


def test_a_missing_path_touched_just_now_is_held_for_the_next_batch() -> None:
    deb = Debouncer(debounce=0.2, max_wait=0.5)
    deb.add((M, "backlog/web/WEB-2-x.md"), 0.0)
    deb.add((D, STORY), 0.45)  # vim renamed the story to its backup; the new file is not written yet
    batch = deb.take(0.5, exists=lambda p: False)
    assert batch.changes == {(M, "backlog/web/WEB-2-x.md")}
    assert deb.pending
    later = deb.take(1.0, exists=lambda p: False)
    assert later.changes == {(D, STORY)}  # still gone after the debounce: a real deletion


def test_a_missing_path_that_is_old_enough_is_a_deletion() -> None:
    deb = Debouncer(0.2, 2.0)
    deb.add((D, STORY), 0.0)
    assert deb.take(0.3, exists=lambda p: False).changes == {(D, STORY)}


def test_a_rescan_request_makes_a_rescan_batch() -> None:
    deb = Debouncer(0.2, 2.0)
    deb.add(None, 5.0)
    assert deb.due(5.2)
    batch = deb.take(5.2, exists=lambda p: True)
    assert batch == Batch(frozenset(), rescan=True, first_event=5.0)
    assert not deb.pending


@pytest.mark.parametrize(
    "name",
    [
        "WEB-1-login.md~",
        ".WEB-1-login.md.swp",
        ".WEB-1-login.md.swx",
        "4913",
        ".#WEB-1-login.md",
        "WEB-1-login.md___jb_tmp___",
        "WEB-1-login.md___jb_old___",
        "WEB-1-login.md.vsctmp",
        ".WEB-1-login.md.tmp-1700000000",
    ],
)
def test_editor_temporaries_are_recognised(name: str) -> None:
    assert is_editor_temporary(name)


@pytest.mark.parametrize("name", ["WEB-1-login.md", "README.md", "notes.txt"])
def test_ordinary_names_are_not_temporaries(name: str) -> None:
    assert not is_editor_temporary(name)


@pytest.mark.parametrize(
    ("path", "kept"),
    [
        (STORY, True),
        ("completed/api/API-2-health.md", True),
        ("backlog/web/README.md", False),
        ("backlog/web/.#WEB-1-login.md", False),
        ("backlog/web/WEB-1-login.md.swp", False),
        ("backlog/web/WEB-1-login.md___jb_tmp___", False),
        (".git/index.lock", False),
        (".git/backlog/web/WEB-1-x.md", False),
        (".storysync/storysync.db", False),
        ("plans/2026/plan.md", False),
        ("backlog/WEB-1-x.md", False),
        ("backlog/web/deeper/WEB-1-x.md", False),
        ("backlog/web/image.png", False),
    ],
)
def test_story_filter(tmp_path: Path, path: str, kept: bool) -> None:
    keep = StoryFilter(load_config(tmp_path))
    assert keep(M, path) is kept


def _handler(tmp_path: Path) -> tuple[_Handler, queue.SimpleQueue[Change | None]]:
    sink: queue.SimpleQueue[Change | None] = queue.SimpleQueue()
    return _Handler(tmp_path, sink, StoryFilter(load_config(tmp_path))), sink


def _drain(sink: queue.SimpleQueue[Change | None]) -> list[Change | None]:
    out = []
    while not sink.empty():
        out.append(sink.get_nowait())
    return out


def test_handler_turns_an_atomic_save_into_an_addition_of_the_story(tmp_path: Path) -> None:
    handler, sink = _handler(tmp_path)
    temp = str(tmp_path / "backlog/web/.WEB-1-login.md.tmp-123")
    handler.dispatch(FileCreatedEvent(temp))
    handler.dispatch(FileModifiedEvent(temp))
    handler.dispatch(FileClosedEvent(temp))
    handler.dispatch(FileMovedEvent(temp, str(tmp_path / STORY)))
    assert _drain(sink) == [(A, STORY)]


def test_handler_reports_both_ends_of_a_story_move(tmp_path: Path) -> None:
    handler, sink = _handler(tmp_path)
    handler.dispatch(FileMovedEvent(str(tmp_path / STORY), str(tmp_path / "active/web/WEB-1-login.md")))
    handler.dispatch(FileDeletedEvent(str(tmp_path / "backlog/web/WEB-3-x.md")))
    assert _drain(sink) == [(D, STORY), (A, "active/web/WEB-1-login.md"), (D, "backlog/web/WEB-3-x.md")]


def test_handler_asks_a_rescan_for_story_directories_only(tmp_path: Path) -> None:
    handler, sink = _handler(tmp_path)
    handler.dispatch(DirCreatedEvent(str(tmp_path / ".git/objects/ab")))
    handler.dispatch(DirCreatedEvent(str(tmp_path / "backlog/web/deeper/still")))
    assert _drain(sink) == []
    handler.dispatch(DirMovedEvent(str(tmp_path / "backlog/web"), str(tmp_path / "active/web")))
    assert _drain(sink) == [None]


def _offline_watcher(tmp_path: Path, **options: object) -> Watcher:
    """A watcher whose queue is fed by the test (its observer is never started)."""
    return Watcher(tmp_path, debounce=0.05, max_wait=1.0, rescan_interval=None, **options)  # type: ignore[arg-type]


def test_watcher_coalesces_a_burst_into_one_batch(tmp_path: Path) -> None:
    watcher = _offline_watcher(tmp_path)
    for i in range(500):
        watcher._queue.put((A, f"backlog/web/WEB-{i}-x.md"))
    batches = iter(watcher)
    batch = next(batches)
    assert len(batch.changes) == 500
    watcher.stop()
    assert list(batches) == []


def test_watcher_waits_while_git_holds_index_lock(tmp_path: Path) -> None:
    lock = tmp_path / "index.lock"
    lock.write_text("")
    watcher = _offline_watcher(tmp_path, lock_file=lock)
    watcher._queue.put((M, STORY))
    got: list[Batch] = []
    thread = threading.Thread(target=lambda: got.extend(b for b in watcher if not watcher.stop_event.is_set()))
    thread.start()
    try:
        for _ in range(200):  # the batch is due after 50 ms; it must keep waiting for the lock
            if watcher.lock_waits >= 5:
                break
            threading.Event().wait(0.02)
        assert watcher.lock_waits >= 5
        assert got == []
        watcher._queue.put((M, "backlog/web/WEB-2-x.md"))  # changes keep coalescing meanwhile
        lock.unlink()
        for _ in range(500):
            if got:
                break
            threading.Event().wait(0.02)
    finally:
        watcher.stop()
        thread.join(10)
    assert [b.paths for b in got] == [{STORY, "backlog/web/WEB-2-x.md"}]


def test_watcher_yields_a_periodic_rescan_when_idle(tmp_path: Path) -> None:
    watcher = Watcher(tmp_path, debounce=0.05, rescan_interval=0.05)
    batch = next(iter(watcher))
    assert batch.rescan
    assert batch.changes == frozenset()


def test_stop_ends_an_idle_iteration(tmp_path: Path) -> None:
    watcher = _offline_watcher(tmp_path)
    threading.Timer(0.1, watcher.stop).start()
    assert list(watcher) == []


def test_the_inotify_watch_limit_names_the_sysctl(tmp_path: Path) -> None:
    error = limit_error(OSError(errno.ENOSPC, "inotify watch limit reached"), tmp_path)
    assert error is not None
    assert "fs.inotify.max_user_watches" in str(error)
    assert "sudo sysctl fs.inotify.max_user_watches=" in str(error)
    assert error.exit_code == 3


def test_the_inotify_instance_limit_names_the_sysctl(tmp_path: Path) -> None:
    error = limit_error(OSError(errno.EMFILE, "inotify instance limit reached"), tmp_path)
    assert error is not None
    assert "fs.inotify.max_user_instances" in str(error)


def test_other_os_errors_are_not_limits(tmp_path: Path) -> None:
    assert limit_error(OSError(errno.EACCES, "denied"), tmp_path) is None


def test_differing_finds_new_gone_and_changed_files() -> None:
    old = {"a.md": (1, 10), "b.md": (2, 20), "c.md": (3, 30)}
    new = {"a.md": (1, 10), "b.md": (2, 21), "d.md": (4, 40)}
    assert differing(old, new) == {"b.md", "c.md", "d.md"}


def test_a_missing_stories_root_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="stories root is not a directory"), Watcher(tmp_path / "missing"):
        pass


def test_an_inotify_overflow_asks_for_a_rescan_at_once(tmp_path: Path) -> None:
    import logging

    with Watcher(tmp_path, debounce=0.05, rescan_interval=None) as watcher:
        # the warning watchdog's inotify reader logs when the kernel dropped events
        logging.getLogger("watchdog.observers.inotify_c").warning(
            "Inotify queue overflowed; filesystem events were lost"
        )
        batch = next(iter(watcher))
    assert batch.rescan


def test_the_overflow_hook_is_removed_when_the_watcher_closes(tmp_path: Path) -> None:
    import logging

    with Watcher(tmp_path) as watcher:
        assert watcher._hook in logging.getLogger("watchdog").handlers
    assert watcher._hook not in logging.getLogger("watchdog").handlers
