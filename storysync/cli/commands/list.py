"""``storysync list``: the stories the database holds, filtered and sorted."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import click

from storysync.cli.app import App
from storysync.cli.listing import (
    ALL_REPOSITORIES_OPTION,
    FORMAT_OPTION,
    branch_fields,
    cells,
    each_repository,
    filter_options,
    make_filter,
    print_rows,
    print_table,
    repository_label,
    with_branches,
)
from storysync.cli.report import not_a_terminal

if TYPE_CHECKING:
    from storysync.db.branches import Overlay

_ASCII_BYTES = bytes(range(0x20, 0x7F)) + b"\n"  # what write_ascii may write
_ASCII = _ASCII_BYTES.decode("ascii")


@click.command("list")
@filter_options
@click.option("--deleted", is_flag=True, help="List the deleted stories instead of the live ones.")
@click.option(
    "--sort",
    type=click.Choice(["id", "title", "status", "backlog", "priority", "points", "assignee", "epic", "updated"]),
    default="id",
    show_default=True,
    help="Order by this field (ids in number order, statuses in stage order, priority most urgent first).",
)
@click.option("--reverse", is_flag=True, help="Reverse the order.")
@FORMAT_OPTION
@ALL_REPOSITORIES_OPTION
@click.pass_obj
def command(
    app: App, /, deleted: bool, sort: str, reverse: bool, fmt: str, all_repositories: bool, **filters: Any
) -> int:
    """List stories from the database, filtered and sorted.

    Options of one kind are alternatives (--status active --status backlog);
    different options must all match; repeated --tag options must all be on the story.
    With --all-repositories, the stories of every repository sharing the database,
    repository by repository, with a repository column.
    """
    # local: imported when the command runs: `storysync --help` loads every command module
    from storysync.db.branches import read_overlay
    from storysync.views import queries

    flt = make_filter(deleted, **filters)
    if all_repositories:
        _list_all(app, flt, sort, reverse, fmt)
        return 0
    if fmt == "table" and sort == "id" and not reverse and not_a_terminal(sys.stdout):
        # the branch overlay is read first: only a database without one takes SQLite's table
        table, overlay = queries.read_with(
            app.config.database,
            lambda: app.db,
            lambda r, d: _unless_overlay(read_overlay(r), lambda: queries.read_table_text(r, d, flt)),
        )
        if table is not None:  # SQLite formatted it (plain_columns would print the same)
            write_ascii(table)
            return 0
    if fmt in ("table", "ids") and sort == "id":
        found, overlay = queries.read_with(
            app.config.database, lambda: app.db, lambda r, d: (queries.read_cells(r, d, flt), read_overlay(r))
        )
        found = found[::-1] if reverse else found
        if fmt == "ids":
            sys.stdout.write("".join(f"{cells[0]}\n" for cells in found))
        else:
            print_table(app, queries.TABLE, with_branches(found, overlay))
        return 0
    rows, overlay = queries.read_with(
        app.config.database, lambda: app.db, lambda r, d: (queries.read_stories(r, d, flt), read_overlay(r))
    )
    rows = queries.sort_stories(rows, sort, reverse, app.config.stages)
    if fmt == "table":
        print_table(app, queries.TABLE, with_branches([cells(row) for row in rows], overlay))
    else:
        extra, objects = branch_fields(overlay, app.config.stages)
        print_rows(app, rows, fmt, extra, objects)
    return 0


def _unless_overlay(
    overlay: Overlay, table: Callable[[], tuple[bytes, ...] | None]
) -> tuple[tuple[bytes, ...] | None, Overlay]:
    """``table()`` when no branch overlay is recorded (the usual case), else None (the caller then
    shows each story's branches next to its status): the overlay is read once, whatever the size."""
    return (None if overlay else table()), overlay


def _list_all(app: App, flt: Any, sort: str, reverse: bool, fmt: str) -> None:
    """Every repository's stories, one repository after another (by name)."""
    # local: imported when the command runs: `storysync --help` loads every command module
    from storysync.views import queries

    rows: list[queries.StoryRow] = []
    owner: dict[int, str] = {}  # id(row) -> its repository's name
    for repository, found in each_repository(app, lambda r, d: queries.read_stories(r, d, flt)):
        for row in queries.sort_stories(found, sort, reverse, app.config.stages):
            owner[id(row)] = repository.name
            rows.append(row)

    def named(row: queries.StoryRow) -> str:
        return repository_label(owner[id(row)])

    print_rows(
        app,
        rows,
        fmt,
        extra=[("repository", named)],
        objects=lambda row: {"repository": owner[id(row)] or None, **row.as_dict()},
    )


def write_ascii(parts: Sequence[bytes]) -> None:
    """ASCII ``parts`` on stdout as they are where its bytes would be the same: a text copy
    of the 12 MB that 100,000 stories make would cost more than the write."""
    buffer = getattr(sys.stdout, "buffer", None)
    if buffer is None or not _writes_ascii_as_it_is(sys.stdout):
        sys.stdout.write(b"".join(parts).decode("ascii"))
        return
    sys.stdout.flush()
    buffer.writelines(parts)
    buffer.flush()


def _writes_ascii_as_it_is(stream: Any) -> bool:
    """Whether ``stream`` encodes ASCII as ASCII and translates no newline."""
    try:
        return os.linesep == "\n" and _ASCII.encode(stream.encoding) == _ASCII_BYTES
    except (AttributeError, LookupError, TypeError):  # no encoding, or one Python does not know
        return False
