"""``validate --staged`` sees what a commit removes: a deleted, renamed or retyped story file.

A story another story depends on may leave the index in many ways (``git rm``,
``git rm --cached``, a rename that changes its id, a move out of the stories
layout, a symlink in its place, an edit that no longer parses).  The commit would
leave a dangling ``depends_on``, which ``validate`` of the whole tree and a full
sync refuse; the hook must refuse it too, at the same ``path:line:col`` with the
same message, even when nothing else is staged.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from storysync.check.index import IndexSource
from storysync.check.validate import validate_paths
from storysync.config import load_config
from storysync.errors import Diagnostic
from tests.conftest import Repo, story_text

AUTH = "refinements/api/API-1-auth.md"  # backlog_repo: WEB-1 depends on API-1
DANGLING = "backlog/web/WEB-1-login.md:5:14: depends_on: no story has id 'API-1'"


def _whole_index(repo: Repo) -> list[str]:
    """What ``validate`` reports for every story file of the index (the tree a commit would make)."""
    config = load_config(repo.path)
    source = IndexSource(config)
    try:
        diags: list[Diagnostic] = validate_paths(config, source, None).diagnostics
    finally:
        source.close()
    return [str(d) for d in diags]


def _hook(repo: Repo, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str], str]:
    code = repo.run("validate", "--staged", *args)
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


def _git_rm(repo: Repo) -> None:
    repo.git("rm", "-q", AUTH)


def _git_rm_cached(repo: Repo) -> None:
    repo.git("rm", "-q", "--cached", AUTH)  # the file stays on disk, untracked


def _rename_to_another_id(repo: Repo) -> None:
    repo.git("mv", AUTH, "refinements/api/API-7-auth.md")
    repo.write("refinements/api/API-7-auth.md", story_text("API-7", title="Auth API, renumbered"))
    repo.git("add", "-A")


def _move_out_of_the_layout(repo: Repo) -> None:
    (repo.path / "plans").mkdir()
    repo.git("mv", AUTH, "plans/API-1-auth.md")  # not at story depth: no longer a story


def _symlink_in_its_place(repo: Repo) -> None:
    (repo.path / AUTH).unlink()
    os.symlink("../../completed/api/API-2-health.md", repo.path / AUTH)
    repo.git("add", "-A")


def _edit_that_does_not_parse(repo: Repo) -> None:
    repo.write(AUTH, "---\nid: API-1\ntitle: [unclosed\n---\n")
    repo.git("add", "-A")


REMOVALS: dict[str, Callable[[Repo], None]] = {
    "git rm": _git_rm,
    "git rm --cached": _git_rm_cached,
    "rename to another id": _rename_to_another_id,
    "move out of the layout": _move_out_of_the_layout,
    "symlink in its place": _symlink_in_its_place,
    "edit that does not parse": _edit_that_does_not_parse,
}


@pytest.mark.parametrize("removal", REMOVALS.values(), ids=REMOVALS.keys())
def test_a_staged_removal_reports_the_dangling_dependency_as_validate_does(
    backlog_repo: Repo, capsys: pytest.CaptureFixture[str], removal: Callable[[Repo], None]
) -> None:
    removal(backlog_repo)
    whole = _whole_index(backlog_repo)
    assert DANGLING in whole
    code, lines, _ = _hook(backlog_repo, capsys)
    assert code == 1
    assert lines == whole  # the same lines: message and position, and nothing else


def test_a_deletion_alone_is_checked(backlog_repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    """Nothing but the deletion is staged: once '0 story files valid', now the dependent's entry."""
    backlog_repo.git("rm", "-q", AUTH)
    code, lines, err = _hook(backlog_repo, capsys)
    assert (code, lines) == (1, [DANGLING])
    assert "1 error in 1 file (1 file checked)" in err
    code, lines, _ = _hook(backlog_repo, capsys, "--format", "github")
    assert code == 1
    assert lines == [
        "::error file=backlog/web/WEB-1-login.md,line=5,col=14,title=storysync missing-dependency::"
        "depends_on: no story has id 'API-1'"
    ]


def test_a_deletion_with_its_dependents_fixed_passes(backlog_repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    backlog_repo.git("rm", "-q", AUTH)
    backlog_repo.story("backlog", "web", "WEB-1", "login", title="Login page", priority="high")
    backlog_repo.git("add", "-A")
    assert _hook(backlog_repo, capsys)[:2] == (0, [])
    backlog_repo.git("reset", "-q", "--hard")
    backlog_repo.git("rm", "-q", AUTH, "backlog/web/WEB-1-login.md")  # the dependent goes too
    assert _hook(backlog_repo, capsys)[:2] == (0, [])


def test_moves_that_keep_the_id_and_deletions_nobody_depends_on_pass(
    backlog_repo: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    (backlog_repo.path / "active" / "api").mkdir(parents=True)
    backlog_repo.git("mv", AUTH, "active/api/API-1-auth.md")  # a stage move: the id stays
    backlog_repo.git("mv", "active/web/WEB-2-signup.md", "active/web/WEB-2-sign-up.md")  # a new slug
    backlog_repo.git("rm", "-q", "completed/api/API-2-health.md")  # nobody depends on API-2
    code, lines, err = _hook(backlog_repo, capsys)
    assert (code, lines) == (0, [])
    assert "2 story files valid" in err


def test_a_dependency_spelled_with_an_escape_is_found(backlog_repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    """YAML reads ``"API\\x2d1"`` as API-1: the text search also takes files with a backslash."""
    backlog_repo.write(
        "backlog/web/WEB-5-escaped.md", '---\nid: WEB-5\ntitle: Escaped\ndepends_on: ["API\\x2d1"]\n---\n'
    )
    backlog_repo.write("backlog/web/WEB-6-slash.md", story_text("WEB-6", title="A \\ in the body only"))
    backlog_repo.commit("escaped dependency")
    backlog_repo.git("rm", "-q", AUTH)
    code, lines, _ = _hook(backlog_repo, capsys)
    assert code == 1
    assert lines == [DANGLING, "backlog/web/WEB-5-escaped.md:4:14: depends_on: no story has id 'API-1'"]
    assert lines == _whole_index(backlog_repo)


def test_given_paths_check_only_those_paths(backlog_repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    """``validate --staged PATH...`` checks the named files, as before; the whole staged change
    (deletions included) is checked when no PATH is given, as the hooks run it."""
    backlog_repo.git("rm", "-q", AUTH)
    path = backlog_repo.story("backlog", "web", "WEB-3", "new", title="New")
    backlog_repo.git("add", path)
    assert _hook(backlog_repo, capsys, path)[:2] == (0, [])
    assert _hook(backlog_repo, capsys)[:2] == (1, [DANGLING])
