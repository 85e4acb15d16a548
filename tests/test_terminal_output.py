"""Escape sequences in story text never reach the terminal: a title that would write
the clipboard (OSC 52) or set the window title (OSC 0), a body that would clear the
screen, an author name carrying a sequence, are shown escaped (``\\x1b``) in every
human output; ``--format json`` keeps the exact values."""

from __future__ import annotations

import json

import pytest

from storysync.db.writer import update_story
from tests.conftest import Repo
from tests.export_helpers import handles, synced

CLIPBOARD = "\x1b]52;c;cm0gLXJmIH4=\x07"  # OSC 52: put "rm -rf ~" on the clipboard
WINDOW_TITLE = "\x1b]0;owned\x1b\\"  # OSC 0 ended by ST: the terminal's title
C1_CSI = "\x9b2J"  # the 8-bit CSI: clear the screen
CONTROLS = ("\x1b", "\x07", "\x9b")
EVIL_RAW = f"Pay {CLIPBOARD} now{WINDOW_TITLE} {C1_CSI}"
EVIL_YAML = r'"Pay \e]52;c;cm0gLXJmIH4=\a now\e]0;owned\e\\ \x9b2J"'  # the same, as YAML writes it


def raw_controls(text: str) -> list[str]:
    return [c for c in CONTROLS if c in text]


@pytest.fixture(autouse=True)
def _wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tables wide enough to hold every cell on one line."""
    monkeypatch.setenv("COLUMNS", "400")


@pytest.fixture
def evil(repo: Repo) -> Repo:
    """A committed, synced story whose title and body carry terminal escape sequences."""
    repo.write(
        "backlog/web/WEB-1-evil.md",
        f"---\nid: WEB-1\ntitle: {EVIL_YAML}\n---\nLine one \x1b[2J\nLine two\x07\n",
    )
    repo.commit("a story with escape sequences", all_files=True)
    assert repo.run("sync") == 0
    return repo


def test_show_escapes_the_title_and_body_and_json_keeps_them(evil: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert evil.run("show", "WEB-1") == 0
    out = capsys.readouterr().out
    assert raw_controls(out) == []
    assert "Pay \\x1b]52;c;cm0gLXJmIH4=\\x07 now\\x1b]0;owned\\x1b\\ \\x9b2J" in out
    assert "Line one \\x1b[2J" in out
    assert "Line two\\x07" in out
    assert evil.run("show", "WEB-1", "--format", "json") == 0
    story = json.loads(capsys.readouterr().out)
    assert story["title"] == EVIL_RAW
    assert story["body"] == "Line one \x1b[2J\nLine two\x07\n"


def test_history_escapes_an_author_name(repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    repo.story("backlog", "web", "WEB-1", "login", title="Login")
    repo.env = {"GIT_AUTHOR_NAME": "Mallory\x1b]0;owned\x07 Jones"}  # git drops a trailing ST
    repo.commit("by mallory")
    assert repo.run("sync") == 0
    capsys.readouterr()
    assert repo.run("history", "WEB-1") == 0
    out = capsys.readouterr().out
    assert raw_controls(out) == []
    assert "Mallory\\x1b]0;owned\\x07 Jones" in out


def test_conflicts_escape_both_versions(backlog_repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    synced(backlog_repo)
    path = backlog_repo.path / "active/web/WEB-2-signup.md"
    path.write_text(path.read_text().replace("title: Signup", f"title: {EVIL_YAML}"))
    with handles(backlog_repo) as h:
        update_story(h.db, "WEB-2", title=f"API says {CLIPBOARD}")
    assert backlog_repo.run("export") == 1
    capsys.readouterr()
    assert backlog_repo.run("conflicts") == 1
    out = capsys.readouterr().out
    assert raw_controls(out) == []
    assert "API says \\x1b]52;c;" in out


def test_an_error_naming_user_input_is_escaped(backlog_repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    assert backlog_repo.run("sync") == 0
    capsys.readouterr()
    assert backlog_repo.run("show", f"NOPE-1{WINDOW_TITLE}") == 2
    err = capsys.readouterr().err
    assert raw_controls(err) == []
    assert len(err.splitlines()) == 1
