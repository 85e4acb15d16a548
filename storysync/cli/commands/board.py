"""``storysync board``: each backlog's stories in columns, one per stage."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import click

from storysync.cli.app import App
from storysync.cli.commands.options import FORMAT_TEXT_JSON
from storysync.cli.listing import filter_options, make_filter, print_json
from storysync.cli.report import not_a_terminal, plural
from storysync.db.branches import BranchStatus, note
from storysync.errors import printable
from storysync.views.board import Board
from storysync.views.queries import StoryRow


@click.command("board")
@filter_options
@click.option("--limit", type=click.IntRange(min=1), help="At most this many stories a column (the rest are counted).")
@FORMAT_TEXT_JSON
@click.pass_obj
def command(app: App, /, limit: int | None, fmt: str, **filters: Any) -> int:
    """Show a board per backlog: a column for each stage, most urgent stories first."""
    # local: imported when the command runs: `storysync --help` loads every command module
    from storysync.views import board as board_view
    from storysync.views import queries

    flt = make_filter(**filters)
    stages = app.config.stages
    found = queries.read_with(
        app.config.database, lambda: app.db, lambda r, d: board_view.read_board(r, d, flt, stages)
    )
    if fmt == "json":
        print_json(app, [board.as_dict() for board in found])
        return 0
    if not found:
        sys.stderr.write("storysync: no stories to show\n")
        return 0
    for board in found:
        header, rows = board_cells(board, limit)
        title = f"{board.backlog} ({plural(sum(len(c.stories) for c in board.columns), 'story')})"
        _print_board(app, title, header, rows)
    return 0


def card(row: StoryRow, branches: Sequence[BranchStatus] = ()) -> str:
    """``WEB-1 Login page`` with the priority and assignee when set, and where the story is
    elsewhere on a branch: ``WEB-1 Login page (high) [active on feature/x]``."""
    notes = ", ".join(v for v in (row.priority, row.assignee) if v)
    elsewhere = f" [{note(branches, row.status)}]" if branches else ""
    return printable(f"{row.id} {row.title}" + (f" ({notes})" if notes else "") + elsewhere)


def board_cells(board: Board, limit: int | None) -> tuple[list[str], list[list[str]]]:
    """The column headers (status and count) and the rows of cards, ``limit`` a column."""
    header = [f"{c.status} ({len(c.stories)})" for c in board.columns]
    shown = [[card(s, board.branches.get(s.id, ())) for s in c.stories[:limit]] for c in board.columns]
    for column, cards in zip(board.columns, shown, strict=True):
        hidden = len(column.stories) - len(cards)
        if hidden > 0:
            cards.append(f"... and {hidden} more")
    depth = max((len(cards) for cards in shown), default=0)
    rows = [[cards[i] if i < len(cards) else "" for cards in shown] for i in range(depth)]
    return header, rows


def _print_board(app: App, title: str, header: list[str], rows: list[list[str]]) -> None:
    if not_a_terminal(sys.stdout):
        # local: imported when the command runs: `storysync --help` loads every command module
        from storysync.cli.listing import plain_columns

        sys.stdout.write(plain_columns(header, rows, title))
        return
    # local: imported when the command runs: `storysync --help` loads every command module
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(title), show_lines=True)
    for name in header:
        table.add_column(escape(name), ratio=1, overflow="fold")
    for row in rows:
        table.add_row(*(escape(cell) for cell in row))
    app.out.print(table)
