"""DB → files: write back the rows a DB-side writer changed (SPEC §7).

``export()`` takes exactly the rows with ``revision > synced_revision`` and, for
each, decides one action: update the file in place, move it (a new status or
backlog; written at the new path, then the old one removed, as ``git mv`` would),
create it (a row made in the database), delete it (a row deleted in the
database), or nothing to write (the file already holds the row).  Files are
written atomically (a temporary file in the same directory, fsync, rename), and
only under the stories root.

A file whose bytes no longer match the row's ``content_hash`` was edited since
its last sync: the file wins.  The row's version goes into ``conflicts``, the file
is not touched, and the export exits 1.  The row is then marked exported
(``synced_revision = revision``, its ``content_hash`` unchanged), so it is not
exported again and the next sync that reads the edited file takes the file's
values; the database's version lives on in the conflict's ``db_snapshot`` until
someone resolves it (``storysync conflicts --resolve ID``).

A row that cannot be written safely (a bad id or backlog, ``tags`` or ``extra``
that is not the JSON it must be, a status without a stage directory, a path
leading out of the stories root or through a symlinked stage or backlog
directory, a backlog directory that differs from an existing one only in case, a
value the schema refuses, a file that would leave the tree invalid:
``export.tree``) is named with the reason, not written, left pending, and makes
the exit code 1.  A move never removes the file it has just written (the two
paths' file identities are compared first).  If anything fails after files were
written (git, the database), every file is put back as it was and nothing is
recorded.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, NoReturn

from sqlalchemy import Connection, Text, bindparam, cast, select

from storysync.check.rules import check_story, fold_id, symlinked_directory
from storysync.check.schema import SchemaChecker, load_checker
from storysync.check.sources import linked_directory
from storysync.config import Config
from storysync.db import tables as m
from storysync.db.conflicts import conflict_row, db_snapshot
from storysync.db.database import LAST_SYNCED, Database, get_state, set_state, utcnow
from storysync.db.locks import writer_lock
from storysync.db.notify import after_write
from storysync.db.writer import backlog_problem, id_problem
from storysync.errors import RepositoryStateError, StorysyncError
from storysync.export.actions import WRITES, Action, ExportOptions, ExportResult
from storysync.export.atomic import TEMP_PREFIX, TEMP_SUFFIX, atomic_write, fsync_dir
from storysync.export.commit import commit_paths, exclude_temporaries, uncommitted
from storysync.export.tree import base_tree, refuse_invalid
from storysync.git import runner
from storysync.git.runner import GitRepo
from storysync.story.layout import classify, slugify, story_directories, story_path
from storysync.story.merge import Version, base_of, base_version, changed_fields, merge, row_values, version_of
from storysync.story.model import Location
from storysync.story.parse import MAX_FILE, parse_story
from storysync.story.render import RenderError, Wanted, reads_as, render_existing, render_new, wanted_from_row

if TYPE_CHECKING:
    import git

WRITING_MARKER = "storysync-export-writing"  # in the git directory: where an export is writing


def export(
    config: Config, db: Database, repo: GitRepo | git.Repo, options: ExportOptions | None = None
) -> ExportResult:
    """Write every row a DB-side writer changed back to its story file (SPEC §7).

    ``repo`` is the work tree's repository, asked through plain ``git`` processes
    (a GitPython ``git.Repo`` is accepted too).
    """
    repo = runner.as_plain(repo)
    options = options or ExportOptions()
    if db.schema_revision() is None:
        raise RepositoryStateError(
            f"{db.display}: the database was never initialised; run 'storysync init' and 'storysync sync' first"
        )
    # committing needs the index: a held index.lock refuses too (exit 4)
    runner.refuse_if_busy(repo, index=options.commit and not options.dry_run)
    db.ensure_schema()
    if options.dry_run:
        return ExportResult(_checked_plan(config, db, repo, options), dry_run=True)
    with writer_lock(repo.common_dir):
        result = ExportResult(_checked_plan(config, db, repo, options))
        _carry_out(config, db, repo, options, result)
    # After the lock: push what this export (and any set/new before it) left in the change
    # feed, as a sync does (SPEC §10); bounded in time, never raises.
    after_write(config, db)
    return result


# ---------------------------------------------------------------- planning


def _checked_plan(config: Config, db: Database, repo: GitRepo, options: ExportOptions) -> list[Action]:
    """``plan``, with the rows refused whose files would leave an invalid tree (``export.tree``)."""
    actions = plan(config, db)
    refuse_invalid(config, actions, base_tree(config, repo, options.commit))
    return actions


def plan(config: Config, db: Database) -> list[Action]:
    """One action for each row with ``revision > synced_revision``, in id order."""
    checker = load_checker(str(config.schema) if config.schema else None)
    s, d = m.stories.c, m.dependencies.c
    # tags and extra as their JSON text, decoded row by row: one bad value refuses its row, not the run
    columns: list[Any] = [c for c in m.stories.c if c.name not in _JSON_COLUMNS]
    columns += [cast(m.stories.c[name], Text).label(name) for name in _JSON_COLUMNS]
    with db.read() as conn:
        pending = select(*columns).where(s.revision > s.synced_revision).order_by(s.id)
        rows = [dict(r._mapping) for r in conn.execute(pending)]
        deps: dict[str, list[str]] = {}
        pending_deps = (
            select(d.story_id, d.depends_on_id)
            .join(m.stories, s.id == d.story_id)
            .where(s.revision > s.synced_revision)
        )
        for sid, dep in conn.execute(pending_deps):
            deps.setdefault(sid, []).append(dep)
        live_paths = _LivePaths(conn)  # asked per target path, not all loaded
        with _directories_kept():
            return [_plan_row(config, checker, row, deps.get(row["id"], []), live_paths) for row in rows]


class _LivePaths(Mapping[str, str]):
    """The live story at a path, looked up one path at a time (``uq_stories_live_path``)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def __getitem__(self, path: str) -> str:
        s = m.stories.c
        found = self._conn.execute(select(s.id).where(s.path == path, s.deleted_at.is_(None))).scalar()
        if found is None:
            raise KeyError(path)
        return str(found)

    def __iter__(self) -> Iterator[str]:
        s = m.stories.c
        return iter(self._conn.execute(select(s.path).where(s.deleted_at.is_(None), s.path.is_not(None))).scalars())

    def __len__(self) -> int:
        return sum(1 for _ in self)


