"""The library API for DB-side writers (the story API): update, create, delete a story.

Each call is one database transaction that changes the ``stories`` row, raises its
``revision`` above ``synced_revision`` (so ``storysync export`` writes it back to
the files), records a status change in ``status_history`` (source ``db``) and
the change in the ``changes`` feed (source ``db``).  Values are checked against
the story schema and the repository's rules before anything is written, and the
story is rendered as the file ``export`` would write and read back by the story
parser, so a value no story file can hold (a body over the file size limit, a NUL
byte, frontmatter over its limit) is refused here, naming the limit, not left for
the export to trip over.  A bad value raises ``ValidationFailed`` (exit 1) naming
the story and the reason, an unknown story ``UsageError`` (exit 2).

``depends_on`` lives in the ``dependencies`` table, every key without a column
goes to ``extra``; setting a key to ``None`` removes it (a required key cannot be
removed).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from storysync.check.rules import ID_PATTERN
from storysync.check.schema import SchemaChecker, load_checker
from storysync.config import Config
from storysync.db import tables as m
from storysync.db.database import Database, utcnow
from storysync.db.notify import after_write, feed_end
from storysync.errors import Diagnostic, UsageError, ValidationFailed
from storysync.story.layout import MAX_NAME
from storysync.story.merge import keep_base_body
from storysync.story.model import Location, Story
from storysync.story.parse import parse_story
from storysync.story.render import OPTIONAL_COLUMNS, RenderError, Wanted, new_file, reads_as, same

COLUMN_FIELDS = ("title", "priority", "points", "epic", "assignee")
REQUIRED = ("id", "title", "status", "backlog")
# The longest id and backlog a row holds: the stories.id and backlogs.id columns.  An id's file
# name <ID>-<slug>.md (a slug of at most 60) then fits in MAX_NAME bytes; a backlog, itself a
# directory name, is held to MAX_NAME bytes as well.
MAX_ID: int = getattr(m.stories.c.id.type, "length", None) or 64
MAX_BACKLOG: int = getattr(m.backlogs.c.id.type, "length", None) or 200
_UNSAFE_SEGMENT = re.compile(r"[\x00-\x1f\x7f/\\]")


@dataclass(frozen=True)
class WriteResult:
    """What a DB-side write did."""

    story_id: str
    kind: str  # created | updated | moved | deleted | unchanged
    revision: int
    changed: tuple[str, ...] = ()


def backlog_problem(backlog: object) -> str | None:
    """Why ``backlog`` cannot be a backlog directory name (None when it can)."""
    if not isinstance(backlog, str) or not backlog.strip():
        return "backlog must be a non-empty string"
    if len(backlog) > MAX_BACKLOG:
        return f"backlog {backlog[:20]!r}... is {len(backlog)} characters; the limit is {MAX_BACKLOG}"
    size = len(backlog.encode("utf-8", "surrogateescape"))
    if size > MAX_NAME:
        return f"backlog {backlog[:20]!r}... is {size} bytes in UTF-8; a directory name holds at most {MAX_NAME}"
    if _UNSAFE_SEGMENT.search(backlog) or backlog.startswith("."):
        return f"backlog {backlog!r} is not a safe directory name (no '/', '\\', control characters or leading '.')"
    return None


def id_problem(story_id: object) -> str | None:
    """Why ``story_id`` cannot be a story id (None when it can)."""
    if not isinstance(story_id, str) or not ID_PATTERN.match(story_id):
        return f"id {story_id!r} must match {ID_PATTERN.pattern} (e.g. WEB-12)"
    if len(story_id) > MAX_ID:
        return f"id {story_id[:20]}... is {len(story_id)} characters; the limit is {MAX_ID}"
    return None


class StoryWriter:
    """Writes stories on the database side, as the story API does."""

    def __init__(
        self,
        db: Database,
        config: Config | None = None,
        checker: SchemaChecker | None = None,
        author: str | None = None,
    ) -> None:
        self.db = db
        self.config = config
        self.author = author
        if checker is None:
            checker = load_checker(str(config.schema) if config and config.schema else None)
        self.checker = checker

    def update(self, story_id: str, fields: Mapping[str, Any], *, body: str | None = None) -> WriteResult:
        """Change frontmatter ``fields`` (and the body) of a live story."""
        return self._notified(lambda: self._update(story_id, fields, body))

    def create(
        self,
        story_id: str,
        backlog: str,
        title: str,
        status: str | None = None,
        fields: Mapping[str, Any] | None = None,
        body: str = "",
    ) -> WriteResult:
        """A new story (or a DB-deleted one brought back); ``export`` writes its file."""
        return self._notified(lambda: self._create(story_id, backlog, title, status, fields, body))

    def delete(self, story_id: str) -> WriteResult:
        """Delete a story DB-side; ``export`` removes its file."""
        return self._notified(lambda: self._delete(story_id))

    def _notified(self, write: Callable[[], WriteResult]) -> WriteResult:
        """Run one write, then push its change to the webhook (SPEC §10) when one is set.

        The push is bounded in time and never raises: a notification problem never
        fails the write, and what is left goes with the next run.
        """
        before = feed_end(self.config, self.db) if self.config is not None else None
        result = write()
        if self.config is not None and result.kind != "unchanged":
            after_write(self.config, self.db, start_after=before)
        return result

    def _update(self, story_id: str, fields: Mapping[str, Any], body: str | None) -> WriteResult:
        with self.db.write() as conn:
            row = _live_row(conn, story_id)
            deps = _deps(conn, story_id)
            fm = _apply(row_frontmatter(row, deps), fields, story_id)
            new_body = row["body"] if body is None else body
            self._validate(conn, fm, new_body)
            changed = _changed(row_frontmatter(row, deps), fm) + (("body",) if new_body != row["body"] else ())
            if not changed:
                return WriteResult(story_id, "unchanged", row["revision"])
            now = utcnow()
            kind = "moved" if {"status", "backlog"} & set(changed) else "updated"
            self._write_row(conn, row, fm, new_body, now)
            if "depends_on" in changed:
                _replace_deps(conn, story_id, fm.get("depends_on") or [])
            if "status" in changed:
                self._history(conn, story_id, row["status"], fm["status"], now)
            _feed(conn, story_id, kind, now)
            return WriteResult(story_id, kind, row["revision"] + 1, changed)

    def _create(
        self,
        story_id: str,
        backlog: str,
        title: str,
        status: str | None,
        fields: Mapping[str, Any] | None,
        body: str,
    ) -> WriteResult:
        problem = id_problem(story_id)
        if problem:
            raise ValidationFailed([_diag(story_id, problem)], f"{story_id}: {problem}")
        base = {"id": story_id, "title": title, "status": status or self._default_status(), "backlog": backlog}
        fm = _apply(base, fields or {}, story_id)
        with self.db.write() as conn:
            existing = _row_by_id(conn, story_id)
            if existing is not None and existing["deleted_at"] is None:
                raise UsageError(f"{story_id}: a story with id {existing['id']!r} already exists")
            self._validate(conn, fm, body)
            now = utcnow()
            if existing is None:
                _insert_row(conn, fm, body, now)
            else:
                self._write_row(conn, existing, fm, body, now, revive=True)
            _replace_deps(conn, story_id, fm.get("depends_on") or [])
            self._history(conn, story_id, None, fm["status"], now)
            _feed(conn, story_id, "created", now)
            revision = 1 if existing is None else existing["revision"] + 1
            return WriteResult(story_id, "created", revision, tuple(fm))

    def _delete(self, story_id: str) -> WriteResult:
        with self.db.write() as conn:
            row = _live_row(conn, story_id)
            d, s = m.dependencies.c, m.stories.c
            dependents = list(
                conn.execute(
                    select(d.story_id)
                    .join(m.stories, s.id == d.story_id)
                    .where(d.depends_on_id == story_id, s.deleted_at.is_(None))
                    .order_by(d.story_id)
                ).scalars()
            )
            if dependents:
                reason = f"{', '.join(dependents)} depend(s) on it; remove it from their depends_on first"
                raise ValidationFailed([_diag(story_id, reason)], f"{story_id}: cannot delete: {reason}")
            now = utcnow()
            conn.execute(
                m.stories.update()
                .where(s.id == story_id)
                .values(deleted_at=now, updated_at=now, revision=row["revision"] + 1)
            )
            conn.execute(m.dependencies.delete().where(d.story_id == story_id))
            _feed(conn, story_id, "deleted", now)
            return WriteResult(story_id, "deleted", row["revision"] + 1)

    # ------------------------------------------------------------ helpers

    def _default_status(self) -> str:
        if self.config is None or "backlog" in self.config.stages.values():
            return "backlog"
        return next(iter(self.config.stages.values()))

    def _validate(self, conn: Connection, fm: dict[str, Any], body: str) -> None:
        story_id = fm["id"]
        problems = [p for p in (backlog_problem(fm.get("backlog")), self._status_problem(fm.get("status"))) if p]
        if not isinstance(body, str):
            problems.append("body must be a string")
        location = Location(story_id, "", str(fm.get("status")), str(fm.get("backlog")), f"{story_id}.md")
        story = Story(location=location, frontmatter=_schema_view(fm), body=body, content_hash="")
        problems += [d.message for d in self.checker.check(story)]
        unwritable = [] if problems else _nul_problems(fm) or _file_problems(fm, body)
        if unwritable:  # alone: not with a "no story has id" for each of 10,000 dependencies
            raise ValidationFailed([_diag(story_id, p) for p in unwritable], f"{story_id}: " + "; ".join(unwritable))
        problems += _dependency_problems(conn, story_id, fm.get("depends_on") or [])
        if problems:
            raise ValidationFailed([_diag(story_id, p) for p in problems], f"{story_id}: " + "; ".join(problems))

    def _status_problem(self, status: object) -> str | None:
        if not isinstance(status, str) or not status:
            return "status must be a non-empty string"
        if self.config is not None and self.config.stage_for_status(status) is None:
            known = ", ".join(sorted(set(self.config.stages.values())))
            return f"status {status!r} has no stage directory (known: {known})"
        return None

    def _write_row(
        self,
        conn: Connection,
        row: Mapping[str, Any],
        fm: dict[str, Any],
        body: str,
        now: datetime,
        revive: bool = False,
    ) -> None:
        values = _row_values(fm, body)
        values.update(revision=row["revision"] + 1, updated_at=now)
        kept = keep_base_body(row.get("base"), row["body"]) if body != row["body"] else None
        if kept is not None:  # the base's body is the row's until now: keep it for a later merge
            values["base"] = kept
        if revive:
            values.update(deleted_at=None, path=None, content_hash=None)
        _ensure_backlog(conn, fm["backlog"], now)
        conn.execute(m.stories.update().where(m.stories.c.id == row["id"]).values(**values))

    def _history(self, conn: Connection, story_id: str, old: str | None, new: str, now: datetime) -> None:
        conn.execute(
            m.status_history.insert().values(
                story_id=story_id,
                from_status=old,
                to_status=new,
                changed_at=now,
                commit=None,
                author=self.author,
                source="db",
            )
        )


def update_story(db: Database, story_id: str, /, **fields: Any) -> WriteResult:
    """Change a story's frontmatter fields DB-side (``None`` removes a key)."""
    return StoryWriter(db).update(story_id, fields)


