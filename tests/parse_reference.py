"""The compose-based frontmatter reader storysync used before it read libyaml's events.

Kept in the tests only, as the oracle of the differential tests in
``test_parse_events.py``: libyaml composes a node tree (PyYAML's own resolver picks
each scalar's tag), which is then walked into JSON-safe values with marks.  Same
refusals, same messages, same positions.
"""

from __future__ import annotations

import math
from typing import Any

import yaml

from storysync.story.model import KeyPath, Mark
from storysync.story.parse import INT_LIMIT, MAX_DEPTH, depth_bound

Loader = yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader
TAG = "tag:yaml.org,2002:"
ALLOWED = frozenset(TAG + t for t in ("str", "int", "float", "bool", "null", "timestamp", "seq", "map"))
KIND: dict[str, type[yaml.Node]] = {TAG + "seq": yaml.SequenceNode, TAG + "map": yaml.MappingNode}
CONSTRUCTOR = yaml.constructor.SafeConstructor()

Problem = tuple[int, int, str, str]  # line, column, code, message
Loaded = tuple[dict[str, Any], dict[KeyPath, Mark], dict[KeyPath, Mark], dict[KeyPath, str]]


class Refused(Exception):
    def __init__(self, mark: Mark, code: str, message: str) -> None:
        super().__init__(message)
        self.problem: Problem = (*mark, code, message)


def reference_load(fm_text: str, loader: type[yaml.SafeLoader | yaml.CSafeLoader] = Loader) -> Loaded | list[Problem]:
    """Data and marks of ``fm_text`` (frontmatter from line 2 of a file), or its problems."""
    try:
        precheck(fm_text, loader)
        node = yaml.compose(fm_text, Loader=loader)
        if node is None:
            raise Refused((2, 1), "empty-frontmatter", "frontmatter is empty; it needs at least 'id' and 'title'")
        if not isinstance(node, yaml.MappingNode):
            kind = "a list" if isinstance(node, yaml.SequenceNode) else "a scalar"
            raise Refused(mark(node), "not-a-mapping", f"frontmatter is {kind}; it must be a mapping of keys to values")
        walk = Walk()
        data = walk.build(node, ())
        if walk.problems:
            return walk.problems
    except Refused as exc:
        return [exc.problem]
    except yaml.MarkedYAMLError as exc:
        where = exc.problem_mark or exc.context_mark
        line, col = (where.line + 2, where.column + 1) if where else (2, 1)
        return [(line, col, "yaml-syntax", f"invalid YAML: {exc.problem or exc.context or 'invalid YAML'}")]
    except yaml.YAMLError as exc:  # reader errors (control characters) carry an offset in the UTF-8 text
        offset = getattr(exc, "position", None)
        line, col = offset_position(fm_text.encode(), offset) if isinstance(offset, int) else (1, 1)
        return [(line + 1, col, "yaml-syntax", f"invalid YAML: {exc}".splitlines()[0])]
    return data, walk.values, walk.keys, walk.written


def offset_position(data: bytes, offset: int) -> Mark:
    return data.count(b"\n", 0, offset) + 1, offset - (data.rfind(b"\n", 0, offset) + 1) + 1


def precheck(fm_text: str, loader: type[yaml.SafeLoader | yaml.CSafeLoader]) -> None:
    if "&" not in fm_text and "*" not in fm_text and depth_bound(fm_text) <= MAX_DEPTH:
        return
    depth = 0
    for event in yaml.parse(fm_text, Loader=loader):
        if isinstance(event, yaml.AliasEvent):
            raise Refused(mark(event), "alias", "YAML aliases (*name) are not allowed in frontmatter")
        if getattr(event, "anchor", None):
            raise Refused(mark(event), "anchor", "YAML anchors (&name) are not allowed in frontmatter")
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise Refused(mark(event), "too-deep", f"frontmatter nests deeper than {MAX_DEPTH} levels")
        elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            depth -= 1


