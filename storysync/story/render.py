"""Render a story row as Markdown, changing only what changed (SPEC §7).

An existing file is edited by splicing at YAML node marks, the way pre-commit's
``migrate_config`` edits YAML: the frontmatter is composed by libyaml, and only the
character span of a changed value is replaced by a freshly emitted one-line value;
a new key is appended before the closing ``---``; a dropped key's lines are
removed.  Comments, key order, quoting of untouched values, line endings, the BOM
and the body stay byte for byte.  Every result is parsed again and must give
exactly the database's values; if a splice cannot (an odd YAML shape), the
frontmatter is re-rendered cleanly in the file's key order instead, and that is
checked the same way.

A new file gets a conventional frontmatter: ``id``, ``title``, the set fields in
column order, then the other keys.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from storysync.errors import StorysyncError
from storysync.story.model import KNOWN_KEYS, Location
from storysync.story.parse import BOM, load_frontmatter, parse_story

try:
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

OPTIONAL_COLUMNS = ("priority", "points", "epic", "assignee")


class RenderError(StorysyncError):
    """A row cannot be rendered as a story file that reads back as the row."""

    exit_code = 1


class _Remove:
    def __repr__(self) -> str:
        return "REMOVE"


REMOVE: Any = _Remove()


@dataclass(frozen=True)
class Wanted:
    """The frontmatter values and body a database row asks for."""

    id: str
    title: str
    status: str
    backlog: str
    body: str = ""
    columns: Mapping[str, Any] = field(default_factory=dict)  # priority, points, epic, assignee
    tags: list[Any] = field(default_factory=list)
    depends_on: list[str] = field(default_factory=list)
    extra: Mapping[str, Any] = field(default_factory=dict)


def wanted_from_row(row: Mapping[str, Any], depends_on: Iterable[str]) -> Wanted:
    """What a ``stories`` row (and its ``dependencies``) says the file must hold."""
    return Wanted(
        id=row["id"],
        title=row["title"],
        status=row["status"],
        backlog=row["backlog_id"],
        body=row.get("body") or "",
        columns={k: row.get(k) for k in OPTIONAL_COLUMNS},
        tags=list(row.get("tags") or []),
        depends_on=sorted(set(depends_on)),
        extra=dict(row.get("extra") or {}),
    )


def same(a: Any, b: Any) -> bool:
    """Equal as JSON values (so ``True`` is not ``1`` and key order does not matter)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def edits_for(fm: Mapping[str, Any], want: Wanted) -> dict[str, Any]:
    """The keys whose values must change (new value, or ``REMOVE``), in a stable order.

    A null optional column and an empty list may be absent or written as null;
    ``status`` and ``backlog`` are only kept in step where the file writes them.
    """
    edits: dict[str, Any] = {}
    for key, value in (("id", want.id), ("title", want.title)):
        if not same(fm.get(key), value):
            edits[key] = value
    for key in ("status", "backlog"):
        value = want.status if key == "status" else want.backlog
        if key in fm and not same(fm[key], value):
            edits[key] = value
    for key, value in want.columns.items():
        have = fm.get(key)
        if value is None:
            if have is not None:
                edits[key] = REMOVE
        elif not same(have, value):
            edits[key] = value
    _list_edits(fm, want, edits)
    for key, value in want.extra.items():
        if key not in fm or not same(fm[key], value):
            edits[key] = value
    for key in fm:
        if key not in KNOWN_KEYS and key not in want.extra:
            edits[key] = REMOVE
    return edits


def _list_edits(fm: Mapping[str, Any], want: Wanted, edits: dict[str, Any]) -> None:
    have_tags = fm.get("tags") or []
    if not same(have_tags, want.tags):
        edits["tags"] = want.tags
    have_deps = fm.get("depends_on") or []
    if not isinstance(have_deps, list) or set(map(str, have_deps)) != set(want.depends_on):
        kept = [d for d in dict.fromkeys(have_deps) if d in want.depends_on] if isinstance(have_deps, list) else []
        edits["depends_on"] = kept + [d for d in want.depends_on if d not in kept]


# ---------------------------------------------------------------- one-line values


def _reads_back(text: str, value: Any, *, in_flow: bool) -> bool:
    doc = f"k: [{text}]\n" if in_flow else f"k: {text}\n"
    loaded = load_frontmatter("", doc)
    if isinstance(loaded, list):
        return False
    got = loaded[0].get("k")
    return same(got, [value] if in_flow else value) and set(loaded[0]) == {"k"}


def _dump(value: Any, style: str | None) -> str:
    out = yaml.safe_dump(value, default_style=style, width=float("inf"), allow_unicode=True)
    return out.removesuffix("...\n").rstrip("\n")