def create_story(
    db: Database, story_id: str, /, backlog: str, title: str, status: str = "backlog", **fields: Any
) -> WriteResult:
    """Create a story DB-side; ``export`` writes its new file."""
    return StoryWriter(db).create(story_id, backlog, title, status, fields)


def delete_story(db: Database, story_id: str, /) -> WriteResult:
    """Delete a story DB-side; ``export`` removes its file."""
    return StoryWriter(db).delete(story_id)


def row_frontmatter(row: Mapping[str, Any], depends_on: list[str]) -> dict[str, Any]:
    """A row as frontmatter keys (``backlog`` for ``backlog_id``, ``depends_on`` from its table)."""
    fm: dict[str, Any] = {"id": row["id"], "status": row["status"], "backlog": row["backlog_id"]}
    fm.update({k: row[k] for k in COLUMN_FIELDS})
    fm["tags"] = list(row["tags"] or [])
    fm["depends_on"] = sorted(depends_on)
    fm.update(row["extra"] or {})
    return fm


def _apply(fm: dict[str, Any], fields: Mapping[str, Any], story_id: str) -> dict[str, Any]:
    out = dict(fm)
    for key, value in fields.items():
        if not isinstance(key, str) or not key:
            raise UsageError(f"{story_id}: field names must be non-empty strings, got {key!r}")
        if key == "id" and value != story_id:
            raise UsageError(f"{story_id}: the id of a story cannot change; create a new story instead")
        if value is None and key in REQUIRED:
            raise ValidationFailed([_diag(story_id, f"{key} is required")], f"{story_id}: {key} is required")
        if value is None and key in ("tags", "depends_on"):
            out[key] = []
        elif value is None and key not in COLUMN_FIELDS:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def _nul_problems(fm: Mapping[str, Any]) -> list[str]:
    """The keys whose name or value holds a NUL character: PostgreSQL stores none in text or
    JSON, so the database cannot keep it (the body's NUL bytes are the file check's)."""

    def has_nul(value: Any) -> bool:
        if isinstance(value, str):
            return "\x00" in value
        if isinstance(value, dict):
            return any(has_nul(k) or has_nul(v) for k, v in value.items())
        return isinstance(value, list) and any(has_nul(v) for v in value)

    return [f"{k!r} holds a NUL character, which the database cannot store" for k, v in fm.items() if has_nul({k: v})]


