"""Options several commands share."""

from __future__ import annotations

import click

FORMAT_TEXT_JSON = click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True, help="Output format."
)