def _candidates(value: Any, style: str | None, in_flow: bool) -> Iterator[str]:
    if isinstance(value, list):
        yield "[" + ", ".join(render_value(v, in_flow=True) for v in value) + "]"
    elif isinstance(value, dict):
        yield (
            "{"
            + ", ".join(f"{render_value(k, in_flow=True)}: {render_value(v, in_flow=True)}" for k, v in value.items())
            + "}"
        )
    elif isinstance(value, str):
        if style == "'":
            yield "'" + value.replace("'", "''") + "'"
        if style in ("'", '"'):
            yield _dump(value, style)
        yield value
        yield "'" + value.replace("'", "''") + "'"
        yield _dump(value, None)
        yield _dump(value, '"')
    else:
        if value is None or isinstance(value, (bool, int)):
            yield json.dumps(value)  # null, true, 5: plain YAML that reads back as itself
        yield _dump(value, None)
    yield json.dumps(value, ensure_ascii=False)
    yield json.dumps(value, ensure_ascii=True)


def render_value(value: Any, style: str | None = None, *, in_flow: bool = False) -> str:
    """A one-line YAML text that our parser reads back as exactly ``value``.

    ``style`` is the quoting of the value being replaced (kept when it can be);
    otherwise a plain scalar is preferred, then quoting, then JSON.
    """
    for text in _candidates(value, style, in_flow):
        if text and "\n" not in text and "\r" not in text and _reads_back(text, value, in_flow=in_flow):
            return text
    raise RenderError(f"cannot write {value!r} as a YAML value")


def _key_candidates(key: str) -> Iterator[str]:
    yield key
    yield _dump(key, None)
    yield json.dumps(key, ensure_ascii=False)


def render_key(key: str) -> str:
    """A mapping key that reads back as ``key``."""
    for text in _key_candidates(key):
        loaded = load_frontmatter("", f"{text}: 0\n")
        if "\n" not in text and not isinstance(loaded, list) and list(loaded[0]) == [key]:
            return text
    raise RenderError(f"cannot write {key!r} as a YAML key")


# ---------------------------------------------------------------- splicing


@dataclass(frozen=True)
class Parts:
    """A story file's text cut at the frontmatter delimiters."""

    bom: bool
    head: str  # the opening '---' line with its line ending
    frontmatter: str
    closing: str  # the closing '---' line with its line ending (if any)
    body: str

    @property
    def eol(self) -> str:
        return "\r\n" if self.head.endswith("\r\n") else "\n"

    def join(self) -> bytes:
        closing = self.closing
        if self.body and not closing.endswith("\n"):
            closing += self.eol
        text = (BOM if self.bom else "") + self.head + self.frontmatter + closing + self.body
        return text.encode("utf-8")


def split_parts(data: bytes) -> Parts:
    """Cut a file that parsed as a story into its parts (no re-validation)."""
    text = data.decode("utf-8")
    bom = text.startswith(BOM)
    text = text[1:] if bom else text
    first_end = text.index("\n")
    pos = first_end + 1
    while True:
        end = text.find("\n", pos)
        line = text[pos:] if end < 0 else text[pos:end]
        if line.rstrip("\r") == "---":
            closing_end = len(text) if end < 0 else end + 1
            return Parts(
                bom, text[:pos][: first_end + 1], text[first_end + 1 : pos], text[pos:closing_end], text[closing_end:]
            )
        if end < 0:
            raise RenderError("frontmatter has no closing '---' line")
        pos = end + 1


def _line_start(text: str, index: int) -> int:
    return text.rfind("\n", 0, index) + 1


def _line_end(text: str, index: int) -> int:
    nl = text.find("\n", index)
    return len(text) if nl < 0 else nl + 1


def _value_end(text: str, node: yaml.Node) -> int:
    """Where a value's own text ends: without trailing blank lines, and without the
    comments libyaml counts into a block collection that precedes them."""
    if isinstance(node, (yaml.SequenceNode, yaml.MappingNode)) and not node.flow_style and node.value:
        last = node.value[-1]
        return _value_end(text, last[1] if isinstance(last, tuple) else last)
    start, end = node.start_mark.index, node.end_mark.index
    return start + len(text[start:end].rstrip())


def _is_block(node: yaml.Node) -> bool:
    if isinstance(node, yaml.ScalarNode):
        return node.style in ("|", ">")
    assert isinstance(node, (yaml.SequenceNode, yaml.MappingNode))
    return not node.flow_style


def _replacement(text: str, key: yaml.Node, node: yaml.Node, new: Any, eol: str) -> tuple[int, int, str]:
    start, end = node.start_mark.index, _value_end(text, node)
    block_seq = isinstance(node, yaml.SequenceNode) and not node.flow_style
    if block_seq and isinstance(new, list) and new and all(not isinstance(v, (list, dict)) for v in new):
        col = node.start_mark.column
        return start, end, (eol + " " * col).join("- " + render_value(v) for v in new)
    style = node.style if isinstance(node, yaml.ScalarNode) else None
    rendered = render_value(new, style)
    gap = text[key.end_mark.index : start]
    if gap.strip() == ":" and (_is_block(node) or start == end):
        return key.end_mark.index, end, ": " + rendered
    if "\n" in gap:  # comments between key and value: a one-line value on the value's line, indented
        return _line_start(text, start), end, " " * (key.start_mark.column + 2) + rendered
    return start, end, rendered


