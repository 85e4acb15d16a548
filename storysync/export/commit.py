"""``export --commit``: commit exactly the exported paths, nothing of the user's.

``git commit --only`` with the paths (read NUL-separated from stdin, as literal
pathspecs, so any file name survives) commits their working-tree state and leaves
every other staged or unstaged change as it was; new files are ``git add``-ed
first and unstaged again if the commit fails.
"""

from __future__ import annotations

import contextlib

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


def commit_paths(repo: GitRepo, actions: list[Action], subject: str | None) -> tuple[str, str | None]:
    """Commit exactly the paths of ``actions``; the user's other changes, staged or not,
    stay out of the commit and stay as they were.  The new commit and its parent."""
    paths = sorted({p for a in actions for p in (a.old_path, a.new_path) if p})
    tracked = _tracked(repo, paths)
    added = [p for p in paths if p not in tracked and (repo.top / p).exists()]
    commit_paths = sorted(tracked | set(added))
    parent = runner.head(repo.top)
    try:
        if added:
            _git_paths(repo, ["add"], added)
        _git_paths(repo, ["commit", "-q", "--only", "-m", commit_message(actions, subject)], commit_paths)
    except GitError:
        if added:
            _unstage(repo, added)
        raise
    sha = runner.head(repo.top)
    if sha is None or sha == parent:
        raise GitError("git commit did not create a commit")
    return sha, parent


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


def _git_paths(repo: GitRepo, args: list[str], paths: list[str]) -> None:
    """``git --literal-pathspecs <args> --pathspec-from-file`` (NUL-separated; any name survives)."""
    spec = b"\0".join(p.encode("utf-8", "surrogateescape") for p in paths)
    runner.output(repo.top, "--literal-pathspecs", *args, "--pathspec-from-file=-", "--pathspec-file-nul", stdin=spec)


def _tracked(repo: GitRepo, paths: list[str]) -> set[str]:
    """Which of ``paths`` git tracks (ls-files reads no pathspec file, so in chunks)."""
    found: set[str] = set()
    for i in range(0, len(paths), 500):
        out = runner.output(repo.top, "--literal-pathspecs", "ls-files", "-z", "--", *paths[i : i + 500])
        found.update(p for p in _paths(out) if p)
    return found


def _paths(out: bytes) -> list[str]:
    """NUL-separated records as text (a name that is not UTF-8 keeps its bytes as surrogates)."""
    return out.decode("utf-8", "surrogateescape").split("\0")


def _unstage(repo: GitRepo, paths: list[str]) -> None:
    with contextlib.suppress(GitError):  # the index is busy (index.lock); the files are restored anyway
        _git_paths(repo, ["rm", "--cached", "-q", "--ignore-unmatch"], paths)
