"""Configuration: storysync.toml or [tool.storysync], defaults, errors, database URL precedence."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from storysync.config import Config, default_database_url, load_config
from storysync.errors import ConfigError
from tests.conftest import Repo, run_cli_subprocess


def stderr_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return capsys.readouterr().err.splitlines()


def test_no_config_means_defaults(repo: Repo) -> None:
    config = load_config(repo.path, environ={})
    assert config.source is None
    assert config.root == ""
    assert dict(config.stages) == {s: s for s in ("refinements", "backlog", "active", "completed")}
    assert config.database == f"sqlite:///{repo.path.as_posix()}/.storysync/storysync.db"
    assert config.schema is None
    assert config.ignore == ()
    assert config.webhook_url is None


def test_storysync_toml_read(repo: Repo) -> None:
    (repo.path / "schemas").mkdir()
    (repo.path / "schemas/mine.json").write_text("{}")
    repo.write(
        "storysync.toml",
        'root = "stories"\nschema = "schemas/mine.json"\ndatabase = "sqlite:///x.db"\nignore = ["*/drafts/*"]\n'
        'webhook_url = "http://127.0.0.1:9/hook"\n[stages]\ntodo = "backlog"\ndone = "completed"\n',
    )
    config = load_config(repo.path, environ={})
    assert config.source == repo.path / "storysync.toml"
    assert config.root == "stories"
    assert config.schema == repo.path / "schemas/mine.json"
    assert config.database == f"sqlite:///{repo.path.as_posix()}/x.db"
    assert config.ignore == ("*/drafts/*",)
    assert config.webhook_url == "http://127.0.0.1:9/hook"
    assert dict(config.stages) == {"todo": "backlog", "done": "completed"}
    assert config.root_path == repo.path / "stories"


def test_pyproject_tool_section_read(repo: Repo) -> None:
    repo.write("pyproject.toml", '[project]\nname = "x"\n\n[tool.storysync]\nroot = "docs/stories"\n')
    config = load_config(repo.path, environ={})
    assert config.source == repo.path / "pyproject.toml"
    assert config.root == "docs/stories"


def test_pyproject_without_section_is_no_config(repo: Repo) -> None:
    repo.write("pyproject.toml", '[project]\nname = "x"\n[tool.other]\nkey = 1\n')
    assert load_config(repo.path, environ={}).source is None


def test_storysync_toml_wins_over_pyproject(repo: Repo) -> None:
    repo.write("pyproject.toml", '[tool.storysync]\nroot = "from-pyproject"\n')
    repo.write("storysync.toml", 'root = "from-toml"\n')
    assert load_config(repo.path, environ={}).root == "from-toml"


def test_explicit_config_file(repo: Repo, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere.toml"
    other.write_text('root = "x"\n')
    repo.write("storysync.toml", 'root = "ignored"\n')
    assert load_config(repo.path, other, environ={}).root == "x"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            'root = "a"\ncolour = "blue"\n',
            "unknown key(s) colour; known: database, ignore, merge, repository, root, schema, stages, webhook_url",
        ),
        ("root = \n", "invalid TOML: "),
        ('root = "/abs"\n', "'root' must be a path inside the repository, got '/abs'"),
        ('root = "../up"\n', "'root' must be a path inside the repository, got '../up'"),
        ("root = 3\n", "'root' must be a string path"),
        ("stages = 3\n", "'stages' must be a table of directory = status"),
        ('[stages]\n"a/b" = "x"\n', "stage 'a/b' must map a directory name to a status"),
        ('ignore = "*.md"\n', "'ignore' must be a list of strings"),
        ("database = 5\n", "'database' must be a string URL"),
        ('schema = "missing.json"\n', "schema file 'missing.json' not found"),
        ("webhook_url = 1\n", "'webhook_url' must be a string"),
    ],
)
def test_bad_config_is_a_config_error(repo: Repo, text: str, message: str) -> None:
    repo.write("storysync.toml", text)
    with pytest.raises(ConfigError) as caught:
        load_config(repo.path, environ={})
    assert str(caught.value).startswith(f"{repo.path / 'storysync.toml'}: ")
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "text",
    ['root = "a"\nbogus = 1\n', "[stages\n", "\x00"],
)
def test_bad_config_exits_2_with_one_line(repo: Repo, text: str, capsys: pytest.CaptureFixture[str]) -> None:
    repo.write("storysync.toml", text)
    repo.story("backlog", "web", "WEB-1")
    assert repo.run("validate") == 2
    [line] = stderr_lines(capsys)
    assert line.startswith(f"storysync: error: {repo.path / 'storysync.toml'}: ")


def test_bad_pyproject_section_exits_2(repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    repo.write("pyproject.toml", "[tool.storysync]\nstages = []\n")
    assert repo.run("validate") == 2
    [line] = stderr_lines(capsys)
    assert line == f"storysync: error: {repo.path / 'pyproject.toml'}: 'stages' must be a table of directory = status"


def test_missing_explicit_config_exits_2(repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    assert repo.run("--config", str(repo.path / "nope.toml"), "validate") == 2
    assert stderr_lines(capsys) == [f"storysync: error: {repo.path / 'nope.toml'}: config file not found"]


# --- database URL precedence ---------------------------------------------------------------------


def test_database_url_precedence(repo: Repo) -> None:
    repo.write("storysync.toml", 'database = "sqlite:///config.db"\n')
    env = {"STORYSYNC_DATABASE_URL": "sqlite:///env.db"}
    assert load_config(repo.path, db_flag="sqlite:///flag.db", environ=env).database == "sqlite:///flag.db"
    assert load_config(repo.path, environ=env).database == "sqlite:///env.db"
    assert load_config(repo.path, environ={}).database == f"sqlite:///{repo.path.as_posix()}/config.db"
    (repo.path / "storysync.toml").unlink()
    assert load_config(repo.path, environ={}).database == default_database_url(repo.path)


def test_precedence_through_the_cli(repo: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each source, in turn the strongest, is the database a sync really writes."""
    repo.story("backlog", "web", "WEB-1")
    repo.commit()
    flag, env, conf = tmp_path / "flag.db", tmp_path / "env.db", tmp_path / "conf.db"
    repo.write("storysync.toml", f'database = "sqlite:///{conf}"\n')
    monkeypatch.setenv("STORYSYNC_DATABASE_URL", f"sqlite:///{env}")
    assert repo.run("-q", "--db", f"sqlite:///{flag}", "sync") == 0
    assert flag.exists()
    assert not env.exists()
    assert not conf.exists()
    assert repo.run("-q", "sync") == 0
    assert env.exists()
    assert not conf.exists()
    monkeypatch.delenv("STORYSYNC_DATABASE_URL")
    assert repo.run("-q", "sync") == 0
    assert conf.exists()
    assert not repo.db_path.exists()
    (repo.path / "storysync.toml").unlink()
    assert repo.run("-q", "sync") == 0
    assert repo.db_path.exists()


