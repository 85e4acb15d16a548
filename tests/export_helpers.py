"""Helpers for the writer/export/conflicts tests: library handles on a test repository."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select, text

from storysync.config import Config, load_config
from storysync.db import tables as m
from storysync.db.database import Database
from storysync.db.writer import StoryWriter, update_story
from storysync.git.repo import open_repo
from tests.conftest import Repo, run_cli_subprocess


@dataclass
class Handles:
    """The config, database and writer of a test repository."""

    repo: Repo
    config: Config
    db: Database
    writer: StoryWriter

    def row(self, story_id: str) -> dict[str, Any]:
        with self.db.read() as conn:
            found = conn.execute(select(m.stories).where(m.stories.c.id == story_id)).first()
        assert found is not None, story_id
        return dict(found._mapping)

    def count(self, table: str, where: str = "1=1", **params: Any) -> int:
        with self.db.read() as conn:
            return int(conn.execute(text(f"SELECT count(*) FROM {table} WHERE {where}"), params).scalar_one())  # noqa: S608

    def rows(self, table: str, where: str = "1=1", **params: Any) -> list[dict[str, Any]]:
        with self.db.read() as conn:
            found = conn.execute(text(f"SELECT * FROM {table} WHERE {where}"), params)  # noqa: S608
            return [dict(r._mapping) for r in found]

    def sql(self, statement: str, **params: Any) -> None:
        with self.db.write() as conn:
            conn.execute(text(statement), params)

    def export(self, *args: str) -> int:
        return self.repo.run("export", *args)


@contextmanager
def handles(repo: Repo, url: str | None = None) -> Iterator[Handles]:
    """Open the repository's database (``url`` or its default SQLite file)."""
    url = url or repo.db_url
    config = load_config(repo.path, db_flag=url)
    db = Database(url)
    try:
        yield Handles(repo, config, db, StoryWriter(db, config))
    finally:
        db.dispose()


def synced(repo: Repo, url: str | None = None) -> None:
    """Sync HEAD into the database (asserting success)."""
    args = ["--db", url] if url else []
    assert repo.run(*args, "sync") == 0


def git_repo(repo: Repo) -> Any:
    return open_repo(repo.path)


def killed_in_pre_commit(repo: Repo) -> Path:
    """``export --commit`` of a DB-side change to WEB-2, SIGKILLed from the pre-commit hook
    while its undo links sit beside the stories; the hook (unlink it to commit again)."""
    hook = repo.write(".git/hooks/pre-commit", "#!/bin/sh\nkill -9 $(awk '{print $4}' /proc/$PPID/stat)\n")
    hook.chmod(0o755)
    with handles(repo) as h:
        update_story(h.db, "WEB-2", points=13)
    killed = run_cli_subprocess(repo, "export", "--commit")
    assert killed.returncode == -9, killed.stderr
    return hook
