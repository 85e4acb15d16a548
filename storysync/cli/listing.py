"""How the story lists print: a table, JSON, CSV or bare ids.

On a terminal the table is rich's; piped or redirected it is plain aligned text at
full width (never wrapped or cut), written without importing rich, so that a list
of 100,000 stories is quick to hand to ``grep`` or ``awk``.  JSON is a list of
objects, one per story; CSV has a header row; ``ids`` is one id a line.
"""

from __future__ import annotations

import csv
import functools
import json
import sys
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import click

from storysync.cli.report import not_a_terminal
from storysync.db.branches import furthest_of, note, status_rank
from storysync.errors import printable

if TYPE_CHECKING:
    from storysync.cli.app import App
    from storysync.db.branches import Overlay
    from storysync.db.queries import Reader
    from storysync.db.repositories import Repository
    from storysync.views.queries import Filter, StoryRow

T = TypeVar("T")

FORMATS = ("table", "json", "csv", "ids")

FORMAT_OPTION = click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="table",
    show_default=True,
    help="table; json (a list of objects); csv (with a header row); ids (one a line).",
)


def filter_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The filters ``list``, ``ready``, ``blocked`` and ``board`` share (each may be repeated)."""
    options = [
        click.option("--status", "statuses", multiple=True, help="Only this status (repeat for several)."),
        click.option("--backlog", "backlogs", multiple=True, help="Only this backlog (repeat for several)."),
        click.option("--assignee", "assignees", multiple=True, help="Only stories assigned to this person."),
        click.option("--tag", "tags", multiple=True, help="Only stories with this tag (repeated: with every one)."),
        click.option(
            "--priority",
            "priorities",
            multiple=True,
            type=click.Choice(["critical", "high", "medium", "low"]),
            help="Only this priority.",
        ),
        click.option("--epic", "epics", multiple=True, help="Only stories of this epic."),
        click.option("--search", metavar="TEXT", help="Only stories whose title or body contains TEXT (any case)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


ALL_REPOSITORIES_OPTION = click.option(
    "--all-repositories",
    is_flag=True,
    help="Every repository that shares this database (config 'repository'), not only this one.",
)


def each_repository(app: App, work: Callable[[Reader, str], T]) -> list[tuple[Repository, T]]:
    """``work`` on the tables of every repository sharing the database, this one's included
    (found from the shared URL, as ``storysync.db.repositories`` says)."""
    # local: SQLAlchemy only for --all-repositories, which finds the other repositories through it
    from storysync.db.database import Database
    from storysync.db.repositories import shared_repositories
    from storysync.views.queries import read_with

    found = []
    for repository in shared_repositories(app.config.shared_database):
        db = Database(repository.url)
        try:
            found.append((repository, read_with(repository.url, functools.partial(_same, db), work)))
        finally:
            db.dispose()
    return found


def _same(value: T) -> T:
    return value


def repository_label(name: str) -> str:
    """How a repository is named in a list: the unnamed one (the database's own tables) as ``-``."""
    return name or "-"


def make_filter(deleted: bool = False, **options: Any) -> Filter:
    """A ``Filter`` from the options ``filter_options`` adds."""
    # local: rich (~25 ms) only for a terminal; a piped list reads through sqlite3
    from storysync.views.queries import Filter

    return Filter(
        statuses=tuple(options["statuses"]),
        backlogs=tuple(options["backlogs"]),
        assignees=tuple(options["assignees"]),
        tags=tuple(options["tags"]),
        priorities=tuple(options["priorities"]),
        epics=tuple(options["epics"]),
        search=options["search"] or None,
        deleted=deleted,
    )


def cells(row: StoryRow) -> list[str]:
    """The table columns of a story (``TABLE``), empty values as ``-`` (as ``read_cells`` gives them)."""
    return [
        row.id,
        row.status,
        row.backlog,
        "-" if row.priority is None else row.priority,
        "-" if row.points is None else str(row.points),
        "-" if row.assignee is None else row.assignee,
        row.title,
    ]


def with_branches(rows: Sequence[Sequence[str]], overlay: Overlay) -> Sequence[Sequence[str]]:
    """Table rows (``TABLE``'s cells) with each story's branches next to its status:
    ``backlog (active on feature/x)``; the rows as they are when no branch is recorded."""
    if not overlay:
        return rows
    out: list[Sequence[str]] = []
    for row in rows:
        branches = overlay.get(row[0])
        out.append([row[0], f"{row[1]} ({note(branches, row[1])})", *row[2:]] if branches else row)
    return out


def branch_fields(
    overlay: Overlay, stages: Mapping[str, str]
) -> tuple[list[tuple[str, Callable[[StoryRow], str]]], Callable[[StoryRow], dict[str, Any]]]:
    """The CSV columns and the JSON object of a story with the branch overlay: ``furthest_status``
    (the most progressed status across the main line and every branch) and ``branches``
    (``[{"branch", "status", "kind"}]``, the branches where the story differs)."""
    rank = status_rank(stages)

    def furthest(row: StoryRow) -> str:
        return furthest_of(row.status, overlay.get(row.id, ()), rank) or row.status

    def branches(row: StoryRow) -> list[dict[str, Any]]:
        return [b.as_dict() for b in overlay.get(row.id, ())]

    def objects(row: StoryRow) -> dict[str, Any]:
        return row.as_dict() | {"furthest_status": furthest(row), "branches": branches(row)}

    def branches_text(row: StoryRow) -> str:
        return json.dumps(branches(row), ensure_ascii=False)

    return [("furthest_status", furthest), ("branches", branches_text)], objects


def print_rows(
    app: App,
    rows: Sequence[StoryRow],
    fmt: str,
    extra: Sequence[tuple[str, Callable[[StoryRow], str]]] = (),
    objects: Callable[[StoryRow], dict[str, Any]] | None = None,
) -> None:
    """Print ``rows`` in ``fmt``; ``extra`` adds table and CSV columns, ``objects`` makes
    each JSON object (the story's own JSON form by default)."""
    if fmt == "ids":
        sys.stdout.write("".join(f"{row.id}\n" for row in rows))
    elif fmt == "json":
        print_json(app, [(objects or _as_dict)(row) for row in rows])
    elif fmt == "csv":
        _print_csv(rows, extra)
    else:
        # local: rich (~25 ms) only for a terminal; a piped list reads through sqlite3
        from storysync.views.queries import TABLE

        header = [*TABLE, *(name for name, _ in extra)]
        table = [[*cells(row), *(value(row) for _, value in extra)] for row in rows]
        print_table(app, header, table)


def _as_dict(row: StoryRow) -> dict[str, Any]:
    return row.as_dict()


def print_json(app: App, payload: Any) -> None:
    """Indented JSON: plain when piped, coloured by rich on a terminal."""
    text = json.dumps(payload, indent=2, ensure_ascii=False, default=str)
    if not_a_terminal(sys.stdout):
        sys.stdout.write(text + "\n")
    else:
        app.out.print_json(text)


def _print_csv(rows: Sequence[StoryRow], extra: Sequence[tuple[str, Callable[[StoryRow], str]]]) -> None:
    """Every field of the JSON form, lists as JSON text (a tag may hold a comma)."""
    # local: rich (~25 ms) only for a terminal; a piped list reads through sqlite3
    from storysync.views.queries import StoryRow as Row

    names = list(Row("", "", "", "", None, None, None, None, None, None, None, None).as_dict())
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow([*names, *(name for name, _ in extra)])
    for row in rows:
        data = row.as_dict()
        values = [_csv_value(data[name]) for name in names]
        writer.writerow([*values, *(value(row) for _, value in extra)])


def _csv_value(value: Any) -> Any:
    if isinstance(value, list):
        return json.dumps(value, ensure_ascii=False)
    return "" if value is None else value


def print_table(app: App, header: Sequence[str], rows: Sequence[Sequence[str]], title: str | None = None) -> None:
    """A table: rich's on a terminal; aligned plain text at full width when piped."""
    if not_a_terminal(sys.stdout):
        sys.stdout.write(plain_columns(header, rows, title))
        return
    # local: rich (~25 ms) only for a terminal; a piped list reads through sqlite3
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(title) if title else None)
    for name in header:
        table.add_column(name, overflow="fold")
    for row in rows:
        table.add_row(*(escape(printable(cell)) for cell in row))
    app.out.print(table)


