"""The one place that starts ``git``: every process storysync runs, and the questions a sync asks.

``run`` and ``output`` run one git command at the repository's top level (an
argument list, no shell; messages in English whatever the locale; a failure is a
``GitError`` with git's message on one line); ``start`` opens the streaming
``git cat-file --batch`` of ``storysync.git.blobs``.  On top of them: commits,
ancestry, the two-point diff, the log of moves, blob sizes, the tree, config
values and the state of an operation under way.  No GitPython: importing it and
opening a ``git.Repo`` costs about 50 ms (and two ``git version`` processes)
before the first question, as long as a whole ``status``; a ``git.Repo`` a
library caller passes is read through ``as_plain``.  Output is read as bytes
(``-z`` where paths are listed), so any file name survives.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Container, Mapping, Sequence
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from storysync.errors import GitError, RepositoryStateError

if TYPE_CHECKING:
    import git

SYMLINK_MODE = "120000"
SUBMODULE_MODE = "160000"
LOG_FORMAT = "%x01%H%x00%an <%ae>%x00%at%x00%P"
# One commit's sha, author and time: ``log -1 --no-walk`` prints what ``show -s`` would,
# in about half the time (show sets up its diff machinery even with -s).
_INFO_ARGS = ("log", "-1", "--no-walk", "--no-show-signature", "--format=%H%x00%an <%ae>%x00%at")
# As GitPython runs git: messages in English whatever the user's locale.
_ENV_OVERRIDES = {"LANGUAGE": "C", "LC_ALL": "C"}
# What a stopped operation leaves in the work tree's git directory.
IN_PROGRESS = {
    "MERGE_HEAD": "merge",
    "rebase-merge": "rebase",
    "rebase-apply": "rebase",
    "CHERRY_PICK_HEAD": "cherry-pick",
    "REVERT_HEAD": "revert",
}
# The values below are named tuples: a frozen dataclass costs ~0.5 ms to create at import.


class TreeEntry(NamedTuple):
    """One file in a commit's tree."""

    path: str
    mode: str
    sha: str
    size: int


class CommitInfo(NamedTuple):
    """Who made a commit, and when."""

    sha: str
    author: str
    when: datetime


class Change(NamedTuple):
    """One changed file: ``status`` is git's letter (A, M, D, T, R, C); ``old`` is set for R/C."""

    status: str
    path: str  # the path after the change (for D: the deleted path)
    old: str | None = None
    sha: str | None = None  # blob at the newer commit (None when deleted)
    mode: str | None = None


class LogCommit(NamedTuple):
    """A commit of a range with the story paths it changed (merge commits list none)."""

    info: CommitInfo
    parents: tuple[str, ...]
    changes: tuple[Change, ...]


class GitRepo:
    """A work tree's repository, asked through ``git`` processes run at its top level."""

    def __init__(self, top: Path, dirs: tuple[Path, Path] | None = None) -> None:
        self.top = top
        if dirs is not None:
            self.__dict__["dirs"] = dirs

    @cached_property
    def dirs(self) -> tuple[Path, Path]:
        """The git directory and the common one (shared by worktrees), absolute."""
        plain = _plain_git_dir(self.top)
        if plain is not None:
            return plain, plain
        done = run(self.top, "rev-parse", "--git-dir", "--git-common-dir")
        lines = done.stdout.decode("utf-8", "surrogateescape").splitlines()
        if done.returncode != 0 or len(lines) != 2:
            raise GitError(f"{self.top}: not a git repository (run 'git init' first)")
        return (self.top / lines[0]).resolve(), (self.top / lines[1]).resolve()

    @property
    def git_dir(self) -> Path:
        """This work tree's git directory."""
        return self.dirs[0]

    @property
    def common_dir(self) -> Path:
        """The repository's common git directory (shared by worktrees)."""
        return self.dirs[1]


