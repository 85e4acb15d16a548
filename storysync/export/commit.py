"""``export --commit``: commit exactly the exported paths, nothing of the user's.

What ``git commit --only <paths>`` does, without its pathspec: the commit is made
with ``git commit`` from a scratch index (HEAD's tree, with the exported paths
taken from the work tree by ``git update-index --stdin``, NUL-separated, so any
file name survives); the user's index takes the same paths.  Every other
staged or unstaged change stays as it was, and hooks and signing run as for any
commit.  ``--only`` matches each of the 100,000 index entries of a large
repository against each of 1,000 paths (3 s); ``update-index`` looks each path up.

The scratch index starts as the user's index (a second name for the file: git
never writes an index in place, it writes ``index.lock`` and renames it) brought
to HEAD's tree by ``read-tree -m`` (a single-tree merge keeps the file stats of
the entries that match), so the commit's index refresh stats files instead of
hashing every one.  The user's index takes the paths before the commit, and gets
its old entries for them back if the commit fails (a hook refused it, say).

When nothing was staged (the user's index is HEAD's tree, the usual case), the
scratch index after ``update-index`` is what the user's index must become: it is
renamed into place as git would (as ``index.lock``, held as git holds it), if the
user's index is still the file it started from.  That is the entries a second
``update-index`` gives, without git reading and rewriting 12 MB of index at
100,000 files (~70 ms); ``tests/test_export_commit_index.py`` compares both ways
with ``git commit --only``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import NamedTuple

from storysync.errors import GitError
from storysync.export.actions import Action
from storysync.git import runner
from storysync.git.runner import GitRepo


def exclude_temporaries(repo: GitRepo, pattern: str) -> None:
    """Add ``pattern`` to the repository's ``info/exclude`` once, so the temporary
    files a killed export leaves beside stories never show in ``git status``.

    The file is shared by every worktree and never committed; the user's own lines
    are kept.  A file that cannot be written is left alone (the files are swept by
    the next export anyway).
    """
    exclude = repo.common_dir / "info" / "exclude"
    with contextlib.suppress(OSError):
        current = exclude.read_text(encoding="utf-8") if exclude.exists() else ""
        if pattern in current.splitlines():
            return
        exclude.parent.mkdir(parents=True, exist_ok=True)
        prefix = "" if not current or current.endswith("\n") else "\n"
        with open(exclude, "a", encoding="utf-8") as fh:
            fh.write(f"{prefix}# storysync: temporary files of an interrupted export\n{pattern}\n")


def commit_message(actions: list[Action], subject: str | None) -> str:
    """The export commit's message: a subject, then one line per story."""
    n = len(actions)
    head = subject or f"storysync export: {n} {'story' if n == 1 else 'stories'} from the database"
    lines = [f"- {a.story_id}: {'exported' if a.kind == 'in-step' else a.kind + 'd'} {a.where}" for a in actions]
    return head + "\n\n" + "\n".join(lines) + "\n"


SCRATCH_INDEX = "storysync-export-index"  # in the work tree's git directory; one export at a time (writer lock)
_NO_ENTRY = "0 " + "0" * 40  # ``update-index --index-info``: remove the path


def commit_paths(repo: GitRepo, actions: list[Action], subject: str | None) -> tuple[str, str | None]:
    """Commit exactly the paths of ``actions``; the user's other changes, staged or not,
    stay out of the commit and stay as they were.  The new commit and its parent.

    The user's index takes the paths before the commit (so a storysync killed while
    git commits leaves the index in step with the commit); a failed commit puts
    their old entries back."""
    paths = sorted({p for a in actions for p in (a.old_path, a.new_path) if p})
    parent = runner.head(repo.top)
    scratch, kept = repo.git_dir / SCRATCH_INDEX, repo.git_dir / (SCRATCH_INDEX + ".before")
    message = commit_message(actions, subject)
    try:
        copied = _start_scratch(repo, scratch, kept, parent)
        _unmark(repo, paths, scratch)
        _take_from_work_tree(repo, paths, scratch)
        if copied is None or not replace_index(_index_file(repo), scratch, copied):
            _unmark(repo, paths, None)
            _take_from_work_tree(repo, paths, None)
        try:
            runner.output(repo.top, "commit", "-q", "-m", message, env={"GIT_INDEX_FILE": str(scratch)})
        except BaseException:  # refused by a hook, or interrupted (Ctrl-C) while git commits
            _put_back(repo, paths, kept)
            raise
    finally:
        scratch.unlink(missing_ok=True)
        kept.unlink(missing_ok=True)
    sha = runner.head(repo.top)
    if sha is None or sha == parent:
        raise GitError("git commit did not create a commit")
    return sha, parent


