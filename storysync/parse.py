"""Split a story file into frontmatter and body; YAML → JSON-safe data with positions.

No git and no database here: bytes in, a ``Story`` or a list of ``Diagnostic`` out.
A file that cannot be read as a story is data (diagnostics), never an exception.

YAML is composed by libyaml (PyYAML's C loader) when it is available, into a node
tree that keeps every key's and value's position; values are then built here, so
that timestamps stay the strings the author wrote, duplicate keys (also keys that
collapse to the same JSON key, such as ``1`` and ``"1"``) are refused, and no
object is ever constructed from a tag.  Anchors and aliases, nesting deeper than
``MAX_DEPTH``, frontmatter over ``MAX_FRONTMATTER`` bytes and files over
``MAX_FILE`` bytes are refused before any of that work is done.
"""

from __future__ import annotations

import hashlib
import math
import re
from typing import Any

import yaml

from storysync.errors import Diagnostic
from storysync.model import KeyPath, Location, Mark, Story

try:  # the C loader is ~8x faster; fall back to pure Python where libyaml is missing
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

MAX_FILE = 1024 * 1024
MAX_FRONTMATTER = 64 * 1024
MAX_DEPTH = 32
INT_LIMIT = 2**63

BOM = "\ufeff"
_TAG = "tag:yaml.org,2002:"
_ALLOWED_TAGS = frozenset(_TAG + t for t in ("str", "int", "float", "bool", "null", "timestamp", "seq", "map"))
_NODE_KIND: dict[str, type[yaml.Node]] = {_TAG + "seq": yaml.SequenceNode, _TAG + "map": yaml.MappingNode}
_CONFLICT = re.compile(r"^(<{7}|>{7})(?: |$)|^={7}$|^\|{7}(?: |$)", re.MULTILINE)
_INDENT = re.compile(r"^[ \t]*", re.MULTILINE)
# block indicators after a line's indentation ("- - - a", "? - a", ": - b"): each one
# after the first opens a collection at a column no line's indentation shows
_COMPACT = re.compile(r"^[ \t]*((?:[-?:](?:[ \t]+|$))+)", re.MULTILINE)
_constructor = yaml.constructor.SafeConstructor()


class _Refused(Exception):
    """A frontmatter problem found while building values; carries its position."""

    def __init__(self, mark: Mark, code: str, message: str) -> None:
        super().__init__(message)
        self.mark = mark
        self.code = code
        self.message = message


def parse_story(location: Location, data: bytes) -> Story | list[Diagnostic]:
    """Parse one story file's bytes; a ``Story`` or every problem found in it."""
    path = location.path
    if len(data) > MAX_FILE:
        return [_diag(path, (1, 1), "file-too-large", f"file is {len(data)} bytes; the limit is {MAX_FILE} (1 MiB)")]
    text_or_diag = _decode(path, data)
    if isinstance(text_or_diag, Diagnostic):
        return [text_or_diag]
    text, bom = text_or_diag
    problems = _conflict_markers(path, text)
    split = _split(path, text)
    if isinstance(split, Diagnostic):
        return [*problems, split]
    fm_text, body = split
    if problems:
        return problems
    loaded = load_frontmatter(path, fm_text)
    if isinstance(loaded, list):
        return loaded
    data_map, value_marks, key_marks, written = loaded
    return Story(
        location=location,
        frontmatter=data_map,
        body=body,
        content_hash=hashlib.sha256(data).hexdigest(),
        bom=bom,
        value_marks=value_marks,
        key_marks=key_marks,
        written=written,
    )


def split_body(data: bytes) -> str:
    """The body of a file that already parsed once (used to stream bodies back in)."""
    text = data.decode("utf-8")
    text = text[1:] if text.startswith(BOM) else text
    split = _split("", text)
    assert not isinstance(split, Diagnostic)
    return split[1]


def _diag(path: str, mark: Mark, code: str, message: str) -> Diagnostic:
    return Diagnostic(path, mark[0], mark[1], code, message)


