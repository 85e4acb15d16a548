"""Structured logs: one event per sync run, human output unchanged, no password anywhere."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

from storysync.log import redact
from tests.conftest import Repo, run_cli_subprocess

PASSWORD = "Sup3r-S3cret-pw"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def json_lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_json_log_file_has_one_event_per_sync_run_with_counts_and_duration(
    backlog_repo: Repo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "storysync.log"
    assert backlog_repo.run("--log-format", "json", "--log-file", str(log), "sync") == 0
    out = capsys.readouterr()
    assert "storysync: synced" in out.err  # the human summary is still on the terminal
    assert "{" not in out.err
    backlog_repo.git("mv", "backlog/web/WEB-1-login.md", "active/web/WEB-1-login.md")
    backlog_repo.commit("start WEB-1")
    assert backlog_repo.run("--log-format", "json", "--log-file", str(log), "sync", "--trigger", "ci") == 0
    runs = [e for e in json_lines(log) if e.get("event_type") == "sync_run"]
    assert len(runs) == 2
    first, second = runs
    assert (first["outcome"], first["created"], first["files"], first["errors"]) == ("ok", 4, 4, 0)
    assert (second["moved"], second["updated"], second["created"]) == (1, 1, 0)
    assert second["run_id"] == int(str(first["run_id"])) + 1
    assert second["to_commit"] == backlog_repo.git("rev-parse", "HEAD")
    assert (first["trigger"], second["trigger"]) == ("manual", "ci")
    for event in runs:
        assert isinstance(event["duration_ms"], float)
        assert event["duration_ms"] > 0
        assert event["level"] == "info"
        assert str(event["time"]).endswith("+00:00")


def test_invalid_run_is_logged_with_its_error_count(backlog_repo: Repo, tmp_path: Path) -> None:
    backlog_repo.write("backlog/web/WEB-9-bad.md", "---\nid: WEB-9\n---\nno title\n")
    backlog_repo.commit("a bad story")
    log = tmp_path / "run.log"
    assert backlog_repo.run("--log-format", "json", "--log-file", str(log), "sync") == 1
    (event,) = [e for e in json_lines(log) if e.get("event_type") == "sync_run"]
    assert event["outcome"] == "invalid"
    assert event["errors"] == 1
    assert event["created"] == 0


def test_text_log_file_gets_the_event_too(backlog_repo: Repo, tmp_path: Path) -> None:
    log = tmp_path / "text.log"
    assert backlog_repo.run("--log-file", str(log), "sync") == 0
    text = log.read_text(encoding="utf-8")
    assert " INFO sync run 1 ok: 4 files, 4 created" in text


@pytest.mark.parametrize("command", [["status"], ["sync"], ["-v", "sync"], ["doctor"], ["doctor", "--format", "json"]])
def test_database_password_never_printed_or_logged(
    backlog_repo: Repo,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: list[str],
) -> None:
    pytest.importorskip("psycopg")
    monkeypatch.setenv("STORYSYNC_DB_CONNECT_ATTEMPTS", "2")
    url = f"postgresql+psycopg://storysync:{PASSWORD}@127.0.0.1:{free_port()}/stories"
    log = tmp_path / "secret.log"
    code = backlog_repo.run("--db", url, "--log-format", "json", "--log-file", str(log), *command)
    out = capsys.readouterr()
    assert code == (1 if command[0] == "doctor" else 3)
    seen = out.out + out.err + log.read_text(encoding="utf-8")
    assert PASSWORD not in seen
    assert "127.0.0.1" in out.out + out.err  # the message still says where


def test_password_from_environment_not_printed_by_a_hook_style_subprocess(backlog_repo: Repo, tmp_path: Path) -> None:
    pytest.importorskip("psycopg")
    log = tmp_path / "hook.log"
    url = f"postgresql+psycopg://storysync:{PASSWORD}@127.0.0.1:{free_port()}/stories"
    env = {"STORYSYNC_DATABASE_URL": url, "STORYSYNC_DB_CONNECT_ATTEMPTS": "1"}
    done = run_cli_subprocess(backlog_repo, "--log-file", str(log), "sync", "--trigger", "hook", env=env)
    assert done.returncode == 3
    assert PASSWORD not in done.stdout + done.stderr + log.read_text(encoding="utf-8")
    assert "cannot connect" in done.stderr


def test_redact_hides_passwords_in_any_url() -> None:
    assert redact("postgresql+psycopg://u:p%40ss@db:5432/x failed") == "postgresql+psycopg://u:***@db:5432/x failed"
    assert redact("no url here") == "no url here"


def test_a_failed_command_is_logged_once_with_its_exit_code(
    backlog_repo: Repo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A StorysyncError (exit 2) reaches the JSON log file, redacted; the terminal keeps its one line."""
    assert backlog_repo.run("-q", "sync") == 0
    log = tmp_path / "fail.log"
    capsys.readouterr()
    assert backlog_repo.run("--log-format", "json", "--log-file", str(log), "show", "NOPE-1") == 2
    assert len(capsys.readouterr().err.splitlines()) == 1
    (event,) = [e for e in json_lines(log) if e.get("event_type") == "command_failed"]
    assert (event["command"], event["exit_code"], event["level"]) == ("show", 2, "error")
    assert "NOPE-1" in str(event["error"])