def mark(node: yaml.Node | yaml.Event) -> Mark:
    start = node.start_mark
    assert start is not None
    return start.line + 2, start.column + 1


class Walk:
    def __init__(self) -> None:
        self.values: dict[KeyPath, Mark] = {}
        self.keys: dict[KeyPath, Mark] = {}
        self.written: dict[KeyPath, str] = {}
        self.problems: list[Problem] = []

    def refuse(self, node: yaml.Node, code: str, message: str) -> None:
        self.problems.append((*mark(node), code, message))

    def build(self, node: yaml.Node, path: KeyPath) -> Any:
        self.values[path] = mark(node)
        if node.tag not in ALLOWED:
            return self.refuse(node, "tag", f"YAML tag {node.tag!r} is not allowed; write a plain value")
        if KIND.get(node.tag, yaml.ScalarNode) is not type(node):
            return self.refuse(node, "tag", f"YAML tag {node.tag!r} does not fit this value")
        if isinstance(node, yaml.MappingNode):
            return self.mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        assert isinstance(node, yaml.ScalarNode)
        try:
            value = scalar(node)
        except Refused as exc:
            self.problems.append(exc.problem)
            return None
        if not isinstance(value, str):
            self.written[path] = node.value
        return value

    def mapping(self, node: yaml.MappingNode, path: KeyPath) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == TAG + "merge":
                self.refuse(key_node, "merge-key", "YAML merge keys (<<) are not allowed")
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self.refuse(key_node, "complex-key", "a key must be a plain value, not a list or mapping")
                continue
            try:
                key = json_key(scalar(key_node))
            except Refused as exc:
                self.problems.append(exc.problem)
                continue
            if key in result:
                first = self.keys[(*path, key)]
                message = f"duplicate key {key!r} (first at line {first[0]}, column {first[1]}); keep one of them"
                self.refuse(key_node, "duplicate-key", message)
                continue
            self.keys[(*path, key)] = mark(key_node)
            result[key] = self.build(value_node, (*path, key))
        return result


def json_key(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def shown(node: yaml.ScalarNode) -> str:
    text: str = node.value
    return text if len(text) <= 24 else text[:20] + "…"


def integer(node: yaml.ScalarNode) -> int:
    try:
        value = CONSTRUCTOR.construct_yaml_int(node)
    except (ValueError, IndexError):  # IndexError: an empty !!int (the old reader crashed on it)
        digits = node.value.lstrip("+-").replace("_", "")
        if not digits.isdigit() or digits.startswith("0"):  # "09": invalid octal
            raise Refused(mark(node), "tag", f"{shown(node)!r} is not an integer; drop the !!int tag") from None
        value = INT_LIMIT
    if not -INT_LIMIT <= value < INT_LIMIT:
        message = f"integer {shown(node)} does not fit in 64 bits; quote it if you mean text"
        raise Refused(mark(node), "int-range", message)
    return int(value)


def scalar(node: yaml.ScalarNode) -> Any:
    tag = node.tag
    if tag in (TAG + "str", TAG + "timestamp"):
        return node.value
    if tag == TAG + "int":
        return integer(node)
    if tag == TAG + "float":
        try:
            value = CONSTRUCTOR.construct_yaml_float(node)
        except (ValueError, IndexError):  # IndexError: an empty !!float (the old reader crashed on it)
            raise Refused(mark(node), "tag", f"{shown(node)!r} is not a number; drop the !!float tag") from None
        if math.isnan(value) or math.isinf(value):
            raise Refused(mark(node), "not-json", f"{node.value!r} has no JSON equivalent; quote it if you mean text")
        return value
    if tag == TAG + "bool":
        try:
            return CONSTRUCTOR.construct_yaml_bool(node)
        except KeyError:
            raise Refused(mark(node), "tag", f"{shown(node)!r} is not a boolean; drop the !!bool tag") from None
    if tag == TAG + "null":
        return None
    raise Refused(mark(node), "tag", f"YAML tag {tag!r} is not allowed")
