"""Which paths are story files, and which stage and backlog a path says.

A story lives at ``<root>/<stage>/<backlog>/<file>.md`` (SPEC §2).  Anything else
(README.md files, other depths, unknown top directories, ignored globs) is not
a story and is left alone.  The places of stage and backlog directories
(``<root>/<stage>``, ``<root>/<stage>/<name>``) must hold real directories: a
symlink there is refused by every reader (``check.rules.symlinked_directory``).
"""

from __future__ import annotations

import re
from fnmatch import fnmatchcase
from pathlib import PurePosixPath

from storysync.config import Config
from storysync.story.model import Location

SLUG_CHARS = re.compile(r"[^a-z0-9]+")
MAX_NAME = 255  # bytes in one file or directory name, as common file systems allow (NAME_MAX)


def classify(config: Config, repo_path: str) -> Location | None:
    """The stage and backlog of a repository-relative path, or None if not a story."""
    rel = _under_root(config, repo_path)
    if rel is None:
        return None
    parts = rel.split("/")
    if len(parts) != 3 or not parts[2].endswith(".md") or parts[2] == "README.md":
        return None
    stage, backlog, name = parts
    status = config.stages.get(stage)
    if status is None or _ignored(config, repo_path):
        return None
    return Location(path=repo_path, stage=stage, status=status, backlog=backlog, name=name)


def story_path(config: Config, status: str, backlog: str, name: str) -> str | None:
    """The repository-relative path of a story with this status, backlog and file name."""
    stage = config.stage_for_status(status)
    if stage is None:
        return None
    return config.rel_to_repo(f"{stage}/{backlog}/{name}")


def directory_place(config: Config, repo_path: str) -> str | None:
    """``"stage"`` or ``"backlog"`` when ``repo_path`` is where a stage directory
    (``<root>/<stage>``) or a backlog directory (``<root>/<stage>/<name>``) belongs."""
    rel = _under_root(config, repo_path)
    if not rel:
        return None
    parts = rel.split("/")
    if len(parts) > 2 or parts[0] not in config.stages or _ignored(config, repo_path):
        return None
    return "stage" if len(parts) == 1 else "backlog"


def story_directories(config: Config, repo_path: str) -> list[tuple[str, str]]:
    """The stage and the backlog directory of a story path (each with its place), outermost first."""
    location = classify(config, repo_path)
    if location is None:
        return []
    stage = config.rel_to_repo(location.stage)
    return [(stage, "stage"), (f"{stage}/{location.backlog}", "backlog")]


def slugify(title: str, limit: int = 60) -> str:
    """A lowercase ASCII slug of a title, for new file names."""
    slug = SLUG_CHARS.sub("-", title.lower()).strip("-")
    return slug[:limit].rstrip("-") or "story"


def _under_root(config: Config, repo_path: str) -> str | None:
    if not config.root:
        return repo_path
    prefix = config.root + "/"
    return repo_path[len(prefix) :] if repo_path.startswith(prefix) else None


def _ignored(config: Config, repo_path: str) -> bool:
    if not config.ignore:  # the common case, on every path of a 100k-file listing
        return False
    name = PurePosixPath(repo_path).name
    return any(fnmatchcase(repo_path, g) or fnmatchcase(name, g) for g in config.ignore)
