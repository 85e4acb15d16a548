"""``storysync deps ID``: what a story depends on and what depends on it, as trees."""

from __future__ import annotations

import sys

import click

from storysync.cli.app import App
from storysync.cli.commands.options import FORMAT_TEXT_JSON
from storysync.cli.listing import print_json
from storysync.cli.report import not_a_terminal
from storysync.errors import printable
from storysync.views.graph import Node, Tree


@click.command("deps")
@click.argument("story_id", metavar="ID")
@FORMAT_TEXT_JSON
@click.pass_obj
def command(app: App, story_id: str, fmt: str) -> int:
    """Show a story's dependency tree both ways: what it depends on, and what needs it."""
    # local: imported when the command runs: `storysync --help` loads every command module
    from storysync.views import graph, queries

    done = queries.done_status(app.config.stages)
    found = queries.read_with(
        app.config.database, lambda: app.db, lambda r, _d: graph.read_dependencies(r, story_id, done)
    )
    if fmt == "json":
        print_json(app, found.as_dict())
        return 0
    sections = [("depends on", found.depends_on), ("needed by", found.needed_by)]
    if not_a_terminal(sys.stdout):
        lines = [label(found.story)]
        for heading, tree in sections:
            lines.append(f"{heading}:" + ("" if tree.children else " (nothing)"))
            lines += [line for child in tree.children for line in plain_tree(child, 1)]
        sys.stdout.write("".join(f"{line}\n" for line in lines))
        return 0
    # local: imported when the command runs: `storysync --help` loads every command module
    from rich.markup import escape
    from rich.tree import Tree as RichTree

    root = RichTree(escape(label(found.story)))
    for heading, tree in sections:
        branch = root.add(f"[bold]{heading}[/bold]" + ("" if tree.children else " (nothing)"))
        for child in tree.children:
            _rich(branch, child)
    app.out.print(root)
    return 0


def label(node: Node) -> str:
    """``WEB-1 (active) Login page``; a missing story says so."""
    if node.missing:
        return f"{node.id} (not in the database)"
    return printable(f"{node.id} ({node.status}) {node.title}")


def _suffix(tree: Tree) -> str:
    return " (cycle)" if tree.cycle else " (shown above)" if tree.seen else ""


def plain_tree(tree: Tree, depth: int) -> list[str]:
    """The tree as lines indented two spaces a level."""
    lines = [f"{'  ' * depth}{label(tree.node)}{_suffix(tree)}"]
    for child in tree.children:
        lines += plain_tree(child, depth + 1)
    return lines


def _rich(parent: object, tree: Tree) -> None:
    # local: imported when the command runs: `storysync --help` loads every command module
    from rich.markup import escape
    from rich.tree import Tree as RichTree

    assert isinstance(parent, RichTree)
    branch = parent.add(escape(label(tree.node) + _suffix(tree)))
    for child in tree.children:
        _rich(branch, child)
