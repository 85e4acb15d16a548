"""A database URL that does not parse is a configuration error (exit 2) for every
command, doctor included: one line, credentials hidden, no traceback."""

from __future__ import annotations

import json

import pytest

from tests.conftest import Repo

SECRET = "Hidden-Pw-42"
BAD_PORT = f"postgresql+psycopg://ci:{SECRET}@db.internal:notaport/stories?sslpassword=Also-{SECRET}"


@pytest.mark.parametrize(
    "command", [["status"], ["sync"], ["show", "WEB-1"], ["runs"], ["export", "--dry-run"], ["doctor"]]
)
def test_a_non_numeric_port_exits_2_on_every_command(
    backlog_repo: Repo, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    capsys.readouterr()
    assert backlog_repo.run("--db", BAD_PORT, *command) == 2
    out, err = capsys.readouterr()
    assert SECRET not in out + err
    assert "invalid database URL" in out + err
    assert "internal error" not in err
    assert "Traceback" not in out + err


def test_doctor_names_the_bad_url_in_its_config_check_and_goes_on(
    backlog_repo: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert backlog_repo.run("--db", BAD_PORT, "doctor", "--format", "json") == 2
    payload = json.loads(capsys.readouterr().out)
    checks = {c["name"]: c for c in payload["checks"]}
    assert checks["config"]["status"] == "fail"
    assert checks["config"]["message"].startswith("invalid database URL 'postgresql+psycopg://ci:***@db.internal")
    assert "STORYSYNC_DATABASE_URL" in checks["config"]["fix"]
    assert checks["database"]["status"] == "skip"
    assert checks["stories root"]["status"] == "pass"  # the checks that need no database still run
    assert SECRET not in json.dumps(payload)


def test_a_webhook_url_with_a_non_numeric_port_is_a_config_error(
    backlog_repo: Repo, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STORYSYNC_WEBHOOK_URL", "https://hooks.example.invalid:notaport/x")
    assert backlog_repo.run("sync") == 0  # a notification problem never fails a sync
    capsys.readouterr()
    assert backlog_repo.run("notify") == 2
    err = capsys.readouterr().err
    assert "must be an http:// or https:// URL with a host and a numeric port" in err
    assert "internal error" not in err
