"""A real, throwaway PostgreSQL 15 server for the tests.

``PgServer.start()`` runs ``initdb`` into a temporary directory, picks a free
loopback port, and starts the server with ``pg_ctl`` (listening on 127.0.0.1
only, its unix socket in the temporary directory, fsync off for speed).  The
server refuses to run as root, so when the tests run as root every server
command runs as the ``postgres`` user through ``runuser`` with an argument list.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

PG_BIN_DIRS = (Path("/usr/lib/postgresql/15/bin"),)
SERVER_USER = "postgres"
FAST_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "100",
    "shared_buffers": "32MB",
    "log_min_messages": "warning",
}


class PgUnavailable(Exception):
    """The server binaries, the ``postgres`` user or the driver are missing."""


def find_bin_dir() -> Path:
    """The directory holding ``initdb`` and ``pg_ctl`` (PATH first, then the Debian location)."""
    found = shutil.which("initdb")
    candidates = [Path(os.path.realpath(found)).parent] if found else []
    candidates += list(PG_BIN_DIRS)
    for candidate in candidates:
        if (candidate / "initdb").is_file() and (candidate / "pg_ctl").is_file():
            return candidate
    raise PgUnavailable("PostgreSQL server binaries (initdb, pg_ctl) not found; install postgresql-15")


def check_driver() -> None:
    """Raise ``PgUnavailable`` unless psycopg (the ``postgres`` extra) imports."""
    try:
        import psycopg  # noqa: F401
    except ImportError as exc:
        raise PgUnavailable("psycopg not installed; pip install 'storysync[postgres]'") from exc


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _as_server_user() -> list[str]:
    if os.geteuid() != 0:
        return []
    try:
        import pwd

        pwd.getpwnam(SERVER_USER)
    except KeyError as exc:
        raise PgUnavailable(f"running as root and there is no {SERVER_USER!r} user to run the server") from exc
    runuser = shutil.which("runuser")
    if runuser is None:
        raise PgUnavailable("running as root and runuser is missing")
    return [runuser, "-u", SERVER_USER, "--"]


@dataclass
class PgServer:
    """One running server; ``url(name)`` is a SQLAlchemy URL for a database on it."""

    bin_dir: Path
    base: Path
    port: int
    prefix: list[str]

    @property
    def data_dir(self) -> Path:
        return self.base / "data"

    @property
    def log_file(self) -> Path:
        return self.base / "server.log"

    @classmethod
    def start_new(cls) -> PgServer:
        """initdb into a fresh temporary directory and start a server on a free port."""
        check_driver()
        bin_dir = find_bin_dir()
        prefix = _as_server_user()
        base = Path(tempfile.mkdtemp(prefix="storysync-pg-"))
        if prefix:
            shutil.chown(base, SERVER_USER, SERVER_USER)
        server = cls(bin_dir, base, free_port(), prefix)
        server._run("initdb", "-D", str(server.data_dir), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        server._configure()
        server.start()
        return server

    @classmethod
    @contextmanager
    def running(cls) -> Iterator[PgServer]:
        """A new server (``start_new``) for the ``with`` block, destroyed after it."""
        server = cls.start_new()
        try:
            yield server
        finally:
            server.destroy()

    def _run(self, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [*self.prefix, str(self.bin_dir / tool), *args],
            capture_output=True,
            text=True,
            check=False,
            cwd=self.base,
            env={**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"},
            timeout=120,
        )
        if done.returncode != 0:
            log = self.log_file.read_text(errors="replace")[-2000:] if self.log_file.exists() else ""
            raise RuntimeError(f"{tool} {' '.join(args)} failed ({done.returncode}): {done.stderr}{done.stdout}{log}")
        return done

    def _configure(self) -> None:
        settings = {**FAST_SETTINGS, "port": str(self.port), "unix_socket_directories": f"'{self.base}'"}
        with (self.data_dir / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write("\n# storysync tests\n")
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())

    def start(self) -> None:
        """Start (or restart) the server and wait until it accepts connections."""
        self._run("pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_file), "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``immediate`` is a crash: no shutdown checkpoint)."""
        self._run("pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "-t", "60", "stop")

    def is_running(self) -> bool:
        """Whether pg_ctl sees a live postmaster."""
        done = subprocess.run(
            [*self.prefix, str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "status"],
            capture_output=True,
            check=False,
            cwd=self.base,
        )
        return done.returncode == 0

    def url(self, database: str = "postgres", password: str | None = None) -> str:
        """A ``postgresql+psycopg://`` URL for ``database`` over TCP on 127.0.0.1."""
        auth = f"postgres:{password}" if password else "postgres"
        return f"postgresql+psycopg://{auth}@127.0.0.1:{self.port}/{database}"

    def _admin(self, statement: str, database: str) -> None:
        """Run ``statement`` with ``{}`` replaced by the quoted identifier ``database``."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(sql.SQL(statement).format(sql.Identifier(database)))

    def version(self) -> str:
        """The server's version, as ``SHOW server_version`` says it (e.g. ``15.18 (Debian 15.18-0+deb12u1)``)."""
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres") as conn:
            row = conn.execute("SHOW server_version").fetchone()
        return str(row[0]) if row else "unknown"

    def create_database(self) -> str:
        """A new, empty database; its name (a fresh identifier, never from test data)."""
        name = f"t_{uuid.uuid4().hex[:16]}"
        self._admin("CREATE DATABASE {} TEMPLATE template0 STRATEGY file_copy", name)
        return name

    def drop_database(self, name: str) -> None:
        """Drop a test database, closing any connection still open on it."""
        if self.is_running():
            self._admin("DROP DATABASE IF EXISTS {} WITH (FORCE)", name)

    @contextmanager
    def database(self) -> Iterator[str]:
        """The URL of a new, empty database for the ``with`` block, dropped after it."""
        name = self.create_database()
        try:
            yield self.url(name)
        finally:
            self.drop_database(name)

    def destroy(self) -> None:
        """Stop the server if it runs and remove its directory."""
        try:
            if self.is_running():
                self.stop("immediate")
        finally:
            shutil.rmtree(self.base, ignore_errors=True)


def start_or_skip() -> PgServer:
    """A started server.  When PostgreSQL or its driver is missing the test is
    skipped with the reason, except under CI (``CI`` set), where it fails."""
    try:
        return PgServer.start_new()
    except PgUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required when CI is set: {exc}", pytrace=False)
        pytest.skip(f"PostgreSQL not available: {exc}")
