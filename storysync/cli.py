"""``storysync`` command line: parse arguments, call the library, report, return a code.

Commands live one a module in ``storysync/commands/`` and are imported only when
run, so a hook pays for what it uses.  ``main`` is the one error handler.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from pathlib import Path
from typing import Any

import click

from storysync.app import App
from storysync.errors import EXIT_RUNTIME, EXIT_USAGE, StorysyncError

# name -> module in storysync.commands (each defines ``command``)
COMMANDS: dict[str, str] = {
    "init": "init",
    "validate": "validate",
    "sync": "sync",
    "status": "status",
    "show": "show",
    "history": "history",
    "runs": "runs",
    "install-hooks": "install_hooks",
    "run-hook": "run_hook",
    "set": "set",
    "new": "new",
    "export": "export",
    "conflicts": "conflicts",
    "watch": "watch",
    "doctor": "doctor",
    "notify": "notify",
}


# whether this run configured logging (main runs in-process many times in tests)
_RUN: dict[str, bool] = {"logging": False}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = COMMANDS.get(cmd_name)
        if module is None:
            return None
        loaded = importlib.import_module(f"storysync.commands.{module}")
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
    from storysync.log import setup_logging

    setup_logging(app.verbosity, log_format, log_file)
    _RUN["logging"] = True


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; every expected error is one line on stderr and an exit code."""
    _RUN["logging"] = False
    try:
        result: Any = cli.main(args=argv, prog_name="storysync", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        return EXIT_USAGE
    except (click.exceptions.Abort, KeyboardInterrupt):
        sys.stderr.write("storysync: interrupted\n")
        return 130
    except StorysyncError as exc:
        sys.stderr.write(f"storysync: error: {exc}\n")
        _log_failure(argv, exc, exc.exit_code, internal=False)
        return exc.exit_code
    except Exception as exc:  # an unexpected failure: one line here, the traceback in the log
        from storysync.log import log_crash

        where = log_crash(exc)
        sys.stderr.write(f"storysync: internal error: {type(exc).__name__}: {exc} (traceback in {where})\n")
        _log_failure(argv, exc, EXIT_RUNTIME, internal=True)
        return EXIT_RUNTIME
    return int(result or 0)


def _log_failure(argv: list[str] | None, exc: BaseException, code: int, internal: bool) -> None:
    """Log a failed command when this run set up logging; a logging failure is never fatal."""
    if not _RUN["logging"]:
        return
    args = sys.argv[1:] if argv is None else argv
    command = next((a for a in args if a in COMMANDS), None)
    from storysync.log import log_failure

    with contextlib.suppress(Exception):  # the error is already on the terminal
        log_failure(command, exc, code, internal)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
