"""The click group of ``storysync``: global options, and subcommands imported on first use.

Kept apart from ``storysync.cli.main`` so that a plain pre-commit hook command line
(``storysync.cli.fast``) runs without importing click at all.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import click

from storysync.cli.app import App
from storysync.cli.registry import _RUN, COMMANDS


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = COMMANDS.get(cmd_name)
        if module is None:
            return None
        loaded = importlib.import_module(f"storysync.cli.commands.{module}")
        command: click.Command = loaded.command
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="storysync")
@click.option(
    "--repo",
    "repo",
    type=click.Path(file_okay=False, path_type=Path),
    help="Repository to work in (default: the one containing the current directory).",
)
@click.option("--db", "db", metavar="URL", help="Database URL (overrides STORYSYNC_DATABASE_URL and the config).")
@click.option(
    "--config",
    "config",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Config file (default: storysync.toml or [tool.storysync] in pyproject.toml).",
)
@click.option("-v", "--verbose", "verbose", count=True, help="Say more.")
@click.option("-q", "--quiet", "quiet", is_flag=True, help="Say only what went wrong.")
@click.option(
    "--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True, help="Log record format."
)
@click.option("--log-file", type=click.Path(dir_okay=False, path_type=Path), help="Also write logs to this file.")
@click.pass_context
def cli(
    ctx: click.Context,
    repo: Path | None,
    db: str | None,
    config: Path | None,
    verbose: int,
    quiet: bool,
    log_format: str,
    log_file: Path | None,
) -> None:
    """Keep Markdown story files in git and a SQL database in step."""
    app = App(
        repo_arg=repo,
        db_flag=db,
        config_file=config,
        verbosity=-1 if quiet else verbose,
        log_format=log_format,
        log_file=log_file,
    )
    ctx.obj = app
    ctx.call_on_close(app.close)
    # local: logging is set up once the options are read
    from storysync.log import setup_logging

    setup_logging(app.verbosity, log_format, log_file)
    _RUN["logging"] = True