def _position(data: bytes, offset: int) -> Mark:
    line_start = data.rfind(b"\n", 0, offset) + 1
    return data.count(b"\n", 0, offset) + 1, offset - line_start + 1


def _decode(path: str, data: bytes) -> tuple[str, bool] | Diagnostic:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or _utf16_without_bom(data):
        return _diag(path, (1, 1), "not-utf8", "file is UTF-16; save it as UTF-8")
    nul = data.find(b"\x00")
    if nul >= 0:
        return _diag(path, _position(data, nul), "binary", "file contains NUL bytes; a story is UTF-8 text")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return _diag(
            path,
            _position(data, exc.start),
            "not-utf8",
            f"not valid UTF-8 (byte 0x{data[exc.start]:02x}); save the file as UTF-8",
        )
    if text.startswith(BOM):
        return text[1:], True
    return text, False


def _utf16_without_bom(data: bytes) -> bool:
    """ASCII text saved as UTF-16: every other byte of the start is NUL ("-\\0-\\0-\\0")."""
    head = data[:8]
    return len(head) == 8 and (head[1::2] == b"\0" * 4 or head[0::2] == b"\0" * 4)


def _conflict_markers(path: str, text: str) -> list[Diagnostic]:
    """Lines git writes for a conflict.  ``=======`` and ``|||||||`` count only inside a
    ``<<<<<<<`` block: alone, ``=======`` is a Markdown heading underline."""
    if "<<<<<<<" not in text and ">>>>>>>" not in text:
        return []
    found: list[Diagnostic] = []
    inside = False
    for m in _CONFLICT.finditer(text):
        marker = m.group(0)[0]
        if marker == "<":
            inside = True
        elif marker == ">":
            inside = False
        elif not inside:
            continue
        line = text.count("\n", 0, m.start()) + 1
        found.append(
            _diag(path, (line, 1), "conflict-marker", "git conflict marker; resolve the merge conflict in this file")
        )
    return found


def _split(path: str, text: str) -> tuple[str, str] | Diagnostic:
    first_end = text.find("\n")
    first = text if first_end < 0 else text[:first_end]
    if first.rstrip("\r") != "---":
        return _diag(path, (1, 1), "no-frontmatter", "first line must be '---' to open the YAML frontmatter")
    too_large = _diag(path, (1, 1), "frontmatter-too-large", f"frontmatter is over {MAX_FRONTMATTER // 1024} KiB")
    newline = first_end
    while newline >= 0:  # jump from one line starting with '---' to the next, not line by line
        newline = text.find("\n---", newline)
        if newline < 0:
            break
        pos = newline + 1
        if pos - first_end > MAX_FRONTMATTER + 8:
            return too_large
        end = text.find("\n", pos)
        if (text[pos:] if end < 0 else text[pos:end]).rstrip("\r") == "---":
            fm = text[first_end + 1 : pos]
            if len(fm.encode("utf-8")) > MAX_FRONTMATTER:
                return too_large
            return fm, ("" if end < 0 else text[end + 1 :])
        newline = pos
    if first_end >= 0 and text.rfind("\n") + 1 - first_end > MAX_FRONTMATTER + 8:
        return too_large
    return _diag(path, (1, 1), "no-closing-delimiter", "frontmatter has no closing '---' line")


Loaded = tuple[dict[str, Any], dict[KeyPath, Mark], dict[KeyPath, Mark], dict[KeyPath, str]]


