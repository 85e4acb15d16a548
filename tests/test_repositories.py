"""Several repositories, one team database (issue 16).

Each repository names itself (``repository = "web"`` in its config); its stories,
history, conflicts and sync state live apart from every other repository's, on the
same PostgreSQL server (a schema each) or beside the same SQLite file (a file each).
Every command works on the repository it runs in; ``status`` and ``list`` take
``--all-repositories``.  Two CI jobs of two repositories syncing at once neither
block nor corrupt each other: proven on a real server with real processes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from storysync.config import load_config, scoped_database_url
from storysync.db.database import HEAD_REVISION, Database, lock_keys
from storysync.errors import ConfigError
from tests.conftest import Repo, make_repo

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """One database for several repositories: a SQLite file outside them all, or a real PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'team' / 'storysync.db'}"
    return str(request.getfixturevalue("pg_url"))


def named_repo(path: Path, name: str, url: str) -> Repo:
    """A repository whose config names it and points at the shared database."""
    repo = make_repo(path)
    lines = [f'database = "{url}"']
    if name:
        lines.append(f'repository = "{name}"')
    repo.write("storysync.toml", "\n".join(lines) + "\n")
    return repo


def cli(repo: Repo, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``storysync`` as its own process in ``repo`` (as a CI job runs it)."""
    environ = {k: v for k, v in os.environ.items() if k != "STORYSYNC_DATABASE_URL"}
    return subprocess.run(
        [sys.executable, "-m", "storysync", *args],
        cwd=repo.path,
        capture_output=True,
        text=True,
        check=False,
        env={**environ, **(env or {})},
    )


def listed(repo: Repo, *args: str) -> list[dict[str, object]]:
    done = cli(repo, "list", "--format", "json", *args)
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout))


@pytest.fixture
def web_and_api(tmp_path: Path, shared_url: str) -> tuple[Repo, Repo]:
    """Two repositories sharing one database; both have a story S-1 (ids are per repository)."""
    web = named_repo(tmp_path / "web", "web", shared_url)
    web.story("backlog", "site", "S-1", "login", title="Login page")
    web.story("active", "site", "S-2", "signup", title="Signup")
    web.commit("web stories")
    api = named_repo(tmp_path / "api", "team-api", shared_url)
    api.story("active", "core", "S-1", "auth", title="Auth endpoint")
    api.commit("api stories")
    return web, api


def test_each_repository_sees_only_its_own_stories(web_and_api: tuple[Repo, Repo]) -> None:
    web, api = web_and_api
    assert cli(web, "sync").returncode == 0
    assert cli(api, "sync").returncode == 0

    assert [(s["id"], s["title"]) for s in listed(web)] == [("S-1", "Login page"), ("S-2", "Signup")]
    assert [(s["id"], s["title"]) for s in listed(api)] == [("S-1", "Auth endpoint")]
    shown = cli(api, "show", "S-1")
    assert shown.returncode == 0
    assert "Auth endpoint" in shown.stdout
    assert "Login page" not in shown.stdout


def test_list_all_repositories_names_each_story_s_repository(web_and_api: tuple[Repo, Repo]) -> None:
    web, api = web_and_api
    for repo in (web, api):
        assert cli(repo, "sync").returncode == 0

    everything = listed(web, "--all-repositories")
    assert [(s["repository"], s["id"], s["title"]) for s in everything] == [
        ("team-api", "S-1", "Auth endpoint"),
        ("web", "S-1", "Login page"),
        ("web", "S-2", "Signup"),
    ]
    active = listed(api, "--all-repositories", "--status", "active")
    assert [(s["repository"], s["id"]) for s in active] == [("team-api", "S-1"), ("web", "S-2")]

    table = cli(web, "list", "--all-repositories")
    assert table.returncode == 0
    assert table.stdout.splitlines()[0].split() == [
        "id",
        "status",
        "backlog",
        "priority",
        "points",
        "assignee",
        "title",
        "repository",
    ]
    assert [line.split()[-1] for line in table.stdout.splitlines()[1:]] == ["team-api", "web", "web"]


def test_status_across_repositories(web_and_api: tuple[Repo, Repo]) -> None:
    web, api = web_and_api
    assert cli(web, "sync").returncode == 0
    assert cli(api, "sync").returncode == 0
    api.story("backlog", "core", "S-2", "tokens", title="Tokens")
    api.commit("one more")  # the api repository is now one commit ahead of its last sync

    done = cli(api, "status", "--all-repositories", "--format", "json")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)["repositories"]
    assert [(r["repository"], r["current"], r["stories"]) for r in rows] == [("team-api", True, 1), ("web", False, 2)]
    assert rows[1]["last_synced_commit"] == web.git("rev-parse", "HEAD")

    own = json.loads(cli(api, "status", "--format", "json").stdout)
    assert own["repository"] == "team-api"
    assert own["stories"] == 1
    assert own["commits_behind"] == 1

    text_out = cli(web, "status", "--all-repositories")
    assert text_out.returncode == 0
    assert "2 repositories in" in text_out.stdout
    assert "* web" in text_out.stdout
    assert "  team-api" in text_out.stdout


def test_an_unnamed_repository_keeps_the_database_s_own_tables(tmp_path: Path, shared_url: str) -> None:
    """A repository without a name uses the tables as they were (upgrades change nothing);
    named ones join it in the same database."""
    old = named_repo(tmp_path / "old", "", shared_url)
    old.story("backlog", "b", "S-1", "one", title="From before names")
    old.commit("stories")
    new = named_repo(tmp_path / "new", "fresh", shared_url)
    new.story("backlog", "b", "S-9", "nine", title="Named")
    new.commit("stories")
    assert cli(old, "sync").returncode == 0
    assert cli(new, "sync").returncode == 0

    db = Database(shared_url)
    with db.read() as conn:  # the unnamed repository's rows are where they always were
        assert conn.execute(text("SELECT id FROM stories")).scalars().all() == ["S-1"]
    db.dispose()
    assert [(s["repository"], s["id"]) for s in listed(new, "--all-repositories")] == [(None, "S-1"), ("fresh", "S-9")]


def test_new_picks_the_next_id_of_this_repository_only(web_and_api: tuple[Repo, Repo]) -> None:
    web, api = web_and_api
    assert cli(web, "sync").returncode == 0
    assert cli(api, "sync").returncode == 0
    made = cli(api, "new", "--backlog", "core", "--title", "Rate limits", "--prefix", "S")
    assert made.returncode == 0, made.stderr
    assert [s["id"] for s in listed(api)] == ["S-1", "S-2"]  # S-2 is web's too, but not in this repository
    assert made.stdout.strip() == "S-2"

    exported = cli(api, "export")  # writes this repository's DB-side story, and nothing into the other
    assert exported.returncode == 0, exported.stderr
    assert (api.path / "backlog" / "core").glob("S-2-*.md")
    assert "Rate limits" in next((api.path / "backlog" / "core").glob("S-2-*.md")).read_text(encoding="utf-8")
    assert web.git("status", "--porcelain") == ""
    assert [s["title"] for s in listed(web)] == ["Login page", "Signup"]
    doctor = cli(api, "doctor")
    assert "(repository team-api: its own tables in the shared database)" in doctor.stdout
    assert "PASS  last sync: in step with HEAD" in doctor.stdout


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('"Web"', "lowercase letters"),
        ('"9lives"', "starts with a letter"),
        ('"a.b"', "lowercase letters"),
        ("7", "lowercase letters"),
        ('"public"', "keeps for itself"),
        ('"pg_stories"', "keeps for itself"),
    ],
)
def test_a_bad_repository_name_is_a_config_error(tmp_path: Path, value: str, message: str) -> None:
    (tmp_path / "storysync.toml").write_text(f"repository = {value}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=message) as raised:
        load_config(tmp_path)
    assert str(tmp_path / "storysync.toml") in str(raised.value)


def test_the_repository_scopes_the_url_and_nothing_else() -> None:
    assert scoped_database_url("sqlite:////srv/team/storysync.db", "web") == "sqlite:////srv/team/storysync.web.db"
    assert scoped_database_url("sqlite:////srv/team/stories", "web") == "sqlite:////srv/team/stories.web"
    assert scoped_database_url("sqlite:////srv/team/storysync.db", "") == "sqlite:////srv/team/storysync.db"
    pg = scoped_database_url("postgresql+psycopg://u:p%40ss@db:5432/team?sslmode=require", "team-api")
    assert pg == "postgresql+psycopg://u:p%40ss@db:5432/team?sslmode=require&options=-csearch_path%3Dteam_api"
    kept = scoped_database_url("postgresql+psycopg://u@db/team?options=-c%20work_mem%3D64MB", "web")
    assert kept == "postgresql+psycopg://u@db/team?options=-c%20work_mem%3D64MB%20-csearch_path%3Dweb"
    assert len({*lock_keys(None), *lock_keys("web"), *lock_keys("team_api")}) == 6


@contextmanager
def _disposing(engine: Engine) -> Iterator[None]:
    try:
        yield
    finally:
        engine.dispose()


def _stories(repo: Repo, prefix: str, count: int) -> None:
    for i in range(1, count + 1):
        repo.story("backlog", "b", f"{prefix}-{i}", f"s{i}", title=f"{prefix} story {i}")
    repo.commit(f"{count} stories")


@pytest.mark.postgres
def test_two_repositories_sync_into_one_postgresql_at_once(tmp_path: Path, pg_url: str) -> None:
    """Two CI jobs, two repositories, one server, the same moment: both finish, each with its own rows."""
    web = named_repo(tmp_path / "web", "web", pg_url)
    api = named_repo(tmp_path / "api", "api", pg_url)
    _stories(web, "S", 300)
    _stories(api, "S", 200)

    for round_ in range(2):
        if round_:  # the second round: incremental syncs of a move in each, again at once
            for repo in (web, api):
                (repo.path / "active" / "b").mkdir(parents=True)
            web.git("mv", "backlog/b/S-1-s1.md", "active/b/S-1-s1.md")
            web.commit("S-1 started")
            api.git("mv", "backlog/b/S-2-s2.md", "active/b/S-2-s2.md")
            api.commit("S-2 started")
        jobs = [
            subprocess.Popen(
                [sys.executable, "-m", "storysync", "sync", "--trigger", "ci"],
                cwd=repo.path,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env={k: v for k, v in os.environ.items() if k != "STORYSYNC_DATABASE_URL"},
            )
            for repo in (web, api)
        ]
        for job in jobs:
            _, err = job.communicate(timeout=120)
            assert job.returncode == 0, err

    engine = create_engine(pg_url)
    with _disposing(engine), engine.connect() as conn:
        for schema, count, active in (("web", 300, "S-1"), ("api", 200, "S-2")):
            conn.execute(text("SELECT set_config('search_path', :schema, false)"), {"schema": schema})
            assert conn.execute(text("SELECT count(*) FROM stories")).scalar() == count
            moved = conn.execute(text("SELECT story_id, to_status FROM status_history WHERE from_status IS NOT NULL"))
            assert moved.all() == [(active, "active")]
            runs = conn.execute(text("SELECT outcome FROM sync_runs ORDER BY id")).scalars().all()
            assert runs == ["ok", "ok"]
        assert conn.execute(text("SELECT to_regclass('public.stories')")).scalar() is None  # nothing unscoped


@pytest.mark.postgres
def test_a_repository_s_lock_does_not_hold_up_another(tmp_path: Path, pg_url: str) -> None:
    """While one repository's sync holds its run lock, another repository's sync goes
    ahead; a second sync of the same repository waits for it (and gives up at the timeout)."""
    web = named_repo(tmp_path / "web", "web", pg_url)
    api = named_repo(tmp_path / "api", "api", pg_url)
    _stories(web, "W", 3)
    _stories(api, "A", 3)
    assert cli(web, "sync").returncode == 0  # creates web's schema

    holder = create_engine(pg_url).connect()
    holder.execute(text("SELECT pg_advisory_lock(:key)"), {"key": lock_keys("web")[1]})  # a web sync is running
    try:
        started = time.monotonic()
        other = cli(api, "sync", env={"STORYSYNC_LOCK_TIMEOUT": "20"})
        assert other.returncode == 0, other.stderr
        assert time.monotonic() - started < 15

        same = cli(web, "sync", env={"STORYSYNC_LOCK_TIMEOUT": "2"})
        assert same.returncode == 3
        assert "lock" in same.stderr
    finally:
        holder.close()
        holder.engine.dispose()


@pytest.mark.postgres
def test_a_named_repository_s_schema_is_migrated_in_place(pg_url: str) -> None:
    """An older storysync's tables in a repository's schema are upgraded there, not beside it."""
    url = scoped_database_url(pg_url, "web")
    engine = create_engine(pg_url)
    with _disposing(engine), engine.begin() as conn:
        conn.execute(text("CREATE SCHEMA web"))
    old = Database(url)
    old.upgrade("0008")  # as storysync 0.2 left it
    old.dispose()

    db = Database(url)
    db.ensure_schema()
    assert db.schema_revision() == HEAD_REVISION
    db.dispose()
    with _disposing(engine), engine.connect() as conn:
        named = conn.execute(text("SELECT table_schema || '.' || table_name FROM information_schema.tables"))
        tables = set(named.scalars())
    assert {"web.stories", "web.branch_stories", "web.alembic_version"} <= tables
    assert not {t for t in tables if t.startswith("public.")}
