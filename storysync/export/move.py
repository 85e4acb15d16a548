"""Move a story to another stage in the working tree: ``git mv``, and optionally a commit.

The file goes to ``<stage>/<backlog>/`` (the folder is created) with ``git mv``,
or a plain rename when git does not track it yet.  A ``status`` key in its
frontmatter must agree with the new folder (SPEC §2), so it is changed in place
(the rest of the file stays byte for byte).  With ``commit`` exactly the moved
file's two paths are committed, nothing else that is staged.  The database
learns of the move from the next sync, as of any other commit.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from storysync.errors import UsageError
from storysync.git import runner
from storysync.story.layout import classify

if TYPE_CHECKING:
    from storysync.config import Config
    from storysync.git.runner import GitRepo
    from storysync.story.model import Location


@dataclass(frozen=True)
class Moved:
    """Where a story went (``old == new``: it was there already)."""

    story_id: str
    old: str
    new: str
    status: str
    commit: str | None = None


def target_stage(config: Config, stage_or_status: str) -> tuple[str, str]:
    """(stage folder, status) named by a stage folder or a status; ``UsageError`` otherwise."""
    if stage_or_status in config.stages:
        return stage_or_status, config.stages[stage_or_status]
    stage = config.stage_for_status(stage_or_status)
    if stage is None:
        known = ", ".join(config.stages)
        raise UsageError(f"no stage {stage_or_status!r}: use one of {known} (or a status they map to)")
    return stage, stage_or_status


def find_story_file(config: Config, story_id: str) -> str:
    """The repository path of ``story_id``'s file in the working tree (in any stage)."""
    found = []
    for stage in config.stages:
        stage_dir = config.root_path / stage
        for backlog in _names(stage_dir):
            for name in _names(stage_dir / backlog):
                if name == f"{story_id}.md" or (name.startswith(f"{story_id}-") and name.endswith(".md")):
                    rel = config.rel_to_repo(f"{stage}/{backlog}/{name}")
                    if classify(config, rel) is not None:
                        found.append(rel)
    if not found:
        raise UsageError(f"{story_id}: no story file for this id in the working tree")
    if len(found) > 1:
        raise UsageError(f"{story_id}: several files for this id: {', '.join(sorted(found))}; keep one")
    return found[0]


def _names(directory: Path) -> list[str]:
    try:
        return sorted(entry.name for entry in os.scandir(directory))
    except (NotADirectoryError, FileNotFoundError, PermissionError):
        return []


def move_story(
    config: Config, repo: GitRepo, story_id: str, stage_or_status: str, commit: bool = False, message: str = ""
) -> Moved:
    """Move ``story_id``'s file to the stage named (a folder or a status); commit it when asked.

    Refuses (``RepositoryStateError``) during a merge or rebase or with a held
    ``index.lock``; a file whose ``status`` key cannot be changed is left where it was.
    """
    runner.refuse_if_busy(repo)
    stage, status = target_stage(config, stage_or_status)
    old = find_story_file(config, story_id)
    location = classify(config, old)
    assert location is not None
    new = config.rel_to_repo(f"{stage}/{location.backlog}/{location.name}")
    if new == old:
        return Moved(story_id, old, new, status)
    top = repo.top
    changed = _with_status((top / old).read_bytes(), status, location)
    if (top / new).exists():
        raise UsageError(f"{story_id}: {new} exists already")
    tracked = bool(runner.output(top, "--literal-pathspecs", "ls-files", "--", old))
    if commit and not tracked:
        raise UsageError(f"{old}: git does not track it yet, so its move cannot be committed; 'git add' it first")
    (top / new).parent.mkdir(parents=True, exist_ok=True)
    if tracked:
        runner.output(top, "--literal-pathspecs", "mv", "--", old, new)
    else:
        os.rename(top / old, top / new)
    if changed is not None:
        # local: parsing and rendering only when the moved file has a status key
        from storysync.export.atomic import atomic_write

        atomic_write(top / new, changed)
        if tracked:
            runner.output(top, "--literal-pathspecs", "add", "--", new)
    sha = _commit(repo, [old, new], message or f"Move {story_id} to {stage}") if commit else None
    return Moved(story_id, old, new, status, sha)


def _with_status(data: bytes, status: str, location: Location) -> bytes | None:
    """The file with its ``status`` key set to ``status``; None when it has no such key or
    already says so.  ``UsageError`` when the file does not parse."""
    # local: parsing and rendering only when the moved file has a status key
    from storysync.story.parse import parse_story
    from storysync.story.render import Parts, splice, split_parts

    story = parse_story(location, data)
    if isinstance(story, list):
        raise UsageError(f"{story[0]} (fix the file before moving it)")
    if "status" not in story.frontmatter or story.frontmatter["status"] == status:
        return None
    parts = split_parts(data)
    spliced = splice(parts.frontmatter, {"status": status}, parts.eol)
    if spliced is None:
        raise UsageError(f"{location.path}: cannot change its 'status' key in place; move it by hand")
    return Parts(parts.bom, parts.head, spliced, parts.closing, parts.body).join()


def _commit(repo: GitRepo, paths: list[str], message: str) -> str:
    """Commit exactly ``paths`` (both ends of the move); the new commit's sha."""
    runner.output(repo.top, "--literal-pathspecs", "commit", "-q", "--only", "-m", message, "--", *paths)
    sha = runner.head(repo.top)
    assert sha is not None
    return sha