def plain_columns(header: Sequence[str], rows: Sequence[Sequence[str]], title: str | None = None) -> str:
    """``header`` and ``rows`` as left-aligned columns two spaces apart, the last one
    unpadded; control characters escaped so that every row stays one line.  A titled
    table ends with a blank line."""
    head = f"{title}\n" if title else ""
    tail = "\n" if title else ""
    columns = list(zip(*rows, strict=True)) or [()] * len(header)
    if all(map(_plain_ascii, columns)):  # the common case, all in C: 100,000 rows in a few ms
        widths = [
            max(len(name), max(map(len, column), default=0)) for name, column in zip(header, columns, strict=False)
        ]
        line = "  ".join(f"%-{w}s" for w in widths[:-1]) + "  %s"
        return head + "\n".join(map(str.rstrip, map(line.__mod__, map(tuple, [header, *rows])))) + "\n" + tail
    shown = [list(header), *([printable(cell) for cell in row] for row in rows)]
    widths = [0] * len(header)
    for row in shown:
        for i, cell in enumerate(row[:-1]):
            widths[i] = max(widths[i], cell_width(cell))
    lines = []
    for row in shown:
        padded = [cell + " " * (widths[i] - cell_width(cell)) for i, cell in enumerate(row[:-1])]
        lines.append("  ".join([*padded, row[-1]]).rstrip())
    return head + "".join(f"{line}\n" for line in lines) + tail


def _plain_ascii(column: Sequence[str]) -> bool:
    """Every cell printable ASCII (one column's cells checked at once)."""
    text = "".join(column)
    return text.isascii() and text.isprintable()


def cell_width(text: str) -> int:
    """How many terminal columns ``text`` takes (wide East Asian characters count two)."""
    if text.isascii():
        return len(text)
    return sum(0 if unicodedata.combining(ch) else 2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)
