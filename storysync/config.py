"""Read ``storysync.toml`` or ``[tool.storysync]`` into a frozen ``Config``.

Precedence for the database URL (SPEC §3): ``--db`` flag, then the
``STORYSYNC_DATABASE_URL`` environment variable, then the config file, then the
default SQLite file under ``.storysync/`` at the repository root.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote, unquote_plus

from storysync.errors import ConfigError

DEFAULT_STAGES: Mapping[str, str] = {
    "refinements": "refinements",
    "backlog": "backlog",
    "active": "active",
    "completed": "completed",
}
STATE_DIR = ".storysync"
KNOWN_KEYS = frozenset({"root", "stages", "schema", "database", "ignore", "webhook_url", "merge", "repository"})
MERGE_MODES = ("fields", "file-wins")  # a story changed on both sides: merged field by field, or the file wins
# a repository's name scopes its tables in a shared database: a PostgreSQL schema of that
# name ('-' as '_'), or a SQLite file beside the shared one (storysync.<name>.db)
REPOSITORY_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
RESERVED_SCHEMAS = ("public", "information_schema")


@dataclass(frozen=True)
class Config:
    """Where the stories are, how directories map to statuses, and where the DB is."""

    repo: Path
    root: str = ""  # stories root, POSIX, relative to the repository root ("" = the repo)
    stages: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_STAGES))
    schema: Path | None = None
    database: str = ""
    ignore: tuple[str, ...] = ()
    webhook_url: str | None = None
    merge: str = "fields"  # MERGE_MODES
    source: Path | None = None  # the file the settings came from, if any
    repository: str = ""  # this repository's name in a shared database ("" = unnamed: the database's own tables)
    shared_database: str = ""  # the database URL before the repository scoped it (== database when unnamed)

    @property
    def root_path(self) -> Path:
        """The stories root as an absolute path."""
        return self.repo / self.root if self.root else self.repo

    def stage_for_status(self, status: str) -> str | None:
        """The stage directory whose status is ``status``."""
        for directory, mapped in self.stages.items():
            if mapped == status:
                return directory
        return None

    def rel_to_repo(self, root_relative: str) -> str:
        """Turn a path relative to the stories root into one relative to the repo."""
        return f"{self.root}/{root_relative}" if self.root else root_relative


def default_database_url(repo: Path) -> str:
    """The embedded default: a SQLite file in ``.storysync/`` at the repo root."""
    return f"sqlite:///{(repo / STATE_DIR / 'storysync.db').as_posix()}"


def load_config(
    repo: Path,
    config_file: Path | None = None,
    db_flag: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Read the configuration for ``repo``; every key has a default."""
    env = os.environ if environ is None else environ
    source, raw = _read_raw(repo, config_file)
    _check_keys(source, raw)
    root = _root(source, raw.get("root", ""))
    stages = _stages(source, raw.get("stages"))
    schema = _schema(repo, source, raw.get("schema"))
    ignore = _string_list(source, "ignore", raw.get("ignore", []))
    configured = raw.get("database") or ""
    if not isinstance(configured, str):
        raise ConfigError(f"{source}: 'database' must be a string URL")
    database = db_flag or env.get("STORYSYNC_DATABASE_URL") or _repo_relative_sqlite(repo, configured)
    webhook = env.get("STORYSYNC_WEBHOOK_URL") or raw.get("webhook_url")
    if webhook is not None and not isinstance(webhook, str):
        raise ConfigError(f"{source}: 'webhook_url' must be a string")
    merge = raw.get("merge", "fields")
    if merge not in MERGE_MODES:
        raise ConfigError(f"{source}: 'merge' must be one of {', '.join(repr(m) for m in MERGE_MODES)}, got {merge!r}")
    repository = _repository(source, raw.get("repository", ""))
    shared = database or default_database_url(repo)
    return Config(
        repo=repo,
        root=root,
        stages=stages,
        schema=schema,
        database=scoped_database_url(shared, repository),
        ignore=tuple(ignore),
        webhook_url=webhook or None,
        merge=merge,
        source=source,
        repository=repository,
        shared_database=shared,
    )


def schema_name(repository: str) -> str:
    """The PostgreSQL schema that holds a named repository's tables."""
    return repository.replace("-", "_")


