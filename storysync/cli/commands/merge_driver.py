"""``storysync merge-driver %O %A %B %P``: the git merge driver for story files (SPEC §11).

Git calls it with the common ancestor's version (%O), ours (%A, where the result goes),
theirs (%B) and the file's path (%P), for every path ``.gitattributes`` gives
``merge=storysync`` (``storysync install-hooks`` sets both up).  Exit 0: merged; exit 1:
git records a conflict, with markers left in %A.
"""

from __future__ import annotations

from pathlib import Path

import click

from storysync.cli.app import App
from storysync.errors import printable

LABELS = ("ours", "base", "theirs")


@click.command("merge-driver")
@click.argument("base", metavar="BASE", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("ours", metavar="OURS", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("theirs", metavar="THEIRS", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("path", metavar="PATH")
@click.pass_obj
def command(app: App, base: Path, ours: Path, theirs: Path, path: str) -> int:
    """Merge two branches' edits of one story file field by field (git's %O %A %B %P).

    A frontmatter key changed on one side only takes that side; tags and
    depends_on merge as sets; the body merges as text.  OURS is rewritten in
    place, keeping its key order, comments and quoting.  Where both sides
    changed the same field, git's conflict markers are left around it and the
    exit code is 1; a merge that would give an invalid story is refused (exit 1,
    git's own line merge left in OURS).  Set up by 'storysync install-hooks'.
    """
    # local: imported when the command runs: `storysync --help` loads every command module
    from storysync.check.rules import check_story
    from storysync.check.schema import load_checker
    from storysync.story.layout import classify
    from storysync.story.merge import merge_files, merge_plain

    location = classify(app.config, path)
    data = (base.read_bytes(), ours.read_bytes(), theirs.read_bytes())
    if location is None:  # not a story file: git's line merge
        plain = merge_plain(*data, LABELS)
        ours.write_bytes(plain.data)
        return 1 if plain.conflicts else 0
    merged = merge_files(location, *data, LABELS)
    if merged.conflicts:
        ours.write_bytes(merged.data)
        _say(app, f"{path}: both sides changed {', '.join(merged.conflicts)}; conflict markers left")
        return 1
    problems = ["the merged file does not parse"] if merged.story is None else []
    if merged.story is not None:
        schema = load_checker(str(app.config.schema) if app.config.schema else None)
        problems = [str(d) for d in schema.check(merged.story) + check_story(merged.story)]
    if problems:
        plain = merge_plain(*data, LABELS)
        if plain.conflicts:  # as git would leave it; a clean line merge leaves ours untouched
            ours.write_bytes(plain.data)
        for problem in problems:
            _say(app, problem)
        _say(app, f"{path}: the merge would not be a valid story; resolve it by hand")
        return 1
    ours.write_bytes(merged.data)
    return 0


def _say(app: App, message: str) -> None:
    app.console.print(f"storysync: {printable(message)}", markup=False, soft_wrap=True)
