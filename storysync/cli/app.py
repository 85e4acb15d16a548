"""The command line's shared state: where the repository is, its config and database.

Everything is built on first use, so a command pays only for what it touches
(``validate`` never imports SQLAlchemy; no command imports GitPython).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from storysync.config import Config, load_config
from storysync.errors import GitError
from storysync.git.runner import GitRepo, open_repo

if TYPE_CHECKING:
    from rich.console import Console

    from storysync.db.database import Database


def find_top_level(start: Path) -> Path:
    """The work-tree root above ``start`` (a ``.git`` directory or worktree file)."""
    start = start.resolve()
    for candidate in (start, *start.parents):
        if (candidate / ".git").exists():
            return candidate
    raise GitError(f"{start}: not a git repository (run 'git init' first)")


@dataclass
class App:
    """Global options and lazily built resources for one command."""

    repo_arg: Path | None = None
    db_flag: str | None = None
    config_file: Path | None = None
    verbosity: int = 0
    log_format: str = "text"
    log_file: Path | None = None
    in_hook: bool = False  # a git hook's run: the database gets a few seconds, not minutes
    _db: Database | None = field(default=None, repr=False)

    @cached_property
    def top_level(self) -> Path:
        return find_top_level(self.repo_arg or Path.cwd())

    @cached_property
    def config(self) -> Config:
        return load_config(self.top_level, self.config_file, self.db_flag)

    @cached_property
    def git(self) -> GitRepo:
        """The repository, asked through plain ``git`` processes (``storysync.git.runner``)."""
        return open_repo(self.top_level)

    @property
    def db(self) -> Database:
        if self._db is None:
            # local: keeps SQLAlchemy (~180 ms) off validate --staged and status on SQLite
            from storysync.db.connect import Timeouts
            from storysync.db.database import Database

            self._db = Database(self.config.database, Timeouts.from_env(hook=self.in_hook))
        return self._db

    @cached_property
    def console(self) -> Console:
        # local: keeps rich (~20 ms) off the pre-commit hook, a piped status and a hook's sync
        from rich.console import Console

        # local: SQLAlchemy and rich only for commands that use them (the hook and a piped status do not)
        from storysync.cli.report import output_width

        return Console(stderr=True, highlight=False, quiet=self.verbosity < 0, width=output_width(sys.stderr))

    @cached_property
    def out(self) -> Console:
        # local: keeps rich (~20 ms) off the pre-commit hook, a piped status and a hook's sync
        from rich.console import Console

        # local: SQLAlchemy and rich only for commands that use them (the hook and a piped status do not)
        from storysync.cli.report import output_width

        return Console(highlight=False, soft_wrap=True, width=output_width(sys.stdout))

    def close(self) -> None:
        if self._db is not None:
            self._db.dispose()

    def repo_relative(self, path: str) -> str:
        """A path given on the command line (relative to the cwd) → repo-relative POSIX."""
        absolute = Path(os.path.abspath(path))
        try:
            return absolute.relative_to(self.top_level).as_posix()
        except ValueError:
            return Path(path).as_posix()