def scoped_database_url(url: str, repository: str) -> str:
    """The URL of ``repository``'s own tables in the shared database ``url``.

    PostgreSQL: the same database, with ``search_path`` set to the repository's schema
    (a libpq ``options`` parameter, so every connection, and any tool given the URL,
    sees only that repository's tables).  SQLite, which has no schemas: a file beside
    the shared one, ``storysync.db`` → ``storysync.<name>.db``.  An unnamed repository
    keeps the URL as it is.  Plain string work: this runs on every command, hooks included.
    """
    if not repository:
        return url
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    if scheme.split("+")[0] == "sqlite":
        path, q, query = rest.partition("?")
        if path in ("/", "/:memory:") or path.startswith("/file:"):
            return url
        head, slash, name = path.rpartition("/")
        stem, dot, suffix = name.rpartition(".")
        scoped = f"{stem}.{repository}.{suffix}" if dot and stem else f"{name}.{repository}"
        return f"{scheme}://{head}{slash}{scoped}{q}{query}"
    path, _, query = rest.partition("?")
    params = [p for p in query.split("&") if p and not p.startswith("options=")]
    given = [unquote_plus(p[len("options=") :]) for p in query.split("&") if p.startswith("options=")]
    options = " ".join([*given, f"-csearch_path={schema_name(repository)}"])
    params.append(f"options={quote(options, safe='')}")
    return f"{scheme}://{path}?{'&'.join(params)}"


_RELATIVE_SQLITE = re.compile(r"^(sqlite(?:\+\w+)?:///)(?!/|file:)([^?:][^?]*)(\?.*)?$")


def _repo_relative_sqlite(repo: Path, url: str) -> str:
    """A relative SQLite path in the config file means: under the repository root,
    wherever storysync runs from (a flag or variable stays relative to the cwd)."""
    match = _RELATIVE_SQLITE.match(url)
    if match is None:
        return url
    prefix, path, query = match.groups()
    return f"{prefix}{(repo / path).as_posix()}{query or ''}"


def _read_raw(repo: Path, config_file: Path | None) -> tuple[Path | None, dict[str, Any]]:
    if config_file is not None:
        if not config_file.is_file():
            raise ConfigError(f"{config_file}: config file not found")
        return config_file, _load_toml(config_file, pyproject=config_file.name == "pyproject.toml")
    toml = repo / "storysync.toml"
    if toml.is_file():
        return toml, _load_toml(toml, pyproject=False)
    pyproject = repo / "pyproject.toml"
    if pyproject.is_file():
        raw = _load_toml(pyproject, pyproject=True)
        if raw:
            return pyproject, raw
    return None, {}


def _load_toml(path: Path, *, pyproject: bool) -> dict[str, Any]:
    # local: keeps tomllib (~2 ms) off the hook in a repository without a config file
    if sys.version_info >= (3, 11):
        # local: tomllib (~2 ms) only where a config file exists
        import tomllib
    else:  # pragma: no cover - exercised on 3.10 only
        # local: tomllib (~2 ms) only where a config file exists
        import tomli as tomllib

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc
    if pyproject:
        tool = data.get("tool", {})
        section = tool.get("storysync", {}) if isinstance(tool, dict) else {}
        if not isinstance(section, dict):
            raise ConfigError(f"{path}: [tool.storysync] must be a table of settings")
        return dict(section)
    return data


def _check_keys(source: Path | None, raw: Mapping[str, Any]) -> None:
    unknown = sorted(set(raw) - KNOWN_KEYS)
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(KNOWN_KEYS))}")


def _root(source: Path | None, value: object) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{source}: 'root' must be a string path")
    posix = PurePosixPath(value.replace("\\", "/"))
    if posix.is_absolute() or ".." in posix.parts:
        raise ConfigError(f"{source}: 'root' must be a path inside the repository, got {value!r}")
    text = posix.as_posix()
    return "" if text == "." else text


def _stages(source: Path | None, value: object) -> Mapping[str, str]:
    if value is None:
        return dict(DEFAULT_STAGES)
    if not isinstance(value, dict) or not value:
        raise ConfigError(f"{source}: 'stages' must be a table of directory = status")
    for directory, status in value.items():
        if not isinstance(status, str) or not status or "/" in directory or directory in {".", ".."}:
            raise ConfigError(f"{source}: stage {directory!r} must map a directory name to a status")
    return dict(value)


def _schema(repo: Path, source: Path | None, value: object) -> Path | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{source}: 'schema' must be a path")
    path = (repo / value) if not Path(value).is_absolute() else Path(value)
    if not path.is_file():
        raise ConfigError(f"{source}: schema file {value!r} not found")
    return path


def _repository(source: Path | None, value: object) -> str:
    if not isinstance(value, str) or (value and REPOSITORY_NAME.match(value) is None):
        raise ConfigError(
            f"{source}: 'repository' must be a name of lowercase letters, digits, '-' and '_' "
            f"that starts with a letter (it names a database schema), got {value!r}"
        )
    if schema_name(value) in RESERVED_SCHEMAS or value.startswith("pg_"):
        raise ConfigError(f"{source}: 'repository' {value!r} is a name the database keeps for itself; choose another")
    return value


def _string_list(source: Path | None, key: str, value: object) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{source}: {key!r} must be a list of strings")
    return list(value)
