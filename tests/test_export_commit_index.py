"""``export --commit`` commits from a scratch index, not with ``git commit --only``.

Each test builds a real repository where the user has their own staged and unstaged
changes, copies it, commits the exported paths in one copy with ``commit_paths`` and
in the other with ``git commit --only`` (what storysync did before), and compares
what the user is left with: the commit's tree and message, the index entry by
entry, and ``git status``.  A refused commit leaves the user's index as it was.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from storysync.errors import GitError
from storysync.export.actions import Action
from storysync.export.commit import SCRATCH_INDEX, IndexFile, commit_message, commit_paths, replace_index
from storysync.git.runner import open_repo
from tests.conftest import Repo


def _user_at_work(repo: Repo) -> list[Action]:
    """Committed stories and notes; the user's staged and unstaged edits; an export's
    update, move (to a non-ASCII, spaced name), creation and deletion on disk."""
    for name in ("a.md", "b.md", "c.md", "d.md", "h.md", "notes.txt", "gone.md"):
        repo.write(f"backlog/web/{name}", f"{name} as committed\n")
    repo.commit("start")
    repo.write("backlog/web/b.md", "b staged by the user\n")
    repo.write("notes.txt", "notes staged by the user\n")
    repo.write("backlog/web/h.md", "h staged by the user\n")
    repo.git("add", "backlog/web/b.md", "notes.txt", "backlog/web/h.md")
    repo.write("backlog/web/c.md", "c edited, not staged\n")
    repo.write("untracked.txt", "the user's own\n")
    # what the export wrote
    repo.write("backlog/web/a.md", "a exported\n")
    repo.write("backlog/web/h.md", "h exported over the staged edit\n")
    (repo.path / "backlog/web/d.md").rename(repo.path / "backlog/web/d \u00e9t\u00e9.md")
    repo.write("backlog/api/new.md", "a new story\n")
    (repo.path / "backlog/web/gone.md").unlink()
    return [
        Action("WEB-1", "update", 2, "backlog/web/a.md", "backlog/web/a.md"),
        Action("WEB-8", "update", 2, "backlog/web/h.md", "backlog/web/h.md"),
        Action("WEB-4", "move", 2, "backlog/web/d.md", "backlog/web/d \u00e9t\u00e9.md"),
        Action("API-1", "create", 1, None, "backlog/api/new.md"),
        Action("WEB-7", "delete", 3, "backlog/web/gone.md", None),
    ]


def _twin(repo: Repo, tmp_path: Path) -> Repo:
    twin = tmp_path / "twin"
    shutil.copytree(repo.path, twin, symlinks=True)
    return Repo(twin, repo.env)


def _commit_only(repo: Repo, actions: list[Action]) -> None:
    """What export did before: ``git add`` the new files, then ``git commit --only`` the paths."""
    paths = sorted({p for a in actions for p in (a.old_path, a.new_path) if p})
    tracked = set(repo.git("ls-files", "-z", "--", *paths).split("\0")) - {""}
    added = [p for p in paths if p not in tracked and (repo.path / p).exists()]
    repo.git("--literal-pathspecs", "add", "--", *added)
    repo.git("--literal-pathspecs", "commit", "-q", "--only", "-m", commit_message(actions, None), "--", *paths)


def _left(repo: Repo) -> dict[str, str]:
    """What the user sees after the commit."""
    return {
        "tree": repo.git("rev-parse", "HEAD^{tree}"),
        "message": repo.git("log", "-1", "--format=%B"),
        "parents": str(len(repo.git("log", "-1", "--format=%P").split())),
        "index": repo.git("ls-files", "-s", "-z"),
        "status": repo.git("status", "--porcelain=v1", "-z", "--untracked-files=all"),
    }


def test_the_commit_and_index_are_what_git_commit_only_leaves(repo: Repo, tmp_path: Path) -> None:
    actions = _user_at_work(repo)
    twin = _twin(repo, tmp_path)
    sha, parent = commit_paths(open_repo(repo.path), actions, None)
    _commit_only(twin, actions)
    assert _left(repo) == _left(twin)
    assert (sha, parent) == (repo.git("rev-parse", "HEAD"), repo.git("rev-parse", "HEAD~1"))
    assert repo.git("diff", "--cached", "--name-only", "-z").split("\0")[:-1] == ["backlog/web/b.md", "notes.txt"]
    assert not (repo.path / ".git" / SCRATCH_INDEX).exists()


def test_the_first_commit_of_a_repository(repo: Repo, tmp_path: Path) -> None:
    repo.write("backlog/web/a.md", "a exported\n")
    repo.write("backlog/web/b.md", "not the export's\n")
    repo.git("add", "backlog/web/b.md")
    actions = [Action("WEB-1", "create", 1, None, "backlog/web/a.md")]
    twin = _twin(repo, tmp_path)
    commit_paths(open_repo(repo.path), actions, None)
    _commit_only(twin, actions)
    assert _left(repo) == _left(twin)
    assert repo.git("ls-tree", "-r", "--name-only", "HEAD") == "backlog/web/a.md"


def test_an_index_file_named_in_the_environment_is_the_one_updated(
    repo: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    actions = _user_at_work(repo)
    twin = _twin(repo, tmp_path)
    for one in (repo, twin):
        shutil.copyfile(one.path / ".git" / "index", one.path / ".git" / "other-index")
        one.env["GIT_INDEX_FILE"] = ".git/other-index"
    monkeypatch.setenv("GIT_INDEX_FILE", ".git/other-index")  # as git at the top level reads it
    commit_paths(open_repo(repo.path), actions, None)
    _commit_only(twin, actions)
    assert _left(repo) == _left(twin)
    monkeypatch.delenv("GIT_INDEX_FILE")
    repo.env.pop("GIT_INDEX_FILE")
    assert "backlog/web/a.md" in repo.git("diff", "--cached", "--name-only")  # .git/index was not touched


def test_a_refused_commit_leaves_the_index_entry_by_entry(repo: Repo) -> None:
    actions = _user_at_work(repo)
    hook = repo.write(".git/hooks/pre-commit", "#!/bin/sh\necho 'no commits today' >&2\nexit 1\n")
    hook.chmod(0o755)
    before = (repo.git("rev-parse", "HEAD"), repo.git("ls-files", "-s", "-z"))
    with pytest.raises(GitError, match="no commits today"):
        commit_paths(open_repo(repo.path), actions, None)
    assert (repo.git("rev-parse", "HEAD"), repo.git("ls-files", "-s", "-z")) == before
    assert not list((repo.path / ".git").glob(SCRATCH_INDEX + "*"))


def test_the_hook_sees_the_commit_s_files_staged_and_nothing_else(repo: Repo) -> None:
    """As with ``--only``, a pre-commit hook (a validator) sees the exported files as
    staged, and not the user's own staged work."""
    actions = _user_at_work(repo)
    seen = repo.path.parent / "seen.txt"
    hook = repo.write(".git/hooks/pre-commit", f"#!/bin/sh\ngit diff --cached --no-renames --name-only > '{seen}'\n")
    hook.chmod(0o755)
    commit_paths(open_repo(repo.path), actions, None)
    assert seen.read_text(encoding="utf-8").splitlines() == [
        "backlog/api/new.md",
        "backlog/web/a.md",
        '"backlog/web/d \\303\\251t\\303\\251.md"',
        "backlog/web/d.md",
        "backlog/web/gone.md",
        "backlog/web/h.md",
    ]


