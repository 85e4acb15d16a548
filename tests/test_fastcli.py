"""The hook's ``validate --staged`` command line is read without click, with the same results.

``fastcli.parse`` takes only the plain forms and leaves everything else to click;
each scenario here runs once through the fast path and once through click (an
explicit ``--log-format text``, the default, sends it there) and must print the
same and exit the same.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from storysync.cli.fast import HookArgs, parse
from tests.conftest import Repo, story_text


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["validate", "--staged"], HookArgs(None, 0, False, (), "text")),
        (["--repo", "r", "-v", "-v", "validate", "--staged"], HookArgs(Path("r"), 2, False, (), "text")),
        (["-q", "validate", "a.md", "--staged", "b.md"], HookArgs(None, 0, True, ("a.md", "b.md"), "text")),
        (["validate", "--staged", "--format", "json"], HookArgs(None, 0, False, (), "json")),
        (["validate", "--format=github", "--staged", "x/y.md"], HookArgs(None, 0, False, ("x/y.md",), "github")),
    ],
)
def test_plain_hook_command_lines_are_read(argv: list[str], expected: HookArgs) -> None:
    assert parse(argv) == expected


@pytest.mark.parametrize(
    "argv",
    [
        ["validate"],  # not --staged: the working tree, through click
        ["validate", "--staged", "--help"],
        ["--help", "validate", "--staged"],
        ["--version"],
        ["sync"],
        ["validate", "--staged", "--format", "xml"],
        ["validate", "--staged", "--format"],
        ["validate", "--staged", "--format", "json", "--format", "text"],
        ["validate", "--staged", "--", "-odd.md"],
        ["validate", "--staged", "-x"],
        ["validate", "--staged", ""],
        ["--repo", "validate", "--staged"],
        ["--repo", "a", "--repo", "b", "validate", "--staged"],
        ["--repo=a", "validate", "--staged"],
        ["-vq", "validate", "--staged"],
        ["--db", "sqlite://", "validate", "--staged"],
        ["--log-format", "text", "validate", "--staged"],
        ["--log-file", "x.log", "validate", "--staged"],
        ["--config", "c.toml", "validate", "--staged"],
        ["validate", "--staged", "--repo", "r"],
    ],
)
def test_anything_else_is_left_to_click(argv: list[str]) -> None:
    assert parse(argv) is None


def test_a_repo_that_is_a_file_is_left_to_click(tmp_path: Path) -> None:
    afile = tmp_path / "file"
    afile.write_text("x")
    assert parse(["--repo", str(afile), "validate", "--staged"]) is None
    assert parse(["--repo", str(tmp_path / "missing"), "validate", "--staged"]) is not None


def _both_ways(
    repo: Repo, capsys: pytest.CaptureFixture[str], *args: str, before: tuple[str, ...] = ()
) -> tuple[int, str, str]:
    fast_argv = [*before, "validate", "--staged", *args]
    assert parse(["--repo", str(repo.path), *fast_argv]) is not None
    fast = repo.run(*fast_argv), *capsys.readouterr()
    slow = repo.run("--log-format", "text", *fast_argv), *capsys.readouterr()
    assert fast == slow
    return fast


def test_the_fast_path_and_click_report_alike(backlog_repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _both_ways(backlog_repo, capsys)
    assert (code, out, err) == (0, "", "storysync: 0 story files valid\n")
    backlog_repo.story("backlog", "web", "WEB-3", "new", title="New", depends_on=["WEB-2"])
    backlog_repo.write("backlog/web/WEB-4-bad.md", story_text("WEB-2", title="", points=-1, depends_on=["NOPE-9"]))
    backlog_repo.git("add", "-A")
    code, out, err = _both_ways(backlog_repo, capsys)
    assert code == 1
    assert "backlog/web/WEB-4-bad.md" in out
    assert "fix them and run again" in err
    for fmt in ("json", "github", "text"):
        assert _both_ways(backlog_repo, capsys, "--format", fmt)[0] == 1
    assert _both_ways(backlog_repo, capsys, before=("-q",))[2] == ""
    assert _both_ways(backlog_repo, capsys, before=("-v",))[0] == 1
    assert _both_ways(backlog_repo, capsys, "backlog/web/WEB-3-new.md")[:2] == (0, "")
    assert _both_ways(backlog_repo, capsys, "README.md", "no/such.md")[0] == 0


def test_errors_end_the_same_way(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from storysync.cli.main import main

    plain = tmp_path / "not-a-repo"
    plain.mkdir()
    fast = main(["--repo", str(plain), "validate", "--staged"]), *capsys.readouterr()
    slow = main(["--repo", str(plain), "--log-format", "text", "validate", "--staged"]), *capsys.readouterr()
    assert fast == slow
    assert fast[0] == 3
    assert "not a git repository" in fast[2]


def test_the_hook_imports_no_click(backlog_repo: Repo) -> None:
    backlog_repo.story("backlog", "web", "WEB-3", "new", title="New", depends_on=["WEB-2"])
    backlog_repo.git("add", "-A")
    probe = (
        "import sys\n"
        "from storysync.cli.main import main\n"
        "code = main(['--repo', sys.argv[1], 'validate', '--staged'])\n"
        "print(code, 'click' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe, str(backlog_repo.path)], capture_output=True, text=True)
    assert done.stdout.split() == ["0", "False"]
    assert done.stderr == "storysync: 1 story file valid\n"


def test_a_reader_that_goes_away_ends_the_hook_quietly(backlog_repo: Repo) -> None:
    """``storysync validate --staged | head -1``: exit 1 and no traceback, through either path."""
    for n in range(300):
        backlog_repo.write(f"backlog/web/WEB-{n + 10}-bad.md", story_text(f"WEB-{n + 10}", title="", points=-1))
    backlog_repo.git("add", "-A")
    for extra in ([], ["--log-format", "text"]):  # the fast path, then click
        argv = [sys.executable, "-m", "storysync", *extra, "--repo", str(backlog_repo.path), "validate", "--staged"]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdout is not None
        assert proc.stderr is not None
        proc.stdout.close()  # the reader is gone before the first line
        err = proc.stderr.read().decode()
        proc.stderr.close()
        assert proc.wait(timeout=60) == 1, err
        assert "Error" not in err, err
