"""The git hooks: install the shims, and what a post-* hook runs.

The shims (``storysync/hook_scripts/``, copied to ``hooks/`` in the source tree)
are tiny shell scripts: pre-commit runs ``storysync validate --staged``; the
post-merge, post-checkout and post-rewrite shims run ``storysync run-hook``,
which syncs the new HEAD and never fails the git command.  Nothing here imports
GitPython or SQLAlchemy until a sync actually runs.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from storysync.cli.report import sync_summary, write_diagnostics
from storysync.db import sqlite_reader, worktree
from storysync.db.migrations import LAST_SYNCED, WORKTREE_PATHS
from storysync.db.sqlite_reader import SqliteReader
from storysync.errors import DatabaseError, StorysyncError, UsageError, printable
from storysync.git import runner
from storysync.log import shown

if TYPE_CHECKING:
    from storysync.cli.app import App

HOOK_NAMES = ("pre-commit", "post-merge", "post-checkout", "post-rewrite")
POST_HOOKS = ("post-merge", "post-checkout", "post-rewrite", "sync")  # "sync": the pre-commit framework's hook
MARKER = "# storysync-hook:"
LOCAL_SUFFIX = ".local"
PYTHON_KEY = "storysync.python"


@dataclass(frozen=True)
class Installed:
    """What installing one hook did."""

    name: str
    path: Path
    action: str  # installed | updated | unchanged | chained

    def describe(self) -> str:
        if self.action == "chained":
            return f"{self.path}: installed; the hook that was there runs first as {self.name}{LOCAL_SUFFIX}"
        return f"{self.path}: {self.action}"


def script(name: str) -> str:
    """The shim for hook ``name``, as shipped in the package."""
    return (resources.files("storysync.cli.hook_scripts") / name).read_text(encoding="utf-8")


def hooks_dir(top: Path) -> Path:
    """Where git looks for hooks (``core.hooksPath`` honoured, shared by worktrees)."""
    return (top / os.fsdecode(runner.output(top, "rev-parse", "--git-path", "hooks").strip())).resolve()


def install(top: Path, python: str | None = None) -> list[Installed]:
    """Install every shim into the repository's hooks directory; safe to run twice.

    A hook that is already there and is not ours is kept: it is renamed to
    ``<hook>.local`` and the shim runs it first.  ``python`` (default: this
    interpreter) is remembered in ``git config storysync.python`` for the shims.
    """
    directory = hooks_dir(top)
    directory.mkdir(parents=True, exist_ok=True)
    done = [_install_one(directory, name) for name in HOOK_NAMES]
    runner.output(top, "config", PYTHON_KEY, python or sys.executable)
    return done


MERGE_ATTRIBUTE = "*.md merge=storysync"


def install_merge_driver(top: Path, root: Path, python: str | None = None) -> list[str]:
    """Make git merge story files with ``storysync merge-driver`` (SPEC §11): a
    ``.gitattributes`` line at the stories root, and the driver in the repository's config
    (run by the interpreter the hooks use, as the shims do).  Safe to run twice."""
    attributes = root / ".gitattributes"
    text = _read(attributes) or ""
    done = []
    if MERGE_ATTRIBUTE not in text.splitlines():
        root.mkdir(parents=True, exist_ok=True)
        attributes.write_text(text + ("\n" if text and not text.endswith("\n") else "") + MERGE_ATTRIBUTE + "\n")
        done.append(f"{attributes}: {MERGE_ATTRIBUTE} (commit it to share the merge driver)")
    interpreter = shlex.quote(python or sys.executable)
    runner.output(top, "config", "merge.storysync.name", "storysync: merge story files field by field")
    runner.output(top, "config", "merge.storysync.driver", f"{interpreter} -m storysync merge-driver %O %A %B %P")
    done.append("git config merge.storysync.driver: set")
    return done


def _install_one(directory: Path, name: str) -> Installed:
    target = directory / name
    wanted = script(name)
    if not os.path.lexists(target):
        _write_executable(target, wanted)
        return Installed(name, target, "installed")
    current = _read(target)
    if current is not None and MARKER in current:
        if current == wanted and os.access(target, os.X_OK):
            return Installed(name, target, "unchanged")
        _write_executable(target, wanted)
        return Installed(name, target, "updated")
    local = directory / f"{name}{LOCAL_SUFFIX}"
    if os.path.lexists(local):
        raise UsageError(
            f"{target}: another hook is installed and {local.name} exists too; "
            f"merge them into {local.name} by hand, remove {target.name}, and run 'storysync install-hooks' again"
        )
    target.rename(local)
    _write_executable(target, wanted)
    return Installed(name, target, "chained")


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def _write_executable(target: Path, text: str) -> None:
    """Write atomically (a temporary file in the same directory, then a rename)."""
    tmp = target.with_name(f".{target.name}.storysync-tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.chmod(0o755)
    os.replace(tmp, target)


def in_progress(top: Path) -> str | None:
    """'merge', 'rebase', 'cherry-pick' or 'revert' when one is stopped half-way (a merge
    whose commit is made, while post-merge runs, is not)."""
    return runner.operation_in_progress(runner.GitRepo(top), concluded_merge=False)


def _rebase_only_checks_out(top: Path, new_head: str) -> bool:
    """Whether the rebase under way has nothing left to pick and this checkout is onto
    its ``onto`` commit: a fast-forward (``git rebase main`` on a branch behind main,
    a ``pull --rebase`` with no local commits), which git ends without post-rewrite."""
    state = runner.GitRepo(top).git_dir / "rebase-merge"
    try:
        todo = (state / "git-rebase-todo").read_text(encoding="utf-8").splitlines()
        onto = (state / "onto").read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return False
    if any(line.split()[0] != "noop" for line in todo if line.strip() and not line.lstrip().startswith("#")):
        return False
    return onto == (new_head or runner.output(top, "rev-parse", "HEAD").decode("ascii", "replace").strip())


def skip_reason(name: str, args: Sequence[str], env: Mapping[str, str], top: Path) -> str | None:
    """Why a post-* hook should not sync now: '' to skip silently, a notice, or None to sync."""
    if name not in POST_HOOKS:
        raise UsageError(f"unknown hook {name!r}; one of {', '.join(POST_HOOKS)}")
    hook, args = _as_git_hook(name, args, env)
    if hook == "post-checkout" and (len(args) < 3 or args[2] != "1"):
        return ""  # a file checkout
    state = in_progress(top)
    if state is None or state == _finishing(hook, args):
        return None
    if hook == "post-checkout" and state == "rebase" and _rebase_only_checks_out(top, args[1]):
        return None  # a fast-forward rebase: this checkout is its whole result, and no post-rewrite follows
    return f"storysync: a {state} is in progress; not syncing now (run 'storysync sync' when it is done)"


def _as_git_hook(name: str, args: Sequence[str], env: Mapping[str, str]) -> tuple[str, Sequence[str]]:
    """The git hook and arguments behind a run (the pre-commit framework passes them in env)."""
    if name != "sync":
        return name, args
    if "PRE_COMMIT_CHECKOUT_TYPE" in env:
        refs = (env.get("PRE_COMMIT_FROM_REF", ""), env.get("PRE_COMMIT_TO_REF", ""))
        return "post-checkout", (*refs, env["PRE_COMMIT_CHECKOUT_TYPE"])
    if "PRE_COMMIT_REWRITE_COMMAND" in env:
        return "post-rewrite", (env["PRE_COMMIT_REWRITE_COMMAND"],)
    return "post-merge", ()


def _finishing(hook: str, args: Sequence[str]) -> str | None:
    """The operation a hook reports the end of, whose state files may linger meanwhile."""
    if hook == "post-rewrite" and tuple(args[:1]) == ("rebase",):
        return "rebase"  # post-rewrite runs before the rebase's state directory is removed
    return None


def run_post_hook(app: App, name: str, args: Sequence[str]) -> int:
    """Sync HEAD for a post-merge/post-checkout/post-rewrite hook; always 0.

    Quiet when nothing changed, one line when the database did, the errors and
    the fix when it could not; never an exit code that would fail git.
    """
    try:
        reason = skip_reason(name, args, os.environ, app.top_level)
        if reason is not None:
            if reason:
                sys.stderr.write(reason + "\n")
            return 0
        app.in_hook = True
        _sync_for_hook(app)
    except DatabaseError as exc:
        sys.stderr.write(_not_synced(exc) + "\n")
    except StorysyncError as exc:
        sys.stderr.write(
            f"storysync: the database was not synced: {shown(str(exc))}; fix that, then run 'storysync sync'\n"
        )
    except Exception as exc:  # a hook must never fail the git command
        sys.stderr.write(
            f"storysync: the database was not synced ({type(exc).__name__}: {shown(str(exc))}); run 'storysync sync'\n"
        )
    return 0


def _not_synced(exc: DatabaseError) -> str:
    """The one line a hook prints when the database failed it; when it could not be reached
    or stayed locked, that the hook gave up so as not to hold git up, and how to catch up."""
    if not exc.unavailable:
        return f"storysync: the database was not synced: {shown(str(exc))}; fix that, then run 'storysync sync'"
    return (
        f"storysync: gave up waiting for the database so as not to hold up git ({shown(str(exc))}); "
        "the database was not synced: run 'storysync sync' to catch up"
    )


def nothing_to_do(app: App, name: str, args: Sequence[str]) -> bool:
    """Whether a post-* hook has nothing to do, answered without SQLAlchemy when it is plain.

    True for a file checkout, and when no merge or rebase is stopped half-way, the
    SQLite database (read with the standard library: ``db/sqlite_reader.py``) says its
    last synced commit is HEAD and holds no rows synced from the working tree: then the
    ordinary path would sync nothing either (``_at_head``).  One ``git`` process.  False
    whenever anything is unusual (a server database, a file to create or migrate, an
    unknown hook): the ordinary path then decides and reports.
    """
    if name not in POST_HOOKS:
        return False
    hook, hook_args = _as_git_hook(name, args, os.environ)
    if hook == "post-checkout" and (len(hook_args) < 3 or hook_args[2] != "1"):
        return True  # a file checkout: ``skip_reason`` says skip, silently
    found = runner.git_dir_and_head(app.top_level)
    if found is None:
        return False
    git_dir, head = found
    if any(os.path.lexists(git_dir / marker) for marker in runner.IN_PROGRESS):
        return False  # the ordinary path tells a finishing merge from one stopped half-way
    position = sqlite_reader.read(app.config.database, _sync_position)
    return position is not None and _settled(*position, head)


def _sync_position(reader: SqliteReader) -> tuple[str | None, str | None]:
    """The last synced commit and the stored ``worktree_paths`` value."""
    found = dict(reader.rows(_STATE_SQL, {"last": LAST_SYNCED, "marked": WORKTREE_PATHS}))
    return found.get(LAST_SYNCED), found.get(WORKTREE_PATHS)


_STATE_SQL = "SELECT key, value FROM sync_state WHERE key IN (:last, :marked)"


def _settled(last: str | None, marked: str | None, head: str | None) -> bool:
    """Synced up to ``head`` with no row from the working tree: a sync would write nothing."""
    return last is not None and last == head and not worktree.parse(marked)


def _at_head(app: App) -> bool:
    """``nothing_to_do``'s database question on the ordinary path (any database, after
    creating or migrating it as a sync would), so the two paths agree."""
    # local: SQLAlchemy and ingest only when a hook has something to sync (~250 ms)
    from storysync.db.database import get_state

    app.db.ensure_schema()
    with app.db.read() as conn:
        last, marked = get_state(conn, LAST_SYNCED), get_state(conn, WORKTREE_PATHS)
    return _settled(last, marked, runner.head(app.top_level))


def _sync_for_hook(app: App) -> None:
    # local: keeps SQLAlchemy (ingest, ~180 ms) off install-hooks and off the hook runs that skip
    from storysync.ingest.run import sync
    from storysync.ingest.types import SyncOptions

    if _at_head(app):
        return  # nothing to sync: no run, no audit row (SPEC §6 allows either), as ``nothing_to_do``
    result = sync(app.config, app.db, app.git, SyncOptions(trigger="hook"))
    for notice in result.notices:
        sys.stderr.write(f"storysync: {printable(notice)}\n")
    if result.diagnostics:
        write_diagnostics(result.diagnostics, "text", out=sys.stderr)
        sys.stderr.write(
            "storysync: the database was not synced: fix the files above, commit, and run 'storysync sync'\n"
        )
    elif result.upserted or result.deleted:
        sys.stderr.write(sync_summary(result) + "\n")
