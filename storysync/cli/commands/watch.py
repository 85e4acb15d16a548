"""``storysync watch``: real-time local sync while a person edits (SPEC §8)."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import click

from storysync.cli.app import App
from storysync.errors import printable

if TYPE_CHECKING:
    from rich.console import Console
    from rich.live import Live
    from rich.text import Text

    from storysync.watch.events import Watcher
    from storysync.watch.live import LiveSync
    from storysync.watch.outcome import Outcome


@click.command("watch")
@click.option(
    "--debounce",
    type=click.IntRange(0, 60_000),
    default=200,
    show_default=True,
    metavar="MS",
    help="Quiet time that ends a batch of changes.",
)
@click.option("--metrics", "metrics_at", metavar="HOST:PORT", help="Serve /metrics (Prometheus) and /healthz here.")
@click.option(
    "--reconcile",
    type=click.FloatRange(min=0.1),
    default=30.0,
    show_default=True,
    metavar="SECONDS",
    help="How often to compare file sizes and mtimes with the last sync (heals missed events).",
)
@click.pass_obj
def command(app: App, debounce: int, metrics_at: str | None, reconcile: float) -> int:
    """Sync story files to the database as they are saved, until Ctrl-C."""
    from storysync.watch.events import StoryFilter, Watcher
    from storysync.watch.live import LiveSync, health
    from storysync.watch.metrics import Metrics, parse_address

    address = parse_address(metrics_at) if metrics_at else None
    config, db, repo = app.config, app.db, app.repo
    keep = StoryFilter(config)
    metrics = Metrics() if address else None
    live_sync = LiveSync(config, db, repo, keep, metrics)
    watcher = Watcher(
        config.root_path,
        base=config.repo,
        watch_filter=keep,
        debounce=debounce / 1000,
        max_wait=max(2.0, 10 * debounce / 1000),
        rescan_interval=reconcile,
        lock_file=Path(repo.git_dir) / "index.lock",
    )
    view = StatusView(app.console, app.verbosity, str(config.root_path), app.log_format)
    with _stop_on_signals(watcher), watcher, view:
        server = None
        if metrics is not None and address is not None:
            from storysync.watch.metrics import MetricsServer

            server = MetricsServer(address, metrics, lambda: health(db, watcher)).start()
            view.note(f"metrics at {server.url}/metrics, health at {server.url}/healthz")
        try:
            _run(watcher, live_sync, view)
        finally:
            if server is not None:
                server.close()
    return 0


def _run(watcher: Watcher, live_sync: LiveSync, view: StatusView) -> None:
    """Catch up with the tree, then sync each batch until stopped."""
    view.note(f"watching {view.root} (Ctrl-C to stop)")
    view.show(live_sync.catch_up(), live_sync)
    for batch in watcher:
        outcome = live_sync.apply(batch)
        if outcome is not None:
            view.show(outcome, live_sync)
    view.note("stopped")


@contextmanager
def _stop_on_signals(watcher: Watcher) -> Iterator[None]:
    """SIGINT/SIGTERM finish the batch in flight, then stop; a second one interrupts."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if watcher.stop_event.is_set():
            raise KeyboardInterrupt
        watcher.stop()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class StatusView:
    """A live status line on a terminal; plain log lines otherwise."""

    def __init__(self, console: Console, verbosity: int, root: str, log_format: str = "text") -> None:
        self.console = console
        self.verbosity = verbosity
        self.root = root
        self.json = log_format == "json"
        self.interactive = console.is_terminal and verbosity >= 0
        self._live: Live | None = None
        self.failed = 0

    def __enter__(self) -> StatusView:
        if self.interactive:
            from rich.live import Live

            self._live = Live(console=self.console, auto_refresh=False, transient=False)
            self._live.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.stop()

    def note(self, message: str) -> None:
        """A one-off line (start, stop, where the metrics are)."""
        if self.verbosity >= 0:
            self._line(f"storysync: {message}")

    def show(self, outcome: Outcome, live_sync: LiveSync) -> None:
        """Report one batch: its new problems, fixes, failure, and the counts."""
        for diag in outcome.problems:
            self._problem(str(diag))
        for path in outcome.fixed:
            self._line(f"storysync: {path}: fixed, synced", {"path": path})
        if outcome.error is not None:
            self.failed += 1
            self._line(f"storysync: sync failed, will retry: {outcome.error}", level="error", force=True)
        if self._live is not None:
            self._live.update(self._status(outcome, live_sync), refresh=True)
        elif self.verbosity >= 0 and outcome.result is not None:
            self._line(f"storysync: {_timestamp()} {_summary(outcome)}", _fields(outcome))

    def _status(self, outcome: Outcome, live_sync: LiveSync) -> Text:
        from rich.text import Text

        from storysync.cli.report import plural

        status = Text(f"watching · last sync {_timestamp()} ({plural(outcome.paths, 'file')}, ")
        status.append(f"{outcome.duration * 1000:.0f} ms) · {plural(live_sync.batches, 'sync')}")
        status.append(f" · {live_sync.written} written")
        errors = live_sync.open_problems
        if errors or self.failed:
            status.append(f" · {errors} invalid · {self.failed} failed", style="red")
        return status

    def _problem(self, text: str) -> None:
        text = printable(text)
        if self._live is not None:
            self._live.console.print(text, markup=False, highlight=False)
        else:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()

    def _line(
        self, text: str, fields: dict[str, object] | None = None, *, level: str = "info", force: bool = False
    ) -> None:
        """A log line on stderr (a JSON record with ``--log-format json``); ``force``: even with -q."""
        if self._live is not None:
            self._live.console.print(printable(text), markup=False, highlight=False)
            return
        if self.verbosity < 0 and not force:
            return
        if self.json:
            text = _json_record(text.removeprefix("storysync: "), level, {"event_type": "watch", **(fields or {})})
        else:
            text = printable(text)
        sys.stderr.write(text + "\n")
        sys.stderr.flush()


def _json_record(message: str, level: str, fields: dict[str, object]) -> str:
    import logging

    from storysync.log import JSONFormatter

    record = logging.LogRecord("storysync", logging.getLevelName(level.upper()), "", 0, message, None, None)
    record.levelname = level.upper()
    record.fields = fields
    return JSONFormatter().format(record)


def _fields(outcome: Outcome) -> dict[str, object]:
    """A batch's counts, for the JSON log record."""
    result = outcome.result
    assert result is not None
    return {
        "files": outcome.paths,
        "rescan": outcome.rescan,
        "created": len(result.created),
        "updated": len(result.updated),
        "deleted": len(result.deleted),
        "skipped": len({d.path for d in result.diagnostics}),
        "duration_ms": round(outcome.duration * 1000, 1),
        "lag_ms": None if outcome.lag is None else round(outcome.lag * 1000, 1),
    }


def _timestamp() -> str:
    return datetime.now().strftime("%H:%M:%S")


def _summary(outcome: Outcome) -> str:
    """``3 files: 1 created, 2 updated, 0 deleted, 1 skipped (45 ms)``."""
    result = outcome.result
    if result is None:
        return f"{outcome.paths} file(s): failed ({outcome.duration * 1000:.0f} ms)"
    skipped = len({d.path for d in result.diagnostics})
    what = "rescan" if outcome.rescan else "batch"
    return (
        f"{what} of {outcome.paths} file(s): {len(result.created)} created, {len(result.updated)} updated, "
        f"{len(result.deleted)} deleted, {skipped} skipped ({outcome.duration * 1000:.0f} ms)"
    )