def test_a_conflicted_file_elsewhere_stays_conflicted_and_out_of_the_commit(repo: Repo) -> None:
    """``git stash pop`` that conflicts leaves unmerged entries and no ``MERGE_HEAD``: the
    scratch index then starts from HEAD's tree alone."""
    repo.write("backlog/web/a.md", "a as committed\n")
    repo.write("notes.txt", "base\n")
    repo.commit("start")
    repo.write("notes.txt", "stashed\n")
    repo.git("stash", "-q")
    repo.write("notes.txt", "committed\n")
    repo.commit("notes")
    assert repo.git("stash", "pop", check=False) is not None
    conflicted = repo.git("ls-files", "-u")
    assert len(conflicted.splitlines()) == 3
    repo.write("backlog/web/a.md", "a exported\n")
    commit_paths(open_repo(repo.path), [Action("WEB-1", "update", 2, "backlog/web/a.md", "backlog/web/a.md")], None)
    assert repo.git("show", "HEAD:backlog/web/a.md") == "a exported"
    assert repo.git("show", "HEAD:notes.txt") == "committed"
    assert repo.git("show", "--name-only", "--format=", "HEAD") == "backlog/web/a.md"
    assert repo.git("ls-files", "-u") == conflicted
    assert repo.git("ls-files", "-s", "backlog/web/a.md").split()[1] == repo.git("rev-parse", "HEAD:backlog/web/a.md")