def _file_problems(fm: Mapping[str, Any], body: str) -> list[str]:
    """Why the story file ``export`` would write for these values could not be read back
    as a story (the parser's limits: file and frontmatter size, NUL bytes, nesting)."""
    known = {"id", "title", "status", "backlog", "tags", "depends_on", *OPTIONAL_COLUMNS}
    tags, deps = fm.get("tags") or [], fm.get("depends_on") or []
    want = Wanted(
        id=str(fm["id"]),
        title=fm.get("title"),  # type: ignore[arg-type]  # the schema check reports a wrong type
        status=str(fm.get("status")),
        backlog=str(fm.get("backlog")),
        body=body,
        columns={k: fm.get(k) for k in OPTIONAL_COLUMNS},
        tags=tags if isinstance(tags, list) else [tags],
        depends_on=[str(d) for d in deps] if isinstance(deps, list) else [str(deps)],
        extra={k: v for k, v in fm.items() if k not in known},
    )
    location = Location(f"{want.id}.md", "", want.status, want.backlog, f"{want.id}.md")
    try:
        data = new_file(want)
    except RenderError as exc:
        return [f"cannot be written as a story file: {exc}"]
    story = parse_story(location, data)  # the parser's own limits decide, as they will for the file
    if isinstance(story, list):
        return [f"its story file would be refused: {d.message}" for d in story]
    if not reads_as(data, want, location):
        return ["cannot be written as a story file that reads back as these values"]
    return []


