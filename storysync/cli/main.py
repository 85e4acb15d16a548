"""``storysync`` command line: parse arguments, call the library, report, return a code.

Commands live one a module in ``storysync/commands/`` and are imported only when
run, so a hook pays for what it uses.  ``main`` is the one error handler.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any

from storysync.cli.registry import _RUN, COMMANDS
from storysync.errors import EXIT_RUNTIME, EXIT_USAGE, StorysyncError


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; every expected error is one line on stderr and an exit code."""
    # local: click, logging and the hook path load only for the command line that needs them
    from storysync.cli import fast as fastcli

    _RUN["logging"] = False
    args = sys.argv[1:] if argv is None else argv
    hook = fastcli.parse(args)
    try:
        if hook is None and fastcli.nothing_to_do(args):  # a post-merge/-checkout/-rewrite hook, in step
            return 0
        return fastcli.run(hook, _RUN) if hook is not None else _click_main(argv)
    except KeyboardInterrupt:
        sys.stderr.write("storysync: interrupted\n")
        return 130
    except BrokenPipeError:  # the reader went away (``| head``): exit 1 quietly, as click does
        _quiet_closed_output()
        return 1
    except StorysyncError as exc:
        # local: click, logging and the hook path load only for the command line that needs them
        from storysync.log import shown

        sys.stderr.write(f"storysync: error: {shown(str(exc))}\n")
        _log_failure(argv, exc, exc.exit_code, internal=False)
        return exc.exit_code
    except Exception as exc:  # an unexpected failure: one line here, the traceback in the log
        # local: click, logging and the hook path load only for the command line that needs them
        from storysync.log import shown

        sys.stderr.write(f"storysync: internal error: {type(exc).__name__}: {shown(str(exc))} ({_crash_log(exc)})\n")
        _log_failure(argv, exc, EXIT_RUNTIME, internal=True)
        return EXIT_RUNTIME


def _crash_log(exc: Exception) -> str:
    """Where the traceback went, or why it could not be written (never a second crash)."""
    # local: click, logging and the hook path load only for the command line that needs them
    from storysync.log import log_crash

    try:
        return f"traceback in {log_crash(exc)}"
    except Exception as failure:  # the internal error is what the user must see
        return f"the traceback could not be written: {failure}"


def _quiet_closed_output() -> None:
    """Point stdout at ``/dev/null`` so the interpreter's last flush cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    with contextlib.suppress(AttributeError, ValueError, OSError):  # no real descriptor behind stdout
        os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _click_main(argv: list[str] | None) -> int:
    """Any command line but the plain hook's: parsed and run by click."""
    # local: click, logging and the hook path load only for the command line that needs them
    import click

    from storysync.cli.group import cli

    try:
        result: Any = cli.main(args=argv, prog_name="storysync", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        return EXIT_USAGE
    except click.exceptions.Abort:
        sys.stderr.write("storysync: interrupted\n")
        return 130
    return int(result or 0)


def _log_failure(argv: list[str] | None, exc: BaseException, code: int, internal: bool) -> None:
    """Log a failed command when this run set up logging; a logging failure is never fatal."""
    if not _RUN["logging"]:
        return
    args = sys.argv[1:] if argv is None else argv
    command = next((a for a in args if a in COMMANDS), None)
    # local: click, logging and the hook path load only for the command line that needs them
    from storysync.log import log_failure

    with contextlib.suppress(Exception):  # the error is already on the terminal
        log_failure(command, exc, code, internal)


if __name__ == "__main__":  # pragma: no cover
    from storysync.cli.main import main as importable_main  # the module whose _RUN the click group sets

    sys.exit(importable_main())
