"""The command line: exit codes, output formats, help, plain output when piped, end to end."""

from __future__ import annotations

import importlib
import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import click
import pytest
from rich.console import Console

from storysync.cli import main as cli
from storysync.cli.progress import progress_bar
from storysync.cli.registry import COMMANDS
from tests.conftest import Repo, run_cli_subprocess

ANSI = "\x1b["


def bad_story(repo: Repo) -> None:
    repo.write("backlog/web/WEB-3-bad.md", "---\nid: WEB-3\ntitle: T\npoints: many\n---\n")


# --- exit codes ------------------------------------------------------------------------------------


def test_exit_0_when_valid(backlog_repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    assert backlog_repo.run("validate") == 0
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err == "storysync: 4 story files valid\n"


def test_exit_1_when_invalid(backlog_repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    bad_story(backlog_repo)
    assert backlog_repo.run("validate") == 1
    out = capsys.readouterr()
    assert out.out == "backlog/web/WEB-3-bad.md:4:9: points: 'many' is not of type 'integer', 'null'\n"
    assert out.err == "storysync: 1 error in 1 file (5 files checked); fix them and run again\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["no-such-command"], "No such command 'no-such-command'"),
        (["sync", "--no-such-flag"], "No such option"),
        (["validate", "--format", "xml"], "Invalid value for '--format'"),
        (["sync", "--trigger", "cron"], "Invalid value for '--trigger'"),
        (["show"], "Missing argument 'ID'"),
    ],
)
def test_exit_2_for_usage_errors(
    backlog_repo: Repo, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert backlog_repo.run(*args) == 2
    assert message in capsys.readouterr().err


def test_exit_2_for_an_unknown_id(backlog_repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    assert backlog_repo.run("-q", "sync") == 0
    capsys.readouterr()
    assert backlog_repo.run("show", "NOPE-1") == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("storysync: error: ")
    assert "NOPE-1" in line


def test_exit_2_for_bad_config(backlog_repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    backlog_repo.write("storysync.toml", "databse = 'typo'\n")
    assert backlog_repo.run("status") == 2
    [line] = capsys.readouterr().err.splitlines()
    assert "unknown key(s) databse" in line


def test_exit_3_for_an_unreachable_database_path(
    backlog_repo: Repo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert backlog_repo.run("--db", f"sqlite:///{tmp_path}", "sync") == 3
    [line] = capsys.readouterr().err.splitlines()
    assert line == f"storysync: error: {tmp_path}: database path is a directory, not a file"


def test_exit_3_for_a_git_failure(backlog_repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    assert backlog_repo.run("sync", "--full", "--to", "no-such-revision") == 3
    assert capsys.readouterr().err.splitlines() == [
        "storysync: error: git: 'no-such-revision' does not name a commit in this repository"
    ]


def test_exit_3_outside_a_git_repository(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plain = tmp_path / "not-a-repo"
    plain.mkdir()
    assert cli.main(["--repo", str(plain), "sync"]) == 3
    [line] = capsys.readouterr().err.splitlines()
    assert line == f"storysync: error: {plain}: not a git repository (run 'git init' first)"


def test_unexpected_failure_is_one_line_and_exit_3(
    backlog_repo: Repo, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An internal bug still ends in one line (the traceback goes to the log file)."""
    import storysync.check.validate

    def explode(*_: object, **__: object) -> None:
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(storysync.check.validate, "validate_paths", explode)
    assert backlog_repo.run("validate") == 3
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("storysync: internal error: ZeroDivisionError: boom (traceback in ")


# --- output formats ----------------------------------------------------------------------------------


def test_json_format(backlog_repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    bad_story(backlog_repo)
    backlog_repo.write("backlog/web/WEB-4-worse.md", "---\nid: WEB-4\n---\n")
    assert backlog_repo.run("validate", "--format", "json") == 1
    out = capsys.readouterr()
    assert out.err == ""
    assert json.loads(out.out) == {
        "ok": False,
        "files": 6,
        "errors": [
            {
                "path": "backlog/web/WEB-3-bad.md",
                "line": 4,
                "col": 9,
                "code": "schema",
                "message": "points: 'many' is not of type 'integer', 'null'",
            },
            {
                "path": "backlog/web/WEB-4-worse.md",
                "line": 2,
                "col": 1,
                "code": "schema",
                "message": "missing required key 'title'",
            },
        ],
    }
    assert backlog_repo.run("validate", "--format", "json", "active/web/WEB-2-signup.md") == 0
    assert json.loads(capsys.readouterr().out) == {"ok": True, "files": 1, "errors": []}


def test_github_format(backlog_repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    bad_story(backlog_repo)
    backlog_repo.write("backlog/web/WEB-5-a,b.md", "---\nid: WEB-5\ntitle: T\ntitle: U\n---\n")
    assert backlog_repo.run("validate", "--format", "github") == 1
    assert capsys.readouterr().out.splitlines() == [
        "::error file=backlog/web/WEB-3-bad.md,line=4,col=9,title=storysync schema::"
        "points: 'many' is not of type 'integer', 'null'",
        "::error file=backlog/web/WEB-5-a%2Cb.md,line=4,col=1,title=storysync duplicate-key::"
        "duplicate key 'title' (first at line 3, column 1); keep one of them",
    ]


def test_status_and_show_json(backlog_repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    assert backlog_repo.run("-q", "sync") == 0
    head = backlog_repo.git("rev-parse", "HEAD")
    capsys.readouterr()
    assert backlog_repo.run("status", "--format", "json") == 0
    status = json.loads(capsys.readouterr().out)
    assert status["stories"] == 4
    assert status["last_synced_commit"] == head
    assert status["head"] == head
    assert status["commits_behind"] == 0
    assert backlog_repo.run("show", "WEB-1", "--format", "json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["id"] == "WEB-1"
    assert shown["depends_on"] == ["API-1"]
    assert shown["path"] == "backlog/web/WEB-1-login.md"


# --- help and output ----------------------------------------------------------------------------------


def test_every_command_has_help_text(capsys: pytest.CaptureFixture[str]) -> None:
    assert len(COMMANDS) >= 5
    for name, module in COMMANDS.items():
        command = importlib.import_module(f"storysync.cli.commands.{module}").command
        assert isinstance(command, click.Command), name
        assert command.help, f"{name} has no help text"
        assert command.help.strip(), f"{name} has no help text"
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden:
                assert param.help, f"{name} {param.opts} has no help text"
        assert cli.main([name, "--help"]) == 0, name
        out = capsys.readouterr().out
        assert f"Usage: storysync {name}" in out
        assert " ".join(command.help.split()[:6]) in " ".join(out.split())
    assert cli.main(["--help"]) == 0
    top = capsys.readouterr().out
    for name in COMMANDS:
        assert name in top


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    import storysync

    assert cli.main(["--version"]) == 0
    assert storysync.__version__ in capsys.readouterr().out


def test_progress_bar_only_on_a_terminal() -> None:
    with progress_bar(Console(file=io.StringIO()), "reading") as advance:
        assert advance is None
    terminal = io.StringIO()
    with progress_bar(Console(file=terminal, force_terminal=True, width=80), "reading") as advance:
        assert advance is not None
        advance(3)
    with progress_bar(Console(file=io.StringIO(), force_terminal=True, quiet=True), "reading") as advance:
        assert advance is None


def test_plain_output_when_piped(backlog_repo: Repo) -> None:
    bad_story(backlog_repo)
    backlog_repo.commit("bad")
    done = run_cli_subprocess(backlog_repo, "sync")
    assert done.returncode == 1
    assert ANSI not in done.stdout
    assert ANSI not in done.stderr
    assert done.stdout == "backlog/web/WEB-3-bad.md:4:9: points: 'many' is not of type 'integer', 'null'\n"
    assert done.stderr.splitlines()[-1] == "storysync: nothing was written; fix the files above (or use --keep-going)"


# --- end to end, as a hook runs it ---------------------------------------------------------------------


def test_end_to_end_as_subprocesses(backlog_repo: Repo) -> None:
    init = run_cli_subprocess(backlog_repo, "init")
    assert init.returncode == 0, init.stderr
    assert (backlog_repo.path / "storysync.toml").is_file()
    assert ".storysync/" in (backlog_repo.path / ".gitignore").read_text()
    backlog_repo.commit("config")
    validate = run_cli_subprocess(backlog_repo, "validate")
    assert validate.returncode == 0, validate.stdout + validate.stderr
    synced = run_cli_subprocess(backlog_repo, "sync")
    assert synced.returncode == 0, synced.stderr
    assert "4 created" in synced.stderr
    status = run_cli_subprocess(backlog_repo, "status")
    assert status.returncode == 0
    assert "in step with HEAD" in status.stdout
    show = run_cli_subprocess(backlog_repo, "show", "API-1")
    assert show.returncode == 0
    assert "Auth API" in show.stdout
    missing = run_cli_subprocess(backlog_repo, "show", "API-77")
    assert missing.returncode == 2
    assert len(missing.stderr.splitlines()) == 1


def run_python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        env=os.environ,
    )


def test_library_use_in_a_fresh_interpreter(backlog_repo: Repo) -> None:
    done = run_python(
        """
        from pathlib import Path
        import storysync
        config = storysync.load_config(Path("."))
        db = storysync.Database(config.database)
        result = storysync.sync(config, db, storysync.open_repo(Path(".")), storysync.SyncOptions(full=True))
        print(result.exit_code, ",".join(result.created))
        import storysync.ingest.run  # importing the module does not shadow storysync.sync()
        again = storysync.sync(config, db, storysync.open_repo(Path(".")))
        print(again.exit_code, len(again.created), len(again.updated))
        """,
        backlog_repo.path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["0 API-1,API-2,WEB-1,WEB-2", "0 0 0"]


def test_import_and_validate_stay_light(backlog_repo: Repo) -> None:
    """``import storysync`` and the validate path load neither SQLAlchemy nor GitPython."""
    done = run_python(
        """
        import sys
        import storysync
        assert "sqlalchemy" not in sys.modules and "git" not in sys.modules, "import storysync"
        from storysync.cli.main import main
        code = main(["-q", "validate"])
        heavy = sorted(m for m in ("sqlalchemy", "git", "alembic") if m in sys.modules)
        print(code, heavy)
        """,
        backlog_repo.path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0 []"


def test_validate_a_missing_path_is_exit_2(backlog_repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    assert backlog_repo.run("validate", "backlog/web/WEB-9-gone.md") == 2
    assert capsys.readouterr().err == "backlog/web/WEB-9-gone.md: no such file\n"


def test_validate_a_non_story_path_is_skipped_with_a_notice(
    backlog_repo: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    backlog_repo.write("README.md", "# Stories\n")
    backlog_repo.write("backlog/notes.md", "loose notes\n")
    assert backlog_repo.run("validate", "README.md", "backlog/notes.md", "active/web/WEB-2-signup.md") == 0
    err = capsys.readouterr().err.splitlines()
    assert "storysync: README.md: not a story file, skipped" in err
    assert "storysync: backlog/notes.md: not a story file, skipped" in err
    assert err[-1] == "storysync: 1 story file valid"


def test_validate_staged_accepts_a_staged_deletion(backlog_repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    backlog_repo.git("rm", "-q", "completed/api/API-2-health.md")
    assert backlog_repo.run("validate", "--staged", "completed/api/API-2-health.md") == 0
    assert "no such file" not in capsys.readouterr().err
