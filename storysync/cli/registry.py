"""The command table (name -> module in ``storysync.cli.commands``) and one run's state.

Shared by ``storysync.cli.main`` (the error handler) and ``storysync.cli.group`` (click),
which must not import each other.
"""

from __future__ import annotations

# name -> module in storysync.cli.commands (each defines ``command``)
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
    "list": "list",
    "ready": "ready",
    "blocked": "blocked",
    "deps": "deps",
    "board": "board",
    "report": "report",
    "move": "move",
    "merge-driver": "merge_driver",
}


# whether this run configured logging (main runs in-process many times in tests)
_RUN: dict[str, bool] = {"logging": False}