def _removal(text: str, key: yaml.Node, node: yaml.Node) -> tuple[int, int, str]:
    end = _line_end(text, _value_end(text, node))
    kept_blanks = _keeps_trailing_lines(text, node)
    while kept_blanks and end < node.end_mark.index and not text[end : _line_end(text, end)].strip():
        end = _line_end(text, end)  # the blank lines a block scalar kept (a sequence's are the file's)
    return _line_start(text, key.start_mark.index), end, ""


def _keeps_trailing_lines(text: str, node: yaml.Node) -> bool:
    """Whether a block scalar's trailing blank lines are its own (``|+``, ``>+``: keep
    chomping); with clip or strip chomping they are the file's, as after a sequence."""
    if not isinstance(node, yaml.ScalarNode) or node.style not in ("|", ">"):
        return False
    header = text[node.start_mark.index : _line_end(text, node.start_mark.index)]
    return "+" in header.split("#", 1)[0]


def splice(fm_text: str, edits: Mapping[str, Any], eol: str) -> str | None:
    """``fm_text`` with ``edits`` applied in place; None if its shape cannot be spliced."""
    root = yaml.compose(fm_text, Loader=_Loader)
    if not isinstance(root, yaml.MappingNode) or root.flow_style or not root.value:
        return None
    pairs = {k.value: (k, v) for k, v in root.value if isinstance(k, yaml.ScalarNode)}
    indent = " " * root.value[0][0].start_mark.column
    cuts: list[tuple[int, int, str]] = []
    appended: list[str] = []
    for key, new in edits.items():
        if key in pairs:
            k, v = pairs[key]
            cuts.append(_removal(fm_text, k, v) if new is REMOVE else _replacement(fm_text, k, v, new, eol))
        elif new is not REMOVE:
            appended.append(f"{indent}{render_key(key)}: {render_value(new)}{eol}")
    out = fm_text
    for start, end, replacement in sorted(cuts, reverse=True):
        out = out[:start] + replacement + out[end:]
    if appended and out and not out.endswith("\n"):
        out += eol
    return out + "".join(appended)


def clean_frontmatter(items: Iterable[tuple[str, Any]], eol: str) -> str:
    """A fresh block frontmatter of ``key: value`` lines, in the given order."""
    return "".join(f"{render_key(k)}: {render_value(v)}{eol}" for k, v in items)


def new_file_items(want: Wanted) -> list[tuple[str, Any]]:
    """The conventional key order of a new file; unset fields are left out."""
    items: list[tuple[str, Any]] = [("id", want.id), ("title", want.title)]
    items += [(k, v) for k, v in want.columns.items() if v is not None]
    items += [(k, v) for k, v in (("tags", want.tags), ("depends_on", want.depends_on)) if v]
    items += [(k, v) for k, v in want.extra.items() if k not in KNOWN_KEYS]
    return items


def _reordered(fm: Mapping[str, Any], edits: Mapping[str, Any]) -> list[tuple[str, Any]]:
    items = [(k, edits.get(k, v)) for k, v in fm.items() if edits.get(k) is not REMOVE]
    return items + [(k, v) for k, v in edits.items() if k not in fm and v is not REMOVE]


def new_file(want: Wanted) -> bytes:
    """The bytes of a new story file for ``want`` (not yet checked to read back as it)."""
    return Parts(False, "---\n", clean_frontmatter(new_file_items(want), "\n"), "---\n", want.body).join()


def render_new(want: Wanted, location: Location) -> bytes:
    """A new story file for a row created in the database (checked to read back as it)."""
    data = new_file(want)
    if not reads_as(data, want, location):
        raise RenderError(f"{location.path}: cannot write the database's values as a new file")
    return data


def render_existing(data: bytes, want: Wanted, location: Location) -> bytes:
    """``data`` (a story file's bytes) changed only where ``want`` differs from it."""
    story = parse_story(location, data)
    if isinstance(story, list):
        raise RenderError(f"{location.path}: the file does not parse: {story[0].message}")
    edits = edits_for(story.frontmatter, want)
    parts = split_parts(data)
    body = parts.body if parts.body == want.body else want.body
    if not edits and body == parts.body:
        return data
    attempts: tuple[Callable[[], str | None], ...] = (
        lambda: splice(parts.frontmatter, edits, parts.eol) if edits else parts.frontmatter,
        lambda: clean_frontmatter(_reordered(story.frontmatter, edits), parts.eol),  # the fallback
    )
    for attempt in attempts:
        fm_text = attempt()
        if fm_text is None:
            continue
        out = Parts(parts.bom, parts.head, fm_text, parts.closing, body).join()
        if reads_as(out, want, location):
            return out
    raise RenderError(f"{location.path}: cannot write the database's values into this file")


def reads_as(data: bytes, want: Wanted, location: Location) -> bool:
    """Whether ``data`` parses as a story holding exactly ``want``."""
    story = parse_story(location, data)
    return not isinstance(story, list) and not edits_for(story.frontmatter, want) and story.body == want.body
