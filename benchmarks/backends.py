"""Where a benchmark's databases live: SQLite files in the run's scratch directory,
or databases on one throwaway PostgreSQL server (``tests/pg.py``).

A scenario names its databases (``synced.db``) and asks for their URL or for a
fresh, empty one; which backend holds them is the runner's choice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from tests.pg import PgServer

SQLITE, POSTGRESQL = "sqlite", "postgresql"
BACKENDS = (SQLITE, POSTGRESQL)
# what is measured on a server: the loads and writes (status, list, the hook and
# validate are SQLite-only rows; validate and the floors do not use storysync's database)
SERVER_SCENARIOS = frozenset({"full_sync", "incremental_sync", "export", "export_commit"})


class Databases(Protocol):
    """A backend's named databases."""

    backend: str

    def url(self, name: str) -> str:
        """The URL of database ``name`` (created empty on first use)."""
        ...

    def fresh(self, name: str) -> str:
        """Database ``name`` emptied (its old contents gone); its URL."""
        ...

    def close(self) -> None:
        """Remove every database made here."""
        ...


@dataclass
class SQLiteFiles:
    """SQLite files in ``directory`` (a temporary directory, removed by its owner)."""

    directory: Path
    backend: str = SQLITE

    def url(self, name: str) -> str:
        return f"sqlite:///{self.directory / name}"

    def fresh(self, name: str) -> str:
        remove_sqlite(self.directory / name)
        return self.url(name)

    def close(self) -> None:
        pass


def remove_sqlite(path: Path) -> None:
    """A SQLite database file and its journals."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


@dataclass
class ServerDatabases:
    """Databases on a running PostgreSQL server: each name is a ``CREATE DATABASE``,
    dropped again by ``fresh`` (then created anew) and by ``close``."""

    server: PgServer
    backend: str = POSTGRESQL
    names: dict[str, str] = field(default_factory=dict)  # the scenario's name -> the server's

    def url(self, name: str) -> str:
        if name not in self.names:
            self.names[name] = self.server.create_database()
        return self.server.url(self.names[name])

    def fresh(self, name: str) -> str:
        if name in self.names:
            self.server.drop_database(self.names.pop(name))
        return self.url(name)

    def close(self) -> None:
        while self.names:
            self.server.drop_database(self.names.popitem()[1])


def parse_backends(text: str) -> list[str]:
    """``sqlite,postgresql`` as a list, in the given order; an unknown name raises ``ValueError``."""
    backends = list(dict.fromkeys(b.strip() for b in text.split(",") if b.strip()))
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown or not backends:
        raise ValueError(f"--backend: {', '.join(unknown) or 'none given'}; choose from {', '.join(BACKENDS)}")
    return backends