def _nothing_staged(repo: Repo) -> list[Action]:
    """Committed stories; the export's update, move and creation on disk; the user's
    unstaged edit and untracked file, and nothing staged (the usual case)."""
    for name in ("a.md", "b.md", "c.md", "d.md"):
        repo.write(f"backlog/web/{name}", f"{name} as committed\n")
    repo.commit("start")
    repo.write("backlog/web/c.md", "c edited, not staged\n")
    repo.write("untracked.txt", "the user's own\n")
    repo.write("backlog/web/a.md", "a exported\n")
    (repo.path / "backlog/web/d.md").rename(repo.path / "backlog/web/d \u00e9t\u00e9.md")
    repo.write("backlog/api/new.md", "a new story\n")
    return [
        Action("WEB-1", "update", 2, "backlog/web/a.md", "backlog/web/a.md"),
        Action("WEB-4", "move", 2, "backlog/web/d.md", "backlog/web/d \u00e9t\u00e9.md"),
        Action("API-1", "create", 1, None, "backlog/api/new.md"),
    ]


def test_with_nothing_staged_the_index_becomes_the_scratch_s_copy_and_is_what_commit_only_leaves(
    repo: Repo, tmp_path: Path
) -> None:
    actions = _nothing_staged(repo)
    twin = _twin(repo, tmp_path)
    commit_paths(open_repo(repo.path), actions, None)
    _commit_only(twin, actions)
    assert _left(repo) == _left(twin)
    assert not list((repo.path / ".git").glob("index.lock"))
    assert repo.git("diff", "--cached", "--name-only") == ""


def test_a_split_index_is_left_to_git_and_ends_as_commit_only_leaves_it(repo: Repo, tmp_path: Path) -> None:
    repo.git("config", "core.splitIndex", "true")
    actions = _nothing_staged(repo)
    assert list((repo.path / ".git").glob("sharedindex.*"))
    twin = _twin(repo, tmp_path)
    commit_paths(open_repo(repo.path), actions, None)
    _commit_only(twin, actions)
    assert _left(repo) == _left(twin)


def test_an_index_as_it_was_copied_is_replaced_with_its_mode_and_one_written_since_or_locked_is_not(
    repo: Repo,
) -> None:
    _nothing_staged(repo)
    index, scratch = repo.path / ".git" / "index", repo.path / ".git" / "scratch"
    index.chmod(0o640)
    copied = IndexFile.of(index)
    assert copied is not None
    shutil.copyfile(index, scratch)
    scratched = Repo(repo.path, {**repo.env, "GIT_INDEX_FILE": str(scratch)})
    scratched.git("update-index", "--add", "--", "backlog/api/new.md")
    assert replace_index(index, scratch, copied)
    assert index.read_bytes() == scratch.read_bytes()
    assert index.stat().st_mode & 0o777 == 0o640
    assert repo.git("diff", "--cached", "--name-only") == "backlog/api/new.md"
    copied = IndexFile.of(index)
    assert copied is not None
    repo.git("add", "untracked.txt")  # the user stages something meanwhile
    staged = index.read_bytes()
    assert not replace_index(index, scratch, copied)
    assert index.read_bytes() == staged
    assert not (repo.path / ".git" / "index.lock").exists()
    now = IndexFile.of(index)
    assert now is not None
    (repo.path / ".git" / "index.lock").write_bytes(b"")  # another git holds the lock
    assert not replace_index(index, scratch, now)
    assert index.read_bytes() == staged
    assert (repo.path / ".git" / "index.lock").read_bytes() == b""


