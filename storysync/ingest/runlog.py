"""After a sync run: its one log event and its batch for the webhook (SPEC §10).

Both happen after the run's transaction committed and outside its locks; neither
ever fails or blocks the sync for long.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from storysync.db import tables as m
from storysync.db.notify import after_write, max_seq
from storysync.log import get_logger

if TYPE_CHECKING:
    from storysync.config import Config
    from storysync.db.database import Database
    from storysync.ingest.types import SyncResult


def after_sync(config: Config, db: Database, result: SyncResult, seconds: float) -> None:
    """Log the run and push its batch to the webhook; never raises, never waits long."""
    try:
        log_sync_run(result, seconds, trigger=_trigger(db, result))
        start = _before_run(db, result) if config.webhook_url and result.run_id is not None else None
    except Exception as exc:  # a logging or database problem here must never fail the sync
        get_logger().warning("sync run: not logged: %s", " ".join(str(exc).split()))
        return
    if start is not None and not result.dry_run:
        after_write(config, db, start_after=start)


def _trigger(db: Database, result: SyncResult) -> str | None:
    if result.run_id is None:
        return None
    with db.read() as conn:
        found = conn.execute(select(m.sync_runs.c.trigger).where(m.sync_runs.c.id == result.run_id)).scalar()
    return str(found) if found is not None else None


def _before_run(db: Database, result: SyncResult) -> int:
    """The seq just before the run's first change (so a new target gets this run)."""
    with db.read() as conn:
        first = conn.execute(select(func.min(m.changes.c.seq)).where(m.changes.c.run_id == result.run_id)).scalar()
    return int(first) - 1 if first is not None else max_seq(db)


def sync_run_fields(result: SyncResult, seconds: float, trigger: str | None = None) -> dict[str, Any]:
    """The structured fields of one sync run: what it read, wrote and how long it took."""
    return {
        "event_type": "sync_run",
        "run_id": result.run_id,
        "trigger": trigger,
        "outcome": result.outcome,
        "from_commit": result.from_commit,
        "to_commit": result.to_commit,
        "full": result.full,
        "dry_run": result.dry_run,
        "files": result.files,
        "created": len(result.created),
        "updated": len(result.updated),
        "moved": len(result.moved),
        "deleted": len(result.deleted),
        "unchanged": result.unchanged,
        "conflicts": len(result.conflicts),
        "errors": len(result.diagnostics),
        "duration_ms": round(seconds * 1000, 1),
    }


def log_sync_run(result: SyncResult, seconds: float, trigger: str | None = None) -> None:
    """Emit the one ``sync run`` event of a run (INFO: the terminal shows it with ``-v``)."""
    fields = sync_run_fields(result, seconds, trigger)
    get_logger().info(
        "sync run %s %s: %d files, %d created, %d updated, %d moved, %d deleted, %d errors in %.0f ms",
        result.run_id,
        result.outcome,
        fields["files"],
        fields["created"],
        fields["updated"],
        fields["moved"],
        fields["deleted"],
        fields["errors"],
        fields["duration_ms"],
        extra={"fields": fields},
    )