def load_frontmatter(path: str, fm_text: str) -> Loaded | list[Diagnostic]:
    """YAML frontmatter text (which starts on line 2 of the file) → data and marks."""
    try:
        _precheck(fm_text)
        node = yaml.compose(fm_text, Loader=_Loader)
        if node is None:
            raise _Refused((2, 1), "empty-frontmatter", "frontmatter is empty; it needs at least 'id' and 'title'")
        if not isinstance(node, yaml.MappingNode):
            kind = "a list" if isinstance(node, yaml.SequenceNode) else "a scalar"
            raise _Refused(
                _mark(node), "not-a-mapping", f"frontmatter is {kind}; it must be a mapping of keys to values"
            )
        value_marks: dict[KeyPath, Mark] = {}
        key_marks: dict[KeyPath, Mark] = {}
        problems: list[_Refused] = []
        marks = _Marks(value_marks, key_marks, problems)
        data = _build(node, (), marks, 1)
        if problems:  # every problem of the frontmatter, not only the first
            return [_diag(path, p.mark, p.code, p.message) for p in problems]
    except _Refused as exc:
        return [_diag(path, exc.mark, exc.code, exc.message)]
    except RecursionError:  # defence in depth: _precheck bounds the depth before composing
        return [_diag(path, (2, 1), "too-deep", f"frontmatter nests deeper than {MAX_DEPTH} levels")]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = (mark.line + 2, mark.column + 1) if mark else (2, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        return [_diag(path, where, "yaml-syntax", f"invalid YAML: {problem}")]
    except yaml.YAMLError as exc:  # reader errors (control characters) carry a position too
        mark = getattr(exc, "position", None)
        where = _position(fm_text.encode(), mark) if isinstance(mark, int) else (1, 1)
        return [_diag(path, (where[0] + 1, where[1]), "yaml-syntax", f"invalid YAML: {exc}".splitlines()[0])]
    assert isinstance(data, dict)
    return data, value_marks, key_marks, marks.written


def _precheck(fm_text: str) -> None:
    """Refuse anchors, aliases and deep nesting before libyaml composes anything.

    Composition is recursive, so depth is bounded first: a cheap upper bound from
    brackets and indentation levels, and an exact event scan only when the bound
    is over the limit or an anchor/alias character appears at all.
    """
    if "&" not in fm_text and "*" not in fm_text and depth_bound(fm_text) <= MAX_DEPTH:
        return
    depth = 0
    for event in yaml.parse(fm_text, Loader=_Loader):
        if isinstance(event, yaml.AliasEvent):
            raise _Refused(_mark(event), "alias", "YAML aliases (*name) are not allowed in frontmatter")
        if getattr(event, "anchor", None):
            raise _Refused(_mark(event), "anchor", "YAML anchors (&name) are not allowed in frontmatter")
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise _Refused(_mark(event), "too-deep", f"frontmatter nests deeper than {MAX_DEPTH} levels")
        elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            depth -= 1


def depth_bound(fm_text: str) -> int:
    """An upper bound of the nesting depth of ``fm_text``'s YAML, without parsing it.

    Along any path a collection opens with a flow bracket, or at a line's
    indentation (at most two per indentation: a mapping and the block sequence
    that is its value), or after a block indicator on its line ("- - a").
    """
    brackets = fm_text.count("[") + fm_text.count("{")
    indents = len(set(_INDENT.findall(fm_text)))
    leads: list[str] = _COMPACT.findall(fm_text)
    compact = sum(m.count("-") + m.count("?") + m.count(":") - 1 for m in leads)
    return brackets + 2 * indents + compact + 2


def _mark(node: yaml.Node | yaml.Event) -> Mark:
    mark = node.start_mark
    return (mark.line + 2, mark.column + 1) if mark is not None else (2, 1)


class _Marks:
    """What building collects besides values: positions, and problems (all of them)."""

    def __init__(self, values: dict[KeyPath, Mark], keys: dict[KeyPath, Mark], problems: list[_Refused]) -> None:
        self.values = values
        self.keys = keys
        self.problems = problems
        self.written: dict[KeyPath, str] = {}  # the text of scalars YAML did not read as strings


def _build(node: yaml.Node, path: KeyPath, marks: _Marks, depth: int) -> Any:
    marks.values[path] = _mark(node)
    if node.tag not in _ALLOWED_TAGS:
        marks.problems.append(
            _Refused(_mark(node), "tag", f"YAML tag {node.tag!r} is not allowed; write a plain value")
        )
        return None
    if _NODE_KIND.get(node.tag, yaml.ScalarNode) is not type(node):  # e.g. !!str on a list
        marks.problems.append(_Refused(_mark(node), "tag", f"YAML tag {node.tag!r} does not fit this value"))
        return None
    if isinstance(node, yaml.MappingNode):
        return _build_mapping(node, path, marks, depth)
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, (*path, i), marks, depth + 1) for i, item in enumerate(node.value)]
    assert isinstance(node, yaml.ScalarNode)
    try:
        value = _scalar(node)
    except _Refused as exc:
        marks.problems.append(exc)
        return None
    if not isinstance(value, str):
        marks.written[path] = node.value
    return value