@pytest.mark.parametrize("staged", [False, True], ids=["nothing staged", "the user's work staged"])
def test_an_index_that_is_a_symbolic_link_is_written_through_and_stays_one(
    repo: Repo, tmp_path: Path, staged: bool
) -> None:
    """git writes a linked index's target; the scratch index must never be a second name
    for the link (then git would write the user's index while building the scratch)."""
    actions = _user_at_work(repo) if staged else _nothing_staged(repo)
    twin = _twin(repo, tmp_path)  # its index a plain file
    index = repo.path / ".git" / "index"
    elsewhere = tmp_path / "index-elsewhere"
    shutil.move(index, elsewhere)
    index.symlink_to(elsewhere)
    commit_paths(open_repo(repo.path), actions, None)
    _commit_only(twin, actions)
    assert _left(repo) == _left(twin)
    assert index.is_symlink()


@pytest.mark.parametrize("staged", [False, True], ids=["nothing staged", "the user's work staged"])
@pytest.mark.parametrize("mark", ["--assume-unchanged", "--skip-worktree"])
def test_an_exported_file_marked_in_the_index_is_committed_and_unmarked(repo: Repo, mark: str, staged: bool) -> None:
    """``update-index`` keeps an assume-unchanged entry as it was and drops a skip-worktree
    one: unmarked first, the commit holds the export (as ``--only`` does for the first)."""
    actions = _user_at_work(repo) if staged else _nothing_staged(repo)
    repo.git("update-index", mark, "backlog/web/a.md")
    commit_paths(open_repo(repo.path), actions, None)
    assert repo.git("show", "HEAD:backlog/web/a.md") == "a exported"
    assert repo.git("ls-files", "-v", "backlog/web/a.md") == "H backlog/web/a.md"
    assert "backlog/web/a.md" not in repo.git("status", "--porcelain")
    assert not (repo.path / ".git" / "index.lock").exists()


def test_a_scratch_update_index_left_unwritten_is_the_index_already_and_leaves_no_lock(repo: Repo) -> None:
    """When ``update-index`` changes no entry it writes nothing, and the scratch is still a
    second name for the user's index: renaming that onto the index would do nothing and
    leave ``index.lock`` behind, stopping every git command of the user's."""
    _nothing_staged(repo)
    index, scratch = repo.path / ".git" / "index", repo.path / ".git" / "scratch"
    os.link(index, scratch)
    copied = IndexFile.of(index)
    assert copied is not None
    assert replace_index(index, scratch, copied)
    assert not (repo.path / ".git" / "index.lock").exists()
    repo.git("add", "untracked.txt")  # the user's git still works


def test_a_scratch_index_lock_left_by_a_killed_git_does_not_stop_the_next_export(repo: Repo, tmp_path: Path) -> None:
    actions = _nothing_staged(repo)
    (repo.path / ".git" / (SCRATCH_INDEX + ".lock")).write_bytes(b"")  # git killed with an earlier export
    twin = _twin(repo, tmp_path)
    commit_paths(open_repo(repo.path), actions, None)
    _commit_only(twin, actions)
    assert _left(repo) == _left(twin)
    assert not list((repo.path / ".git").glob(SCRATCH_INDEX + "*"))


def test_an_interrupt_while_git_commits_puts_the_index_back(repo: Repo) -> None:
    actions = _nothing_staged(repo)
    before = repo.git("ls-files", "-s", "-z")
    hook = repo.write(".git/hooks/pre-commit", f"#!/bin/sh\nkill -INT {os.getpid()}\nexit 1\n")
    hook.chmod(0o755)
    with pytest.raises(KeyboardInterrupt):
        commit_paths(open_repo(repo.path), actions, None)
    assert repo.git("ls-files", "-s", "-z") == before
    assert not (repo.path / ".git" / "index.lock").exists()