def _plain_git_dir(top: Path) -> Path | None:
    """``top/.git`` when it is an ordinary repository's own directory, as git would find it
    (no ``GIT_DIR``/``GIT_COMMON_DIR`` override, not a worktree's or submodule's pointer file);
    None when only git can say (then ``rev-parse`` does)."""
    if "GIT_DIR" in os.environ or "GIT_COMMON_DIR" in os.environ:
        return None
    git_dir = top / ".git"
    if not (git_dir / "HEAD").is_file() or not (git_dir / "objects").is_dir() or (git_dir / "commondir").exists():
        return None
    return git_dir.resolve()


def open_repo(top: Path) -> GitRepo:
    """The repository whose work tree is ``top``; ``GitError`` if git does not see one there."""
    repo = GitRepo(top)
    _ = repo.dirs
    return repo


def as_plain(repo: GitRepo | git.Repo) -> GitRepo:
    """``repo`` itself, or a ``GitRepo`` for the same work tree as a GitPython ``git.Repo``."""
    if isinstance(repo, GitRepo):
        return repo
    return GitRepo(Path(str(repo.working_tree_dir)), (Path(repo.git_dir), Path(repo.common_dir)))


def run(
    top: Path, *args: str, stdin: bytes | None = None, env: Mapping[str, str | None] | None = None
) -> subprocess.CompletedProcess[bytes]:
    """``git <args>`` run at ``top``: its exit status and output, whatever the status.

    ``stdin`` is written to it (else it reads nothing); ``env`` adds variables to
    the environment, or removes those given as None.  ``GitError`` only when git
    cannot be started.
    """
    argv, environ = ["git", *args], _env(env)
    quiet = subprocess.DEVNULL
    try:
        if stdin is None:
            return subprocess.run(argv, cwd=top, stdin=quiet, capture_output=True, check=False, env=environ)
        return subprocess.run(argv, cwd=top, input=stdin, capture_output=True, check=False, env=environ)
    except OSError as exc:
        raise GitError(f"cannot run git: {exc.strerror}") from exc


def output(
    top: Path,
    *args: str,
    stdin: bytes | None = None,
    env: Mapping[str, str | None] | None = None,
    ok: Container[int] = (0,),
) -> bytes:
    """The standard output of ``git <args>`` run at ``top`` (as ``run``); ``GitError``, naming the
    command and giving git's message on one line, if its exit status is not one of ``ok``."""
    done = run(top, *args, stdin=stdin, env=env)
    if done.returncode not in ok:
        what = next((a for a in args if not a.startswith("-")), "")
        detail = " ".join(done.stderr.decode("utf-8", "replace").split()) or f"exit status {done.returncode}"
        raise GitError(f"git {what} failed: {detail}")
    return done.stdout


def start(top: Path, *args: str) -> subprocess.Popen[bytes]:
    """``git <args>`` started at ``top`` to talk to through its standard input and output
    (its messages are discarded); ``GitError`` if git cannot be started."""
    try:
        return subprocess.Popen(
            ["git", *args],
            cwd=top,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=_env(None),
        )
    except OSError as exc:
        raise GitError(f"cannot run git: {exc.strerror}") from exc