def _index_file(repo: GitRepo) -> Path:
    """The user's index: ``GIT_INDEX_FILE`` (as git at the top level reads it) or the git directory's."""
    named = os.environ.get("GIT_INDEX_FILE")
    return repo.top / named if named else repo.git_dir / "index"


class IndexFile(NamedTuple):
    """One version of an index file.  Git never writes an index in place (it writes
    ``<name>.lock`` and renames it), so a new version is a new inode; while a second
    name holds the old one, its number cannot be reused.  (Not the ctime: making or
    removing a second name changes it.)"""

    inode: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: Path) -> IndexFile | None:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return None
        return cls(st.st_ino, st.st_size, st.st_mtime_ns)


def _start_scratch(repo: GitRepo, scratch: Path, kept: Path, parent: str | None) -> IndexFile | None:
    """``scratch`` holds HEAD's tree (nothing when there is no commit yet), with the user's
    index's stats for the files that match it; ``kept`` the user's index as it is.  When
    the scratch is the user's index itself (nothing staged), which version of it."""
    # a git killed with an earlier export left its lock on the scratch index: storysync's
    # writer lock, held here, means no export of ours is using it now
    for stale in (scratch, kept, scratch.with_name(scratch.name + ".lock")):
        stale.unlink(missing_ok=True)
    index = _index_file(repo)
    with contextlib.suppress(FileNotFoundError):  # no index yet: nothing was ever added
        snapshot(index, kept)
    env = {"GIT_INDEX_FILE": str(scratch)}
    if parent is None:
        runner.output(repo.top, "read-tree", "--empty", env=env)
        return None
    if kept.exists():
        snapshot(kept, scratch)
        # nothing staged (the usual case): the scratch is HEAD's tree already; reading HEAD
        # again costs ~0.25 s at 100,000 files, asking ~20 ms (the index's cache tree)
        if runner.run(repo.top, "diff-index", "--cached", "--quiet", parent, "--", env=env).returncode == 0:
            copied = IndexFile.of(index)  # the scratch is this version of it if it is the same file
            return copied if copied is not None and copied.inode == os.stat(scratch).st_ino else None
    if runner.run(repo.top, "read-tree", "-m", parent, env=env).returncode != 0:
        runner.output(repo.top, "read-tree", parent, env=env)  # unmerged entries: HEAD's tree, no stats kept
    return None


def snapshot(index: Path, to: Path) -> None:
    """``to`` holds ``index`` as it is now: a second name for the file (git never writes an
    index in place; it writes ``<name>.lock`` and renames it), or a copy where the file
    system has no hard links.  A linked index's target is named, never the link (Python
    before 3.13 hard-links a symbolic link itself on Linux, and git would then write
    through ``to`` into the user's index)."""
    source = index.resolve(strict=True)  # FileNotFoundError: no index yet
    try:
        os.link(source, to)
    except OSError:  # no hard links here, or another file system than the link's target
        shutil.copyfile(source, to)


def replace_index(index: Path, scratch: Path, copied: IndexFile) -> bool:
    """Make ``index`` the file ``scratch`` as git writes an index (``index.lock``, here a
    second name for ``scratch``, then a rename) if it is still the version ``copied``;
    False, leaving it alone, if another git holds its lock or has written it since, if
    it is split (``sharedindex.*``) or a symbolic link, or if the file system has no
    hard links."""
    if index.is_symlink() or any(index.parent.glob("sharedindex.*")):
        return False  # git writes through a link; a split index names files of its own: left to git
    if os.stat(scratch).st_ino == copied.inode:  # update-index changed nothing: still the same file
        return IndexFile.of(index) == copied
    lock = index.with_name(index.name + ".lock")
    try:
        os.link(scratch, lock)  # fails if the lock is held, as git's own O_EXCL does
    except OSError:
        return False
    done = False
    try:
        if IndexFile.of(index) == copied and not os.path.samefile(lock, index):
            os.chmod(lock, os.stat(index).st_mode & 0o7777)  # the user's mode (core.sharedRepository)
            os.replace(lock, index)
            done = True
    finally:
        if not done:
            lock.unlink(missing_ok=True)
    return done