def test_an_internal_error_is_logged_with_its_traceback(
    backlog_repo: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import storysync.check.validate

    def explode(*_: object, **__: object) -> None:
        raise ZeroDivisionError(f"boom postgresql://u:{PASSWORD}@db/x")

    monkeypatch.setattr(storysync.check.validate, "validate_paths", explode)
    log = tmp_path / "crash.log"
    assert backlog_repo.run("--log-file", str(log), "validate") == 3
    assert len(capsys.readouterr().err.splitlines()) == 1
    text = log.read_text(encoding="utf-8")
    assert "ERROR validate failed (exit 3): internal error: boom" in text
    assert "Traceback" in text
    assert "ZeroDivisionError" in text
    assert PASSWORD not in text


# --- where logs go when things go wrong ------------------------------------------------------------


def test_a_log_file_in_a_missing_folder_is_a_one_line_usage_error(
    backlog_repo: Repo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "no such folder" / "sync.log"
    assert backlog_repo.run("--log-file", str(log), "sync") == 2
    assert capsys.readouterr().err.splitlines() == [
        f"storysync: error: {log}: cannot open the --log-file: No such file or directory (does its folder exist?)"
    ]
    assert not log.parent.exists()
    assert not backlog_repo.db_path.exists()  # the command did not run


def _internal_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug inside storysync: validation raises what nobody expected."""
    import storysync.check.validate

    def explode(*_: object, **__: object) -> None:
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(storysync.check.validate, "validate_paths", explode)


def _crash_line(repo: Repo, capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    assert repo.run("validate") == 3
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("storysync: internal error: ZeroDivisionError: boom ("), line
    return line


def _temp_dir(monkeypatch: pytest.MonkeyPatch, path: Path) -> Path:
    """The temporary directory Python uses (``tempfile.tempdir``), for this test only."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(path))
    return path


def test_each_crash_log_is_a_new_private_file_in_the_users_cache_and_no_planted_symlink_is_followed(
    backlog_repo: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Someone plants a symlink at the old shared name, ``/tmp/storysync-crash.log``, pointing
    at a file of the user's: a crash writes neither through it nor there."""
    _internal_error(monkeypatch)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    shared_tmp = _temp_dir(monkeypatch, tmp_path / "tmp")
    shared_tmp.mkdir()
    victim = tmp_path / "precious.txt"
    victim.write_text("precious\n")
    (shared_tmp / "storysync-crash.log").symlink_to(victim)
    logs = []
    for _ in range(2):
        line = _crash_line(backlog_repo, capsys)
        assert line.endswith(".log)"), line
        logs.append(Path(line.split("(traceback in ", 1)[1][:-1]))
    first, second = logs
    assert first != second  # one file a crash
    assert first.parent == second.parent == tmp_path / "cache" / "storysync"
    assert first.parent.stat().st_mode & 0o777 == 0o700
    for log in logs:
        assert log.stat().st_mode & 0o777 == 0o600
        text = log.read_text(encoding="utf-8")
        assert "Traceback" in text
        assert "ZeroDivisionError: boom" in text
    assert victim.read_text() == "precious\n"
    assert os.listdir(shared_tmp) == ["storysync-crash.log"]


def test_a_crash_folder_owned_by_another_user_is_not_used(
    backlog_repo: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The cache folder belongs to someone else: the traceback goes to a new file of a
    unique name in the temporary directory instead."""
    if os.getuid() != 0:
        pytest.skip("giving a folder to another user needs root")
    _internal_error(monkeypatch)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    foreign = tmp_path / "cache" / "storysync"
    foreign.mkdir(parents=True)
    os.chown(foreign, 65534, 65534)  # nobody's
    own_tmp = _temp_dir(monkeypatch, tmp_path / "tmp")
    own_tmp.mkdir()
    line = _crash_line(backlog_repo, capsys)
    log = Path(line.split("(traceback in ", 1)[1][:-1])
    assert log.parent == own_tmp
    assert log.name.startswith("storysync-crash-")
    assert log.stat().st_mode & 0o777 == 0o600
    assert "ZeroDivisionError: boom" in log.read_text(encoding="utf-8")
    assert os.listdir(foreign) == []


def test_a_crash_log_that_cannot_be_written_still_ends_in_one_line_and_exit_3(
    backlog_repo: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Neither the cache folder (a file is in its way) nor the temporary directory (gone)
    can take the traceback: the internal error is still one line, and says so."""
    _internal_error(monkeypatch)
    in_the_way = tmp_path / "cache"
    in_the_way.write_text("a file, not a folder\n")
    monkeypatch.setenv("XDG_CACHE_HOME", str(in_the_way))
    _temp_dir(monkeypatch, tmp_path / "gone")
    line = _crash_line(backlog_repo, capsys)
    assert "the traceback could not be written" in line, line
