"""Credentials are never shown, logged or stored: a password in a database URL's
query (``?password=``, ``?sslpassword=``), a webhook's token in its path (Slack's
``/services/T…/B…/TOKEN``, Discord's ``/api/webhooks/ID/TOKEN``), in errors,
``status``, ``doctor``, JSON logs and the ``webhook_state`` table; and hiding them
never mangles an ordinary word ("e***pired")."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select

from storysync.db import tables as m
from storysync.db.database import Database
from storysync.log import redact
from tests.conftest import Repo

SECRET = "Query-Secret-77"
TOKEN = "XyZ123abcDEF456ghiJKL789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def run(repo: Repo, capsys: pytest.CaptureFixture[str], log: Path, *args: str) -> tuple[int, str]:
    """Run the CLI with a JSON log file; its exit code and everything it printed and logged."""
    capsys.readouterr()
    code = repo.run("--log-format", "json", "--log-file", str(log), *args)
    out, err = capsys.readouterr()
    return code, out + err + (log.read_text(encoding="utf-8") if log.exists() else "")


# --- database URLs ---------------------------------------------------------------------------


@pytest.mark.parametrize("param", ["password", "sslpassword"])
@pytest.mark.parametrize("command", [["status"], ["-v", "sync"], ["doctor"], ["doctor", "--format", "json"]])
def test_a_password_in_the_query_is_never_printed_or_logged(
    backlog_repo: Repo,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    param: str,
    command: list[str],
) -> None:
    pytest.importorskip("psycopg")
    monkeypatch.setenv("STORYSYNC_DB_CONNECT_ATTEMPTS", "2")
    url = f"postgresql+psycopg://storysync@127.0.0.1:{free_port()}/stories?{param}={SECRET}"
    code, seen = run(backlog_repo, capsys, tmp_path / "log.json", "--db", url, *command)
    assert code == (1 if command[0] == "doctor" else 3)
    assert SECRET not in seen
    assert f"{param}=***" in seen  # still says which URL it was


@pytest.mark.postgres
def test_status_and_doctor_name_a_reachable_database_without_its_query_password(
    pg_url: str, backlog_repo: Repo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"{pg_url}?password={SECRET}"  # the test server trusts loopback: the password is not needed
    assert backlog_repo.run("--db", url, "sync") == 0
    log = tmp_path / "log.json"
    for command in (["status"], ["status", "--format", "json"], ["doctor"], ["doctor", "--format", "json"]):
        _, seen = run(backlog_repo, capsys, log, "--db", url, *command)
        assert SECRET not in seen, command
        assert "password=***" in seen, command  # the database is named, its password hidden


def test_a_short_password_hides_itself_not_the_letters_of_other_words(
    backlog_repo: Repo, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("psycopg")
    monkeypatch.setenv("STORYSYNC_DB_CONNECT_ATTEMPTS", "1")
    url = f"postgresql+psycopg://storysync:e@127.0.0.1:{free_port()}/stories"
    assert backlog_repo.run("--db", url, "status") == 3
    err = capsys.readouterr().err
    assert "storysync:***@127.0.0.1" in err
    assert "connection to server at" in err
    assert err.rstrip().endswith("Connection refused")
    assert err.count("***") == 1


def test_redaction_hides_every_credential_form_and_no_plain_word() -> None:
    from storysync.log import redact_url

    assert redact_url("postgresql://u:pw@h/db?sslmode=require&password=x&PWD=y&sslpassword=z") == (
        "postgresql://u:***@h/db?sslmode=require&password=***&PWD=***&sslpassword=***"
    )
    assert redact_url("https://api.example/x?access_token=a&api_key=b&X-Amz-Signature=c&page=2") == (
        "https://api.example/x?access_token=***&api_key=***&X-Amz-Signature=***&page=2"
    )
    assert redact_url(f"https://hooks.slack.com/services/T0000001/B0000002/{TOKEN}") == (
        "https://hooks.slack.com/services/T0000001/B0000002/***"
    )
    assert (
        redact_url("https://hooks.slack.com/services/T00/B00/TOKEN") == "https://hooks.slack.com/services/T00/B00/***"
    )
    assert redact_url(f"https://discord.com/api/webhooks/123456789012345678/{TOKEN}-_x") == (
        "https://discord.com/api/webhooks/***/***"
    )
    assert redact_url("https://chat.example/hooks/abc") == "https://chat.example/hooks/***"
    assert redact_url(f"https://ci.example/notify/{TOKEN}/run") == "https://ci.example/notify/***/run"
    assert (
        redact_url("https://ci.example/storysync-notifications/v2") == "https://ci.example/storysync-notifications/v2"
    )
    assert redact_url("postgresql://u@h/storysync_main_2026") == "postgresql://u@h/storysync_main_2026"
    assert redact("dsn: host=db password=hunter2 user=ci") == "dsn: host=db password=*** user=ci"
    words = "token expired; the keyboard tokenizer has a passport, authority over key value pairs"
    assert redact(words) == words


# --- webhooks --------------------------------------------------------------------------------


WEBHOOK_PATHS = [f"/services/T0000001/B0000002/{TOKEN}", f"/api/webhooks/123456789012345678/{TOKEN}"]


def webhook_rows(repo: Repo) -> list[dict[str, Any]]:
    db = Database(repo.db_url)
    try:
        with db.read() as conn:
            return [dict(r._mapping) for r in conn.execute(select(m.webhook_state))]
    finally:
        db.dispose()


@pytest.mark.parametrize("path", WEBHOOK_PATHS)
def test_a_webhook_token_in_the_path_is_never_printed_logged_or_stored(
    backlog_repo: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], path: str
) -> None:
    monkeypatch.setenv("STORYSYNC_WEBHOOK_URL", f"http://127.0.0.1:{free_port()}{path}")  # nothing listens
    monkeypatch.setenv("STORYSYNC_WEBHOOK_BUDGET", "0.3")
    log = tmp_path / "log.json"
    seen = ""
    for command, expected in ((["sync"], 0), (["notify", "--budget", "0.3"], 3), (["doctor"], 1)):
        code, printed = run(backlog_repo, capsys, log, *command)
        assert code == expected, (command, printed)
        seen += printed
    assert TOKEN not in seen
    assert "/***" in seen  # the target is still named
    rows = webhook_rows(backlog_repo)
    assert rows
    assert rows[0]["last_error"]  # the failure was recorded...
    assert TOKEN not in json.dumps(rows, default=str)  # ...without the token, as is the URL


def test_the_migration_hides_tokens_stored_by_an_older_storysync(backlog_repo: Repo) -> None:
    url = f"https://hooks.slack.com/services/T0000001/B0000002/{TOKEN}"
    db = Database(backlog_repo.db_url)
    db.upgrade("0004")  # the schema an older storysync left, with the path stored as it was
    with db.write() as conn:
        conn.execute(
            insert(m.webhook_state).values(
                target="a" * 64, url=url, delivered_seq=3, failures=2, last_error=f"{url}: HTTP 404 Not Found"
            )
        )
    db.dispose()
    assert backlog_repo.run("sync") == 0  # any command upgrades the database in place
    (row,) = webhook_rows(backlog_repo)
    assert row["url"] == "https://hooks.slack.com/services/T0000001/B0000002/***"
    assert row["last_error"] == "https://hooks.slack.com/services/T0000001/B0000002/***: HTTP 404 Not Found"
    assert (row["target"], row["delivered_seq"], row["failures"]) == ("a" * 64, 3, 2)
