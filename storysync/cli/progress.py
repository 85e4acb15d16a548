"""A progress bar on a terminal, nothing when output is piped."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console


def surely_not_a_terminal() -> bool:
    """True when rich would certainly not treat stderr as a terminal (piped, as in a
    git hook, with no ``TTY_COMPATIBLE=1`` or ``FORCE_COLOR``): then there is no bar
    to draw and no need to import rich (~45 ms) to find that out."""
    if os.environ.get("TTY_COMPATIBLE") == "1" or os.environ.get("FORCE_COLOR"):
        return False
    try:
        return not sys.stderr.isatty()
    except (AttributeError, ValueError):  # no stream, or a closed one
        return True


@contextmanager
def progress_bar(console: Console, label: str) -> Iterator[Callable[[int], None] | None]:
    """Yield an ``advance(n)`` callback drawing a bar, or None when not a terminal."""
    if not console.is_terminal or console.quiet:
        yield None
        return
    # local: rich only on a terminal
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=None)
        yield lambda n: bar.advance(task, n)