def _env(changes: Mapping[str, str | None] | None) -> dict[str, str]:
    env = {**os.environ, **_ENV_OVERRIDES}
    for key, value in (changes or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


# --- commits ------------------------------------------------------------------------------


def head(top: Path) -> str | None:
    """HEAD's commit sha in the work tree at ``top``, or None when there is no commit yet."""
    done = run(top, "rev-parse", "--verify", "--quiet", "--end-of-options", "HEAD^{commit}")
    sha = done.stdout.decode("ascii", "replace").strip()
    return sha if done.returncode == 0 and sha else None


def git_dir_and_head(top: Path) -> tuple[Path, str] | None:
    """This work tree's git directory and HEAD's commit, from one ``git`` process; None when
    git cannot say (not a repository, no commit yet)."""
    done = run(top, "rev-parse", "--git-dir", "--verify", "--quiet", "HEAD^{commit}")
    lines = done.stdout.decode("utf-8", "surrogateescape").splitlines()
    if done.returncode != 0 or len(lines) != 2 or len(lines[1]) not in (40, 64):
        return None
    return (top / lines[0]).resolve(), lines[1]


def commits_between(top: Path, older: str, newer: str) -> int | None:
    """How many commits ``newer`` is ahead of ``older``; None when ``older`` is unknown
    or not an ancestor of ``newer`` (history was rewritten), or git cannot say."""
    if run(top, "merge-base", "--is-ancestor", older, newer).returncode != 0:
        return None  # 1: not an ancestor; 128: an unknown commit
    done = run(top, "rev-list", "--count", f"{older}..{newer}")
    if done.returncode != 0:
        return None
    return int(done.stdout.strip() or 0)


def resolve(repo: GitRepo, rev: str) -> str:
    """The full sha of the commit ``rev`` names; ``GitError`` if it names none."""
    done = run(repo.top, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}")
    sha = done.stdout.decode("ascii", "replace").strip()
    if done.returncode != 0 or not sha:
        raise GitError(f"git: {rev!r} does not name a commit in this repository")
    return sha


def head_info(repo: GitRepo) -> CommitInfo:
    """HEAD's commit (full sha), author and author time, asked in one process (``resolve``
    and ``commit_info`` of ``HEAD`` together); ``GitError`` if HEAD names no commit."""
    done = run(repo.top, *_INFO_ARGS, "--end-of-options", "HEAD^{commit}", "--")
    records = done.stdout.decode("utf-8", "replace").strip().split("\n")
    if done.returncode != 0 or len(records) != 1 or records[0].count("\x00") != 2:
        raise GitError("git: 'HEAD' does not name a commit in this repository")
    return _commit_info(records[0])


def commit_exists(repo: GitRepo, sha: str) -> bool:
    """Whether ``sha`` is a commit this repository still has."""
    try:
        resolve(repo, sha)
    except GitError:
        return False
    return True


def is_ancestor(repo: GitRepo, older: str, newer: str) -> bool:
    """Whether ``older`` is ``newer`` or one of its ancestors (False when either is unknown)."""
    return run(repo.top, "merge-base", "--is-ancestor", older, newer).returncode == 0


def merge_base(repo: GitRepo, one: str, two: str) -> str | None:
    """The best common ancestor of two commits, None when they share no history."""
    done = run(repo.top, "merge-base", one, two)
    return done.stdout.decode("ascii", "replace").strip() or None if done.returncode == 0 else None


def commit_info(repo: GitRepo, sha: str) -> CommitInfo:
    """Author and author time of a commit."""
    out = output(repo.top, *_INFO_ARGS, sha)
    return _commit_info(out.decode("utf-8", "replace").strip())


def _commit_info(record: str) -> CommitInfo:
    full, author, stamp = record.split("\x00")
    return CommitInfo(full, author, datetime.fromtimestamp(int(stamp), tz=timezone.utc))


def is_shallow(repo: GitRepo) -> bool:
    """Whether the repository is a shallow clone."""
    return (repo.common_dir / "shallow").exists()


def operation_in_progress(repo: GitRepo, *, concluded_merge: bool = True) -> str | None:
    """'merge', 'rebase', 'cherry-pick' or 'revert' when one is stopped half-way; with
    ``concluded_merge=False`` a merge whose commit is made (``MERGE_HEAD`` lingers while
    the post-merge hook runs) is not one."""
    for marker, state in IN_PROGRESS.items():
        if os.path.lexists(repo.git_dir / marker) and (concluded_merge or state != "merge" or not merged(repo)):
            return state
    return None


def merged(repo: GitRepo) -> bool:
    """Whether HEAD contains ``MERGE_HEAD``: the merge is done (its post-merge hook is running)."""
    try:
        heads = (repo.git_dir / "MERGE_HEAD").read_text(encoding="utf-8").split()
    except OSError:
        return False
    return bool(heads) and is_ancestor(repo, heads[0], "HEAD")


def refuse_if_busy(repo: GitRepo, *, index: bool = True) -> None:
    """``RepositoryStateError`` during a merge, rebase, cherry-pick or revert, or (``index``:
    the caller will write the index) while another git process holds ``index.lock``."""
    state = operation_in_progress(repo)
    if state:
        raise RepositoryStateError(f"{repo.top}: a {state} is in progress; finish or abort it first")
    lock = repo.git_dir / "index.lock"
    if index and lock.exists():
        raise RepositoryStateError(
            f"{lock}: index.lock is held by another git process; wait, or remove it if no git is running"
        )


def config_value(top: Path, key: str) -> str | None:
    """The value git's configuration gives ``key`` (every level, the last one set wins), or None."""
    done = run(top, "config", "--get", key)
    return done.stdout.decode("utf-8", "replace").rstrip("\n") if done.returncode == 0 else None


# --- ranges: what changed between two commits, and the commits of a range ----------------


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _pathspec(root: str) -> list[str]:
    return ["--", root] if root else []


# ``ls-files -v`` tags an assume-unchanged entry in lower case, a skip-worktree one with S
_TAGGED_FIRST = re.compile(rb"[a-zS] ")
_TAGGED_NEXT = re.compile(rb"\0[a-zS] ")


def any_unwatched(listing: bytes) -> bool:
    """Whether an ``ls-files -v -z`` listing tags an entry assume-unchanged or skip-worktree.
    The first record is matched on its own and the others after their NUL: one pattern
    with ``(?:\\A|\\0)`` tries both at every byte (~65 ms over 100,000 records, ~3 ms so)."""
    return _TAGGED_FIRST.match(listing) is not None or _TAGGED_NEXT.search(listing) is not None


def work_tree_changes(repo: GitRepo, pathspecs: Sequence[str]) -> list[str] | None:
    """Every path under ``pathspecs`` whose file differs from HEAD or the index, is untracked,
    or is ignored (``git status``, which compares stats and hashes only what it must); None
    when git cannot say: it failed, or an index entry there is marked assume-unchanged or
    skip-worktree (``git status`` does not look at that file, edited or gone)."""
    args = ["status", "--porcelain=v1", "-z", "--untracked-files=all", "--ignored=matching", "--no-renames"]
    done = run(repo.top, *args, "--", *pathspecs)
    if done.returncode != 0:
        return None
    marked = run(repo.top, "ls-files", "-v", "-z", "--", *pathspecs)
    if marked.returncode != 0 or any_unwatched(marked.stdout):
        return None
    return [_decode(record[3:]) for record in done.stdout.split(b"\0") if len(record) > 3]


# diff-tree reads the whole index before comparing two trees (12 MB and ~15 ms at 100k
# stories) only so that attributes can be looked up there, for bare repositories; in a
# work tree they come from its .gitattributes files.  Pointed at an index file that does
# not exist, it reads none: the same output (``git log`` does not read the index at all).
_NO_INDEX = "storysync-no-index"


def diff(repo: GitRepo, older: str, newer: str, root: str = "") -> list[Change]:
    """The files that differ between two commits (a two-point diff, renames detected).

    Never ``A...B``: the merge base would hide deletions after a force-push.
    """
    args = ["--literal-pathspecs", "diff-tree", "-r", "-z", "-M", "--no-abbrev", "--no-commit-id", older, newer]
    no_index = {"GIT_INDEX_FILE": str(repo.git_dir / _NO_INDEX)}
    tokens = output(repo.top, *args, *_pathspec(root), env=no_index).split(b"\0")
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


def log(repo: GitRepo, older: str | None, newer: str, root: str = "") -> list[LogCommit]:
    """The commits of ``older..newer`` (all of ``newer``'s history when ``older`` is None),
    oldest first, each with the paths it changed (renames detected; merges list none)."""
    rev = f"{older}..{newer}" if older else newer
    args = ["--literal-pathspecs", "log", "--reverse", "--date-order", "-z", "--name-status", "-M"]
    args += ["--no-show-signature", f"--format={LOG_FORMAT}", rev, *_pathspec(root)]
    return _parse_log(output(repo.top, *args).split(b"\0"))


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


# --- objects ------------------------------------------------------------------------------


def blob_sizes(repo: GitRepo, shas: Sequence[str]) -> dict[str, int]:
    """Each blob's size in bytes, without reading it (one ``cat-file --batch-check``)."""
    wanted = list(dict.fromkeys(shas))
    if not wanted:
        return {}
    stdin = "".join(f"{sha}\n" for sha in wanted).encode("ascii")
    lines = output(repo.top, "cat-file", "--batch-check", stdin=stdin).splitlines()
    out: dict[str, int] = {}
    for sha, line in zip(wanted, lines, strict=False):
        parts = line.split()
        if len(parts) != 3 or parts[1] != b"blob":
            raise GitError(f"git cat-file: cannot read blob {sha}: {line.decode(errors='replace').strip()}")
        out[sha] = int(parts[2])
    if len(out) != len(wanted):
        raise GitError("git cat-file: fewer answers than blobs asked for")
    return out


def list_tree(repo: GitRepo, commit: str, root: str) -> list[TreeEntry]:
    """Every file under ``root`` in ``commit``'s tree, with mode, blob sha and size."""
    return [_tree_entry(record) for record in list_tree_raw(repo, commit, root).split(b"\0") if record]


def list_tree_raw(repo: GitRepo, commit: str, root: str, sizes: bool = True) -> bytes:
    """``list_tree`` unparsed: ``<mode> <type> <sha> <size>\t<path>`` records, each ended by a NUL.
    Without ``sizes`` the records have no ``<size>``, and the listing costs half as much (git
    opens no blob: ~0.08 s against ~0.19 s at 100,000 files)."""
    size = ("-l",) if sizes else ()
    return output(repo.top, "ls-tree", "-r", "-z", *size, "--full-tree", commit, "--", root or ".")


def tree_entry(record: str) -> TreeEntry:
    """One decoded record of ``list_tree_raw`` (size -1 where the listing has none)."""
    meta, _, path = record.partition("\t")
    mode, _kind, sha, *size = meta.split()
    return TreeEntry(path=path, mode=mode, sha=sha, size=-1 if not size else int(size[0]) if size[0] != "-" else 0)


def tree_entries(repo: GitRepo, commit: str, paths: Sequence[str]) -> list[TreeEntry]:
    """The files among ``paths`` (repository-relative, taken literally) in ``commit``'s tree."""
    out: list[TreeEntry] = []
    for start in range(0, len(paths), _PATHS_PER_CALL):
        chunk = list(paths[start : start + _PATHS_PER_CALL])
        args = ["--literal-pathspecs", "ls-tree", "-z", "-l", "--full-tree", commit, "--", *chunk]
        raw = output(repo.top, *args)
        out.extend(_tree_entry(record) for record in raw.split(b"\0") if record)
    wanted = set(paths)
    return [entry for entry in out if entry.path in wanted and entry.mode != TREE_MODE]


_PATHS_PER_CALL = 500  # keeps a command line far below the system's limit
TREE_MODE = "040000"


def _tree_entry(record: bytes) -> TreeEntry:
    meta, _, path = record.partition(b"\t")
    mode, _kind, sha, size = meta.split()
    return TreeEntry(
        path=path.decode("utf-8", "surrogateescape"),
        mode=mode.decode(),
        sha=sha.decode(),
        size=int(size) if size != b"-" else 0,
    )


# --- branches -------------------------------------------------------------------------------


def branch_tips(repo: GitRepo) -> list[str]:
    """The commits every local and remote-tracking branch points at, each once."""
    out = output(repo.top, "for-each-ref", "--format=%(objectname)", "refs/heads", "refs/remotes")
    return list(dict.fromkeys(out.decode("ascii", "replace").split()))


def tree_paths(repo: GitRepo, commit: str, root: str = "") -> list[str]:
    """The path of every file under ``root`` in ``commit``'s tree (names only: no sizes read)."""
    raw = output(repo.top, "ls-tree", "-r", "-z", "--name-only", "--full-tree", commit, "--", root or ".")
    return [_decode(record) for record in raw.split(b"\0") if record]
