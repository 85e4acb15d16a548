"""``storysync init``: a starter config, the database, and ``.storysync/`` ignored."""

from __future__ import annotations

import click

from storysync.cli.app import App

STARTER = """\
# storysync configuration: every key has a default; see docs/configuration.md.
# root = "."                 # stories root, relative to the repository root
# database = "sqlite:///.storysync/storysync.db"
# schema = "schemas/story.schema.json"
# ignore = ["**/drafts/*"]
# webhook_url = "https://example.invalid/storysync"

[stages]                     # directory = status
refinements = "refinements"
backlog = "backlog"
active = "active"
completed = "completed"
"""


@click.command("init")
@click.pass_obj
def command(app: App) -> int:
    """Write storysync.toml, create the database and ignore .storysync/ in git."""
    top = app.top_level
    config_path = top / "storysync.toml"
    said = []
    if not config_path.exists() and not _has_pyproject_section(top):
        config_path.write_text(STARTER, encoding="utf-8")
        said.append("wrote storysync.toml")
    if _ensure_ignored(top):
        said.append("added .storysync/ to .gitignore")
    app.db.ensure_schema()
    said.append(f"database ready at {app.db.display}")
    app.console.print("storysync: " + "; ".join(said), markup=False)
    return 0


def _has_pyproject_section(top: object) -> bool:
    # local: imported when the command runs: `storysync --help` loads every command module
    from pathlib import Path

    pyproject = Path(str(top)) / "pyproject.toml"
    return pyproject.is_file() and "[tool.storysync]" in pyproject.read_text(encoding="utf-8", errors="replace")


def _ensure_ignored(top: object) -> bool:
    # local: imported when the command runs: `storysync --help` loads every command module
    from pathlib import Path

    gitignore = Path(str(top)) / ".gitignore"
    lines = gitignore.read_text(encoding="utf-8").splitlines() if gitignore.exists() else []
    if any(line.strip() in {".storysync/", ".storysync", "/.storysync/", "/.storysync"} for line in lines):
        return False
    text = "\n".join(lines)
    gitignore.write_text((text + "\n" if text else "") + ".storysync/\n", encoding="utf-8")
    return True
