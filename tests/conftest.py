"""Shared fixtures: real git repositories in tmp_path, story files, the CLI in-process."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import settings

from storysync.cli.main import main
from tests.pg import PgServer, start_or_skip

# CI runs the same Hypothesis examples every time (a red run is about the change, not
# the draw); a run without CI set, such as a local run or ``-m slow``, draws new ones.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Ada Author",
    "GIT_AUTHOR_EMAIL": "ada@example.invalid",
    "GIT_COMMITTER_NAME": "Ada Author",
    "GIT_COMMITTER_EMAIL": "ada@example.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
}


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No user git config, no inherited storysync settings, no user cache folder."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    for key, value in GIT_ENV.items():
        monkeypatch.setenv(key, value)
    for key in (
        "STORYSYNC_DATABASE_URL",
        "STORYSYNC_WEBHOOK_URL",
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_INDEX_FILE",
        "XDG_CACHE_HOME",  # crash logs go to the test's HOME
    ):
        monkeypatch.delenv(key, raising=False)


def story_text(
    story_id: str,
    title: str = "A story",
    body: str = "Some words.\n",
    **fields: object,
) -> str:
    """A story file's text with ``id``, ``title`` and any other frontmatter fields."""
    lines = ["---", f"id: {story_id}", f"title: {title}"]
    for key, value in fields.items():
        if isinstance(value, list):
            lines.append(f"{key}: [{', '.join(map(str, value))}]")
        else:
            lines.append(f"{key}: {value}")
    lines.append("---")
    return "\n".join(lines) + "\n" + body


@dataclass
class Repo:
    """A real git repository in a temporary directory."""

    path: Path
    env: dict[str, str] = field(default_factory=dict)

    def git(self, *args: str, check: bool = True) -> str:
        done = subprocess.run(
            ["git", *args], cwd=self.path, capture_output=True, text=True, check=False, env={**os.environ, **self.env}
        )
        if check and done.returncode != 0:
            raise AssertionError(f"git {' '.join(args)} failed: {done.stderr}")
        return done.stdout.strip()

    def write(self, rel: str, text: str | bytes) -> Path:
        target = self.path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            target.write_bytes(text)
        else:
            target.write_bytes(text.encode("utf-8"))
        return target

    def story(self, stage: str, backlog: str, story_id: str, slug: str = "story", **fields: object) -> str:
        """Write a story file; returns its repo-relative path."""
        rel = f"{stage}/{backlog}/{story_id}-{slug}.md"
        self.write(rel, story_text(story_id, **fields))  # type: ignore[arg-type]
        return rel

    def commit(self, message: str = "change", *, all_files: bool = True) -> str:
        if all_files:
            self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD")

    def run(self, *args: str) -> int:
        """Run the CLI in-process in this repository."""
        return main(["--repo", str(self.path), *args])

    @property
    def db_path(self) -> Path:
        return self.path / ".storysync" / "storysync.db"

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.db_path}"


def make_repo(path: Path) -> Repo:
    path.mkdir(parents=True, exist_ok=True)
    repo = Repo(path)
    repo.git("init", "-q", "-b", "main")
    repo.git("config", "user.name", "Ada Author")
    repo.git("config", "user.email", "ada@example.invalid")
    repo.git("config", "commit.gpgsign", "false")
    repo.write(".gitignore", ".storysync/\n")
    return repo


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    """An empty git repository with ``.storysync/`` ignored."""
    return make_repo(tmp_path / "stories repo")


@pytest.fixture
def backlog_repo(repo: Repo) -> Repo:
    """A committed repository with a few stories across two backlogs."""
    repo.story("backlog", "web", "WEB-1", "login", title="Login page", priority="high", depends_on=["API-1"])
    repo.story("active", "web", "WEB-2", "signup", title="Signup", points=3)
    repo.story("refinements", "api", "API-1", "auth", title="Auth API", tags=["auth", "security"])
    repo.story("completed", "api", "API-2", "health", title="Health check", created="2026-01-05")
    repo.commit("initial stories")
    return repo


def run_cli_subprocess(repo: Repo, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``storysync`` as a separate process, as a hook would."""
    return subprocess.run(
        [sys.executable, "-m", "storysync", "--repo", str(repo.path), *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def chdir_repo(repo: Repo, monkeypatch: pytest.MonkeyPatch) -> Repo:
    monkeypatch.chdir(repo.path)
    return repo


# a real PostgreSQL server is started for the "postgres" param (see tests/pg.py and pg_url below)
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def any_db(request: pytest.FixtureRequest, repo: Repo, monkeypatch: pytest.MonkeyPatch) -> str:
    """A database URL for each backend under test, set as STORYSYNC_DATABASE_URL.

    On PostgreSQL, ``Repo.db_url`` returns the same URL for the test's duration, so
    a module written against ``repo.db_url`` runs on both backends with
    ``pytestmark = pytest.mark.usefixtures("any_db")``.
    """
    if request.param == "sqlite":
        url = repo.db_url
    else:
        url = str(request.getfixturevalue("pg_url"))
        monkeypatch.setattr(Repo, "db_url", property(lambda _self: url))
    monkeypatch.setenv("STORYSYNC_DATABASE_URL", url)
    return url


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A real PostgreSQL 15 server for the whole run; skipped when unavailable, but a failure in CI."""
    server = start_or_skip()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    """A URL to a new, empty PostgreSQL database, dropped after the test."""
    with pg_server.database() as url:
        yield url