class _Refusal(Exception):
    pass


_JSON_COLUMNS = {"tags": list, "extra": dict}  # the JSON value each must hold (or null)


def _decoded(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with ``tags`` and ``extra`` decoded from their JSON text and of the right type."""
    for name, kind in _JSON_COLUMNS.items():
        raw = row[name]
        try:
            value = json.loads(raw) if isinstance(raw, str) else raw
        except ValueError as exc:
            raise _Refusal(f"{name} in the database is not valid JSON ({exc}); fix the row") from exc
        if value is not None and not isinstance(value, kind):
            want = "a JSON list" if kind is list else "a JSON object"
            raise _Refusal(f"{name} in the database is {type(value).__name__} {value!r:.40}; it must be {want}")
        row[name] = value
    return row


def _plan_row(
    config: Config, checker: SchemaChecker, row: dict[str, Any], deps: list[str], live_paths: Mapping[str, str]
) -> Action:
    action = Action(row["id"], "refused", row["revision"], old_path=row["path"])
    try:
        _decide(config, checker, _decoded(row), deps, live_paths, action)
    except (_Refusal, RenderError) as exc:
        action.kind, action.reason, action.data = "refused", str(exc), None
    if action.kind == "conflict" or action.conflict_fields:
        action.snapshot = db_snapshot(row, deps)
    if action.kind in ("update", "move", "create", "in-step") and action.base is None:
        action.base = base_of(row, deps)  # the file now holds the row: the next merge's base
    return action


def _decide(
    config: Config,
    checker: SchemaChecker,
    row: Mapping[str, Any],
    deps: list[str],
    live_paths: Mapping[str, str],
    action: Action,
) -> None:
    for problem in (id_problem(row["id"]), backlog_problem(row["backlog_id"])):
        if problem:
            raise _Refusal(problem)
    old = row["path"]
    current = _read_story_file(config, old) if old else None
    if row["deleted_at"] is not None:
        _decide_delete(row, current, action)
        return
    want = wanted_from_row(row, deps)
    target = _target_path(config, row, old)
    action.new_path = target
    location = _location(config, target)
    if old and current is None:
        _decide_missing(config, want, location, action)
    elif current is not None and _sha(current) != row["content_hash"]:
        _decide_edited(current, want, location, old == target, action)
        if action.kind == "conflict" and config.merge == "fields":
            _decide_merge(config, checker, current, row, deps, live_paths, action)
    elif current is None:
        _decide_create(config, checker, want, location, live_paths, action)
    else:
        _decide_write(config, checker, current, want, location, live_paths, action)


def _decide_delete(row: Mapping[str, Any], current: bytes | None, action: Action) -> None:
    if current is None:
        action.kind = "in-step"  # never written, or already gone
    elif _sha(current) != row["content_hash"]:
        action.kind, action.file_hash = "conflict", _sha(current)
        action.reason = "deleted in the database, but the file was edited since its last sync; the file wins"
    else:
        action.kind = "delete"


def _decide_missing(config: Config, want: Wanted, location: Location, action: Action) -> None:
    """The row's file is gone: an export that stopped after a move, or a deletion on disk."""
    found = _read_story_file(config, location.path) if location.path != action.old_path else None
    if found is not None and reads_as(found, want, location):
        action.kind, action.file_hash = "in-step", _sha(found)
        return
    action.kind, action.new_path = "conflict", None
    action.reason = "the file was deleted since its last sync; the file (its deletion) wins"


def _decide_edited(current: bytes, want: Wanted, location: Location, same_place: bool, action: Action) -> None:
    """The file changed since its last sync: in step if it already says what the row says."""
    if same_place and reads_as(current, want, location):
        action.kind, action.file_hash = "in-step", _sha(current)
        return
    action.kind, action.file_hash, action.new_path = "conflict", _sha(current), None
    action.reason = "the file was edited since its last sync; the file wins, the database version is kept"


def _decide_merge(
    config: Config,
    checker: SchemaChecker,
    current: bytes,
    row: Mapping[str, Any],
    deps: list[str],
    live_paths: Mapping[str, str],
    action: Action,
) -> None:
    """Both the file and the row changed since the last sync: merge them field by field
    over the base (``story.merge``).  The merged story is written to the file (and goes
    to the row when it is recorded); a field both changed keeps the file's value and is
    a conflict.  Without a base, or a file that does not parse, it stays a conflict."""
    old = action.old_path
    if row.get("base") is None or old is None:
        return
    story = parse_story(_location(config, old), current)
    if isinstance(story, list):
        return
    ours = version_of(story.row(), story.depends_on)
    base = base_version(row["base"], story.body, row["body"])
    result = merge(base, ours, version_of(row, deps))
    action.conflict_fields = result.conflicting
    action.merged = changed_fields(base, result)
    action.reason = _merge_reason(result.merged, result.conflicting)
    if not result.merged:  # the file already holds the merge: the next sync takes it
        action.kind = "conflict" if result.conflicts else "kept"
        return
    values = row_values(Version(result.frontmatter, result.body))
    depends_on = values.pop("depends_on")
    merged_row = {**row, **values}
    target = _target_path(config, merged_row, old)
    location = _location(config, target)
    data = _checked(checker, render_existing(current, wanted_from_row(merged_row, depends_on), location), location)
    if target != old:
        if _read_story_file(config, target) is not None:
            raise _Refusal(f"cannot move to {target}: a file is already there")
        _free(target, row["id"], live_paths)
    action.kind, action.new_path, action.data, action.file_hash = (
        ("update" if target == old else "move"),
        target,
        data,
        _sha(current),
    )
    action.values = {**values, "depends_on": depends_on}
    action.base = base_of(merged_row, depends_on)


def _merge_reason(merged: list[str], conflicting: list[str]) -> str:
    parts = [f"merged {', '.join(merged)} into the file's edit"] if merged else []
    if conflicting:
        parts.append(f"both changed {', '.join(conflicting)}: the file wins, the database's value is kept")
    return "; ".join(parts) or "the file's edit already holds the database's changes"


def _decide_create(
    config: Config,
    checker: SchemaChecker,
    want: Wanted,
    location: Location,
    live_paths: Mapping[str, str],
    action: Action,
) -> None:
    existing = _read_story_file(config, location.path)
    if existing is not None:
        if reads_as(existing, want, location):
            action.kind, action.file_hash = "in-step", _sha(existing)
            return
        raise _Refusal(f"{location.path} already exists and is another file; move it away or change the title")
    _free(location.path, want.id, live_paths)
    action.kind, action.old_path = "create", None
    action.data = _checked(checker, render_new(want, location), location)


def _decide_write(
    config: Config,
    checker: SchemaChecker,
    current: bytes,
    want: Wanted,
    location: Location,
    live_paths: Mapping[str, str],
    action: Action,
) -> None:
    data = _checked(checker, render_existing(current, want, location), location)
    if location.path == action.old_path:
        action.kind = "update" if data != current else "in-step"
        action.data, action.file_hash = data, _sha(current)
        return
    there = _read_story_file(config, location.path)
    if there is not None and there != data:  # the same bytes: a move that stopped before removing the old file
        raise _Refusal(f"cannot move to {location.path}: a file is already there")
    _free(location.path, want.id, live_paths)
    action.kind, action.data = "move", data


def _free(path: str, story_id: str, live_paths: Mapping[str, str]) -> None:
    owner = live_paths.get(path)
    if owner is not None and owner != story_id:
        raise _Refusal(f"{path} is the path of story {owner}")


def _checked(checker: SchemaChecker, data: bytes, location: Location) -> bytes:
    story = parse_story(location, data)
    if isinstance(story, list):
        raise _Refusal(story[0].message)
    problems = checker.check(story) + check_story(story)
    if problems:
        raise _Refusal("; ".join(p.message for p in problems))
    if len(data) > MAX_FILE:
        raise _Refusal(f"the file would be {len(data)} bytes; the limit is {MAX_FILE}")
    return data


def _target_path(config: Config, row: Mapping[str, Any], old: str | None) -> str:
    name = PurePosixPath(old).name if old else f"{row['id']}-{slugify(row['title'] or '')}.md"
    if old and not (name == f"{row['id']}.md" or name.startswith(f"{row['id']}-")):
        name = f"{row['id']}-{slugify(row['title'] or '')}.md"
    target = story_path(config, row["status"], row["backlog_id"], name)
    if target is None:
        known = ", ".join(sorted(set(config.stages.values())))
        raise _Refusal(f"status {row['status']!r} has no stage directory (known: {known})")
    _check_inside(config, target)
    return target


def _location(config: Config, rel: str) -> Location:
    location = classify(config, rel)
    if location is None:
        raise _Refusal(f"{rel} is not a story path under the stories root")
    return location


# ---------------------------------------------------------------- paths and files


def _check_inside(config: Config, rel: str) -> Path:
    """The absolute path of ``rel``, refusing anything that leads out of the stories root."""
    posix = PurePosixPath(rel)
    if posix.is_absolute() or ".." in posix.parts or "\\" in rel or "\x00" in rel:
        raise _Refusal(f"unsafe path {rel!r}")
    if classify(config, rel) is None:
        raise _Refusal(f"{rel} is not a story path under the stories root")
    kept, directory = _DIRECTORIES.get(), rel.rpartition("/")[0]
    if kept is not None and directory in kept:
        refusal = kept[directory]
    else:
        refusal = _directory_refusal(config, rel)
        if kept is not None:
            kept[directory] = refusal
    if refusal is not None:
        raise _Refusal(refusal(rel))
    return config.repo / rel


# What ``_check_inside`` found of each directory, kept while one plan is made
# (``_directories_kept``): a plan of 1,000 stories asked the file system 2,000 times.
_DIRECTORIES: ContextVar[dict[str, Callable[[str], str] | None] | None] = ContextVar("directories", default=None)


@contextlib.contextmanager
def _directories_kept() -> Iterator[None]:
    """While a plan is made (nothing written yet), each directory is checked once."""
    token = _DIRECTORIES.set({})
    try:
        yield
    finally:
        _DIRECTORIES.reset(token)


def _directory_refusal(config: Config, rel: str) -> Callable[[str], str] | None:
    """Why no story may be written in the directory of ``rel`` (the message for a path in
    it), or None: it leads out of the stories root, through a symlinked stage or backlog
    directory, or beside a directory whose name differs only in case."""
    root = os.path.realpath(config.root_path)
    path = config.repo / rel
    try:
        probe = path.parent
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent  # the nearest existing directory decides where a new one lands
        real = os.path.realpath(probe)
    except OSError as exc:  # a name too long for the file system, say
        reason = exc.strerror
        return lambda r: f"{r}: {reason}"
    if real != root and not real.startswith(root + os.sep):
        return lambda r: f"{r}: a symlinked directory leads out of the stories root"
    linked = linked_directory(config, rel)
    if linked is not None:
        return lambda r: symlinked_directory(r, *linked).message
    twin = _case_twin(config, rel)
    if twin is not None:
        return lambda r: f"{r}: {twin}"
    return None


def _case_twin(config: Config, rel: str) -> str | None:
    """A stage or backlog directory that does not exist by its exact name but beside one
    whose name differs only in case or Unicode form (``Web`` and ``web``): on a file
    system that ignores case they are one directory, so a move between them would
    write the file and then remove it.  The reason, or None."""
    for directory, place in story_directories(config, rel):
        path = config.repo / directory
        try:
            names = os.listdir(path.parent)
        except OSError:
            return None  # not there yet: nothing below it can clash
        if path.name in names:
            continue
        twin = next((n for n in names if fold_id(n) == fold_id(path.name)), None)
        if twin is not None:
            return (
                f"{place} directory {path.name!r} differs only in case from the existing "
                f"{(path.parent / twin).relative_to(config.repo).as_posix()}; on a file system that ignores "
                f"case they are one directory; use the existing name"
            )
        return None
    return None


def _read_story_file(config: Config, rel: str) -> bytes | None:
    """The bytes of a story file, None if it does not exist; refuses symlinks and oddities."""
    path = _check_inside(config, rel)
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise _Refusal(f"{rel}: {exc.strerror}") from exc
    if not stat.S_ISREG(st.st_mode):
        raise _Refusal(f"{rel} is not a regular file (a symlink or a directory); not touched")
    if st.st_size > MAX_FILE:
        raise _Refusal(f"{rel} is over {MAX_FILE} bytes; not touched")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise _Refusal(f"{rel}: cannot read: {exc.strerror}") from exc


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------- carrying out


@dataclass
class _Undo:
    """How to put back every file an export touched.  Each old file is kept as a hard
    link beside it, so putting it back is a rename: it needs no free space (a full
    disk is a reason to undo) and keeps the file's inode and mode."""

    saved: list[tuple[Path, Path | None]] = field(default_factory=list)

    def remember(self, path: Path) -> None:
        if not path.exists():
            self.saved.append((path, None))
            return
        keep = path.with_name(f"{TEMP_PREFIX}undo-{os.getpid()}-{len(self.saved)}{TEMP_SUFFIX}")
        keep.unlink(missing_ok=True)
        os.link(path, keep)
        self.saved.append((path, keep))

    def directories(self) -> set[Path]:
        """The directories whose entries changed."""
        return {path.parent for path, _ in self.saved if path.parent.is_dir()}

    def restore(self) -> None:
        for path, keep in reversed(self.saved):
            if keep is None:
                path.unlink(missing_ok=True)
            elif path.exists() and os.path.samefile(keep, path):  # never replaced: rename would be a no-op
                keep.unlink()
            else:
                os.replace(keep, path)
        self.saved.clear()

    def discard(self) -> None:
        """Drop the kept old files (the export stands)."""
        for path, keep in self.saved:
            if keep is not None:
                keep.unlink(missing_ok=True)
                if not path.exists():
                    _remove_if_empty(path.parent)
        self.saved.clear()


def _carry_out(config: Config, db: Database, repo: GitRepo, options: ExportOptions, result: ExportResult) -> None:
    """Write, commit, record.  A failure before the commit puts every file back; after
    the commit the files match it, and a re-run records them (they read as the rows)."""
    undo = _Undo()
    written = result.of(*WRITES)
    if written:  # before any temporary file exists, so a kill never shows one to git
        exclude_temporaries(repo, f"{TEMP_PREFIX}*{TEMP_SUFFIX}")
    marker = Path(repo.git_dir) / WRITING_MARKER
    _sweep_temporary(config, [a for a in result.actions if a.kind != "refused"], marker)  # refused paths may lead out
    if written:  # where this export's temporary files will be, should it be killed
        _mark_writing(written, marker)
    try:
        for action in written:
            _write(config, action, undo)
        for directory in undo.directories():  # the renames are durable before anything is recorded
            fsync_dir(directory)
        to_commit = written + uncommitted(repo, result.of("in-step")) if options.commit else []
        if to_commit:  # in step but not committed: an earlier export was killed before its commit
            result.commit, result.parent = commit_paths(repo, to_commit, options.message)
    except BaseException as exc:
        undo.restore()
        _fail(exc, "every exported file was restored and nothing was recorded")
    try:
        _record(db, result)
    except BaseException as exc:
        if result.commit is None:
            undo.restore()
            _fail(exc, "every exported file was restored and nothing was recorded")
        _fail(exc, f"commit {result.commit[:12]} holds the exported files; run 'storysync export' to record it")
    finally:
        undo.discard()
        marker.unlink(missing_ok=True)  # no temporary file of this export is left


def _fail(exc: BaseException, what: str) -> NoReturn:
    """Raise the failure with what became of the files added to its one-line message; a
    file system error (a full disk, permissions) becomes a ``StorysyncError`` naming the path."""
    if isinstance(exc, OSError):
        where = exc.filename or "a story file"
        raise StorysyncError(f"{where}: cannot write: {exc.strerror or exc}; {what}") from exc
    if isinstance(exc, StorysyncError) and exc.args:
        exc.args = (f"{exc.args[0]}; {what}", *exc.args[1:])
    raise exc


def _sweep_temporary(config: Config, actions: list[Action], marker: Path) -> None:
    """Remove the temporary files an export killed mid-write left beside these stories
    or in the directories ``marker`` lists, where that export was writing (safe: we hold
    the writer lock, so no other export is writing).  A sync may have recorded the files
    since, leaving no action to point at them; git does not see them (``info/exclude``),
    so only a sweep removes them.  Only those directories are listed, never the tree."""
    directories = {(config.repo / p).parent for a in actions for p in (a.old_path, a.new_path) if p}
    directories |= _marked_directories(config, marker)
    for directory in directories:
        if directory.is_symlink() or not directory.is_dir():
            continue
        for leftover in directory.glob(f"{TEMP_PREFIX}*{TEMP_SUFFIX}"):
            with contextlib.suppress(OSError):
                leftover.unlink()


def _mark_writing(actions: list[Action], marker: Path) -> None:
    """Record the directories these actions write in (repository-relative), before the first
    temporary file exists there; removed once the export ends (``_carry_out``)."""
    directories = sorted({PurePosixPath(p).parent.as_posix() for a in actions for p in (a.old_path, a.new_path) if p})
    atomic_write(marker, json.dumps(directories).encode())


def _marked_directories(config: Config, marker: Path) -> set[Path]:
    """The directories a killed export recorded with ``_mark_writing`` (inside the stories
    root; a damaged record names none)."""
    try:
        listed = json.loads(marker.read_bytes())
    except (OSError, ValueError):
        return set()
    root = config.root_path.resolve()
    found: set[Path] = set()
    for rel in listed if isinstance(listed, list) else ():
        if isinstance(rel, str) and not PurePosixPath(rel).is_absolute() and ".." not in PurePosixPath(rel).parts:
            directory = config.repo / rel
            if directory.resolve().is_relative_to(root):
                found.add(directory)
    return found


def _write(config: Config, action: Action, undo: _Undo) -> None:
    if action.new_path is not None and action.data is not None:
        target = config.repo / action.new_path
        undo.remember(target)
        try:
            atomic_write(target, action.data, sync_dir=False)
        except OSError as exc:  # a full disk fails in write(), which names no file: name it
            exc.filename = exc.filename or action.new_path
            raise
    if action.old_path is not None and action.kind in ("move", "delete"):
        old = config.repo / action.old_path
        if action.kind == "move" and _same_file(old, config.repo / (action.new_path or "")):
            raise StorysyncError(
                f"{action.old_path}: the same file as {action.new_path} (a symlinked directory, or a file system "
                "that ignores case); not removed"
            )
        undo.remember(old)
        old.unlink(missing_ok=True)
        if action.kind == "move":
            _remove_if_empty(old.parent)


def _same_file(old: Path, new: Path) -> bool:
    """Whether the old path of a move, once the new file is written, is that new file
    (device and inode), whatever the names say: two names of one directory entry, so
    removing the old path would remove the story."""
    try:
        return os.path.samefile(old, new)
    except OSError:
        return False


def _remove_if_empty(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not empty, or not ours to remove
        directory.rmdir()


def _record(db: Database, result: ExportResult) -> None:
    now = utcnow()
    with db.write() as conn:
        marked: list[tuple[str, dict[str, Any]]] = []
        for action in result.of(*WRITES, "in-step"):
            values: dict[str, Any] = {"synced_revision": action.revision}
            if action.kind != "delete" and action.content_hash is not None:  # a deleted row keeps its last hash
                values.update(content_hash=action.content_hash, path=action.new_path or action.old_path)
            if action.base is not None:
                values["base"] = action.base
            if result.commit:
                values["synced_commit"] = result.commit
            if action.values is not None:
                _record_merge(conn, action, values, now)
                continue
            marked.append((action.story_id, values))
        # the file holds the merge: the row takes it at the next sync
        marked += [(action.story_id, {"synced_revision": action.revision}) for action in result.of("kept")]
        _mark_rows(conn, marked)
        for action in result.actions:
            if action.kind == "conflict" or action.conflict_fields:
                _record_conflict(conn, action, now)
        if result.commit:
            _advance_last_synced(conn, result.commit, result.parent)


def _mark_rows(conn: Connection, marked: list[tuple[str, dict[str, Any]]]) -> None:
    """Set each story's ``values``: one statement, run for many rows at once, for each set of
    columns (1,000 statements one by one took ~0.3 s)."""
    shapes: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for story_id, values in marked:
        shapes.setdefault(tuple(sorted(values)), []).append(
            {"story": story_id, **{f"new_{k}": v for k, v in values.items()}}
        )
    for columns, rows in shapes.items():
        update = m.stories.update().where(m.stories.c.id == bindparam("story"))
        conn.execute(update.values({c: bindparam(f"new_{c}") for c in columns}), rows)


def _record_merge(conn: Connection, action: Action, values: dict[str, Any], now: Any) -> None:
    """The row takes the merged story the file now holds: a change from the file's side
    (revision + 1), unless a writer changed the row since it was planned (then it stays
    pending, and the next export merges again)."""
    merged = dict(action.values or {})
    depends_on = merged.pop("depends_on")
    s = m.stories.c
    revision = action.revision + 1
    done = conn.execute(
        m.stories.update()
        .where(s.id == action.story_id, s.revision == action.revision)
        .values({**values, **merged, "revision": revision, "synced_revision": revision, "updated_at": now})
    ).rowcount
    if not done:
        return
    conn.execute(m.dependencies.delete().where(m.dependencies.c.story_id == action.story_id))
    if depends_on:
        conn.execute(m.dependencies.insert(), [{"story_id": action.story_id, "depends_on_id": d} for d in depends_on])
    detail = {"merged": action.merged, "conflicts": action.conflict_fields}
    conn.execute(
        m.changes.insert().values(
            story_id=action.story_id, kind="updated", source="file", run_id=None, at=now, detail=detail
        )
    )


def _record_conflict(conn: Connection, action: Action, now: Any) -> None:
    """Keep the row's version (every DB-side version that met an edited file gets its
    own record), and mark the row exported so the next sync takes the file."""
    row = conflict_row(action.story_id, now, action.file_hash, action.snapshot, action.conflict_fields)
    conn.execute(m.conflicts.insert().values(**row))
    if action.kind == "conflict":
        conn.execute(
            m.stories.update().where(m.stories.c.id == action.story_id).values(synced_revision=action.revision)
        )


def _advance_last_synced(conn: Connection, commit: str, parent: str | None) -> None:
    """The export's commit is in step with the database: if the database was at its
    parent, it is now at the commit (so no hook or sync imports it again)."""
    if parent is not None and get_state(conn, LAST_SYNCED) == parent:
        set_state(conn, LAST_SYNCED, commit)