def _changed(before: Mapping[str, Any], after: Mapping[str, Any]) -> tuple[str, ...]:
    keys = list(dict.fromkeys([*before, *after]))
    return tuple(k for k in keys if not same(before.get(k), after.get(k)))


def _schema_view(fm: Mapping[str, Any]) -> dict[str, Any]:
    """What the file will say: unset optional keys and empty lists left out."""
    unset = {k for k, v in fm.items() if k != "title" and ((v is None and k in COLUMN_FIELDS) or v == [])}
    return {k: v for k, v in fm.items() if k not in unset}


def _row_values(fm: Mapping[str, Any], body: str) -> dict[str, Any]:
    known = {"id", "status", "backlog", "tags", "depends_on", *COLUMN_FIELDS}
    values = {k: fm.get(k) for k in COLUMN_FIELDS}
    values.update(
        status=fm["status"],
        backlog_id=fm["backlog"],
        tags=list(fm.get("tags") or []),
        extra={k: v for k, v in fm.items() if k not in known},
        body=body,
    )
    return values


def _insert_row(conn: Connection, fm: Mapping[str, Any], body: str, now: datetime) -> None:
    values = _row_values(fm, body)
    values.update(
        id=fm["id"],
        path=None,
        content_hash=None,
        revision=1,
        synced_revision=0,
        synced_commit=None,
        created_at=now,
        updated_at=now,
        deleted_at=None,
    )
    _ensure_backlog(conn, fm["backlog"], now)
    conn.execute(m.stories.insert().values(**values))


