"""Read-only git questions answered with one plain ``git`` process each, no GitPython.

For the short commands (``status``) whose whole run is shorter than importing
GitPython (~45 ms) and opening a ``git.Repo``.  Same answers as the
``storysync.gitdiff`` functions of the same purpose; argument lists only, no shell.
"""

from __future__ import annotations

import subprocess
from pathlib import Path


def _git(top: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", *args], cwd=top, capture_output=True, check=False)


def head(top: Path) -> str | None:
    """HEAD's commit sha in the work tree at ``top``, or None when there is no commit yet."""
    done = _git(top, "rev-parse", "--verify", "--quiet", "--end-of-options", "HEAD^{commit}")
    sha = done.stdout.decode("ascii", "replace").strip()
    return sha if done.returncode == 0 and sha else None


def commits_between(top: Path, older: str, newer: str) -> int | None:
    """How many commits ``newer`` is ahead of ``older``; None when ``older`` is unknown
    or not an ancestor of ``newer`` (history was rewritten), or git cannot say."""
    if _git(top, "merge-base", "--is-ancestor", older, newer).returncode != 0:
        return None  # 1: not an ancestor; 128: an unknown commit
    done = _git(top, "rev-list", "--count", f"{older}..{newer}")
    if done.returncode != 0:
        return None
    return int(done.stdout.strip() or 0)
