"""The documentation matches the code: the CLI reference is the real help text, links
resolve, every command and config key named exists, and every error message the
troubleshooting page explains is one the code can print."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from storysync.cli import docgen
from storysync.cli.group import cli
from storysync.cli.registry import COMMANDS
from storysync.config import KNOWN_KEYS

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
OURS = (
    "index.md",
    "quickstart.md",
    "concepts.md",
    "story-format.md",
    "configuration.md",
    "notifications.md",
    "operations.md",
    "troubleshooting.md",
)
# Messages that come from git, SQLite or PostgreSQL rather than storysync's own code.
FOREIGN_MESSAGES = {"password authentication failed", "attempt to write a readonly database"}
LINK = re.compile(r"\]\(([^)#\s]+\.md)(#[^)]*)?\)")


def source_text() -> str:
    """All of storysync's Python source, whitespace collapsed (messages span lines)."""
    text = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "storysync").rglob("*.py"))
    return re.sub(r"\"\s*\n\s*f?\"", "", text)


def test_cli_reference_is_the_current_help_text() -> None:
    current = (DOCS / "cli.md").read_text(encoding="utf-8")
    assert current == docgen.render(), "docs/cli.md is out of date: run python -m storysync.cli.docgen"
    for name in COMMANDS:
        assert f"## storysync {name}\n" in current


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_cli_reference_matches_what_help_prints(name: str) -> None:
    """Word for word (line wrapping aside) what ``storysync NAME --help`` prints."""
    section = (DOCS / "cli.md").read_text(encoding="utf-8").split(f"## storysync {name}\n", 1)[1]
    documented = section.split("```text\n", 1)[1].split("```", 1)[0]
    printed = CliRunner().invoke(cli, [name, "--help"], prog_name="storysync").output
    assert documented.split() == printed.split()


def test_docgen_check_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(docgen, "DOCS", tmp_path)
    assert docgen.main(["--check"]) == 1
    assert docgen.main([]) == 0
    assert docgen.main(["--check"]) == 0
    (tmp_path / "cli.md").write_text("stale\n", encoding="utf-8")
    assert docgen.main(["--check"]) == 1


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_help_text(name: str) -> None:
    result = CliRunner().invoke(cli, [name, "--help"])
    assert result.exit_code == 0, result.output
    summary = result.output.split("\n\n")[1].strip()
    assert len(summary) > 10, f"'storysync {name}' has no help text"


@pytest.mark.parametrize("page", OURS)
def test_relative_links_resolve(page: str) -> None:
    text = (DOCS / page).read_text(encoding="utf-8")
    for target, _anchor in LINK.findall(text):
        if "://" in target:
            continue
        assert (DOCS / target).is_file(), f"docs/{page} links to missing {target}"


GLOBAL_WITH_VALUE = {"--repo", "--db", "--config", "--log-format", "--log-file"}


def commands_in(code: str) -> set[str]:
    """The subcommand of every ``storysync …`` command line in a piece of code."""
    found: set[str] = set()
    for segment in re.split(r"[\n;&|(]|\brun: ", code):
        tokens = segment.strip().removeprefix("$ ").split()
        if not tokens or tokens[0] != "storysync":
            continue
        tokens = tokens[1:]
        while tokens and tokens[0].startswith("-"):
            tokens = tokens[2:] if tokens[0] in GLOBAL_WITH_VALUE else tokens[1:]
        if tokens and re.fullmatch(r"[a-z][a-z-]*", tokens[0]):
            found.add(tokens[0])
    return found


def code_of(markdown: str) -> str:
    blocks = re.findall(r"^```[a-z]*\n(.*?)^```", markdown, flags=re.MULTILINE | re.DOTALL)
    spans = re.findall(r"`([^`\n]+)`", re.sub(r"^```.*?^```", "", markdown, flags=re.MULTILINE | re.DOTALL))
    return "\n".join(blocks + spans)


@pytest.mark.parametrize("page", OURS)
def test_commands_named_in_the_docs_exist(page: str) -> None:
    named = commands_in(code_of((DOCS / page).read_text(encoding="utf-8")))
    unknown = {n for n in named if n not in COMMANDS}
    assert not unknown, f"docs/{page} names commands that do not exist: {sorted(unknown)}"


def test_the_docs_name_every_command() -> None:
    named = set().union(*(commands_in(code_of((DOCS / p).read_text(encoding="utf-8"))) for p in OURS))
    assert {"init", "sync", "validate", "doctor", "notify", "export", "conflicts"} <= named


def test_configuration_reference_covers_every_key() -> None:
    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", text, flags=re.MULTILINE))
    assert documented >= KNOWN_KEYS
    assert not {k for k in documented if not k.startswith("storysync")} - KNOWN_KEYS
    variables = set(re.findall(r"STORYSYNC_[A-Z_]+", text))
    source = source_text()
    for variable in variables:
        assert variable in source, f"{variable} is documented but storysync never reads it"


def test_troubleshooting_messages_are_real() -> None:
    text = (DOCS / "troubleshooting.md").read_text(encoding="utf-8")
    headings = re.findall(r"^### `(.+)`$", text, flags=re.MULTILINE)
    assert len(headings) >= 30
    source = source_text()
    for message in headings:
        if message in FOREIGN_MESSAGES:
            continue
        for part in message.split("<…>"):
            if len(part.strip()) >= 8:
                assert part in source, f"troubleshooting.md explains {message!r}, which storysync never prints"
