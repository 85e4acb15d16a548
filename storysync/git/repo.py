"""``open_repo``: a GitPython ``git.Repo``, for library callers who want one.

``storysync.open_repo`` has always handed out a ``git.Repo``, and callers may use
it with GitPython themselves; every storysync function that takes a repository
(``sync``, ``export``, ``LiveSync``, ``GitTreeSource``) takes a ``git.Repo`` or a
``storysync.git.runner.GitRepo`` alike and asks git through plain processes
(``runner.as_plain``).  Nothing else in storysync imports GitPython.
"""

from __future__ import annotations

from pathlib import Path

import git
from git.exc import InvalidGitRepositoryError, NoSuchPathError

from storysync.errors import GitError


def open_repo(path: Path) -> git.Repo:
    """The git repository containing ``path`` (search upwards)."""
    try:
        repo = git.Repo(path, search_parent_directories=True)
    except (InvalidGitRepositoryError, NoSuchPathError) as exc:
        raise GitError(f"{path}: not a git repository (run 'git init' first)") from exc
    if repo.bare or repo.working_tree_dir is None:
        raise GitError(f"{path}: a bare repository has no work tree to sync")
    return repo