def test_default_database_created_on_first_use_under_the_repo_root(repo: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    repo.story("backlog", "web", "WEB-1")
    repo.commit()
    sub = repo.path / "backlog" / "web"
    monkeypatch.chdir(sub)
    from storysync.cli.main import main

    assert not (repo.path / ".storysync").exists()
    assert main(["-q", "sync"]) == 0
    assert repo.db_path.is_file()
    assert not (sub / ".storysync").exists()
    with sqlite3.connect(repo.db_path) as conn:
        assert conn.execute("SELECT id FROM stories").fetchall() == [("WEB-1",)]
    assert repo.git("status", "--porcelain") == ""  # .storysync/ is ignored


def test_environment_url_used_by_a_subprocess(repo: Repo, tmp_path: Path) -> None:
    repo.story("backlog", "web", "WEB-1")
    repo.commit()
    target = tmp_path / "from-env.db"
    done = run_cli_subprocess(repo, "-q", "sync", env={"STORYSYNC_DATABASE_URL": f"sqlite:///{target}"})
    assert done.returncode == 0, done.stderr
    assert target.is_file()
    assert not repo.db_path.exists()


def test_config_is_frozen(repo: Repo) -> None:
    config = load_config(repo.path, environ={})
    assert isinstance(config, Config)
    with pytest.raises(AttributeError):
        config.root = "x"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("configured", "expected"),
    [
        ("sqlite:///.storysync/team.db", "sqlite:///{repo}/.storysync/team.db"),
        ("sqlite+pysqlite:///db/x.db?timeout=5", "sqlite+pysqlite:///{repo}/db/x.db?timeout=5"),
        ("sqlite:////abs/x.db", "sqlite:////abs/x.db"),
        ("sqlite:///file:x.db?mode=ro&uri=true", "sqlite:///file:x.db?mode=ro&uri=true"),
        ("postgresql+psycopg://db.example.invalid/stories", "postgresql+psycopg://db.example.invalid/stories"),
    ],
)
def test_relative_sqlite_path_in_the_config_is_under_the_repo_root(repo: Repo, configured: str, expected: str) -> None:
    repo.write("storysync.toml", f'database = "{configured}"\n')
    assert load_config(repo.path, environ={}).database == expected.format(repo=repo.path.as_posix())


def test_relative_config_database_is_the_same_from_a_subdirectory(repo: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    repo.write("storysync.toml", 'database = "sqlite:///.storysync/team.db"\n')
    repo.story("backlog", "web", "WEB-1")
    repo.commit()
    from storysync.cli.main import main

    monkeypatch.chdir(repo.path / "backlog")
    assert main(["-q", "sync"]) == 0
    assert (repo.path / ".storysync/team.db").is_file()
    assert not (repo.path / "backlog/.storysync").exists()


def test_default_state_directory_is_ignored_by_git_without_init(repo: Repo) -> None:
    """No `init`, no .gitignore entry: the database directory still never shows in git status."""
    (repo.path / ".gitignore").unlink()
    repo.story("backlog", "web", "WEB-1")
    repo.commit()
    assert repo.run("-q", "sync") == 0
    assert repo.db_path.is_file()
    assert repo.git("status", "--porcelain", "--untracked-files=all") == ""


def test_pyproject_storysync_that_is_not_a_table(repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    repo.write("pyproject.toml", '[tool]\nstorysync = "yes"\n')
    assert repo.run("validate") == 2
    assert capsys.readouterr().err.splitlines() == [
        f"storysync: error: {repo.path / 'pyproject.toml'}: [tool.storysync] must be a table of settings"
    ]