def _put_back(repo: GitRepo, paths: list[str], kept: Path) -> None:
    """The user's index entries for ``paths`` as they were in ``kept`` (removed where it had none)."""
    before: dict[str, str] = {}
    if kept.exists():
        listing = runner.output(repo.top, "ls-files", "-s", "-z", env={"GIT_INDEX_FILE": str(kept)})
        wanted = set(paths)
        for record in _paths(listing):
            meta, _, path = record.partition("\t")
            if path in wanted:
                before[path] = meta
    info = "".join(f"{before.get(p, _NO_ENTRY)}\t{p}\0" for p in paths)
    with contextlib.suppress(GitError):  # the index is busy (index.lock): it keeps the exported versions
        runner.output(repo.top, "update-index", "-z", "--index-info", stdin=info.encode("utf-8", "surrogateescape"))


def _unmark(repo: GitRepo, paths: list[str], index: Path | None) -> None:
    """Clear the assume-unchanged and skip-worktree marks of ``paths`` in ``index`` (the
    user's when None), as ``git commit --only`` clears the first: ``update-index`` would
    keep an assume-unchanged entry as it was and drop a skip-worktree one, and the commit
    would leave the export out, or delete the file.  One listing (~30 ms at 100,000
    files) when nothing is marked, the usual case."""
    env = None if index is None else {"GIT_INDEX_FILE": str(index)}
    listing = runner.output(repo.top, "ls-files", "-v", "-z", env=env)
    if not runner.any_unwatched(listing):
        return
    wanted = set(paths)
    marked = [
        (r[0], r[2:]) for r in _paths(listing) if len(r) > 2 and r[2:] in wanted and (r[0].islower() or r[0] == "S")
    ]
    for flag, chosen in (
        ("--no-assume-unchanged", [p for tag, p in marked if tag.islower()]),
        ("--no-skip-worktree", [p for tag, p in marked if tag in "Ss"]),
    ):
        if chosen:
            spec = b"".join(p.encode("utf-8", "surrogateescape") + b"\0" for p in chosen)
            runner.output(repo.top, "update-index", flag, "-z", "--stdin", stdin=spec, env=env)


def _take_from_work_tree(repo: GitRepo, paths: list[str], index: Path | None) -> None:
    """``paths`` in ``index`` (the user's when None) as they are in the work tree: added,
    updated, or removed when the file is gone."""
    env = None if index is None else {"GIT_INDEX_FILE": str(index)}
    spec = b"".join(p.encode("utf-8", "surrogateescape") + b"\0" for p in paths)
    runner.output(repo.top, "update-index", "--add", "--remove", "-z", "--stdin", stdin=spec, env=env)


def uncommitted(repo: GitRepo, actions: list[Action]) -> list[Action]:
    """The actions whose files differ from HEAD: written by an export that was killed
    before its commit, so the files are in step with the rows but not committed."""
    paths = sorted({p for a in actions for p in (a.old_path, a.new_path) if p})
    if not paths:
        return []
    # status reads no pathspec file; in-step rows are rare (an interrupted export), so ask once for all
    out = runner.output(repo.top, "status", "--porcelain", "-z", "--no-renames", "--untracked-files=all")
    dirty = {record[3:] for record in _paths(out) if len(record) > 3}
    return [a for a in actions if {a.old_path, a.new_path} & dirty]


def _paths(out: bytes) -> list[str]:
    """NUL-separated records as text (a name that is not UTF-8 keeps its bytes as surrogates)."""
    return out.decode("utf-8", "surrogateescape").split("\0")
