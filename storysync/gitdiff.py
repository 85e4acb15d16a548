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
    try:
        out: str = repo.git.rev_parse("--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}")
    except GitCommandError as exc:
        raise GitError(f"git: {rev!r} does not name a commit in this repository") from exc
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


# --- ranges: what changed between two commits, and the commits of a range ----------------

ZERO_SHA = "0" * 40


@dataclass(frozen=True)
class Change:
    """One changed file: ``status`` is git's letter (A, M, D, T, R, C); ``old`` is set for R/C."""

    status: str
    path: str  # the path after the change (for D: the deleted path)
    old: str | None = None
    sha: str | None = None  # blob at the newer commit (None when deleted)
    mode: str | None = None


@dataclass(frozen=True)
class LogCommit:
    """A commit of a range with the story paths it changed (merge commits list none)."""

    info: CommitInfo
    parents: tuple[str, ...]
    changes: tuple[Change, ...]


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _pathspec(root: str) -> list[str]:
    return ["--", root] if root else []


def _raw_bytes(repo: git.Repo, what: str, args: list[str]) -> bytes:
    with _git_errors(what):
        out: bytes = repo.git.execute(
            ["git", "--literal-pathspecs", *args], stdout_as_string=False, strip_newline_in_stdout=False
        )
    return out


def is_ancestor(repo: git.Repo, older: str, newer: str) -> bool:
    """Whether ``older`` is ``newer`` or one of its ancestors."""
    done = repo.git.execute(
        ["git", "merge-base", "--is-ancestor", older, newer], with_exceptions=False, with_extended_output=True
    )
    return bool(done[0] == 0)


def merge_base(repo: git.Repo, one: str, two: str) -> str | None:
    """The best common ancestor of two commits, None when they share no history."""
    done = repo.git.execute(["git", "merge-base", one, two], with_exceptions=False, with_extended_output=True)
    return str(done[1]).strip() or None if done[0] == 0 else None


def diff(repo: git.Repo, older: str, newer: str, root: str = "") -> list[Change]:
    """The files that differ between two commits (a two-point diff, renames detected).

    Never ``A...B``: the merge base would hide deletions after a force-push.
    """
    raw = _raw_bytes(
        repo,
        "diff-tree",
        ["diff-tree", "-r", "-z", "-M", "--no-abbrev", "--no-commit-id", older, newer, *_pathspec(root)],
    )
    tokens = raw.split(b"\0")
    out: list[Change] = []
    i = 0
    while i < len(tokens) and tokens[i].startswith(b":"):
        _old_mode, new_mode, _old_sha, new_sha, status = tokens[i][1:].decode().split()
        letter = status[0]
        if letter in "RC":
            old, path = _decode(tokens[i + 1]), _decode(tokens[i + 2])
            i += 3
        else:
            old, path = None, _decode(tokens[i + 1])
            i += 2
        gone = letter == "D"
        out.append(Change(letter, path, old, None if gone else new_sha, None if gone else new_mode))
    return out


LOG_FORMAT = "%x01%H%x00%an <%ae>%x00%at%x00%P"


def log(repo: git.Repo, older: str | None, newer: str, root: str = "") -> list[LogCommit]:
    """The commits of ``older..newer`` (all of ``newer``'s history when ``older`` is None),
    oldest first, each with the paths it changed (renames detected; merges list none)."""
    rev = f"{older}..{newer}" if older else newer
    args = ["log", "--reverse", "--date-order", "-z", "--name-status", "-M", "--no-show-signature"]
    raw = _raw_bytes(repo, "log", [*args, f"--format={LOG_FORMAT}", rev, *_pathspec(root)])
    return _parse_log(raw.split(b"\0"))


def _parse_log(tokens: list[bytes]) -> list[LogCommit]:
    out: list[LogCommit] = []
    i = 0
    while i + 3 < len(tokens) and tokens[i].startswith(b"\x01"):
        sha, author, stamp, parents = (t.decode("utf-8", "replace") for t in tokens[i : i + 4])
        info = CommitInfo(sha[1:], author, datetime.fromtimestamp(int(stamp), tz=timezone.utc))
        i += 4
        changes: list[Change] = []
        while i < len(tokens) and tokens[i] and not tokens[i].startswith(b"\x01"):
            status = tokens[i].lstrip(b"\n").decode()
            if status[0] in "RC":
                changes.append(Change(status[0], _decode(tokens[i + 2]), _decode(tokens[i + 1])))
                i += 3
            else:
                changes.append(Change(status[0], _decode(tokens[i + 1])))
                i += 2
        while i < len(tokens) and not tokens[i]:
            i += 1
        out.append(LogCommit(info, tuple(parents.split()), tuple(changes)))
    return out


def blob_size(repo: git.Repo, sha: str) -> int:
    """A blob's size in bytes, without reading it (``cat-file --batch-check``)."""
    with _git_errors("cat-file"):
        size: int = repo.odb.info(bytes.fromhex(sha)).size
    return size


def is_shallow(repo: git.Repo) -> bool:
    """Whether the repository is a shallow clone."""
    return (Path(repo.common_dir) / "shallow").exists()