def _ensure_backlog(conn: Connection, backlog: str, now: datetime) -> None:
    found = conn.execute(select(m.backlogs.c.id).where(m.backlogs.c.id == backlog)).first()
    if found is None:
        conn.execute(m.backlogs.insert().values(id=backlog, created_at=now))


def _live_row(conn: Connection, story_id: str) -> Mapping[str, Any]:
    row = conn.execute(select(m.stories).where(m.stories.c.id == story_id)).first()
    if row is None or row.deleted_at is not None:
        raise UsageError(f"{story_id}: no such story in the database")
    return dict(row._mapping)


def _row_by_id(conn: Connection, story_id: str) -> Mapping[str, Any] | None:
    """The row with this id, live or deleted (valid ids are upper case, so no two fold together)."""
    found = conn.execute(select(m.stories).where(m.stories.c.id == story_id)).first()
    return None if found is None else dict(found._mapping)


def _deps(conn: Connection, story_id: str) -> list[str]:
    d = m.dependencies.c
    return list(conn.execute(select(d.depends_on_id).where(d.story_id == story_id)).scalars())


def _replace_deps(conn: Connection, story_id: str, depends_on: list[str]) -> None:
    conn.execute(m.dependencies.delete().where(m.dependencies.c.story_id == story_id))
    rows = [{"story_id": story_id, "depends_on_id": dep} for dep in dict.fromkeys(depends_on)]
    if rows:
        conn.execute(m.dependencies.insert(), rows)


def _dependency_problems(conn: Connection, story_id: str, depends_on: list[Any]) -> list[str]:
    targets = [d for d in dict.fromkeys(depends_on) if isinstance(d, str)]
    if not targets:
        return []
    s, d = m.stories.c, m.dependencies.c
    live = set(conn.execute(select(s.id).where(s.id.in_(targets), s.deleted_at.is_(None))).scalars())
    problems = [f"depends_on: no story has id {t!r}" for t in targets if t not in live and t != story_id]
    if story_id in targets:
        problems.append(f"depends_on: {story_id} cannot depend on itself")
    edges: dict[str, list[str]] = {}
    for src, dst in conn.execute(select(d.story_id, d.depends_on_id)):
        edges.setdefault(src, []).append(dst)
    edges[story_id] = targets
    if _reaches(edges, targets, story_id):
        problems.append(f"depends_on: this would make a dependency cycle through {story_id}")
    return problems


def _reaches(edges: Mapping[str, list[str]], starts: list[str], goal: str) -> bool:
    seen: set[str] = set()
    todo = [s for s in starts if s != goal]
    while todo:
        node = todo.pop()
        if node == goal:
            return True
        if node not in seen:
            seen.add(node)
            todo.extend(edges.get(node, []))
    return False


def _feed(conn: Connection, story_id: str, kind: str, now: datetime) -> None:
    conn.execute(m.changes.insert().values(story_id=story_id, kind=kind, source="db", run_id=None, at=now))


def _diag(story_id: str, message: str) -> Diagnostic:
    return Diagnostic(story_id, 1, 1, "db-value", message)
