"""``storysync set ID FIELD=VALUE...``: a DB-side change, as the story API makes it."""

from __future__ import annotations

from typing import Any

import click

from storysync.cli.app import App
from storysync.db.writer import StoryWriter
from storysync.errors import UsageError
from storysync.git.runner import config_value
from storysync.story.parse import load_frontmatter


@click.command("set")
@click.argument("story_id", metavar="ID")
@click.argument("assignments", metavar="FIELD=VALUE...", nargs=-1, required=True)
@click.pass_obj
def command(app: App, story_id: str, assignments: tuple[str, ...]) -> int:
    """Change a story's frontmatter in the database; `storysync export` writes it back.

    VALUE is read as a YAML scalar or flow list (points=5, tags=[a, b]); an
    empty value removes the key.  Keys without a column go to `extra`.
    """
    fields = dict(parse_assignment(story_id, a) for a in assignments)
    app.db.ensure_schema()
    result = StoryWriter(app.db, app.config, author=git_author(app)).update(story_id, fields)
    if result.kind == "unchanged":
        app.console.print(f"storysync: {story_id}: nothing changed", markup=False, soft_wrap=True)
    else:
        changed = ", ".join(result.changed)
        app.console.print(
            f"storysync: {story_id}: {result.kind} ({changed}; revision {result.revision}); "
            "run 'storysync export' to write the file",
            markup=False,
            soft_wrap=True,
        )
    return 0


def git_author(app: App) -> str | None:
    """``Name <email>`` from the repository's git config, recorded as the change's author."""
    name = config_value(app.top_level, "user.name")
    email = config_value(app.top_level, "user.email") if name is not None else None
    return None if name is None or email is None else f"{name} <{email}>"


def parse_assignment(story_id: str, text: str) -> tuple[str, Any]:
    """``FIELD=VALUE`` → (field, value), the value read as YAML by the story parser's rules."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise UsageError(f"{story_id}: expected FIELD=VALUE, got {text!r}")
    if "\n" in raw or "\r" in raw:
        raise UsageError(f"{story_id}: {key}: a value must be one line (use \\n inside double quotes)")
    loaded = load_frontmatter(key, f"value: {raw}\n")
    if isinstance(loaded, list):
        reason = loaded[0].message
        raise UsageError(f"{story_id}: {key}={raw}: {reason}; quote the value, e.g. {key}='{raw}'")
    value = loaded[0].get("value")
    if "#" in raw and "#" not in repr(value):
        raise UsageError(f"{story_id}: {key}={raw}: '#' starts a YAML comment here; quote the value")
    return key, value