def _build_mapping(node: yaml.MappingNode, path: KeyPath, marks: _Marks, depth: int) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key_node, value_node in node.value:
        if key_node.tag == _TAG + "merge":
            marks.problems.append(_Refused(_mark(key_node), "merge-key", "YAML merge keys (<<) are not allowed"))
            continue
        if not isinstance(key_node, yaml.ScalarNode):
            marks.problems.append(
                _Refused(_mark(key_node), "complex-key", "a key must be a plain value, not a list or mapping")
            )
            continue
        try:
            key = _json_key(_scalar(key_node))
        except _Refused as exc:
            marks.problems.append(exc)
            continue
        if key in result:
            first = marks.keys[(*path, key)]
            marks.problems.append(
                _Refused(
                    _mark(key_node),
                    "duplicate-key",
                    f"duplicate key {key!r} (first at line {first[0]}, column {first[1]}); keep one of them",
                )
            )
            continue
        marks.keys[(*path, key)] = _mark(key_node)
        result[key] = _build(value_node, (*path, key), marks, depth + 1)
    return result


def _json_key(value: Any) -> str:
    """The JSON object key a YAML key becomes (so ``1`` and ``"1"`` collide)."""
    if isinstance(value, str):
        return value
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _integer(node: yaml.ScalarNode) -> int:
    """A YAML integer that fits 64 bits (what JSON readers and SQL columns can hold)."""
    try:
        value = _constructor.construct_yaml_int(node)
    except ValueError:  # not digits (an explicit !!int), or over Python's decimal digit limit
        if not node.value.lstrip("+-").replace("_", "").isdigit():
            raise _Refused(_mark(node), "tag", f"{_shown(node)!r} is not an integer; drop the !!int tag") from None
        value = INT_LIMIT
    if not -INT_LIMIT <= value < INT_LIMIT:
        shown = _shown(node)
        raise _Refused(_mark(node), "int-range", f"integer {shown} does not fit in 64 bits; quote it if you mean text")
    return int(value)


def _shown(node: yaml.ScalarNode) -> str:
    """A scalar's text, cut short for a message."""
    text: str = node.value
    return text if len(text) <= 24 else text[:20] + "…"


def _scalar(node: yaml.ScalarNode) -> Any:
    tag = node.tag
    if tag == _TAG + "str" or tag == _TAG + "timestamp":
        return node.value  # timestamps stay exactly as written
    if tag == _TAG + "int":
        return _integer(node)
    if tag == _TAG + "float":
        try:
            value = _constructor.construct_yaml_float(node)
        except ValueError:  # an explicit !!float on text that is not a number
            raise _Refused(_mark(node), "tag", f"{_shown(node)!r} is not a number; drop the !!float tag") from None
        if math.isnan(value) or math.isinf(value):
            raise _Refused(_mark(node), "not-json", f"{node.value!r} has no JSON equivalent; quote it if you mean text")
        return value
    if tag == _TAG + "bool":
        try:
            return _constructor.construct_yaml_bool(node)
        except KeyError:  # an explicit !!bool on text that is not a boolean
            raise _Refused(_mark(node), "tag", f"{_shown(node)!r} is not a boolean; drop the !!bool tag") from None
    if tag == _TAG + "null":
        return None
    raise _Refused(_mark(node), "tag", f"YAML tag {tag!r} is not allowed")  # pragma: no cover
