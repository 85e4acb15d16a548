"""The one place that talks to git through GitPython: open a repository, state, any command.

The questions a sync asks (commits, ancestry, the two-point diff, the log of
moves, blobs, the tree) are answered by plain ``git`` processes in
``storysync.git.runner``; the functions here of the same purpose answer them for a
``git.Repo`` through those.  Every git call passes an argument list (no shell);
``GitCommandError`` becomes ``GitError`` here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import git
from git.exc import GitCommandError, InvalidGitRepositoryError, NoSuchPathError

from storysync.errors import GitError, RepositoryStateError
from storysync.git import runner as gitplain
from storysync.git.runner import SUBMODULE_MODE as SUBMODULE_MODE
from storysync.git.runner import SYMLINK_MODE as SYMLINK_MODE
from storysync.git.runner import Change as Change
from storysync.git.runner import CommitInfo as CommitInfo
from storysync.git.runner import LogCommit as LogCommit
from storysync.git.runner import TreeEntry as TreeEntry


@contextmanager
def _git_errors(what: str) -> Iterator[None]:
    try:
        yield
    except GitCommandError as exc:
        detail = " ".join(str(exc.stderr or "").split()) or f"exit status {exc.status}"
        raise GitError(f"git {what} failed: {detail}") from exc


def open_repo(path: Path) -> git.Repo:
    """The git repository containing ``path`` (search upwards)."""
    try:
        repo = git.Repo(path, search_parent_directories=True)
    except (InvalidGitRepositoryError, NoSuchPathError) as exc:
        raise GitError(f"{path}: not a git repository (run 'git init' first)") from exc
    if repo.bare or repo.working_tree_dir is None:
        raise GitError(f"{path}: a bare repository has no work tree to sync")
    return repo


def top_level(repo: git.Repo) -> Path:
    """The repository's work-tree root."""
    return Path(str(repo.working_tree_dir))


def resolve(repo: git.Repo, rev: str) -> str:
    """The full sha of the commit ``rev`` names."""
    return gitplain.resolve(gitplain.as_plain(repo), rev)


def head(repo: git.Repo) -> str | None:
    """HEAD's sha, or None in a repository with no commits yet."""
    return gitplain.head(top_level(repo))


def commit_exists(repo: git.Repo, sha: str) -> bool:
    """Whether ``sha`` is a commit this repository still has."""
    return gitplain.commit_exists(gitplain.as_plain(repo), sha)


def is_ancestor(repo: git.Repo, older: str, newer: str) -> bool:
    """Whether ``older`` is ``newer`` or one of its ancestors."""
    return gitplain.is_ancestor(gitplain.as_plain(repo), older, newer)


def read_blob(repo: git.Repo, sha: str) -> bytes:
    """A blob's bytes, through git's persistent ``cat-file --batch`` process."""
    with _git_errors("cat-file"):
        data: bytes = repo.odb.stream(bytes.fromhex(sha)).read()
    return data


def git_dir(repo: git.Repo) -> Path:
    """The repository's common git directory (shared by worktrees)."""
    return Path(repo.common_dir)


def refuse_if_busy(repo: git.Repo) -> None:
    """Raise ``RepositoryStateError`` during a merge, rebase or with a held index.lock."""
    state = operation_in_progress(repo)
    if state:
        raise RepositoryStateError(f"{top_level(repo)}: a {state} is in progress; finish or abort it first")
    lock = Path(repo.git_dir) / "index.lock"
    if lock.exists():
        raise RepositoryStateError(
            f"{lock}: index.lock is held by another git process; wait, or remove it if no git is running"
        )


def operation_in_progress(repo: git.Repo) -> str | None:
    """'merge', 'rebase', 'cherry-pick', 'revert' or 'bisect' if one is under way."""
    gd = Path(repo.git_dir)
    markers = {
        "MERGE_HEAD": "merge",
        "rebase-merge": "rebase",
        "rebase-apply": "rebase",
        "CHERRY_PICK_HEAD": "cherry-pick",
        "REVERT_HEAD": "revert",
    }
    for name, state in markers.items():
        if (gd / name).exists():
            return state
    return None


def run(repo: git.Repo, *args: str, **kwargs: Any) -> Any:
    """Run ``git <args>`` in the repository, converting failures to ``GitError``."""
    with _git_errors(args[0] if args else ""):
        return repo.git.execute(["git", *args], **kwargs)


def commits_between(repo: git.Repo, older: str, newer: str) -> int | None:
    """How many commits ``newer`` is ahead of ``older``; None when unknown, or when
    ``older`` is not an ancestor of ``newer`` (history was rewritten)."""
    if not commit_exists(repo, older) or not is_ancestor(repo, older, newer):
        return None
    try:
        with _git_errors("rev-list"):
            out: str = repo.git.rev_list("--count", f"{older}..{newer}")
    except GitError:
        return None
    return int(out.strip() or 0)
