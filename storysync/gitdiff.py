"""The one place that talks to git (through GitPython): trees, blobs, commits, state.

Every git call passes an argument list (no shell) and reads ``-z`` output as bytes,
so any file name survives.  ``GitCommandError`` becomes ``GitError`` here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import git
from git.exc import GitCommandError, InvalidGitRepositoryError, NoSuchPathError

from storysync.errors import GitError, RepositoryStateError

SYMLINK_MODE = "120000"
SUBMODULE_MODE = "160000"


@dataclass(frozen=True)
class TreeEntry:
    """One file in a commit's tree."""

    path: str
    mode: str
    sha: str
    size: int


@dataclass(frozen=True)
class CommitInfo:
    """Who made a commit, and when."""

    sha: str
    author: str
    when: datetime


@contextmanager
def _git_errors(what: str) -> Iterator[None]:
    try:
        yield
    except GitCommandError as exc:
        detail = (exc.stderr or "").strip().replace("\n", " ") or str(exc)
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
    with _git_errors(f"rev-parse {rev}"):
        out: str = repo.git.rev_parse("--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}")
    return out.strip()


def head(repo: git.Repo) -> str | None:
    """HEAD's sha, or None in a repository with no commits yet."""
    try:
        return resolve(repo, "HEAD")
    except GitError:
        return None


def commit_exists(repo: git.Repo, sha: str) -> bool:
    """Whether ``sha`` is a commit this repository still has."""
    try:
        resolve(repo, sha)
    except GitError:
        return False
    return True


def commit_info(repo: git.Repo, sha: str) -> CommitInfo:
    """Author and author time of a commit."""
    with _git_errors("show"):
        out: str = repo.git.show("-s", "--format=%H%x00%an <%ae>%x00%at", sha)
    full, author, stamp = out.strip().split("\x00")
    return CommitInfo(full, author, datetime.fromtimestamp(int(stamp), tz=timezone.utc))


def list_tree(repo: git.Repo, commit: str, root: str) -> list[TreeEntry]:
    """Every file under ``root`` in ``commit``'s tree, with mode, blob sha and size."""
    with _git_errors("ls-tree"):
        raw: bytes = repo.git.ls_tree(
            "-r", "-z", "-l", "--full-tree", commit, "--", root or ".", stdout_as_string=False
        )
    return [_tree_entry(record) for record in raw.split(b"\0") if record]


def _tree_entry(record: bytes) -> TreeEntry:
    meta, _, path = record.partition(b"\t")
    mode, _kind, sha, size = meta.split()
    return TreeEntry(
        path=path.decode("utf-8", "surrogateescape"),
        mode=mode.decode(),
        sha=sha.decode(),
        size=int(size) if size != b"-" else 0,
    )


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
    """How many commits ``newer`` has that ``older`` lacks (None if unknown)."""
    try:
        with _git_errors("rev-list"):
            out: str = repo.git.rev_list("--count", f"{older}..{newer}")
    except GitError:
        return None
    return int(out.strip() or 0)
